/* Reductions: sum over any set of dims (and sum-to-shape, the gradient of a broadcast),
 * max and first arg-max over one dim, and the scatter that routes max's gradient.
 * Sums run serially through the strided iterator with the output's reduced dims given
 * stride 0; a row reduced along its length accumulates in double. */
#include "tensor/tensor_internal.h"

static dt_dtype ctype(dt_dtype t) { return t == DT_F32 || t == DT_BF16 || t == DT_F16 ? DT_F32 : DT_F64; }

#define SUM_ROW(T)                                                                       \
    DT__KERNEL static void sum_row_##T(void *ctx, char **p, const int64_t *s, int64_t n)            \
    {                                                                                    \
        T *o = (T *)p[0];                                                                \
        const T *a = (const T *)p[1];                                                    \
        if (s[0] == 0) {                                                                 \
            double acc = 0;                                                              \
            if (s[1] == 1) for (int64_t i = 0; i < n; i++) acc += a[i];                  \
            else for (int64_t i = 0; i < n; i++) acc += a[i * s[1]];                     \
            o[0] += (T)acc;                                                              \
        } else if (s[0] == 1 && s[1] == 1) {                                             \
            for (int64_t i = 0; i < n; i++) o[i] += a[i];                                \
        } else {                                                                         \
            for (int64_t i = 0; i < n; i++) o[i * s[0]] += a[i * s[1]];                  \
        }                                                                                \
    }
SUM_ROW(float)
SUM_ROW(double)

dt_tensor *dt__sum(const dt_tensor *a, unsigned dimmask, bool keepdim)
{
    dt_dtype dt = (dt_dtype)a->dtype, ct = ctype(dt);
    int64_t ks[DT_MAX_DIMS], sh[DT_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < a->ndim; d++) {
        bool red = dimmask >> d & 1u;
        ks[d] = red ? 1 : a->shape[d];
        if (!red || keepdim) sh[n++] = ks[d];
    }
    dt_tensor *src = dt == ct ? dt_tensor_retain((dt_tensor *)a) : dt__cast(a, ct);
    dt_tensor *acc = src ? dt__full(ct, a->ndim, ks, 0) : NULL;
    dt_tensor *exp = acc ? dt__expand(acc, a->ndim, a->shape) : NULL;
    dt_tensor *out = NULL;
    dt__iter it;
    dt_tensor *ops[2] = {exp, src};
    if (exp && dt__iter_init(&it, 2, ops) == 0) {
        dt__iter_run(&it, ct == DT_F32 ? sum_row_float : sum_row_double, NULL, false);
        dt_tensor *shaped = dt__view(acc, n, sh);
        out = shaped && dt != ct ? dt__cast(shaped, dt) : dt_tensor_retain(shaped);
        dt_tensor_release(shaped);
    }
    dt_tensor_release(exp);
    dt_tensor_release(acc);
    dt_tensor_release(src);
    return out;
}

dt_tensor *dt__sum_to(const dt_tensor *a, int ndim, const int64_t *shape)
{
    if (ndim > a->ndim) { dt_set_error(DT_ESHAPE, "sum_to: %d dims to %d", a->ndim, ndim); return NULL; }
    int lead = a->ndim - ndim;
    unsigned mask = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (d < lead) { mask |= 1u << d; continue; }
        int64_t want = shape[d - lead];
        if (want == a->shape[d]) continue;
        if (want != 1) { dt_set_error(DT_ESHAPE, "sum_to: size %lld cannot sum to %lld in dim %d", (long long)a->shape[d], (long long)want, d); return NULL; }
        mask |= 1u << d;
    }
    if (!mask) return dt__alias(a, a->ndim, a->shape, a->strides, a->offset);
    dt_tensor *s = dt__sum(a, mask, true);
    dt_tensor *out = s ? dt__view(s, ndim, shape) : NULL;
    dt_tensor_release(s);
    return out;
}

/* a seen as (outer, len, inner) around dim, contiguous in the compute type. */
static void split_dims(const int64_t *shape, int ndim, int d, int64_t *outer, int64_t *len, int64_t *inner)
{
    *outer = 1; *inner = 1;
    for (int i = 0; i < d; i++) *outer *= shape[i];
    *len = ndim ? shape[d] : 1;
    for (int i = d + 1; i < ndim; i++) *inner *= shape[i];
}

#define MAX_LOOP(T)                                                                      \
    DT__KERNEL static void max_##T(const T *x, int64_t outer, int64_t len, int64_t inner, T *val, int64_t *idx) \
    {                                                                                    \
        for (int64_t o = 0; o < outer; o++)                                              \
            for (int64_t i = 0; i < inner; i++) {                                        \
                const T *r = x + o * len * inner + i;                                    \
                T best = r[0];                                                           \
                int64_t bi = 0;                                                          \
                for (int64_t k = 1; k < len && best == best; k++) {                      \
                    T v = r[k * inner];                                                  \
                    if (v > best || v != v) { best = v; bi = k; }                        \
                }                                                                        \
                if (val) val[o * inner + i] = best;                                      \
                if (idx) idx[o * inner + i] = bi;                                        \
            }                                                                            \
    }
MAX_LOOP(float)
MAX_LOOP(double)

int dt__max(const dt_tensor *a, int dim, bool keepdim, dt_tensor **vals, dt_tensor **idx)
{
    int d = dt__wrap_dim(dim, a->ndim, "max");
    if (d < 0) return d;
    if (a->numel == 0 || (a->ndim && a->shape[d] == 0)) return dt_set_error(DT_EINVAL, "max: reduction over an empty dim");
    dt_dtype dt = (dt_dtype)a->dtype, ct = ctype(dt);
    int64_t outer, len, inner, sh[DT_MAX_DIMS];
    split_dims(a->shape, a->ndim, d, &outer, &len, &inner);
    int n = 0;
    for (int i = 0; i < a->ndim; i++)
        if (i != d) sh[n++] = a->shape[i];
        else if (keepdim) sh[n++] = 1;
    dt_tensor *x = dt__contig_as((dt_tensor *)a, ct);
    dt_tensor *v = x && vals ? dt__empty(ct, n, sh) : NULL;
    dt_tensor *ix = x && idx ? dt__empty(DT_I64, n, sh) : NULL;
    int rc = 0;
    if (!x || (vals && !v) || (idx && !ix)) {
        rc = dt_last_error_code();
    } else {
        if (ct == DT_F32) max_float((const float *)dt__ptr(x), outer, len, inner, v ? (float *)dt__ptr(v) : NULL, ix ? (int64_t *)dt__ptr(ix) : NULL);
        else max_double((const double *)dt__ptr(x), outer, len, inner, v ? (double *)dt__ptr(v) : NULL, ix ? (int64_t *)dt__ptr(ix) : NULL);
        if (v && ct != dt) {
            dt_tensor *c = dt__cast(v, dt);
            dt_tensor_release(v);
            v = c;
            if (!v) rc = dt_last_error_code();
        }
    }
    dt_tensor_release(x);
    if (rc < 0) { dt_tensor_release(v); dt_tensor_release(ix); return rc; }
    if (vals) *vals = v;
    if (idx) *idx = ix;
    return 0;
}

dt_tensor *dt__scatter_dim(const dt_tensor *g, const dt_tensor *idx, int dim, int ndim, const int64_t *shape)
{
    int d = dt__wrap_dim(dim, ndim, "max backward");
    if (d < 0) return NULL;
    dt_dtype dt = (dt_dtype)g->dtype, ct = ctype(dt);
    int64_t outer, len, inner;
    split_dims(shape, ndim, d, &outer, &len, &inner);
    dt_tensor *gc = dt__contig_as((dt_tensor *)g, ct);
    dt_tensor *ic = gc ? dt__contig_as((dt_tensor *)idx, DT_I64) : NULL;
    dt_tensor *out = ic ? dt__full(ct, ndim, shape, 0) : NULL;
    if (out) {
        const int64_t *ip = (const int64_t *)dt__ptr(ic);
        size_t es = dt_dtype_size(ct);
        char *op = dt__ptr(out);
        const char *gp = dt__ptr(gc);
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++) {
                int64_t k = ip[o * inner + i];
                memcpy(op + ((o * len + k) * inner + i) * (int64_t)es, gp + (o * inner + i) * (int64_t)es, es);
            }
        if (ct != dt) {
            dt_tensor *c = dt__cast(out, dt);
            dt_tensor_release(out);
            out = c;
        }
    }
    dt_tensor_release(gc);
    dt_tensor_release(ic);
    return out;
}
