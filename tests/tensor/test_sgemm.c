/* dt__sgemm and our AVX-512 kernel (dt__sgemm_ours) against a naive reference written
 * here that accumulates in double: random shapes from 1x1x1 up past every block size,
 * odd sizes, k = 0 (C = beta C), every transpose combination, leading dimensions above
 * the minimum, several alpha and beta, NaN in C with beta = 0 (must not leak), and the
 * model shapes. Results at 1 and 2 threads each match the reference, and give the
 * same bits run to run and at either thread count. Where the CPU lacks AVX-512 the
 * kernel part prints a skip line (dt__sgemm itself is still checked, via OpenBLAS). */
#include "dt_test.h"
#include "tensor/tensor_internal.h"

#include <stdlib.h>

typedef void (*gemm_fn)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                        int64_t, float, float *, int64_t);

static uint64_t g_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void)
{
    g_state ^= g_state << 13;
    g_state ^= g_state >> 7;
    g_state ^= g_state << 17;
    return g_state;
}
static float uniform(void) { return (float)((next_u64() >> 40) * (1.0 / (1 << 24))) * 2.0f - 1.0f; }
static int64_t pick(int64_t lo, int64_t hi) { return lo + (int64_t)(next_u64() % (uint64_t)(hi - lo + 1)); }

static void ref(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                const float *b, int64_t ldb, float beta, double *c, const float *c0, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (double)(tb ? b[j * ldb + p] : b[p * ldb + j]);
            c[i * n + j] = alpha * s + (beta == 0.0f ? 0.0 : (double)beta * c0[i * ldc + j]);
        }
}

/* One case: C (m, n) in a buffer with ldc, padding around A, B, C holds sentinels that
 * must survive; C starts as NaN when beta == 0. Returns after the DT_ASSERTs. */
static void check(gemm_fn f, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                  int64_t pad)
{
    int64_t ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
    int64_t lda = ac + pad, ldb = bc + pad, ldc = n + pad;
    if (lda < 1) lda = 1;
    if (ldb < 1) ldb = 1;
    size_t na = (size_t)(ar * lda + 1), nb = (size_t)(br * ldb + 1), nc = (size_t)(m * ldc + 1);
    float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4), *c0 = malloc(nc * 4);
    double *want = malloc((size_t)(m * n + 1) * sizeof(double));
    for (size_t i = 0; i < na; i++) a[i] = uniform();
    for (size_t i = 0; i < nb; i++) b[i] = uniform();
    for (size_t i = 0; i < nc; i++) c[i] = beta == 0.0f ? NAN : uniform();
    for (int64_t i = 0; i < m; i++) for (int64_t j = n; j < ldc; j++) c[i * ldc + j] = 12345.0f;   /* beyond n */
    memcpy(c0, c, nc * 4);
    ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, want, c0, ldc);
    f(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    double worst = 0;
    int64_t wi = 0, wj = 0;
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            double tol = 1e-5 * (double)(k + 4) * (fabs(alpha) + 1) + 1e-5 * fabs(want[i * n + j]);
            double err = fabs((double)c[i * ldc + j] - want[i * n + j]);
            if (!(err <= tol) && !(worst > tol)) { worst = err; wi = i; wj = j; if (!(err == err)) worst = INFINITY; }
        }
        for (int64_t j = n; j < ldc; j++)
            if (c[i * ldc + j] != 12345.0f) { worst = INFINITY; wi = i; wj = j; }
    }
    bool bad = worst > 0;
    double got = bad ? c[wi * ldc + wj] : 0, exp = bad && wj < n ? want[wi * n + wj] : 12345.0;
    free(a); free(b); free(c); free(c0); free(want);
    DT_ASSERT_MSG(!bad, "%c%c m=%lld n=%lld k=%lld alpha=%g beta=%g pad=%lld: C[%lld,%lld] = %.9g, want %.9g",
                  ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)m, (long long)n, (long long)k, alpha, beta,
                  (long long)pad, (long long)wi, (long long)wj, got, exp);
}

static bool have_kernel(void)
{
    if (dt__sgemm_ours_available()) return true;
    fprintf(stderr, "skip %s: no AVX-512 kernel here (CPU without AVX-512, or built with DT_NO_AVX512)\n", dt__test_name);
    return false;
}

static const float alphas[] = {1.0f, -0.5f, 2.0f}, betas[] = {0.0f, 1.0f, 0.25f};

static void edge_cases(gemm_fn f)
{
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        check(f, ta, tb, 1, 1, 1, 1.0f, 0.0f, 0);
        check(f, ta, tb, 1, 1, 1, 1.0f, 1.0f, 3);
        check(f, ta, tb, 3, 5, 0, 1.0f, 0.0f, 1);     /* k = 0: C = 0, NaN gone */
        check(f, ta, tb, 3, 5, 0, 1.0f, 0.5f, 1);     /* k = 0: C = beta C */
        check(f, ta, tb, 7, 9, 4, 0.0f, 0.0f, 0);     /* alpha = 0 */
        check(f, ta, tb, 7, 9, 4, 0.0f, 2.0f, 2);
        for (int ai = 0; ai < 3; ai++)
            for (int bi = 0; bi < 3; bi++) {
                check(f, ta, tb, 13, 33, 17, alphas[ai], betas[bi], ai);
                check(f, ta, tb, 12, 32, 16, alphas[ai], betas[bi], bi);
                check(f, ta, tb, 11, 31, 15, alphas[ai], betas[bi], 5);
            }
        /* Past each block size: MR 12, NR 32, KC 256, MC 120, NC 512. */
        check(f, ta, tb, 121, 513, 257, 1.0f, 0.0f, 0);
        check(f, ta, tb, 250, 1030, 600, 0.5f, 1.0f, 7);
        check(f, ta, tb, 1, 700, 300, 1.0f, 0.0f, 1);
        check(f, ta, tb, 700, 1, 300, 1.0f, 0.5f, 1);
        check(f, ta, tb, 5, 3, 1000, -1.0f, 0.0f, 0);
        /* Transposed A with a 4 KiB row stride and more than 64 columns: the packed-A path. */
        if (ta) {
            check(f, ta, tb, 1024, 70, 20, 1.0f, 0.0f, 0);
            check(f, ta, tb, 1000, 100, 30, 0.5f, 1.0f, 24);
        }
    }
}

static void random_cases(gemm_fn f, int count)
{
    for (int i = 0; i < count; i++) {
        int64_t lim = i % 4 == 0 ? 300 : 40;
        int64_t m = pick(1, lim), n = pick(1, lim), k = pick(0, lim);
        check(f, next_u64() & 1, next_u64() & 1, m, n, k, alphas[i % 3], betas[(i / 3) % 3], pick(0, 3) * pick(0, 9));
    }
}

static void t_ours_edges(void)
{
    if (!have_kernel()) return;
    edge_cases(dt__sgemm_ours);
}

static void t_ours_random(void)
{
    if (!have_kernel()) return;
    random_cases(dt__sgemm_ours, 400);
}

/* The model shapes (MLP, GPT, attention, CNN), each transpose combination they use. */
static void t_ours_model_shapes(void)
{
    if (!have_kernel()) return;
    static const struct { int m, n, k; bool ta, tb; } s[] = {
        {64, 256, 784, 0, 1}, {64, 10, 256, 0, 1}, {64, 784, 256, 0, 0}, {256, 784, 64, 1, 0},
        {10, 256, 64, 1, 0}, {2048, 384, 128, 0, 1}, {2048, 128, 512, 0, 0}, {384, 128, 2048, 1, 0},
        {128, 128, 32, 0, 1}, {128, 32, 128, 0, 0}, {128, 32, 128, 1, 0}, {784, 32, 9, 0, 0},
        {196, 64, 288, 0, 0}, {64, 288, 1960, 1, 0},
    };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        check(dt__sgemm_ours, s[i].ta, s[i].tb, s[i].m, s[i].n, s[i].k, 1.0f, i % 2 ? 1.0f : 0.0f, 0);
}

/* Two threads: the split paths (by rows and by columns) against the reference, and
 * the same bits on every run. */
static void t_ours_threads(void)
{
    if (!have_kernel()) return;
    int old = dt_tensor_num_threads();
    DT_ASSERT_OK(dt_tensor_set_num_threads(2));
    edge_cases(dt__sgemm_ours);
    random_cases(dt__sgemm_ours, 100);
    static const int s[][3] = {{2048, 128, 128}, {64, 784, 256}, {300, 301, 302}};
    for (int t = 0; t < 3; t++) {
        int64_t m = s[t][0], n = s[t][1], k = s[t][2];
        float *a = malloc((size_t)(m * k) * 4), *b = malloc((size_t)(k * n) * 4);
        float *c1 = malloc((size_t)(m * n) * 4), *c2 = malloc((size_t)(m * n) * 4), *c0 = malloc((size_t)(m * n) * 4);
        for (int64_t i = 0; i < m * k; i++) a[i] = uniform();
        for (int64_t i = 0; i < k * n; i++) b[i] = uniform();
        DT_ASSERT_OK(dt_tensor_set_num_threads(1));
        dt__sgemm_ours(false, true, m, n, k, 1.0f, a, k, b, k, 0.0f, c0, n);
        DT_ASSERT_OK(dt_tensor_set_num_threads(2));
        dt__sgemm_ours(false, true, m, n, k, 1.0f, a, k, b, k, 0.0f, c1, n);
        /* The split never changes an element's k order, so 1 and 2 threads agree too. */
        bool same_1_2 = memcmp(c0, c1, (size_t)(m * n) * 4) == 0, same = true;
        for (int r = 0; r < 5 && same; r++) {
            dt__sgemm_ours(false, true, m, n, k, 1.0f, a, k, b, k, 0.0f, c2, n);
            same = memcmp(c1, c2, (size_t)(m * n) * 4) == 0;
        }
        free(a); free(b); free(c1); free(c2);
        free(c0);
        DT_ASSERT_MSG(same, "2 threads, %lldx%lldx%lld: results differ between runs", (long long)m, (long long)n, (long long)k);
        DT_ASSERT_MSG(same_1_2, "%lldx%lldx%lld: 1 and 2 threads differ", (long long)m, (long long)n, (long long)k);
    }
    DT_ASSERT_OK(dt_tensor_set_num_threads(old));
}

/* dt_matmul over (2, 4) batches of attention-sized products: the batch entries split
 * over 2 threads (each GEMM too small to split itself), same bits as 1 thread, and
 * spot checks against the double reference. */
static void t_batched_matmul_threads(void)
{
    int old = dt_tensor_num_threads();
    dt_rng rng = dt_rng_make(7, dt_rng_stream(DT_RNG_INIT, 0));
    DT_SCOPE {
        dt_tensor *q = dt_randn(&rng, DT_F32, DT_SHAPE(2, 4, 128, 32));
        dt_tensor *kt = dt_transpose(dt_randn(&rng, DT_F32, DT_SHAPE(2, 4, 128, 32)), -1, -2);   /* (2, 4, 32, 128) */
        DT_ASSERT_OK(dt_tensor_set_num_threads(1));
        dt_tensor *s1 = dt_contiguous(dt_matmul(q, kt));
        DT_ASSERT_OK(dt_tensor_set_num_threads(2));
        dt_tensor *s2 = dt_contiguous(dt_matmul(q, kt));
        DT_ASSERT(s1 && s2);
        DT_ASSERT(memcmp(dt_tensor_data(s1), dt_tensor_data(s2), (size_t)dt_tensor_numel(s1) * 4) == 0);
        for (int64_t b = 0; b < 2; b++)
            for (int64_t h = 0; h < 4; h += 3)
                for (int64_t i = 0; i < 128; i += 37)
                    for (int64_t j = 0; j < 128; j += 29) {
                        double want = 0;
                        for (int64_t p = 0; p < 32; p++)
                            want += dt_tensor_get(q, (int64_t[]){b, h, i, p}) * dt_tensor_get(kt, (int64_t[]){b, h, p, j});
                        DT_ASSERT_NEAR(dt_tensor_get(s2, (int64_t[]){b, h, i, j}), want, 1e-4 * fmax(1, fabs(want)));
                    }
    }
    DT_ASSERT_OK(dt_tensor_set_num_threads(old));
}

/* dt__sgemm, whichever kernel it picks. */
static void t_dispatch(void)
{
    edge_cases(dt__sgemm);
    random_cases(dt__sgemm, 100);
}

/* dt__sgemm_bias (F.linear's GEMM from the bias): the same bits as copying the bias into
 * every row of C and dt__sgemm with beta 1, for every transpose, tails of each block
 * size (several depth blocks: k > KC), k = 0, ldc above n, at 1 and 2 threads (split by
 * rows and by columns); the sentinels beyond n survive. */
static void t_bias(void)
{
    static const int s[][3] = {{1, 1, 1}, {13, 33, 17}, {12, 32, 16}, {2048, 128, 128}, {64, 784, 256}, {121, 513, 600},
                               {5, 700, 300}, {700, 3, 40}, {7, 9, 0}, {3, 2, 5}};
    int old = dt_tensor_num_threads();
    for (int th = 1; th <= 2; th++) {
        DT_ASSERT_OK(dt_tensor_set_num_threads(th));
        for (size_t q = 0; q < sizeof s / sizeof s[0]; q++)
            for (int t = 0; t < 4; t++) {
                bool ta = t & 1, tb = t & 2;
                int64_t m = s[q][0], n = s[q][1], k = s[q][2], ldc = n + 3;
                int64_t lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2;
                size_t na = (size_t)((ta ? k : m) * lda + 1), nb = (size_t)((tb ? n : k) * ldb + 1), nc = (size_t)(m * ldc);
                float *a = malloc(na * 4), *b = malloc(nb * 4), *bias = malloc((size_t)n * 4);
                float *c1 = malloc(nc * 4), *c2 = malloc(nc * 4);
                for (size_t i = 0; i < na; i++) a[i] = uniform();
                for (size_t i = 0; i < nb; i++) b[i] = uniform();
                for (int64_t j = 0; j < n; j++) bias[j] = uniform();
                for (size_t i = 0; i < nc; i++) c1[i] = c2[i] = i % (size_t)ldc >= (size_t)n ? 12345.0f : NAN;
                for (int64_t i = 0; i < m; i++) memcpy(c1 + i * ldc, bias, (size_t)n * 4);
                dt__sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 1.0f, c1, ldc);
                dt__sgemm_bias(ta, tb, m, n, k, a, lda, b, ldb, bias, c2, ldc);
                bool same = memcmp(c1, c2, nc * 4) == 0;
                free(a); free(b); free(bias); free(c1); free(c2);
                DT_ASSERT_MSG(same, "%d threads, %c%c %lldx%lldx%lld: dt__sgemm_bias differs from bias + GEMM", th,
                              ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)m, (long long)n, (long long)k);
            }
    }
    DT_ASSERT_OK(dt_tensor_set_num_threads(old));
}

int main(void)
{
    DT_RUN(t_ours_edges);
    DT_RUN(t_ours_random);
    DT_RUN(t_ours_model_shapes);
    DT_RUN(t_ours_threads);
    DT_RUN(t_batched_matmul_threads);
    DT_RUN(t_dispatch);
    DT_RUN(t_bias);
    return DT_TEST_END();
}
