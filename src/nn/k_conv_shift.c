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
 * reading the K x P column matrix. The fused max_pool2d(relu(conv2d)) (2x2 pooling)
 * goes further: each image's output gets bias and relu and is pooled while in cache,
 * and its backward rebuilds each image's conv gradient in cache from the pooled
 * gradient and indices, so no full-size activation or gradient is ever written.
 * Images go one at a time, each GEMM threaded over C
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
            const float *sr = s + h * W;
            for (int64_t v = 0; v < c0; v++) row[v] = 0;
            for (int64_t v = 0; v < W; v++) row[c0 + v] = sr[v];   /* short rows: a loop beats memcpy's call */
            for (int64_t v = c0 + W; v < Wd; v++) row[v] = 0;
        }
        memset(d + (r0 + H) * Wd, 0, (size_t)((Hd - r0 - H) * Wd) * sizeof(float));
    }
    memset(dst + C * Hd * Wd, 0, SLACK * sizeof(float));
}

/* dst (R, H, W) <- the first W columns of each row of src (R, H, Ws) [+ bias per plane],
 * [then relu as dt_relu: x < 0 ? 0 : x]. */
DT__KERNEL static void narrow_rows(const float *src, int64_t R, int64_t H, int64_t Ws, int64_t W, const float *bias,
                                   bool relu, float *dst)
{
    for (int64_t r = 0; r < R; r++) {
        float b = bias ? bias[r] : 0.0f;
        for (int64_t h = 0; h < H; h++) {
            const float *s = src + (r * H + h) * Ws;
            float *d = dst + (r * H + h) * W;
            if (bias && relu) for (int64_t v = 0; v < W; v++) { float t = s[v] + b; d[v] = t < 0 ? 0.0f : t; }
            else if (bias) for (int64_t v = 0; v < W; v++) d[v] = s[v] + b;
            else if (relu) for (int64_t v = 0; v < W; v++) d[v] = s[v] < 0 ? 0.0f : s[v];
            else for (int64_t v = 0; v < W; v++) d[v] = s[v];
        }
    }
}

/* idx[q] = -1 where y[q] is not above 0 (relu passed no gradient to that maximum). */
DT__KERNEL static void mask_idx(const float *y, int32_t *idx, int64_t n)
{
    for (int64_t q = 0; q < n; q++) idx[q] = y[q] > 0 ? idx[q] : -1;
}

/* off[(c*kh + i)*kw + j] = c*Hp*Wp + i*Wp + j: the K window rows of a padded image. */
static void window_offsets(int64_t C, int64_t kh, int64_t kw, int64_t Hp, int64_t Wp, int64_t *off)
{
    for (int64_t c = 0; c < C; c++)
        for (int64_t i = 0; i < kh; i++)
            for (int64_t j = 0; j < kw; j++) *off++ = c * Hp * Wp + i * Wp + j;
}

/* The forward for every image: the widened output op, then either out = op[.., :Wo] + b
 * or (pooled) y, idx = max_pool2d(relu(op[.., :Wo] + b), 2, 2) through z in cache. */
static int fwd_core(const dt__conv_geom *g, const float *x, const float *w, const float *b, float *out, float *y,
                    int32_t *idx)
{
    int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw, K = g->C * g->kh * g->kw, np = g->Ho * Wp;
    int64_t P = g->Ho * g->Wo, Q = (g->Ho / 2) * (g->Wo / 2);
    size_t xn = (size_t)(g->C * Hp * Wp + SLACK), on = (size_t)(g->O * np), zn = y ? (size_t)(g->O * P) : 0;
    zn += (xn + on + zn) & 1;  /* the offsets after the floats 8-aligned */
    float *xp = dt_alloc((xn + on + zn) * sizeof(float) + (size_t)K * sizeof(int64_t), DT_MEM_ACT);
    if (!xp) return dt_last_error_code();
    float *op = xp + xn, *z = op + on;
    int64_t *off = (int64_t *)(z + zn);
    window_offsets(g->C, g->kh, g->kw, Hp, Wp, off);
    for (int64_t n = 0; n < g->N; n++) {
        pad_planes(x + n * g->C * g->H * g->W, g->C, g->H, g->W, xp, Hp, Wp, g->ph, g->pw);
        dt__sgemm_rows(false, false, g->O, np, K, 1.0f, w, K, xp, off, 0.0f, op, np);
        if (!y) {
            narrow_rows(op, g->O, g->Ho, Wp, g->Wo, b, false, out + n * g->O * P);
            continue;
        }
        narrow_rows(op, g->O, g->Ho, Wp, g->Wo, b, true, z);
        float *yn = y + n * g->O * Q;
        int32_t *in = idx + n * g->O * Q;
        dt__max22_f32(g->O, g->Ho, g->Wo, z, yn, in);
        mask_idx(yn, in, g->O * Q);
    }
    dt_free(xp);
    return 0;
}

int dt__conv2d_fwd_shift(const dt__conv_geom *g, const float *x, const float *w, const float *b, float *out)
{
    return fwd_core(g, x, w, b, out, NULL, NULL);
}

int dt__conv2d_relu_pool_fwd(const dt__conv_geom *g, const float *x, const float *w, const float *b, float *y,
                             int32_t *idx)
{
    return fwd_core(g, x, w, b, NULL, y, idx);
}

/* acc (O, 8) += image gout's sums per channel in eight lanes p % 8: k_conv.c's
 * bias_range order, so db comes out with the same bits. */
DT__KERNEL static void db_lanes(const float *go, int64_t O, int64_t P, double *acc)
{
    for (int64_t o = 0; o < O; o++) {
        const float *r = go + o * P;
        double *a = acc + o * 8;
        int64_t p = 0;
        for (; p + 8 <= P; p += 8)
            for (int l = 0; l < 8; l++) a[l] += r[p + l];
        for (; p < P; p++) a[p % 8] += r[p];
    }
}

/* Backward for every image from gout (N, O, Ho, Wo), or (pooled) from gy and idx through
 * the image's gout rebuilt in cache:
 *   dw += gp @ rows(xp)^T  (images in order),  dx[n] = narrow(wf @ rows(gq)),  db = sums. */
static int bw_core(const dt__conv_geom *g, const float *x, const float *w, const float *gout, const float *gy,
                   const int32_t *idx, float *dx, float *dw, float *db)
{
    int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw, K = g->C * g->kh * g->kw, np = g->Ho * Wp;
    int64_t kk = g->kh * g->kw, Kf = g->O * kk, Hq = g->H + g->kh - 1, Wq = g->W + g->kw - 1, nq = g->H * Wq;
    int64_t P = g->Ho * g->Wo, Q = (g->Ho / 2) * (g->Wo / 2);
    /* floats: xp, gp (dw); wf, gq, dp (dx); gz (pooled); then doubles acc (db); offsets */
    size_t xn = dw ? (size_t)(g->C * Hp * Wp + SLACK) : 0, gpn = dw ? (size_t)(g->O * np + SLACK) : 0;
    size_t wn = dx ? (size_t)(g->C * Kf) : 0, qn = dx ? (size_t)(g->O * Hq * Wq + SLACK) : 0;
    size_t dn = dx ? (size_t)(g->C * nq) : 0, zn = gy ? (size_t)(g->O * P) : 0, an = db ? (size_t)(g->O * 8) : 0;
    size_t nf = xn + gpn + wn + qn + dn + zn, no = (dw ? (size_t)K : 0) + (dx ? (size_t)Kf : 0);
    nf += nf & 1;  /* the doubles after the floats 8-aligned */
    float *xp = dt_calloc(1, nf * sizeof(float) + an * sizeof(double) + no * sizeof(int64_t), DT_MEM_ACT);
    if (!xp) return dt_last_error_code();
    float *gp = xp + xn, *wf = gp + gpn, *gq = wf + wn, *dp = gq + qn, *gz = dp + dn;
    double *acc = (double *)(xp + nf);
    int64_t *off = (int64_t *)(acc + an), *offq = off + (dw ? K : 0);
    if (dw) window_offsets(g->C, g->kh, g->kw, Hp, Wp, off);
    if (dx) {
        for (int64_t c = 0; c < g->C; c++)
            for (int64_t o = 0; o < g->O; o++)
                for (int64_t t = 0; t < kk; t++) wf[(c * g->O + o) * kk + t] = w[(o * g->C + c) * kk + kk - 1 - t];
        window_offsets(g->O, g->kh, g->kw, Hq, Wq, offq);
    }
    for (int64_t n = 0; n < g->N; n++) {
        const float *go = gout ? gout + n * g->O * P : gz;
        if (gy) dt__maxb22_f32(g->O, g->Ho, g->Wo, gy + n * g->O * Q, idx + n * g->O * Q, gz);
        if (db) db_lanes(go, g->O, P, acc);
        if (dw) {
            pad_planes(x + n * g->C * g->H * g->W, g->C, g->H, g->W, xp, Hp, Wp, g->ph, g->pw);
            /* gout[n] widened to Wp columns (O*Ho rows of Wo read as one plane) */
            pad_planes(go, 1, g->O * g->Ho, g->Wo, gp, g->O * g->Ho, Wp, 0, 0);
            dt__sgemm_rows(false, true, g->O, K, np, 1.0f, gp, np, xp, off, n ? 1.0f : 0.0f, dw, K);
        }
        if (dx) {
            pad_planes(go, g->O, g->Ho, g->Wo, gq, Hq, Wq, g->kh - 1 - g->ph, g->kw - 1 - g->pw);
            dt__sgemm_rows(false, false, g->C, nq, Kf, 1.0f, wf, Kf, gq, offq, 0.0f, dp, nq);
            narrow_rows(dp, g->C, g->H, Wq, g->W, NULL, false, dx + n * g->C * g->H * g->W);
        }
    }
    if (db)
        for (int64_t o = 0; o < g->O; o++) {
            double s = 0;
            for (int l = 0; l < 8; l++) s += acc[o * 8 + l];
            db[o] = (float)s;
        }
    if (dw && g->N == 0) memset(dw, 0, (size_t)(g->O * K) * sizeof(float));
    dt_free(xp);
    return 0;
}

int dt__conv2d_bw_shift(const dt__conv_geom *g, const float *x, const float *w, const float *gout, float *dx,
                        float *dw)
{
    return bw_core(g, x, w, gout, NULL, NULL, dx, dw, NULL);
}

int dt__conv2d_relu_pool_bw(const dt__conv_geom *g, const float *x, const float *w, const float *gy,
                            const int32_t *idx, float *dx, float *dw, float *db)
{
    return bw_core(g, x, w, NULL, gy, idx, dx, dw, db);
}
