/* softmax and log_softmax over one dim, forward and backward, on the (outer, len,
 * inner) decomposition of a contiguous copy (no copy when the input already is one).
 * Max-subtracted, so large logits do not overflow. f32 uses the float exp of
 * tensor/vmath.h (for arguments <= 0), f64 libm's. Sums along a contiguous row go in
 * vmath.h's fixed 16-lane order, which vectorises. */
#include "tensor/tensor_internal.h"

#include <math.h>

#include "tensor/vmath.h"

static dt_dtype ctype(dt_dtype t) { return t == DT_F32 || t == DT_BF16 || t == DT_F16 ? DT_F32 : DT_F64; }

#define SOFTMAX_LOOPS(T, EXP, LOG)                                                       \
    DT__KERNEL static void fwd_##T(const T *x, T *y, int64_t outer, int64_t len, int64_t inner, bool lg) \
    {                                                                                    \
        for (int64_t o = 0; o < outer; o++)                                              \
            for (int64_t i = 0; i < inner; i++) {                                        \
                const T *r = x + o * len * inner + i;                                    \
                T *w = y + o * len * inner + i;                                          \
                T m = r[0];                                                              \
                if (inner == 1)                                                          \
                    m = dt__lanemax_##T(r, len);                                         \
                else                                                                     \
                    for (int64_t k = 1; k < len; k++) if (r[k * inner] > m) m = r[k * inner]; \
                if (m == -(T)INFINITY) m = 0;                                            \
                /* e^(x - m) into w first (a loop that vectorises), then their sum   \
                 * in order; log_softmax overwrites w after */                          \
                if (inner == 1)                                                          \
                    for (int64_t k = 0; k < len; k++) w[k] = EXP(r[k] - m);              \
                else                                                                     \
                    for (int64_t k = 0; k < len; k++) w[k * inner] = EXP(r[k * inner] - m); \
                T sum = 0;                                                               \
                if (inner == 1)                                                          \
                    sum = dt__lanesum_##T(w, len);                                       \
                else                                                                     \
                    for (int64_t k = 0; k < len; k++) sum += w[k * inner];               \
                if (lg) {                                                                \
                    T lse = m + LOG(sum);                                                \
                    for (int64_t k = 0; k < len; k++) w[k * inner] = r[k * inner] - lse; \
                } else {                                                                 \
                    T inv = (T)1 / sum;                                                  \
                    for (int64_t k = 0; k < len; k++) w[k * inner] *= inv;               \
                }                                                                        \
            }                                                                            \
    }                                                                                    \
    DT__KERNEL static void bwd_##T(const T *y, const T *g, T *gx, int64_t outer, int64_t len, int64_t inner, bool lg) \
    {                                                                                    \
        for (int64_t o = 0; o < outer; o++)                                              \
            for (int64_t i = 0; i < inner; i++) {                                        \
                int64_t base = o * len * inner + i;                                      \
                T dot = 0;                                                               \
                if (inner == 1)                                                          \
                    dot = lg ? dt__lanesum_##T(g + base, len) : dt__lanedot_##T(g + base, y + base, len); \
                else                                                                     \
                    for (int64_t k = 0; k < len; k++)                                    \
                        dot += lg ? g[base + k * inner] : g[base + k * inner] * y[base + k * inner]; \
                for (int64_t k = 0; k < len; k++) {                                      \
                    int64_t j = base + k * inner;                                        \
                    gx[j] = lg ? g[j] - EXP(y[j]) * dot : y[j] * (g[j] - dot);           \
                }                                                                        \
            }                                                                            \
    }
SOFTMAX_LOOPS(float, dt__vexpf_fast, logf)
SOFTMAX_LOOPS(double, exp, log)

static void dims3(const dt_tensor *a, int d, int64_t *outer, int64_t *len, int64_t *inner)
{
    *outer = 1; *inner = 1;
    for (int i = 0; i < d; i++) *outer *= a->shape[i];
    *len = a->ndim ? a->shape[d] : 1;
    for (int i = d + 1; i < a->ndim; i++) *inner *= a->shape[i];
}

static dt_tensor *finish(dt_tensor *y, dt_dtype dt)
{
    if (!y || y->dtype == dt) return y;
    dt_tensor *c = dt__cast(y, dt);
    dt_tensor_release(y);
    return c;
}

dt_tensor *dt__softmax(const dt_tensor *a, int dim, bool lg)
{
    int d = dt__wrap_dim(dim, a->ndim, lg ? "log_softmax" : "softmax");
    if (d < 0) return NULL;
    dt_dtype ct = ctype((dt_dtype)a->dtype);
    dt_tensor *x = dt__contig_as((dt_tensor *)a, ct);
    dt_tensor *y = x ? dt__empty(ct, a->ndim, a->shape) : NULL;
    if (y && a->numel) {
        int64_t o, l, i;
        dims3(a, d, &o, &l, &i);
        if (ct == DT_F32) fwd_float((const float *)dt__ptr(x), (float *)dt__ptr(y), o, l, i, lg);
        else fwd_double((const double *)dt__ptr(x), (double *)dt__ptr(y), o, l, i, lg);
    }
    dt_tensor_release(x);
    return finish(y, (dt_dtype)a->dtype);
}

dt_tensor *dt__softmax_bw(const dt_tensor *y, const dt_tensor *g, int dim, bool lg)
{
    int d = dt__wrap_dim(dim, y->ndim, "softmax backward");
    if (d < 0) return NULL;
    dt_dtype ct = ctype((dt_dtype)y->dtype);
    dt_tensor *yc = dt__contig_as((dt_tensor *)y, ct);
    dt_tensor *gc = yc ? dt__contig_as((dt_tensor *)g, ct) : NULL;
    dt_tensor *gx = gc ? dt__empty(ct, y->ndim, y->shape) : NULL;
    if (gx && y->numel) {
        int64_t o, l, i;
        dims3(y, d, &o, &l, &i);
        if (ct == DT_F32) bwd_float((const float *)dt__ptr(yc), (const float *)dt__ptr(gc), (float *)dt__ptr(gx), o, l, i, lg);
        else bwd_double((const double *)dt__ptr(yc), (const double *)dt__ptr(gc), (double *)dt__ptr(gx), o, l, i, lg);
    }
    dt_tensor_release(yc);
    dt_tensor_release(gc);
    return finish(gx, (dt_dtype)y->dtype);
}
