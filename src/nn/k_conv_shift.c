/* conv2d with stride 1 in f32 as shifted-window GEMMs: no im2col, no col2im.
 *
 * Pad one image once into xp (C, Hp, Wp), Hp = H + 2ph, Wp = W + 2pw. For stride 1 the
 * column-matrix row (c, i, j) of im2col, read with the output's row stride widened to Wp,
 * is a contiguous run of xp: xp + c*Hp*Wp + i*Wp + j, Ho*Wp long. So the forward is one
 * GEMM whose B rows are given by those K = C*kh*kw offsets (dt__sgemm_rows packs them
 * straight from xp, which stays in L2):
 *
 *   forward   op (O, Ho*Wp) = w (O, K) @ rows(xp)            then out = op[:, :, :Wo] + b
 *   dw        dw (O, K)    += gp (O, Ho*Wp) @ rows(xp)^T      gp = gout widened, zeros at ow >= Wo
 *   dx        dp (C, H*Wq)  = wf (C, O*kh*kw) @ rows(gq)       then dx = dp[:, :, :W]
 *
 * Columns ow >= Wo of a widened row are wrapped-around garbage: dropped in the forward,
 * multiplied by gp's zeros in dw. dx is the forward convolution of gout padded by
 * (kh-1-ph, kw-1-pw) into gq (O, Hq, Wq), Hq = H + kh - 1, Wq = W + kw - 1, with the
 * flipped kernel wf[c][o][i][j] = w[o][c][kh-1-i][kw-1-j]; it needs ph <= kh-1 and
 * pw <= kw-1 (dt__conv2d_shift_dx_ok), else k_conv.c's col2im does dx. The last run of
 * a padded image reaches kw-1 floats past it: every padded buffer has SLACK zeros after.
 *
 * Costs (Wp/Wo - 1) extra columns (14% for the CNN's 14x14 layer) to save writing and
 * reading the K x P column matrix. Images go one at a time, each GEMM threaded over C
 * by dt__sgemm_rows, so the results do not depend on the thread count; dw sums the
 * images in order. With inf or NaN in x, dw may be NaN where the exact sum is inf (the
 * garbage columns add 0 * x). No argument checking here (f_conv.c does it). */
#include "nn/nn_conv.h"
#include "tensor/tensor_internal.h"

#define SLACK 16

bool dt__conv2d_shift_ok(const dt__conv_geom *g, dt_dtype dt)
{
    return dt == DT_F32 && g->sh == 1 && g->sw == 1 && dt__sgemm_ours_available() &&
           g->Wo == g->W + 2 * g->pw - g->kw + 1 && g->Ho == g->H + 2 * g->ph - g->kh + 1;
}

bool dt__conv2d_shift_dx_ok(const dt__conv_geom *g) { return g->ph <= g->kh - 1 && g->pw <= g->kw - 1; }

/* dst (C, Hd, Wd) plus SLACK zeros <- src (C, H, W) at row r0, column c0, zeros around. */
DT__KERNEL static void pad_planes(const float *src, int64_t C, int64_t H, int64_t W, float *dst, int64_t Hd,
                                  int64_t Wd, int64_t r0, int64_t c0)
{
    for (int64_t c = 0; c < C; c++) {
        float *d = dst + c * Hd * Wd;
        const float *s = src + c * H * W;
        memset(d, 0, (size_t)(r0 * Wd) * sizeof(float));
        for (int64_t h = 0; h < H; h++) {
            float *row = d + (r0 + h) * Wd;
            for (int64_t v = 0; v < c0; v++) row[v] = 0;
            memcpy(row + c0, s + h * W, (size_t)W * sizeof(float));
            for (int64_t v = c0 + W; v < Wd; v++) row[v] = 0;
        }
        memset(d + (r0 + H) * Wd, 0, (size_t)((Hd - r0 - H) * Wd) * sizeof(float));
    }
    memset(dst + C * Hd * Wd, 0, SLACK * sizeof(float));
}

/* dst (R, H, W) [+ bias per plane] <- the first W columns of each row of src (R, H, Ws). */
DT__KERNEL static void narrow_rows(const float *src, int64_t R, int64_t H, int64_t Ws, int64_t W, const float *bias,
                                   float *dst)
{
    for (int64_t r = 0; r < R; r++) {
        float b = bias ? bias[r] : 0.0f;
        for (int64_t h = 0; h < H; h++) {
            const float *s = src + (r * H + h) * Ws;
            float *d = dst + (r * H + h) * W;
            if (bias) for (int64_t v = 0; v < W; v++) d[v] = s[v] + b;
            else memcpy(d, s, (size_t)W * sizeof(float));
        }
    }
}

/* off[(c*kh + i)*kw + j] = c*Hp*Wp + i*Wp + j: the K window rows of a padded image. */
static void window_offsets(int64_t C, int64_t kh, int64_t kw, int64_t Hp, int64_t Wp, int64_t *off)
{
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++) *off++ = c * Hp * Wp + i * Wp + j;
}

int dt__conv2d_fwd_shift(const dt__conv_geom *g, const float *x, const float *w, const float *b, float *out)
{
    int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw, K = g->C * g->kh * g->kw, np = g->Ho * Wp;
    size_t xn = (size_t)(g->C * Hp * Wp + SLACK), on = (size_t)(g->O * np);
    float *xp = dt_alloc((xn + on) * sizeof(float) + (size_t)K * sizeof(int64_t), DT_MEM_ACT);
    if (!xp) return dt_last_error_code();
    float *op = xp + xn;
    int64_t *off = (int64_t *)(op + on);
    window_offsets(g->C, g->kh, g->kw, Hp, Wp, off);
    for (int64_t n = 0; n < g->N; n++) {
        pad_planes(x + n * g->C * g->H * g->W, g->C, g->H, g->W, xp, Hp, Wp, g->ph, g->pw);
        dt__sgemm_rows(false, false, g->O, np, K, 1.0f, w, K, xp, off, 0.0f, op, np);
        narrow_rows(op, g->O, g->Ho, Wp, g->Wo, b, out + n * g->O * g->Ho * g->Wo);
    }
    dt_free(xp);
    return 0;
}

/* dw (O, K) = sum over images of gp @ rows(xp)^T, images in order. */
static int bw_dw(const dt__conv_geom *g, const float *x, const float *gout, float *dw)
{
    int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw, K = g->C * g->kh * g->kw, np = g->Ho * Wp;
    size_t xn = (size_t)(g->C * Hp * Wp + SLACK), gn = (size_t)(g->O * np + SLACK);
    float *xp = dt_alloc((xn + gn) * sizeof(float) + (size_t)K * sizeof(int64_t), DT_MEM_ACT);
    if (!xp) return dt_last_error_code();
    float *gp = xp + xn;
    int64_t *off = (int64_t *)(gp + gn);
    window_offsets(g->C, g->kh, g->kw, Hp, Wp, off);
    for (int64_t n = 0; n < g->N; n++) {
        pad_planes(x + n * g->C * g->H * g->W, g->C, g->H, g->W, xp, Hp, Wp, g->ph, g->pw);
        /* gout[n] widened to Wp columns (Ho planes of O rows read as one (O*Ho, Wo) block) */
        pad_planes(gout + n * g->O * g->Ho * g->Wo, 1, g->O * g->Ho, g->Wo, gp, g->O * g->Ho, Wp, 0, 0);
        dt__sgemm_rows(false, true, g->O, K, np, 1.0f, gp, np, xp, off, n ? 1.0f : 0.0f, dw, K);
    }
    dt_free(xp);
    return 0;
}

/* dx[n] = the forward conv of gout[n] padded into gq, by the flipped kernel wf. */
static int bw_dx(const dt__conv_geom *g, const float *w, const float *gout, float *dx)
{
    int64_t kk = g->kh * g->kw, Kf = g->O * kk;
    int64_t Hq = g->H + g->kh - 1, Wq = g->W + g->kw - 1, np = g->H * Wq;
    size_t wn = (size_t)(g->C * Kf), qn = (size_t)(g->O * Hq * Wq + SLACK), dn = (size_t)(g->C * np);
    float *wf = dt_alloc((wn + qn + dn) * sizeof(float) + (size_t)Kf * sizeof(int64_t), DT_MEM_ACT);
    if (!wf) return dt_last_error_code();
    float *gq = wf + wn, *dp = gq + qn;
    int64_t *off = (int64_t *)(dp + dn);
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t o = 0; o < g->O; o++)
            for (int64_t t = 0; t < kk; t++) wf[(c * g->O + o) * kk + t] = w[(o * g->C + c) * kk + kk - 1 - t];
    window_offsets(g->O, g->kh, g->kw, Hq, Wq, off);
    for (int64_t n = 0; n < g->N; n++) {
        pad_planes(gout + n * g->O * g->Ho * g->Wo, g->O, g->Ho, g->Wo, gq, Hq, Wq, g->kh - 1 - g->ph,
                   g->kw - 1 - g->pw);
        dt__sgemm_rows(false, false, g->C, np, Kf, 1.0f, wf, Kf, gq, off, 0.0f, dp, np);
        narrow_rows(dp, g->C, g->H, Wq, g->W, NULL, dx + n * g->C * g->H * g->W);
    }
    dt_free(wf);
    return 0;
}

int dt__conv2d_bw_shift(const dt__conv_geom *g, const float *x, const float *w, const float *gout, float *dx,
                        float *dw)
{
    if (dw) DT_CHECK(bw_dw(g, x, gout, dw));
    if (dx) DT_CHECK(bw_dx(g, w, gout, dx));
    return 0;
}
