/* F.embedding: out[i, :] = weight[idx[i], :] for every position i of an integer idx of
 * any shape, and its backward, which scatter-adds the output gradient's rows into a
 * dense (num, dim) gradient of weight. The gather copies rows as raw elements (any
 * floating dtype, exact); the scatter runs in the computed dtype (f32 for bf16/f16).
 * Deterministic: the scatter splits the columns of the gradient over the threads, and
 * every thread walks the indices in order, so each element sums in index order
 * whatever the thread count. No sparse gradients, padding_idx or max_norm. */
#include "autograd/ag_internal.h"

typedef struct {
    int64_t n, dim;            /* positions, row length */
    const int64_t *ids;        /* [n], checked to lie in 0..num-1 */
    const char *w;             /* gather: weight rows, row stride ws elements */
    int64_t ws;
    char *out;                 /* gather: (n, dim) */
    size_t es;
    const void *g;             /* scatter: (n, dim) in the computed dtype */
    void *gw;                  /* scatter: (num, dim), zeroed */
    bool f64;
} emb_args;

static void gather_rows(void *arg, int64_t i0, int64_t i1, int tid)
{
    (void)tid;
    const emb_args *a = arg;
    size_t row = (size_t)a->dim * a->es;
    for (int64_t i = i0; i < i1; i++)
        memcpy(a->out + (size_t)i * row, a->w + (size_t)(a->ids[i] * a->ws) * a->es, row);
}

#define SCATTER(T)                                                                       \
    DT__KERNEL static void scatter_##T(const emb_args *a, int64_t j0, int64_t j1)         \
    {                                                                                    \
        const T *g = a->g;                                                               \
        T *gw = a->gw;                                                                   \
        for (int64_t i = 0; i < a->n; i++) {                                             \
            T *dst = gw + a->ids[i] * a->dim;                                            \
            const T *src = g + i * a->dim;                                               \
            for (int64_t j = j0; j < j1; j++) dst[j] += src[j];                          \
        }                                                                                \
    }
SCATTER(float)
SCATTER(double)

static void scatter_cols(void *arg, int64_t j0, int64_t j1, int tid)
{
    (void)tid;
    const emb_args *a = arg;
    if (a->f64) scatter_double(a, j0, j1);
    else scatter_float(a, j0, j1);
}

/* idx as a contiguous i64 copy, every id checked against num. */
static dt_tensor *ids_of(const dt_tensor *idx, int64_t num)
{
    dt_tensor *ids = dt__cast(idx, DT_I64);
    if (!ids) return NULL;
    const int64_t *p = (const int64_t *)dt__ptr(ids);
    for (int64_t i = 0; i < ids->numel; i++)
        if (p[i] < 0 || p[i] >= num) {
            dt_set_error(DT_ERANGE, "embedding: id %lld at position %lld outside 0..%lld", (long long)p[i], (long long)i, (long long)num - 1);
            dt_tensor_release(ids);
            return NULL;
        }
    return ids;
}

static int emb_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt_tensor *ids = dt_node_saved(n, 0);
    dt_dtype dt = dt_node_input_dtype(n, 0), ct = dt == DT_F64 ? DT_F64 : DT_F32;
    const int64_t *wsh = dt_node_input_shape(n, 0);
    int64_t dim = wsh[1];
    dt_tensor *gc = dt__contig_as(g, ct);
    dt_tensor *gw = gc ? dt__full(ct, 2, wsh, 0) : NULL;
    if (gw && ids->numel && dim) {
        emb_args a = {.n = ids->numel, .dim = dim, .ids = (const int64_t *)dt__ptr(ids), .g = dt__ptr(gc), .gw = dt__ptr(gw), .f64 = ct == DT_F64};
        int64_t grain = 65536 / (a.n > 0 ? a.n : 1);
        dt__parallel_for(dim, grain < 16 ? 16 : grain, scatter_cols, &a);
    }
    dt_tensor_release(gc);
    if (gw && dt != ct) {
        dt_tensor *c = dt__cast(gw, dt);
        dt_tensor_release(gw);
        gw = c;
    }
    gi[0] = dt__adopt(gw);
    return gi[0] ? 0 : (dt_last_error_code() < 0 ? dt_last_error_code() : DT_ENOMEM);
}

dt_tensor *dt_embedding(dt_tensor *weight, dt_tensor *idx)
{
    if (!weight || !idx) { dt__null_arg("embedding"); return NULL; }
    dt_dtype dt = (dt_dtype)weight->dtype;
    if (!dt_dtype_is_float(dt)) { dt_set_error(DT_EDTYPE, "embedding: weight of %s", dt_dtype_name(dt)); return NULL; }
    if (idx->dtype != DT_I64 && idx->dtype != DT_I32) {
        dt_set_error(DT_EDTYPE, "embedding: ids of %s (int64 or int32)", dt_dtype_name((dt_dtype)idx->dtype));
        return NULL;
    }
    if (weight->ndim != 2) { dt_set_error(DT_ESHAPE, "embedding: weight has %d dims, not (num, dim)", weight->ndim); return NULL; }
    if (idx->ndim + 1 > DT_MAX_DIMS) { dt_set_error(DT_ESHAPE, "embedding: ids of %d dims (at most %d)", idx->ndim, DT_MAX_DIMS - 1); return NULL; }
    int64_t num = weight->shape[0], dim = weight->shape[1];
    dt_tensor *ids = ids_of(idx, num);
    if (!ids) return NULL;
    int64_t sh[DT_MAX_DIMS];
    memcpy(sh, idx->shape, (size_t)idx->ndim * sizeof *sh);
    sh[idx->ndim] = dim;
    /* Rows need unit stride along dim; any row stride is fine. */
    dt_tensor *w = weight->strides[1] == 1 || dim <= 1 ? dt_tensor_retain(weight) : dt__cast(weight, dt);
    dt_tensor *out = w ? dt__empty(dt, idx->ndim + 1, sh) : NULL;
    if (out && out->numel) {
        emb_args a = {.n = ids->numel, .dim = dim, .ids = (const int64_t *)dt__ptr(ids), .w = dt__ptr(w),
                      .ws = w->strides[0], .out = dt__ptr(out), .es = dt_dtype_size(dt)};
        int64_t grain = 16384 / (dim > 0 ? dim : 1);
        dt__parallel_for(a.n, grain < 1 ? 1 : grain, gather_rows, &a);
    }
    dt_tensor_release(w);
    if (!out) {
        dt_error_wrap(dt_last_error_code() < 0 ? dt_last_error_code() : DT_ENOMEM, "embedding");
    } else if ((out = dt__adopt(out)) && dt_needs_grad(&weight, 1)) {
        dt_node *nd = dt_node_new("embedding", emb_bw, &weight, 1);
        dt_node_save(nd, ids);
        out = dt_node_attach(nd, out);
    }
    dt_tensor_release(ids);
    return out;
}
