/* auto_worker: one rank of the multi-host test (test_auto_netns.sh). Joins
 * the default group with backend "auto" (or argv's) through env:// (RANK,
 * WORLD_SIZE, MASTER_ADDR, MASTER_PORT). The test says where ranks are:
 * DT_TEST_HOSTS="0,0,1,1" (the host of each world rank) and the backend
 * dt_pg_backend must report (DT_TEST_BACKEND).
 *
 *   auto_worker check [backend]
 *     every reduction and dtype of all_reduce at counts 0, 1, odd and large
 *     (in place and not), checked bit for bit against the documented
 *     hierarchical order computed here (hosts in order of their lowest rank,
 *     ranks of a host in order), reduce to every root, broadcast from every
 *     root, barrier (the last rank arrives late), all_gather (into one buffer,
 *     a list in reverse order, in place, uneven with an empty block),
 *     reduce_scatter (integers exactly; f32 average and bf16 sum with the
 *     bits of the matching block of all_reduce), send/recv, and subgroups (one spanning both hosts in scrambled order, one
 *     rank per host, one host); prints
 *       rank R world N local L/S backend B ok
 *       rank R desc <dt_pg_backend_desc>
 *   auto_worker victim V      after the checks of a small all_reduce, rank V
 *     SIGKILLs itself in the middle of a stream of large all_reduces; the
 *     others must fail with DT_EPEER naming rank V within the op timeout
 *     (DT_TEST_TIMEOUT_MS): "rank R: failed as expected after S s: <message>"
 *   auto_worker abort V       the same with rank V calling dt_pg_abort: DT_EABORTED
 *   auto_worker late V        rank V calls all_reduce only after everyone else's
 *     timeout: they must fail with DT_ETIMEOUT naming it
 *   auto_worker mismatch      rank 3 calls all_reduce with another count: every
 *     rank fails with DT_EMISMATCH: "rank R: mismatch detected: <message>"
 * Exits 1 with the error on stderr on any failure. */
#include <dtrain/dtrain.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_rank = -1;
static int hosts_of[64]; /* world rank -> host (from DT_TEST_HOSTS) */

#define FAIL(...)                                                                  \
    do {                                                                           \
        fprintf(stderr, "rank %d: ", g_rank);                                      \
        fprintf(stderr, __VA_ARGS__);                                              \
        fprintf(stderr, " (line %d; last error: %s)\n", __LINE__, dt_last_error()); \
        exit(1);                                                                   \
    } while (0)
#define CHECK(call)                                                                \
    do {                                                                           \
        int rc_ = (call);                                                          \
        if (rc_ < 0) FAIL("%s returned %s", #call, dt_strerror(rc_));              \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Rank r's i-th input: not exactly summable in floats, so the order shows. */
static double xval(dt_redop op, int r, size_t i)
{
    if (op == DT_RED_PRODUCT) return 1.0 + (double)((r + i) % 3) * 0.13;
    return (double)((r * 7 + i * 3) % 11 + 1) * 0.37 + 0.001 * r;
}

static void put(dt_dtype t, void *b, size_t i, double v)
{
    switch (t) {
    case DT_F32: ((float *)b)[i] = (float)v; break;
    case DT_F64: ((double *)b)[i] = v; break;
    case DT_BF16: ((uint16_t *)b)[i] = dt_f32_to_bf16((float)v); break;
    case DT_F16: ((uint16_t *)b)[i] = dt_f32_to_f16((float)v); break;
    case DT_I32: ((int32_t *)b)[i] = (int32_t)(v * 3); break;
    case DT_I64: ((int64_t *)b)[i] = (int64_t)(v * 3) + ((int64_t)1 << 40); break;
    case DT_U8: ((uint8_t *)b)[i] = (uint8_t)(v * 3); break;
    default: break;
    }
}

/* Element i of rank r's buffer as the library sees it (dtype t), in the
 * accumulation type (f32 for the halves). */
static double loadacc(dt_dtype t, dt_redop op, int r, size_t i)
{
    unsigned char b[8];
    put(t, b, 0, xval(op, r, i));
    switch (t) {
    case DT_F32: return *(float *)b;
    case DT_F64: return *(double *)b;
    case DT_BF16: return dt_bf16_to_f32(*(uint16_t *)b);
    case DT_F16: return dt_f16_to_f32(*(uint16_t *)b);
    case DT_I32: return *(int32_t *)b;
    case DT_I64: return (double)*(int64_t *)b;
    case DT_U8: return *(uint8_t *)b;
    default: return 0;
    }
}

/* The documented result for the group whose rank g is world rank wr[g]:
 * each host's ranks folded in group-rank order, then the hosts (numbered by
 * their lowest group rank) folded in that order; f32 accumulation for the
 * halves with one rounding; AVG divides once. Written to out[i]. */
static void expect(dt_dtype t, dt_redop op, double premul, const int *wr, int n, size_t i, void *out)
{
    int host_order[64], nh = 0;
    for (int g = 0; g < n; g++) {
        int k = 0;
        while (k < nh && host_order[k] != hosts_of[wr[g]]) k++;
        if (k == nh) host_order[nh++] = hosts_of[wr[g]];
    }
    if (t == DT_F64 || t == DT_F32 || t == DT_BF16 || t == DT_F16) {
        if (t == DT_F64) {
            double tot = 0, pre = premul;
            for (int k = 0; k < nh; k++) {
                double acc = 0;
                bool first = true;
                for (int g = 0; g < n; g++) {
                    if (hosts_of[wr[g]] != host_order[k]) continue;
                    double v = loadacc(t, op, wr[g], i);
                    if (first) acc = op == DT_RED_PREMUL_SUM ? v * pre : v;
                    else if (op == DT_RED_PRODUCT) acc *= v;
                    else if (op == DT_RED_MIN) acc = v < acc ? v : acc;
                    else if (op == DT_RED_MAX) acc = v > acc ? v : acc;
                    else if (op == DT_RED_PREMUL_SUM) acc += pre * v;
                    else acc += v;
                    first = false;
                }
                if (k == 0) tot = acc;
                else if (op == DT_RED_PRODUCT) tot *= acc;
                else if (op == DT_RED_MIN) tot = acc < tot ? acc : tot;
                else if (op == DT_RED_MAX) tot = acc > tot ? acc : tot;
                else tot += acc;
            }
            if (op == DT_RED_AVG) tot /= (double)n;
            ((double *)out)[i] = tot;
            return;
        }
        float tot = 0, pre = (float)premul;
        for (int k = 0; k < nh; k++) {
            float acc = 0;
            bool first = true;
            for (int g = 0; g < n; g++) {
                if (hosts_of[wr[g]] != host_order[k]) continue;
                float v = (float)loadacc(t, op, wr[g], i);
                if (first) acc = op == DT_RED_PREMUL_SUM ? v * pre : v;
                else if (op == DT_RED_PRODUCT) acc *= v;
                else if (op == DT_RED_MIN) acc = v < acc ? v : acc;
                else if (op == DT_RED_MAX) acc = v > acc ? v : acc;
                else if (op == DT_RED_PREMUL_SUM) acc += pre * v;
                else acc += v;
                first = false;
            }
            if (k == 0) tot = acc;
            else if (op == DT_RED_PRODUCT) tot *= acc;
            else if (op == DT_RED_MIN) tot = acc < tot ? acc : tot;
            else if (op == DT_RED_MAX) tot = acc > tot ? acc : tot;
            else tot += acc;
        }
        if (op == DT_RED_AVG) tot /= (float)n;
        if (t == DT_F32) ((float *)out)[i] = tot;
        else if (t == DT_BF16) ((uint16_t *)out)[i] = dt_f32_to_bf16(tot);
        else ((uint16_t *)out)[i] = dt_f32_to_f16(tot);
        return;
    }
    /* integers: exact in any order (wrapping) */
    uint64_t acc = 0;
    for (int g = 0; g < n; g++) {
        int64_t v = (int64_t)loadacc(t, op, wr[g], i);
        uint64_t u = (uint64_t)v;
        if (g == 0) { acc = u; continue; }
        switch (op) {
        case DT_RED_PRODUCT: acc *= u; break;
        case DT_RED_MIN: acc = (t == DT_U8 ? u < acc : (int64_t)u < (int64_t)acc) ? u : acc; break;
        case DT_RED_MAX: acc = (t == DT_U8 ? u > acc : (int64_t)u > (int64_t)acc) ? u : acc; break;
        case DT_RED_BAND: acc &= u; break;
        case DT_RED_BOR: acc |= u; break;
        case DT_RED_BXOR: acc ^= u; break;
        default: acc += u; break;
        }
    }
    if (t == DT_I32) ((int32_t *)out)[i] = (int32_t)(uint32_t)acc;
    else if (t == DT_I64) ((int64_t *)out)[i] = (int64_t)acc;
    else ((uint8_t *)out)[i] = (uint8_t)acc;
}

static bool valid(dt_dtype t, dt_redop op)
{
    bool fl = dt_dtype_is_float(t);
    if (fl) return op != DT_RED_BAND && op != DT_RED_BOR && op != DT_RED_BXOR;
    return op != DT_RED_AVG && op != DT_RED_PREMUL_SUM;
}

/* all_reduce (root < 0) or reduce to root of every op and dtype at the counts, on
 * group pg whose group rank g is world rank wr[g]. */
static void check_reductions(dt_pg *pg, const int *wr, const size_t *counts, int ncounts, int root, bool all_ops)
{
    static const dt_dtype types[] = {DT_F32, DT_F64, DT_BF16, DT_F16, DT_I32, DT_I64, DT_U8};
    int me = dt_pg_rank(pg), n = dt_pg_size(pg), w = wr[me];
    dt_op_opts o = DT_OP_OPTS_INIT;
    o.premul = 0.3;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int op = 0; op < DT_RED_COUNT; op++) {
            dt_dtype t = types[ti];
            if (!valid(t, (dt_redop)op) || (!all_ops && op != DT_RED_SUM && op != DT_RED_AVG)) continue;
            for (int ci = 0; ci < ncounts; ci++) {
                size_t count = counts[ci], esz = dt_dtype_size(t);
                unsigned char *in = malloc(count * esz + 1), *out = malloc(count * esz + 1),
                              *want = malloc(count * esz + 1);
                for (size_t i = 0; i < count; i++) {
                    put(t, in, i, xval((dt_redop)op, w, i));
                    expect(t, (dt_redop)op, o.premul, wr, n, i, want);
                }
                bool inplace = (ci + op) % 2;
                if (inplace) memcpy(out, in, count * esz);
                if (root < 0) CHECK(dt_pg_allreduce(pg, inplace ? out : in, out, count, t, op, &o, NULL));
                else CHECK(dt_pg_reduce(pg, inplace ? out : in, out, count, t, op, root, &o, NULL));
                if (root < 0 || root == me)
                    for (size_t i = 0; i < count; i++)
                        if (memcmp(out + i * esz, want + i * esz, esz) != 0) {
                            uint64_t a = 0, b = 0;
                            memcpy(&a, out + i * esz, esz < 8 ? esz : 8);
                            memcpy(&b, want + i * esz, esz < 8 ? esz : 8);
                            FAIL("group '%s' %s %s %s count %zu root %d: [%zu] bits %llx, want %llx", dt_pg_name(pg),
                                 root < 0 ? "all_reduce" : "reduce", dt_dtype_name(t), dt_redop_name((dt_redop)op),
                                 count, root, i, (unsigned long long)a, (unsigned long long)b);
                        }
                free(in);
                free(out);
                free(want);
            }
        }
}

static void check_broadcast(dt_pg *pg, size_t count)
{
    int me = dt_pg_rank(pg), n = dt_pg_size(pg);
    int32_t *b = malloc(count * sizeof *b + 4);
    for (int root = 0; root < n; root++) {
        for (size_t i = 0; i < count; i++) b[i] = me == root ? (int32_t)(root * 1000003 + i) : -1;
        CHECK(dt_pg_broadcast(pg, b, count, DT_I32, root, NULL, NULL));
        for (size_t i = 0; i < count; i++)
            if (b[i] != (int32_t)(root * 1000003 + i))
                FAIL("group '%s' broadcast from %d count %zu: [%zu] = %d", dt_pg_name(pg), root, count, i, b[i]);
    }
    free(b);
}

static void check_gathers(dt_pg *pg)
{
    int me = dt_pg_rank(pg), n = dt_pg_size(pg);
    enum { C = 1001 };
    int32_t *s = malloc(C * n * sizeof *s), *r = malloc(C * n * sizeof *r);
    for (int i = 0; i < C; i++) s[i] = me * 100000 + i;
    CHECK(dt_pg_allgather(pg, s, r, C, DT_I32, NULL, NULL));
    for (int j = 0; j < n; j++)
        for (int i = 0; i < C; i++)
            if (r[j * C + i] != j * 100000 + i) FAIL("all_gather [%d][%d] = %d", j, i, r[j * C + i]);
    for (int i = 0; i < C * n; i++) s[i] = me + i;
    CHECK(dt_pg_reduce_scatter(pg, s, r, C, DT_I32, DT_RED_SUM, NULL, NULL));
    for (int i = 0; i < C; i++)
        if (r[i] != n * (n - 1) / 2 + n * (me * C + i)) FAIL("reduce_scatter [%d] = %d", i, r[i]);
    /* all_gather into a list in reverse order, in place, and uneven with an empty block */
    void *lst[64];
    for (int j = 0; j < n; j++) lst[j] = r + (size_t)(n - 1 - j) * C;
    for (int i = 0; i < C; i++) s[i] = me * 100000 + i;
    CHECK(dt_pg_allgather_list(pg, s, lst, C, DT_I32, NULL, NULL));
    for (int j = 0; j < n; j++)
        for (int i = 0; i < C; i++)
            if (((int32_t *)lst[j])[i] != j * 100000 + i) FAIL("all_gather_list [%d][%d] = %d", j, i, ((int32_t *)lst[j])[i]);
    for (int i = 0; i < C * n; i++) r[i] = -1;
    for (int i = 0; i < C; i++) r[me * C + i] = me * 100000 + i;
    CHECK(dt_pg_allgather(pg, r + (size_t)me * C, r, C, DT_I32, NULL, NULL));
    for (int i = 0; i < C * n; i++)
        if (r[i] != i / C * 100000 + i % C) FAIL("all_gather in place [%d] = %d", i, r[i]);
    size_t vc[64], tot = 0;
    for (int j = 0; j < n; j++) tot += vc[j] = j == 1 ? 0 : (size_t)(C - 37 * j);
    for (size_t i = 0; i < vc[me]; i++) s[i] = me * 100000 + (int)i;
    CHECK(dt_pg_allgatherv(pg, s, vc[me], r, vc, DT_I32, NULL, NULL));
    for (int j = 0, at = 0; j < n; at += (int)vc[j++])
        for (size_t i = 0; i < vc[j]; i++)
            if (r[at + (int)i] != j * 100000 + (int)i) FAIL("all_gatherv [%d][%zu] = %d", j, i, r[at + (int)i]);
    (void)tot;
    /* reduce_scatter has the bits of the matching block of all_reduce (f32
     * average, bf16 sum: the same order and roundings) */
    float *fs = malloc(C * n * sizeof *fs), *fr = malloc(C * sizeof *fr), *fa = malloc(C * n * sizeof *fa);
    for (int i = 0; i < C * n; i++) fs[i] = (float)((me * 7919 + i * 104729) % 1000) / 7.0f;
    CHECK(dt_pg_reduce_scatter(pg, fs, fr, C, DT_F32, DT_RED_AVG, NULL, NULL));
    CHECK(dt_pg_allreduce(pg, fs, fa, C * n, DT_F32, DT_RED_AVG, NULL, NULL));
    if (memcmp(fr, fa + (size_t)me * C, C * sizeof *fr) != 0) FAIL("reduce_scatter f32 avg differs from all_reduce's block");
    uint16_t *bs = malloc(C * n * sizeof *bs), *br = malloc(C * sizeof *br), *ba = malloc(C * n * sizeof *ba);
    for (int i = 0; i < C * n; i++) bs[i] = dt_f32_to_bf16(fs[i] * 1.0001f);
    CHECK(dt_pg_reduce_scatter(pg, bs, br, C, DT_BF16, DT_RED_SUM, NULL, NULL));
    CHECK(dt_pg_allreduce(pg, bs, ba, C * n, DT_BF16, DT_RED_SUM, NULL, NULL));
    if (memcmp(br, ba + (size_t)me * C, C * sizeof *br) != 0) FAIL("reduce_scatter bf16 sum differs from all_reduce's block");
    free(fs), free(fr), free(fa), free(bs), free(br), free(ba);
    /* a ring of send/recv */
    int32_t out = me * 7, got = -1;
    dt_p2p_op ops[2] = {{.kind = DT_P2P_SEND, .buf = &out, .count = 1, .dtype = DT_I32, .peer = (me + 1) % n},
                        {.kind = DT_P2P_RECV, .buf = &got, .count = 1, .dtype = DT_I32, .peer = (me + n - 1) % n}};
    CHECK(dt_pg_batch_p2p(pg, ops, 2, NULL, NULL));
    if (got != (me + n - 1) % n * 7) FAIL("send/recv ring: got %d", got);
    free(s);
    free(r);
}

static void check_barrier(dt_pg *pg)
{
    int me = dt_pg_rank(pg), n = dt_pg_size(pg);
    CHECK(dt_pg_barrier(pg, NULL, NULL));
    double t0 = now_s();
    if (me == n - 1) usleep(300000);
    CHECK(dt_pg_barrier(pg, NULL, NULL));
    if (me != n - 1 && now_s() - t0 < 0.25) FAIL("barrier returned after %.3f s, before the last rank arrived", now_s() - t0);
}

static void check_group(dt_pg *pg, const int *wr, int n, const size_t *counts, int ncounts)
{
    int ident[64] = {0};
    for (int i = 0; i < n && i < 64; i++) ident[i] = i;
    if (!wr) wr = ident;
    check_reductions(pg, wr, counts, ncounts, -1, true);
    for (int root = 0; root < n; root++) {
        size_t c2[] = {0, 1, 70001};
        check_reductions(pg, wr, c2, 3, root, false);
    }
    check_broadcast(pg, 1);
    check_broadcast(pg, 300001);
    check_gathers(pg);
    check_barrier(pg);
}

/* Rank 0 hosts the store, through which a failure record spreads: it stays
 * until the `expect` ranks that count themselves (mine) have their verdict. */
static void await_verdicts(dt_pg *pg, bool mine, int expect)
{
    fflush(stdout);
    dt_store *st = dt_pg_store(pg);
    int64_t done = 0;
    if (mine) CHECK(dt_store_add(st, "verdicts", 1, &done));
    for (double t1 = now_s(); g_rank == 0 && done < expect && now_s() - t1 < 60; usleep(20000))
        CHECK(dt_store_add(st, "verdicts", 0, &done));
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "check";
    const char *backend = strcmp(mode, "check") == 0 && argc > 2 ? argv[2] : "auto";
    const char *hs = getenv("DT_TEST_HOSTS");
    for (int i = 0; hs && *hs && i < 64; i++) {
        hosts_of[i] = atoi(hs);
        hs = strchr(hs, ',');
        if (hs) hs++;
        else break;
    }
    dt_pg_opts o = DT_PG_OPTS_INIT;
    const char *tm = getenv("DT_TEST_TIMEOUT_MS");
    o.timeout_ms = tm ? atoll(tm) : 60000;
    dt_pg *pg = dt_init_process_group(backend, "env://", &o);
    if (!pg) FAIL("init");
    int r = dt_pg_rank(pg), n = dt_pg_size(pg);
    g_rank = r;
    const char *want_be = getenv("DT_TEST_BACKEND");
    if (want_be && strcmp(want_be, dt_pg_backend(pg)) != 0)
        FAIL("backend %s (%s), want %s", dt_pg_backend(pg), dt_pg_backend_desc(pg), want_be);
    if (strcmp(mode, "check") == 0) {
        size_t counts[] = {0, 1, 1001, 70001};
        check_group(pg, NULL, n, counts, 4);
        size_t big = 1000003;
        float *x = malloc(big * sizeof *x);
        for (size_t i = 0; i < big; i++) x[i] = (float)(r + 1 + (int)(i % 7));
        CHECK(dt_pg_allreduce(pg, x, x, big, DT_F32, DT_RED_SUM, NULL, NULL));
        for (size_t i = 0; i < big; i++)
            if (x[i] != (float)(n * (n + 1) / 2 + n * (int)(i % 7))) FAIL("large all_reduce [%zu] = %g", i, x[i]);
        free(x);
        /* subgroups, made by every rank in the same order */
        if (n == 4) {
            static const int scrambled[] = {3, 1, 2, 0}, across[] = {1, 2}, one_host[] = {2, 3};
            struct { const int *ranks; int n; const char *backend_desc; } sub[] = {
                {scrambled, 4, "hier: 2 hosts"}, {across, 2, "hier: tcp only"}, {one_host, 2, "hier: shm only"}};
            for (int k = 0; k < 3; k++) {
                dt_pg *g = dt_new_group(pg, sub[k].ranks, sub[k].n, NULL);
                if (!g) FAIL("new_group %d", k);
                if (dt_pg_is_member(g)) {
                    if (want_be && strncmp(dt_pg_backend_desc(g), sub[k].backend_desc, strlen(sub[k].backend_desc)) != 0)
                        FAIL("subgroup %d: backend '%s', want '%s...'", k, dt_pg_backend_desc(g), sub[k].backend_desc);
                    size_t sc[] = {0, 1, 70001};
                    check_group(g, sub[k].ranks, sub[k].n, sc, 3);
                }
                dt_destroy_process_group(g);
            }
        }
        /* rank 0 hosts the store: nobody leaves before everyone is done with it */
        CHECK(dt_pg_barrier(pg, NULL, NULL));
        printf("rank %d world %d local %d/%d backend %s ok\n", r, n, dt_pg_local_rank(pg), dt_pg_local_size(pg),
               dt_pg_backend(pg));
        printf("rank %d desc %s\n", r, dt_pg_backend_desc(pg));
    } else if (strcmp(mode, "victim") == 0 || strcmp(mode, "abort") == 0) {
        int victim = argc > 2 ? atoi(argv[2]) : n - 1;
        bool abort_it = strcmp(mode, "abort") == 0;
        size_t count = 1000003;
        float *x = calloc(count, sizeof *x);
        int64_t v = r;
        CHECK(dt_pg_allreduce(pg, &v, &v, 1, DT_I64, DT_RED_SUM, NULL, NULL));
        int rc = 0;
        double t0 = now_s();
        for (int i = 0; i < 100000 && rc == 0; i++) {
            if (r == victim && i == 1) {
                if (!abort_it) kill(getpid(), SIGKILL);
                dt_pg_abort(pg);
                rc = DT_EABORTED;
                break;
            }
            t0 = now_s();
            rc = dt_pg_allreduce(pg, x, x, count, DT_F32, DT_RED_SUM, NULL, NULL);
        }
        double took = now_s() - t0;
        char want[64];
        snprintf(want, sizeof want, abort_it ? "rank %d aborted" : "rank %d (", victim);
        if (r != victim) {
            if (rc != (abort_it ? DT_EABORTED : DT_EPEER) || !strstr(dt_last_error(), want))
                FAIL("after rank %d's %s got %s: %s", victim, abort_it ? "abort" : "death", dt_strerror(rc),
                     dt_last_error());
            if (took * 1000 > (double)o.timeout_ms) FAIL("failed only after %.1f s", took);
        }
        printf("rank %d: failed as expected after %.2f s: %s\n", r, took, dt_last_error());
        /* the group stays failed */
        if (r != victim && dt_pg_barrier(pg, NULL, NULL) != DT_ESTATE)
            FAIL("a barrier after the failure did not fail with DT_ESTATE");
        free(x);
        await_verdicts(pg, r != victim, n - 1);
    } else if (strcmp(mode, "late") == 0) {
        /* rank V reaches the all_reduce only after everyone else's timeout */
        int late = argc > 2 ? atoi(argv[2]) : n - 1;
        float x[4] = {0};
        CHECK(dt_pg_barrier(pg, NULL, NULL)); /* everyone else starts the all_reduce's clock together */
        if (r == late) usleep((useconds_t)(o.timeout_ms + 2000) * 1000);
        double t0 = now_s();
        int rc = dt_pg_allreduce(pg, x, x, 4, DT_F32, DT_RED_SUM, NULL, NULL);
        double took = now_s() - t0;
        char want[32];
        snprintf(want, sizeof want, "%d", late);
        if (rc == 0) FAIL("the all_reduce without rank %d succeeded", late);
        if (r != late && (rc != DT_ETIMEOUT || took * 1000 > (double)o.timeout_ms + 5000))
            FAIL("without rank %d: %s after %.1f s: %s", late, dt_strerror(rc), took, dt_last_error());
        printf("rank %d: failed as expected after %.2f s: %s\n", r, took, dt_last_error());
        await_verdicts(pg, true, n);
    } else if (strcmp(mode, "mismatch") == 0) {
        float x[8] = {0};
        int rc = dt_pg_allreduce(pg, x, x, r == 3 ? 5 : 4, DT_F32, DT_RED_SUM, NULL, NULL);
        if (rc != DT_EMISMATCH) FAIL("mismatched all_reduce returned %s: %s", dt_strerror(rc), dt_last_error());
        printf("rank %d: mismatch detected: %s\n", r, dt_last_error());
        await_verdicts(pg, true, n);
    } else {
        FAIL("unknown mode %s", mode);
    }
    fflush(stdout);
    dt_destroy_process_group(pg);
    return 0;
}
