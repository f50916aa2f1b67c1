/* DDP's insides, shared by ddp.c (construction, forward/backward protocol) and
 * reducer.c (buckets: assignment, launch, wait, rebuild). */
#ifndef DT_DDP_INTERNAL_H
#define DT_DDP_INTERNAL_H

#include <dtrain/ddp.h>
#include <dtrain/nn.h>

typedef struct dt_ddp dt_ddp;

typedef struct {
    dt_ddp *owner;
    char *name;
    dt_tensor *param;       /* retained */
    dt_tensor *orig_grad;   /* retained: the grad it had before the wrap, or NULL */
    dt_tensor *grad;        /* retained: view of gbuf at off */
    int64_t numel;
    int64_t off;            /* in gbuf, floats (multiple of 16: 64-byte aligned) */
    int bucket;
    bool ready;             /* this backward: its gradient is final */
    bool used;              /* find_unused: reached by the last forward's output */
} dt__ddp_param;

typedef struct {
    int *params;            /* indices into d->p, in the order they are expected ready */
    int np;
    int pending;            /* params not ready yet in this backward */
    int64_t lo, hi;         /* the gbuf range [lo, hi) the params cover */
    bool contiguous;        /* the params tile [lo, hi) exactly (padding aside): reduce in place */
    float *stage;           /* [hi - lo] when not contiguous */
    uint16_t *half;         /* [hi - lo] for the fp16/bf16 hooks */
    dt_work *work;
    bool launched;
} dt__ddp_bucket;

struct dt_ddp {
    dt_pg *pg;
    dt_ddp_opts o;
    dt_module *mod;         /* dt_ddp_wrap's module (borrowed), or NULL */
    bool mod_moved;         /* its gradients live in gbuf */
    int world;
    dt__ddp_param *p;
    int np;
    dt_ddp_tensor *buf;     /* names owned, tensors retained */
    int nb;
    float *gbuf;            /* [gnumel], from dt_pg_alloc (shared) or dt_alloc */
    int64_t gnumel;
    bool gbuf_shared;
    dt_param_slot *slots;
    dt__ddp_bucket *b;
    int nbk;
    int next_launch;        /* buckets below it have been launched this backward */
    int *order;             /* ready order seen in the first synchronised backward */
    int norder;
    bool rebuilt;
    bool in_backward;       /* the finalize callback is queued */
    bool no_sync;
    bool join;              /* join mode: each forward counts the active ranks */
    int err;                /* sticky failure, reported by the next pre_forward */
    char errmsg[512];
    int64_t syncs;
    double wait_s, comm_bytes, comm_s, hidden_s;
};

/* ddp.c */
dt_ddp *dt__ddp_create(dt_pg *pg, const dt_ddp_tensor *params, int n, const dt_ddp_tensor *buffers, int nb,
                       const dt_ddp_opts *opts, dt_module *mod);

/* reducer.c */
/* Buckets over the params in the order given (d->np indices). */
int dt__ddp_build_buckets(dt_ddp *d, const int *order);
void dt__ddp_free_buckets(dt_ddp *d);
/* A param's gradient is final: count its bucket down, launch what is due. */
void dt__ddp_mark_ready(dt_ddp *d, int i);
/* Wait for every launched bucket, write results back; reset for the next backward. */
int dt__ddp_wait_buckets(dt_ddp *d);
/* Remember a failure (first one wins); returns it. */
int dt__ddp_fail(dt_ddp *d, int code);
/* Make the remembered failure this thread's last error again; returns its code. */
int dt__ddp_raise(const dt_ddp *d);

#endif /* DT_DDP_INTERNAL_H */
