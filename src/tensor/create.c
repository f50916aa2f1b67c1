/* Creation (empty, zeros, ones, full, arange, *_like), fills, and the one copy kernel
 * that also converts between dtypes (casts, contiguous copies, writes from a caller's
 * array). Random creation is in philox.c; views in k_shape.c. */
#include "tensor/tensor_internal.h"

#include <math.h>

/* ---------------------------------------------------------------- copy */
typedef struct {
    dt_dtype dst, src;
} copy_ctx;

static int64_t to_i64(double v)
{
    if (v != v) return 0;
    if (v >= 9.2233720368547758e18) return INT64_MAX;
    if (v <= -9.2233720368547758e18) return INT64_MIN;
    return (int64_t)v;
}

#define CHUNK 256
static void load_row(dt_dtype dt, const char *p, int64_t s, int64_t n, double *buf)
{
    switch (dt) {
    case DT_F32: for (int64_t i = 0; i < n; i++) buf[i] = ((const float *)p)[i * s]; break;
    case DT_F64: for (int64_t i = 0; i < n; i++) buf[i] = ((const double *)p)[i * s]; break;
    case DT_BF16: for (int64_t i = 0; i < n; i++) buf[i] = dt_bf16_to_f32(((const uint16_t *)p)[i * s]); break;
    case DT_F16: for (int64_t i = 0; i < n; i++) buf[i] = dt_f16_to_f32(((const uint16_t *)p)[i * s]); break;
    case DT_I64: for (int64_t i = 0; i < n; i++) buf[i] = (double)((const int64_t *)p)[i * s]; break;
    case DT_I32: for (int64_t i = 0; i < n; i++) buf[i] = ((const int32_t *)p)[i * s]; break;
    case DT_U8: for (int64_t i = 0; i < n; i++) buf[i] = ((const uint8_t *)p)[i * s]; break;
    default: break;
    }
}

static void store_row(dt_dtype dt, char *p, int64_t s, int64_t n, const double *buf)
{
    switch (dt) {
    case DT_F32: for (int64_t i = 0; i < n; i++) ((float *)p)[i * s] = (float)buf[i]; break;
    case DT_F64: for (int64_t i = 0; i < n; i++) ((double *)p)[i * s] = buf[i]; break;
    case DT_BF16: for (int64_t i = 0; i < n; i++) ((uint16_t *)p)[i * s] = dt_f32_to_bf16((float)buf[i]); break;
    case DT_F16: for (int64_t i = 0; i < n; i++) ((uint16_t *)p)[i * s] = dt_f32_to_f16((float)buf[i]); break;
    case DT_I64: for (int64_t i = 0; i < n; i++) ((int64_t *)p)[i * s] = to_i64(buf[i]); break;
    case DT_I32: for (int64_t i = 0; i < n; i++) ((int32_t *)p)[i * s] = (int32_t)to_i64(buf[i]); break;
    case DT_U8: for (int64_t i = 0; i < n; i++) ((uint8_t *)p)[i * s] = (uint8_t)to_i64(buf[i]); break;
    default: break;
    }
}

/* Same-dtype strided move as integers of the element's size (a fill when s[1] is 0). */
#define MOVE_ROW(U)                                                                      \
    do {                                                                                 \
        U *d = (U *)p[0];                                                                \
        const U *x = (const U *)p[1];                                                    \
        if (s[1] == 0) { U v = x[0]; for (int64_t i = 0; i < n; i++) d[i * s[0]] = v; }  \
        else for (int64_t i = 0; i < n; i++) d[i * s[0]] = x[i * s[1]];                 \
    } while (0)

DT__KERNEL static void copy_row(void *vctx, char **p, const int64_t *s, int64_t n)
{
    const copy_ctx *c = vctx;
    size_t es = dt_dtype_size(c->dst);
    if (c->dst == c->src) {
        if (s[0] == 1 && s[1] == 1) { memcpy(p[0], p[1], (size_t)n * es); return; }
        switch (es) {
        case 8: MOVE_ROW(uint64_t); return;
        case 4: MOVE_ROW(uint32_t); return;
        case 2: MOVE_ROW(uint16_t); return;
        default: MOVE_ROW(uint8_t); return;
        }
    }
    if (c->dst == DT_BF16 && c->src == DT_F32) {
        for (int64_t i = 0; i < n; i++) ((uint16_t *)p[0])[i * s[0]] = dt_f32_to_bf16(((const float *)p[1])[i * s[1]]);
        return;
    }
    if (c->dst == DT_F32 && c->src == DT_BF16) {
        for (int64_t i = 0; i < n; i++) ((float *)p[0])[i * s[0]] = dt_bf16_to_f32(((const uint16_t *)p[1])[i * s[1]]);
        return;
    }
    double buf[CHUNK];
    size_t ss = dt_dtype_size(c->src);
    for (int64_t b = 0; b < n; b += CHUNK) {
        int64_t m = n - b < CHUNK ? n - b : CHUNK;
        load_row(c->src, p[1] + b * s[1] * (int64_t)ss, s[1], m, buf);
        store_row(c->dst, p[0] + b * s[0] * (int64_t)es, s[0], m, buf);
    }
}

int dt__copy(dt_tensor *dst, const dt_tensor *src)
{
    dt__iter it;
    dt_tensor *ops[2] = {dst, (dt_tensor *)src};
    DT_CHECK(dt__iter_init(&it, 2, ops));
    copy_ctx c = {.dst = (dt_dtype)dst->dtype, .src = (dt_dtype)src->dtype};
    dt__iter_run(&it, copy_row, &c, true);
    return 0;
}

dt_tensor *dt__cast(const dt_tensor *t, dt_dtype dtype)
{
    dt_tensor *out = dt__empty(dtype, t->ndim, t->shape);
    if (out && dt__copy(out, t) < 0) { dt_tensor_release(out); return NULL; }
    return out;
}

dt_tensor *dt__contig_as(dt_tensor *t, dt_dtype dtype)
{
    if (t->dtype == dtype && dt_tensor_is_contiguous(t)) return dt_tensor_retain(t);
    return dt__cast(t, dtype);
}

int dt_tensor_copy_(dt_tensor *dst, const dt_tensor *src)
{
    if (!dst || !src) return dt_set_error(DT_EINVAL, "dt_tensor_copy_: NULL tensor");
    int rc = dt__copy(dst, src);
    if (rc < 0) return dt_error_wrap(rc, "dt_tensor_copy_");
    return 0;
}

int dt_tensor_write(dt_tensor *dst, const void *src, int64_t n)
{
    if (!dst || (!src && n)) return dt_set_error(DT_EINVAL, "dt_tensor_write: NULL argument");
    if (n != dst->numel) return dt_set_error(DT_ESHAPE, "dt_tensor_write: %lld values for %lld elements", (long long)n, (long long)dst->numel);
    dt_tensor *from = dt_from_buffer((void *)src, (dt_dtype)dst->dtype, dst->ndim, dst->shape);
    if (!from) return dt_last_error_code();
    int rc = dt__copy(dst, from);
    dt_tensor_discard(from);
    return rc;
}

int dt_tensor_read(const dt_tensor *src, void *dst, int64_t n)
{
    if (!src || (!dst && n)) return dt_set_error(DT_EINVAL, "dt_tensor_read: NULL argument");
    if (n != src->numel) return dt_set_error(DT_ESHAPE, "dt_tensor_read: room for %lld values, %lld elements", (long long)n, (long long)src->numel);
    dt_tensor *to = dt_from_buffer(dst, (dt_dtype)src->dtype, src->ndim, src->shape);
    if (!to) return dt_last_error_code();
    int rc = dt__copy(to, src);
    dt_tensor_discard(to);
    return rc;
}

/* ---------------------------------------------------------------- fills */
int dt_tensor_fill(dt_tensor *dst, double value)
{
    if (!dst) return dt_set_error(DT_EINVAL, "dt_tensor_fill: NULL tensor");
    if (dst->numel == 0) return 0;
    /* Convert once through a one-element source, then broadcast it. */
    double v = value;
    dt_tensor *one = dt_from_buffer(&v, DT_F64, 0, NULL);
    if (!one) return dt_last_error_code();
    dt_tensor *conv = dt__cast(one, (dt_dtype)dst->dtype);
    dt_tensor_discard(one);
    if (!conv) return dt_last_error_code();
    int rc = dt__copy(dst, conv);
    dt_tensor_release(conv);
    return rc;
}

dt_tensor *dt__full(dt_dtype dtype, int ndim, const int64_t *shape, double v)
{
    dt_tensor *t = dt__empty(dtype, ndim, shape);
    if (!t) return NULL;
    if (v == 0) {
        memset(t->st->data, 0, t->st->nbytes);
    } else if (dt_tensor_fill(t, v) < 0) {
        dt_tensor_release(t);
        return NULL;
    }
    return t;
}

dt_tensor *dt_empty(dt_dtype dtype, int ndim, const int64_t *shape) { return dt__adopt(dt__empty(dtype, ndim, shape)); }
dt_tensor *dt_zeros(dt_dtype dtype, int ndim, const int64_t *shape) { return dt__adopt(dt__full(dtype, ndim, shape, 0)); }
dt_tensor *dt_ones(dt_dtype dtype, int ndim, const int64_t *shape) { return dt__adopt(dt__full(dtype, ndim, shape, 1)); }
dt_tensor *dt_full(dt_dtype dtype, int ndim, const int64_t *shape, double v) { return dt__adopt(dt__full(dtype, ndim, shape, v)); }
dt_tensor *dt_scalar(dt_dtype dtype, double v) { return dt__adopt(dt__full(dtype, 0, NULL, v)); }
dt_tensor *dt_empty_like(const dt_tensor *t) { return dt_empty((dt_dtype)t->dtype, t->ndim, t->shape); }
dt_tensor *dt_zeros_like(const dt_tensor *t) { return dt_zeros((dt_dtype)t->dtype, t->ndim, t->shape); }

dt_tensor *dt_arange(dt_dtype dtype, double start, double end, double step)
{
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step)) {
        dt_set_error(DT_EINVAL, "dt_arange(%g, %g, %g): step must be nonzero and all finite", start, end, step);
        return NULL;
    }
    double cnt = ceil((end - start) / step);
    if (cnt < 0 || cnt > 1e15) {
        dt_set_error(DT_EINVAL, "dt_arange(%g, %g, %g): %g values", start, end, step, cnt);
        return NULL;
    }
    int64_t n = (int64_t)cnt;
    dt_tensor *t = dt__empty(DT_F64, 1, &n);
    if (!t) return NULL;
    double *d = (double *)t->st->data;
    for (int64_t i = 0; i < n; i++) d[i] = start + (double)i * step;
    dt_tensor *out = dtype == DT_F64 ? t : dt__cast(t, dtype);
    if (out != t) dt_tensor_release(t);
    return dt__adopt(out);
}
