/* Every collective, every dtype, counts 0, 1, odd and large (past one staging
 * slot), in place and out of place, on world sizes 1 to 4 of real processes;
 * results checked against values computed here (values.h). */
#include "spawn.h"
#include "values.h"
#include "dist/reduce.h"

static const size_t COUNTS[] = {0, 1, 7, 3001, 140003};
#define NCOUNTS (sizeof COUNTS / sizeof COUNTS[0])

static void *xalloc(size_t n) { void *p = calloc(n ? n : 1, 1); DT_ASSERT(p); return p; }

static bool op_ok(dt_dtype t, dt_redop op)
{
    bool fl = dt_dtype_is_float(t);
    if (!fl && (op == DT_RED_AVG || op == DT_RED_PREMUL_SUM)) return false;
    if (fl && (op == DT_RED_BAND || op == DT_RED_BOR || op == DT_RED_BXOR)) return false;
    return true;
}

#define CHECK_EL(t, buf, i, want, tol, what)                                                          \
    do {                                                                                              \
        double g__ = get_el(t, buf, i), w__ = (want);                                                 \
        DT_ASSERT_MSG(fabs(g__ - w__) <= (tol), "%s %s: [%zu] = %g, want %g", what, dt_dtype_name(t), \
                      (size_t)(i), g__, w__);                                                         \
    } while (0)

static void reductions(dt_pg *pg, dt_dtype t, size_t count, bool in_place)
{
    int r = dt_pg_rank(pg), n = dt_pg_size(pg);
    size_t esz = dt_dtype_size(t);
    char *send = xalloc(count * esz), *recv = xalloc(count * esz);
    dt_op_opts o = DT_OP_OPTS_INIT;
    o.premul = 0.5;
    for (int op = 0; op < DT_RED_COUNT; op++) {
        if (!op_ok(t, op)) {
            DT_ASSERT_ERR(dt_pg_allreduce(pg, send, recv, count, t, op, &o, NULL), DT_EINVAL);
            continue;
        }
        for (size_t i = 0; i < count; i++) put_el(t, send, i, rval(op, r, i));
        char *out = in_place ? send : recv;
        DT_ASSERT_OK(dt_pg_allreduce(pg, send, out, count, t, op, &o, NULL));
        for (size_t i = 0; i < count; i++) {
            double w = expect_red(op, n, i);
            CHECK_EL(t, out, i, w, tol_of(t, op, w), dt_redop_name(op));
        }
        /* reduce to the last rank; the others' recv is not touched */
        int root = n - 1;
        for (size_t i = 0; i < count; i++) put_el(t, send, i, rval(op, r, i)), put_el(t, recv, i, 99);
        DT_ASSERT_OK(dt_pg_reduce(pg, send, in_place && r == root ? send : recv, count, t, op, root, &o, NULL));
        for (size_t i = 0; i < count; i++) {
            double w = r == root ? expect_red(op, n, i) : 99;
            CHECK_EL(t, in_place && r == root ? send : recv, i, w, tol_of(t, op, w), "reduce");
        }
    }
    free(send);
    free(recv);
}

static void reduce_scatter(dt_pg *pg, dt_dtype t, size_t count)
{
    int r = dt_pg_rank(pg), n = dt_pg_size(pg);
    size_t esz = dt_dtype_size(t);
    char *send = xalloc(count * n * esz), *recv = xalloc(count * esz);
    dt_redop ops[] = {DT_RED_SUM, DT_RED_MAX};
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < count * n; i++) put_el(t, send, i, val(r, i));
        DT_ASSERT_OK(dt_pg_reduce_scatter(pg, send, recv, count, t, ops[k], NULL, NULL));
        for (size_t i = 0; i < count; i++) {
            size_t g = (size_t)r * count + i;
            double w = val(0, g);
            for (int q = 1; q < n; q++) w = ops[k] == DT_RED_SUM ? w + val(q, g) : fmax(w, val(q, g));
            CHECK_EL(t, recv, i, w, 0, "reduce_scatter");
        }
    }
    free(send);
    free(recv);
}

static void movers(dt_pg *pg, dt_dtype t, size_t count)
{
    int r = dt_pg_rank(pg), n = dt_pg_size(pg);
    size_t esz = dt_dtype_size(t);
    char *buf = xalloc(count * esz), *all = xalloc(count * n * esz + n * (n + 1) * esz);
    /* broadcast */
    int root = 1 % n;
    for (size_t i = 0; i < count; i++) put_el(t, buf, i, r == root ? val(root, i) : 0);
    DT_ASSERT_OK(dt_pg_broadcast(pg, buf, count, t, root, NULL, NULL));
    for (size_t i = 0; i < count; i++) CHECK_EL(t, buf, i, val(root, i), 0, "broadcast");
    /* all_gather, even, out of place and in place */
    for (size_t i = 0; i < count; i++) put_el(t, buf, i, val(r, i));
    DT_ASSERT_OK(dt_pg_allgather(pg, buf, all, count, t, NULL, NULL));
    for (int q = 0; q < n; q++)
        for (size_t i = 0; i < count; i++) CHECK_EL(t, all, q * count + i, val(q, i), 0, "all_gather");
    memset(all, 0, count * n * esz);
    for (size_t i = 0; i < count; i++) put_el(t, all, r * count + i, val(r, i));
    DT_ASSERT_OK(dt_pg_allgather(pg, all + r * count * esz, all, count, t, NULL, NULL));
    for (int q = 0; q < n; q++)
        for (size_t i = 0; i < count; i++) CHECK_EL(t, all, q * count + i, val(q, i), 0, "all_gather in place");
    /* uneven: rank q gives count + q elements */
    size_t counts[4], off[5] = {0};
    for (int q = 0; q < n; q++) counts[q] = count + q, off[q + 1] = off[q] + counts[q];
    char *mine = xalloc(counts[r] * esz);
    for (size_t i = 0; i < counts[r]; i++) put_el(t, mine, i, val(r, i));
    DT_ASSERT_OK(dt_pg_allgatherv(pg, mine, counts[r], all, counts, t, NULL, NULL));
    for (int q = 0; q < n; q++)
        for (size_t i = 0; i < counts[q]; i++) CHECK_EL(t, all, off[q] + i, val(q, i), 0, "all_gatherv");
    /* into a list */
    void *list[4];
    for (int q = 0; q < n; q++) list[q] = xalloc(count * esz);
    DT_ASSERT_OK(dt_pg_allgather_list(pg, buf, list, count, t, NULL, NULL));
    for (int q = 0; q < n; q++) {
        for (size_t i = 0; i < count; i++) CHECK_EL(t, list[q], i, val(q, i), 0, "all_gather list");
        free(list[q]);
    }
    /* gather to 0 */
    memset(all, 0, count * n * esz);
    DT_ASSERT_OK(dt_pg_gather(pg, buf, r == 0 ? all : NULL, count, t, 0, NULL, NULL));
    if (r == 0)
        for (int q = 0; q < n; q++)
            for (size_t i = 0; i < count; i++) CHECK_EL(t, all, q * count + i, val(q, i), 0, "gather");
    /* scatter from the last rank */
    root = n - 1;
    for (int q = 0; q < n; q++)
        for (size_t i = 0; i < count; i++) put_el(t, all, q * count + i, r == root ? val(q, i) + 1 : 0);
    DT_ASSERT_OK(dt_pg_scatter(pg, r == root ? all : NULL, buf, count, t, root, NULL, NULL));
    for (size_t i = 0; i < count; i++) CHECK_EL(t, buf, i, val(r, i) + 1, 0, "scatter");
    free(mine);
    free(buf);
    free(all);
}

/* all_to_all: rank a sends (a*5 + b*3 + i) % 13 to rank b; with splits, a
 * sends split(a, b) = count/2 + (a + 2b) % 3 elements to b. */
static double a2a(int a, int b, size_t i) { return (double)((a * 5 + b * 3 + i) % 13); }
static size_t split(int a, int b, size_t count) { return count / 2 + (size_t)((a + 2 * b) % 3); }

static void alltoall(dt_pg *pg, dt_dtype t, size_t count)
{
    int r = dt_pg_rank(pg), n = dt_pg_size(pg);
    size_t esz = dt_dtype_size(t);
    char *send = xalloc(count * n * esz + 8 * esz * n), *recv = xalloc(count * n * esz + 8 * esz * n);
    for (int q = 0; q < n; q++)
        for (size_t i = 0; i < count; i++) put_el(t, send, q * count + i, a2a(r, q, i));
    DT_ASSERT_OK(dt_pg_alltoall(pg, send, recv, count, t, NULL, NULL));
    for (int q = 0; q < n; q++)
        for (size_t i = 0; i < count; i++) CHECK_EL(t, recv, q * count + i, a2a(q, r, i), 0, "all_to_all");
    size_t sc[4], rc[4], so = 0, ro = 0;
    for (int q = 0; q < n; q++) {
        sc[q] = split(r, q, count);
        rc[q] = split(q, r, count);
        for (size_t i = 0; i < sc[q]; i++) put_el(t, send, so + i, a2a(r, q, i));
        so += sc[q];
    }
    DT_ASSERT_OK(dt_pg_alltoallv(pg, send, sc, recv, rc, t, NULL, NULL));
    for (int q = 0; q < n; q++) {
        for (size_t i = 0; i < rc[q]; i++) CHECK_EL(t, recv, ro + i, a2a(q, r, i), 0, "all_to_all splits");
        ro += rc[q];
    }
    free(send);
    free(recv);
}

static void matrix(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    DT_ASSERT_MSG(strcmp(dt_pg_backend(pg), spawn_backend) == 0, "backend %s, want %s", dt_pg_backend(pg), spawn_backend);
    for (int t = 0; t < DT_DTYPE_COUNT; t++)
        for (size_t k = 0; k < NCOUNTS; k++) {
            size_t count = COUNTS[k];
            reductions(pg, t, count, k % 2 == 1);
            reduce_scatter(pg, t, count);
            movers(pg, t, count);
            alltoall(pg, t, count);
            DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
        }
    dt_destroy_process_group(pg);
}

/* Random floats, so the order of the additions shows in the bits: every rank
 * must get exactly the bytes of dt__reduce_n over the inputs in rank order,
 * for counts that take the small path, one segment and many. */
static float rnd(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 40) / (double)(1ull << 24) * 2.0 - 1.0) * 1000.0f;
}

static void fill(dt_dtype t, void *buf, size_t count, int rank, int salt)
{
    uint64_t s = (uint64_t)rank * 7919 + (uint64_t)salt * 104729 + 1;
    for (size_t i = 0; i < count; i++) put_el(t, buf, i, rnd(&s));
}

static void bits(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    static const size_t counts[] = {5, 20011, 1500007};
    static const dt_dtype types[] = {DT_F32, DT_BF16, DT_F64};
    static const dt_redop ops[] = {DT_RED_SUM, DT_RED_AVG, DT_RED_PREMUL_SUM};
    dt_op_opts o = DT_OP_OPTS_INIT;
    o.premul = 0.3;
    for (size_t k = 0; k < 3; k++)
        for (size_t ti = 0; ti < 3; ti++)
            for (size_t oi = 0; oi < 3; oi++) {
                dt_dtype t = types[ti];
                size_t count = counts[k], bytes = count * dt_dtype_size(t);
                int salt = (int)(k * 9 + ti * 3 + oi);
                char *in = xalloc(bytes * n), *want = xalloc(bytes), *got = xalloc(bytes);
                const void *ins[4];
                for (int q = 0; q < n; q++) fill(t, in + q * bytes, count, q, salt), ins[q] = in + q * bytes;
                dt__reduce_n(want, ins, n, count, t, ops[oi], o.premul);
                memcpy(got, in + rank * bytes, bytes);
                DT_ASSERT_OK(dt_pg_allreduce(pg, got, got, count, t, ops[oi], &o, NULL));
                size_t bad = 0;
                while (bad < bytes && got[bad] == want[bad]) bad++;
                DT_ASSERT_MSG(bad == bytes, "all_reduce %s %s count %zu: byte %zu differs from the rank-order reduction",
                              dt_dtype_name(t), dt_redop_name(ops[oi]), count, bad);
                free(in);
                free(want);
                free(got);
            }
    dt_destroy_process_group(pg);
}

static void t_bits(void)
{
    for (int n = 2; n <= 4; n++) DT_ASSERT_EQ(spawn_ranks(n, bits, NULL, 0), 0);
}

static void t_world1(void) { DT_ASSERT_EQ(spawn_ranks(1, matrix, NULL, 0), 0); }
static void t_world2(void) { DT_ASSERT_EQ(spawn_ranks(2, matrix, NULL, 0), 0); }
static void t_world3(void) { DT_ASSERT_EQ(spawn_ranks(3, matrix, NULL, 0), 0); }
static void t_world4(void) { DT_ASSERT_EQ(spawn_ranks(4, matrix, NULL, 0), 0); }

int main(int argc, char **argv)
{
    spawn_args(argc, argv);
    DT_RUN(t_world1);
    DT_RUN(t_world2);
    DT_RUN(t_world3);
    DT_RUN(t_world4);
    DT_RUN(t_bits);
    return DT_TEST_END();
}
