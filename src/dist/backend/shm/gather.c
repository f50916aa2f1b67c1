/* shm broadcast, all_gather / gather, scatter, all_to_all and barrier: the
 * collectives that move data without reducing it.
 *
 * Each starts with a round whose slot header carries the op's fingerprint
 * (checked against every rank's) and, for the data that fits in one slot,
 * the data itself, so a small broadcast or all_gather is one round, and
 * when nothing follows in it, a one-publish round (shm.h), as is barrier.
 * broadcast: root's buffer goes through its slot chunk by chunk (receivers
 * wait for root only), or, when root's buffer is in its shm heap, receivers
 * copy straight from it and root waits until all have.
 * all_gather (uneven counts, output as a list of per-rank buffers; gather is
 * the same with only root copying out): every rank's block goes through its
 * own slot, everyone copies every slot out; past one slot, direct reads from
 * peers' heap buffers when all are there, else, where the kernel lets ranks
 * read each other's memory (cma.c), straight from the peers' private send
 * buffers, else chunked rounds.
 * scatter and all_to_all: per round each slot holds n pieces of 1/n slot,
 * piece j meant for rank j. all_to_all's header round also carries each
 * rank's send counts, checked against the receivers' recv counts; past one
 * round, where CMA works and every rank's blocks are one buffer, each rank
 * reads its block out of every peer's send buffer instead (cma.c). */
#include "dist/backend/shm/shm.h"

#include <string.h>

static size_t clamp_sub(size_t a, size_t x, size_t cap)
{
    if (a <= x) return 0;
    return a - x < cap ? a - x : cap;
}

int dt__shm_broadcast(void *state, const dt__coll *c)
{
    dt__shm *st = state;
    DT_CHECK(dt__shm_enter(st, c));
    int me = st->rank, root = c->root, p;
    size_t bytes = c->count * dt_dtype_size(c->dtype);
    char *buf = c->recv;
    DT_CHECK(dt__shm_round_begin(st, c, &p));
    int64_t off = me == root && bytes > DT__SHM_SMALL ? dt__shm_heap_off(st, buf, bytes) : -1;
    dt__shm_post_hdr(st, p, c, c->count, off, -1);
    if (me == root && off < 0 && bytes && bytes <= DT__SHM_SLOT) memcpy(dt__shm_slot(st, p, me), buf, bytes);
    dt__shm_publish_slot(st, p);
    DT_CHECK(dt__shm_wait_posted(st, p, st->step, c->deadline_ns));
    DT_CHECK(dt__shm_check_hdrs(st, p, c));
    int64_t roff = dt__shm_slot_hdr_at(st, p, root)->send_off;
    if (roff >= 0) {
        if (me != root) memcpy(buf, st->base + roff, bytes);
        dt__shm_publish(st);
        if (me == root) DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
        dt__shm_round_end(st, p);
        return 0;
    }
    if (bytes <= DT__SHM_SLOT) {
        if (me != root && bytes) memcpy(buf, dt__shm_slot(st, p, root), bytes);
        dt__shm_round1_end(st, p);
        return 0;
    }
    dt__shm_round_end(st, p);
    for (size_t x = 0; x < bytes; x += DT__SHM_SLOT) {
        size_t m = clamp_sub(bytes, x, DT__SHM_SLOT);
        DT_CHECK(dt__shm_round_begin(st, c, &p));
        if (me == root) memcpy(dt__shm_slot(st, p, me), buf + x, m);
        dt__shm_publish(st);
        if (me != root) {
            DT_CHECK(dt__shm_wait_step(st, root, st->step, c->deadline_ns));
            memcpy(buf + x, dt__shm_slot(st, p, root), m);
        }
        dt__shm_round_end(st, p);
    }
    return 0;
}

int dt__shm_allgather(void *state, const dt__coll *c)
{
    dt__shm *st = state;
    DT_CHECK(dt__shm_enter(st, c));
    int n = st->size, me = st->rank, p;
    size_t esz = dt_dtype_size(c->dtype), maxb = 0, mine = c->recv_counts[me] * esz;
    for (int i = 0; i < n; i++)
        if (c->recv_counts[i] * esz > maxb) maxb = c->recv_counts[i] * esz;
    bool out_here = c->kind == DT__OP_ALLGATHER || me == c->root, fits = maxb <= DT__SHM_SLOT;
    DT_CHECK(dt__shm_round_begin(st, c, &p));
    dt__shm_post_hdr(st, p, c, dt__shm_counts_fp(c->recv_counts, n), fits ? -1 : dt__shm_heap_off(st, c->send, mine), -1);
    dt__shm_slot_hdr_at(st, p, me)->send_va = (uint64_t)(uintptr_t)c->send;
    if (fits && mine) memcpy(dt__shm_slot(st, p, me), c->send, mine);
    dt__shm_publish_slot(st, p);
    DT_CHECK(dt__shm_wait_posted(st, p, st->step, c->deadline_ns));
    DT_CHECK(dt__shm_check_hdrs(st, p, c));
    if (fits) {
        if (out_here)
            for (int j = 0; j < n; j++)
                if (c->recv_counts[j]) memcpy(c->recvv[j], dt__shm_slot(st, p, j), c->recv_counts[j] * esz);
        dt__shm_round1_end(st, p);
        return 0;
    }
    bool direct = true;
    for (int j = 0; j < n; j++)
        if (dt__shm_slot_hdr_at(st, p, j)->send_off < 0) direct = false;
    if (direct) {
        if (out_here)
            for (int j = 0; j < n; j++) {
                const char *src = j == me ? c->send : st->base + dt__shm_slot_hdr_at(st, p, j)->send_off;
                if (c->recvv[j] != src && c->recv_counts[j]) memmove(c->recvv[j], src, c->recv_counts[j] * esz);
            }
        dt__shm_publish(st);
        DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
        dt__shm_round_end(st, p);
        return 0;
    }
    bool cma;
    DT_CHECK(dt__shm_cma_usable(st, c, p, false, &cma));
    if (cma) {
        DT_CHECK(dt__shm_cma_gather(st, c, p, esz));
        dt__shm_round_end(st, p);
        return 0;
    }
    dt__shm_round_end(st, p);
    for (size_t x = 0; x < maxb; x += DT__SHM_SLOT) {
        DT_CHECK(dt__shm_round_begin(st, c, &p));
        size_t m = clamp_sub(mine, x, DT__SHM_SLOT);
        if (m) memcpy(dt__shm_slot(st, p, me), (const char *)c->send + x, m);
        dt__shm_publish(st);
        if (out_here) {
            DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
            for (int j = 0; j < n; j++) {
                size_t mj = clamp_sub(c->recv_counts[j] * esz, x, DT__SHM_SLOT);
                if (mj) memcpy((char *)c->recvv[j] + x, dt__shm_slot(st, p, j), mj);
            }
        }
        dt__shm_round_end(st, p);
    }
    return 0;
}

/* The round of a header alone (scatter, all_to_all, barrier): counts, when
 * given, are written to the slot for the peers to check; send_va is posted
 * for cma.c (0: none). */
static int header_round(dt__shm *st, const dt__coll *c, uint64_t fp, const size_t *counts, uint64_t send_va, int *p)
{
    DT_CHECK(dt__shm_round_begin(st, c, p));
    dt__shm_post_hdr(st, *p, c, fp, -1, -1);
    dt__shm_slot_hdr_at(st, *p, st->rank)->send_va = send_va;
    if (counts) {
        uint64_t *out = (uint64_t *)dt__shm_slot(st, *p, st->rank);
        for (int i = 0; i < st->size; i++) out[i] = counts[i];
    }
    dt__shm_publish_slot(st, *p);
    DT_CHECK(dt__shm_wait_posted(st, *p, st->step, c->deadline_ns));
    return dt__shm_check_hdrs(st, *p, c);
}

int dt__shm_scatter(void *state, const dt__coll *c)
{
    dt__shm *st = state;
    DT_CHECK(dt__shm_enter(st, c));
    int n = st->size, me = st->rank, root = c->root, p;
    size_t esz = dt_dtype_size(c->dtype), maxb = 0, piece = DT__SHM_SLOT / (size_t)n / DT__SHM_LINE * DT__SHM_LINE;
    for (int i = 0; i < n; i++)
        if (c->send_counts[i] * esz > maxb) maxb = c->send_counts[i] * esz;
    DT_CHECK(header_round(st, c, dt__shm_counts_fp(c->send_counts, n), NULL, 0, &p));
    dt__shm_round_end(st, p);
    size_t mine = c->send_counts[me] * esz;
    if (me == root && mine && c->recv != c->sendv[me]) memmove(c->recv, c->sendv[me], mine);
    for (size_t x = 0; x < maxb; x += piece) {
        DT_CHECK(dt__shm_round_begin(st, c, &p));
        if (me == root) {
            char *slot = dt__shm_slot(st, p, me);
            for (int i = 0; i < n; i++) {
                size_t m = i == root ? 0 : clamp_sub(c->send_counts[i] * esz, x, piece);
                if (m) memcpy(slot + (size_t)i * piece, (const char *)c->sendv[i] + x, m);
            }
        }
        dt__shm_publish(st);
        if (me != root) {
            DT_CHECK(dt__shm_wait_step(st, root, st->step, c->deadline_ns));
            size_t m = clamp_sub(mine, x, piece);
            if (m) memcpy((char *)c->recv + x, dt__shm_slot(st, p, root) + (size_t)me * piece, m);
        }
        dt__shm_round_end(st, p);
    }
    return 0;
}

int dt__shm_alltoall(void *state, const dt__coll *c)
{
    dt__shm *st = state;
    DT_CHECK(dt__shm_enter(st, c));
    int n = st->size, me = st->rank, p;
    size_t esz = dt_dtype_size(c->dtype), maxb = 0, piece = DT__SHM_SLOT / (size_t)n / DT__SHM_LINE * DT__SHM_LINE;
    /* our blocks one buffer (as dt_pg_alltoall(v) lays them out): peers may read them in place */
    bool contig = dt__shm_one_buffer(c->sendv, c->send_counts, n, esz);
    DT_CHECK(header_round(st, c, 0, c->send_counts, contig ? (uint64_t)(uintptr_t)c->sendv[0] : 0, &p));
    for (int j = 0; j < n; j++) {
        const uint64_t *theirs = (const uint64_t *)dt__shm_slot(st, p, j);
        if (theirs[me] != c->recv_counts[j])
            return dt__shm_fail(st, DT_EMISMATCH, 0, "all_to_all #%llu: rank %d sends %llu elements to rank %d, which expects %zu",
                                (unsigned long long)c->seq, j, (unsigned long long)theirs[me], me, c->recv_counts[j]);
        for (int i = 0; i < n; i++)
            if (theirs[i] * esz > maxb) maxb = theirs[i] * esz;
    }
    bool cma = false; /* past one round: straight from the peers' memory where it can */
    if (maxb > piece && n > 1) DT_CHECK(dt__shm_cma_usable(st, c, p, true, &cma));
    if (cma) {
        DT_CHECK(dt__shm_cma_alltoall(st, c, p, esz));
        dt__shm_round_end(st, p);
        return 0;
    }
    dt__shm_round_end(st, p);
    for (size_t x = 0; x < maxb; x += piece) {
        DT_CHECK(dt__shm_round_begin(st, c, &p));
        char *slot = dt__shm_slot(st, p, me);
        for (int j = 0; j < n; j++) {
            size_t m = clamp_sub(c->send_counts[j] * esz, x, piece);
            if (m) memcpy(slot + (size_t)j * piece, (const char *)c->sendv[j] + x, m);
        }
        dt__shm_publish(st);
        DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
        for (int j = 0; j < n; j++) {
            size_t m = clamp_sub(c->recv_counts[j] * esz, x, piece);
            if (m) memcpy((char *)c->recvv[j] + x, dt__shm_slot(st, p, j) + (size_t)me * piece, m);
        }
        dt__shm_round_end(st, p);
    }
    return 0;
}

int dt__shm_barrier(void *state, const dt__coll *c)
{
    dt__shm *st = state;
    DT_CHECK(dt__shm_enter(st, c));
    int p;
    DT_CHECK(header_round(st, c, 0, NULL, 0, &p));
    dt__shm_round1_end(st, p);
    return 0;
}
