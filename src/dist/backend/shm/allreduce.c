/* shm all_reduce, reduce and reduce_scatter.
 *
 * Small messages (up to DT__SHM_SMALL): one one-publish round (shm.h). Every
 * rank copies its input into its slot (into the slot header's line up to
 * DT__SHM_INLINE bytes), publishes once, waits for every peer's flag, and
 * reduces in rank order its own input and the peers' slots into its output
 * itself: one synchronisation, n-fold redundant but tiny arithmetic.
 *
 * Large messages start with a header round (fingerprint check, and where each
 * rank's buffers are). If every rank's buffers live in its shm heap
 * (dt_pg_alloc), the direct algorithm runs: rank r reduces its 1/n slice of
 * the elements reading every peer's send buffer in place, in cache-sized
 * chunks, into every rank's output (for reduce, into root's), and a last
 * publish/wait says every output is whole. In place is safe: every rank
 * reads and writes only its own slice of every buffer. Otherwise the staging
 * algorithm: the message goes in chunks of DT__SHM_SLOT bytes per rank; per chunk every rank copies into its slot the
 * slices the peers reduce (all but its own), then reduces its own slice
 * reading its send buffer and the peers' slots, writes the result into its
 * slot's own slice (unused until then) and its recv, and (after everyone
 * has) copies the other slices out of the peers' slots: 4 passes over the
 * message per rank instead of 5.5 for n = 2.
 * Consecutive chunks alternate between the two slot sets, so a rank can copy
 * in chunk k+1 while a slower one still copies out chunk k.
 * all_reduce and reduce over private buffers skip the staging where the
 * kernel lets ranks read and write each other's memory (cma.c).
 *
 * reduce_scatter: in the staging version each rank puts, per round, a
 * 1/n-slot piece of each destination's block in its slot; rank r reduces the
 * pieces meant for it straight into its output. Direct when every send buffer
 * is one contiguous heap block; else, where the kernel lets ranks read each
 * other's memory and every rank's blocks are one buffer, rank r reads its
 * block out of every peer's send buffer (cma.c). */
#include "dist/backend/shm/shm.h"
#include "dist/reduce.h"

#include <string.h>

#define DT__SHM_DIRECT_CHUNK (16u << 10)

static int small_allreduce(dt__shm *st, const dt__coll *c, size_t bytes, bool out_here)
{
    int p;
    DT_CHECK(dt__shm_round_begin(st, c, &p));
    dt__shm_slot_hdr *mine = dt__shm_slot_hdr_at(st, p, st->rank);
    dt__shm_post_hdr(st, p, c, c->count, -1, -1);
    bool inl = bytes <= DT__SHM_INLINE;
    if (bytes) memcpy(inl ? (void *)mine->inl : (void *)(mine + 1), c->send, bytes); /* over the offsets: unused here */
    dt__shm_publish_slot(st, p);
    DT_CHECK(dt__shm_wait_posted(st, p, st->step, c->deadline_ns));
    DT_CHECK(dt__shm_check_hdrs(st, p, c));
    if (out_here && bytes) {
        const void *ins[DT__SHM_MAX_RANKS];
        for (int j = 0; j < st->size; j++) {
            dt__shm_slot_hdr *h = dt__shm_slot_hdr_at(st, p, j);
            ins[j] = j == st->rank ? c->send : inl ? (const void *)h->inl : (const void *)(h + 1);
        }
        dt__reduce_n(c->recv, ins, st->size, c->count, c->dtype, c->redop, c->premul);
    }
    dt__shm_round1_end(st, p);
    return 0;
}

/* Inside the header round of parity p, every buffer in a heap: reduce our
 * slice, one cache-sized chunk at a time, into our output (for reduce, into
 * root's) and, for all_reduce, copy each chunk while it is hot into every
 * peer's output too. Each rank reads and writes only its own slice of every
 * buffer, so in place is safe and one wait at the end suffices. (Writing the
 * peers' outputs beats having each rank copy the other slices out of their
 * owners' outputs afterwards: one pass and one wait less; on the Intel VM of
 * session 13, 182 against 329 us at 4 MiB on 2 ranks in place. A rank that
 * later reads its output pulls the peers' slices then, as that copy would
 * have.) */
static void direct_allreduce(dt__shm *st, const dt__coll *c, int p, size_t esz)
{
    int n = st->size;
    bool reduce = c->kind == DT__OP_REDUCE;
    const char *sendj[DT__SHM_MAX_RANKS];
    char *recvj[DT__SHM_MAX_RANKS];
    for (int j = 0; j < n; j++) {
        const dt__shm_slot_hdr *h = dt__shm_slot_hdr_at(st, p, j);
        sendj[j] = st->base + h->send_off;
        recvj[j] = h->recv_off >= 0 ? st->base + h->recv_off : NULL;
    }
    size_t lo, hi, step = DT__SHM_DIRECT_CHUNK / esz;
    dt__shm_split(c->count, n, st->rank, &lo, &hi);
    char *dst = reduce ? recvj[c->root] : recvj[st->rank];
    for (size_t x = lo; x < hi; x += step) {
        size_t m = hi - x < step ? hi - x : step;
        const void *ins[DT__SHM_MAX_RANKS];
        for (int j = 0; j < n; j++) ins[j] = sendj[j] + x * esz;
        dt__reduce_n(dst + x * esz, ins, n, m, c->dtype, c->redop, c->premul);
        if (reduce) continue;
        for (int j = 0; j < n; j++)
            if (j != st->rank) memcpy(recvj[j] + x * esz, dst + x * esz, m * esz);
    }
}

static int staged_allreduce(dt__shm *st, const dt__coll *c, size_t esz, bool out_here)
{
    int n = st->size, me = st->rank, p;
    size_t chunk = DT__SHM_SLOT / esz;
    const char *send = c->send;
    char *recv = c->recv;
    for (size_t x = 0; x < c->count; x += chunk) {
        size_t m = c->count - x < chunk ? c->count - x : chunk, lo, hi;
        DT_CHECK(dt__shm_round_begin(st, c, &p));
        char *slot = dt__shm_slot(st, p, me);
        /* copy in the slices the peers reduce (ours we read from send) */
        for (int j = 0; j < n; j++) {
            if (j == me) continue;
            dt__shm_split(m, n, j, &lo, &hi);
            memcpy(slot + lo * esz, send + (x + lo) * esz, (hi - lo) * esz);
        }
        dt__shm_publish(st);
        DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
        /* our slice: every rank's contribution in rank order, into our slot's
         * (unused) slice for the peers, and into recv */
        dt__shm_split(m, n, me, &lo, &hi);
        const void *ins[DT__SHM_MAX_RANKS];
        for (int j = 0; j < n; j++) ins[j] = j == me ? send + (x + lo) * esz : dt__shm_slot(st, p, j) + lo * esz;
        dt__reduce_n(slot + lo * esz, ins, n, hi - lo, c->dtype, c->redop, c->premul);
        if (out_here) memcpy(recv + (x + lo) * esz, slot + lo * esz, (hi - lo) * esz);
        dt__shm_publish(st);
        if (out_here) {
            DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
            for (int j = 0; j < n; j++) {
                if (j == me) continue;
                dt__shm_split(m, n, j, &lo, &hi);
                memcpy(recv + (x + lo) * esz, dt__shm_slot(st, p, j) + lo * esz, (hi - lo) * esz);
            }
        }
        dt__shm_round_end(st, p);
    }
    return 0;
}

int dt__shm_allreduce(void *state, const dt__coll *c)
{
    dt__shm *st = state;
    DT_CHECK(dt__shm_enter(st, c));
    size_t esz = dt_dtype_size(c->dtype), bytes = c->count * esz;
    bool reduce = c->kind == DT__OP_REDUCE, out_here = !reduce || st->rank == c->root;
    if (bytes <= DT__SHM_SMALL) return small_allreduce(st, c, bytes, out_here);

    int p;
    DT_CHECK(dt__shm_round_begin(st, c, &p));
    dt__shm_post_hdr(st, p, c, c->count, dt__shm_heap_off(st, c->send, bytes),
                     out_here ? dt__shm_heap_off(st, c->recv, bytes) : -1);
    dt__shm_slot_hdr *mine = dt__shm_slot_hdr_at(st, p, st->rank);
    mine->send_va = (uint64_t)(uintptr_t)c->send;
    mine->recv_va = (uint64_t)(uintptr_t)c->recv;
    dt__shm_publish(st);
    DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
    DT_CHECK(dt__shm_check_hdrs(st, p, c));
    bool direct = true;
    for (int j = 0; j < st->size; j++) {
        const dt__shm_slot_hdr *h = dt__shm_slot_hdr_at(st, p, j);
        if (h->send_off < 0 || ((!reduce || j == c->root) && h->recv_off < 0)) direct = false;
    }
    if (direct) {
        direct_allreduce(st, c, p, esz);
        dt__shm_publish(st);
        DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns)); /* every output written, no input read any more */
        dt__shm_round_end(st, p);
        return 0;
    }
    bool cma = false;
    if (st->size > 1 && bytes <= DT__SHM_CMA_MAX) DT_CHECK(dt__shm_cma_usable(st, c, p, false, &cma));
    if (cma) {
        DT_CHECK(dt__shm_cma_allreduce(st, c, p, esz));
        dt__shm_round_end(st, p);
        return 0;
    }
    dt__shm_round_end(st, p);
    return staged_allreduce(st, c, esz, out_here);
}

int dt__shm_reduce_scatter(void *state, const dt__coll *c)
{
    dt__shm *st = state;
    DT_CHECK(dt__shm_enter(st, c));
    int n = st->size, me = st->rank, p;
    size_t esz = dt_dtype_size(c->dtype), total = 0, maxc = 0;
    for (int i = 0; i < n; i++) {
        total += c->recv_counts[i];
        if (c->recv_counts[i] > maxc) maxc = c->recv_counts[i];
    }
    bool contig = dt__shm_one_buffer(c->sendv, c->recv_counts, n, esz);
    int64_t off = contig ? dt__shm_heap_off(st, c->sendv[0], total * esz) : -1;
    DT_CHECK(dt__shm_round_begin(st, c, &p));
    dt__shm_post_hdr(st, p, c, dt__shm_counts_fp(c->recv_counts, n), off, -1);
    dt__shm_slot_hdr_at(st, p, me)->send_va = contig ? (uint64_t)(uintptr_t)c->sendv[0] : 0;
    dt__shm_publish(st);
    DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
    DT_CHECK(dt__shm_check_hdrs(st, p, c));
    bool direct = total * esz > DT__SHM_SMALL;
    for (int j = 0; j < n; j++)
        if (dt__shm_slot_hdr_at(st, p, j)->send_off < 0) direct = false;
    if (direct) {
        size_t displ = 0;
        for (int i = 0; i < me; i++) displ += c->recv_counts[i];
        const void *ins[DT__SHM_MAX_RANKS];
        for (int j = 0; j < n; j++) ins[j] = st->base + dt__shm_slot_hdr_at(st, p, j)->send_off + displ * esz;
        dt__reduce_n(c->recv, ins, n, c->recv_counts[me], c->dtype, c->redop, c->premul);
        dt__shm_publish(st);
        DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
        dt__shm_round_end(st, p);
        return 0;
    }
    bool cma = false;
    if (total * esz > DT__SHM_SMALL && total * esz <= DT__SHM_CMA_MAX && n > 1)
        DT_CHECK(dt__shm_cma_usable(st, c, p, true, &cma));
    if (cma) {
        DT_CHECK(dt__shm_cma_reduce_scatter(st, c, p, esz));
        dt__shm_round_end(st, p);
        return 0;
    }
    dt__shm_round_end(st, p);
    size_t piece = DT__SHM_SLOT / (size_t)n / DT__SHM_LINE * DT__SHM_LINE / esz;
    for (size_t x = 0; x < maxc; x += piece) {
        DT_CHECK(dt__shm_round_begin(st, c, &p));
        char *mine = dt__shm_slot(st, p, me);
        for (int i = 0; i < n; i++)
            if (c->recv_counts[i] > x) {
                size_t m = c->recv_counts[i] - x < piece ? c->recv_counts[i] - x : piece;
                memcpy(mine + (size_t)i * piece * esz, (const char *)c->sendv[i] + x * esz, m * esz);
            }
        dt__shm_publish(st);
        DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
        if (c->recv_counts[me] > x) {
            size_t m = c->recv_counts[me] - x < piece ? c->recv_counts[me] - x : piece;
            const void *ins[DT__SHM_MAX_RANKS];
            for (int j = 0; j < n; j++) ins[j] = dt__shm_slot(st, p, j) + (size_t)me * piece * esz;
            dt__reduce_n((char *)c->recv + x * esz, ins, n, m, c->dtype, c->redop, c->premul);
        }
        dt__shm_round_end(st, p);
    }
    return 0;
}
