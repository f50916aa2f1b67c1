/* Point to point over real processes, world sizes 2 to 4: send/recv,
 * isend/irecv (the ring exchange, on one rank a message to itself, whose large messages only complete when both
 * directions progress together), batch_p2p, recv from any source, several
 * messages in flight between one pair, tag and size matching; every dtype,
 * counts 0, 1, odd and large (many channel chunks). Values identify the
 * sender, the message and the element (values.h), so a message delivered to
 * the wrong receive is caught. */
#include "spawn.h"
#include "values.h"

static const size_t COUNTS[] = {0, 1, 7, 3001, 140003};
#define NCOUNTS (sizeof COUNTS / sizeof COUNTS[0])

static void *xalloc(size_t n) { void *p = calloc(n ? n : 1, 1); DT_ASSERT(p); return p; }

/* The value of element i of message m from rank src (exact in every dtype). */
static double mval(int src, int m, size_t i) { return val(src + m, i); }

static void fill(dt_dtype t, void *b, size_t count, int src, int m)
{
    for (size_t i = 0; i < count; i++) put_el(t, b, i, mval(src, m, i));
}

static void expect(dt_dtype t, const void *b, size_t count, int src, int m, const char *what)
{
    for (size_t i = 0; i < count; i++) {
        double g = get_el(t, b, i), w = mval(src, m, i);
        DT_ASSERT_MSG(g == w, "%s %s count %zu from %d msg %d: [%zu] = %g, want %g", what, dt_dtype_name(t), count,
                      src, m, i, g, w);
    }
}

/* Blocking send/recv: pairs (2k, 2k+1), the even rank sends first. */
static void blocking(dt_pg *pg, dt_dtype t, size_t count)
{
    int r = dt_pg_rank(pg), n = dt_pg_size(pg), peer = r ^ 1;
    if (peer >= n) return;
    size_t esz = dt_dtype_size(t);
    char *a = xalloc(count * esz), *b = xalloc(count * esz);
    fill(t, a, count, r, 1);
    if (r % 2 == 0) {
        DT_ASSERT_OK(dt_pg_send(pg, a, count, t, peer, 3, NULL, NULL));
        DT_ASSERT_EQ(dt_pg_recv(pg, b, count, t, peer, 4, NULL, NULL), peer);
    } else {
        DT_ASSERT_EQ(dt_pg_recv(pg, b, count, t, peer, 3, NULL, NULL), peer);
        DT_ASSERT_OK(dt_pg_send(pg, a, count, t, peer, 4, NULL, NULL));
    }
    expect(t, b, count, peer, 1, "send/recv");
    free(a);
    free(b);
}

/* Ring: every rank isends to r+1 and irecvs from r-1, both in flight at once. */
static void ring(dt_pg *pg, dt_dtype t, size_t count)
{
    int r = dt_pg_rank(pg), n = dt_pg_size(pg), next = (r + 1) % n, prev = (r + n - 1) % n;
    size_t esz = dt_dtype_size(t);
    char *a = xalloc(count * esz), *b = xalloc(count * esz);
    fill(t, a, count, r, 2);
    dt_work *ws = NULL, *wr = NULL;
    DT_ASSERT_OK(dt_pg_send(pg, a, count, t, next, 7, NULL, &ws));
    DT_ASSERT_OK(dt_pg_recv(pg, b, count, t, prev, 7, NULL, &wr));
    DT_ASSERT_OK(dt_work_wait(wr, -1));
    DT_ASSERT_OK(dt_work_wait(ws, -1));
    DT_ASSERT(dt_work_is_completed(ws) && dt_work_is_completed(wr));
    DT_ASSERT_EQ(dt_work_source(wr), prev);
    dt_work_free(ws);
    dt_work_free(wr);
    expect(t, b, count, prev, 2, "ring isend/irecv");
    /* the other way round: irecv issued before isend */
    memset(b, 0, count * esz);
    DT_ASSERT_OK(dt_pg_recv(pg, b, count, t, next, 8, NULL, &wr));
    DT_ASSERT_OK(dt_pg_send(pg, a, count, t, prev, 8, NULL, &ws));
    DT_ASSERT_OK(dt_work_wait(ws, -1));
    DT_ASSERT_OK(dt_work_wait(wr, -1));
    dt_work_free(ws);
    dt_work_free(wr);
    expect(t, b, count, next, 2, "ring irecv/isend");
    free(a);
    free(b);
}

/* One batch: a message to and from every other rank. */
static void batch(dt_pg *pg, dt_dtype t, size_t count)
{
    int r = dt_pg_rank(pg), n = dt_pg_size(pg);
    size_t esz = dt_dtype_size(t);
    char *a = xalloc(count * esz), *b = xalloc(count * esz * n);
    fill(t, a, count, r, 3);
    dt_p2p_op ops[8];
    int k = 0;
    for (int q = 0; q < n; q++) {
        if (q == r) continue;
        ops[k++] = (dt_p2p_op){.kind = DT_P2P_SEND, .buf = a, .count = count, .dtype = t, .peer = q, .tag = 9};
        ops[k++] = (dt_p2p_op){.kind = DT_P2P_RECV, .buf = b + q * count * esz, .count = count, .dtype = t, .peer = q,
                               .tag = 9};
    }
    DT_ASSERT_OK(dt_pg_batch_p2p(pg, ops, k, NULL, NULL));
    for (int q = 0; q < n; q++)
        if (q != r) expect(t, b + q * count * esz, count, q, 3, "batch_p2p");
    /* asynchronous batch */
    memset(b, 0, count * esz * n);
    dt_work *w = NULL;
    DT_ASSERT_OK(dt_pg_batch_p2p(pg, ops, k, NULL, &w));
    DT_ASSERT_OK(dt_work_wait(w, -1));
    dt_work_free(w);
    for (int q = 0; q < n; q++)
        if (q != r) expect(t, b + q * count * esz, count, q, 3, "async batch_p2p");
    free(a);
    free(b);
}

/* Rank 0 receives from any source, n-1 times; the source each recv reports
 * matches the data. Then tags select: rank q sends tag 100+q, rank 0 asks
 * for the tags in descending order. */
static void any_source(dt_pg *pg, dt_dtype t, size_t count)
{
    int r = dt_pg_rank(pg), n = dt_pg_size(pg);
    size_t esz = dt_dtype_size(t);
    char *a = xalloc(count * esz);
    if (r == 0) {
        unsigned seen = 0;
        for (int k = 1; k < n; k++) {
            int src = dt_pg_recv(pg, a, count, t, DT_ANY_SOURCE, 11, NULL, NULL);
            DT_ASSERT_MSG(src >= 1 && src < n, "recv(any) returned %d: %s", src, dt_last_error());
            DT_ASSERT_MSG(!(seen & (1u << src)), "source %d twice", src);
            seen |= 1u << src;
            expect(t, a, count, src, 4, "recv any source");
        }
        for (int q = n - 1; q >= 1; q--) {
            dt_work *w = NULL;
            DT_ASSERT_OK(dt_pg_recv(pg, a, count, t, DT_ANY_SOURCE, 100 + q, NULL, &w));
            DT_ASSERT_OK(dt_work_wait(w, -1));
            DT_ASSERT_EQ(dt_work_source(w), q);
            dt_work_free(w);
            expect(t, a, count, q, 5, "recv any source by tag");
        }
    } else {
        fill(t, a, count, r, 4);
        DT_ASSERT_OK(dt_pg_send(pg, a, count, t, 0, 11, NULL, NULL));
        fill(t, a, count, r, 5);
        dt_work *w = NULL;
        DT_ASSERT_OK(dt_pg_send(pg, a, count, t, 0, 100 + r, NULL, &w));
        DT_ASSERT_OK(dt_work_wait(w, -1));
        dt_work_free(w);
    }
    free(a);
}

/* Several messages in flight from 0 to 1, received in order by separate
 * irecvs and by one batch of recvs from the same source (they must be taken
 * in the order given, whatever arrives when). */
static void in_order(dt_pg *pg, dt_dtype t, size_t count)
{
    int r = dt_pg_rank(pg);
    if (r > 1 || dt_pg_size(pg) < 2) return;
    size_t esz = dt_dtype_size(t);
    enum { M = 4 };
    char *buf[M];
    dt_work *w[M];
    for (int m = 0; m < M; m++) buf[m] = xalloc(count * esz);
    for (int round = 0; round < 2; round++) {
        if (r == 0) {
            for (int m = 0; m < M; m++) {
                fill(t, buf[m], count, 0, 10 + m);
                DT_ASSERT_OK(dt_pg_send(pg, buf[m], count, t, 1, 20, NULL, &w[m]));
            }
            for (int m = 0; m < M; m++) {
                DT_ASSERT_OK(dt_work_wait(w[m], -1));
                dt_work_free(w[m]);
            }
        } else if (round == 0) {
            for (int m = 0; m < M; m++) DT_ASSERT_OK(dt_pg_recv(pg, buf[m], count, t, 0, 20, NULL, &w[m]));
            for (int m = M - 1; m >= 0; m--) {
                DT_ASSERT_OK(dt_work_wait(w[m], -1));
                dt_work_free(w[m]);
            }
        } else {
            dt_p2p_op ops[M];
            for (int m = 0; m < M; m++)
                ops[m] = (dt_p2p_op){.kind = DT_P2P_RECV, .buf = buf[m], .count = count, .dtype = t, .peer = 0, .tag = 20};
            DT_ASSERT_OK(dt_pg_batch_p2p(pg, ops, M, NULL, NULL));
        }
        if (r == 1)
            for (int m = 0; m < M; m++) expect(t, buf[m], count, 0, 10 + m, round ? "batch in order" : "irecv in order");
    }
    for (int m = 0; m < M; m++) free(buf[m]);
}

static void matrix(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    for (int t = 0; t < DT_DTYPE_COUNT; t++)
        for (size_t k = 0; k < NCOUNTS; k++) {
            size_t count = COUNTS[k];
            blocking(pg, t, count);
            ring(pg, t, count);
            batch(pg, t, count);
            any_source(pg, t, count);
            in_order(pg, t, count);
            DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
        }
    /* p2p and collectives interleave on one group */
    float x = 1;
    DT_ASSERT_OK(dt_pg_allreduce(pg, &x, &x, 1, DT_F32, DT_RED_SUM, NULL, NULL));
    DT_ASSERT_NEAR(x, n, 0);
    DT_ASSERT_EQ(dt_pg_error(pg), 0);
    dt_destroy_process_group(pg);
}

/* A recv whose tag or size differs from the next message from its source
 * fails with DT_EMISMATCH naming both, and the group is failed after. */
static void mismatch(int rank, int n, void *arg)
{
    int which = *(int *)arg; /* 0: tag, 1: size */
    dt_pg *pg = test_pg(rank, n, 20000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    int32_t v[4] = {1, 2, 3, 4};
    if (rank == 0) {
        DT_ASSERT_OK(dt_pg_send(pg, v, 2, DT_I32, 1, 5, NULL, NULL));
    } else {
        int rc = dt_pg_recv(pg, v, which ? 3 : 2, DT_I32, 0, which ? 5 : 6, NULL, NULL);
        DT_ASSERT_EQ(rc, DT_EMISMATCH);
        const char *e = dt_last_error();
        DT_ASSERT_CONTAINS(e, "rank 0 sent a message of 8 bytes with tag 5");
        DT_ASSERT_CONTAINS(e, which ? "expects 12 bytes with tag 5" : "expects 8 bytes with tag 6");
        DT_ASSERT_EQ(dt_pg_error(pg), DT_EMISMATCH);
        DT_ASSERT_ERR(dt_pg_send(pg, v, 1, DT_I32, 0, 1, NULL, NULL), DT_ESTATE);
    }
    dt_destroy_process_group(pg);
}

/* Bad arguments fail at once, without communication, and leave the group usable. */
static void bad_args(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 20000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    float f = 0;
    DT_ASSERT_ERR(dt_pg_send(pg, &f, 1, DT_F32, n, 0, NULL, NULL), DT_EINVAL);
    DT_ASSERT_ERR(dt_pg_send(pg, &f, 1, DT_F32, DT_ANY_SOURCE, 0, NULL, NULL), DT_EINVAL);
    DT_ASSERT_ERR(dt_pg_recv(pg, NULL, 1, DT_F32, 0, 0, NULL, NULL), DT_EINVAL);
    DT_ASSERT_EQ(dt_pg_error(pg), 0);
    DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
    dt_destroy_process_group(pg);
}

static void t_world1(void) { DT_ASSERT_EQ(spawn_ranks(1, matrix, NULL, 0), 0); } /* to and from itself */
static void t_world2(void) { DT_ASSERT_EQ(spawn_ranks(2, matrix, NULL, 0), 0); }
static void t_world3(void) { DT_ASSERT_EQ(spawn_ranks(3, matrix, NULL, 0), 0); }
static void t_world4(void) { DT_ASSERT_EQ(spawn_ranks(4, matrix, NULL, 0), 0); }
static void t_mismatch_tag(void) { int w = 0; DT_ASSERT_EQ(spawn_ranks(2, mismatch, &w, 0), 0); }
static void t_mismatch_size(void) { int w = 1; DT_ASSERT_EQ(spawn_ranks(2, mismatch, &w, 0), 0); }
static void t_bad_args(void) { DT_ASSERT_EQ(spawn_ranks(2, bad_args, NULL, 0), 0); }

int main(void)
{
    DT_RUN(t_bad_args);
    DT_RUN(t_mismatch_tag);
    DT_RUN(t_mismatch_size);
    DT_RUN(t_world1);
    DT_RUN(t_world2);
    DT_RUN(t_world3);
    DT_RUN(t_world4);
    return DT_TEST_END();
}
