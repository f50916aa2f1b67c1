/* The differentiable views (view, reshape, transpose, permute, narrow, slice, expand,
 * squeeze, unsqueeze, flatten), contiguous and dtype casts. Forward is the tensor
 * layer's geometry (no copy except reshape/contiguous/cast when they must); backward
 * maps the gradient back: reshape, inverse permutation, zero-padding, sum_to. */
#include "autograd/ag_internal.h"

static int reshape_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    gi[0] = dt_reshape(g, dt_node_input_ndim(n, 0), dt_node_input_shape(n, 0));
    return gi[0] ? 0 : dt_last_error_code();
}

dt_tensor *dt_view(dt_tensor *a, int ndim, const int64_t *shape)
{
    if (!a) { dt__null_arg("view"); return NULL; }
    return dt__record(dt__view(a, ndim, shape), &a, 1, &(dt__rec){.name = "view", .fn = reshape_bw});
}

dt_tensor *dt_reshape(dt_tensor *a, int ndim, const int64_t *shape)
{
    if (!a) { dt__null_arg("reshape"); return NULL; }
    dt_tensor *v = dt__view(a, ndim, shape);
    if (!v && dt_last_error_code() == DT_ESHAPE) {
        int64_t sh[DT_MAX_DIMS];
        if (dt__infer_shape(a->numel, ndim, shape, sh) < 0) return NULL;
        dt_clear_error();
        dt_tensor *c = dt__cast(a, (dt_dtype)a->dtype);
        v = c ? dt__view(c, ndim, sh) : NULL;
        dt_tensor_release(c);
    }
    return dt__record(v, &a, 1, &(dt__rec){.name = "reshape", .fn = reshape_bw});
}

dt_tensor *dt_flatten(dt_tensor *a, int start, int end)
{
    if (!a) { dt__null_arg("flatten"); return NULL; }
    if (a->ndim == 0) return dt_reshape(a, DT_SHAPE(1));
    int s = dt__wrap_dim(start, a->ndim, "flatten"), e = dt__wrap_dim(end, a->ndim, "flatten");
    if (s < 0 || e < 0) return NULL;
    if (s > e) { dt_set_error(DT_EINVAL, "flatten: start dim %d after end dim %d", s, e); return NULL; }
    int64_t sh[DT_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < s; d++) sh[n++] = a->shape[d];
    int64_t m = 1;
    for (int d = s; d <= e; d++) m *= a->shape[d];
    sh[n++] = m;
    for (int d = e + 1; d < a->ndim; d++) sh[n++] = a->shape[d];
    return dt_reshape(a, n, sh);
}

static int permute_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    int inv[DT_MAX_DIMS];
    const int64_t *p = dt_node_i64(n);
    for (int d = 0; d < g->ndim; d++) inv[p[d]] = d;
    gi[0] = dt_permute(g, inv);
    return gi[0] ? 0 : dt_last_error_code();
}

dt_tensor *dt_permute(dt_tensor *a, const int *dims)
{
    if (!a || (!dims && a->ndim)) { dt__null_arg("permute"); return NULL; }
    dt__rec r = {.name = "permute", .fn = permute_bw};
    for (int d = 0; d < a->ndim; d++) r.i[d] = dims[d] < 0 ? dims[d] + a->ndim : dims[d];
    return dt__record(dt__permute(a, dims), &a, 1, &r);
}

dt_tensor *dt_transpose(dt_tensor *a, int d0, int d1)
{
    if (!a) { dt__null_arg("transpose"); return NULL; }
    int x = dt__wrap_dim(d0, a->ndim, "transpose"), y = dt__wrap_dim(d1, a->ndim, "transpose");
    if (x < 0 || y < 0) return NULL;
    int perm[DT_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) perm[d] = d;
    if (a->ndim) { perm[x] = y; perm[y] = x; }
    return dt_permute(a, perm);
}

static int slice_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    const int64_t *p = dt_node_i64(n);
    dt_tensor *z = dt_zeros(dt_node_input_dtype(n, 0), dt_node_input_ndim(n, 0), dt_node_input_shape(n, 0));
    dt_tensor *part = z ? dt__adopt(dt__slice(z, (int)p[0], p[1], p[2], p[3])) : NULL;
    if (!part || dt__copy(part, g) < 0) return dt_last_error_code();
    gi[0] = z;
    return 0;
}

static dt_tensor *slice(dt_tensor *a, int d, int64_t start, int64_t len, int64_t step)
{
    return dt__record(dt__slice(a, d, start, len, step), &a, 1, &(dt__rec){.name = "slice", .fn = slice_bw, .i = {d, start, len, step}});
}

dt_tensor *dt_narrow(dt_tensor *a, int dim, int64_t start, int64_t len)
{
    if (!a) { dt__null_arg("narrow"); return NULL; }
    int d = dt__wrap_dim(dim, a->ndim, "narrow");
    if (d < 0) return NULL;
    return slice(a, d, start, len, 1);
}

dt_tensor *dt_slice(dt_tensor *a, int dim, int64_t start, int64_t end, int64_t step)
{
    if (!a) { dt__null_arg("slice"); return NULL; }
    int d = dt__wrap_dim(dim, a->ndim, "slice");
    if (d < 0) return NULL;
    if (a->ndim == 0) { dt_set_error(DT_EINVAL, "slice of a 0-dim tensor"); return NULL; }
    if (step < 1) { dt_set_error(DT_EINVAL, "slice: step %lld (must be >= 1)", (long long)step); return NULL; }
    int64_t n = a->shape[d];
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = start < 0 ? 0 : start > n ? n : start;
    end = end < start ? start : end > n ? n : end;
    return slice(a, d, start, (end - start + step - 1) / step, step);
}

static int expand_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    gi[0] = dt_sum_to(g, dt_node_input_ndim(n, 0), dt_node_input_shape(n, 0));
    return gi[0] ? 0 : dt_last_error_code();
}

dt_tensor *dt_expand(dt_tensor *a, int ndim, const int64_t *shape)
{
    if (!a) { dt__null_arg("expand"); return NULL; }
    return dt__record(dt__expand(a, ndim, shape), &a, 1, &(dt__rec){.name = "expand", .fn = expand_bw});
}

dt_tensor *dt_squeeze(dt_tensor *a, int dim)
{
    if (!a) { dt__null_arg("squeeze"); return NULL; }
    return dt__record(dt__squeeze(a, dim), &a, 1, &(dt__rec){.name = "squeeze", .fn = reshape_bw});
}

dt_tensor *dt_unsqueeze(dt_tensor *a, int dim)
{
    if (!a) { dt__null_arg("unsqueeze"); return NULL; }
    return dt__record(dt__unsqueeze(a, dim), &a, 1, &(dt__rec){.name = "unsqueeze", .fn = reshape_bw});
}

/* Identity backward (the engine converts a gradient to the input's dtype). */
static int identity_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    gi[0] = g;
    return 0;
}

dt_tensor *dt_contiguous(dt_tensor *a)
{
    if (!a) { dt__null_arg("contiguous"); return NULL; }
    dt_tensor *c = dt_tensor_is_contiguous(a) ? dt__alias(a, a->ndim, a->shape, a->strides, a->offset)
                                              : dt__cast(a, (dt_dtype)a->dtype);
    return dt__record(c, &a, 1, &(dt__rec){.name = "contiguous", .fn = identity_bw});
}

dt_tensor *dt_to_dtype(dt_tensor *a, dt_dtype dtype)
{
    if (!a) { dt__null_arg("to_dtype"); return NULL; }
    if (dt_dtype_size(dtype) == 0) { dt_set_error(DT_EINVAL, "to_dtype: invalid dtype %d", (int)dtype); return NULL; }
    dt_tensor *c = dt__cast(a, dtype);
    if (!dt_dtype_is_float(dtype)) return dt__adopt(c);   /* integers carry no gradient */
    return dt__record(c, &a, 1, &(dt__rec){.name = "to_dtype", .fn = identity_bw});
}
