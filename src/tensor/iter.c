/* Broadcasting and strided iteration: the one loop nest every elementwise kernel,
 * copy and reduction runs through. The iterator drops size-1 dims, merges dims that
 * are contiguous for every operand, and hands the innermost dim to a row function as
 * (pointers, strides, length), so the typed kernels see long simple loops. Rows are
 * split over the compute pool when asked (and a single long row is cut into pieces).
 * Does not know about dtypes beyond element sizes. */
#include "tensor/tensor_internal.h"

int dt__broadcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout, int64_t *out)
{
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t x = i < n - na ? 1 : sa[i - (n - na)];
        int64_t y = i < n - nb ? 1 : sb[i - (n - nb)];
        if (x != y && x != 1 && y != 1)
            return dt_set_error(DT_ESHAPE, "shapes do not broadcast: size %lld vs %lld in dim %d", (long long)x, (long long)y, i);
        out[i] = x == 1 ? y : x;
    }
    *nout = n;
    return 0;
}

int dt__broadcast_strides(const dt_tensor *t, int ndim, const int64_t *shape, int64_t *strides)
{
    if (t->ndim > ndim) return dt_set_error(DT_ESHAPE, "a %d-dim tensor does not broadcast to %d dims", t->ndim, ndim);
    int lead = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        if (d < lead) { strides[d] = 0; continue; }
        int64_t s = t->shape[d - lead];
        if (s == shape[d]) strides[d] = s == 1 ? 0 : t->strides[d - lead];
        else if (s == 1) strides[d] = 0;
        else return dt_set_error(DT_ESHAPE, "size %lld does not broadcast to %lld in dim %d", (long long)s, (long long)shape[d], d);
    }
    return 0;
}

int dt__iter_init(dt__iter *it, int nops, dt_tensor *const *ops)
{
    const dt_tensor *out = ops[0];
    int64_t st[3][DT_MAX_DIMS];
    for (int k = 0; k < nops; k++) {
        DT_CHECK(dt__broadcast_strides(ops[k], out->ndim, out->shape, st[k]));
        it->data[k] = dt__ptr(ops[k]);
        it->esize[k] = dt_dtype_size((dt_dtype)ops[k]->dtype);
    }
    it->nops = nops;
    /* Keep dims of size > 1, then merge neighbours that are contiguous for all. */
    int n = 0;
    for (int d = 0; d < out->ndim; d++) {
        if (out->shape[d] == 1) continue;
        bool merge = n > 0;
        for (int k = 0; k < nops && merge; k++)
            merge = it->strides[k][n - 1] == st[k][d] * out->shape[d];
        if (merge) {
            it->shape[n - 1] *= out->shape[d];
            for (int k = 0; k < nops; k++) it->strides[k][n - 1] = st[k][d];
        } else {
            it->shape[n] = out->shape[d];
            for (int k = 0; k < nops; k++) it->strides[k][n] = st[k][d];
            n++;
        }
    }
    if (out->numel == 0) { it->ndim = -1; return 0; }
    if (n == 0) {   /* one element */
        it->shape[0] = 1;
        for (int k = 0; k < nops; k++) it->strides[k][0] = 0;
        n = 1;
    }
    it->ndim = n;
    return 0;
}

typedef struct {
    const dt__iter *it;
    dt__row_fn fn;
    void *ctx;
    int64_t pieces;   /* each row is cut into this many pieces */
} run_ctx;

static void run_units(void *arg, int64_t begin, int64_t end, int tid)
{
    const run_ctx *rc = arg;
    const dt__iter *it = rc->it;
    int nd = it->ndim, nops = it->nops;
    int64_t inner = it->shape[nd - 1];
    int64_t s[3];
    for (int k = 0; k < nops; k++) s[k] = it->strides[k][nd - 1];
    for (int64_t u = begin; u < end; u++) {
        int64_t row = u / rc->pieces, piece = u % rc->pieces;
        int64_t b = inner * piece / rc->pieces, e = inner * (piece + 1) / rc->pieces;
        if (e <= b) continue;
        char *p[3];
        for (int k = 0; k < nops; k++) p[k] = it->data[k];
        int64_t r = row;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t i = r % it->shape[d];
            r /= it->shape[d];
            for (int k = 0; k < nops; k++) p[k] += i * it->strides[k][d] * (int64_t)it->esize[k];
        }
        for (int k = 0; k < nops; k++) p[k] += b * s[k] * (int64_t)it->esize[k];
        rc->fn(rc->ctx, p, s, e - b);
    }
}

/* Serial walk: an odometer over the outer dims, no divisions per row. */
static void run_serial(const dt__iter *it, dt__row_fn fn, void *ctx)
{
    int nd = it->ndim, nops = it->nops;
    int64_t idx[DT_MAX_DIMS] = {0};
    int64_t s[3];
    char *p[3];
    for (int k = 0; k < nops; k++) { s[k] = it->strides[k][nd - 1]; p[k] = it->data[k]; }
    for (;;) {
        fn(ctx, p, s, it->shape[nd - 1]);
        int d = nd - 2;
        for (; d >= 0; d--) {
            for (int k = 0; k < nops; k++) p[k] += it->strides[k][d] * (int64_t)it->esize[k];
            if (++idx[d] < it->shape[d]) break;
            for (int k = 0; k < nops; k++) p[k] -= it->strides[k][d] * it->shape[d] * (int64_t)it->esize[k];
            idx[d] = 0;
        }
        if (d < 0) return;
    }
}

#define PAR_MIN 32768   /* elements below which splitting costs more than it saves */

void dt__iter_run(const dt__iter *it, dt__row_fn fn, void *ctx, bool parallel)
{
    if (it->ndim < 0) return;
    int64_t inner = it->shape[it->ndim - 1], rows = 1;
    for (int d = 0; d < it->ndim - 1; d++) rows *= it->shape[d];
    int nt = parallel && rows * inner >= PAR_MIN ? dt_tensor_num_threads() : 1;
    if (nt <= 1) { run_serial(it, fn, ctx); return; }
    run_ctx rc = {.it = it, .fn = fn, .ctx = ctx, .pieces = rows >= nt ? 1 : (2 * nt + rows - 1) / rows};
    int64_t units = rows * rc.pieces;
    int64_t grain = units / (4 * nt) > 0 ? units / (4 * nt) : 1;
    dt__parallel_for(units, grain, run_units, &rc);
}
