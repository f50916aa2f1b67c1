/* dtrain dist: process groups, collectives and point-to-point messages
 * (torch.distributed's ProcessGroup, Work and init_process_group).
 *
 * Buffers are (pointer, count, dtype): dist knows nothing of tensors. Every
 * operation is synchronous when its `work` argument is NULL, asynchronous when
 * it is not: then *work receives a handle to wait on, and the buffers must stay
 * valid (and the send buffers unchanged) until the work completes. Asynchronous
 * operations run, in the order they were issued, on one communication thread
 * per group; a synchronous call runs on the calling thread when nothing is
 * queued, else it queues behind the pending work and waits.
 *
 * Every rank of a group must issue the same collectives, with the same
 * arguments (count, dtype, op, root), in the same order. Every operation has a
 * timeout; when it expires, when a peer dies or when a rank aborts, each rank's
 * operation fails with an error naming the operation, the group, its sequence
 * number and the ranks that did not take part, and the group refuses every
 * later call (DT_ESTATE). See docs/dist.md. */
#ifndef DTRAIN_DIST_H
#define DTRAIN_DIST_H

#include <dtrain/dtype.h>
#include <dtrain/store.h>
#include <dtrain/util.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dt_pg dt_pg;
typedef struct dt_work dt_work;

/* Reductions. BAND/BOR/BXOR take integer dtypes only, AVG and PREMUL_SUM
 * floating ones. PREMUL_SUM sums premul * x over the ranks (dt_op_opts.premul),
 * each input scaled once; AVG sums and divides by the group size once, at the
 * end. bf16 and f16 reduce in f32 and round once at the end.
 *
 * Determinism. Every rank receives bit-identical results, and the same inputs
 * on the same placement of ranks on hosts give the same bits on every run.
 * The order of combination:
 *  - shm, tcp (and auto on one host, or with one rank per host): rank order,
 *    ((x0 op x1) op x2) op ...;
 *  - hier (auto when ranks span hosts and some host has several): host by
 *    host: each host's ranks in rank order, then the hosts' partial results in
 *    the order of each host's lowest rank. That is the rank-order result
 *    whenever regrouping is exact: integer SUM/PRODUCT (wrapping), BAND, BOR,
 *    BXOR, MIN and MAX (NaN and signed zeros aside), or when only the first
 *    host has several ranks and they are ranks 0..k-1. Floating SUM, AVG,
 *    PRODUCT and PREMUL_SUM otherwise differ from it in the last bits, and
 *    depend on the placement (not on timing). */
typedef enum {
    DT_RED_SUM = 0, DT_RED_AVG, DT_RED_PRODUCT, DT_RED_MIN, DT_RED_MAX,
    DT_RED_BAND, DT_RED_BOR, DT_RED_BXOR, DT_RED_PREMUL_SUM, DT_RED_COUNT
} dt_redop;

/* "sum", "avg", ...; "?" when out of range. */
const char *dt_redop_name(dt_redop op);

/* Options of a group. */
typedef struct {
    int rank;             /* < 0: from the init method or the environment */
    int world_size;       /* < 0: from the init method or the environment */
    int64_t timeout_ms;   /* default timeout of each op; < 0: DTRAIN_TIMEOUT */
    dt_store *store;      /* explicit store (init_method NULL); retained by the group */
    const char *name;     /* the group's name in messages; NULL: "world" / "group<N>" */
} dt_pg_opts;

#define DT_PG_OPTS_INIT {.rank = -1, .world_size = -1, .timeout_ms = -1, .store = NULL, .name = NULL}

/* Options of one call (NULL: the defaults). */
typedef struct {
    int64_t timeout_ms;   /* < 0: the group's timeout */
    double premul;        /* the factor of DT_RED_PREMUL_SUM */
} dt_op_opts;

#define DT_OP_OPTS_INIT {.timeout_ms = -1, .premul = 1.0}

/* recv's source for a message from any rank. */
#define DT_ANY_SOURCE (-1)

/* ------------------------------------------------------------ groups */

/* Join the default group of world_size processes.
 * backend: "shm" (every rank on this host), "tcp" (ranks anywhere, a mesh
 * of TCP connections; docs/tcp.md), "hier" (shm inside each host, tcp between
 * one leader per host, flat tcp for the ops without a hierarchical algorithm;
 * docs/tcp.md), "auto" (shm when all ranks share this host, tcp when each
 * rank has a host of its own, else hier), or NULL (= "auto"). Subgroups use
 * their parent's backend (a hier subgroup on one host runs shm, with one rank
 * per host tcp). init_method:
 *   "env://"           MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE (RANK and
 *                      WORLD_SIZE fall back to OMPI_COMM_WORLD_RANK/SIZE,
 *                      PMI_RANK/PMI_SIZE, SLURM_PROCID/SLURM_NTASKS)
 *   "tcp://host:port"  rank and world size from opts (or the environment)
 *   "file:///path"     a file store every rank can reach
 *   NULL               opts->store, an explicit store
 * With env:// and tcp:// rank 0 hosts the TCP store at the port unless
 * TORCHELASTIC_USE_AGENT_STORE=True says a launcher already hosts it.
 * LOCAL_RANK / LOCAL_WORLD_SIZE are taken from the environment when set,
 * otherwise counted among the ranks on this host.
 * Returns a group owned by the caller (dt_destroy_process_group), or NULL and
 * the last error. opts may be NULL. */
dt_pg *dt_init_process_group(const char *backend, const char *init_method, const dt_pg_opts *opts);

/* Waits for the group's pending work, then frees it (NULL ok). Subgroups made
 * from it must be destroyed first. */
void dt_destroy_process_group(dt_pg *pg);

/* A subgroup of pg's members listed in ranks (world ranks, ascending or not;
 * group rank i is ranks[i]). Every rank of pg calls it, in the same order
 * relative to other new_group calls. A rank not in ranks gets a handle whose
 * operations fail with DT_ENOTMEMBER and whose rank/size are -1. opts may be
 * NULL (the name and timeout are taken from it; rank/world_size/store ignored).
 * Owned by the caller (dt_destroy_process_group). */
dt_pg *dt_new_group(dt_pg *pg, const int *ranks, int nranks, const dt_pg_opts *opts);

int dt_pg_rank(const dt_pg *pg);            /* -1 for a non-member */
int dt_pg_size(const dt_pg *pg);            /* -1 for a non-member */
int dt_pg_local_rank(const dt_pg *pg);      /* among the world's ranks on this host */
int dt_pg_local_size(const dt_pg *pg);
bool dt_pg_is_member(const dt_pg *pg);
const char *dt_pg_backend(const dt_pg *pg); /* "shm", "tcp", "hier"; "none" for a non-member. Borrowed */
/* What the backend is made of, e.g. "hier: 2 hosts (ranks per host: 2 2), shm
 * within a host, tcp among leaders, flat tcp for the other ops"; the name for
 * a plain backend. Borrowed, valid while the group lives. */
const char *dt_pg_backend_desc(const dt_pg *pg);
const char *dt_pg_name(const dt_pg *pg);    /* borrowed */
/* Group rank -> world rank (DT_ERANGE when out of range). */
int dt_pg_world_rank(const dt_pg *pg, int group_rank);
/* World rank -> group rank (DT_ENOTMEMBER when that rank is not in the group). */
int dt_pg_group_rank(const dt_pg *pg, int world_rank);
/* The store the group meets through (borrowed). */
dt_store *dt_pg_store(const dt_pg *pg);
/* Default timeout of later ops (< 0: DTRAIN_TIMEOUT). */
void dt_pg_set_timeout(dt_pg *pg, int64_t timeout_ms);
/* 0 while healthy; once an op failed fatally (timeout, dead peer, abort,
 * mismatch) the code of that failure, and dt_last_error() tells why. */
int dt_pg_error(const dt_pg *pg);
/* Fail the group now: every waiter (on any thread, and on the other ranks)
 * returns DT_EABORTED, and later calls DT_ESTATE. Safe from any thread. */
void dt_pg_abort(dt_pg *pg);

/* Communication buffers in shared memory. A collective whose buffers all
 * come from here (on every rank) reads and writes the peers' buffers in place,
 * skipping the copies through the staging area. 64-byte aligned; NULL + last
 * error when the group's heap (DTRAIN_SHM_HEAP_MB per rank) is full or the
 * backend has none. Free with dt_pg_free before destroying the group. */
void *dt_pg_alloc(dt_pg *pg, size_t bytes);
void dt_pg_free(dt_pg *pg, void *p);   /* NULL ok */

/* ------------------------------------------------------- collectives
 * send may equal recv (in place) wherever both appear. Counts are elements.
 * o may be NULL. work: NULL = synchronous; else *work receives the handle. */

int dt_pg_allreduce(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype,
                    dt_redop op, const dt_op_opts *o, dt_work **work);
int dt_pg_broadcast(dt_pg *pg, void *buf, size_t count, dt_dtype dtype, int root,
                    const dt_op_opts *o, dt_work **work);
/* recv is written on root only (may be NULL elsewhere). */
int dt_pg_reduce(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype,
                 dt_redop op, int root, const dt_op_opts *o, dt_work **work);
/* recv holds size * count elements: rank i's count at offset i * count. */
int dt_pg_allgather(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype,
                    const dt_op_opts *o, dt_work **work);
/* Uneven: rank i contributes recv_counts[i] elements (send_count on itself),
 * laid out one after another in recv. recv_counts is copied. */
int dt_pg_allgatherv(dt_pg *pg, const void *send, size_t send_count, void *recv,
                     const size_t *recv_counts, dt_dtype dtype, const dt_op_opts *o, dt_work **work);
/* Into a list: recv_list[i] (count elements) receives rank i's buffer. The
 * list is copied, the buffers it points to are borrowed. */
int dt_pg_allgather_list(dt_pg *pg, const void *send, void *const *recv_list, size_t count,
                         dt_dtype dtype, const dt_op_opts *o, dt_work **work);
/* recv (size * count, on root only) receives every rank's count elements. */
int dt_pg_gather(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype, int root,
                 const dt_op_opts *o, dt_work **work);
/* root's send holds size * count elements; rank i receives the i-th count. */
int dt_pg_scatter(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype, int root,
                  const dt_op_opts *o, dt_work **work);
/* send holds size * count elements; rank i receives the reduction of every
 * rank's i-th block of count. */
int dt_pg_reduce_scatter(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype,
                         dt_redop op, const dt_op_opts *o, dt_work **work);
/* send holds size * count elements: block j goes to rank j; recv receives
 * rank j's block for us at offset j * count. */
int dt_pg_alltoall(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype,
                   const dt_op_opts *o, dt_work **work);
/* With splits: send_counts[j] elements go to rank j (blocks laid out one after
 * another in send), recv_counts[j] come from rank j (likewise in recv). The
 * count arrays are copied. */
int dt_pg_alltoallv(dt_pg *pg, const void *send, const size_t *send_counts, void *recv,
                    const size_t *recv_counts, dt_dtype dtype, const dt_op_opts *o, dt_work **work);
int dt_pg_barrier(dt_pg *pg, const dt_op_opts *o, dt_work **work);
/* A barrier through the store in which rank 0 waits for each rank up to
 * timeout_ms (< 0: the group's) and fails naming the ranks that did not arrive
 * (the first one only unless wait_all_ranks). Every rank returns rank 0's
 * verdict. Synchronous; it leaves the group usable. */
int dt_pg_monitored_barrier(dt_pg *pg, int64_t timeout_ms, bool wait_all_ranks);

/* ------------------------------------------------------ point to point
 * Messages between two ranks arrive in the order sent; a recv takes the
 * next message from its source, which must carry the same tag and count
 * (else DT_EMISMATCH). Synchronous recv returns the source rank (>= 0). */
int dt_pg_send(dt_pg *pg, const void *buf, size_t count, dt_dtype dtype, int dst, int tag,
               const dt_op_opts *o, dt_work **work);
int dt_pg_recv(dt_pg *pg, void *buf, size_t count, dt_dtype dtype, int src, int tag,
               const dt_op_opts *o, dt_work **work);

typedef enum { DT_P2P_SEND = 0, DT_P2P_RECV = 1 } dt_p2p_kind;
typedef struct {
    dt_p2p_kind kind;
    void *buf;            /* const for a send */
    size_t count;
    dt_dtype dtype;
    int peer;             /* DT_ANY_SOURCE allowed for a recv */
    int tag;
} dt_p2p_op;

/* Runs the sends and receives together (so an exchange of large messages
 * cannot deadlock) and completes when all have (torch batch_isend_irecv).
 * ops is copied. */
int dt_pg_batch_p2p(dt_pg *pg, const dt_p2p_op *ops, int nops, const dt_op_opts *o, dt_work **work);

/* ------------------------------------------------- byte-object collectives
 * Variable-length byte strings (what torch pickles; here the caller's bytes).
 * Synchronous only. */

/* root's (*data, *len) is sent to everyone; on the other ranks *data receives
 * a dt_alloc'd copy the caller frees with dt_free (their *data on entry is
 * ignored, not freed). */
int dt_pg_broadcast_bytes(dt_pg *pg, void **data, size_t *len, int root, const dt_op_opts *o);

typedef struct { void *data; size_t len; } dt_bytes;
/* *out receives size entries, rank i's bytes in (*out)[i]; one dt_alloc'd
 * block (entries and data together) the caller frees with dt_free(*out). */
int dt_pg_allgather_bytes(dt_pg *pg, const void *data, size_t len, dt_bytes **out, const dt_op_opts *o);

/* ------------------------------------------------------------ work */

/* Waits up to timeout_ms (< 0: until it finishes; the op's own timeout still
 * bounds it). Returns the op's result (its error becomes this thread's last
 * error), or DT_ETIMEOUT when this wait expired first (the op goes on). */
int dt_work_wait(dt_work *w, int64_t timeout_ms);
bool dt_work_is_completed(dt_work *w);
/* The op's result once completed (0 while pending). */
int dt_work_error(dt_work *w);
/* For a completed op: when the communication thread started running it and when it
 * finished (dt_now_s() seconds), so end - start is its own duration, queueing
 * excluded. DT_ESTATE while pending. */
int dt_work_times(dt_work *w, double *start_s, double *end_s);
/* For a completed recv: the rank the message came from. */
int dt_work_source(dt_work *w);
/* Release the handle (NULL ok). A pending op still runs to completion; its
 * buffers must stay valid until then. */
void dt_work_free(dt_work *w);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_DIST_H */
