/* F.layer_norm: a fused forward that normalises each row (the last nnorm dims, D
 * elements) and keeps its mean and rstd = 1 / sqrt(var + eps) (biased variance), and a
 * fused backward for x, w and b from those two numbers per row. Rows run in parallel
 * over the compute pool. f32 and f64 compute natively (row sums accumulate in double,
 * in tensor/vmath.h's fixed 16-lane order, which vectorises);
 * bf16/f16 go through f32. Does not do other norms (batch, group, RMS).
 *
 * Backward, per row with xhat = (x - mean) * rstd and gw = g * w (g without w):
 *   dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat))
 *   dw = sum over rows of g * xhat,   db = sum over rows of g
 * dw and db are summed per block of BLOCK rows (fixed, so the result does not depend
 * on the thread count), then the blocks are added in order. */
#include "autograd/ag_internal.h"

#include <math.h>

#include "tensor/vmath.h"

#define BLOCK 32 /* rows per partial sum of dw, db */

static dt_dtype ctype(dt_dtype t) { return t == DT_F64 ? DT_F64 : DT_F32; }

typedef struct {
    int64_t rows, d;
    double eps;
    const void *x, *w, *b, *g; /* x, g (rows, d); w, b (d) or NULL */
    void *y, *mean, *rstd;     /* y (rows, d); mean, rstd (rows) */
    void *dx;                  /* (rows, d) or NULL */
    void *pw, *pb;             /* partial dw, db: (nblocks, d) or NULL */
} ln_args;

#define LN_KERNELS(T)                                                                    \
    DT__KERNEL static void fwd_rows_##T(void *arg, int64_t r0, int64_t r1, int tid)      \
    {                                                                                    \
        (void)tid;                                                                       \
        const ln_args *a = arg;                                                          \
        int64_t d = a->d;                                                                \
        const T *w = a->w, *b = a->b;                                                    \
        for (int64_t r = r0; r < r1; r++) {                                              \
            const T *x = (const T *)a->x + r * d;                                        \
            T *y = (T *)a->y + r * d;                                                    \
            double s, v;                                                                 \
            DT__LANE_SUM(double, s, d, j, (double)x[j]);                                 \
            double m = d ? s / (double)d : 0;                                            \
            DT__LANE_SUM(double, v, d, j, ((double)x[j] - m) * ((double)x[j] - m));      \
            double rs = 1.0 / sqrt((d ? v / (double)d : 0) + a->eps);                    \
            T tm = (T)m, tr = (T)rs;                                                     \
            ((T *)a->mean)[r] = tm;                                                      \
            ((T *)a->rstd)[r] = tr;                                                      \
            for (int64_t j = 0; j < d; j++) {                                            \
                T h = (x[j] - tm) * tr;                                                  \
                if (w) h *= w[j];                                                        \
                if (b) h += b[j];                                                        \
                y[j] = h;                                                                \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* One range of whole blocks: dx rows and the blocks' partial dw, db. */             \
    DT__KERNEL static void bwd_blocks_##T(void *arg, int64_t k0, int64_t k1, int tid)    \
    {                                                                                    \
        (void)tid;                                                                       \
        const ln_args *a = arg;                                                          \
        int64_t d = a->d;                                                                \
        const T *w = a->w, *mean = a->mean, *rstd = a->rstd;                             \
        for (int64_t k = k0; k < k1; k++) {                                              \
            T *pw = a->pw ? (T *)a->pw + k * d : NULL, *pb = a->pb ? (T *)a->pb + k * d : NULL; \
            if (pw) for (int64_t j = 0; j < d; j++) pw[j] = 0;                           \
            if (pb) for (int64_t j = 0; j < d; j++) pb[j] = 0;                           \
            int64_t rend = (k + 1) * BLOCK < a->rows ? (k + 1) * BLOCK : a->rows;         \
            for (int64_t r = k * BLOCK; r < rend; r++) {                                 \
                const T *x = (const T *)a->x + r * d, *g = (const T *)a->g + r * d;      \
                T m = mean[r], rs = rstd[r];                                             \
                if (pw) for (int64_t j = 0; j < d; j++) pw[j] += g[j] * ((x[j] - m) * rs); \
                if (pb) for (int64_t j = 0; j < d; j++) pb[j] += g[j];                   \
                if (!a->dx) continue;                                                    \
                double s1, s2;                                                           \
                DT__LANE_SUM(double, s1, d, j, (double)(w ? g[j] * w[j] : g[j]));        \
                DT__LANE_SUM(double, s2, d, j, (double)(w ? g[j] * w[j] : g[j]) * ((x[j] - m) * rs)); \
                T c1 = (T)(s1 / (double)d), c2 = (T)(s2 / (double)d);                    \
                T *dx = (T *)a->dx + r * d;                                              \
                for (int64_t j = 0; j < d; j++) {                                        \
                    T gw = w ? g[j] * w[j] : g[j];                                       \
                    dx[j] = rs * (gw - c1 - ((x[j] - m) * rs) * c2);                     \
                }                                                                        \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* Columns j0..j1 of the block partials, added in block order. */                    \
    static void sum_blocks_##T(void *arg, int64_t j0, int64_t j1, int tid)               \
    {                                                                                    \
        (void)tid;                                                                       \
        const ln_args *a = arg;                                                          \
        int64_t nb = (a->rows + BLOCK - 1) / BLOCK, d = a->d;                            \
        T *parts[2] = {a->pw, a->pb};                                                    \
        for (int p = 0; p < 2; p++) {                                                    \
            if (!parts[p]) continue;                                                     \
            for (int64_t j = j0; j < j1; j++) {                                          \
                T s = 0;                                                                 \
                for (int64_t k = 0; k < nb; k++) s += parts[p][k * d + j];               \
                parts[p][j] = s;                                                         \
            }                                                                            \
        }                                                                                \
    }
LN_KERNELS(float)
LN_KERNELS(double)

/* r cast to dtype (r released), or r itself when it already has that dtype. */
static dt_tensor *cast_back(dt_tensor *r, dt_dtype dtype)
{
    if (!r || r->dtype == dtype) return r;
    dt_tensor *c = dt__cast(r, dtype);
    dt_tensor_release(r);
    return c;
}

static int ln_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    bool has_w = dt_node_i64(n)[1] != 0, has_b = dt_node_i64(n)[2] != 0;
    int s = 0;
    dt_tensor *x0 = dt_node_saved(n, s++), *w0 = has_w ? dt_node_saved(n, s++) : NULL;
    dt_tensor *mean = dt_node_saved(n, s++), *rstd = dt_node_saved(n, s);
    bool nx = dt_node_needs_input_grad(n, 0), nw = has_w && dt_node_needs_input_grad(n, 1);
    bool nb = has_b && dt_node_needs_input_grad(n, has_w ? 2 : 1);
    dt_dtype dt = dt_node_input_dtype(n, 0), ct = ctype(dt);
    int64_t d = dt_node_i64(n)[0], rows = d ? x0->numel / d : 0;
    int64_t nblk = (rows + BLOCK - 1) / BLOCK;
    int rc = DT_ENOMEM;
    dt_tensor *x = dt__contig_as(x0, ct), *gc = x ? dt__contig_as(g, ct) : NULL;
    dt_tensor *w = gc && w0 ? dt__contig_as(w0, ct) : NULL;
    dt_tensor *dx = NULL, *pw = NULL, *pb = NULL;
    if (!gc || (w0 && !w)) goto fail;
    if (nx && !(dx = dt__empty(ct, x0->ndim, x0->shape))) goto fail;
    int64_t psh[2] = {nblk > 0 ? nblk : 1, d};
    if (nw && !(pw = dt__full(ct, 2, psh, 0))) goto fail;
    if (nb && !(pb = dt__full(ct, 2, psh, 0))) goto fail;
    ln_args a = {.rows = rows, .d = d, .x = dt__ptr(x), .w = w ? dt__ptr(w) : NULL, .g = dt__ptr(gc),
                 .mean = dt__ptr(mean), .rstd = dt__ptr(rstd), .dx = dx ? dt__ptr(dx) : NULL,
                 .pw = pw ? dt__ptr(pw) : NULL, .pb = pb ? dt__ptr(pb) : NULL};
    int64_t grain = (16384 / BLOCK) / (d > 0 ? d : 1) + 1;
    if (rows > 0 && d > 0) {
        dt__parallel_for(nblk, grain, ct == DT_F32 ? bwd_blocks_float : bwd_blocks_double, &a);
        if (pw || pb) dt__parallel_for(d, 64, ct == DT_F32 ? sum_blocks_float : sum_blocks_double, &a);
    }
    int nd = (int)dt_node_i64(n)[3];
    const int64_t *wshape = x0->shape + (x0->ndim - nd);
    int64_t wst[DT_MAX_DIMS];
    dt__contig_strides(nd, wshape, wst);
    rc = 0;
    if (dx) { gi[0] = dt__adopt(cast_back(dx, dt)); dx = NULL; if (!gi[0]) rc = dt_last_error_code(); }
    dt_tensor *parts[2] = {pw, pb};
    int slot[2] = {1, has_w ? 2 : 1};
    for (int p = 0; p < 2 && rc == 0; p++) {
        if (!parts[p]) continue;
        /* block 0's row holds the sums */
        dt_tensor *row = dt__alias(parts[p], nd, wshape, wst, parts[p]->offset);
        dt_tensor *c = row ? dt__cast(row, dt) : NULL;
        dt_tensor_release(row);
        if (!(gi[slot[p]] = dt__adopt(c))) rc = dt_last_error_code() < 0 ? dt_last_error_code() : DT_ENOMEM;
    }
fail:
    dt_tensor_release(x);
    dt_tensor_release(gc);
    dt_tensor_release(w);
    dt_tensor_release(dx);
    dt_tensor_release(pw);
    dt_tensor_release(pb);
    return rc;
}

static int check_param(const dt_tensor *x, const dt_tensor *p, int nnorm, const char *what)
{
    if (p->dtype != x->dtype)
        return dt_set_error(DT_EDTYPE, "layer_norm: %s is %s, input %s", what, dt_dtype_name((dt_dtype)p->dtype), dt_dtype_name((dt_dtype)x->dtype));
    bool ok = p->ndim == nnorm;
    for (int i = 0; ok && i < nnorm; i++) ok = p->shape[i] == x->shape[x->ndim - nnorm + i];
    if (!ok) {
        char a[96], b[96];
        return dt_set_error(DT_ESHAPE, "layer_norm: %s %s for input %s normalised over its last %d dims", what,
                            dt_tensor_describe(p, a, sizeof a), dt_tensor_describe(x, b, sizeof b), nnorm);
    }
    return 0;
}

dt_tensor *dt_layer_norm(dt_tensor *x, int nnorm, dt_tensor *w, dt_tensor *b, double eps)
{
    if (!x) { dt__null_arg("layer_norm"); return NULL; }
    dt_dtype dt = (dt_dtype)x->dtype, ct = ctype(dt);
    if (!dt_dtype_is_float(dt)) { dt_set_error(DT_EDTYPE, "layer_norm of %s", dt_dtype_name(dt)); return NULL; }
    if (nnorm < 1 || nnorm > x->ndim) { dt_set_error(DT_EINVAL, "layer_norm: %d normalised dims of a %d-dim input", nnorm, x->ndim); return NULL; }
    if (!(eps >= 0)) { dt_set_error(DT_EINVAL, "layer_norm: eps %g", eps); return NULL; }
    if ((w && check_param(x, w, nnorm, "weight") < 0) || (b && check_param(x, b, nnorm, "bias") < 0)) return NULL;
    int64_t d = 1;
    for (int i = x->ndim - nnorm; i < x->ndim; i++) d *= x->shape[i];
    int64_t rows = d ? x->numel / d : 0;
    if (!d) for (int i = 0; i < x->ndim - nnorm; i++) rows *= x->shape[i];
    dt_tensor *xc = dt__contig_as(x, ct), *wc = xc && w ? dt__contig_as(w, ct) : NULL, *bc = xc && b ? dt__contig_as(b, ct) : NULL;
    dt_tensor *y = NULL, *mean = NULL, *rstd = NULL, *out = NULL;
    int nst = x->ndim - nnorm;
    if (xc && (!w || wc) && (!b || bc) && (y = dt__empty(ct, x->ndim, x->shape)) &&
        (mean = dt__empty(ct, nst, x->shape)) && (rstd = dt__empty(ct, nst, x->shape))) {
        ln_args a = {.rows = rows, .d = d, .eps = eps, .x = dt__ptr(xc), .w = wc ? dt__ptr(wc) : NULL,
                     .b = bc ? dt__ptr(bc) : NULL, .y = dt__ptr(y), .mean = dt__ptr(mean), .rstd = dt__ptr(rstd)};
        if (rows > 0) dt__parallel_for(rows, 16384 / (d > 0 ? d : 1) + 1, ct == DT_F32 ? fwd_rows_float : fwd_rows_double, &a);
        out = cast_back(y, dt);
        y = NULL;
    }
    dt_tensor *in[3] = {x, w, b};
    int nin = 1;
    if (w) in[nin++] = w;
    if (b) in[nin++] = b;
    if (!out) {
        dt_error_wrap(dt_last_error_code() < 0 ? dt_last_error_code() : DT_EINTERNAL, "layer_norm");
    } else if ((out = dt__adopt(out)) && dt_needs_grad(in, nin)) {
        /* saved: x (in the computed dtype), w (when given), mean, rstd */
        dt_node *nd = dt_node_new("layer_norm", ln_bw, in, nin);
        dt_node_save(nd, xc);
        if (wc) dt_node_save(nd, wc);
        dt_node_save(nd, mean);
        dt_node_save(nd, rstd);
        if (nd) memcpy(dt_node_i64(nd), (int64_t[4]){d, w != NULL, b != NULL, nnorm}, 4 * sizeof(int64_t));
        out = dt_node_attach(nd, out);
    }
    dt_tensor_release(xc);
    dt_tensor_release(wc);
    dt_tensor_release(bc);
    dt_tensor_release(y);
    dt_tensor_release(mean);
    dt_tensor_release(rstd);
    return out;
}
