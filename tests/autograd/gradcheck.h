/* gradcheck.h: finite-difference gradient checks for any differentiable op, for tests.
 *
 * A check takes a closure that builds a scalar from a list of input tensors, runs
 * backward once for the analytic gradients, then compares every input element with the
 * central difference (f(x + eps) - f(x - eps)) / 2 eps, all in float64:
 *
 *   static dt_tensor *f(dt_tensor *const *in, void *ctx) { return dt_gc_project(dt_mul(in[0], in[1])); }
 *   dt_tensor *in[2] = {dt_gc_input(&g, DT_SHAPE(3, 4), DT_GC_TRANSPOSED), dt_gc_input(&g, DT_SHAPE(4), 0)};
 *   DT_ASSERT_OK(dt_gradcheck(f, NULL, in, 2, DT_GC_OPTS_INIT));
 *
 * Inputs are leaves that require grad; dt_gc_input makes contiguous, transposed or
 * strided (every other element) ones, so ops see non-contiguous operands. Broadcast and
 * expanded operands are made inside the closure (dt_expand of an input), where the
 * finite difference still perturbs one real element. Everything runs in scopes; the
 * caller releases the inputs (or makes them in a scope). */
#ifndef DT_GRADCHECK_H
#define DT_GRADCHECK_H

#include <dtrain/dtrain.h>
#include <math.h>
#include <stdio.h>

typedef dt_tensor *(*dt_gc_fn)(dt_tensor *const *in, void *ctx);

typedef struct {
    double eps;     /* step of the central difference */
    double atol;    /* |analytic - numeric| <= atol + rtol |numeric| */
    double rtol;
    bool quiet;     /* do not print the first mismatch */
} dt_gc_opts;
#define DT_GC_OPTS_INIT {.eps = 1e-6, .atol = 1e-6, .rtol = 1e-5, .quiet = false}

enum { DT_GC_CONTIGUOUS = 0, DT_GC_TRANSPOSED = 1, DT_GC_STRIDED = 2 };

/* A f64 leaf of the given shape with values uniform in [-1, 1) (shifted by `shift`),
 * requiring grad, laid out as asked: TRANSPOSED is the transpose of a contiguous
 * tensor of the last two dims swapped; STRIDED takes every other element of the last
 * dim of a tensor twice as wide. Scoped like any tensor. */
static inline dt_tensor *dt_gc_input_shift(dt_rng *g, int ndim, const int64_t *shape, int layout, double shift)
{
    int64_t base[DT_MAX_DIMS];
    for (int d = 0; d < ndim; d++) base[d] = shape[d];
    dt_tensor *x = NULL;
    int tok = dt_scope_begin();
    if (layout == DT_GC_TRANSPOSED && ndim >= 2) {
        base[ndim - 1] = shape[ndim - 2];
        base[ndim - 2] = shape[ndim - 1];
        x = dt_transpose(dt_rand(g, DT_F64, ndim, base), -1, -2);
    } else if (layout == DT_GC_STRIDED && ndim >= 1) {
        base[ndim - 1] = 2 * shape[ndim - 1];
        x = dt_slice(dt_rand(g, DT_F64, ndim, base), -1, 1, base[ndim - 1], 2);
    } else {
        x = dt_rand(g, DT_F64, ndim, shape);
    }
    if (x) {
        /* map [0, 1) to [-1, 1) + shift, in place through the view */
        dt_tensor *y = dt_add_scalar(dt_mul_scalar(x, 2), shift - 1);
        if (!y || dt_tensor_copy_(x, y) < 0) x = NULL;
    }
    if (x) x = dt_detach(x);
    if (x && dt_tensor_set_requires_grad(x, true) < 0) x = NULL;
    dt_keep(x);
    dt_scope_end(tok);
    return x;
}
static inline dt_tensor *dt_gc_input(dt_rng *g, int ndim, const int64_t *shape, int layout)
{
    return dt_gc_input_shift(g, ndim, shape, layout, 0);
}

/* A scalar that depends on every element of t with a different weight: sum(t * w) for
 * fixed pseudo-random w (the same on every call for the same shape). */
static inline dt_tensor *dt_gc_project(dt_tensor *t)
{
    if (!t) return NULL;
    dt_rng g = dt_rng_make(0x5eed, (uint64_t)dt_tensor_numel(t));
    dt_tensor *w = dt_rand(&g, dt_tensor_dtype(t), dt_tensor_ndim(t), dt_tensor_shape(t));
    return dt_sum(dt_mul(t, dt_add_scalar(w, 0.5)), NULL, 0, false);
}

/* Address of element `lin` (row-major position) of a f64 tensor with any strides. */
static inline double *dt__gc_elem(dt_tensor *t, int64_t lin)
{
    int nd = dt_tensor_ndim(t);
    const int64_t *sh = dt_tensor_shape(t), *st = dt_tensor_strides(t);
    int64_t off = 0;
    for (int d = nd - 1; d >= 0; d--) {
        off += (lin % sh[d]) * st[d];
        lin /= sh[d];
    }
    return (double *)dt_tensor_data(t) + off;
}

static inline double dt__gc_eval(dt_gc_fn f, void *ctx, dt_tensor *const *in)
{
    double v = NAN;
    DT_NO_GRAD DT_SCOPE {
        dt_tensor *y = f(in, ctx);
        if (y) v = dt_tensor_item(y);
    }
    return v;
}

/* 0 when every gradient matches; otherwise DT_EINVAL (printing the first mismatch
 * unless quiet), or the error of a failing forward/backward. */
static inline int dt_gradcheck(dt_gc_fn f, void *ctx, dt_tensor *const *in, int n, dt_gc_opts o)
{
    int rc = 0;
    for (int i = 0; i < n; i++) dt_tensor_set_grad_buffer(in[i], NULL);
    DT_SCOPE {
        dt_tensor *y = f(in, ctx);
        if (!y) rc = dt_last_error_code() < 0 ? dt_last_error_code() : DT_EINTERNAL;
        else if (dt_tensor_numel(y) != 1) rc = dt_set_error(DT_EINVAL, "gradcheck: the closure returned %lld elements", (long long)dt_tensor_numel(y));
        else rc = dt_backward(y);
    }
    for (int i = 0; i < n && rc == 0; i++) {
        dt_tensor *gr = dt_tensor_grad(in[i]);
        int64_t numel = dt_tensor_numel(in[i]);
        for (int64_t j = 0; j < numel && rc == 0; j++) {
            double *x = dt__gc_elem(in[i], j), x0 = *x;
            *x = x0 + o.eps;
            double fp = dt__gc_eval(f, ctx, in);
            *x = x0 - o.eps;
            double fm = dt__gc_eval(f, ctx, in);
            *x = x0;
            double num = (fp - fm) / (2 * o.eps);
            double ana = gr ? *dt__gc_elem(gr, j) : 0;
            if (!(fabs(ana - num) <= o.atol + o.rtol * fabs(num))) {
                rc = dt_set_error(DT_EINVAL, "gradcheck: input %d element %lld: analytic %.10g, numeric %.10g", i, (long long)j, ana, num);
                if (!o.quiet) fprintf(stderr, "%s\n", dt_last_error());
            }
        }
    }
    return rc;
}

#endif /* DT_GRADCHECK_H */
