/* The public collectives and point-to-point calls: each checks its
 * arguments on the calling thread (so a bad call fails at once, with no
 * communication), turns its variant into the backend's one descriptor
 * (dt__coll: pointer lists per rank, counts per rank) and submits it. */
#include "dist/dist_internal.h"
#include "dist/reduce.h"

#include <stdint.h>
#include <string.h>

#define DT__LIST_STACK 64

/* Per-rank pointer and count lists: on the stack up to 64 ranks. */
typedef struct {
    void *ptr_s[2][DT__LIST_STACK];
    size_t cnt_s[2][DT__LIST_STACK];
    void **ptr[2];
    size_t *cnt[2];
    void *heap;
} lists;

static int lists_init(lists *l, int n)
{
    l->heap = NULL;
    if (n <= DT__LIST_STACK) {
        for (int i = 0; i < 2; i++) l->ptr[i] = l->ptr_s[i], l->cnt[i] = l->cnt_s[i];
        return 0;
    }
    char *b = dt_alloc((size_t)n * 2 * (sizeof(void *) + sizeof(size_t)), DT_MEM_COMM);
    if (!b) return DT_ENOMEM;
    l->heap = b;
    for (int i = 0; i < 2; i++) {
        l->ptr[i] = (void **)(b + (size_t)i * n * sizeof(void *));
        l->cnt[i] = (size_t *)(b + 2 * (size_t)n * sizeof(void *) + (size_t)i * n * sizeof(size_t));
    }
    return 0;
}

static int prep(dt_pg *pg, const char *what, dt_dtype dtype)
{
    DT_CHECK(dt__pg_usable(pg, what));
    if ((unsigned)dtype >= DT_DTYPE_COUNT) return dt_set_error(DT_EINVAL, "%s: unknown dtype %d", what, (int)dtype);
    return 0;
}

static int check_buf(const void *p, size_t count, dt_dtype dtype, const char *what, const char *name)
{
    size_t bytes;
    if (__builtin_mul_overflow(count, dt_dtype_size(dtype), &bytes) || bytes > SIZE_MAX / 8) return dt_set_error(DT_EINVAL, "%s: count %zu too large", what, count);
    if (count && !p) return dt_set_error(DT_EINVAL, "%s: %s is NULL with count %zu", what, name, count);
    return 0;
}

static int check_root(const dt_pg *pg, int root, const char *what)
{
    if (root < 0 || root >= pg->size)
        return dt_set_error(DT_EINVAL, "%s: root %d outside group '%s' of %d", what, root, pg->name, pg->size);
    return 0;
}

/* Fill ptrs[i] = base + displ_i (displacements from counts) for n ranks. */
static void offsets(void **ptrs, const void *base, const size_t *counts, int n, size_t esz)
{
    const char *q = base;
    for (int i = 0; i < n; i++) {
        ptrs[i] = (void *)q;
        if (q) q += counts[i] * esz;
    }
}

static int submit_lists(dt_pg *pg, dt_work *w, lists *l, dt_work **work)
{
    int rc = dt__pg_submit(pg, w, work);
    dt_free(l->heap);
    return rc;
}

int dt_pg_allreduce(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype, dt_redop op,
                    const dt_op_opts *o, dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "all_reduce", dtype));
    DT_CHECK(dt__redop_check(dtype, op));
    DT_CHECK(check_buf(send, count, dtype, "all_reduce", "send"));
    DT_CHECK(check_buf(recv, count, dtype, "all_reduce", "recv"));
    dt_work w;
    dt__work_init(&w, pg, o);
    w.c.kind = DT__OP_ALLREDUCE;
    w.c.dtype = dtype;
    w.c.redop = op;
    w.c.send = send;
    w.c.recv = recv;
    w.c.count = count;
    return dt__pg_submit(pg, &w, work);
}

int dt_pg_reduce(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype, dt_redop op, int root,
                 const dt_op_opts *o, dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "reduce", dtype));
    DT_CHECK(dt__redop_check(dtype, op));
    DT_CHECK(check_root(pg, root, "reduce"));
    DT_CHECK(check_buf(send, count, dtype, "reduce", "send"));
    if (pg->rank == root) DT_CHECK(check_buf(recv, count, dtype, "reduce", "recv"));
    dt_work w;
    dt__work_init(&w, pg, o);
    w.c.kind = DT__OP_REDUCE;
    w.c.dtype = dtype;
    w.c.redop = op;
    w.c.root = root;
    w.c.send = send;
    w.c.recv = pg->rank == root ? recv : NULL;
    w.c.count = count;
    return dt__pg_submit(pg, &w, work);
}

int dt_pg_broadcast(dt_pg *pg, void *buf, size_t count, dt_dtype dtype, int root, const dt_op_opts *o,
                    dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "broadcast", dtype));
    DT_CHECK(check_root(pg, root, "broadcast"));
    DT_CHECK(check_buf(buf, count, dtype, "broadcast", "buf"));
    dt_work w;
    dt__work_init(&w, pg, o);
    w.c.kind = DT__OP_BROADCAST;
    w.c.dtype = dtype;
    w.c.root = root;
    w.c.recv = buf;
    w.c.count = count;
    return dt__pg_submit(pg, &w, work);
}

/* all_gather and gather in every form: recvv NULL on ranks that receive nothing. */
static int gather_common(dt_pg *pg, dt__op_kind kind, int root, const void *send, lists *l, bool out_here,
                         dt_dtype dtype, const dt_op_opts *o, dt_work **work)
{
    dt_work w;
    dt__work_init(&w, pg, o);
    w.c.kind = kind;
    w.c.dtype = dtype;
    w.c.root = root;
    w.c.send = send;
    w.c.recvv = out_here ? (void *const *)l->ptr[1] : NULL;
    w.c.recv_counts = l->cnt[1];
    return submit_lists(pg, &w, l, work);
}

int dt_pg_allgather(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype, const dt_op_opts *o,
                    dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "all_gather", dtype));
    DT_CHECK(check_buf(send, count, dtype, "all_gather", "send"));
    DT_CHECK(check_buf(recv, count * (size_t)pg->size, dtype, "all_gather", "recv"));
    lists l;
    DT_CHECK(lists_init(&l, pg->size));
    for (int i = 0; i < pg->size; i++) l.cnt[1][i] = count;
    offsets(l.ptr[1], recv, l.cnt[1], pg->size, dt_dtype_size(dtype));
    return gather_common(pg, DT__OP_ALLGATHER, 0, send, &l, true, dtype, o, work);
}

int dt_pg_allgatherv(dt_pg *pg, const void *send, size_t send_count, void *recv, const size_t *recv_counts,
                     dt_dtype dtype, const dt_op_opts *o, dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "all_gather", dtype));
    if (!recv_counts) return dt_set_error(DT_EINVAL, "all_gather: recv_counts is NULL");
    if (recv_counts[pg->rank] != send_count)
        return dt_set_error(DT_EINVAL, "all_gather: send_count %zu but recv_counts[%d] = %zu", send_count, pg->rank,
                            recv_counts[pg->rank]);
    size_t total = 0;
    for (int i = 0; i < pg->size; i++) total += recv_counts[i];
    DT_CHECK(check_buf(send, send_count, dtype, "all_gather", "send"));
    DT_CHECK(check_buf(recv, total, dtype, "all_gather", "recv"));
    lists l;
    DT_CHECK(lists_init(&l, pg->size));
    memcpy(l.cnt[1], recv_counts, (size_t)pg->size * sizeof(size_t));
    offsets(l.ptr[1], recv, l.cnt[1], pg->size, dt_dtype_size(dtype));
    return gather_common(pg, DT__OP_ALLGATHER, 0, send, &l, true, dtype, o, work);
}

int dt_pg_allgather_list(dt_pg *pg, const void *send, void *const *recv_list, size_t count, dt_dtype dtype,
                         const dt_op_opts *o, dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "all_gather", dtype));
    DT_CHECK(check_buf(send, count, dtype, "all_gather", "send"));
    if (!recv_list) return dt_set_error(DT_EINVAL, "all_gather: recv_list is NULL");
    for (int i = 0; i < pg->size; i++) DT_CHECK(check_buf(recv_list[i], count, dtype, "all_gather", "recv_list[i]"));
    lists l;
    DT_CHECK(lists_init(&l, pg->size));
    for (int i = 0; i < pg->size; i++) l.cnt[1][i] = count, l.ptr[1][i] = recv_list[i];
    return gather_common(pg, DT__OP_ALLGATHER, 0, send, &l, true, dtype, o, work);
}

int dt_pg_gather(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype, int root,
                 const dt_op_opts *o, dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "gather", dtype));
    DT_CHECK(check_root(pg, root, "gather"));
    DT_CHECK(check_buf(send, count, dtype, "gather", "send"));
    if (pg->rank == root) DT_CHECK(check_buf(recv, count * (size_t)pg->size, dtype, "gather", "recv"));
    lists l;
    DT_CHECK(lists_init(&l, pg->size));
    for (int i = 0; i < pg->size; i++) l.cnt[1][i] = count;
    offsets(l.ptr[1], pg->rank == root ? recv : NULL, l.cnt[1], pg->size, dt_dtype_size(dtype));
    return gather_common(pg, DT__OP_GATHER, root, send, &l, pg->rank == root, dtype, o, work);
}

int dt_pg_scatter(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype, int root,
                  const dt_op_opts *o, dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "scatter", dtype));
    DT_CHECK(check_root(pg, root, "scatter"));
    DT_CHECK(check_buf(recv, count, dtype, "scatter", "recv"));
    if (pg->rank == root) DT_CHECK(check_buf(send, count * (size_t)pg->size, dtype, "scatter", "send"));
    lists l;
    DT_CHECK(lists_init(&l, pg->size));
    for (int i = 0; i < pg->size; i++) l.cnt[0][i] = count;
    offsets(l.ptr[0], pg->rank == root ? send : NULL, l.cnt[0], pg->size, dt_dtype_size(dtype));
    dt_work w;
    dt__work_init(&w, pg, o);
    w.c.kind = DT__OP_SCATTER;
    w.c.dtype = dtype;
    w.c.root = root;
    w.c.recv = recv;
    w.c.sendv = pg->rank == root ? (const void *const *)l.ptr[0] : NULL;
    w.c.send_counts = l.cnt[0];
    return submit_lists(pg, &w, &l, work);
}

int dt_pg_reduce_scatter(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype, dt_redop op,
                         const dt_op_opts *o, dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "reduce_scatter", dtype));
    DT_CHECK(dt__redop_check(dtype, op));
    DT_CHECK(check_buf(send, count * (size_t)pg->size, dtype, "reduce_scatter", "send"));
    DT_CHECK(check_buf(recv, count, dtype, "reduce_scatter", "recv"));
    lists l;
    DT_CHECK(lists_init(&l, pg->size));
    for (int i = 0; i < pg->size; i++) l.cnt[1][i] = count;
    offsets(l.ptr[0], send, l.cnt[1], pg->size, dt_dtype_size(dtype));
    dt_work w;
    dt__work_init(&w, pg, o);
    w.c.kind = DT__OP_REDUCE_SCATTER;
    w.c.dtype = dtype;
    w.c.redop = op;
    w.c.recv = recv;
    w.c.sendv = (const void *const *)l.ptr[0];
    w.c.recv_counts = l.cnt[1];
    return submit_lists(pg, &w, &l, work);
}

int dt_pg_alltoallv(dt_pg *pg, const void *send, const size_t *send_counts, void *recv, const size_t *recv_counts,
                    dt_dtype dtype, const dt_op_opts *o, dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "all_to_all", dtype));
    if (!send_counts || !recv_counts) return dt_set_error(DT_EINVAL, "all_to_all: NULL count list");
    size_t st = 0, rt = 0;
    for (int i = 0; i < pg->size; i++) st += send_counts[i], rt += recv_counts[i];
    DT_CHECK(check_buf(send, st, dtype, "all_to_all", "send"));
    DT_CHECK(check_buf(recv, rt, dtype, "all_to_all", "recv"));
    lists l;
    DT_CHECK(lists_init(&l, pg->size));
    memcpy(l.cnt[0], send_counts, (size_t)pg->size * sizeof(size_t));
    memcpy(l.cnt[1], recv_counts, (size_t)pg->size * sizeof(size_t));
    offsets(l.ptr[0], send, l.cnt[0], pg->size, dt_dtype_size(dtype));
    offsets(l.ptr[1], recv, l.cnt[1], pg->size, dt_dtype_size(dtype));
    dt_work w;
    dt__work_init(&w, pg, o);
    w.c.kind = DT__OP_ALLTOALL;
    w.c.dtype = dtype;
    w.c.sendv = (const void *const *)l.ptr[0];
    w.c.send_counts = l.cnt[0];
    w.c.recvv = (void *const *)l.ptr[1];
    w.c.recv_counts = l.cnt[1];
    return submit_lists(pg, &w, &l, work);
}

int dt_pg_alltoall(dt_pg *pg, const void *send, void *recv, size_t count, dt_dtype dtype, const dt_op_opts *o,
                   dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "all_to_all", dtype));
    size_t stack[DT__LIST_STACK], *counts = pg->size <= DT__LIST_STACK ? stack : dt_alloc((size_t)pg->size * sizeof(size_t), DT_MEM_COMM);
    if (!counts) return DT_ENOMEM;
    for (int i = 0; i < pg->size; i++) counts[i] = count;
    int rc = dt_pg_alltoallv(pg, send, counts, recv, counts, dtype, o, work);
    if (counts != stack) dt_free(counts);
    return rc;
}

int dt_pg_barrier(dt_pg *pg, const dt_op_opts *o, dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(prep(pg, "barrier", DT_U8));
    dt_work w;
    dt__work_init(&w, pg, o);
    w.c.kind = DT__OP_BARRIER;
    w.c.dtype = DT_U8;
    return dt__pg_submit(pg, &w, work);
}

/* ------------------------------------------------------- point to point */

static int check_p2p(const dt_pg *pg, const dt_p2p_op *op, int i)
{
    const char *what = op->kind == DT_P2P_SEND ? "send" : "recv";
    if (op->kind != DT_P2P_SEND && op->kind != DT_P2P_RECV) return dt_set_error(DT_EINVAL, "batch_p2p: op %d has kind %d", i, (int)op->kind);
    if ((unsigned)op->dtype >= DT_DTYPE_COUNT) return dt_set_error(DT_EINVAL, "%s: unknown dtype %d", what, (int)op->dtype);
    DT_CHECK(check_buf(op->buf, op->count, op->dtype, what, "buf"));
    bool any = op->kind == DT_P2P_RECV && op->peer == DT_ANY_SOURCE;
    if (!any && (op->peer < 0 || op->peer >= pg->size))
        return dt_set_error(DT_EINVAL, "%s: peer %d outside group '%s' of %d", what, op->peer, pg->name, pg->size);
    return 0;
}

int dt_pg_batch_p2p(dt_pg *pg, const dt_p2p_op *ops, int nops, const dt_op_opts *o, dt_work **work)
{
    if (work) *work = NULL;
    DT_CHECK(dt__pg_usable(pg, "batch_p2p"));
    if (nops < 0 || (nops && !ops)) return dt_set_error(DT_EINVAL, "batch_p2p: %d ops at %p", nops, (const void *)ops);
    for (int i = 0; i < nops; i++) DT_CHECK(check_p2p(pg, &ops[i], i));
    dt__p2p stack[8], *m = nops <= 8 ? stack : dt_alloc((size_t)nops * sizeof *m, DT_MEM_COMM);
    if (!m) return DT_ENOMEM;
    for (int i = 0; i < nops; i++)
        m[i] = (dt__p2p){.kind = ops[i].kind, .buf = ops[i].buf, .bytes = ops[i].count * dt_dtype_size(ops[i].dtype),
                         .peer = ops[i].peer, .tag = ops[i].tag, .source = -1};
    dt_work w;
    dt__work_init(&w, pg, o);
    w.is_p2p = true;
    w.p2p = m;
    w.np2p = nops;
    int rc = dt__pg_submit(pg, &w, work);
    int src = nops == 1 ? m[0].source : 0;
    if (m != stack) dt_free(m);
    return rc < 0 ? rc : (!work && nops == 1 && ops[0].kind == DT_P2P_RECV ? src : 0);
}

int dt_pg_send(dt_pg *pg, const void *buf, size_t count, dt_dtype dtype, int dst, int tag, const dt_op_opts *o,
               dt_work **work)
{
    if (work) *work = NULL;
    dt_p2p_op op = {.kind = DT_P2P_SEND, .buf = (void *)buf, .count = count, .dtype = dtype, .peer = dst, .tag = tag};
    return dt_pg_batch_p2p(pg, &op, 1, o, work);
}

int dt_pg_recv(dt_pg *pg, void *buf, size_t count, dt_dtype dtype, int src, int tag, const dt_op_opts *o,
               dt_work **work)
{
    if (work) *work = NULL;
    dt_p2p_op op = {.kind = DT_P2P_RECV, .buf = buf, .count = count, .dtype = dtype, .peer = src, .tag = tag};
    return dt_pg_batch_p2p(pg, &op, 1, o, work);
}
