/* F.scaled_dot_product_attention, fused: for each batch entry (the dims before the
 * last two: batch, heads, ...) with q (L, E), k (S, E), v (S, Ev),
 *   scores = q k^T * scale            (L, S), one GEMM
 *   P      = softmax over each row, with keys j > i left out when causal
 *   out    = P v                      (L, Ev), one GEMM
 * Only the row maxima and reciprocal row sums (stats, (..., L, 2)) are kept for
 * backward, which recomputes P from them (bit-identical to the forward's) and runs
 *   dv = P^T dout,  dP = dout v^T,  dS = P * (dP - rowsum(dP * P)) * scale,
 *   dq = dS k,      dk = dS^T q.
 * Batch entries are split over the compute pool; each thread holds at most two (L, S)
 * buffers for its current entry, so nothing of size batch * L * S is ever allocated.
 * GEMMs are dt__sgemm (ours or OpenBLAS) / cblas_dgemm (bf16/f16 go through f32 copies). Operands whose
 * last dim has unit stride go to BLAS as they are, with their row stride as leading
 * dimension: the GPT's q, k, v (view + transpose of a split qkv) and the gradient
 * arriving through a transpose cost no copy. No dropout on P, no additive mask, no
 * broadcasting of batch dims (torch's sdpa has them; the GPT needs none). */
#include "autograd/ag_internal.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>

#include "tensor/vmath.h"

/* A (rows, cols) matrix per batch entry: element (r, c) of entry e at
 * p + (boff(e) + r * ld + c) * esize, boff from the batch strides bs. */
typedef struct {
    const char *p;
    int64_t ld;
    int64_t bs[DT_MAX_DIMS];
} operand;

typedef struct {
    int nb;                        /* batch dims */
    int64_t bshape[DT_MAX_DIMS];
    int64_t batch, L, S, E, Ev;
    double scale;
    bool causal, f64;
    operand q, k, v, dout;         /* dout: backward only */
    char *out;                     /* forward: (batch, L, Ev) contiguous */
    char *stats;                   /* (batch, L, 2): row max, 1 / row sum */
    char *dq, *dk, *dv;            /* backward: contiguous (batch, L|S, E|Ev) or NULL */
    atomic_int rc;
} sdpa_args;

static int64_t boff(const sdpa_args *a, const operand *o, int64_t e)
{
    int64_t off = 0;
    for (int d = a->nb - 1; d >= 0; d--) {
        off += (e % a->bshape[d]) * o->bs[d];
        e /= a->bshape[d];
    }
    return off;
}

/* Row-major C (m, n) = alpha op(A) op(B) + beta C; op(A) (m, k), op(B) (k, n). */
static void gemm(bool f64, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const void *A, int64_t lda,
                 const void *B, int64_t ldb, double beta, void *C, int64_t ldc)
{
    if (m == 0 || n == 0) return;
    if (k == 0) {
        for (int64_t i = 0; i < m; i++) {
            if (f64) memset((double *)C + i * ldc, 0, (size_t)n * sizeof(double));
            else memset((float *)C + i * ldc, 0, (size_t)n * sizeof(float));
        }
        return;
    }
    CBLAS_TRANSPOSE t1 = ta ? CblasTrans : CblasNoTrans, t2 = tb ? CblasTrans : CblasNoTrans;
    if (f64)
        cblas_dgemm(CblasRowMajor, t1, t2, (int)m, (int)n, (int)k, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
    else
        dt__sgemm(ta, tb, m, n, k, (float)alpha, A, lda, B, ldb, (float)beta, C, ldc);
}

/* Row i of an (L, S) score matrix keeps keys 0..len(i)-1. */
static int64_t row_len(const sdpa_args *a, int64_t i) { return a->causal && i + 1 < a->S ? i + 1 : a->S; }

/* Causal attention computes only what the mask keeps, in blocks of BLK query rows (a
 * block's rows use the keys up to its last row's) and BLK key columns (a key block is
 * used by the rows from its first key on): about 5/8 of the (L, S) products at
 * L = S = 128. What is left out are products with P = 0 (or scores softmax never
 * reads), which add +0 to each sum: the same bits as the full products. */
enum { BLK = 32 };

/* Keys the query rows below r1 use. */
static int64_t keys(const sdpa_args *a, int64_t r1) { return a->causal && r1 < a->S ? r1 : a->S; }

/* Row i's elementwise passes run over whole 16-lane vectors: its len rounded up to 16
 * where the GEMMs computed that many columns of its block (BLK is a multiple of 16),
 * else len. The extra columns are masked ones, overwritten with 0 after; row sums and
 * maxima still cover len alone. */
static int64_t vec_len(const sdpa_args *a, int64_t i)
{
    int64_t n = row_len(a, i), v = (n + 15) / 16 * 16, r1 = (i / BLK + 1) * BLK;
    return v <= keys(a, r1 < a->L ? r1 : a->L) ? v : n;
}

/* BODY for J in [0, nv): 16 at a time (a fixed-count loop the compiler turns into
 * one vector per step), then the rest one by one. */
#define VEC16(J, nv, BODY)                                                               \
    {                                                                                    \
        int64_t v16_ = (nv) / 16 * 16;                                                   \
        for (int64_t b_ = 0; b_ < v16_; b_ += 16)                                        \
            for (int64_t J = b_; J < b_ + 16; J++) { BODY; }                             \
        for (int64_t J = v16_; J < (nv); J++) { BODY; }                                  \
    }

#define SDPA_ROWS(T, EXP)                                                                \
    /* Scores to probabilities in place; st gets (max, 1 / sum) per row. */              \
    DT__KERNEL static void softmax_rows_##T(const sdpa_args *a, T *s, T *st)             \
    {                                                                                    \
        for (int64_t i = 0; i < a->L; i++) {                                             \
            T *r = s + i * a->S;                                                         \
            int64_t n = row_len(a, i), nv = vec_len(a, i);                               \
            T m = n ? dt__lanemax_##T(r, n) : 0, sum = 0;                                \
            VEC16(j, nv, r[j] = EXP(r[j] - m))                                           \
            sum = dt__lanesum_##T(r, n);                                                 \
            T inv = n ? (T)1 / sum : 0;                                                  \
            VEC16(j, nv, r[j] *= inv)                                                    \
            memset(r + n, 0, (size_t)(a->S - n) * sizeof(T));                            \
            st[2 * i] = m;                                                               \
            st[2 * i + 1] = inv;                                                         \
        }                                                                                \
    }                                                                                    \
    /* The forward's probabilities again, from the scores and the saved stats. */        \
    DT__KERNEL static void recompute_rows_##T(const sdpa_args *a, T *s, const T *st)     \
    {                                                                                    \
        for (int64_t i = 0; i < a->L; i++) {                                             \
            T *r = s + i * a->S;                                                         \
            int64_t n = row_len(a, i), nv = vec_len(a, i);                               \
            T m = st[2 * i], inv = st[2 * i + 1];                                        \
            VEC16(j, nv, r[j] = EXP(r[j] - m) * inv)                                     \
            memset(r + n, 0, (size_t)(a->S - n) * sizeof(T));                            \
        }                                                                                \
    }                                                                                    \
    /* dP to dS in place: P * (dP - rowsum(dP * P)) * scale. */                          \
    DT__KERNEL static void dscores_rows_##T(const sdpa_args *a, const T *p, T *dp)       \
    {                                                                                    \
        T sc = (T)a->scale;                                                              \
        for (int64_t i = 0; i < a->L; i++) {                                             \
            const T *pr = p + i * a->S;                                                  \
            T *dr = dp + i * a->S;                                                       \
            int64_t n = row_len(a, i), nv = vec_len(a, i);                               \
            T dot = dt__lanedot_##T(pr, dr, n);                                          \
            VEC16(j, nv, dr[j] = pr[j] * (dr[j] - dot) * sc)                             \
            memset(dr + n, 0, (size_t)(a->S - n) * sizeof(T));                           \
        }                                                                                \
    }
SDPA_ROWS(float, dt__vexpf_fast)
SDPA_ROWS(double, exp)

/* c (L, S) = alpha x y^T for x (L, kd) and y (S, kd), row strides ldx, ldy: the scores
 * q k^T and dP = dout v^T, in the columns the rows' softmax reads. */
static void rows_by_keys(const sdpa_args *a, const char *x, int64_t ldx, const char *y, int64_t ldy, int64_t kd,
                         double alpha, char *c)
{
    size_t es = a->f64 ? 8 : 4;
    for (int64_t r0 = 0; r0 < a->L; r0 += BLK) {
        int64_t r1 = r0 + BLK < a->L ? r0 + BLK : a->L;
        gemm(a->f64, false, true, r1 - r0, keys(a, r1), kd, alpha, x + r0 * ldx * (int64_t)es, ldx, y, ldy, 0,
             c + r0 * a->S * (int64_t)es, a->S);
    }
}

/* out (L, n) = m x for m (L, S), zero where the mask is, and x (S, n) with row stride
 * ldx: P v and dS k, each row block over the keys it uses. */
static void rows_times(const sdpa_args *a, const char *m, const char *x, int64_t ldx, int64_t n, char *out)
{
    size_t es = a->f64 ? 8 : 4;
    for (int64_t r0 = 0; r0 < a->L; r0 += BLK) {
        int64_t r1 = r0 + BLK < a->L ? r0 + BLK : a->L;
        gemm(a->f64, false, false, r1 - r0, n, keys(a, r1), 1, m + r0 * a->S * (int64_t)es, a->S, x, ldx, 0,
             out + r0 * n * (int64_t)es, n);
    }
}

/* out (S, n) = m^T x for m (L, S), zero where the mask is, and x (L, n) with row stride
 * ldx: P^T dout and dS^T q, key block c0.. over the rows from c0 on (none past L: zeros). */
static void keys_t_times(const sdpa_args *a, const char *m, const char *x, int64_t ldx, int64_t n, char *out)
{
    size_t es = a->f64 ? 8 : 4;
    int64_t step = a->causal ? BLK : a->S;
    for (int64_t c0 = 0; c0 < a->S; c0 += step) {
        int64_t c1 = c0 + step < a->S ? c0 + step : a->S, i0 = a->causal ? (c0 < a->L ? c0 : a->L) : 0;
        gemm(a->f64, true, false, c1 - c0, n, a->L - i0, 1, m + (i0 * a->S + c0) * (int64_t)es, a->S,
             x + i0 * ldx * (int64_t)es, ldx, 0, out + c0 * n * (int64_t)es, n);
    }
}

static void fwd_entries(void *arg, int64_t e0, int64_t e1, int tid)
{
    (void)tid;
    sdpa_args *a = arg;
    size_t es = a->f64 ? 8 : 4;
    char *s = dt_alloc((size_t)(a->L * a->S) * es + 64, DT_MEM_ACT);
    if (!s) { atomic_store(&a->rc, DT_ENOMEM); return; }
    for (int64_t e = e0; e < e1; e++) {
        const char *q = a->q.p + boff(a, &a->q, e) * (int64_t)es, *k = a->k.p + boff(a, &a->k, e) * (int64_t)es;
        const char *v = a->v.p + boff(a, &a->v, e) * (int64_t)es;
        char *st = a->stats + e * a->L * 2 * (int64_t)es, *out = a->out + e * a->L * a->Ev * (int64_t)es;
        rows_by_keys(a, q, a->q.ld, k, a->k.ld, a->E, a->scale, s);
        if (a->f64) softmax_rows_double(a, (double *)s, (double *)st);
        else softmax_rows_float(a, (float *)s, (float *)st);
        rows_times(a, s, v, a->v.ld, a->Ev, out);   /* P v */
    }
    dt_free(s);
}

static void bwd_entries(void *arg, int64_t e0, int64_t e1, int tid)
{
    (void)tid;
    sdpa_args *a = arg;
    size_t es = a->f64 ? 8 : 4;
    int64_t ls = a->L * a->S;
    char *p = dt_alloc((size_t)(2 * ls) * es + 64, DT_MEM_ACT);
    if (!p) { atomic_store(&a->rc, DT_ENOMEM); return; }
    char *dp = p + ls * (int64_t)es;
    for (int64_t e = e0; e < e1; e++) {
        const char *q = a->q.p + boff(a, &a->q, e) * (int64_t)es, *k = a->k.p + boff(a, &a->k, e) * (int64_t)es;
        const char *v = a->v.p + boff(a, &a->v, e) * (int64_t)es, *g = a->dout.p + boff(a, &a->dout, e) * (int64_t)es;
        const char *st = a->stats + e * a->L * 2 * (int64_t)es;
        rows_by_keys(a, q, a->q.ld, k, a->k.ld, a->E, a->scale, p);
        if (a->f64) recompute_rows_double(a, (double *)p, (const double *)st);
        else recompute_rows_float(a, (float *)p, (const float *)st);
        if (a->dv) keys_t_times(a, p, g, a->dout.ld, a->Ev, a->dv + e * a->S * a->Ev * (int64_t)es);  /* P^T dout */
        if (!a->dq && !a->dk) continue;
        rows_by_keys(a, g, a->dout.ld, v, a->v.ld, a->Ev, 1, dp);   /* dP = dout v^T */
        if (a->f64) dscores_rows_double(a, (const double *)p, (double *)dp);
        else dscores_rows_float(a, (const float *)p, (float *)dp);
        if (a->dq) rows_times(a, dp, k, a->k.ld, a->E, a->dq + e * a->L * a->E * (int64_t)es);  /* dS k */
        if (a->dk) keys_t_times(a, dp, q, a->q.ld, a->E, a->dk + e * a->S * a->E * (int64_t)es);  /* dS^T q */
    }
    dt_free(p);
}

/* t as a BLAS operand in dtype ct: t itself when its last dim has unit stride and its
 * rows do not overlap, else a contiguous copy (*hold, released by the caller). */
static int prep(const dt_tensor *t, dt_dtype ct, int nb, operand *o, dt_tensor **hold)
{
    int nd = t->ndim;
    int64_t rows = t->shape[nd - 2], cols = t->shape[nd - 1], w = cols > 1 ? cols : 1;
    const dt_tensor *u = t;
    *hold = NULL;
    if (t->dtype != ct || (cols > 1 && t->strides[nd - 1] != 1) || (rows > 1 && t->strides[nd - 2] < w)) {
        if (!(*hold = dt__cast(t, ct))) return dt_last_error_code();
        u = *hold;
    }
    o->p = dt__ptr(u);
    o->ld = rows > 1 ? u->strides[nd - 2] : w;
    for (int d = 0; d < nb; d++) o->bs[d] = u->strides[d];
    if (o->ld > INT_MAX) return dt_set_error(DT_EUNSUPPORTED, "sdpa: a row stride above 2^31");
    return 0;
}

static dt_dtype ctype(dt_dtype t) { return t == DT_F64 ? DT_F64 : DT_F32; }

/* Geometry of (q, k, v) into a; 0 or DT_ESHAPE / DT_EUNSUPPORTED. */
static int geometry(const dt_tensor *q, const dt_tensor *k, const dt_tensor *v, bool causal, double scale, sdpa_args *a)
{
    int nd = q->ndim;
    char b0[96], b1[96], b2[96];
    if (nd < 2 || k->ndim != nd || v->ndim != nd)
        return dt_set_error(DT_ESHAPE, "sdpa: q %s, k %s, v %s: need (..., L, E), (..., S, E), (..., S, Ev) with the same dims",
                            dt_tensor_describe(q, b0, sizeof b0), dt_tensor_describe(k, b1, sizeof b1), dt_tensor_describe(v, b2, sizeof b2));
    bool ok = k->shape[nd - 1] == q->shape[nd - 1] && v->shape[nd - 2] == k->shape[nd - 2];
    for (int d = 0; ok && d < nd - 2; d++) ok = q->shape[d] == k->shape[d] && q->shape[d] == v->shape[d];
    if (!ok)
        return dt_set_error(DT_ESHAPE, "sdpa: q %s, k %s, v %s: need (..., L, E), (..., S, E), (..., S, Ev) with equal batch dims",
                            dt_tensor_describe(q, b0, sizeof b0), dt_tensor_describe(k, b1, sizeof b1), dt_tensor_describe(v, b2, sizeof b2));
    memset(a, 0, sizeof *a);
    a->nb = nd - 2;
    a->batch = 1;
    for (int d = 0; d < a->nb; d++) { a->bshape[d] = q->shape[d]; a->batch *= q->shape[d]; }
    a->L = q->shape[nd - 2];
    a->S = k->shape[nd - 2];
    a->E = q->shape[nd - 1];
    a->Ev = v->shape[nd - 1];
    if (a->L > INT_MAX || a->S > INT_MAX || a->E > INT_MAX || a->Ev > INT_MAX)
        return dt_set_error(DT_EUNSUPPORTED, "sdpa: a size above 2^31");
    a->causal = causal;
    a->scale = scale != 0 ? scale : (a->E > 0 ? 1.0 / sqrt((double)a->E) : 1.0);
    a->f64 = q->dtype == DT_F64;
    atomic_init(&a->rc, 0);
    return 0;
}

static dt_tensor *cast_back(dt_tensor *r, dt_dtype dtype)
{
    if (!r || r->dtype == dtype) return r;
    dt_tensor *c = dt__cast(r, dtype);
    dt_tensor_release(r);
    return c;
}

static int sdpa_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt_tensor *q = dt_node_saved(n, 0), *k = dt_node_saved(n, 1), *v = dt_node_saved(n, 2), *stats = dt_node_saved(n, 3);
    dt_dtype dt = dt_node_input_dtype(n, 0), ct = ctype(dt);
    sdpa_args a;
    int rc = geometry(q, k, v, dt_node_i64(n)[0] != 0, dt_node_f64(n)[0], &a);
    if (rc < 0) return rc;
    dt_tensor *hold[4] = {NULL}, *grads[3] = {NULL};
    if ((rc = prep(q, ct, a.nb, &a.q, &hold[0])) < 0 || (rc = prep(k, ct, a.nb, &a.k, &hold[1])) < 0 ||
        (rc = prep(v, ct, a.nb, &a.v, &hold[2])) < 0 || (rc = prep(g, ct, a.nb, &a.dout, &hold[3])) < 0)
        goto done;
    a.stats = dt__ptr(stats);
    dt_tensor *src[3] = {q, k, v};
    char **dst[3] = {&a.dq, &a.dk, &a.dv};
    for (int i = 0; i < 3; i++) {
        if (!dt_node_needs_input_grad(n, i)) continue;
        if (!(grads[i] = dt__empty(ct, src[i]->ndim, src[i]->shape))) { rc = dt_last_error_code(); goto done; }
        *dst[i] = dt__ptr(grads[i]);
        if (grads[i]->numel && (a.L == 0 || a.S == 0)) memset(*dst[i], 0, (size_t)grads[i]->numel * dt_dtype_size(ct));
    }
    if (a.L && a.S) {
        dt__parallel_for(a.batch, 1, bwd_entries, &a);
        if ((rc = atomic_load(&a.rc)) < 0) { dt_set_error(rc, "sdpa backward: scratch for one (%lld, %lld) entry", (long long)a.L, (long long)a.S); goto done; }
    }
    for (int i = 0; i < 3; i++) {
        if (!grads[i]) continue;
        gi[i] = dt__adopt(cast_back(grads[i], dt));
        grads[i] = NULL;
        if (!gi[i]) { rc = dt_last_error_code() < 0 ? dt_last_error_code() : DT_ENOMEM; goto done; }
    }
done:
    for (int i = 0; i < 4; i++) dt_tensor_release(hold[i]);
    for (int i = 0; i < 3; i++) dt_tensor_release(grads[i]);
    return rc;
}

dt_tensor *dt_sdpa(dt_tensor *q, dt_tensor *k, dt_tensor *v, bool causal, double scale)
{
    if (!q || !k || !v) { dt__null_arg("sdpa"); return NULL; }
    dt_dtype dt = (dt_dtype)q->dtype, ct = ctype(dt);
    if (k->dtype != dt || v->dtype != dt || !dt_dtype_is_float(dt)) {
        dt_set_error(DT_EDTYPE, "sdpa of %s, %s, %s: one floating dtype", dt_dtype_name(dt), dt_dtype_name((dt_dtype)k->dtype),
                     dt_dtype_name((dt_dtype)v->dtype));
        return NULL;
    }
    if (!isfinite(scale)) { dt_set_error(DT_EINVAL, "sdpa: scale %g", scale); return NULL; }
    sdpa_args a;
    if (geometry(q, k, v, causal, scale, &a) < 0) return NULL;
    dt_tensor *hold[3] = {NULL}, *out = NULL, *stats = NULL;
    int64_t sh[DT_MAX_DIMS];
    memcpy(sh, q->shape, sizeof sh);
    if (prep(q, ct, a.nb, &a.q, &hold[0]) < 0 || prep(k, ct, a.nb, &a.k, &hold[1]) < 0 || prep(v, ct, a.nb, &a.v, &hold[2]) < 0)
        goto done;
    sh[a.nb + 1] = a.Ev;
    if (!(out = dt__empty(ct, q->ndim, sh))) goto done;
    sh[a.nb + 1] = 2;
    if (!(stats = dt__empty(ct, q->ndim, sh))) {
        dt_tensor_release(out);
        out = NULL;
        goto done;
    }
    a.out = dt__ptr(out);
    a.stats = dt__ptr(stats);
    if (a.L && a.S) {
        dt__parallel_for(a.batch, 1, fwd_entries, &a);
        int rc = atomic_load(&a.rc);
        if (rc < 0) {
            dt_set_error(rc, "sdpa: scratch for one (%lld, %lld) entry", (long long)a.L, (long long)a.S);
            dt_tensor_release(out);
            out = NULL;
            goto done;
        }
    } else {
        /* no queries, or no keys (each output row a sum over nothing) */
        if (out->numel) memset(dt__ptr(out), 0, (size_t)out->numel * dt_dtype_size(ct));
        if (stats->numel) memset(dt__ptr(stats), 0, (size_t)stats->numel * dt_dtype_size(ct));
    }
    out = cast_back(out, dt);
done:;
    dt_tensor *in[3] = {q, k, v};
    if (!out) {
        dt_error_wrap(dt_last_error_code() < 0 ? dt_last_error_code() : DT_ENOMEM, "sdpa");
    } else if ((out = dt__adopt(out)) && dt_needs_grad(in, 3)) {
        dt_node *nd = dt_node_new("sdpa", sdpa_bw, in, 3);
        for (int i = 0; i < 3; i++) dt_node_save(nd, in[i]);
        dt_node_save(nd, stats);
        if (nd) {
            dt_node_f64(nd)[0] = a.scale;
            dt_node_i64(nd)[0] = causal;
        }
        out = dt_node_attach(nd, out);
    }
    for (int i = 0; i < 3; i++) dt_tensor_release(hold[i]);
    dt_tensor_release(stats);
    return out;
}
