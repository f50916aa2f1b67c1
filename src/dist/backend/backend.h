/* The backend interface: what a transport (shm, tcp, ...) implements for the
 * process-group layer, as an ops table (dt__backend_ops).
 *
 * Division of labour. The group layer (src/dist/) validates arguments, numbers
 * the collectives, runs them one at a time (on the calling thread or the
 * group's communication thread), checks them across ranks under
 * DTRAIN_DEBUG=DETAIL, turns every variant (even/uneven/list, contiguous or
 * not) into the one descriptor below, remembers a fatal failure and wraps the
 * backend's message with the op's name, group and sequence number. A backend
 * moves and reduces bytes.
 *
 * Contract for every op:
 *  - called by one thread at a time per backend instance, in the same order on
 *    every rank; it returns when this rank's part is done (its recv buffers
 *    hold the result, its send buffers may be reused);
 *  - it gives up at c->deadline_ns (a dt_now_ns() value; INT64_MAX = never;
 *    DT__DEADLINE_LAZY, only for a backend that sets lazy_deadline: c->timeout_ms
 *    from the moment it first reads the clock, so an op that never waits long
 *    never reads it) with DT_ETIMEOUT, when a peer dies with DT_EPEER, and when abort() was
 *    called (here or on any peer) with DT_EABORTED; the message (dt_set_error)
 *    says why and lists the group ranks that did not take part ("rank 2
 *    (pid 4242) exited"). A backend should make a failure seen by one rank
 *    fail the others quickly (shm: a flag in the segment) rather than leave
 *    them to their own timeout;
 *  - a cheap always-on check of op, dtype, count and root between ranks where
 *    the transport allows it, failing with DT_EMISMATCH;
 *  - every rank gets bit-identical results: contributions combine in rank order
 *    (dt__reduce_n in src/dist/reduce.h does the arithmetic); hier, which only
 *    composes other backends, combines host by host (dist.h says the order).
 * After an op failed with anything but DT_EINVAL the group layer calls no
 * further op except abort() and destroy().
 *
 * Files of a backend folder (src/dist/backend/<name>/), mirrored by each:
 *   <name>.c      the ops table, create/destroy/abort
 *   allreduce.c   allreduce, reduce, reduce_scatter
 *   gather.c      broadcast, allgather, gather, scatter, alltoall, barrier
 *   p2p.c         send/recv batches
 * plus the transport's own (shm: segment.c, wait.c, heap.c; tcp: conn.c, xfer.c, fail.c).
 * hier (backend "auto" across hosts) has no transport: it composes shm and tcp
 * instances through this interface (hier/hier.h). */
#ifndef DTRAIN_DIST_BACKEND_H
#define DTRAIN_DIST_BACKEND_H

#include <dtrain/dist.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

typedef enum {
    DT__OP_ALLREDUCE = 0, DT__OP_BROADCAST, DT__OP_REDUCE, DT__OP_ALLGATHER, DT__OP_GATHER,
    DT__OP_SCATTER, DT__OP_REDUCE_SCATTER, DT__OP_ALLTOALL, DT__OP_BARRIER, DT__OP_P2P,
    DT__OP_COUNT
} dt__op_kind;

/* "all_reduce", ... (torch's names, used in every message). */
const char *dt__op_name(dt__op_kind k);

/* One collective, every variant reduced to this form. n = group size.
 *   ALLREDUCE       send, recv, count, dtype, redop, premul
 *   REDUCE          same; recv only on root
 *   BROADCAST       recv is the buffer (root's source, others' destination), count
 *   ALLGATHER       send (send_count = recv_counts[rank]) -> recvv[i] (recv_counts[i])
 *   GATHER          same, recvv/recv_counts on root only (recv_counts given on all ranks)
 *   SCATTER         root's sendv[i] (send_counts[i]) -> recv (send_counts[rank]); send_counts on all
 *   REDUCE_SCATTER  sendv[i] (recv_counts[i]) reduced into rank i's recv (recv_counts[rank])
 *   ALLTOALL        sendv[i] (send_counts[i]) -> rank i; recvv[i] (recv_counts[i]) <- rank i
 *   BARRIER         nothing
 * Counts are elements of dtype; pointer lists have n entries. */
typedef struct {
    dt__op_kind kind;
    uint64_t seq;            /* the group's collective sequence number */
    dt_dtype dtype;
    dt_redop redop;
    double premul;
    int root;
    const void *send;
    void *recv;
    size_t count;
    const void *const *sendv;
    const size_t *send_counts;
    void *const *recvv;
    const size_t *recv_counts;
    int64_t deadline_ns;     /* or DT__DEADLINE_LAZY (see the contract above) */
    int64_t timeout_ms;      /* the op's timeout (< 0: none) */
} dt__coll;

#define DT__DEADLINE_LAZY INT64_MIN

/* One message of a point-to-point batch. Its progress lives here (zero
 * before the first p2p() call), so the group layer can add messages to the
 * set in flight between calls. */
typedef struct {
    dt_p2p_kind kind;
    void *buf;
    size_t bytes;
    int peer;                /* DT_ANY_SOURCE for a recv from anyone */
    int tag;
    int source;              /* out: for a recv, the rank it came from */
    size_t done;             /* progress: bytes moved */
    bool started, complete;
} dt__p2p;

/* What create() gets. The store is this group's (keys need no prefix),
 * shared with the group layer: use it only from inside the backend's calls. */
typedef struct {
    dt_store *store;
    int rank, size;
    const char *group_name;
    int64_t timeout_ms;      /* for the rendezvous in create() */
} dt__backend_init;

typedef struct dt__backend_ops {
    const char *name;
    /* coll() accepts c->deadline_ns == DT__DEADLINE_LAZY. */
    bool lazy_deadline;
    /* Collective over the group's ranks: every member calls it. *state owned
     * by the backend until destroy(). */
    int (*create)(const dt__backend_init *init, void **state);
    /* Frees state; no op is in flight. */
    void (*destroy)(void *state);
    /* Any thread, any time, more than once: make every waiting and future op
     * here and on the peers fail with DT_EABORTED. */
    void (*abort)(void *state);
    /* One function per collective kind, indexed by dt__op_kind (every entry
     * below DT__OP_P2P set): coll[DT__OP_ALLREDUCE] = shm_allreduce, ... */
    int (*coll[DT__OP_P2P])(void *state, const dt__coll *c);
    /* Progresses every incomplete message of ops together (in issue order:
     * messages between two ranks match in the order given) and returns 0 once
     * all are complete, or at least one more is, or *kick (may be NULL) is
     * set; the group layer calls again with the incomplete ones plus any
     * issued since. A failure fails the whole set. */
    int (*p2p)(void *state, dt__p2p *const *ops, int nops, int64_t deadline_ns, _Atomic int *kick);
    /* Wake a p2p() sleeping in this process so it sees *kick (any thread). */
    void (*p2p_kick)(void *state);
    /* Shared communication buffers; NULL alloc = none (dt_pg_alloc fails). */
    void *(*alloc)(void *state, size_t bytes);
    void (*free)(void *state, void *p);
    /* What the instance is made of, for dt_pg_backend_desc (borrowed); NULL:
     * the name says it all. */
    const char *(*describe)(void *state);
} dt__backend_ops;

/* Backends by name; NULL when unknown. */
const dt__backend_ops *dt__backend_find(const char *name);

extern const dt__backend_ops dt__backend_shm;
extern const dt__backend_ops dt__backend_tcp;
extern const dt__backend_ops dt__backend_hier;

/* spawn.c: whether process pid has exited (gone, or a zombie not yet reaped): how a
 * backend tells a dead peer on its own host from a slow one. false for pid <= 0. */
bool dt__pid_gone(pid_t pid);

#endif /* DTRAIN_DIST_BACKEND_H */
