/* tcp broadcast, all_gather / gather, scatter, all_to_all and barrier: the
 * collectives that move data without reducing it.
 *
 * Each is direct: one frame per pair of ranks that exchange data, posted all
 * at once and moved together by the transfer engine, straight from the send
 * buffer into the receive buffer. broadcast: root sends to every rank
 * (from 512 KiB on 3 or more ranks: scattered, then passed on by the ranks);
 * all_gather: every rank sends its block to every other (gather: to root);
 * scatter: root sends block j to rank j; all_to_all: block j to rank j, from
 * every rank. Every frame carries the op's fingerprint, so it is also the
 * mismatch check, and its length (all_to_all: a rank sending more or fewer
 * elements than the receiver expects fails with DT_EMISMATCH). barrier:
 * dissemination, ceil(log2 n) rounds of empty frames (round k: to rank
 * me + 2^k, from me - 2^k). */
#include "dist/backend/tcp/tcp.h"

#include <string.h>

#define DT__TCP_STACK_RANKS 64
#define DT__TCP_BCAST_SPLIT (512u << 10)  /* broadcasts from here on 3+ ranks: split_broadcast */

static dt__tcp_xfer *xfers(dt__tcp_xfer *local, int cap, int n)
{
    dt__tcp_xfer *x = n <= cap ? local : dt_alloc((size_t)n * sizeof *x, DT_MEM_COMM);
    if (!x) dt_set_error(DT_ENOMEM, "tcp: no memory for %d transfers", n);
    return x;
}

/* Large broadcast on 3 or more ranks: root sends chunk j (of n) to rank j
 * (step 1), which passes it to every other non-root rank (step 2), while
 * root sends its own chunk to everyone (step 2). Root's link carries about
 * 2 copies of the message instead of n-1. */
static int split_broadcast(dt__tcp *t, const dt__coll *c, size_t bytes)
{
    int n = t->size, me = t->rank, root = c->root, rc;
    char *buf = c->recv;
    dt__tcp_xfer local[2 * DT__TCP_STACK_RANKS], *x = xfers(local, 2 * DT__TCP_STACK_RANKS, 2 * n);
    if (!x) return DT_ENOMEM;
    size_t lo[DT__TCP_STACK_RANKS + 1], hi;
    for (int j = 0; j < n; j++) dt__tcp_split(bytes, n, j, &lo[j], &hi);
    lo[n] = bytes;
#define CHUNK(j) buf + lo[j], lo[(j) + 1] - lo[j]
    if (me == root) {
        for (int j = 0; j < n; j++) {
            if (j == me) continue;
            dt__tcp_frame f = dt__tcp_coll_frame(c, c->count, 1, lo[j + 1] - lo[j]);
            dt__tcp_post_send(t, &x[2 * j], j, &f, CHUNK(j));
            f = dt__tcp_coll_frame(c, c->count, 2, lo[me + 1] - lo[me]);
            dt__tcp_post_send(t, &x[2 * j + 1], j, &f, CHUNK(me));
        }
        rc = dt__tcp_wait_all(t, c->deadline_ns);
    } else {
        dt__tcp_frame f = dt__tcp_coll_frame(c, c->count, 1, lo[me + 1] - lo[me]);
        dt__tcp_post_recv(t, &x[2 * me], root, &f, CHUNK(me));
        for (int k = 0; k < n; k++) {
            if (k == me) continue;
            f = dt__tcp_coll_frame(c, c->count, 2, lo[k + 1] - lo[k]);
            dt__tcp_post_recv(t, &x[2 * k + 1], k, &f, CHUNK(k));
        }
        rc = dt__tcp_wait(t, &x[2 * me], 1, c->deadline_ns);
        for (int k = 0; k < n && rc == 0; k++) {
            if (k == me || k == root) continue;
            f = dt__tcp_coll_frame(c, c->count, 2, lo[me + 1] - lo[me]);
            dt__tcp_post_send(t, &x[2 * k], k, &f, CHUNK(me));
        }
        if (rc == 0) rc = dt__tcp_wait_all(t, c->deadline_ns);
    }
#undef CHUNK
    if (x != local) dt_free(x);
    return rc;
}

int dt__tcp_broadcast(dt__tcp *t, const dt__coll *c)
{
    int n = t->size, me = t->rank, root = c->root;
    if (n == 1) return 0;
    size_t bytes = c->count * dt_dtype_size(c->dtype);
    if (n >= 3 && n <= DT__TCP_STACK_RANKS && bytes >= DT__TCP_BCAST_SPLIT) return split_broadcast(t, c, bytes);
    dt__tcp_frame f = dt__tcp_coll_frame(c, c->count, 0, bytes);
    dt__tcp_xfer local[DT__TCP_STACK_RANKS], *x = xfers(local, DT__TCP_STACK_RANKS, n);
    if (!x) return DT_ENOMEM;
    if (me == root) {
        for (int j = 0; j < n; j++)
            if (j != me) dt__tcp_post_send(t, &x[j], j, &f, c->recv, bytes);
    } else {
        dt__tcp_post_recv(t, &x[0], root, &f, c->recv, bytes);
    }
    int rc = dt__tcp_wait_all(t, c->deadline_ns);
    if (x != local) dt_free(x);
    return rc;
}

int dt__tcp_allgather(dt__tcp *t, const dt__coll *c)
{
    int n = t->size, me = t->rank, rc;
    size_t esz = dt_dtype_size(c->dtype);
    bool gather = c->kind == DT__OP_GATHER, out_here = !gather || me == c->root;
    uint64_t fp = dt__tcp_counts_fp(c->recv_counts, n);
    if (out_here && c->recv_counts[me] && c->recvv[me] != c->send)
        memmove(c->recvv[me], c->send, c->recv_counts[me] * esz);
    if (n == 1) return 0;
    dt__tcp_xfer local[2 * DT__TCP_STACK_RANKS], *x = xfers(local, 2 * DT__TCP_STACK_RANKS, 2 * n);
    if (!x) return DT_ENOMEM;
    for (int j = 0; j < n; j++) {
        if (j == me) continue;
        dt__tcp_frame f = dt__tcp_coll_frame(c, fp, 0, c->recv_counts[me] * esz);
        if (!gather || j == c->root) dt__tcp_post_send(t, &x[2 * j], j, &f, c->send, c->recv_counts[me] * esz);
        f.len = c->recv_counts[j] * esz;
        if (out_here) dt__tcp_post_recv(t, &x[2 * j + 1], j, &f, c->recvv[j], c->recv_counts[j] * esz);
    }
    rc = dt__tcp_wait_all(t, c->deadline_ns);
    if (x != local) dt_free(x);
    return rc;
}

int dt__tcp_scatter(dt__tcp *t, const dt__coll *c)
{
    int n = t->size, me = t->rank, root = c->root, rc;
    size_t esz = dt_dtype_size(c->dtype);
    uint64_t fp = dt__tcp_counts_fp(c->send_counts, n);
    if (me == root && c->send_counts[me] && c->recv != c->sendv[me])
        memmove(c->recv, c->sendv[me], c->send_counts[me] * esz);
    if (n == 1) return 0;
    dt__tcp_xfer local[DT__TCP_STACK_RANKS], *x = xfers(local, DT__TCP_STACK_RANKS, n);
    if (!x) return DT_ENOMEM;
    if (me == root) {
        for (int j = 0; j < n; j++) {
            if (j == me) continue;
            dt__tcp_frame f = dt__tcp_coll_frame(c, fp, 0, c->send_counts[j] * esz);
            dt__tcp_post_send(t, &x[j], j, &f, c->sendv[j], c->send_counts[j] * esz);
        }
    } else {
        dt__tcp_frame f = dt__tcp_coll_frame(c, fp, 0, c->send_counts[me] * esz);
        dt__tcp_post_recv(t, &x[0], root, &f, c->recv, c->send_counts[me] * esz);
    }
    rc = dt__tcp_wait_all(t, c->deadline_ns);
    if (x != local) dt_free(x);
    return rc;
}

int dt__tcp_alltoall(dt__tcp *t, const dt__coll *c)
{
    int n = t->size, me = t->rank, rc;
    size_t esz = dt_dtype_size(c->dtype);
    if (c->send_counts[me] != c->recv_counts[me])
        return dt__tcp_fail(t, DT_EMISMATCH, 0, "all_to_all #%llu: rank %d sends %zu elements to itself but expects %zu",
                            (unsigned long long)c->seq, me, c->send_counts[me], c->recv_counts[me]);
    if (c->send_counts[me] && c->recvv[me] != c->sendv[me])
        memmove(c->recvv[me], c->sendv[me], c->send_counts[me] * esz);
    if (n == 1) return 0;
    dt__tcp_xfer local[2 * DT__TCP_STACK_RANKS], *x = xfers(local, 2 * DT__TCP_STACK_RANKS, 2 * n);
    if (!x) return DT_ENOMEM;
    for (int j = 0; j < n; j++) {
        if (j == me) continue;
        dt__tcp_frame f = dt__tcp_coll_frame(c, 0, 0, c->send_counts[j] * esz);
        dt__tcp_post_send(t, &x[2 * j], j, &f, c->sendv[j], c->send_counts[j] * esz);
        f.len = c->recv_counts[j] * esz;
        dt__tcp_post_recv(t, &x[2 * j + 1], j, &f, c->recvv[j], c->recv_counts[j] * esz);
    }
    rc = dt__tcp_wait_all(t, c->deadline_ns);
    if (x != local) dt_free(x);
    return rc;
}

int dt__tcp_barrier(dt__tcp *t, const dt__coll *c)
{
    int n = t->size, me = t->rank;
    for (int k = 0, d = 1; d < n; k++, d *= 2) {
        dt__tcp_xfer x[2];
        dt__tcp_frame f = dt__tcp_coll_frame(c, 0, (uint32_t)k, 0);
        dt__tcp_post_send(t, &x[0], (me + d) % n, &f, NULL, 0);
        dt__tcp_post_recv(t, &x[1], (me - d + n) % n, &f, NULL, 0);
        DT_CHECK(dt__tcp_wait_all(t, c->deadline_ns));
    }
    return 0;
}
