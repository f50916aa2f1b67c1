/* F.max_pool2d and F.avg_pool2d (floor mode, zero or -inf padding, dilation 1) with
 * their backward, on (N, C, H, W) or (C, H, W), computed plane by plane (one (H, W)
 * plane per image and channel) on the compute pool. f32 and f64 natively, bf16/f16
 * through f32. Max keeps, per output element, the plane offset (i32) of the first
 * maximum of its window (NaN counts as the maximum, as in torch); backward scatter-adds
 * the gradient there. Avg divides by the window size counted with the padding
 * (count_include_pad=True), and backward spreads g / divisor over the window. The
 * common kernel 2, stride 2, no padding case has its own loops. No ceil mode, no
 * dilation, no count_include_pad=False, no divisor_override. */
#include "autograd/ag_internal.h"
#include <dtrain/nn.h>
#include "nn/nn_conv.h"

#include <math.h>

typedef struct {
    int64_t planes, H, W, Ho, Wo;
    int64_t kh, kw, sh, sw, ph, pw;
} pool_geom;

/* Window of output (oh, ow) clipped to the plane: rows [h0, h1), cols [w0, w1); div is
 * the unclipped size counted against the padded plane (avg's divisor). */
static inline void window(const pool_geom *g, int64_t oh, int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1, int64_t *div)
{
    int64_t hs = oh * g->sh - g->ph, ws = ow * g->sw - g->pw;
    int64_t he = hs + g->kh < g->H + g->ph ? hs + g->kh : g->H + g->ph;
    int64_t we = ws + g->kw < g->W + g->pw ? ws + g->kw : g->W + g->pw;
    *div = (he - hs) * (we - ws);
    *h0 = hs < 0 ? 0 : hs;
    *w0 = ws < 0 ? 0 : ws;
    *h1 = he < g->H ? he : g->H;
    *w1 = we < g->W ? we : g->W;
}

#define POOL_LOOPS(T)                                                                   \
    DT__KERNEL static void maxf_##T(const pool_geom *g, const T *x, T *y, int32_t *idx) \
    {                                                                                   \
        for (int64_t oh = 0; oh < g->Ho; oh++)                                          \
            for (int64_t ow = 0; ow < g->Wo; ow++) {                                    \
                int64_t h0, h1, w0, w1, div;                                            \
                window(g, oh, ow, &h0, &h1, &w0, &w1, &div);                            \
                T m = -(T)INFINITY;                                                     \
                int64_t at = h0 * g->W + w0;                                            \
                for (int64_t h = h0; h < h1; h++)                                       \
                    for (int64_t w = w0; w < w1; w++) {                                 \
                        T v = x[h * g->W + w];                                          \
                        if (v > m || isnan(v)) { m = v; at = h * g->W + w; }            \
                    }                                                                   \
                y[oh * g->Wo + ow] = m;                                                 \
                idx[oh * g->Wo + ow] = (int32_t)at;                                     \
            }                                                                           \
    }                                                                                   \
    /* kernel 2, stride 2, no padding: maxf's choices, unrolled and without branches    \
     * (random data makes maxf's comparisons unpredictable). */                         \
    DT__KERNEL static void max22_##T(const pool_geom *g, const T *x, T *y, int32_t *idx) \
    {                                                                                   \
        int64_t W = g->W, Wo = g->Wo;                                                   \
        for (int64_t oh = 0; oh < g->Ho; oh++) {                                        \
            const T *r0 = x + 2 * oh * W, *r1 = r0 + W;                                 \
            T *yo = y + oh * Wo;                                                        \
            int32_t *io = idx + oh * Wo;                                                \
            int32_t base = (int32_t)(2 * oh * W);                                       \
            for (int64_t ow = 0; ow < Wo; ow++) {                                       \
                T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1]; \
                int32_t at = base + 2 * (int32_t)ow;                                    \
                T m = a;                                                                \
                int32_t k = at;                                                         \
                bool t = b > m || b != b;                                               \
                m = t ? b : m;                                                          \
                k = t ? at + 1 : k;                                                     \
                t = c > m || c != c;                                                    \
                m = t ? c : m;                                                          \
                k = t ? at + (int32_t)W : k;                                            \
                t = d > m || d != d;                                                    \
                m = t ? d : m;                                                          \
                k = t ? at + (int32_t)W + 1 : k;                                        \
                yo[ow] = m;                                                             \
                io[ow] = k;                                                             \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
    DT__KERNEL static void avg22_##T(const pool_geom *g, const T *x, T *y)              \
    {                                                                                   \
        int64_t W = g->W, Wo = g->Wo;                                                   \
        for (int64_t oh = 0; oh < g->Ho; oh++) {                                        \
            const T *r0 = x + 2 * oh * W, *r1 = r0 + W;                                 \
            T *yo = y + oh * Wo;                                                        \
            for (int64_t ow = 0; ow < Wo; ow++)                                         \
                yo[ow] = (r0[2 * ow] + r0[2 * ow + 1] + r1[2 * ow] + r1[2 * ow + 1]) / (T)4; \
        }                                                                               \
    }                                                                                   \
    DT__KERNEL static void maxb_##T(const pool_geom *g, const T *gy, const int32_t *idx, T *gx) \
    {                                                                                   \
        memset(gx, 0, (size_t)(g->H * g->W) * sizeof(T));                               \
        for (int64_t o = 0; o < g->Ho * g->Wo; o++)                                     \
            if (idx[o] >= 0) gx[idx[o]] += gy[o];                                       \
    }                                                                                   \
    DT__KERNEL static void avgf_##T(const pool_geom *g, const T *x, T *y)               \
    {                                                                                   \
        for (int64_t oh = 0; oh < g->Ho; oh++)                                          \
            for (int64_t ow = 0; ow < g->Wo; ow++) {                                    \
                int64_t h0, h1, w0, w1, div;                                            \
                window(g, oh, ow, &h0, &h1, &w0, &w1, &div);                            \
                T s = 0;                                                                \
                for (int64_t h = h0; h < h1; h++)                                       \
                    for (int64_t w = w0; w < w1; w++) s += x[h * g->W + w];             \
                y[oh * g->Wo + ow] = s / (T)div;                                        \
            }                                                                           \
    }                                                                                   \
    DT__KERNEL static void avgb_##T(const pool_geom *g, const T *gy, T *gx)             \
    {                                                                                   \
        memset(gx, 0, (size_t)(g->H * g->W) * sizeof(T));                               \
        for (int64_t oh = 0; oh < g->Ho; oh++)                                          \
            for (int64_t ow = 0; ow < g->Wo; ow++) {                                    \
                int64_t h0, h1, w0, w1, div;                                            \
                window(g, oh, ow, &h0, &h1, &w0, &w1, &div);                            \
                T v = gy[oh * g->Wo + ow] / (T)div;                                     \
                for (int64_t h = h0; h < h1; h++)                                       \
                    for (int64_t w = w0; w < w1; w++) gx[h * g->W + w] += v;            \
            }                                                                           \
    }
POOL_LOOPS(float)
POOL_LOOPS(double)

/* Kernel 2, stride 2, no padding, f32, with AVX-512: max22_float and maxb_float's
 * results, 16 outputs of a row at a time. Each input row pair is loaded in 32-wide
 * pieces and split into even and odd columns by permutes; the comparisons are
 * max22's, in its order, as lane masks. Backward writes the whole plane (no
 * scatter): each input element of a 2x2 window gets gy where it was the maximum, else
 * 0; a last odd row or column, in no window, is zeroed. Both are checked against the
 * loops above in tests/nn/test_nn_ops_kernels.c. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_POOL512 1
#define TGT512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

/* The CPU check of our AVX-512 GEMM (AVX-512F/BW/DQ/VL; false in a DT_NO_AVX512 build). */
static bool pool512_ok(void) { return dt__sgemm_ours_available(); }

TGT512 static inline __mmask16 lanes16(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n > 0 ? n : 0)) - 1u);
}

TGT512 static void max22_f32_512(const pool_geom *g, const float *x, float *y, int32_t *idx)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    int64_t W = g->W, Wo = g->Wo;
    const __m512i one = _mm512_set1_epi32(1), wv = _mm512_set1_epi32((int32_t)W), w1 = _mm512_set1_epi32((int32_t)W + 1);
    for (int64_t oh = 0; oh < g->Ho; oh++) {
        const float *r0 = x + 2 * oh * W, *r1 = r0 + W;
        for (int64_t ow = 0; ow < Wo; ow += 16) {
            int64_t n = Wo - ow < 16 ? Wo - ow : 16;
            __mmask16 lo = lanes16(2 * n), hi = lanes16(2 * n - 16), out = lanes16(n);
            __m512 p0 = _mm512_maskz_loadu_ps(lo, r0 + 2 * ow), p1 = _mm512_maskz_loadu_ps(hi, r0 + 2 * ow + 16);
            __m512 q0 = _mm512_maskz_loadu_ps(lo, r1 + 2 * ow), q1 = _mm512_maskz_loadu_ps(hi, r1 + 2 * ow + 16);
            __m512 a = _mm512_permutex2var_ps(p0, ev, p1), b = _mm512_permutex2var_ps(p0, od, p1);
            __m512 c = _mm512_permutex2var_ps(q0, ev, q1), d = _mm512_permutex2var_ps(q0, od, q1);
            __m512i at = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(2 * oh * W + 2 * ow)), ev);
            __m512 m = a;
            __m512i k = at;
            __mmask16 t = _mm512_cmp_ps_mask(b, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
            m = _mm512_mask_mov_ps(m, t, b);
            k = _mm512_mask_mov_epi32(k, t, _mm512_add_epi32(at, one));
            t = _mm512_cmp_ps_mask(c, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(c, c, _CMP_UNORD_Q);
            m = _mm512_mask_mov_ps(m, t, c);
            k = _mm512_mask_mov_epi32(k, t, _mm512_add_epi32(at, wv));
            t = _mm512_cmp_ps_mask(d, m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q);
            m = _mm512_mask_mov_ps(m, t, d);
            k = _mm512_mask_mov_epi32(k, t, _mm512_add_epi32(at, w1));
            _mm512_mask_storeu_ps(y + oh * Wo + ow, out, m);
            _mm512_mask_storeu_epi32(idx + oh * Wo + ow, out, k);
        }
    }
}

TGT512 static void maxb22_f32_512(const pool_geom *g, const float *gy, const int32_t *idx, float *gx)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    /* interleave two 16-vectors u, v into u0 v0 u1 v1 ...: lanes 0-15, then 16-31 */
    const __m512i il0 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i il1 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    int64_t W = g->W, Wo = g->Wo;
    const __m512i one = _mm512_set1_epi32(1), wv = _mm512_set1_epi32((int32_t)W), w1 = _mm512_set1_epi32((int32_t)W + 1);
    for (int64_t oh = 0; oh < g->Ho; oh++) {
        float *r0 = gx + 2 * oh * W, *r1 = r0 + W;
        for (int64_t ow = 0; ow < Wo; ow += 16) {
            int64_t n = Wo - ow < 16 ? Wo - ow : 16;
            __mmask16 lo = lanes16(2 * n), hi = lanes16(2 * n - 16), out = lanes16(n);
            __m512 v = _mm512_maskz_loadu_ps(out, gy + oh * Wo + ow);
            __m512i k = _mm512_maskz_loadu_epi32(out, idx + oh * Wo + ow);
            __m512i at = _mm512_add_epi32(_mm512_set1_epi32((int32_t)(2 * oh * W + 2 * ow)), ev);
            __m512 a = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, at), v);
            __m512 b = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_add_epi32(at, one)), v);
            __m512 c = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_add_epi32(at, wv)), v);
            __m512 d = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(k, _mm512_add_epi32(at, w1)), v);
            _mm512_mask_storeu_ps(r0 + 2 * ow, lo, _mm512_permutex2var_ps(a, il0, b));
            _mm512_mask_storeu_ps(r0 + 2 * ow + 16, hi, _mm512_permutex2var_ps(a, il1, b));
            _mm512_mask_storeu_ps(r1 + 2 * ow, lo, _mm512_permutex2var_ps(c, il0, d));
            _mm512_mask_storeu_ps(r1 + 2 * ow + 16, hi, _mm512_permutex2var_ps(c, il1, d));
        }
        if (W & 1) { r0[W - 1] = 0; r1[W - 1] = 0; }
    }
    if (g->H & 1) memset(gx + (g->H - 1) * W, 0, (size_t)W * sizeof(float));
}
#else
#define HAVE_POOL512 0
static bool pool512_ok(void) { return false; }
#endif

void dt__max22_f32(int64_t planes, int64_t H, int64_t W, const float *x, float *y, int32_t *idx)
{
    pool_geom g = {.planes = planes, .H = H, .W = W, .Ho = H / 2, .Wo = W / 2, .kh = 2, .kw = 2, .sh = 2, .sw = 2};
    int64_t ip = H * W, op = g.Ho * g.Wo;
    for (int64_t p = 0; p < planes; p++) {
#if HAVE_POOL512
        if (pool512_ok()) { max22_f32_512(&g, x + p * ip, y + p * op, idx + p * op); continue; }
#endif
        max22_float(&g, x + p * ip, y + p * op, idx + p * op);
    }
}

void dt__maxb22_f32(int64_t planes, int64_t H, int64_t W, const float *gy, const int32_t *idx, float *gx)
{
    pool_geom g = {.planes = planes, .H = H, .W = W, .Ho = H / 2, .Wo = W / 2, .kh = 2, .kw = 2, .sh = 2, .sw = 2};
    int64_t ip = H * W, op = g.Ho * g.Wo;
    for (int64_t p = 0; p < planes; p++) {
#if HAVE_POOL512
        if (pool512_ok()) { maxb22_f32_512(&g, gy + p * op, idx + p * op, gx + p * ip); continue; }
#endif
        maxb_float(&g, gy + p * op, idx + p * op, gx + p * ip);
    }
}

enum { MAX_FWD, AVG_FWD, MAX_BW, AVG_BW };

typedef struct {
    const pool_geom *g;
    int kind;
    bool f32;
    const char *in;     /* x (forward) or gy (backward) */
    char *out;          /* y (forward) or gx (backward) */
    int32_t *idx;       /* max only */
} pool_job;

static void pool_range(void *arg, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const pool_job *j = arg;
    const pool_geom *g = j->g;
    int64_t es = j->f32 ? 4 : 8, ip = g->H * g->W, op = g->Ho * g->Wo;
    bool fwd = j->kind == MAX_FWD || j->kind == AVG_FWD;
    bool is22 = g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0;
    bool fast = is22 && j->f32 && pool512_ok();
    (void)fast;
    for (int64_t p = begin; p < end; p++) {
        const char *in = j->in + p * (fwd ? ip : op) * es;
        char *out = j->out + p * (fwd ? op : ip) * es;
        int32_t *idx = j->idx ? j->idx + p * op : NULL;
        if (j->f32) {
            switch (j->kind) {
            case MAX_FWD:
#if HAVE_POOL512
                if (fast) { max22_f32_512(g, (const float *)in, (float *)out, idx); break; }
#endif
                (is22 ? max22_float : maxf_float)(g, (const float *)in, (float *)out, idx);
                break;
            case AVG_FWD: (is22 ? avg22_float : avgf_float)(g, (const float *)in, (float *)out); break;
            case MAX_BW:
#if HAVE_POOL512
                if (fast) { maxb22_f32_512(g, (const float *)in, idx, (float *)out); break; }
#endif
                maxb_float(g, (const float *)in, idx, (float *)out);
                break;
            default: avgb_float(g, (const float *)in, (float *)out); break;
            }
        } else {
            switch (j->kind) {
            case MAX_FWD: (is22 ? max22_double : maxf_double)(g, (const double *)in, (double *)out, idx); break;
            case AVG_FWD: (is22 ? avg22_double : avgf_double)(g, (const double *)in, (double *)out); break;
            case MAX_BW: maxb_double(g, (const double *)in, idx, (double *)out); break;
            default: avgb_double(g, (const double *)in, (double *)out); break;
            }
        }
    }
}

static void run(const pool_geom *g, int kind, dt_dtype ct, const dt_tensor *in, dt_tensor *out, const dt_tensor *idx)
{
    pool_job j = {.g = g, .kind = kind, .f32 = ct == DT_F32, .in = dt__ptr(in), .out = dt__ptr(out),
                  .idx = idx ? (int32_t *)dt__ptr(idx) : NULL};
    int64_t work = g->H * g->W + g->Ho * g->Wo;
    dt__parallel_for(g->planes, work > 16384 ? 1 : 16384 / work, pool_range, &j);
}

/* The geometry for x (.., H, W) and the six integers; DT_EINVAL / DT_ESHAPE as torch. */
static int geom_of(const char *what, int nd, const int64_t *shape, const int64_t *p, pool_geom *g)
{
    if (nd != 3 && nd != 4) return dt_set_error(DT_ESHAPE, "%s: input of %d dims (want (N, C, H, W) or (C, H, W))", what, nd);
    *g = (pool_geom){.H = shape[nd - 2], .W = shape[nd - 1], .kh = p[0], .kw = p[1], .sh = p[2], .sw = p[3], .ph = p[4], .pw = p[5]};
    g->planes = nd == 4 ? shape[0] * shape[1] : shape[0];
    if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->ph < 0 || g->pw < 0 || g->ph > g->kh / 2 || g->pw > g->kw / 2)
        return dt_set_error(DT_EINVAL, "%s: kernel (%lld, %lld), stride (%lld, %lld), padding (%lld, %lld): kernel and stride >= 1, padding in 0..kernel/2",
                            what, (long long)g->kh, (long long)g->kw, (long long)g->sh, (long long)g->sw, (long long)g->ph, (long long)g->pw);
    int64_t eh = g->H + 2 * g->ph - g->kh, ew = g->W + 2 * g->pw - g->kw;
    if (eh < 0 || ew < 0)
        return dt_set_error(DT_ESHAPE, "%s: kernel (%lld, %lld) larger than the padded input (%lld, %lld)", what,
                            (long long)g->kh, (long long)g->kw, (long long)(g->H + 2 * g->ph), (long long)(g->W + 2 * g->pw));
    g->Ho = eh / g->sh + 1;
    g->Wo = ew / g->sw + 1;
    if (g->H * g->W > INT32_MAX) return dt_set_error(DT_EUNSUPPORTED, "%s: a plane of more than 2^31 elements", what);
    return 0;
}

static dt_dtype ctype(dt_dtype t) { return t == DT_F64 ? DT_F64 : DT_F32; }

static dt_tensor *finish(dt_tensor *y, dt_dtype as)
{
    if (!y || y->dtype == as) return y;
    dt_tensor *c = dt__cast(y, as);
    dt_tensor_release(y);
    return c;
}

static int pool_bw(dt_node *n, dt_tensor *gy, dt_tensor **gi)
{
    bool mx = n->i64[6] != 0;
    int nd = dt_node_input_ndim(n, 0);
    const int64_t *shape = dt_node_input_shape(n, 0);
    pool_geom g;
    int rc = geom_of(dt_node_name(n), nd, shape, n->i64, &g);
    if (rc < 0) return rc;
    dt_dtype ct = ctype(dt_node_input_dtype(n, 0));
    dt_tensor *gc = dt__contig_as(gy, ct);
    dt_tensor *gx = gc ? dt__empty(ct, nd, shape) : NULL;
    if (gx && g.planes) run(&g, mx ? MAX_BW : AVG_BW, ct, gc, gx, mx ? dt_node_saved(n, 0) : NULL);
    dt_tensor_release(gc);
    gi[0] = dt__adopt(finish(gx, dt_node_input_dtype(n, 0)));
    return gi[0] ? 0 : dt_last_error_code();
}

static dt_tensor *pool(const char *what, bool mx, dt_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw)
{
    if (!x) { dt__null_arg(what); return NULL; }
    if (!dt_dtype_is_float((dt_dtype)x->dtype)) {
        dt_set_error(DT_EDTYPE, "%s of %s: floating dtypes only", what, dt_dtype_name((dt_dtype)x->dtype));
        return NULL;
    }
    dt__rec r = {.name = what, .fn = pool_bw, .i = {kh, kw, sh, sw, ph, pw, mx}};
    pool_geom g;
    if (geom_of(what, x->ndim, x->shape, r.i, &g) < 0) return NULL;
    int64_t oshape[4];
    memcpy(oshape, x->shape, sizeof oshape);
    oshape[x->ndim - 2] = g.Ho;
    oshape[x->ndim - 1] = g.Wo;
    dt_dtype ct = ctype((dt_dtype)x->dtype);
    bool grad = dt_needs_grad(&x, 1);
    dt_tensor *xc = dt__contig_as(x, ct);
    dt_tensor *y = xc ? dt__empty(ct, x->ndim, oshape) : NULL;
    /* max always needs somewhere to write the indices; they are kept only for backward */
    dt_tensor *idx = y && mx ? dt__empty(DT_I32, x->ndim, oshape) : NULL;
    if (y && (!mx || idx) && g.planes) run(&g, mx ? MAX_FWD : AVG_FWD, ct, xc, y, idx);
    else if (mx && !idx) { dt_tensor_release(y); y = NULL; }
    dt_tensor_release(xc);
    r.save_extra = grad ? idx : NULL;
    dt_tensor *out = dt__record(finish(y, (dt_dtype)x->dtype), &x, 1, &r);
    dt_tensor_release(idx);
    return out;
}

dt_tensor *dt_max_pool2d(dt_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w)
{
    return pool("max_pool2d", true, x, kh, kw, stride_h, stride_w, pad_h, pad_w);
}

dt_tensor *dt_avg_pool2d(dt_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w)
{
    return pool("avg_pool2d", false, x, kh, kw, stride_h, stride_w, pad_h, pad_w);
}
