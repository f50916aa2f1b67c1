/* tcp all_reduce, reduce and reduce_scatter.
 *
 * Small messages (all_reduce up to DT__TCP_SMALL bytes): every rank sends its
 * input to every other rank (reduce: to root) and reduces all n inputs, in
 * rank order, itself: one message latency, and every rank computes the same
 * bits from the same inputs.
 *
 * Large messages: reduce-scatter, then all-gather, pipelined in segments.
 * The elements are split into n chunks (chunk j: [lo_j, hi_j), near-equal),
 * chunk j owned by rank j, and every chunk into segments of t->seg bytes
 * (DT__TCP_SEG), segment s on lane s % nconn (the connections to each peer
 * take turns). Reduce-scatter: for segment s, each rank sends segment s of
 * chunk j to rank j (for every j; t->depth segments ahead of its reduction)
 * and receives segment s of its own chunk from every peer into scratch set
 * s % nsets (nsets = 2 * depth sets of n-1 slots, the receives posted nsets
 * segments ahead, so a peer that runs ahead finds its receive posted and its
 * data lands in place rather than in a buffer to be copied; the scratch,
 * 2 MiB at world 2, stays in L2 while the segments pass through it); it then
 * reduces the n contributions in rank order (dt__reduce_n) into its chunk
 * of the output. The transfer engine moves the other segments (and the other
 * lanes) while this rank waits for segment s, and the kernel's socket buffers
 * carry them while it reduces. All-gather: as soon as a segment is reduced it
 * goes to every peer, straight into their outputs (reduce: to root only),
 * where receives for all of them were posted at the start. Each rank
 * sends and receives 2(n-1)/n of the message, as in a ring, in 2 steps
 * instead of 2(n-1); and because each chunk is reduced by one rank from the
 * inputs in rank order, every rank ends with identical bytes that are also the
 * shm backend's (AVG, PREMUL_SUM and the halves' f32 accumulation exactly as
 * reduce.h does them), which a ring's rotating order would not give.
 * In place is safe: a peer's all-gather data for chunk j, segment s can only
 * arrive after that peer received all of our reduce-scatter data for it.
 *
 * reduce_scatter is the first half alone, with chunk j = sendv[j]. */
#include "dist/backend/tcp/tcp.h"
#include "dist/reduce.h"

#include <string.h>

enum { AG_ALL, AG_ROOT, AG_NONE };
#define STEP(phase, s) (((uint32_t)(phase) << 24) | ((uint32_t)(s) & 0xffffffu))

/* ins[n] on the stack for the usual sizes. */
#define DT__TCP_STACK_RANKS 64

static int small_allreduce(dt__tcp *t, const dt__coll *c, size_t esz)
{
    int n = t->size, me = t->rank, rc = 0;
    size_t bytes = c->count * esz;
    bool reduce = c->kind == DT__OP_REDUCE, out_here = !reduce || me == c->root;
    dt__tcp_frame f = dt__tcp_coll_frame(c, c->count, STEP(0, 0), bytes);
    char *slots = NULL;
    if (out_here && n > 1 && !(slots = dt__tcp_scratch(t, (size_t)n * bytes + 1))) return DT_ENOMEM;
    dt__tcp_xfer xs[2 * DT__TCP_STACK_RANKS], *x = n <= DT__TCP_STACK_RANKS ? xs : dt_alloc(2 * (size_t)n * sizeof *x, DT_MEM_COMM);
    const void *insl[DT__TCP_STACK_RANKS], **ins = n <= DT__TCP_STACK_RANKS ? insl : dt_alloc((size_t)n * sizeof *ins, DT_MEM_COMM);
    if (!x || !ins) {
        rc = dt_set_error(DT_ENOMEM, "tcp: no memory for %d transfers", 2 * n);
        goto out;
    }
    for (int j = 0; j < n; j++) {
        if (j == me) continue;
        if (!reduce || j == c->root) dt__tcp_post_send(t, &x[2 * j], j, &f, c->send, bytes);
        if (out_here) dt__tcp_post_recv(t, &x[2 * j + 1], j, &f, slots + (size_t)j * bytes, bytes);
    }
    DT_CHECK_GOTO(dt__tcp_wait_all(t, c->deadline_ns), rc, out);
    if (out_here) {
        for (int j = 0; j < n; j++) ins[j] = j == me ? c->send : slots + (size_t)j * bytes;
        dt__reduce_n(c->recv, ins, n, c->count, c->dtype, c->redop, c->premul);
    }
out:
    if (x != xs) dt_free(x);
    if (ins != insl) dt_free((void *)ins);
    return rc;
}

static size_t seglen(size_t cnt, size_t s, size_t segel)
{
    size_t a = s * segel;
    if (a >= cnt) return 0;
    return cnt - a < segel ? cnt - a : segel;
}

/* Rank j's slot in a scratch set (this rank has none). */
#define SLOT(j, me) ((j) < (me) ? (j) : (j) - 1)

/* Post the receives of reduce-scatter segment s from every peer into scratch
 * set s % nsets (slot j: rank j's contribution), on the segment's lane. */
static void post_rs_recv(dt__tcp *t, const dt__coll *c, uint64_t fp, const size_t *cnt, size_t segel, char *tmp,
                         dt__tcp_xfer *rs_r, size_t s, size_t nsets)
{
    int n = t->size, me = t->rank;
    size_t esz = dt_dtype_size(c->dtype), mine = seglen(cnt[me], s, segel);
    if (!mine) return;
    char *set = tmp + (s % nsets) * (size_t)(n - 1) * t->seg;
    dt__tcp_frame f = dt__tcp_coll_frame(c, fp, STEP(1, s), mine * esz);
    for (int j = 0; j < n; j++)
        if (j != me)
            dt__tcp_post_recv_on(t, &rs_r[s * (size_t)n + j], j, (int)(s % (size_t)t->nconn), &f,
                                 set + (size_t)SLOT(j, me) * t->seg, mine * esz);
}

/* Reduce-scatter of src[j] (cnt[j] elements: this rank's part of chunk j)
 * into out (cnt[me]), then the all-gather of mode into ag[j] (AG_ALL: every
 * rank, AG_ROOT: root only). */
static int rsag(dt__tcp *t, const dt__coll *c, uint64_t fp, const char *const *src, const size_t *cnt, char *out,
                char *const *ag, int mode)
{
    int n = t->size, me = t->rank, rc = 0;
    size_t esz = dt_dtype_size(c->dtype), segel = t->seg / esz, maxc = 0;
    for (int j = 0; j < n; j++)
        if (cnt[j] > maxc) maxc = cnt[j];
    size_t nseg = (maxc + segel - 1) / segel;
    if (nseg == 0) return 0;
    const size_t depth = t->depth, nsets = 2 * depth, seg = t->seg;
    char *tmp = dt__tcp_scratch(t, nsets * (size_t)(n - 1) * seg);
    dt__tcp_xfer *x = dt_alloc(4 * nseg * (size_t)n * sizeof *x, DT_MEM_COMM);
    const void *insl[DT__TCP_STACK_RANKS], **ins = n <= DT__TCP_STACK_RANKS ? insl : dt_alloc((size_t)n * sizeof *ins, DT_MEM_COMM);
    if (!tmp || !x || !ins) {
        rc = dt_set_error(DT_ENOMEM, "tcp: no memory for a %d-rank reduction in %zu segments", n, nseg);
        goto out;
    }
    for (size_t i = 0; i < 4 * nseg * (size_t)n; i++) x[i].complete = true;
    dt__tcp_xfer *rs_s = x, *rs_r = x + nseg * n, *ag_s = x + 2 * nseg * n, *ag_r = x + 3 * nseg * n;
    int root = c->root;
    const size_t mine_lanes = (size_t)t->nconn;
#define LANE(s) ((int)((s) % mine_lanes))
    /* every all-gather receive goes straight to its place: post them all now */
    for (size_t p = 0; p < nseg && mode != AG_NONE; p++)
        for (int j = 0; j < n; j++) {
            size_t mj = seglen(cnt[j], p, segel);
            if (j == me || !mj || !(mode == AG_ALL || me == root)) continue;
            dt__tcp_frame f = dt__tcp_coll_frame(c, fp, STEP(2, p), mj * esz);
            dt__tcp_post_recv_on(t, &ag_r[p * n + j], j, LANE(p), &f, ag[j] + p * segel * esz, mj * esz);
        }
    /* reduce-scatter receives run nsets segments ahead of the reduction (so a
     * peer that is ahead finds them posted and its data lands in place, not in
     * a buffer to be copied): segment s into scratch set s % nsets, slot j */
    for (size_t s = 0; s < nseg && s < nsets; s++) post_rs_recv(t, c, fp, cnt, segel, tmp, rs_r, s, nsets);
    for (size_t s = 0; s < nseg + depth; s++) {
        if (s < nseg) /* segment s of the reduce-scatter: this rank's part of chunk j to rank j */
            for (int j = 0; j < n; j++) {
                size_t m = seglen(cnt[j], s, segel);
                if (j == me || !m) continue;
                dt__tcp_frame f = dt__tcp_coll_frame(c, fp, STEP(1, s), m * esz);
                dt__tcp_post_send_on(t, &rs_s[s * n + j], j, LANE(s), &f, src[j] + s * segel * esz, m * esz);
            }
        if (s + 1 < depth) continue;
        size_t p = s + 1 - depth; /* the oldest segment in flight: reduce it, send it on */
        if (p >= nseg) continue;
        size_t m = seglen(cnt[me], p, segel);
        if (m) {
            char *set = tmp + (p % nsets) * (size_t)(n - 1) * seg;
            DT_CHECK_GOTO(dt__tcp_wait(t, &rs_r[p * n], n, c->deadline_ns), rc, out);
            for (int j = 0; j < n; j++) ins[j] = j == me ? src[me] + p * segel * esz : set + (size_t)SLOT(j, me) * seg;
            dt__reduce_n(out + p * segel * esz, (const void *const *)ins, n, m, c->dtype, c->redop, c->premul);
        }
        if (p + nsets < nseg) post_rs_recv(t, c, fp, cnt, segel, tmp, rs_r, p + nsets, nsets);
        if (mode == AG_NONE || !m) continue;
        for (int j = 0; j < n; j++) {
            if (j == me || !(mode == AG_ALL || j == root)) continue;
            dt__tcp_frame f = dt__tcp_coll_frame(c, fp, STEP(2, p), m * esz);
            dt__tcp_post_send_on(t, &ag_s[p * n + j], j, LANE(p), &f, out + p * segel * esz, m * esz);
        }
    }
#undef LANE
    rc = dt__tcp_wait_all(t, c->deadline_ns);
out:
    dt_free(x);
    if (ins != insl) dt_free((void *)ins);
    return rc;
}

int dt__tcp_allreduce(dt__tcp *t, const dt__coll *c)
{
    int n = t->size, me = t->rank, rc = 0;
    size_t esz = dt_dtype_size(c->dtype);
    bool reduce = c->kind == DT__OP_REDUCE;
    if (n == 1 || c->count * esz <= DT__TCP_SMALL || c->count < (size_t)n) return small_allreduce(t, c, esz);
    const char *srcl[DT__TCP_STACK_RANKS], **src = n <= DT__TCP_STACK_RANKS ? srcl : dt_alloc((size_t)n * sizeof *src, DT_MEM_COMM);
    char *agl[DT__TCP_STACK_RANKS], **ag = n <= DT__TCP_STACK_RANKS ? agl : dt_alloc((size_t)n * sizeof *ag, DT_MEM_COMM);
    size_t cntl[DT__TCP_STACK_RANKS], *cnt = n <= DT__TCP_STACK_RANKS ? cntl : dt_alloc((size_t)n * sizeof *cnt, DT_MEM_COMM);
    char *own = NULL;
    if (!src || !ag || !cnt) {
        rc = dt_set_error(DT_ENOMEM, "tcp: no memory for %d chunks", n);
        goto out;
    }
    for (int j = 0; j < n; j++) {
        size_t lo, hi;
        dt__tcp_split(c->count, n, j, &lo, &hi);
        src[j] = (const char *)c->send + lo * esz;
        cnt[j] = hi - lo;
        ag[j] = reduce && me != c->root ? NULL : (char *)c->recv + lo * esz;
    }
    char *out = ag[me];
    if (!out && !(out = own = dt_alloc(cnt[me] * esz + 1, DT_MEM_COMM))) {
        rc = dt_set_error(DT_ENOMEM, "tcp: no memory for a chunk of %zu elements", cnt[me]);
        goto out;
    }
    rc = rsag(t, c, c->count, src, cnt, out, ag, reduce ? AG_ROOT : AG_ALL);
out:
    dt_free(own);
    if (src != srcl) dt_free((void *)src);
    if (ag != agl) dt_free(ag);
    if (cnt != cntl) dt_free(cnt);
    return rc;
}

int dt__tcp_reduce_scatter(dt__tcp *t, const dt__coll *c)
{
    int n = t->size;
    if (n == 1) {
        const void *in = c->sendv[0];
        dt__reduce_n(c->recv, &in, 1, c->recv_counts[0], c->dtype, c->redop, c->premul);
        return 0;
    }
    return rsag(t, c, dt__tcp_counts_fp(c->recv_counts, n), (const char *const *)c->sendv, c->recv_counts, c->recv,
                NULL, AG_NONE);
}
