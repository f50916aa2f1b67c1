/* The shm backend's insides: the shared segment's layout, the per-process
 * state, and the helpers its algorithms are built from (rounds, waits, the
 * failure record). Only src/dist/backend/shm/ includes this.
 *
 * The segment (one per group, created by group rank 0, mapped by all):
 *   hdr                 magic, sizes, offsets, the failure record
 *   ctrl[n]             per rank: `step` (rounds published, a futex word) and
 *                       `bell` (p2p doorbell), each on its own cache line
 *   slot[2][n]          staging: per parity and rank a header + DT__SHM_SLOT bytes
 *   chan[n][n]          p2p: channel src->dst, two chunk buffers of DT__SHM_CHAN
 *   heap[n]             per rank an arena of heap_bytes for dt_pg_alloc
 *
 * Rounds. Every collective is a sequence of rounds and every rank runs the
 * same rounds. A round uses the slot set of parity p = round & 1: a rank
 * writes its own slot (header, data), publishes (step++), waits until the
 * ranks it reads from have published that step, reads their slots, and ends
 * the round by publishing again. Since every rank publishes the same number of
 * times, a step number means the same point on every rank. Before writing set
 * p a rank waits until every rank has ended the previous round of parity p
 * (guard[p]), so nobody overwrites a slot a peer is still reading; in the
 * all-to-all patterns that wait is already satisfied and costs n loads.
 *
 * One-publish rounds (small all_reduce): a rank writes its slot (header,
 * data, inline in the header up to DT__SHM_INLINE bytes), stores the step it
 * is about to publish in the header's `flag` and publishes once; readers spin
 * on the peers' flags (the line they read next anyway), and nobody publishes
 * an end: a peer has finished reading our slot of that round once it
 * publishes its next step, so guard[p] becomes step + 1. Ranks still publish
 * the same number of times, so steps keep meaning the same point everywhere.
 *
 * Invariants: st->step is this rank's last published step; guard[p] is a step
 * by which every rank has finished reading the slots of the last round of
 * parity p (equal on every rank); every other rank has published at least
 * st->seen (what this rank last saw, so waits already known satisfied cost
 * no load of a peer's line). */
#ifndef DTRAIN_DIST_SHM_H
#define DTRAIN_DIST_SHM_H

#include "dist/backend/backend.h"

#include <pthread.h>
#include <stdatomic.h>

#define DT__SHM_MAGIC 0x6474736du          /* "dtsm" */
#define DT__SHM_VERSION 2u
#define DT__SHM_MAX_RANKS 64
#define DT__SHM_SLOT (512u << 10)         /* staging bytes per rank and parity */
#define DT__SHM_SMALL (32u << 10)         /* up to here: one round, no heap fast path */
#define DT__SHM_CHAN (128u << 10)         /* p2p chunk */
#define DT__SHM_LINE 64
#define DT__SHM_INLINE 32                 /* payload bytes inside a slot header */

typedef struct {
    _Alignas(DT__SHM_LINE) _Atomic uint32_t step; /* rounds published (futex word) */
    _Atomic uint32_t step_waiters;        /* peers sleeping on step */
    int32_t pid;
    uint64_t self_va;                     /* this line's address in its rank (cma.c's probe) */
    char pad0[DT__SHM_LINE - 24];
    _Atomic uint32_t bell;                /* bumped by every p2p chunk or ack for this rank */
    _Atomic uint32_t bell_waiters;
    char pad1[DT__SHM_LINE - 8];
} dt__shm_ctrl;

/* Written by a slot's owner before it publishes the round: one cache line. */
typedef struct {
    _Alignas(DT__SHM_LINE) _Atomic uint32_t flag; /* step of the last one-publish round posted here */
    uint8_t kind, dtype, redop, cma_ok;   /* cma_ok: this rank's answer in dt__shm_cma_usable */
    uint32_t root, pad2;
    uint64_t seq;
    uint64_t count;                       /* count, or a fingerprint of the count lists */
    union {
        struct {
            int64_t send_off, recv_off;   /* segment offsets of heap buffers, -1 if elsewhere */
            uint64_t send_va, recv_va;    /* the buffers' addresses in the owner (cma.c) */
        };
        unsigned char inl[DT__SHM_INLINE]; /* one-publish rounds: a small payload */
    };
} dt__shm_slot_hdr;
_Static_assert(sizeof(dt__shm_slot_hdr) == DT__SHM_LINE, "a slot header is one cache line");

typedef struct {
    int32_t tag;
    uint32_t first;                       /* first chunk of a message */
    uint64_t total;                       /* message bytes */
    uint64_t len;                         /* this chunk's bytes */
} dt__shm_chunk_meta;

typedef struct {
    _Alignas(DT__SHM_LINE) _Atomic uint64_t sent; /* chunks written by the sender */
    char pad0[DT__SHM_LINE - 8];
    _Atomic uint64_t acked;               /* chunks consumed by the receiver */
    char pad1[DT__SHM_LINE - 8];
    dt__shm_chunk_meta meta[2];           /* of chunk k at meta[k & 1] */
} dt__shm_chan;

typedef struct {
    uint32_t magic, version, size, pad;
    uint64_t seg_bytes, heap_bytes;
    uint64_t off_ctrl, off_slot, off_chan, off_heap;
    /* The failure record: the first rank to see a failure fills it, every
     * waiter on every rank reads it and fails the same way. */
    _Atomic int32_t fail_code;            /* 0 while healthy (claimed by CAS) */
    _Atomic uint32_t fail_ready;          /* 1 once the fields below are written */
    int32_t fail_rank;                    /* who recorded it */
    uint32_t pad2;
    uint64_t fail_seq;
    uint64_t fail_missing;                /* bit i: group rank i did not take part */
    char fail_msg[512];
} dt__shm_hdr;

typedef struct {
    int rank, size;
    char group[64];
    int fd;
    char name[64];                        /* the segment's shm name (unlinked once all mapped) */
    char *base;
    size_t bytes;
    dt__shm_hdr *hdr;
    dt__shm_ctrl *ctrl;
    uint32_t step;
    uint32_t guard[2];
    uint32_t seen;                        /* every peer has published at least this */
    uint64_t round;
    _Atomic int local_abort;
    unsigned spin_iters;                  /* spin this many pauses (about 1 us), */
    int64_t yield_ns;
    int polls;                     /* then spin with sched_yield until this long, then sleep */
    int64_t last_live_check;
    uint64_t seq;                         /* of the op running, for the failure record */
    int cma;                              /* cma.c: -1 not decided yet, 0 no, 1 every rank may read every peer */
    bool cma_allowed;                     /* DTRAIN_SHM_CMA */
    char *cma_tmp;                        /* its scratch: (size - 1) read chunks */
    int64_t deadline_ns, timeout_ms;      /* the op's; DT__DEADLINE_LAZY until first needed */
    /* heap allocator (heap.c): extents of this rank's arena, by offset */
    pthread_mutex_t heap_mu;
    struct dt__shm_ext { uint64_t off, len; } *free_ext, *used_ext;
    int nfree, nused, cap_free, cap_used;
} dt__shm;

/* ---- segment.c */
int dt__shm_segment_create(dt__shm *st, const dt__backend_init *init);
void dt__shm_segment_destroy(dt__shm *st);
static inline dt__shm_slot_hdr *dt__shm_slot_hdr_at(dt__shm *st, int p, int r)
{
    return (dt__shm_slot_hdr *)(st->base + st->hdr->off_slot +
                                ((size_t)p * st->size + r) * (sizeof(dt__shm_slot_hdr) + DT__SHM_SLOT));
}
static inline char *dt__shm_slot(dt__shm *st, int p, int r) { return (char *)(dt__shm_slot_hdr_at(st, p, r) + 1); }
static inline dt__shm_chan *dt__shm_chan_at(dt__shm *st, int src, int dst)
{
    return (dt__shm_chan *)(st->base + st->hdr->off_chan +
                            ((size_t)src * st->size + dst) * (sizeof(dt__shm_chan) + 2 * (size_t)DT__SHM_CHAN));
}
static inline char *dt__shm_chan_data(dt__shm_chan *ch, uint64_t k) { return (char *)(ch + 1) + (k & 1) * DT__SHM_CHAN; }
/* Segment offset of p when [p, p+bytes) lies in this rank's heap arena, else -1. */
int64_t dt__shm_heap_off(dt__shm *st, const void *p, size_t bytes);

/* ---- wait.c */
/* Publish one more step and wake sleepers. */
void dt__shm_publish(dt__shm *st);
/* How many cpu pauses take about 1 us here (measured once per process). */
unsigned dt__shm_pauses_per_us(void);
/* Publish one more step whose round posted in slot set p (one-publish round). */
void dt__shm_publish_slot(dt__shm *st, int p);
/* Wait until rank r has published step s / every other rank has (c: the
 * deadline). Fail (recording it) on timeout, death of a peer, abort. A
 * deadline of DT__DEADLINE_LAZY is the op's (st->timeout_ms from the first
 * time a wait needs the clock). */
int dt__shm_wait_step(dt__shm *st, int r, uint32_t s, int64_t deadline_ns);
int dt__shm_wait_all(dt__shm *st, uint32_t s, int64_t deadline_ns);
/* Wait until every other rank has posted step s in its slot of set p. */
int dt__shm_wait_posted(dt__shm *st, int p, uint32_t s, int64_t deadline_ns);
/* Wait until this rank's bell differs from seen (p2p); peers: bit mask of
 * ranks whose death ends the wait. */
int dt__shm_wait_bell(dt__shm *st, uint32_t seen, uint64_t peers, int64_t deadline_ns);
void dt__shm_ring(dt__shm *st, int r);
/* Record a failure in the segment (first one wins), wake every waiter, set
 * this thread's error; returns the recorded code. */
int dt__shm_fail(dt__shm *st, int code, uint64_t missing, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* 0, or the recorded failure (as this thread's error). */
int dt__shm_check(dt__shm *st);
void dt__shm_wake_all(dt__shm *st);

/* ---- shm.c: rounds */
/* Begin a round: wait for the guard of its parity; *p receives the parity. */
int dt__shm_round_begin(dt__shm *st, const dt__coll *c, int *p);
void dt__shm_round_end(dt__shm *st, int p);
/* End a one-publish round (its single publish was dt__shm_publish_slot). */
static inline void dt__shm_round1_end(dt__shm *st, int p)
{
    st->guard[p] = st->step + 1;
    st->round++;
}
/* Fill this rank's slot header of parity p for c. */
void dt__shm_post_hdr(dt__shm *st, int p, const dt__coll *c, uint64_t count, int64_t send_off, int64_t recv_off);
/* Compare every rank's header of parity p with ours (DT_EMISMATCH, recorded). */
int dt__shm_check_hdrs(dt__shm *st, int p, const dt__coll *c);
/* Whether v[0..n) follow one another in one buffer (counts[i] elements each). */
static inline bool dt__shm_one_buffer(const void *const *v, const size_t *counts, int n, size_t esz)
{
    const char *q = v[0];
    for (int i = 0; i < n; i++) {
        if (v[i] != (const void *)q) return false;
        q += counts[i] * esz;
    }
    return true;
}
/* [lo, hi) of count split in n near-equal parts, part i. */
static inline void dt__shm_split(size_t count, int n, int i, size_t *lo, size_t *hi)
{
    size_t q = count / (size_t)n, rem = count % (size_t)n;
    *lo = (size_t)i * q + ((size_t)i < rem ? (size_t)i : rem);
    *hi = *lo + q + ((size_t)i < rem ? 1 : 0);
}

/* At the start of every op: name it for messages, fail if the group has. */
static inline int dt__shm_enter(dt__shm *st, const dt__coll *c)
{
    st->seq = c->seq;
    st->deadline_ns = c->deadline_ns;
    st->timeout_ms = c->timeout_ms;
    if (atomic_load_explicit(&st->hdr->fail_code, memory_order_relaxed)) return dt__shm_check(st);
    return 0;
}
/* FNV-1a of a count list (the header's check of uneven counts). */
static inline uint64_t dt__shm_counts_fp(const size_t *counts, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) h = (h ^ (uint64_t)counts[i]) * 1099511628211ull;
    return h;
}

/* ---- the ops (allreduce.c, gather.c, p2p.c) */
int dt__shm_allreduce(void *state, const dt__coll *c);
int dt__shm_reduce_scatter(void *state, const dt__coll *c);
int dt__shm_broadcast(void *state, const dt__coll *c);
int dt__shm_allgather(void *state, const dt__coll *c);
int dt__shm_scatter(void *state, const dt__coll *c);
int dt__shm_alltoall(void *state, const dt__coll *c);
int dt__shm_barrier(void *state, const dt__coll *c);
int dt__shm_p2p(void *state, dt__p2p *const *ops, int nops, int64_t deadline_ns, _Atomic int *kick);
void dt__shm_p2p_kick(void *state);

/* ---- cma.c: large collectives over private buffers by process_vm_readv/writev */
/* all_reduce, reduce and reduce_scatter by CMA up to this many bytes (all_gather, which
 * reduces nothing, at every size: 64 MiB 11.1 ms against 15.6 staged, 2 ranks):
 * past it the message outgrows the caches, and staging's chunk-by-chunk
 * pipeline (each chunk reduced and copied out while in cache) beat CMA (all_reduce
 * 32 MiB: 7.0-7.5 ms staged vs 10.6-11.6 ms; reduce_scatter 64 MiB: 11.2 vs 13.1). */
#define DT__SHM_CMA_MAX (16u << 20)
/* Inside the header round of parity p of a large all_reduce, reduce,
 * all_gather, reduce_scatter or all_to_all (send_va posted): *use = whether
 * this op goes by CMA. The first such op decides st->cma for the group,
 * unanimously (one more publish/wait; the answers go in the slot headers, the
 * slots' data stays the op's). each_va: also every rank must have posted a
 * send_va (0: its blocks are not one buffer). Every rank gets the same *use. */
int dt__shm_cma_usable(dt__shm *st, const dt__coll *c, int p, bool each_va, bool *use);
/* The all_reduce or reduce itself, inside that header round (st->cma == 1). */
int dt__shm_cma_allreduce(dt__shm *st, const dt__coll *c, int p, size_t esz);
/* all_gather / gather past one slot over private buffers, inside its header
 * round (send_va posted, st->cma == 1): every rank that gets the output reads
 * each peer's block straight from the peer's send buffer; a last
 * publish/wait says nobody reads ours any more. */
int dt__shm_cma_gather(dt__shm *st, const dt__coll *c, int p, size_t esz);
/* reduce_scatter over private buffers, inside its header round (every rank's
 * blocks one buffer at send_va, st->cma == 1): rank r reads block r of every
 * peer's input, cache-sized chunks at a time, and reduces them in rank order
 * with its own into its output; then a last publish/wait. */
int dt__shm_cma_reduce_scatter(dt__shm *st, const dt__coll *c, int p, size_t esz);
/* all_to_all over private buffers, inside its header round (every rank's send
 * counts in its slot, its blocks one buffer at send_va, st->cma == 1): each
 * rank reads its block out of every peer's send buffer into its output; then
 * a last publish/wait. */
int dt__shm_cma_alltoall(dt__shm *st, const dt__coll *c, int p, size_t esz);

/* ---- heap.c */
int dt__shm_heap_init(dt__shm *st);
void dt__shm_heap_fini(dt__shm *st);
void *dt__shm_alloc(void *state, size_t bytes);
void dt__shm_free(void *state, void *p);

#endif /* DTRAIN_DIST_SHM_H */
