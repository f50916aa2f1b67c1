/* dt__sgemm: every f32 GEMM of the library. It runs our AVX-512 kernel
 * (k_sgemm_avx512.c) when the CPU has AVX-512 and the shape is one where that kernel
 * measured faster than OpenBLAS (bench/gemm_bench.c, bench/RESULTS.md "GEMM"), else
 * cblas_sgemm. With 2+ compute threads our kernel splits C into contiguous ranges of
 * whole row panels (tall C) or column panels (wide C), one per thread, each thread
 * packing its own operands in its own scratch; the k-sum of every element runs in the
 * same order whatever the split, so results do not depend on the thread count.
 * Scratch is per thread, allocated on first use and kept for the thread's life
 * (outside dt_alloc's accounting, as OpenBLAS's own buffers are), freed at thread exit. */
#include "tensor/k_sgemm.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>

#if DT__SGEMM_HAVE_AVX512

static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
static bool g_scratch_key_ok;
static __thread float *t_scratch;

/* At thread exit; a later GEMM in that thread's exit path would allocate afresh. */
static void scratch_free(void *p) { t_scratch = NULL; free(p); }
static void scratch_key_init(void) { g_scratch_key_ok = pthread_key_create(&g_scratch_key, scratch_free) == 0; }

/* The calling thread's scratch, or NULL when it cannot be had. */
static float *scratch(void)
{
    if (t_scratch) return t_scratch;
    pthread_once(&g_scratch_once, scratch_key_init);
    void *p = NULL;
    if (!g_scratch_key_ok || posix_memalign(&p, 64, dt__sgemm_avx512_scratch_floats() * sizeof(float)) != 0) return NULL;
    if (pthread_setspecific(g_scratch_key, p) != 0) { free(p); return NULL; }
    t_scratch = p;
    return p;
}

/* Checked once; threads racing on the first call all store the same answer. */
static bool cpu_ok(void)
{
    static atomic_int ok = -1;
    int v = atomic_load_explicit(&ok, memory_order_relaxed);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
        atomic_store_explicit(&ok, v, memory_order_relaxed);
    }
    return v;
}

#else
static bool cpu_ok(void) { return false; }
#endif

bool dt__sgemm_ours_available(void) { return cpu_ok(); }

static void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* C = beta C for k == 0 or alpha == 0 (C not read when beta == 0). */
static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc)
{
    if (beta == 1.0f) return;
    for (int64_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f) memset(ci, 0, (size_t)n * sizeof(float));
        else for (int64_t j = 0; j < n; j++) ci[j] *= beta;
    }
}

/* Every row of C (m, n) = bias (n floats). */
static void bias_rows(int64_t m, int64_t n, const float *bias, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++) memcpy(c + i * ldc, bias, (size_t)n * sizeof(float));
}

/* dt__sgemm_rows where our kernel cannot run (no AVX-512, or no scratch): plain loops,
 * each C element's k-sum in ascending order. */
static void rows_ref(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                     const float *b, const int64_t *boff, float beta, float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float acc = 0;
            for (int64_t p = 0; p < k; p++)
                acc += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[boff[j] + p] : b[boff[p] + j]);
            float *cij = c + i * ldc + j;
            *cij = alpha * acc + (beta == 0.0f ? 0.0f : beta * *cij);
        }
}

/* Below this many multiply-adds (about 20 us on one core) a second thread costs more
 * than it saves: the hand-off to the pool and each thread packing its own operands. */
#define PAR_MIN_MNK ((int64_t)1 << 21)

#if DT__SGEMM_HAVE_AVX512
typedef struct {
    bool ta, tb, by_rows;
    int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    const float *a, *b;
    const int64_t *boff;    /* NULL, or B's row offsets (dt__sgemm_rows) */
    const float *bias;      /* NULL, or the row added to every row of C (dt__sgemm_bias) */
    float *c;
} job;

/* Row panels [begin, end) of C (by_rows) or column panels. */
static void run_range(void *arg, int64_t begin, int64_t end, int tid)
{
    const job *j = arg;
    (void)tid;
    int64_t unit = j->by_rows ? DT__SGEMM_MR : DT__SGEMM_NR, len = j->by_rows ? j->m : j->n;
    int64_t lo = begin * unit, hi = end * unit < len ? end * unit : len;
    if (lo >= hi) return;
    const float *a = j->a, *b = j->b;
    const int64_t *boff = j->boff;
    const float *bias = j->bias;
    float *c = j->c;
    int64_t m = j->m, n = j->n;
    if (j->by_rows) { a += j->ta ? lo : lo * j->lda; c += lo * j->ldc; m = hi - lo; }
    else {
        if (!j->tb) b += lo;
        else if (boff) boff += lo;
        else b += lo * j->ldb;
        if (bias) bias += lo;
        c += lo;
        n = hi - lo;
    }
    float *s = scratch();
    if (s) { dt__sgemm_avx512(j->ta, j->tb, m, n, j->k, j->alpha, a, j->lda, b, j->ldb, boff, j->beta, bias, c, j->ldc, s); return; }
    float beta = j->beta;
    if (bias) { bias_rows(m, n, bias, c, j->ldc); beta = 1.0f; }
    if (!boff) blas(j->ta, j->tb, m, n, j->k, j->alpha, a, j->lda, b, j->ldb, beta, c, j->ldc);
    else rows_ref(j->ta, j->tb, m, n, j->k, j->alpha, a, j->lda, b, boff, beta, c, j->ldc);
}

static void run(job *j)
{
    int64_t unit = j->by_rows ? DT__SGEMM_MR : DT__SGEMM_NR;
    int64_t panels = ((j->by_rows ? j->m : j->n) + unit - 1) / unit;
    if (j->m * j->n * j->k < PAR_MIN_MNK || panels < 2) run_range(j, 0, panels, 0);
    else dt__parallel_for(panels, 1, run_range, j);
}

#endif

void dt__sgemm_ours(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) { scale_c(m, n, beta, c, ldc); return; }
#if DT__SGEMM_HAVE_AVX512
    if (cpu_ok()) {
        job j = { ta, tb, m >= n, m, n, k, lda, ldb, ldc, alpha, beta, a, b, NULL, NULL, c };
        run(&j);
        return;
    }
#endif
    blas(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void dt__sgemm_rows(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, const int64_t *boff, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) { scale_c(m, n, beta, c, ldc); return; }
#if DT__SGEMM_HAVE_AVX512
    if (cpu_ok()) {
        job j = { ta, tb, m >= n, m, n, k, lda, 0, ldc, alpha, beta, a, b, boff, NULL, c };
        run(&j);
        return;
    }
#endif
    rows_ref(ta, tb, m, n, k, alpha, a, lda, b, boff, beta, c, ldc);
}

/* Where our kernel beat OpenBLAS (its Haswell kernels) in bench/gemm_bench.c, table in
 * bench/RESULTS.md "GEMM": every model shape, 1.5-2.3x at one thread. OpenBLAS keeps
 * C with at most 3 columns (matrix-vector like; ours down to 0.65x at 297x2x57 NT,
 * where a transposed B costs whole 16x16 transposes for 2 useful rows) and the tiniest
 * products (under 4096 multiply-adds, a microsecond or so, ours 0.5x to 2x). */
static bool ours_wins(bool ta, bool tb, int64_t m, int64_t n, int64_t k)
{
    (void)ta; (void)tb;
    return n >= 4 && m * n * k >= 4096;
}

bool dt__sgemm_picks_ours(bool ta, bool tb, int64_t m, int64_t n, int64_t k)
{
    return cpu_ok() && ours_wins(ta, tb, m, n, k);
}

void dt__sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) { scale_c(m, n, beta, c, ldc); return; }
    if (dt__sgemm_picks_ours(ta, tb, m, n, k)) dt__sgemm_ours(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else blas(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void dt__sgemm_bias(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                    int64_t ldb, const float *bias, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0) return;
#if DT__SGEMM_HAVE_AVX512
    if (k > 0 && dt__sgemm_picks_ours(ta, tb, m, n, k)) {
        job j = { ta, tb, m >= n, m, n, k, lda, ldb, ldc, 1.0f, 1.0f, a, b, NULL, bias, c };
        run(&j);
        return;
    }
#endif
    bias_rows(m, n, bias, c, ldc);
    if (k > 0) blas(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 1.0f, c, ldc);
}
