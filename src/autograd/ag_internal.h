/* The autograd layer's insides: per-tensor metadata, nodes and their edges.
 *
 * The graph: a tensor produced by a recorded op holds (in its metadata) a reference
 * to its node; a node holds, per input, a reference to that input's node (inputs that
 * are themselves op results) or to the input tensor (leaves that require grad), plus
 * handles on the data it saved for backward. Saved handles carry no metadata, so a
 * node never reaches its own output: the graph has no cycles. */
#ifndef DT_AG_INTERNAL_H
#define DT_AG_INTERNAL_H

#include <dtrain/autograd.h>
#include "tensor/tensor_internal.h"

typedef struct {
    dt_grad_ready_fn fn;
    void *ctx;
} dt__hook;

typedef struct {
    bool requires_grad;     /* leaves: set by the user; results: true (grad_fn set) */
    dt_node *grad_fn;       /* owned reference; NULL for leaves */
    dt_tensor *grad;        /* owned reference; leaves only */
    dt__hook *hooks;
    int nhooks;
    int pending;            /* during backward: edges still to deliver into grad */
    uint64_t epoch;         /* the backward that last counted this leaf */
} dt__meta;

typedef struct {
    dt_node *node;          /* owned: the input's grad_fn, or NULL */
    dt_tensor *leaf;        /* owned: the input itself when it is a leaf needing grad */
    bool needs;             /* node or leaf is set */
    int8_t ndim;
    uint8_t dtype;
    int64_t shape[DT_MAX_DIMS];
} dt__edge;

#define DT__NODE_MAX_SAVED 8

struct dt_node {
    atomic_int refs;        /* the output's metadata + consumers' edges */
    const char *name;
    dt_backward_fn fn;
    bool failed;            /* a save failed: attach refuses */
    bool released;          /* backward ran: saved data and edges are gone */
    int nsaved;
    dt_tensor *saved[DT__NODE_MAX_SAVED];
    double f64[8];
    int64_t i64[8];
    void *ctx;
    void (*ctx_free)(void *);
    int8_t out_ndim;
    uint8_t out_dtype;
    int64_t out_shape[DT_MAX_DIMS];
    /* engine state for the running backward */
    uint64_t epoch;
    int deps;               /* consumer edges still to deliver */
    dt_tensor *gacc;        /* accumulated gradient of the output */
    dt_node *next_free;     /* release worklist link */
    uint64_t visit;         /* the dt_autograd_visit_leaves walk that last saw it */
    int nin;
    dt__edge in[];
};

/* meta.c */
dt__meta *dt__meta_of(const dt_tensor *t);          /* NULL when none */
dt__meta *dt__meta_get(dt_tensor *t);               /* created on demand; NULL + DT_ENOMEM */
/* node.c */
void dt__node_release(dt_node *n);
/* Drop what backward no longer needs: saved data, context, edges. */
void dt__node_clear(dt_node *n);
/* engine.c: add g into the leaf's grad (allocating it on first use). */
int dt__accumulate_leaf(dt_tensor *leaf, dt__meta *m, const dt_tensor *g);

/* ops helpers (ops_common.c): how a built-in op records itself. */
typedef struct {
    const char *name;
    dt_backward_fn fn;
    unsigned save_in;       /* bit i: save input i */
    bool save_out;          /* save the result (after the inputs) */
    dt_tensor *save_extra;  /* saved last, when not NULL (borrowed) */
    double f[8];            /* the node's scalar arguments */
    int64_t i[8];
} dt__rec;
/* Adopt a kernel result (NULL: wrap the error with the op's name) and, when grad is
 * needed, record a node over the n inputs as r says. */
dt_tensor *dt__record(dt_tensor *out, dt_tensor *const *in, int n, const dt__rec *r);
int dt__null_arg(const char *what);

#endif /* DT_AG_INTERNAL_H */
