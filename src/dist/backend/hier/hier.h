/* The hier backend's insides: backend "auto" for a group whose ranks span
 * several hosts. It owns no transport of its own; it composes instances of the
 * others through their ops tables. Only src/dist/backend/hier/ includes this.
 *
 * Composition (made in create(), in this order on every rank):
 *   flat   tcp over every rank of the group (group rank = flat rank); the ops
 *          without a hierarchical algorithm (gather, scatter, all_to_all)
 *          and send/recv run here;
 *   local  shm over the ranks on this rank's host (ascending group ranks;
 *          local rank 0, the lowest group rank there, is the host's leader);
 *   lead   tcp over the leaders, one per host (leader rank h = host h, hosts
 *          numbered by their lowest group rank); only leaders have it;
 *   cross  with DTRAIN_HIER_ALLREDUCE=slice and the same number m of ranks on
 *          every host: tcp over the local rank j of every host (j = 1..m-1,
 *          rank h = host h); the leaders' lead is cross 0.
 * Hosts are told apart by the host identity every rank publishes (init.c's
 * dt__host_id). Degenerate groups are passed through to one backend (`solo`):
 * every rank on one host -> shm, one rank per host -> tcp; both number ranks
 * as the group does, so messages need no translation.
 *
 * Reduction order (the determinism promise, dist.h): a hierarchical reduction
 * combines the ranks of each host in ascending rank order (shm), then the
 * hosts' partial results in ascending host order (tcp among leaders, whose
 * large algorithm also reduces in rank order). bf16/f16 are widened to f32 for
 * the whole reduction and rounded once; AVG sums at every level and the leader
 * divides once by the group size; PREMUL_SUM multiplies once, at the host level.
 *
 * Sequence numbers: each component counts its own ops (seq_flat, seq_local,
 * seq_lead): every member of a component issues the same sub-ops in the same
 * order, because every rank runs the same collectives.
 *
 * Failure. The first failure a rank sees in any component becomes the
 * group's record (fail_code/fail_msg), named in group ranks: a rank whose
 * shm component failed looks for a dead peer on its own host (pids published
 * at create) and names it; otherwise it waits briefly for a record another
 * rank offered to the store ("hier/fail", compare-and-set, first one wins)
 * and adopts it, or offers its own (the component's message with its rank
 * numbering spelled out). The record goes to the store before this rank
 * aborts every component, so a peer woken by that abort finds it there.
 * A timeout is the cause only in an `entry` sub-op (the op's first for every
 * member of the component: the ranks it waited for never reached the op);
 * elsewhere the rank waited for someone who waited in turn, so it too first
 * looks for a record. Component messages are rewritten into group ranks
 * ("rank N", "ranks that did not take part: ..."). */
#ifndef DTRAIN_DIST_HIER_H
#define DTRAIN_DIST_HIER_H

#include "dist/backend/backend.h"

#include <stdatomic.h>
#include <sys/types.h>

#define DT__HIER_MSG_CAP 900

/* One component: an instance of another backend over some of the group's ranks. */
typedef struct {
    const dt__backend_ops *ops;   /* NULL: this rank is not in it */
    void *be;
    dt_store *store;              /* its prefixed view of the group's store (owned) */
    int rank, size;               /* this rank's place in it */
    int *ranks;                   /* [size]: component rank -> group rank */
    uint64_t seq;                 /* its ops so far */
    const char *what;             /* "flat tcp", "shm on this host", "tcp among host leaders" */
} dt__hier_part;

typedef struct {
    int rank, size;               /* in the group */
    char group[64];
    dt_store *store;              /* the group's (borrowed) */
    int nhosts;
    int *host;                    /* [size]: group rank -> host index */
    int *leader;                  /* [nhosts]: host -> its lowest group rank */
    pid_t *pid;                   /* [size]: valid for ranks on this host */
    int my_host;
    dt__backend_ops const *solo_ops; /* pass-through (degenerate group) */
    dt__hier_part solo, flat, local, lead;
    dt__hier_part cross;          /* slice all_reduce, non-leaders: tcp among the local rank j of every host */
    dt__hier_part *slice;         /* the slice all_reduce's tcp component (&lead on a leader), or NULL */
    char desc[256];               /* the composition, for dt_pg_backend_desc */
    void *tmp;                    /* f32 scratch of the widened halves */
    size_t tmp_bytes;
    _Atomic int fail_code;
    char fail_msg[DT__HIER_MSG_CAP];
    bool entry;                   /* the sub-op running is one every member of its component starts
                                   * the op with: whoever it waits for never reached the op */
    const char *op;               /* the op running, for messages */
    uint64_t seq;                 /* its group sequence number */
} dt__hier;

/* ---- hier.c */
/* Run a component's collective: c is copied with the component's sequence
 * number; a failure becomes the group's record (dt__hier_fail). entry: every
 * member of p starts the op with this sub-op (see above). */
int dt__hier_sub(dt__hier *h, dt__hier_part *p, dt__coll c, bool entry);
/* Send or receive bytes to/from component rank peer (the component's p2p). */
int dt__hier_sub_p2p(dt__hier *h, dt__hier_part *p, dt_p2p_kind kind, void *buf, size_t bytes, int peer,
                     int64_t deadline_ns);
/* The group's failure record after component p failed with code (its message
 * in dt_last_error()); returns the recorded code with the record as this
 * thread's error. p NULL: a failure of the hier layer itself. */
int dt__hier_fail(dt__hier *h, dt__hier_part *p, int code);
/* 0, or the record as this thread's error. */
int dt__hier_check(dt__hier *h);
/* A scratch of at least bytes (reused between ops). */
void *dt__hier_tmp(dt__hier *h, size_t bytes);
/* Per-rank blocks of counts[size] elements laid out host by host (each host's
 * ranks in rank order), with room for the sub-ops' lists; one allocation. */
typedef struct {
    size_t total;
    size_t *hoff;      /* [size]: each rank's block's offset */
    size_t *hcount;    /* [nhosts]: each host's elements */
    size_t *hstart;    /* [nhosts]: where its run begins */
    size_t *lcount;    /* [local size]: free for the host-level sub-op's counts */
    void **lptr;       /* [local size], free */
    void **hptr;       /* [nhosts], free */
} dt__hier_layout;
/* 0, or the failure recorded (dt__hier_fail); free l->hoff with dt_free. */
int dt__hier_layout_make(dt__hier *h, const size_t *counts, dt__hier_layout *l);
/* Whether ptrs[j] (blocks of counts[j] elements of esz bytes; empty ones
 * ignored) all lie in one buffer laid out as hoff says; *base: its start. */
bool dt__hier_in_layout(const dt__hier *h, const void *const *ptrs, const size_t *counts, const size_t *hoff, size_t esz,
                        char **base);

/* ---- allreduce.c */
int dt__hier_allreduce(dt__hier *h, const dt__coll *c);   /* ALLREDUCE and REDUCE */
int dt__hier_reduce_scatter(dt__hier *h, const dt__coll *c);

/* ---- gather.c */
int dt__hier_allgather(dt__hier *h, const dt__coll *c);
int dt__hier_broadcast(dt__hier *h, const dt__coll *c);
int dt__hier_barrier(dt__hier *h, const dt__coll *c);

#endif /* DTRAIN_DIST_HIER_H */
