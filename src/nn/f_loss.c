/* The losses of nn.h: cross_entropy (fused log_softmax + gather), nll_loss and
 * mse_loss, each with its backward and the three reductions.
 *
 * cross_entropy keeps, per row i of logits (N, C), only lse[i] = log sum_j exp(x_ij)
 * (max-subtracted, in f32 for f32/bf16/f16 logits and f64 for f64, like torch); the
 * loss is lse[i] - x[i, t_i], and backward writes scale_i * (exp(x_ij - lse[i]) -
 * [j == t_i]) without materialising log-probabilities. scale_i is the output gradient
 * (per row for NONE), divided by the count of non-ignored targets for MEAN. Rows whose
 * target is ignore_index contribute 0 and get a zero gradient. Reduced losses sum in
 * f64 and round once. Class weights and label smoothing are not supported; logits
 * must be (N, C) (no extra spatial dims). */
#include "autograd/ag_internal.h"
#include <dtrain/nn.h>

#include <math.h>

#include "tensor/vmath.h"

static dt_dtype ctype(dt_dtype t) { return t == DT_F64 ? DT_F64 : DT_F32; }

static dt_tensor *finish(dt_tensor *y, dt_dtype as)
{
    if (!y || y->dtype == as) return y;
    dt_tensor *c = dt__cast(y, as);
    dt_tensor_release(y);
    return c;
}

static int64_t target_at(const dt_tensor *t, int64_t i)
{
    const char *p = dt__ptr(t) + i * t->strides[0] * (int64_t)dt_dtype_size((dt_dtype)t->dtype);
    return t->dtype == DT_I64 ? *(const int64_t *)p : *(const int32_t *)p;
}

/* Checks shared by cross_entropy and nll_loss: x (N, C) floating, target (N) i64/i32
 * with every entry in 0..C-1 or ignore_index; *count gets the non-ignored ones. */
static int check_class_args(const char *what, const dt_tensor *x, const dt_tensor *t, dt_reduction red, int64_t ignore, int64_t *count)
{
    char a[96], b[96];
    if (!dt_dtype_is_float((dt_dtype)x->dtype))
        return dt_set_error(DT_EDTYPE, "%s: input of %s (floating dtypes only)", what, dt_dtype_name((dt_dtype)x->dtype));
    if (t->dtype != DT_I64 && t->dtype != DT_I32)
        return dt_set_error(DT_EDTYPE, "%s: target of %s (class ids are i64 or i32)", what, dt_dtype_name((dt_dtype)t->dtype));
    if (x->ndim != 2 || x->shape[1] < 1 || t->ndim != 1 || t->shape[0] != x->shape[0])
        return dt_set_error(DT_ESHAPE, "%s: input %s and target %s (want (N, C) with C >= 1 and (N))", what,
                            dt_tensor_describe(x, a, sizeof a), dt_tensor_describe(t, b, sizeof b));
    if (red != DT_REDUCTION_MEAN && red != DT_REDUCTION_SUM && red != DT_REDUCTION_NONE)
        return dt_set_error(DT_EINVAL, "%s: reduction %d", what, (int)red);
    int64_t N = x->shape[0], C = x->shape[1];
    *count = 0;
    for (int64_t i = 0; i < N; i++) {
        int64_t c = target_at(t, i);
        if (c == ignore) continue;
        if (c < 0 || c >= C)
            return dt_set_error(DT_ERANGE, "%s: target[%lld] = %lld outside 0..%lld (ignore_index %lld)", what, (long long)i,
                                (long long)c, (long long)(C - 1), (long long)ignore);
        (*count)++;
    }
    return 0;
}

/* The loss from per-row values l (N) in ct: l itself for NONE, else its sum (divided
 * by count for MEAN) as a 0-dim tensor. Consumes l. */
static dt_tensor *reduce_rows(dt_tensor *l, dt_reduction red, int64_t count)
{
    if (!l || red == DT_REDUCTION_NONE) return l;
    double s = 0;
    int64_t n = l->numel;
    if (l->dtype == DT_F32) for (int64_t i = 0; i < n; i++) s += ((const float *)dt__ptr(l))[i];
    else for (int64_t i = 0; i < n; i++) s += ((const double *)dt__ptr(l))[i];
    if (red == DT_REDUCTION_MEAN) s /= (double)count;   /* 0 / 0 is NaN, as torch */
    dt_dtype ct = (dt_dtype)l->dtype;
    dt_tensor_release(l);
    return dt__full(ct, 0, NULL, s);
}

/* ------------------------------------------------------------ cross_entropy */
typedef struct {
    const char *x;
    char *lse;
    int64_t C;
    bool f32;
} lse_job;

#define CE_LOOPS(T, EXP, LOG)                                                           \
    DT__KERNEL static void lse_##T(const T *x, T *lse, int64_t C, int64_t r0, int64_t r1) \
    {                                                                                   \
        for (int64_t i = r0; i < r1; i++) {                                             \
            const T *r = x + i * C;                                                     \
            T m = dt__lanemax_##T(r, C);                                                \
            if (m == -(T)INFINITY) m = 0;                                               \
            T s;                                                                        \
            DT__LANE_SUM(T, s, C, k, EXP(r[k] - m));                                    \
            lse[i] = m + LOG(s);                                                        \
        }                                                                               \
    }                                                                                   \
    DT__KERNEL static void ce_row_bw_##T(const T *x, T lse, int64_t C, T scale, int64_t t, T *gx) \
    {                                                                                   \
        for (int64_t k = 0; k < C; k++) gx[k] = scale * EXP(x[k] - lse);                \
        gx[t] -= scale;                                                                 \
    }
CE_LOOPS(float, dt__vexpf_fast, logf)
CE_LOOPS(double, exp, log)

static void lse_range(void *arg, int64_t begin, int64_t end, int tid)
{
    (void)tid;
    const lse_job *j = arg;
    if (j->f32) lse_float((const float *)j->x, (float *)j->lse, j->C, begin, end);
    else lse_double((const double *)j->x, (double *)j->lse, j->C, begin, end);
}

static int ce_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt_tensor *x0 = dt_node_saved(n, 0), *t = dt_node_saved(n, 1), *lse = dt_node_saved(n, 2);
    dt_reduction red = (dt_reduction)n->i64[0];
    int64_t ignore = n->i64[1], count = n->i64[2], N = x0->shape[0], C = x0->shape[1];
    dt_dtype ct = (dt_dtype)lse->dtype;
    dt_tensor *x = dt__contig_as(x0, ct), *gs = x ? dt__contig_as(g, ct) : NULL;
    dt_tensor *gx = gs ? dt__empty(ct, 2, x0->shape) : NULL;
    if (gx) {
        bool f32 = ct == DT_F32;
        double div = red == DT_REDUCTION_MEAN ? (double)count : 1;
        for (int64_t i = 0; i < N; i++) {
            int64_t c = target_at(t, i), at = i * C;
            int64_t gsi = red == DT_REDUCTION_NONE ? i : 0;
            if (c == ignore) {
                memset(dt__ptr(gx) + at * (f32 ? 4 : 8), 0, (size_t)C * (f32 ? 4 : 8));
            } else if (f32) {
                float s = (float)(((const float *)dt__ptr(gs))[gsi] / div);
                ce_row_bw_float((const float *)dt__ptr(x) + at, ((const float *)dt__ptr(lse))[i], C, s, c, (float *)dt__ptr(gx) + at);
            } else {
                double s = ((const double *)dt__ptr(gs))[gsi] / div;
                ce_row_bw_double((const double *)dt__ptr(x) + at, ((const double *)dt__ptr(lse))[i], C, s, c, (double *)dt__ptr(gx) + at);
            }
        }
    }
    dt_tensor_release(x);
    dt_tensor_release(gs);
    gi[0] = dt__adopt(finish(gx, dt_node_input_dtype(n, 0)));
    return gi[0] ? 0 : dt_last_error_code();
}

dt_tensor *dt_cross_entropy_ex(dt_tensor *logits, dt_tensor *target, dt_reduction red, int64_t ignore_index)
{
    if (!logits || !target) { dt__null_arg("cross_entropy"); return NULL; }
    int64_t count;
    if (check_class_args("cross_entropy", logits, target, red, ignore_index, &count) < 0) return NULL;
    int64_t N = logits->shape[0], C = logits->shape[1];
    dt_dtype ct = ctype((dt_dtype)logits->dtype);
    dt_tensor *x = dt__contig_as(logits, ct);
    dt_tensor *lse = x ? dt__empty(ct, 1, &N) : NULL;
    dt_tensor *l = lse ? dt__empty(ct, 1, &N) : NULL;
    if (l) {
        lse_job j = {.x = dt__ptr(x), .lse = dt__ptr(lse), .C = C, .f32 = ct == DT_F32};
        dt__parallel_for(N, C >= 4096 ? 1 : 4096 / C, lse_range, &j);
        for (int64_t i = 0; i < N; i++) {
            int64_t c = target_at(target, i);
            if (ct == DT_F32) {
                float v = c == ignore_index ? 0.0f : ((float *)dt__ptr(lse))[i] - ((const float *)dt__ptr(x))[i * C + c];
                ((float *)dt__ptr(l))[i] = v;
            } else {
                double v = c == ignore_index ? 0.0 : ((double *)dt__ptr(lse))[i] - ((const double *)dt__ptr(x))[i * C + c];
                ((double *)dt__ptr(l))[i] = v;
            }
        }
    }
    dt_tensor_release(x);
    dt_tensor *in[2] = {logits, target};
    dt__rec r = {.name = "cross_entropy", .fn = ce_bw, .save_in = 3, .save_extra = lse, .i = {red, ignore_index, count}};
    dt_tensor *out = dt__record(finish(reduce_rows(l, red, count), (dt_dtype)logits->dtype), in, 2, &r);
    dt_tensor_release(lse);
    return out;
}

dt_tensor *dt_cross_entropy(dt_tensor *logits, dt_tensor *target)
{
    return dt_cross_entropy_ex(logits, target, DT_REDUCTION_MEAN, DT_IGNORE_INDEX);
}

/* ----------------------------------------------------------------- nll_loss */
static int nll_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt_tensor *t = dt_node_saved(n, 0);
    dt_reduction red = (dt_reduction)n->i64[0];
    int64_t ignore = n->i64[1], count = n->i64[2];
    const int64_t *shape = dt_node_input_shape(n, 0);
    int64_t N = shape[0], C = shape[1];
    dt_dtype ct = ctype(dt_node_input_dtype(n, 0));
    dt_tensor *gs = dt__contig_as(g, ct);
    dt_tensor *gx = gs ? dt__full(ct, 2, shape, 0) : NULL;
    if (gx) {
        double div = red == DT_REDUCTION_MEAN ? (double)count : 1;
        for (int64_t i = 0; i < N; i++) {
            int64_t c = target_at(t, i), gsi = red == DT_REDUCTION_NONE ? i : 0;
            if (c == ignore) continue;
            if (ct == DT_F32) ((float *)dt__ptr(gx))[i * C + c] = (float)(-((const float *)dt__ptr(gs))[gsi] / div);
            else ((double *)dt__ptr(gx))[i * C + c] = -((const double *)dt__ptr(gs))[gsi] / div;
        }
    }
    dt_tensor_release(gs);
    gi[0] = dt__adopt(finish(gx, dt_node_input_dtype(n, 0)));
    return gi[0] ? 0 : dt_last_error_code();
}

dt_tensor *dt_nll_loss(dt_tensor *logp, dt_tensor *target, dt_reduction red, int64_t ignore_index)
{
    if (!logp || !target) { dt__null_arg("nll_loss"); return NULL; }
    int64_t count;
    if (check_class_args("nll_loss", logp, target, red, ignore_index, &count) < 0) return NULL;
    int64_t N = logp->shape[0];
    dt_dtype ct = ctype((dt_dtype)logp->dtype);
    dt_tensor *x = dt__contig_as(logp, ct);
    dt_tensor *l = x ? dt__empty(ct, 1, &N) : NULL;
    for (int64_t i = 0; l && i < N; i++) {
        int64_t c = target_at(target, i), at = i * logp->shape[1] + c;
        if (ct == DT_F32) ((float *)dt__ptr(l))[i] = c == ignore_index ? 0.0f : -((const float *)dt__ptr(x))[at];
        else ((double *)dt__ptr(l))[i] = c == ignore_index ? 0.0 : -((const double *)dt__ptr(x))[at];
    }
    dt_tensor_release(x);
    dt_tensor *in[2] = {logp, target};
    dt__rec r = {.name = "nll_loss", .fn = nll_bw, .i = {red, ignore_index, count}};
    r.save_extra = target;
    return dt__record(finish(reduce_rows(l, red, count), (dt_dtype)logp->dtype), in, 2, &r);
}

/* ----------------------------------------------------------------- mse_loss */
static int mse_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt_tensor *d = dt_node_saved(n, 0);
    double k = 2 * n->f64[0];
    dt_tensor *gd = dt_mul(d, dt_mul_scalar(g, k));
    if (!gd) return dt_last_error_code();
    if (dt_node_needs_input_grad(n, 0) && !(gi[0] = dt_sum_to(gd, dt_node_input_ndim(n, 0), dt_node_input_shape(n, 0))))
        return dt_last_error_code();
    if (dt_node_needs_input_grad(n, 1) && !(gi[1] = dt_neg(dt_sum_to(gd, dt_node_input_ndim(n, 1), dt_node_input_shape(n, 1)))))
        return dt_last_error_code();
    return 0;
}

dt_tensor *dt_mse_loss(dt_tensor *a, dt_tensor *b, dt_reduction red)
{
    if (!a || !b) { dt__null_arg("mse_loss"); return NULL; }
    if (!dt_dtype_is_float((dt_dtype)a->dtype) || a->dtype != b->dtype) {
        dt_set_error(DT_EDTYPE, "mse_loss of %s and %s (one floating dtype)", dt_dtype_name((dt_dtype)a->dtype), dt_dtype_name((dt_dtype)b->dtype));
        return NULL;
    }
    if (red != DT_REDUCTION_MEAN && red != DT_REDUCTION_SUM && red != DT_REDUCTION_NONE) {
        dt_set_error(DT_EINVAL, "mse_loss: reduction %d", (int)red);
        return NULL;
    }
    /* forward with the ops in no-grad mode; one node of our own records the backward */
    dt_tensor *y = NULL, *d = NULL;
    dt_no_grad_begin();
    int tok = dt_scope_begin();
    d = dt_sub(a, b);
    dt_tensor *sq = dt_mul(d, d);
    y = red == DT_REDUCTION_NONE ? sq : red == DT_REDUCTION_SUM ? dt_sum(sq, NULL, 0, false) : dt_mean(sq, NULL, 0, false);
    dt_keep(y);
    dt_keep(d);
    dt_scope_end(tok);
    dt_no_grad_end();
    if (!y || !d) {
        dt_error_wrap(dt_last_error_code() < 0 ? dt_last_error_code() : DT_EINTERNAL, "mse_loss");
        dt_tensor_discard(y);
        dt_tensor_discard(d);
        return NULL;
    }
    dt_tensor *in[2] = {a, b};
    if (dt_needs_grad(in, 2)) {
        dt_node *nd = dt_node_new("mse_loss", mse_bw, in, 2);
        dt_node_save(nd, d);
        if (nd) dt_node_f64(nd)[0] = red == DT_REDUCTION_MEAN ? 1.0 / (double)d->numel : 1.0;
        y = dt_node_attach(nd, y);
    }
    dt_tensor_discard(d);
    return y;
}
