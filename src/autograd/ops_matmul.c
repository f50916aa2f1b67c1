/* matmul (torch.matmul's 1-D, 2-D and batched cases) and linear, with backward as two
 * more products on transposed views. A weight shared by every batch entry (a 2-D
 * right operand) gets its gradient from one GEMM over the flattened batch. */
#include "autograd/ag_internal.h"

static int mm_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt_tensor *a = dt_node_saved(n, 0), *b = dt_node_saved(n, 1);
    int na = a->ndim, nb = b->ndim;
    if (dt_node_needs_input_grad(n, 0)) {
        dt_tensor *t = dt_matmul(g, dt_transpose(b, -1, -2));
        if (!(gi[0] = dt_sum_to(t, na, a->shape))) return dt_last_error_code();
    }
    if (dt_node_needs_input_grad(n, 1)) {
        dt_tensor *t;
        if (nb == 2 && na > 2) {
            int64_t k = a->shape[na - 1], m = g->shape[g->ndim - 1];
            t = dt_matmul(dt_transpose(dt_reshape(a, DT_SHAPE(-1, k)), 0, 1), dt_reshape(g, DT_SHAPE(-1, m)));
        } else {
            t = dt_sum_to(dt_matmul(dt_transpose(a, -1, -2), g), nb, b->shape);
        }
        if (!(gi[1] = t)) return dt_last_error_code();
    }
    return 0;
}

static dt_tensor *mm(dt_tensor *a, dt_tensor *b)
{
    dt_tensor *in[2] = {a, b};
    return dt__record(dt__matmul(a, b), in, 2, &(dt__rec){.name = "matmul", .fn = mm_bw, .save_in = 3});
}

dt_tensor *dt_matmul(dt_tensor *a, dt_tensor *b)
{
    if (!a || !b) { dt__null_arg("matmul"); return NULL; }
    if (a->ndim == 0 || b->ndim == 0) { dt_set_error(DT_ESHAPE, "matmul: 0-dim operand"); return NULL; }
    if (a->ndim >= 2 && b->ndim >= 2) return mm(a, b);
    /* 1-D operands: make them matrices, multiply, drop the added dims. */
    int tok = dt_scope_begin();
    dt_tensor *a2 = a->ndim == 1 ? dt_unsqueeze(a, 0) : a;
    dt_tensor *b2 = b->ndim == 1 ? dt_unsqueeze(b, -1) : b;
    dt_tensor *r = a2 && b2 ? mm(a2, b2) : NULL;
    if (r && b->ndim == 1) r = dt_squeeze(r, -1);
    if (r && a->ndim == 1) r = dt_squeeze(r, r->ndim >= 2 ? -2 : -1);
    dt_keep(r);
    dt_scope_end(tok);
    return r;
}

static int linear_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt_tensor *x = dt_node_saved(n, 0), *w = dt_node_saved(n, 1);
    int64_t in = w->shape[1], out = w->shape[0];
    if (dt_node_needs_input_grad(n, 0) && !(gi[0] = dt_matmul(g, w))) return dt_last_error_code();
    if (dt_node_needs_input_grad(n, 1)) {
        dt_tensor *g2 = dt_reshape(g, DT_SHAPE(-1, out)), *x2 = dt_reshape(x, DT_SHAPE(-1, in));
        if (!(gi[1] = dt_matmul(dt_transpose(g2, 0, 1), x2))) return dt_last_error_code();
    }
    if (dt_node_needs_input_grad(n, 2) && !(gi[2] = dt_sum_to(g, 1, &out))) return dt_last_error_code();
    return 0;
}

dt_tensor *dt_linear(dt_tensor *x, dt_tensor *w, dt_tensor *b)
{
    if (!x || !w) { dt__null_arg("linear"); return NULL; }
    dt_tensor *in[3] = {x, w, b};
    return dt__record(dt__linear(x, w, b), in, b ? 3 : 2, &(dt__rec){.name = "linear", .fn = linear_bw, .save_in = 3});
}
