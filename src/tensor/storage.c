/* Tensor handles and their storage: allocation (one block for header and data),
 * borrowed storage over a caller's buffer, retain/release, and the read-only
 * accessors. Does not compute anything and does not know about scopes beyond
 * telling one that a tensor it holds is gone. */
#include "tensor/tensor_internal.h"

#include <math.h>
#include <stdio.h>

#define DT__ST_HDR 64
_Static_assert(sizeof(dt__storage) <= DT__ST_HDR, "storage header fits its 64 bytes");

void (*dt__tensor_ag_dtor)(void *ag);
static _Thread_local dt_mem_cat tl_cat = DT_MEM_ACT;

dt_mem_cat dt_tensor_set_mem_cat(dt_mem_cat cat)
{
    dt_mem_cat old = tl_cat;
    if ((unsigned)cat < DT_MEM_COUNT) tl_cat = cat;
    return old;
}

int dt__check_shape(int ndim, const int64_t *shape)
{
    if (ndim < 0 || ndim > DT_MAX_DIMS)
        return dt_set_error(DT_EINVAL, "tensor: %d dims (0..%d allowed)", ndim, DT_MAX_DIMS);
    if (ndim > 0 && !shape) return dt_set_error(DT_EINVAL, "tensor: NULL shape for %d dims", ndim);
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0) return dt_set_error(DT_EINVAL, "tensor: size %lld in dim %d", (long long)shape[d], d);
        if (shape[d] && n > INT64_MAX / 16 / shape[d])
            return dt_set_error(DT_EINVAL, "tensor: %d-dim shape too large", ndim);
        n *= shape[d];
    }
    return 0;
}

void dt__contig_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d] > 1 ? shape[d] : 1;
    }
}

int dt__wrap_dim(int dim, int ndim, const char *what)
{
    int n = ndim > 0 ? ndim : 1;
    if (dim < -n || dim >= n) return dt_set_error(DT_EINVAL, "%s: dim %d out of range for %d dims", what, dim, ndim);
    return dim < 0 ? dim + n : dim;
}

static int64_t prod(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

static dt_tensor *tensor_struct(dt_dtype dtype, int ndim, const int64_t *shape)
{
    dt_tensor *t = dt_alloc(sizeof *t, DT_MEM_OTHER);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    atomic_init(&t->refs, 1);
    t->dtype = (uint8_t)dtype;
    t->ndim = (int8_t)ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->numel = prod(ndim, shape);
    return t;
}

dt_tensor *dt__empty(dt_dtype dtype, int ndim, const int64_t *shape)
{
    if (dt_dtype_size(dtype) == 0) { dt_set_error(DT_EINVAL, "tensor: invalid dtype %d", (int)dtype); return NULL; }
    if (dt__check_shape(ndim, shape) < 0) return NULL;
    dt_tensor *t = tensor_struct(dtype, ndim, shape);
    if (!t) return NULL;
    size_t nbytes = (size_t)t->numel * dt_dtype_size(dtype);
    dt__storage *st = dt_alloc(DT__ST_HDR + nbytes, tl_cat);
    if (!st) { dt_free(t); return NULL; }
    atomic_init(&st->refs, 1);
    st->borrowed = false;
    st->data = (char *)st + DT__ST_HDR;
    st->nbytes = nbytes;
    t->st = st;
    dt__contig_strides(ndim, shape, t->strides);
    return t;
}

dt_tensor *dt__alias(const dt_tensor *src, int ndim, const int64_t *shape, const int64_t *strides, int64_t offset)
{
    dt_tensor *t = tensor_struct((dt_dtype)src->dtype, ndim, shape);
    if (!t) return NULL;
    if (ndim) memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    t->offset = offset;
    t->st = src->st;
    atomic_fetch_add(&src->st->refs, 1);
    return t;
}

dt_tensor *dt_from_buffer_strided(void *data, dt_dtype dtype, int ndim, const int64_t *shape,
                                  const int64_t *strides, int64_t offset)
{
    if (dt_dtype_size(dtype) == 0) { dt_set_error(DT_EINVAL, "dt_from_buffer: invalid dtype %d", (int)dtype); return NULL; }
    if (dt__check_shape(ndim, shape) < 0) return NULL;
    if (offset < 0) { dt_set_error(DT_EINVAL, "dt_from_buffer: offset %lld", (long long)offset); return NULL; }
    int64_t extent = prod(ndim, shape) ? offset + 1 : 0;
    for (int d = 0; d < ndim; d++) {
        if (strides && strides[d] < 0) { dt_set_error(DT_EINVAL, "dt_from_buffer: negative stride in dim %d", d); return NULL; }
        if (strides && shape[d] > 0) extent += (shape[d] - 1) * strides[d];
    }
    if (!strides) extent = offset + prod(ndim, shape);
    if (!data && extent > 0) { dt_set_error(DT_EINVAL, "dt_from_buffer: NULL data for %lld elements", (long long)extent); return NULL; }
    dt_tensor *t = tensor_struct(dtype, ndim, shape);
    if (!t) return NULL;
    dt__storage *st = dt_alloc(sizeof *st, DT_MEM_OTHER);
    if (!st) { dt_free(t); return NULL; }
    atomic_init(&st->refs, 1);
    st->borrowed = true;
    st->data = data;
    st->nbytes = (size_t)extent * dt_dtype_size(dtype);
    t->st = st;
    t->offset = offset;
    if (strides) memcpy(t->strides, strides, (size_t)ndim * sizeof *strides);
    else dt__contig_strides(ndim, shape, t->strides);
    return dt__adopt(t);
}

dt_tensor *dt_from_buffer(void *data, dt_dtype dtype, int ndim, const int64_t *shape)
{
    return dt_from_buffer_strided(data, dtype, ndim, shape, NULL, 0);
}

dt_tensor *dt_tensor_retain(dt_tensor *t)
{
    if (t) atomic_fetch_add(&t->refs, 1);
    return t;
}

static void storage_release(dt__storage *st)
{
    if (atomic_fetch_sub(&st->refs, 1) == 1) dt_free(st);
}

void dt_tensor_release(dt_tensor *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
    if (t->scope_depth) dt__scope_forget(t);
    if (t->ag && dt__tensor_ag_dtor) dt__tensor_ag_dtor(t->ag);
    storage_release(t->st);
    dt_free(t);
}

/* ---------------------------------------------------------------- accessors */
int dt_tensor_ndim(const dt_tensor *t) { return t->ndim; }
const int64_t *dt_tensor_shape(const dt_tensor *t) { return t->shape; }
const int64_t *dt_tensor_strides(const dt_tensor *t) { return t->strides; }
int64_t dt_tensor_numel(const dt_tensor *t) { return t->numel; }
int64_t dt_tensor_offset(const dt_tensor *t) { return t->offset; }
dt_dtype dt_tensor_dtype(const dt_tensor *t) { return (dt_dtype)t->dtype; }
void *dt_tensor_data(const dt_tensor *t) { return dt__ptr(t); }

int64_t dt_tensor_size(const dt_tensor *t, int dim)
{
    if (dim < -t->ndim || dim >= t->ndim) return -1;
    return t->shape[dim < 0 ? dim + t->ndim : dim];
}

bool dt_tensor_is_contiguous(const dt_tensor *t)
{
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] == 1) continue;
        if (t->shape[d] == 0) return true;
        if (t->strides[d] != s) return false;
        s *= t->shape[d];
    }
    return true;
}

float *dt_tensor_data_f32(const dt_tensor *t)
{
    if (t->dtype != DT_F32) { dt_set_error(DT_EDTYPE, "tensor is %s, not float32", dt_dtype_name((dt_dtype)t->dtype)); return NULL; }
    return (float *)dt__ptr(t);
}

double *dt_tensor_data_f64(const dt_tensor *t)
{
    if (t->dtype != DT_F64) { dt_set_error(DT_EDTYPE, "tensor is %s, not float64", dt_dtype_name((dt_dtype)t->dtype)); return NULL; }
    return (double *)dt__ptr(t);
}

bool dt_tensor_same_storage(const dt_tensor *a, const dt_tensor *b) { return a && b && a->st == b->st; }

static double load_elem(const char *p, dt_dtype dt)
{
    switch (dt) {
    case DT_F32: { float v; memcpy(&v, p, 4); return v; }
    case DT_F64: { double v; memcpy(&v, p, 8); return v; }
    case DT_BF16: { uint16_t v; memcpy(&v, p, 2); return dt_bf16_to_f32(v); }
    case DT_F16: { uint16_t v; memcpy(&v, p, 2); return dt_f16_to_f32(v); }
    case DT_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case DT_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case DT_U8: return *(const uint8_t *)p;
    default: return NAN;
    }
}

double dt_tensor_get(const dt_tensor *t, const int64_t *idx)
{
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) {
        if (idx[d] < 0 || idx[d] >= t->shape[d]) {
            dt_set_error(DT_ERANGE, "dt_tensor_get: index %lld out of range for size %lld in dim %d",
                         (long long)idx[d], (long long)t->shape[d], d);
            return NAN;
        }
        off += idx[d] * t->strides[d];
    }
    return load_elem((const char *)t->st->data + off * (int64_t)dt_dtype_size((dt_dtype)t->dtype), (dt_dtype)t->dtype);
}

double dt_tensor_item(const dt_tensor *t)
{
    if (!t || t->numel != 1) {
        dt_set_error(DT_EINVAL, "dt_tensor_item: %lld elements, not one", t ? (long long)t->numel : 0LL);
        return NAN;
    }
    return load_elem(dt__ptr(t), (dt_dtype)t->dtype);
}

char *dt_tensor_describe(const dt_tensor *t, char *buf, size_t len)
{
    static const char *const short_names[DT_DTYPE_COUNT] = {"f32", "f64", "bf16", "f16", "i64", "i32", "u8"};
    if (!len) return buf;
    if (!t) { snprintf(buf, len, "(null)"); return buf; }
    size_t n = (size_t)snprintf(buf, len, "%s[", t->dtype < DT_DTYPE_COUNT ? short_names[t->dtype] : "?");
    for (int d = 0; d < t->ndim && n < len; d++)
        n += (size_t)snprintf(buf + n, len - n, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (n < len) snprintf(buf + n, len - n, "]");
    return buf;
}
