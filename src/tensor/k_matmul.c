/* Matrix products: dt__sgemm for f32 (k_sgemm.c: our AVX-512 kernel or OpenBLAS),
 * cblas_dgemm for f64 (bf16 and f16 go through f32). A strided operand whose last two dims have unit stride in one of
 * them is passed as it is, with a transpose flag and its leading dimension, so a
 * transposed view costs no copy. Batched products fold into one GEMM when the right
 * operand has no batch dims and the left one's rows are evenly strided (x @ W over
 * (B, T, C)); otherwise one GEMM per batch entry. */
#include "tensor/tensor_internal.h"

#include <cblas.h>

typedef struct {
    bool trans;       /* stored as the transpose (column-major view of the matrix) */
    int64_t ld;       /* leading dimension for BLAS */
} layout;

/* How a (rows, cols) matrix with strides (rs, cs) goes to row-major BLAS, if at all. */
static bool mat_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, layout *l)
{
    if ((cs == 1 || cols <= 1) && (rs >= cols || rows <= 1) && rs >= 1) {
        l->trans = false;
        l->ld = rs > cols ? rs : (cols > 1 ? cols : 1);
        if (rows <= 1) l->ld = cols > 1 ? cols : 1;
        return true;
    }
    if ((rs == 1 || rows <= 1) && (cs >= rows || cols <= 1) && cs >= 1) {
        l->trans = true;
        l->ld = cs > rows ? cs : (rows > 1 ? rows : 1);
        if (cols <= 1) l->ld = rows > 1 ? rows : 1;
        return true;
    }
    return false;
}

static void gemm(dt_dtype dt, const layout *la, const layout *lb, int64_t m, int64_t n, int64_t k,
                 const char *a, const char *b, char *c, int64_t ldc, double beta)
{
    CBLAS_TRANSPOSE ta = la->trans ? CblasTrans : CblasNoTrans, tb = lb->trans ? CblasTrans : CblasNoTrans;
    if (dt == DT_F32)
        dt__sgemm(la->trans, lb->trans, m, n, k, 1.0f, (const float *)a, la->ld, (const float *)b, lb->ld,
                  (float)beta, (float *)c, ldc);
    else
        cblas_dgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, 1.0, (const double *)a, (int)la->ld,
                    (const double *)b, (int)lb->ld, beta, (double *)c, (int)ldc);
}

/* One GEMM per batch entry p in [begin, end): C[p] = A[p] B[p], A[p] at batch offset
 * sum_d i_d sa[d] (elements) for p's index (i_0..) in bshape, likewise B. */
typedef struct {
    dt_dtype dt;
    layout la, lb;
    int64_t m, n, k;
    int nbat;
    int64_t bshape[DT_MAX_DIMS], sa[DT_MAX_DIMS], sb[DT_MAX_DIMS];
    const char *a, *b;
    char *out;
} batch_job;

static void batch_range(void *arg, int64_t begin, int64_t end, int tid)
{
    const batch_job *j = arg;
    int64_t es = (int64_t)dt_dtype_size(j->dt);
    (void)tid;
    for (int64_t p = begin; p < end; p++) {
        int64_t r = p, oa = 0, ob = 0;
        for (int d = j->nbat - 1; d >= 0; d--) {
            int64_t i = r % j->bshape[d];
            r /= j->bshape[d];
            oa += i * j->sa[d];
            ob += i * j->sb[d];
        }
        gemm(j->dt, &j->la, &j->lb, j->m, j->n, j->k, j->a + oa * es, j->b + ob * es, j->out + p * j->m * j->n * es,
             j->n, 0);
    }
}

/* t itself (retained) when its last two dims suit BLAS, else a contiguous copy. */
static dt_tensor *blas_ready(const dt_tensor *t, layout *l)
{
    int nd = t->ndim;
    if (mat_layout(t->shape[nd - 2], t->shape[nd - 1], t->strides[nd - 2], t->strides[nd - 1], l))
        return dt_tensor_retain((dt_tensor *)t);
    dt_tensor *c = dt__cast(t, (dt_dtype)t->dtype);
    if (c) mat_layout(c->shape[nd - 2], c->shape[nd - 1], c->strides[nd - 2], c->strides[nd - 1], l);
    return c;
}

static bool too_big(int64_t m, int64_t n, int64_t k)
{
    if (m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX) return false;
    dt_set_error(DT_EUNSUPPORTED, "matmul: a dimension above 2^31 (%lld x %lld x %lld)", (long long)m, (long long)n, (long long)k);
    return true;
}

/* Rows of a (its dims 0..nd-2) evenly strided by lda: they fold into one GEMM. */
static bool rows_fold(const dt_tensor *a, int64_t lda)
{
    int64_t expect = lda * a->shape[a->ndim - 2];
    for (int d = a->ndim - 3; d >= 0; d--) {
        if (a->shape[d] == 1) continue;
        if (a->strides[d] != expect) return false;
        expect *= a->shape[d];
    }
    return true;
}

static dt_tensor *matmul_native(const dt_tensor *a0, const dt_tensor *b0)
{
    dt_dtype dt = (dt_dtype)a0->dtype;
    int na = a0->ndim, nb = b0->ndim;
    int64_t m = a0->shape[na - 2], k = a0->shape[na - 1], n = b0->shape[nb - 1];
    if (b0->shape[nb - 2] != k) {
        dt_set_error(DT_ESHAPE, "matmul: (.., %lld, %lld) @ (.., %lld, %lld)", (long long)m, (long long)k, (long long)b0->shape[nb - 2], (long long)n);
        return NULL;
    }
    int nbat;
    int64_t bshape[DT_MAX_DIMS + 2];
    if (dt__broadcast_shape(na - 2, a0->shape, nb - 2, b0->shape, &nbat, bshape) < 0) return NULL;
    if (nbat + 2 > DT_MAX_DIMS) { dt_set_error(DT_EINVAL, "matmul: result has more than %d dims", DT_MAX_DIMS); return NULL; }
    int64_t batch = 1;
    for (int d = 0; d < nbat; d++) batch *= bshape[d];
    if (too_big(batch * m, n, k)) return NULL;
    bshape[nbat] = m;
    bshape[nbat + 1] = n;
    dt_tensor *out = dt__empty(dt, nbat + 2, bshape);
    if (!out) return NULL;
    if (out->numel == 0) return out;
    if (k == 0) { memset(dt__ptr(out), 0, (size_t)out->numel * dt_dtype_size(dt)); return out; }
    layout la, lb;
    dt_tensor *a = blas_ready(a0, &la), *b = a ? blas_ready(b0, &lb) : NULL;
    if (!b) { dt_tensor_release(a); dt_tensor_release(out); return NULL; }
    bool b_batched = false;
    for (int d = 0; d < nb - 2; d++) b_batched |= b->shape[d] != 1;
    if (!b_batched && !la.trans && rows_fold(a, la.ld)) {
        gemm(dt, &la, &lb, batch * m, n, k, dt__ptr(a), dt__ptr(b), dt__ptr(out), n, 0);
    } else {
        /* Batch strides of a and b under broadcasting to bshape[0..nbat). */
        batch_job j = { dt, la, lb, m, n, k, nbat, {0}, {0}, {0}, dt__ptr(a), dt__ptr(b), dt__ptr(out) };
        for (int d = 0; d < nbat; d++) {
            int da = d - (nbat - (na - 2)), db = d - (nbat - (nb - 2));
            j.sa[d] = da >= 0 && a->shape[da] != 1 ? a->strides[da] : 0;
            j.sb[d] = db >= 0 && b->shape[db] != 1 ? b->strides[db] : 0;
            j.bshape[d] = bshape[d];
        }
        /* Batch entries split over the pool when each GEMM is ours and too small to split
         * itself (attention's per-head products); OpenBLAS is never called from the pool. */
        bool par = dt == DT_F32 && batch >= 2 && m * n * k < ((int64_t)1 << 21) &&
                   batch * m * n * k >= ((int64_t)1 << 21) && dt__sgemm_picks_ours(la.trans, lb.trans, m, n, k);
        if (par) dt__parallel_for(batch, 1, batch_range, &j);
        else batch_range(&j, 0, batch, 0);
    }
    dt_tensor_release(a);
    dt_tensor_release(b);
    return out;
}

/* Run f on f32 copies of bf16/f16 operands and round the result back. */
static dt_tensor *via_f32(dt_tensor *(*f)(const dt_tensor *, const dt_tensor *, const dt_tensor *),
                          const dt_tensor *x, const dt_tensor *y, const dt_tensor *z)
{
    dt_tensor *x2 = dt__cast(x, DT_F32), *y2 = x2 ? dt__cast(y, DT_F32) : NULL;
    dt_tensor *z2 = y2 && z ? dt__cast(z, DT_F32) : NULL;
    dt_tensor *r = y2 && (!z || z2) ? f(x2, y2, z2) : NULL;
    dt_tensor *out = r ? dt__cast(r, (dt_dtype)x->dtype) : NULL;
    dt_tensor_release(x2);
    dt_tensor_release(y2);
    dt_tensor_release(z2);
    dt_tensor_release(r);
    return out;
}

static int check_pair(const dt_tensor *a, const dt_tensor *b, const char *what)
{
    if (a->dtype != b->dtype)
        return dt_set_error(DT_EDTYPE, "%s of %s and %s", what, dt_dtype_name((dt_dtype)a->dtype), dt_dtype_name((dt_dtype)b->dtype));
    if (!dt_dtype_is_float((dt_dtype)a->dtype))
        return dt_set_error(DT_EDTYPE, "%s of %s: floating dtypes only", what, dt_dtype_name((dt_dtype)a->dtype));
    return 0;
}

static dt_tensor *matmul3(const dt_tensor *a, const dt_tensor *b, const dt_tensor *unused)
{
    (void)unused;
    return dt__matmul(a, b);
}

dt_tensor *dt__matmul(const dt_tensor *a, const dt_tensor *b)
{
    if (check_pair(a, b, "matmul") < 0) return NULL;
    if (a->ndim < 2 || b->ndim < 2) { dt_set_error(DT_ESHAPE, "matmul kernel: operands need 2 dims"); return NULL; }
    if (a->dtype == DT_BF16 || a->dtype == DT_F16) return via_f32(matmul3, a, b, NULL);
    return matmul_native(a, b);
}

static dt_tensor *linear_native(const dt_tensor *x, const dt_tensor *w, const dt_tensor *bias)
{
    dt_dtype dt = (dt_dtype)x->dtype;
    int nx = x->ndim;
    int64_t in = x->shape[nx - 1], outf = w->shape[0];
    if (w->ndim != 2 || w->shape[1] != in || (bias && (bias->ndim != 1 || bias->shape[0] != outf))) {
        dt_set_error(DT_ESHAPE, "linear: input (.., %lld), weight %s, bias %s", (long long)in,
                     w->ndim == 2 ? "(out, in) mismatched" : "not 2-D", bias ? "given" : "none");
        return NULL;
    }
    int64_t sh[DT_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[nx - 1] = outf;
    int64_t rows = in ? x->numel / in : 1;
    for (int d = 0; d < nx - 1; d++) if (!in) rows *= x->shape[d];
    if (too_big(rows, outf, in)) return NULL;
    dt_tensor *out = dt__empty(dt, nx, sh);
    if (!out) return NULL;
    if (out->numel == 0) return out;
    /* f32 with a unit-stride bias: the GEMM starts from the bias itself (dt__sgemm_bias);
     * else the bias (or zeros) is copied into out and the GEMM adds to it. */
    bool fused = dt == DT_F32 && bias && (bias->strides[0] == 1 || outf == 1) && in > 0;
    int rc = bias && !fused ? dt__copy(out, bias) : 0;
    if (!bias) memset(dt__ptr(out), 0, (size_t)out->numel * dt_dtype_size(dt));
    if (rc < 0 || in == 0) {
        if (rc < 0) { dt_tensor_release(out); return NULL; }
        return out;
    }
    /* x as (rows, in): needs unit stride on in and evenly strided rows. */
    layout lx, lw;
    dt_tensor *xc = NULL;
    if (x->strides[nx - 1] == 1 || in == 1) {
        int64_t lda = nx >= 2 ? x->strides[nx - 2] : in;
        if (nx >= 2 && x->shape[nx - 2] == 1) lda = in;
        if (lda >= in && (nx < 2 || rows_fold(x, lda))) { xc = dt_tensor_retain((dt_tensor *)x); lx.trans = false; lx.ld = lda > 0 ? lda : 1; }
    }
    if (!xc) {
        xc = dt__cast(x, dt);
        lx.trans = false;
        lx.ld = in;
    }
    dt_tensor *wt = xc ? dt__transpose(w, 0, 1) : NULL;   /* (in, out) */
    dt_tensor *wr = wt ? blas_ready(wt, &lw) : NULL;
    if (wr && fused)
        dt__sgemm_bias(lx.trans, lw.trans, rows, outf, in, (const float *)dt__ptr(xc), lx.ld, (const float *)dt__ptr(wr),
                       lw.ld, (const float *)dt__ptr(bias), (float *)dt__ptr(out), outf);
    else if (wr) gemm(dt, &lx, &lw, rows, outf, in, dt__ptr(xc), dt__ptr(wr), dt__ptr(out), outf, 1.0);
    else { dt_tensor_release(out); out = NULL; }
    dt_tensor_release(xc);
    dt_tensor_release(wt);
    dt_tensor_release(wr);
    return out;
}

dt_tensor *dt__linear(const dt_tensor *x, const dt_tensor *w, const dt_tensor *b)
{
    if (check_pair(x, w, "linear") < 0 || (b && check_pair(x, b, "linear bias") < 0)) return NULL;
    if (x->ndim < 1) { dt_set_error(DT_ESHAPE, "linear: 0-dim input"); return NULL; }
    if (x->dtype == DT_BF16 || x->dtype == DT_F16) return via_f32(dt__linear, x, w, b);
    return linear_native(x, w, b);
}
