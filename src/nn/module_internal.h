/* The module tree's insides, shared by src/nn/module*.c and the built-in layers.
 * Not a public header: users see dt_module as an opaque handle (nn.h). */
#ifndef DT_NN_MODULE_INTERNAL_H
#define DT_NN_MODULE_INTERNAL_H

#include <dtrain/nn.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A named tensor of one module: a parameter or a buffer. t is one reference the module
 * owns. Before packing a parameter's t has its own storage (DT_MEM_PARAM); after, it is a
 * view of the root's flat buffer, and grad the matching view of the gradient buffer. */
typedef struct {
    char *name;
    dt_tensor *t;
    dt_tensor *grad;   /* NULL before packing and for buffers */
} dt__mod_tensor;

typedef struct {
    char *name;
    dt_module *m;
} dt__mod_child;

/* Cached views of the packed tree as seen from one module (names relative to it). Built on
 * demand, dropped by every repack and dt_module_set_grad_storage. */
typedef struct {
    dt_named_param *params;   /* [n] */
    dt_param_slot *slots;     /* [n], names shared with params */
    char **names;             /* [n] owned */
    size_t n;
    dt_named_buffer *buffers; /* [nb], names owned */
    size_t nb;
    bool valid;
} dt__mod_cache;

/* The flat buffers of a packed tree; lives on the root. grad_storage is the module's own
 * gradient buffer (grad points at it, or at a caller buffer after set_grad_storage). */
typedef struct {
    float *param;        /* [numel], DT_MEM_PARAM */
    float *grad_own;     /* [numel], DT_MEM_GRAD */
    float *grad;         /* grad_own, or the caller's buffer */
    int64_t numel;
} dt__mod_pack;

/* Invariants: children, params and buffers have distinct dot-free names within a module;
 * parent is NULL exactly for roots; only a root has pack != NULL; dirty is set on the
 * root when its tree changed after packing (or was never packed). Each module's
 * pack_start/pack_numel give its subtree's slice of the root's buffers, valid while the
 * root is packed and not dirty. */
struct dt_module {
    char *type;
    dt_module_forward_fn forward;
    void *ctx;
    void (*free_ctx)(void *);
    dt_module *parent;
    bool training;

    dt__mod_child *children;
    size_t nchildren, cap_children;
    dt__mod_tensor *params;
    size_t nparams, cap_params;
    dt__mod_tensor *buffers;
    size_t nbuffers, cap_buffers;

    dt__mod_pack *pack;      /* root only */
    bool dirty;              /* root only */
    int64_t pack_start, pack_numel;
    dt__mod_cache cache;
};

/* ---- module.c */
dt_module *dt__module_root(dt_module *m);
/* Mark m's tree for repacking (its views become stale at the next use). */
void dt__module_touch(dt_module *m);
/* Calls fn on m and every descendant, parents first, children in order. */
void dt__module_walk(dt_module *m, void (*fn)(dt_module *, void *), void *arg);

/* ---- module_pack.c */
/* Pack m's root when it is not packed or dirty. 0 or DT_ENOMEM (tree unchanged). */
int dt__module_ensure_packed(dt_module *m);
void dt__module_cache_clear(dt__mod_cache *c);
void dt__module_pack_free(dt__mod_pack *p);

/* Take a tensor just returned by a tensor/autograd call (owned by the innermost scope, or
 * by the caller when none is open) out of every scope: the module then owns exactly one
 * reference, whatever scopes the user has open. NULL passes through. */
dt_tensor *dt__module_own(dt_tensor *t);

#endif /* DT_NN_MODULE_INTERNAL_H */
