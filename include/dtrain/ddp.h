/* dtrain ddp: DistributedDataParallel. Every rank holds a replica of the model; after
 * each backward every gradient is the average over the ranks, so the replicas take the
 * same optimizer steps.
 *
 * How (torch's reducer, in C):
 *   - At construction every rank checks that all ranks have the same parameter names
 *     and shapes (the first difference is named), then rank 0's parameters and buffers
 *     are broadcast to all.
 *   - Gradients move into one flat buffer that DDP owns (in the group's shared memory
 *     when the backend has a heap, so the all_reduce reads peers in place), laid out in
 *     reverse registration order; each parameter's .grad becomes a view of it
 *     (torch's gradient_as_bucket_view). Buckets are contiguous ranges of that buffer:
 *     the first up to first_bucket_mb, the rest up to bucket_cap_mb (a bucket closes
 *     once it reaches its cap, as torch's).
 *   - A gradient-ready hook on every parameter counts the bucket down; a full bucket
 *     starts its all_reduce (AVG) asynchronously at once, in bucket order on every rank,
 *     so communication overlaps the rest of backward. When the graph is done, a queued
 *     callback waits for the last buckets: dt_backward returns with averaged gradients.
 *   - After the first synchronised backward the buckets are rebuilt in the order the
 *     gradients actually became ready (rank 0's order, broadcast); a bucket whose
 *     parameters are not adjacent in the buffer is reduced through a staging copy.
 *
 * The optimizer must read the gradients where DDP put them: build it after the wrap
 * from dt_ddp_slots() (torch, too, wants the optimizer made after DDP). */
#ifndef DTRAIN_DDP_H
#define DTRAIN_DDP_H

#include <dtrain/autograd.h>
#include <dtrain/dist.h>
#include <dtrain/optim.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dt_ddp dt_ddp;

/* Built-in communication hooks (torch's default_hooks): the bucket is sent as
 * fp16 / bf16 (half the bytes) and written back as f32. */
typedef enum { DT_DDP_HOOK_NONE = 0, DT_DDP_HOOK_FP16 = 1, DT_DDP_HOOK_BF16 = 2 } dt_ddp_hook;

typedef struct {
    double bucket_cap_mb;         /* torch's bucket_cap_mb: 25 */
    double first_bucket_mb;       /* torch's first bucket: 1 */
    bool find_unused_parameters;  /* walk the forward's output for parameters backward will not reach */
    bool broadcast_buffers;       /* rank 0's buffers to every rank before each forward */
    bool shared_buffers;          /* gradient buffer in the group's shared memory when it can */
    dt_ddp_hook comm_hook;
} dt_ddp_opts;

#define DT_DDP_OPTS_INIT {.bucket_cap_mb = 25, .first_bucket_mb = 1, .find_unused_parameters = false, \
                          .broadcast_buffers = true, .shared_buffers = true, .comm_hook = DT_DDP_HOOK_NONE}

/* One named tensor: a parameter (an f32 contiguous leaf requiring grad) or a buffer
 * (any contiguous tensor). Borrowed. */
typedef struct {
    const char *name;
    dt_tensor *t;
} dt_ddp_tensor;

/* Wrap n parameters and nb buffers (the order of torch's named_parameters /
 * named_buffers). Every rank of pg calls it. Names are copied; the tensors are retained.
 * Each parameter's current .grad (if any) is copied into DDP's buffer. NULL + last
 * error: DT_EMISMATCH naming the first name or shape that differs from rank 0's,
 * DT_EINVAL (a non-f32 or non-contiguous parameter, duplicate names, bad options),
 * the group's errors. opts may be NULL. */
dt_ddp *dt_ddp_new(dt_pg *pg, const dt_ddp_tensor *params, int n, const dt_ddp_tensor *buffers, int nb,
                   const dt_ddp_opts *opts);
/* DDP over a module (torch's DDP(model)): its parameters and buffers in torch's
 * order; the module's flat gradient buffer moves into DDP's (dt_module_set_grad_storage),
 * keeping the module's layout, so dt_module_slots / dt_module_zero_grad keep working
 * (fetch slots after the wrap). The module is borrowed: free the DDP first. */
typedef struct dt_module dt_module;
dt_ddp *dt_ddp_wrap(dt_module *m, dt_pg *pg, const dt_ddp_opts *opts);
/* pre_forward, the module's forward, prepare_backward (when grad mode is on): torch's
 * ddp(x). NULL + last error (a failure left by the last backward, the forward's own). */
dt_tensor *dt_ddp_forward(dt_ddp *d, dt_tensor *x);
/* The wrapped module (borrowed), NULL for dt_ddp_new. */
dt_module *dt_ddp_module(const dt_ddp *d);

/* Wait for pending buckets, give each parameter its gradient back in memory of its own
 * (the values kept), release the tensors. NULL ok. Before destroying the group. */
void dt_ddp_free(dt_ddp *d);

/* Call before each forward (dt_module-level wrappers do): reports a failure left by
 * the last backward (a parameter that got no gradient without find_unused_parameters,
 * a failed all_reduce) and broadcasts the buffers. */
int dt_ddp_pre_forward(dt_ddp *d);
/* Call with the forward's output before backward (torch's prepare_for_backward): with
 * find_unused_parameters, the parameters out's graph does not reach count as ready
 * (their gradients, as they stand, are averaged too). Otherwise a no-op. */
int dt_ddp_prepare_backward(dt_ddp *d, dt_tensor *out);

/* torch's no_sync(): while on, backward only accumulates into .grad; the next backward
 * with it off averages the accumulated gradients. */
void dt_ddp_set_no_sync(dt_ddp *d, bool on);

/* Uneven inputs (torch's model.join()): every rank calls dt_ddp_join_enable(d, true)
 * before its loop and dt_ddp_join(d) after its last batch. A rank that ran out of
 * batches then shadows the others' steps: it joins each step's all_reduces with zeros
 * (the average stays sum / initial world size, torch's divide_by_initial_world_size)
 * until every rank has joined; then all ranks take the parameters of the last rank to
 * join, so the replicas agree again. In join mode each forward first all-reduces how
 * many ranks are still active. The buckets must have been rebuilt (one synchronised
 * step on every rank) before a rank joins: DT_ESTATE otherwise. Returns 0, or the
 * group's error. */
int dt_ddp_join_enable(dt_ddp *d, bool on);
int dt_ddp_join(dt_ddp *d);

/* Parameter slots over DDP's gradients (valid until dt_ddp_free), n written to *n.
 * Borrowed. */
const dt_param_slot *dt_ddp_slots(const dt_ddp *d, size_t *n);

typedef struct {
    int64_t syncs;        /* backward passes whose gradients were averaged */
    int buckets;          /* current bucket count */
    bool rebuilt;         /* buckets follow the measured ready order */
    bool shared;          /* the gradient buffer is in the group's shared memory */
    double wait_s;        /* total time backward spent waiting for buckets after its graph */
    double comm_s;        /* total time the bucket all_reduces ran (start to end, each) */
    double hidden_s;      /* the part of comm_s that ran before backward's graph ended:
                             overlapped with computing gradients (torch DDP's
                             avg_backward_compute_comm_overlap_time, summed) */
    double comm_bytes;    /* bytes all-reduced (after compression) */
} dt_ddp_stats;
dt_ddp_stats dt_ddp_get_stats(const dt_ddp *d);
/* Bucket i's parameters as indices into the constructor's list, their count in *n
 * (borrowed; NULL and *n = 0 out of range). */
const int *dt_ddp_bucket(const dt_ddp *d, int i, int *n);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_DDP_H */
