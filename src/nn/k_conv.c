/* conv2d forward and backward as im2col + GEMM (dt__sgemm, our AVX-512 kernel or OpenBLAS / cblas_dgemm).
 * Stride-1 f32 convolutions on a CPU where our GEMM runs take k_conv_shift.c's
 * shifted-window GEMMs instead (no column matrix); this file keeps the rest: f64,
 * strides, 1x1 and the CPUs without AVX-512, and dx when the padding exceeds kernel-1.
 *
 * The batch goes in groups of G images whose columns fit one buffer of about
 * COL_BUDGET bytes: col (K, G*P), K = C*kh*kw rows (c, i, j), P = Ho*Wo columns per
 * image, image g's block at columns g*P. im2col and col2im run on the compute pool
 * over (image, channel) pairs, which write disjoint rows of col (or planes of dx).
 * With one compute thread, one GEMM per image works on its block in place (ldb =
 * G*P), writing straight into out / dw / the block, so nothing is copied:
 *
 *   forward   out[n] (O, P)  = w (O, K) @ col_n (K, P)       (+ b: out starts as b)
 *   dw        dw (O, K)     += gout[n] (O, P) @ col_n^T       (col recomputed from x)
 *   dx        col_n (K, P)   = w^T (K, O) @ gout[n] (O, P),   then col2im adds into dx
 *
 * With several (batched mode), each product is one GEMM over the whole group, through
 * a group buffer grp (O, G*P) next to col: forward computes grp = w @ col and moves it
 * (+ b) to out's (N, O, P); backward first gathers gout into grp, then dw += grp @
 * col^T and col = w^T @ grp. Large GEMMs are what OpenBLAS's threads split well.
 *
 * A 1x1 kernel with stride 1 and no padding skips im2col: x[n] is its own column
 * matrix. Columns are recomputed in backward rather than kept from forward (memory).
 * This file does no argument checking or dtype conversion (f_conv.c does). */
#include "nn/nn_conv.h"
#include "tensor/tensor_internal.h"

#include <cblas.h>

#define COL_BUDGET ((int64_t)8 << 20)

typedef struct {
    const dt__conv_geom *g;
    dt_dtype dt;
    int64_t n0, G;      /* the group: images n0 .. n0+G-1 */
    const char *x;      /* whole batch */
    char *col;          /* (K, G*P) */
    char *dx;           /* whole batch, col2im only */
} col_job;

/* Output columns ow whose input column ow*sw - pw + j lies in 0..W-1: [lo, hi). */
static void ow_range(const dt__conv_geom *g, int64_t j, int64_t *lo, int64_t *hi)
{
    int64_t a = g->pw - j, b = g->W - 1 + g->pw - j;
    *lo = a <= 0 ? 0 : (a + g->sw - 1) / g->sw;
    *hi = b < 0 ? 0 : b / g->sw + 1;
    if (*hi > g->Wo) *hi = g->Wo;
    if (*lo > *hi) *lo = *hi;
}

/* One channel plane xc (H, W) of one image to its kh*kw rows of col (row stride ld);
 * col2im is the adjoint: those rows added back into the plane dxc (zeroed first). */
#define COL_LOOPS(T)                                                                    \
    DT__KERNEL static void im2col_##T(const dt__conv_geom *g, const T *xc, T *col, int64_t ld) \
    {                                                                                   \
        int64_t Wo = g->Wo, sw = g->sw;                                                 \
        for (int64_t i = 0; i < g->kh; i++)                                             \
            for (int64_t j = 0; j < g->kw; j++) {                                       \
                T *row = col + (i * g->kw + j) * ld;                                    \
                int64_t lo, hi;                                                         \
                ow_range(g, j, &lo, &hi);                                               \
                for (int64_t oh = 0; oh < g->Ho; oh++) {                                \
                    T *r = row + oh * Wo;                                               \
                    int64_t ih = oh * g->sh - g->ph + i;                                \
                    if (ih < 0 || ih >= g->H || lo == hi) {                             \
                        memset(r, 0, (size_t)Wo * sizeof(T));                           \
                        continue;                                                       \
                    }                                                                   \
                    const T *s = xc + ih * g->W + lo * sw - g->pw + j;                  \
                    for (int64_t ow = 0; ow < lo; ow++) r[ow] = 0;                      \
                    if (sw == 1) for (int64_t k = 0; k < hi - lo; k++) r[lo + k] = s[k]; \
                    else for (int64_t k = 0; k < hi - lo; k++) r[lo + k] = s[k * sw];   \
                    for (int64_t ow = hi; ow < Wo; ow++) r[ow] = 0;                     \
                }                                                                       \
            }                                                                           \
    }                                                                                   \
    DT__KERNEL static void col2im_##T(const dt__conv_geom *g, const T *col, int64_t ld, T *dxc) \
    {                                                                                   \
        int64_t Wo = g->Wo, sw = g->sw;                                                 \
        memset(dxc, 0, (size_t)(g->H * g->W) * sizeof(T));                              \
        for (int64_t i = 0; i < g->kh; i++)                                             \
            for (int64_t j = 0; j < g->kw; j++) {                                       \
                const T *row = col + (i * g->kw + j) * ld;                              \
                int64_t lo, hi;                                                         \
                ow_range(g, j, &lo, &hi);                                               \
                for (int64_t oh = 0; oh < g->Ho; oh++) {                                \
                    int64_t ih = oh * g->sh - g->ph + i;                                \
                    if (ih < 0 || ih >= g->H) continue;                                 \
                    const T *r = row + oh * Wo;                                         \
                    T *d = dxc + ih * g->W + lo * sw - g->pw + j;                       \
                    if (sw == 1) for (int64_t k = 0; k < hi - lo; k++) d[k] += r[lo + k]; \
                    else for (int64_t k = 0; k < hi - lo; k++) d[k * sw] += r[lo + k];  \
                }                                                                       \
            }                                                                           \
    }
COL_LOOPS(float)
COL_LOOPS(double)

static void im2col_range(void *arg, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const col_job *j = arg;
    const dt__conv_geom *g = j->g;
    int64_t P = g->Ho * g->Wo, ld = j->G * P, kk = g->kh * g->kw, es = (int64_t)dt_dtype_size(j->dt);
    for (int64_t u = begin; u < end; u++) {
        int64_t gi = u / g->C, c = u % g->C;
        const char *xc = j->x + ((j->n0 + gi) * g->C + c) * g->H * g->W * es;
        char *col = j->col + (c * kk * ld + gi * P) * es;
        if (j->dt == DT_F32) im2col_float(g, (const float *)xc, (float *)col, ld);
        else im2col_double(g, (const double *)xc, (double *)col, ld);
    }
}

static void col2im_range(void *arg, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const col_job *j = arg;
    const dt__conv_geom *g = j->g;
    int64_t P = g->Ho * g->Wo, ld = j->G * P, kk = g->kh * g->kw, es = (int64_t)dt_dtype_size(j->dt);
    for (int64_t u = begin; u < end; u++) {
        int64_t gi = u / g->C, c = u % g->C;
        char *dxc = j->dx + ((j->n0 + gi) * g->C + c) * g->H * g->W * es;
        const char *col = j->col + (c * kk * ld + gi * P) * es;
        if (j->dt == DT_F32) col2im_float(g, (const float *)col, ld, (float *)dxc);
        else col2im_double(g, (const double *)col, ld, (double *)dxc);
    }
}

/* Row-major C (m, n) = op(A) op(B) + beta C. */
static void gemm(dt_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                 const void *b, int64_t ldb, double beta, void *c, int64_t ldc)
{
    CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    if (dt == DT_F32)
        dt__sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, (float)beta, c, ldc);
    else
        cblas_dgemm(CblasRowMajor, TA, TB, (int)m, (int)n, (int)k, 1.0, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static bool is_pointwise(const dt__conv_geom *g)
{
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* Between the image layout (gn, O, P) of images n0.. and the group layout (O, gn*P):
 * to_img adds the bias (when given) on the way; the other way is a plain gather. */
typedef struct {
    const dt__conv_geom *g;
    dt_dtype dt;
    int64_t gn;
    char *grp;          /* (O, gn*P) */
    char *img;          /* image n0 of (N, O, P) */
    const char *bias;   /* (O) or NULL */
    bool to_img;
} move_job;

#define MOVE_LOOP(T)                                                                    \
    DT__KERNEL static void move_##T(const move_job *j, int64_t begin, int64_t end)      \
    {                                                                                   \
        int64_t O = j->g->O, P = j->g->Ho * j->g->Wo;                                   \
        for (int64_t u = begin; u < end; u++) {                                         \
            int64_t gi = u / O, o = u % O;                                              \
            T *grp = (T *)j->grp + o * j->gn * P + gi * P, *img = (T *)j->img + u * P;  \
            if (!j->to_img) { for (int64_t p = 0; p < P; p++) grp[p] = img[p]; continue; } \
            T b = j->bias ? ((const T *)j->bias)[o] : 0;                                \
            for (int64_t p = 0; p < P; p++) img[p] = grp[p] + b;                        \
        }                                                                               \
    }
MOVE_LOOP(float)
MOVE_LOOP(double)

static void move_range(void *arg, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const move_job *j = arg;
    if (j->dt == DT_F32) move_float(j, begin, end);
    else move_double(j, begin, end);
}

/* Batched mode: with more than one compute thread, a group's products are one GEMM
 * each over all its images (which OpenBLAS splits across its threads far better
 * than many small ones), at the price of moving the output (or its gradient) between
 * (gn, O, P) and (O, gn*P) once. With one thread the per-image GEMMs in place are as
 * fast and move nothing. */
static bool batched_mode(void) { return dt_tensor_num_threads() > 1; }

/* Images per group: as many as fit COL_BUDGET (at least 1), spread evenly. Batched
 * mode also holds the group's (O, gn*P) output there. */
static int64_t group_size(const dt__conv_geom *g, int64_t es, bool batched)
{
    int64_t per = (g->C * g->kh * g->kw + (batched ? g->O : 0)) * g->Ho * g->Wo * es;
    int64_t G = per > 0 ? COL_BUDGET / per : g->N;
    if (G < 1) G = 1;
    if (G > g->N) G = g->N;
    int64_t ngroups = (g->N + G - 1) / G;
    return (g->N + ngroups - 1) / ngroups;
}

/* The column buffer (K, G*P), followed in batched mode by the group output (O, G*P). */
static char *col_alloc(const dt__conv_geom *g, int64_t G, int64_t es, bool batched)
{
    return dt_alloc((size_t)((g->C * g->kh * g->kw + (batched ? g->O : 0)) * G * g->Ho * g->Wo * es), DT_MEM_ACT);
}

int dt__conv2d_fwd(const dt__conv_geom *g, dt_dtype dt, const void *x, const void *w, const void *b, void *out)
{
    int64_t es = (int64_t)dt_dtype_size(dt), P = g->Ho * g->Wo, K = g->C * g->kh * g->kw;
    char *o = out;
    if (g->N == 0) return 0;
    if (!is_pointwise(g) && dt__conv2d_shift_ok(g, dt)) return dt__conv2d_fwd_shift(g, x, w, b, out);
    bool batched = batched_mode() && !is_pointwise(g);
    if (b && !batched) {
        for (int64_t n = 0; n < g->N; n++)
            for (int64_t oc = 0; oc < g->O; oc++) {
                char *r = o + (n * g->O + oc) * P * es;
                if (dt == DT_F32) { float v = ((const float *)b)[oc]; for (int64_t p = 0; p < P; p++) ((float *)r)[p] = v; }
                else { double v = ((const double *)b)[oc]; for (int64_t p = 0; p < P; p++) ((double *)r)[p] = v; }
            }
    }
    double beta = b ? 1.0 : 0.0;
    if (is_pointwise(g)) {
        for (int64_t n = 0; n < g->N; n++)
            gemm(dt, false, false, g->O, P, K, w, K, (const char *)x + n * K * P * es, P, beta, o + n * g->O * P * es, P);
        return 0;
    }
    int64_t G = group_size(g, es, batched);
    char *col = col_alloc(g, G, es, batched);
    if (!col) return dt_last_error_code();
    char *grp = col + K * G * P * es;
    for (int64_t n0 = 0; n0 < g->N; n0 += G) {
        int64_t gn = g->N - n0 < G ? g->N - n0 : G;
        col_job j = {.g = g, .dt = dt, .n0 = n0, .G = gn, .x = x, .col = col};
        dt__parallel_for(gn * g->C, 1, im2col_range, &j);
        if (batched) {
            gemm(dt, false, false, g->O, gn * P, K, w, K, col, gn * P, 0.0, grp, gn * P);
            move_job m = {.g = g, .dt = dt, .gn = gn, .grp = grp, .img = o + n0 * g->O * P * es, .bias = b, .to_img = true};
            dt__parallel_for(gn * g->O, 1, move_range, &m);
        } else {
            for (int64_t gi = 0; gi < gn; gi++)
                gemm(dt, false, false, g->O, P, K, w, K, col + gi * P * es, gn * P, beta, o + (n0 + gi) * g->O * P * es, P);
        }
    }
    dt_free(col);
    return 0;
}

typedef struct {
    const dt__conv_geom *g;
    dt_dtype dt;
    const void *gout;
    void *db;
} bias_job;

/* db[o] = sum of gout[n][o][p] over n and p, in f64 (one output channel per item). */
DT__KERNEL static void bias_range(void *arg, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const bias_job *j = arg;
    const dt__conv_geom *g = j->g;
    int64_t P = g->Ho * g->Wo;
    for (int64_t oc = begin; oc < end; oc++) {
        /* eight independent partial sums (lane p % 8), added in a fixed order at the end:
         * vectorisable, and the same bits for any thread count */
        double acc[8] = {0}, s = 0;
        for (int64_t n = 0; n < g->N; n++) {
            int64_t at = (n * g->O + oc) * P, p = 0;
            if (j->dt == DT_F32) {
                const float *r = (const float *)j->gout + at;
                for (; p + 8 <= P; p += 8)
                    for (int l = 0; l < 8; l++) acc[l] += r[p + l];
                for (; p < P; p++) acc[p % 8] += r[p];
            } else {
                const double *r = (const double *)j->gout + at;
                for (; p + 8 <= P; p += 8)
                    for (int l = 0; l < 8; l++) acc[l] += r[p + l];
                for (; p < P; p++) acc[p % 8] += r[p];
            }
        }
        for (int l = 0; l < 8; l++) s += acc[l];
        if (j->dt == DT_F32) ((float *)j->db)[oc] = (float)s;
        else ((double *)j->db)[oc] = s;
    }
}

int dt__conv2d_bw(const dt__conv_geom *g, dt_dtype dt, const void *x, const void *w, const void *gout,
                  void *dx, void *dw, void *db)
{
    int64_t es = (int64_t)dt_dtype_size(dt), P = g->Ho * g->Wo, K = g->C * g->kh * g->kw;
    const char *go = gout;
    if (db) {
        bias_job bj = {.g = g, .dt = dt, .gout = gout, .db = db};
        dt__parallel_for(g->O, 1, bias_range, &bj);
    }
    if (!dx && !dw) return 0;
    if (g->N == 0) {
        if (dw) memset(dw, 0, (size_t)(g->O * K * es));
        return 0;
    }
    if (is_pointwise(g)) {
        for (int64_t n = 0; n < g->N; n++) {
            const char *gn = go + n * g->O * P * es;
            if (dw) gemm(dt, false, true, g->O, K, P, gn, P, (const char *)x + n * K * P * es, P, n ? 1.0 : 0.0, dw, K);
            if (dx) gemm(dt, true, false, K, P, g->O, w, K, gn, P, 0.0, (char *)dx + n * K * P * es, P);
        }
        return 0;
    }
    if (dt__conv2d_shift_ok(g, dt)) {
        bool dx_here = dx && dt__conv2d_shift_dx_ok(g);
        DT_CHECK(dt__conv2d_bw_shift(g, x, w, gout, dx_here ? dx : NULL, dw));
        if (!dx || dx_here) return 0;
        dw = NULL;  /* done; col2im below does dx */
    }
    bool batched = batched_mode();
    int64_t G = group_size(g, es, batched);
    char *col = col_alloc(g, G, es, batched);
    if (!col) return dt_last_error_code();
    char *grp = col + K * G * P * es;
    for (int64_t n0 = 0; n0 < g->N; n0 += G) {
        int64_t gn = g->N - n0 < G ? g->N - n0 : G;
        col_job j = {.g = g, .dt = dt, .n0 = n0, .G = gn, .x = x, .col = col, .dx = dx};
        if (batched) {
            move_job m = {.g = g, .dt = dt, .gn = gn, .grp = grp, .img = (char *)go + n0 * g->O * P * es, .to_img = false};
            dt__parallel_for(gn * g->O, 1, move_range, &m);
        }
        if (dw) {
            dt__parallel_for(gn * g->C, 1, im2col_range, &j);
            if (batched)
                gemm(dt, false, true, g->O, K, gn * P, grp, gn * P, col, gn * P, n0 ? 1.0 : 0.0, dw, K);
            else
                for (int64_t gi = 0; gi < gn; gi++)
                    gemm(dt, false, true, g->O, K, P, go + (n0 + gi) * g->O * P * es, P, col + gi * P * es, gn * P,
                         n0 + gi ? 1.0 : 0.0, dw, K);
        }
        if (dx) {
            if (batched)
                gemm(dt, true, false, K, gn * P, g->O, w, K, grp, gn * P, 0.0, col, gn * P);
            else
                for (int64_t gi = 0; gi < gn; gi++)
                    gemm(dt, true, false, K, P, g->O, w, K, go + (n0 + gi) * g->O * P * es, P, 0.0, col + gi * P * es, gn * P);
            dt__parallel_for(gn * g->C, 1, col2im_range, &j);
        }
    }
    dt_free(col);
    return 0;
}
