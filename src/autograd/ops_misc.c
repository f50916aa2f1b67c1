/* cat, split, masked_fill and the causal mask. */
#include "autograd/ag_internal.h"

static int cat_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    int dim = (int)dt_node_i64(n)[0];
    int64_t at = 0;
    for (int i = 0; i < n->nin; i++) {
        int64_t len = dt_node_input_shape(n, i)[dim];
        if (dt_node_needs_input_grad(n, i) && !(gi[i] = dt_narrow(g, dim, at, len))) return dt_last_error_code();
        at += len;
    }
    return 0;
}

dt_tensor *dt_cat(dt_tensor *const *ts, int n, int dim)
{
    if (!ts || n < 1) { dt_set_error(DT_EINVAL, "cat: no tensors"); return NULL; }
    dt_tensor *out = dt__cat(ts, n, dim);
    if (!out) return NULL;
    if (n > DT_NODE_MAX_INPUTS && dt_needs_grad(ts, n)) {
        dt_tensor_release(out);
        dt_set_error(DT_EUNSUPPORTED, "cat: gradients through more than %d inputs", DT_NODE_MAX_INPUTS);
        return NULL;
    }
    int d = dt__wrap_dim(dim, ts[0]->ndim, "cat");
    return dt__record(out, ts, n > DT_NODE_MAX_INPUTS ? 0 : n, &(dt__rec){.name = "cat", .fn = cat_bw, .i = {d}});
}

int dt_split(dt_tensor *a, int64_t size, int dim, dt_tensor **out, int max_out)
{
    if (!a || (!out && max_out > 0)) return dt__null_arg("split");
    int d = dt__wrap_dim(dim, a->ndim, "split");
    if (d < 0) return d;
    if (size < 1) return dt_set_error(DT_EINVAL, "split: size %lld", (long long)size);
    int64_t len = a->ndim ? a->shape[d] : 1;
    int64_t count = len ? (len + size - 1) / size : 1;
    if (count > max_out) return dt_set_error(DT_ERANGE, "split: %lld pieces, room for %d", (long long)count, max_out);
    for (int64_t i = 0; i < count; i++) {
        int64_t start = i * size, l = len - start < size ? len - start : size;
        out[i] = dt_narrow(a, d, start, l);
        if (!out[i]) {
            while (i-- > 0) { dt_tensor_discard(out[i]); out[i] = NULL; }
            return dt_last_error_code();
        }
    }
    return (int)count;
}

static int masked_fill_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    gi[0] = dt__adopt(dt__ew(DT__EW_MASKFILL, g, dt_node_saved(n, 0), 0));
    return gi[0] ? 0 : dt_last_error_code();
}

dt_tensor *dt_masked_fill(dt_tensor *a, dt_tensor *mask, double value)
{
    if (!a || !mask) { dt__null_arg("masked_fill"); return NULL; }
    int64_t st[DT_MAX_DIMS];
    if (dt__broadcast_strides(mask, a->ndim, a->shape, st) < 0) { dt_error_wrap(DT_ESHAPE, "masked_fill: mask"); return NULL; }
    dt_tensor *m = dt__cast(mask, (dt_dtype)a->dtype);
    dt_tensor *out = m ? dt__ew(DT__EW_MASKFILL, a, m, value) : NULL;
    out = dt__record(out, &a, 1, &(dt__rec){.name = "masked_fill", .fn = masked_fill_bw, .save_extra = m});
    dt_tensor_release(m);
    return out;
}

dt_tensor *dt_causal_mask(int64_t t)
{
    if (t < 0) { dt_set_error(DT_EINVAL, "causal_mask: size %lld", (long long)t); return NULL; }
    dt_tensor *m = dt__empty(DT_U8, 2, (int64_t[]){t, t});
    if (!m) return NULL;
    uint8_t *p = (uint8_t *)m->st->data;
    for (int64_t i = 0; i < t; i++)
        for (int64_t j = 0; j < t; j++) p[i * t + j] = j > i;
    return dt__adopt(m);
}
