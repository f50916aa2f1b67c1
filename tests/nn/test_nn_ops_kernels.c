/* nn's fast kernels against simple references beside them, and bad inputs.
 *   - conv2d (im2col + GEMM, grouped batches, the 1x1 path) against the direct-loop
 *     reference conv below, forward and all three gradients, in f32, f64 and bf16, on
 *     the CNN's shapes (batch 64 and 40, so the batch splits into column groups) and
 *     odd ones;
 *   - max / avg pooling (including the 2x2 stride 2 path) against direct loops;
 *   - cross_entropy against nll_loss(log_softmax) and against huge logits;
 *   - allocation failures at every step of a CNN forward and backward;
 *   - errors: wrong channels, bad strides and padding, bad targets, wrong dtypes, NULL
 *     inputs (NULL + last error, never a crash). */
#include "dt_test.h"

#include <math.h>
#include <stdlib.h>

static dt_rng g_rng;

/* ------------------------------------------------------------- reference conv */
typedef struct {
    int64_t N, C, H, W, O, kh, kw, sh, sw, ph, pw, Ho, Wo;
} geom;

/* x (N, C, H, W), w (O, C, kh, kw), b (O) or NULL -> out (N, O, Ho, Wo), direct loops. */
static void ref_conv_fwd(const geom *g, const double *x, const double *w, const double *b, double *out)
{
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t o = 0; o < g->O; o++)
            for (int64_t oh = 0; oh < g->Ho; oh++)
                for (int64_t ow = 0; ow < g->Wo; ow++) {
                    double s = b ? b[o] : 0;
                    for (int64_t c = 0; c < g->C; c++)
                        for (int64_t i = 0; i < g->kh; i++)
                            for (int64_t j = 0; j < g->kw; j++) {
                                int64_t ih = oh * g->sh - g->ph + i, iw = ow * g->sw - g->pw + j;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                                s += x[((n * g->C + c) * g->H + ih) * g->W + iw] * w[((o * g->C + c) * g->kh + i) * g->kw + j];
                            }
                    out[((n * g->O + o) * g->Ho + oh) * g->Wo + ow] = s;
                }
}

/* The adjoint of ref_conv_fwd for the output gradient go: dx, dw, db (all zeroed here). */
static void ref_conv_bw(const geom *g, const double *x, const double *w, const double *go, double *dx, double *dw, double *db)
{
    memset(dx, 0, (size_t)(g->N * g->C * g->H * g->W) * sizeof *dx);
    memset(dw, 0, (size_t)(g->O * g->C * g->kh * g->kw) * sizeof *dw);
    memset(db, 0, (size_t)g->O * sizeof *db);
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t o = 0; o < g->O; o++)
            for (int64_t oh = 0; oh < g->Ho; oh++)
                for (int64_t ow = 0; ow < g->Wo; ow++) {
                    double gv = go[((n * g->O + o) * g->Ho + oh) * g->Wo + ow];
                    db[o] += gv;
                    for (int64_t c = 0; c < g->C; c++)
                        for (int64_t i = 0; i < g->kh; i++)
                            for (int64_t j = 0; j < g->kw; j++) {
                                int64_t ih = oh * g->sh - g->ph + i, iw = ow * g->sw - g->pw + j;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                                int64_t xi = ((n * g->C + c) * g->H + ih) * g->W + iw, wi = ((o * g->C + c) * g->kh + i) * g->kw + j;
                                dx[xi] += gv * w[wi];
                                dw[wi] += gv * x[xi];
                            }
                }
}

/* A tensor's values as a new contiguous f64 tensor (scoped). */
static const double *f64_of(dt_tensor *t)
{
    dt_tensor *c = dt_contiguous(dt_to_dtype(t, DT_F64));
    return c ? dt_tensor_data_f64(c) : NULL;
}

/* max |got - want| <= tol * max(1, max |want|) */
static void expect_close(const char *what, const double *got, const double *want, int64_t n, double tol)
{
    DT_ASSERT_MSG(got && want, "%s: missing (%s)", what, dt_last_error());
    double scale = 1, worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]);
        if (!(d <= worst)) { worst = d; at = i; }
    }
    DT_ASSERT_MSG(worst <= tol * scale, "%s: element %lld is %.9g, reference %.9g (tol %g x %g)", what, (long long)at, n ? got[at] : 0.0,
                  n ? want[at] : 0.0, tol, scale);
}

typedef struct {
    int64_t N, C, H, W, O, kh, kw;
    int sh, sw, ph, pw;
    bool bias;
    bool strided_x;    /* x given as a transposed view */
} conv_case;

/* Run dt_conv2d in dtype dt with backward from sum(out * gw); compare with the reference. */
static void conv_vs_ref(const conv_case *cc, dt_dtype dt, double tol)
{
    geom g = {cc->N, cc->C, cc->H, cc->W, cc->O, cc->kh, cc->kw, cc->sh, cc->sw, cc->ph, cc->pw, 0, 0};
    g.Ho = (g.H + 2 * g.ph - g.kh) / g.sh + 1;
    g.Wo = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
    DT_SCOPE {
        dt_tensor *x = cc->strided_x ? dt_transpose(dt_randn(&g_rng, dt, DT_SHAPE(g.N, g.C, g.W, g.H)), 2, 3)
                                     : dt_randn(&g_rng, dt, DT_SHAPE(g.N, g.C, g.H, g.W));
        x = dt_detach(x);
        dt_tensor *w = dt_randn(&g_rng, dt, DT_SHAPE(g.O, g.C, g.kh, g.kw));
        dt_tensor *b = cc->bias ? dt_randn(&g_rng, dt, 1, &g.O) : NULL;
        DT_ASSERT_OK(dt_tensor_set_requires_grad(x, true));
        DT_ASSERT_OK(dt_tensor_set_requires_grad(w, true));
        if (b) DT_ASSERT_OK(dt_tensor_set_requires_grad(b, true));
        dt_tensor *y = dt_conv2d(x, w, b, cc->sh, cc->sw, cc->ph, cc->pw);
        DT_ASSERT_MSG(y, "conv2d: %s", dt_last_error());
        DT_ASSERT(dt_tensor_ndim(y) == 4 && dt_tensor_size(y, 2) == g.Ho && dt_tensor_size(y, 3) == g.Wo && dt_tensor_dtype(y) == dt);
        dt_tensor *gw = dt_randn(&g_rng, dt, DT_SHAPE(g.N, g.O, g.Ho, g.Wo));
        DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(y, gw), NULL, 0, false)));

        int64_t nx = g.N * g.C * g.H * g.W, nw = g.O * g.C * g.kh * g.kw, ny = g.N * g.O * g.Ho * g.Wo;
        double *out = calloc((size_t)ny, 8), *dx = calloc((size_t)nx, 8), *dw = calloc((size_t)nw, 8), *db = calloc((size_t)g.O, 8);
        const double *xv = f64_of(x), *wv = f64_of(w), *bv = b ? f64_of(b) : NULL, *gv = f64_of(gw);
        ref_conv_fwd(&g, xv, wv, bv, out);
        ref_conv_bw(&g, xv, wv, gv, dx, dw, db);
        expect_close("conv2d out", f64_of(y), out, ny, tol);
        expect_close("conv2d dx", f64_of(dt_tensor_grad(x)), dx, nx, tol);
        expect_close("conv2d dw", f64_of(dt_tensor_grad(w)), dw, nw, tol);
        if (b) expect_close("conv2d db", f64_of(dt_tensor_grad(b)), db, g.O, tol);
        free(out); free(dx); free(dw); free(db);
    }
}

static const conv_case CONV_CASES[] = {
    {64, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, true, false},   /* the CNN's first layer */
    {40, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, true, false},  /* its second (two column groups) */
    {3, 4, 9, 8, 5, 3, 3, 2, 2, 1, 1, false, true},       /* stride 2, no bias, strided x */
    {2, 6, 7, 5, 4, 1, 1, 1, 1, 0, 0, true, false},       /* 1x1: no im2col */
    {2, 3, 11, 13, 4, 5, 3, 2, 3, 2, 1, true, true},      /* unequal kernel, strides, padding */
    {1, 2, 3, 3, 3, 3, 3, 1, 1, 0, 0, true, false},       /* one output pixel */
    {2, 2, 4, 6, 3, 2, 4, 3, 1, 3, 2, false, false},      /* padding beyond kernel/2 */
    /* stride 1 (f32: the shifted-window GEMMs of k_conv_shift.c) */
    {3, 3, 9, 37, 5, 5, 5, 1, 1, 2, 2, true, true},       /* 5x5, rows wider than a column panel */
    {2, 3, 8, 9, 4, 3, 3, 1, 1, 0, 0, true, false},       /* no padding */
    {2, 4, 6, 7, 3, 2, 4, 1, 1, 1, 3, true, false},       /* even kernel, padding kernel-1 */
    {2, 2, 5, 6, 3, 2, 2, 1, 1, 2, 1, false, false},      /* padding past kernel-1: dx by col2im */
    {5, 17, 10, 12, 13, 3, 3, 1, 1, 1, 1, true, true},    /* odd channel counts */
};

static void t_conv_f32_vs_ref(void)
{
    for (size_t c = 0; c < sizeof CONV_CASES / sizeof *CONV_CASES; c++) conv_vs_ref(&CONV_CASES[c], DT_F32, 2e-5);
}

static void t_conv_f64_vs_ref(void)
{
    for (size_t c = 2; c < sizeof CONV_CASES / sizeof *CONV_CASES; c++) conv_vs_ref(&CONV_CASES[c], DT_F64, 1e-12);
}

static void t_conv_bf16(void)
{
    conv_vs_ref(&CONV_CASES[2], DT_BF16, 3e-2);
    conv_vs_ref(&CONV_CASES[3], DT_F16, 3e-3);
}

/* One compute thread (per-image GEMMs in place) or several (one GEMM per column group):
 * the same results. */
static void t_conv_threads(void)
{
    int old = dt_tensor_num_threads();
    DT_ASSERT_OK(dt_tensor_set_num_threads(1));
    conv_vs_ref(&CONV_CASES[4], DT_F32, 2e-5);
    conv_vs_ref(&CONV_CASES[1], DT_F32, 2e-5);   /* per-image GEMMs over two column groups */
    conv_vs_ref(&CONV_CASES[2], DT_F64, 1e-12);
    DT_ASSERT_OK(dt_tensor_set_num_threads(3));
    conv_vs_ref(&CONV_CASES[4], DT_F32, 2e-5);
    conv_vs_ref(&CONV_CASES[0], DT_F32, 2e-5);
    conv_vs_ref(&CONV_CASES[1], DT_F32, 2e-5);
    conv_vs_ref(&CONV_CASES[11], DT_F32, 2e-5);
    DT_ASSERT_OK(dt_tensor_set_num_threads(old));
}

/* ------------------------------------------------------------- pooling */
static void ref_pool(bool mx, const double *x, int64_t planes, int64_t H, int64_t W, int kh, int kw, int sh, int sw, int ph, int pw,
                     const double *gy, double *y, double *gx)
{
    int64_t Ho = (H + 2 * ph - kh) / sh + 1, Wo = (W + 2 * pw - kw) / sw + 1;
    memset(gx, 0, (size_t)(planes * H * W) * sizeof *gx);
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oh = 0; oh < Ho; oh++)
            for (int64_t ow = 0; ow < Wo; ow++) {
                double best = -INFINITY, sum = 0;
                int64_t at = -1;
                for (int i = 0; i < kh; i++)
                    for (int j = 0; j < kw; j++) {
                        int64_t ih = oh * sh - ph + i, iw = ow * sw - pw + j;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                        double v = x[(p * H + ih) * W + iw];
                        sum += v;
                        if (at < 0 || v > best) { best = v; at = (p * H + ih) * W + iw; }
                    }
                int64_t o = (p * Ho + oh) * Wo + ow;
                y[o] = mx ? best : sum / (kh * kw);
                if (mx) gx[at] += gy[o];
                else
                    for (int i = 0; i < kh; i++)
                        for (int j = 0; j < kw; j++) {
                            int64_t ih = oh * sh - ph + i, iw = ow * sw - pw + j;
                            if (ih >= 0 && ih < H && iw >= 0 && iw < W) gx[(p * H + ih) * W + iw] += gy[o] / (kh * kw);
                        }
            }
}

static void t_pool_vs_ref(void)
{
    const int cases[][6] = {{2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}, {2, 3, 1, 2, 1, 0}, {3, 2, 3, 3, 0, 1}};
    for (int mx = 0; mx < 2; mx++)
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
            for (int dti = 0; dti < 4; dti++) DT_SCOPE {
                /* odd planes (a last row and column in no 2x2 window); wide even ones
                 * (the AVX-512 2x2 path in several 16-wide pieces) */
                dt_dtype dt = dti & 1 ? DT_F64 : DT_F32;
                const int *k = cases[c];
                int64_t N = 5, C = 7, H = dti < 2 ? 29 : 28, W = dti < 2 ? 27 : 70;
                dt_tensor *x = dt_randn(&g_rng, dt, DT_SHAPE(N, C, H, W));
                DT_ASSERT_OK(dt_tensor_set_requires_grad(x, true));
                dt_tensor *y = mx ? dt_max_pool2d(x, k[0], k[1], k[2], k[3], k[4], k[5]) : dt_avg_pool2d(x, k[0], k[1], k[2], k[3], k[4], k[5]);
                DT_ASSERT_MSG(y, "pool: %s", dt_last_error());
                dt_tensor *gy = dt_randn(&g_rng, dt, dt_tensor_ndim(y), dt_tensor_shape(y));
                DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(y, gy), NULL, 0, false)));
                int64_t ny = dt_tensor_numel(y);
                double *yr = calloc((size_t)ny, 8), *gx = calloc((size_t)(N * C * H * W), 8);
                ref_pool(mx, f64_of(x), N * C, H, W, k[0], k[1], k[2], k[3], k[4], k[5], f64_of(gy), yr, gx);
                double tol = dt == DT_F32 ? 1e-6 : 1e-14;
                expect_close(mx ? "max_pool2d out" : "avg_pool2d out", f64_of(y), yr, ny, tol);
                expect_close(mx ? "max_pool2d grad" : "avg_pool2d grad", f64_of(dt_tensor_grad(x)), gx, N * C * H * W, tol);
                free(yr);
                free(gx);
            }
}

/* Ties go to the first maximum of the window; a NaN wins its window. */
static void t_max_pool_ties(void)
{
    for (int f32 = 0; f32 < 2; f32++) DT_SCOPE {
        double v[16] = {1, 1, 0, 2, 1, 0, 2, 2, 5, 5, 3, NAN, 5, 5, 4, 4};
        dt_tensor *x = dt_empty(DT_F64, DT_SHAPE(1, 4, 4));
        DT_ASSERT_OK(dt_tensor_write(x, v, 16));
        if (f32) x = dt_detach(dt_to_dtype(x, DT_F32));
        DT_ASSERT_OK(dt_tensor_set_requires_grad(x, true));
        dt_tensor *y = dt_max_pool2d(x, 2, 2, 2, 2, 0, 0);
        DT_ASSERT_OK(dt_backward(dt_sum(y, NULL, 0, false)));
        const double *g = f64_of(dt_tensor_grad(x)), *yv = f64_of(y);
        double want[16] = {1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0};
        for (int i = 0; i < 16; i++) DT_ASSERT_MSG(g[i] == want[i], "grad[%d] = %g, want %g", i, g[i], want[i]);
        DT_ASSERT(yv[0] == 1 && yv[1] == 2 && yv[2] == 5 && isnan(yv[3]));
    }
}

/* ------------------------------------------------------------- losses */
static dt_tensor *ids(const int64_t *v, int64_t n)
{
    dt_tensor *t = dt_empty(DT_I64, 1, &n);
    return t && dt_tensor_write(t, v, n) == 0 ? t : NULL;
}

static void t_cross_entropy_vs_composed(void)
{
    DT_SCOPE {
        int64_t N = 64, C = 10, tv[64];
        for (int64_t i = 0; i < N; i++) tv[i] = i % 7 == 3 ? DT_IGNORE_INDEX : (i * 5) % C;
        dt_tensor *t = ids(tv, N);
        dt_reduction reds[3] = {DT_REDUCTION_MEAN, DT_REDUCTION_SUM, DT_REDUCTION_NONE};
        for (int r = 0; r < 3; r++) {
            dt_tensor *x1 = dt_mul_scalar(dt_randn(&g_rng, DT_F32, DT_SHAPE(N, C)), 3);
            x1 = dt_detach(x1);
            dt_tensor *x2 = dt_detach(dt_contiguous(dt_add_scalar(x1, 0)));
            DT_ASSERT_OK(dt_tensor_set_requires_grad(x1, true));
            DT_ASSERT_OK(dt_tensor_set_requires_grad(x2, true));
            dt_tensor *a = dt_cross_entropy_ex(x1, t, reds[r], DT_IGNORE_INDEX);
            dt_tensor *b = dt_nll_loss(dt_log_softmax(x2, 1), t, reds[r], DT_IGNORE_INDEX);
            DT_ASSERT_MSG(a && b, "%s", dt_last_error());
            expect_close("cross_entropy vs nll(log_softmax)", f64_of(a), f64_of(b), dt_tensor_numel(a), 1e-6);
            dt_tensor *w = dt_randn(&g_rng, DT_F32, dt_tensor_ndim(a), dt_tensor_shape(a));
            DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(a, w), NULL, 0, false)));
            DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(b, w), NULL, 0, false)));
            expect_close("cross_entropy grad", f64_of(dt_tensor_grad(x1)), f64_of(dt_tensor_grad(x2)), N * C, 1e-6);
        }
    }
}

/* Logits of 1e4: max-subtracted, so finite; the gradient rows sum to 0. */
static void t_cross_entropy_stable(void)
{
    DT_SCOPE {
        float v[6] = {1e4f, -1e4f, 0, 3e4f, 3e4f, -3e4f};
        int64_t tv[2] = {1, 0};
        dt_tensor *x = dt_empty(DT_F32, DT_SHAPE(2, 3));
        DT_ASSERT_OK(dt_tensor_write(x, v, 6));
        DT_ASSERT_OK(dt_tensor_set_requires_grad(x, true));
        dt_tensor *l = dt_cross_entropy_ex(x, ids(tv, 2), DT_REDUCTION_NONE, DT_IGNORE_INDEX);
        const double *lv = f64_of(l);
        DT_ASSERT_NEAR(lv[0], 2e4, 1);
        DT_ASSERT_NEAR(lv[1], log(2), 4e-3);   /* f32 rounding of lse = 3e4 + log 2 */
        DT_ASSERT_OK(dt_backward(dt_sum(l, NULL, 0, false)));
        const double *g = f64_of(dt_tensor_grad(x));
        DT_ASSERT_NEAR(g[0], 1, 1e-6);
        DT_ASSERT_NEAR(g[1], -1, 1e-6);
        DT_ASSERT_NEAR(g[3], -0.5, 4e-3);
        DT_ASSERT_NEAR(g[4], 0.5, 4e-3);
    }
}

/* MEAN over only ignored targets is NaN (0/0, as torch); SUM is 0; the gradient is 0. */
static void t_cross_entropy_all_ignored(void)
{
    DT_SCOPE {
        int64_t tv[3] = {-100, -100, -100};
        dt_tensor *x = dt_randn(&g_rng, DT_F64, DT_SHAPE(3, 4));
        DT_ASSERT_OK(dt_tensor_set_requires_grad(x, true));
        dt_tensor *t = ids(tv, 3);
        DT_ASSERT(isnan(dt_tensor_item(dt_cross_entropy(x, t))));
        DT_ASSERT(isnan(dt_tensor_item(dt_nll_loss(x, t, DT_REDUCTION_MEAN, DT_IGNORE_INDEX))));
        dt_tensor *s = dt_cross_entropy_ex(x, t, DT_REDUCTION_SUM, DT_IGNORE_INDEX);
        DT_ASSERT(dt_tensor_item(s) == 0);
        DT_ASSERT_OK(dt_backward(s));
        const double *g = f64_of(dt_tensor_grad(x));
        for (int i = 0; i < 12; i++) DT_ASSERT(g[i] == 0);
    }
}

static void t_losses_bf16(void)
{
    DT_SCOPE {
        int64_t tv[4] = {0, 2, 1, -100};
        dt_tensor *x = dt_randn(&g_rng, DT_F32, DT_SHAPE(4, 3));
        dt_tensor *xb = dt_detach(dt_to_dtype(x, DT_BF16));
        DT_ASSERT_OK(dt_tensor_set_requires_grad(xb, true));
        dt_tensor *l = dt_cross_entropy(xb, ids(tv, 4));
        DT_ASSERT(l && dt_tensor_dtype(l) == DT_BF16 && dt_tensor_ndim(l) == 0);
        dt_tensor *ref = dt_cross_entropy(dt_to_dtype(xb, DT_F32), ids(tv, 4));
        DT_ASSERT_NEAR(dt_tensor_item(l), dt_tensor_item(ref), 2e-2);
        DT_ASSERT_OK(dt_backward(l));
        DT_ASSERT(dt_tensor_dtype(dt_tensor_grad(xb)) == DT_BF16);
        dt_tensor *m = dt_mse_loss(xb, dt_zeros(DT_BF16, DT_SHAPE(4, 3)), DT_REDUCTION_MEAN);
        DT_ASSERT(m && dt_tensor_dtype(m) == DT_BF16);
    }
}

/* ------------------------------------------------------------- bad inputs */
#define EXPECT_ERR(expr, code)                                                                  \
    do {                                                                                        \
        dt_clear_error();                                                                       \
        dt_tensor *dt__r = (expr);                                                              \
        DT_ASSERT_MSG(!dt__r && dt_last_error_code() == (code), "%s: got %p, error %s (%s), want %s", #expr, (void *)dt__r, \
                      dt_errname(dt_last_error_code()), dt_last_error(), #code);                \
    } while (0)

static void t_errors(void)
{
    DT_SCOPE {
        dt_tensor *x = dt_randn(&g_rng, DT_F32, DT_SHAPE(2, 3, 8, 8));
        dt_tensor *w = dt_randn(&g_rng, DT_F32, DT_SHAPE(4, 3, 3, 3));
        dt_tensor *w2 = dt_randn(&g_rng, DT_F32, DT_SHAPE(4, 2, 3, 3));
        dt_tensor *b = dt_randn(&g_rng, DT_F32, DT_SHAPE(4));
        EXPECT_ERR(dt_conv2d(x, w2, NULL, 1, 1, 1, 1), DT_ESHAPE);                          /* channels differ */
        EXPECT_ERR(dt_conv2d(x, w, dt_randn(&g_rng, DT_F32, DT_SHAPE(3)), 1, 1, 1, 1), DT_ESHAPE); /* bias size */
        EXPECT_ERR(dt_conv2d(x, dt_randn(&g_rng, DT_F32, DT_SHAPE(4, 3, 9, 9)), NULL, 1, 1, 0, 0), DT_ESHAPE); /* empty output */
        EXPECT_ERR(dt_conv2d(x, w, NULL, 0, 1, 1, 1), DT_EINVAL);
        EXPECT_ERR(dt_conv2d(x, w, NULL, 1, 1, -1, 0), DT_EINVAL);
        EXPECT_ERR(dt_conv2d(dt_randn(&g_rng, DT_F32, DT_SHAPE(3, 8)), w, NULL, 1, 1, 0, 0), DT_ESHAPE);
        EXPECT_ERR(dt_conv2d(x, dt_to_dtype(w, DT_F64), NULL, 1, 1, 0, 0), DT_EDTYPE);
        EXPECT_ERR(dt_conv2d(dt_to_dtype(x, DT_I32), dt_to_dtype(w, DT_I32), NULL, 1, 1, 0, 0), DT_EDTYPE);
        EXPECT_ERR(dt_conv2d(NULL, w, b, 1, 1, 1, 1), DT_EINVAL);
        EXPECT_ERR(dt_conv2d(x, NULL, b, 1, 1, 1, 1), DT_EINVAL);
        /* a failure deep in a chain comes out at the end, with its cause */
        dt_clear_error();
        dt_tensor *chain = dt_cross_entropy(dt_flatten(dt_max_pool2d(dt_relu(dt_conv2d(x, w2, b, 1, 1, 1, 1)), 2, 2, 2, 2, 0, 0), 1, -1), NULL);
        DT_ASSERT(!chain && dt_last_error_code() == DT_ESHAPE);
        DT_ASSERT_CONTAINS(dt_last_error(), "conv2d");

        EXPECT_ERR(dt_max_pool2d(x, 2, 2, 2, 2, 2, 0), DT_EINVAL);    /* padding above kernel/2 */
        EXPECT_ERR(dt_avg_pool2d(x, 3, 3, 0, 1, 0, 0), DT_EINVAL);
        EXPECT_ERR(dt_avg_pool2d(x, 0, 3, 1, 1, 0, 0), DT_EINVAL);
        EXPECT_ERR(dt_max_pool2d(x, 9, 9, 1, 1, 0, 0), DT_ESHAPE);    /* kernel beyond the input */
        EXPECT_ERR(dt_max_pool2d(dt_randn(&g_rng, DT_F32, DT_SHAPE(8, 8)), 2, 2, 2, 2, 0, 0), DT_ESHAPE);
        EXPECT_ERR(dt_max_pool2d(dt_to_dtype(x, DT_I64), 2, 2, 2, 2, 0, 0), DT_EDTYPE);
        EXPECT_ERR(dt_max_pool2d(NULL, 2, 2, 2, 2, 0, 0), DT_EINVAL);
        EXPECT_ERR(dt_avg_pool2d(NULL, 2, 2, 2, 2, 0, 0), DT_EINVAL);

        dt_tensor *lg = dt_randn(&g_rng, DT_F32, DT_SHAPE(3, 5));
        int64_t bad[3] = {1, 5, 0}, neg[3] = {1, -1, 0}, ok[3] = {1, 2, 3};
        EXPECT_ERR(dt_cross_entropy(lg, ids(bad, 3)), DT_ERANGE);
        EXPECT_ERR(dt_cross_entropy(lg, ids(neg, 3)), DT_ERANGE);
        DT_ASSERT(dt_cross_entropy_ex(lg, ids(bad, 3), DT_REDUCTION_MEAN, 5));   /* 5 is the ignore_index */
        EXPECT_ERR(dt_nll_loss(lg, ids(bad, 3), DT_REDUCTION_SUM, DT_IGNORE_INDEX), DT_ERANGE);
        EXPECT_ERR(dt_cross_entropy(lg, ids(ok, 2)), DT_ESHAPE);
        EXPECT_ERR(dt_cross_entropy(dt_randn(&g_rng, DT_F32, DT_SHAPE(3)), ids(ok, 3)), DT_ESHAPE);
        EXPECT_ERR(dt_cross_entropy(lg, dt_to_dtype(ids(ok, 3), DT_F32)), DT_EDTYPE);
        EXPECT_ERR(dt_cross_entropy(dt_to_dtype(lg, DT_I32), ids(ok, 3)), DT_EDTYPE);
        EXPECT_ERR(dt_cross_entropy_ex(lg, ids(ok, 3), (dt_reduction)7, DT_IGNORE_INDEX), DT_EINVAL);
        EXPECT_ERR(dt_cross_entropy(NULL, ids(ok, 3)), DT_EINVAL);
        EXPECT_ERR(dt_cross_entropy(lg, NULL), DT_EINVAL);
        EXPECT_ERR(dt_nll_loss(NULL, ids(ok, 3), DT_REDUCTION_MEAN, DT_IGNORE_INDEX), DT_EINVAL);

        EXPECT_ERR(dt_mse_loss(lg, dt_randn(&g_rng, DT_F32, DT_SHAPE(3, 4)), DT_REDUCTION_MEAN), DT_ESHAPE);
        EXPECT_ERR(dt_mse_loss(lg, dt_to_dtype(lg, DT_F64), DT_REDUCTION_MEAN), DT_EDTYPE);
        EXPECT_ERR(dt_mse_loss(lg, lg, (dt_reduction)-1), DT_EINVAL);
        EXPECT_ERR(dt_mse_loss(NULL, lg, DT_REDUCTION_MEAN), DT_EINVAL);
    }
}

/* ------------------------------------------------------------- allocation failures */
/* dt_conv2d_relu_max_pool2d against the three ops in turn: the same bits forward and
 * backward (fused: each image pooled in cache; otherwise the composition itself), with
 * and without bias, odd conv outputs (a last row/column in no window), the fallbacks
 * (f64, 3-D input, padding past kernel - 1), inputs with exact zeros and NaN, and x
 * with or without a gradient. */
typedef struct { int64_t N, C, H, W, O, k; int pad; bool bias, xgrad; dt_dtype dt; bool nan; } fused_case;

static dt_tensor *clone(dt_tensor *t)
{
    dt_tensor *c = dt_empty(dt_tensor_dtype(t), dt_tensor_ndim(t), dt_tensor_shape(t));
    return c && dt_tensor_copy_(c, t) == 0 ? c : NULL;
}

static void fused_vs_ops(const fused_case *fc)
{
    DT_SCOPE {
        int64_t xs[4] = {fc->N, fc->C, fc->H, fc->W};
        dt_tensor *x0 = dt_randn(&g_rng, fc->dt, 4, xs);
        if (fc->nan) DT_ASSERT_OK(dt_tensor_fill(dt_narrow(dt_flatten(x0, 0, -1), 0, 3, 1), NAN));
        dt_tensor *w0 = dt_randn(&g_rng, fc->dt, DT_SHAPE(fc->O, fc->C, fc->k, fc->k));
        dt_tensor *b0 = fc->bias ? dt_randn(&g_rng, fc->dt, 1, &fc->O) : NULL;
        dt_tensor *out[2], *gx[2], *gw[2], *gb[2];
        dt_tensor *gy = NULL;
        for (int fused = 0; fused < 2; fused++) {
            dt_tensor *x = clone(x0), *w = clone(w0), *b = b0 ? clone(b0) : NULL;
            if (fc->xgrad) DT_ASSERT_OK(dt_tensor_set_requires_grad(x, true));
            DT_ASSERT_OK(dt_tensor_set_requires_grad(w, true));
            if (b) DT_ASSERT_OK(dt_tensor_set_requires_grad(b, true));
            dt_tensor *y = fused ? dt_conv2d_relu_max_pool2d(x, w, b, fc->pad, fc->pad)
                                 : dt_max_pool2d(dt_relu(dt_conv2d(x, w, b, 1, 1, fc->pad, fc->pad)), 2, 2, 2, 2, 0, 0);
            DT_ASSERT_MSG(y, "%s: %s", fused ? "fused" : "ops", dt_last_error());
            if (!gy) gy = dt_randn(&g_rng, fc->dt, dt_tensor_ndim(y), dt_tensor_shape(y));
            DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(y, gy), NULL, 0, false)));
            out[fused] = y, gx[fused] = fc->xgrad ? dt_tensor_grad(x) : NULL, gw[fused] = dt_tensor_grad(w);
            gb[fused] = b ? dt_tensor_grad(b) : NULL;
        }
        const char *what[4] = {"out", "dx", "dw", "db"};
        dt_tensor *const *pairs[4] = {out, gx, gw, gb};
        for (int q = 0; q < 4; q++) {
            dt_tensor *a = pairs[q][0], *c = pairs[q][1];
            if (!a && !c) continue;
            DT_ASSERT_MSG(a && c, "fused %s: present on one side only", what[q]);
            int64_t n = dt_tensor_numel(a);
            DT_ASSERT_MSG(n == dt_tensor_numel(c), "fused %s: %lld vs %lld elements", what[q], (long long)n,
                          (long long)dt_tensor_numel(c));
            const double *av = f64_of(a), *cv = f64_of(c);
            for (int64_t i = 0; i < n; i++)
                DT_ASSERT_MSG(av[i] == cv[i] || (isnan(av[i]) && isnan(cv[i])),
                              "fused %s (N%lld C%lld %lldx%lld O%lld k%lld pad %d): element %lld is %.9g, the ops give %.9g",
                              what[q], (long long)fc->N, (long long)fc->C, (long long)fc->H, (long long)fc->W,
                              (long long)fc->O, (long long)fc->k, fc->pad, (long long)i, cv[i], av[i]);
        }
    }
}

static void t_conv_relu_pool_fused(void)
{
    const fused_case cases[] = {
        {6, 1, 28, 28, 32, 3, 1, true, false, DT_F32, false},    /* the CNN's first block */
        {4, 32, 14, 14, 64, 3, 1, true, true, DT_F32, false},    /* its second */
        {3, 5, 9, 11, 7, 3, 1, false, true, DT_F32, false},      /* odd output, no bias */
        {2, 3, 12, 35, 6, 5, 2, true, true, DT_F32, true},       /* 5x5, wide rows, a NaN */
        {2, 4, 7, 8, 3, 2, 0, true, true, DT_F32, false},        /* even kernel, no padding */
        {2, 3, 6, 6, 4, 3, 3, true, true, DT_F32, false},        /* padding past kernel-1: the ops */
        {2, 3, 6, 7, 4, 3, 1, true, true, DT_F64, false},        /* f64: the ops */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) fused_vs_ops(&cases[c]);
    /* the same bits at 1 and 3 compute threads (images spread over threads in the forward
     * and dx; dw and db image by image), fused and plain conv alike */
    int old = dt_tensor_num_threads();
    for (int c = 0; c < 5; c++) {
        double *got[2][4] = {{0}};
        int64_t cnt[4] = {0};
        for (int t = 0; t < 2; t++) {
            DT_ASSERT_OK(dt_tensor_set_num_threads(t ? 3 : 1));
            dt_rng saved = g_rng;
            DT_SCOPE {
                const fused_case *fc = &cases[c];
                dt_tensor *x = dt_randn(&g_rng, DT_F32, DT_SHAPE(fc->N, fc->C, fc->H, fc->W));
                dt_tensor *w = dt_randn(&g_rng, DT_F32, DT_SHAPE(fc->O, fc->C, fc->k, fc->k));
                dt_tensor *b = dt_randn(&g_rng, DT_F32, 1, &fc->O);
                DT_ASSERT_OK(dt_tensor_set_requires_grad(x, true));
                DT_ASSERT_OK(dt_tensor_set_requires_grad(w, true));
                DT_ASSERT_OK(dt_tensor_set_requires_grad(b, true));
                dt_tensor *y = c % 2 ? dt_conv2d(x, w, b, 1, 1, fc->pad, fc->pad) : dt_conv2d_relu_max_pool2d(x, w, b, fc->pad, fc->pad);
                DT_ASSERT_MSG(y, "%s", dt_last_error());
                DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(y, dt_randn(&g_rng, DT_F32, dt_tensor_ndim(y), dt_tensor_shape(y))), NULL, 0, false)));
                dt_tensor *ts[4] = {y, dt_tensor_grad(x), dt_tensor_grad(w), dt_tensor_grad(b)};
                for (int q = 0; q < 4; q++) {
                    cnt[q] = dt_tensor_numel(ts[q]);
                    got[t][q] = malloc((size_t)cnt[q] * sizeof(double));
                    memcpy(got[t][q], f64_of(ts[q]), (size_t)cnt[q] * sizeof(double));
                }
            }
            if (!t) g_rng = saved;
        }
        for (int q = 0; q < 4; q++) {
            DT_ASSERT_MSG(memcmp(got[0][q], got[1][q], (size_t)cnt[q] * sizeof(double)) == 0,
                          "case %d, tensor %d: 1 and 3 threads differ", c, q);
            free(got[0][q]);
            free(got[1][q]);
        }
    }
    DT_ASSERT_OK(dt_tensor_set_num_threads(old));
    DT_SCOPE {   /* unbatched input: the ops, shapes as theirs */
        dt_tensor *y = dt_conv2d_relu_max_pool2d(dt_randn(&g_rng, DT_F32, DT_SHAPE(2, 8, 8)),
                                                 dt_randn(&g_rng, DT_F32, DT_SHAPE(3, 2, 3, 3)), NULL, 1, 1);
        DT_ASSERT_MSG(y && dt_tensor_ndim(y) == 3 && dt_tensor_size(y, 0) == 3 && dt_tensor_size(y, 2) == 4,
                      "unbatched: %s", dt_last_error());
        /* errors as the ops: channels differ */
        EXPECT_ERR(dt_conv2d_relu_max_pool2d(dt_randn(&g_rng, DT_F32, DT_SHAPE(1, 2, 8, 8)),
                                             dt_randn(&g_rng, DT_F32, DT_SHAPE(3, 4, 3, 3)), NULL, 1, 1), DT_ESHAPE);
        EXPECT_ERR(dt_conv2d_relu_max_pool2d(NULL, NULL, NULL, 1, 1), DT_EINVAL);
    }
}

/* Each allocation of a CNN step (conv, relu, pools, cross_entropy, backward) failing
 * in turn: DT_ENOMEM comes out, nothing crashes and nothing leaks. */
static void t_alloc_sweep(void)
{
    int tok = dt_scope_begin();
    dt_tensor *x = dt_randn(&g_rng, DT_F32, DT_SHAPE(3, 2, 8, 8)), *w = dt_randn(&g_rng, DT_F32, DT_SHAPE(4, 2, 3, 3));
    dt_tensor *b = dt_randn(&g_rng, DT_F32, DT_SHAPE(4));
    int64_t tv[3] = {1, -100, 15};
    dt_tensor *t = ids(tv, 3);
    dt_tensor *leaves[3] = {x, w, b};
    for (int i = 0; i < 3; i++) DT_ASSERT_OK(dt_tensor_set_requires_grad(leaves[i], true));
    int done = 0;
    for (int64_t n = 0; n < 400 && !done; n++) {   /* n = 0: a warm-up run without failures */
        dt_mem_stats base, now;
        dt_mem_get_stats(&base);
        dt_alloc_fail_at(n);
        int rc = DT_ENOMEM;
        DT_SCOPE {
            dt_tensor *h = dt_max_pool2d(dt_relu(dt_conv2d(x, w, b, 1, 1, 1, 1)), 2, 2, 2, 2, 0, 0);
            h = dt_avg_pool2d(h, 3, 3, 1, 1, 1, 1);
            dt_tensor *l = dt_cross_entropy(dt_flatten(h, 1, -1), t);
            if (l) rc = dt_backward(l);
        }
        int code = dt_last_error_code();
        dt_alloc_fail_at(0);
        for (int i = 0; i < 3; i++) dt_tensor_set_grad_buffer(leaves[i], NULL);
        if (n == 0) { DT_ASSERT_OK(rc); continue; }
        if (rc == 0) done = (int)n;
        else DT_ASSERT_MSG(code == DT_ENOMEM, "allocation %lld failing gave %s: %s", (long long)n, dt_errname(code), dt_last_error());
        dt_mem_get_stats(&now);
        DT_ASSERT_MSG(now.total_current == base.total_current, "leak of %lld bytes when allocation %lld fails",
                      (long long)(now.total_current - base.total_current), (long long)n);
    }
    DT_ASSERT_MSG(done > 20, "the step succeeded with allocation %d failing", done);
    dt_scope_end(tok);
}

int main(void)
{
    g_rng = dt_rng_make(77, dt_rng_stream(DT_RNG_INIT, 0));
    DT_RUN(t_conv_f32_vs_ref);
    DT_RUN(t_conv_f64_vs_ref);
    DT_RUN(t_conv_bf16);
    DT_RUN(t_conv_threads);
    DT_RUN(t_pool_vs_ref);
    DT_RUN(t_max_pool_ties);
    DT_RUN(t_conv_relu_pool_fused);
    DT_RUN(t_cross_entropy_vs_composed);
    DT_RUN(t_cross_entropy_stable);
    DT_RUN(t_cross_entropy_all_ignored);
    DT_RUN(t_losses_bf16);
    DT_RUN(t_errors);
    DT_RUN(t_alloc_sweep);
    return DT_TEST_END();
}
