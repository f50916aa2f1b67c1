/* The differentiable reductions: sum and mean over dims, max over one dim, sum_to, and
 * softmax / log_softmax; argmax (not differentiable). Backward broadcasts the output
 * gradient back over the reduced dims (an expand view, no copy). */
#include "autograd/ag_internal.h"

static int dims_mask(const dt_tensor *a, const int *dims, int nd, unsigned *mask, const char *what)
{
    *mask = 0;
    if (nd < 0 || (nd > 0 && !dims)) return dt_set_error(DT_EINVAL, "%s: %d dims", what, nd);
    if (nd == 0) { *mask = (1u << a->ndim) - 1u; return 0; }
    for (int i = 0; i < nd; i++) {
        int d = dt__wrap_dim(dims[i], a->ndim, what);
        if (d < 0) return d;
        if (a->ndim == 0) continue;
        if (*mask >> d & 1u) return dt_set_error(DT_EINVAL, "%s: dim %d listed twice", what, d);
        *mask |= 1u << d;
    }
    return 0;
}

/* g (the reduced shape) broadcast back to input 0's shape. */
static dt_tensor *unreduce(dt_node *n, dt_tensor *g, unsigned mask, bool keepdim)
{
    int nd = dt_node_input_ndim(n, 0);
    const int64_t *shape = dt_node_input_shape(n, 0);
    int64_t ks[DT_MAX_DIMS];
    for (int d = 0; d < nd; d++) ks[d] = mask >> d & 1u ? 1 : shape[d];
    dt_tensor *gk = keepdim ? g : dt_reshape(g, nd, ks);
    return dt_expand(gk, nd, shape);
}

static int sum_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    const int64_t *p = dt_node_i64(n);
    dt_tensor *t = unreduce(n, g, (unsigned)p[0], p[1] != 0);
    if (t && dt_node_f64(n)[0] != 1) t = dt_mul_scalar(t, dt_node_f64(n)[0]);
    gi[0] = t;
    return t ? 0 : dt_last_error_code();
}

static dt_tensor *reduce(dt_tensor *a, const int *dims, int nd, bool keepdim, bool mean)
{
    const char *name = mean ? "mean" : "sum";
    if (!a) { dt__null_arg(name); return NULL; }
    unsigned mask;
    if (dims_mask(a, dims, nd, &mask, name) < 0) return NULL;
    dt_tensor *s = dt__sum(a, mask, keepdim);
    double count = 1;
    for (int d = 0; d < a->ndim; d++) if (mask >> d & 1u) count *= (double)a->shape[d];
    if (s && mean) {
        dt_tensor *m = dt__ew(DT__EW_DIVS, s, NULL, count);
        dt_tensor_release(s);
        s = m;
    }
    return dt__record(s, &a, 1, &(dt__rec){.name = name, .fn = sum_bw, .f = {mean ? 1.0 / count : 1.0}, .i = {mask, keepdim}});
}

dt_tensor *dt_sum(dt_tensor *a, const int *dims, int ndims, bool keepdim) { return reduce(a, dims, ndims, keepdim, false); }
dt_tensor *dt_mean(dt_tensor *a, const int *dims, int ndims, bool keepdim) { return reduce(a, dims, ndims, keepdim, true); }

static int sum_to_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    gi[0] = dt_expand(g, dt_node_input_ndim(n, 0), dt_node_input_shape(n, 0));
    return gi[0] ? 0 : dt_last_error_code();
}

dt_tensor *dt_sum_to(dt_tensor *a, int ndim, const int64_t *shape)
{
    if (!a) { dt__null_arg("sum_to"); return NULL; }
    if (dt__check_shape(ndim, shape) < 0) return NULL;
    if (ndim == a->ndim && memcmp(shape, a->shape, (size_t)ndim * sizeof *shape) == 0 && !dt_needs_grad(&a, 1))
        return dt__adopt(dt__alias(a, a->ndim, a->shape, a->strides, a->offset));
    return dt__record(dt__sum_to(a, ndim, shape), &a, 1, &(dt__rec){.name = "sum_to", .fn = sum_to_bw});
}

static int max_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    const int64_t *p = dt_node_i64(n);
    dt_tensor *idx = dt_node_saved(n, 0);
    int dim = (int)p[0];
    dt_tensor *gk = g, *ik = idx;
    if (!p[1] && dt_node_input_ndim(n, 0) > 0) {
        gk = dt_unsqueeze(g, dim);
        ik = dt_unsqueeze(idx, dim);
    }
    gi[0] = gk && ik ? dt__adopt(dt__scatter_dim(gk, ik, dim, dt_node_input_ndim(n, 0), dt_node_input_shape(n, 0))) : NULL;
    return gi[0] ? 0 : dt_last_error_code();
}

dt_tensor *dt_max(dt_tensor *a, int dim, bool keepdim)
{
    if (!a) { dt__null_arg("max"); return NULL; }
    int d = dt__wrap_dim(dim, a->ndim, "max");
    if (d < 0) return NULL;
    dt_tensor *v = NULL, *idx = NULL;
    bool grad = dt_needs_grad(&a, 1);
    if (dt__max(a, d, keepdim, &v, grad ? &idx : NULL) < 0) return NULL;
    dt_tensor *out = dt__record(v, &a, 1, &(dt__rec){.name = "max", .fn = max_bw, .save_extra = idx, .i = {d, keepdim}});
    dt_tensor_release(idx);
    return out;
}

dt_tensor *dt_argmax(dt_tensor *a, int dim, bool keepdim)
{
    if (!a) { dt__null_arg("argmax"); return NULL; }
    int d = dt__wrap_dim(dim, a->ndim, "argmax");
    if (d < 0) return NULL;
    dt_tensor *idx = NULL;
    if (dt__max(a, d, keepdim, NULL, &idx) < 0) return NULL;
    return dt__adopt(idx);
}

static int softmax_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    gi[0] = dt__adopt(dt__softmax_bw(dt_node_saved(n, 0), g, (int)dt_node_i64(n)[0], dt_node_i64(n)[1] != 0));
    return gi[0] ? 0 : dt_last_error_code();
}

static dt_tensor *softmax(dt_tensor *a, int dim, bool lg)
{
    const char *name = lg ? "log_softmax" : "softmax";
    if (!a) { dt__null_arg(name); return NULL; }
    if (!dt_dtype_is_float((dt_dtype)a->dtype)) { dt_set_error(DT_EDTYPE, "%s of %s", name, dt_dtype_name((dt_dtype)a->dtype)); return NULL; }
    int d = dt__wrap_dim(dim, a->ndim, name);
    if (d < 0) return NULL;
    return dt__record(dt__softmax(a, d, lg), &a, 1, &(dt__rec){.name = name, .fn = softmax_bw, .save_out = true, .i = {d, lg}});
}

dt_tensor *dt_softmax(dt_tensor *a, int dim) { return softmax(a, dim, false); }
dt_tensor *dt_log_softmax(dt_tensor *a, int dim) { return softmax(a, dim, true); }
