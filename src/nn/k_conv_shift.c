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
 * Images are independent in the forward and in dx: with several compute threads each
 * thread takes a range of images (and runs its GEMMs alone). dw and db sum the images
 * in order, image by image, each GEMM threaded over its output by dt__sgemm_rows. So
 * the results do not depend on the thread count. With inf or NaN in x, dw may be NaN where the exact sum is inf (the
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

/* One convolution's shapes and operands, shared by the per-image steps below. */
typedef struct {
    const dt__conv_geom *g;
    const float *x, *w, *b, *gout, *gy;
    const int32_t *idx;
    float *out, *y, *dx, *dw;
    int32_t *yidx;
    int64_t Hp, Wp, K, np;       /* padded input, window rows, widened output columns */
    int64_t kk, Kf, Hq, Wq, nq;  /* dx: flipped kernel, padded gout, widened dx columns */
    int64_t P, Q;                /* conv output and pooled pixels per plane */
    const int64_t *off, *offq;   /* window offsets into xp (K) and gq (Kf) */
    const float *wf;             /* flipped kernel (C, O*kh*kw) */
    char *ws;                    /* per-thread workspaces of ws_bytes each */
    size_t ws_bytes;
} shift_job;

static float *ws_of(const shift_job *j, int tid) { return (float *)(j->ws + (size_t)tid * j->ws_bytes); }

/* Floats of one forward workspace: xp (C, Hp, Wp)+slack, op (O, Ho*Wp), z (O, Ho, Wo). */
static size_t fwd_ws_floats(const dt__conv_geom *g, bool pooled, int64_t Hp, int64_t Wp)
{
    size_t n = (size_t)(g->C * Hp * Wp + SLACK) + (size_t)(g->O * g->Ho * Wp) + (pooled ? (size_t)(g->O * g->Ho * g->Wo) : 0);
    return (n + 15) & ~(size_t)15;  /* 64-byte workspaces */
}

/* Images [begin, end): the widened output op, then either out = op[.., :Wo] + b or
 * (pooled) y, idx = max_pool2d(relu(op[.., :Wo] + b), 2, 2) through z in cache. */
static void fwd_range(void *arg, int64_t begin, int64_t end, int tid)
{
    const shift_job *j = arg;
    const dt__conv_geom *g = j->g;
    float *xp = ws_of(j, tid), *op = xp + g->C * j->Hp * j->Wp + SLACK, *z = op + g->O * j->np;
    for (int64_t n = begin; n < end; n++) {
        pad_planes(j->x + n * g->C * g->H * g->W, g->C, g->H, g->W, xp, j->Hp, j->Wp, g->ph, g->pw);
        dt__sgemm_rows(false, false, g->O, j->np, j->K, 1.0f, j->w, j->K, xp, j->off, 0.0f, op, j->np);
        if (!j->y) {
            narrow_rows(op, g->O, g->Ho, j->Wp, g->Wo, j->b, false, j->out + n * g->O * j->P);
            continue;
        }
        narrow_rows(op, g->O, g->Ho, j->Wp, g->Wo, j->b, true, z);
        float *yn = j->y + n * g->O * j->Q;
        int32_t *in = j->yidx + n * g->O * j->Q;
        dt__max22_f32(g->O, g->Ho, g->Wo, z, yn, in);
        mask_idx(yn, in, g->O * j->Q);
    }
}

/* Images are independent in the forward: with several compute threads each takes a
 * range of them with its own workspace (its GEMMs then run on that thread alone). */
static int fwd_core(const dt__conv_geom *g, const float *x, const float *w, const float *b, float *out, float *y,
                    int32_t *idx)
{
    shift_job j = {.g = g, .x = x, .w = w, .b = b, .out = out, .y = y, .yidx = idx};
    j.Hp = g->H + 2 * g->ph, j.Wp = g->W + 2 * g->pw, j.K = g->C * g->kh * g->kw, j.np = g->Ho * j.Wp;
    j.P = g->Ho * g->Wo, j.Q = (g->Ho / 2) * (g->Wo / 2);
    int64_t T = dt_tensor_num_threads();
    if (T < 1) T = 1;
    j.ws_bytes = fwd_ws_floats(g, y != NULL, j.Hp, j.Wp) * sizeof(float);
    char *mem = dt_alloc((size_t)T * j.ws_bytes + (size_t)j.K * sizeof(int64_t), DT_MEM_ACT);
    if (!mem) return dt_last_error_code();
    j.ws = mem;
    int64_t *off = (int64_t *)(mem + (size_t)T * j.ws_bytes);
    window_offsets(g->C, g->kh, g->kw, j.Hp, j.Wp, off);
    j.off = off;
    dt__parallel_for(g->N, 1, fwd_range, &j);
    dt_free(mem);
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

/* Floats of one backward workspace: xp (C, Hp, Wp)+slack and gp (O, Ho*Wp)+slack for dw;
 * gq (O, Hq, Wq)+slack and dp (C, H*Wq) for dx; gz (O, Ho, Wo) when pooled. */
static size_t bw_ws_floats(const shift_job *j, bool dw, bool dx, bool pooled)
{
    const dt__conv_geom *g = j->g;
    size_t n = 0;
    if (dw) n += (size_t)(g->C * j->Hp * j->Wp + SLACK) + (size_t)(g->O * j->np + SLACK);
    if (dx) n += (size_t)(g->O * j->Hq * j->Wq + SLACK) + (size_t)(g->C * j->nq);
    if (pooled) n += (size_t)(g->O * j->P);
    return (n + 15) & ~(size_t)15;
}

/* Image n's conv output gradient: gout's, or (pooled) rebuilt into gz from gy and idx. */
static const float *gout_of(const shift_job *j, int64_t n, float *gz)
{
    const dt__conv_geom *g = j->g;
    if (!j->gy) return j->gout + n * g->O * j->P;
    dt__maxb22_f32(g->O, g->Ho, g->Wo, j->gy + n * g->O * j->Q, j->idx + n * g->O * j->Q, gz);
    return gz;
}

/* dw += gp @ rows(xp)^T for image n (beta 0 for the first image). */
static void dw_image(const shift_job *j, int64_t n, const float *go, float *xp, float *gp)
{
    const dt__conv_geom *g = j->g;
    pad_planes(j->x + n * g->C * g->H * g->W, g->C, g->H, g->W, xp, j->Hp, j->Wp, g->ph, g->pw);
    /* gout[n] widened to Wp columns (O*Ho rows of Wo read as one plane) */
    pad_planes(go, 1, g->O * g->Ho, g->Wo, gp, g->O * g->Ho, j->Wp, 0, 0);
    dt__sgemm_rows(false, true, g->O, j->K, j->np, 1.0f, gp, j->np, xp, j->off, n ? 1.0f : 0.0f, j->dw, j->K);
}

/* dx[n] = narrow(wf @ rows(gq)), gq the image's gout padded by kernel-1-padding. */
static void dx_image(const shift_job *j, int64_t n, const float *go, float *gq, float *dp)
{
    const dt__conv_geom *g = j->g;
    pad_planes(go, g->O, g->Ho, g->Wo, gq, j->Hq, j->Wq, g->kh - 1 - g->ph, g->kw - 1 - g->pw);
    dt__sgemm_rows(false, false, g->C, j->nq, j->Kf, 1.0f, j->wf, j->Kf, gq, j->offq, 0.0f, dp, j->nq);
    narrow_rows(dp, g->C, g->H, j->Wq, g->W, NULL, false, j->dx + n * g->C * g->H * g->W);
}

/* The dx pass alone over images [begin, end), one workspace per thread (dx only). */
static void dx_range(void *arg, int64_t begin, int64_t end, int tid)
{
    const shift_job *j = arg;
    const dt__conv_geom *g = j->g;
    float *gq = ws_of(j, tid), *dp = gq + g->O * j->Hq * j->Wq + SLACK, *gz = dp + g->C * j->nq;
    for (int64_t n = begin; n < end; n++) dx_image(j, n, gout_of(j, n, gz), gq, dp);
}

/* Backward from gout (N, O, Ho, Wo), or (pooled) from gy and idx through each image's
 * gout rebuilt in cache. dw and db sum the images in order, so they run image by image
 * (each GEMM threaded over its output); dx[n] depends on image n alone. One thread: one
 * pass does all three per image while its gradient is in cache. Several: dx first, the
 * images spread over the threads, then dw and db. Either way the same bits. */
static int bw_core(const dt__conv_geom *g, const float *x, const float *w, const float *gout, const float *gy,
                   const int32_t *idx, float *dx, float *dw, float *db)
{
    shift_job j = {.g = g, .x = x, .w = w, .gout = gout, .gy = gy, .idx = idx, .dx = dx, .dw = dw};
    j.Hp = g->H + 2 * g->ph, j.Wp = g->W + 2 * g->pw, j.K = g->C * g->kh * g->kw, j.np = g->Ho * j.Wp;
    j.kk = g->kh * g->kw, j.Kf = g->O * j.kk, j.Hq = g->H + g->kh - 1, j.Wq = g->W + g->kw - 1, j.nq = g->H * j.Wq;
    j.P = g->Ho * g->Wo, j.Q = (g->Ho / 2) * (g->Wo / 2);
    int64_t T = dt_tensor_num_threads();
    if (T < 1 || g->N < 2) T = 1;
    bool split = T > 1 && dx;
    /* workspaces: T for the dx pass when split (each with its own gz), one for the rest */
    size_t one = bw_ws_floats(&j, dw != NULL, !split && dx, gy != NULL) * sizeof(float);
    size_t per = split ? bw_ws_floats(&j, false, true, gy != NULL) * sizeof(float) : 0;
    size_t wfn = dx ? (size_t)(g->C * j.Kf) : 0, an = db ? (size_t)(g->O * 8) : 0;
    size_t no = (dw ? (size_t)j.K : 0) + (dx ? (size_t)j.Kf : 0);
    size_t tail = ((wfn * sizeof(float) + 7) & ~(size_t)7) + an * sizeof(double) + no * sizeof(int64_t);
    char *mem = dt_calloc(1, one + (size_t)T * per + tail, DT_MEM_ACT);
    if (!mem) return dt_last_error_code();
    float *wf = (float *)(mem + one + (size_t)T * per);
    double *acc = (double *)((char *)wf + ((wfn * sizeof(float) + 7) & ~(size_t)7));
    int64_t *off = (int64_t *)(acc + an), *offq = off + (dw ? j.K : 0);
    if (dw) window_offsets(g->C, g->kh, g->kw, j.Hp, j.Wp, off);
    if (dx) {
        for (int64_t c = 0; c < g->C; c++)
            for (int64_t o = 0; o < g->O; o++)
                for (int64_t t = 0; t < j.kk; t++) wf[(c * g->O + o) * j.kk + t] = w[(o * g->C + c) * j.kk + j.kk - 1 - t];
        window_offsets(g->O, g->kh, g->kw, j.Hq, j.Wq, offq);
    }
    j.off = off, j.offq = offq, j.wf = wf;
    if (split) {
        j.ws = mem + one;
        j.ws_bytes = per;
        dt__parallel_for(g->N, 1, dx_range, &j);
    }
    /* the serial pass: xp, gp (dw), gq, dp (dx, unless split), gz (pooled) in `one` */
    float *xp = (float *)mem, *gp = xp + (dw ? g->C * j.Hp * j.Wp + SLACK : 0);
    float *gq = gp + (dw ? g->O * j.np + SLACK : 0), *dp = gq + (!split && dx ? g->O * j.Hq * j.Wq + SLACK : 0);
    float *gz = dp + (!split && dx ? g->C * j.nq : 0);
    if (dw || db || (dx && !split))
        for (int64_t n = 0; n < g->N; n++) {
            const float *go = gout_of(&j, n, gz);
            if (db) db_lanes(go, g->O, j.P, acc);
            if (dw) dw_image(&j, n, go, xp, gp);
            if (dx && !split) dx_image(&j, n, go, gq, dp);
        }
    if (db)
        for (int64_t o = 0; o < g->O; o++) {
            double s = 0;
            for (int l = 0; l < 8; l++) s += acc[o * 8 + l];
            db[o] = (float)s;
        }
    if (dw && g->N == 0) memset(dw, 0, (size_t)(g->O * j.K) * sizeof(float));
    dt_free(mem);
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
