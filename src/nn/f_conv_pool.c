/* max_pool2d(relu(conv2d(x, w, b)), 2) as one differentiable op over k_conv_shift.c's
 * fused kernels: it saves x, w and the pooled indices (-1 where relu passed nothing),
 * not the conv output, its relu or the pool's input. Where those kernels do not apply
 * (another dtype, a 3-D input, a CPU without AVX-512, padding beyond kernel - 1, an
 * output under 2x2) it composes the three ops, so the result is always theirs. */
#include "autograd/ag_internal.h"
#include <dtrain/nn.h>
#include "nn/nn_conv.h"

static inline float *F32(const dt_tensor *t) { return (float *)dt__ptr(t); }

static int fused_bw(dt_node *n, dt_tensor *gy, dt_tensor **gi)
{
    dt_tensor *x = dt_node_saved(n, 0), *w = dt_node_saved(n, 1), *idx = dt_node_saved(n, 2);
    dt__conv_geom g = {.N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3], .O = w->shape[0],
                       .kh = w->shape[2], .kw = w->shape[3], .sh = 1, .sw = 1, .ph = n->i64[0], .pw = n->i64[1]};
    g.Ho = g.H + 2 * g.ph - g.kh + 1;
    g.Wo = g.W + 2 * g.pw - g.kw + 1;
    bool nx = dt_node_needs_input_grad(n, 0), nw = dt_node_needs_input_grad(n, 1);
    bool nb = n->nin > 2 && dt_node_needs_input_grad(n, 2);
    dt_tensor *xc = NULL, *wc = NULL, *gc = NULL, *dx = NULL, *dw = NULL, *db = NULL;
    int rc = DT_ENOMEM;
    if (!(gc = dt__contig_as(gy, DT_F32))) goto fail;
    if (nw && !(xc = dt__contig_as(x, DT_F32))) goto fail;
    if (nx && !(wc = dt__contig_as(w, DT_F32))) goto fail;
    if (nx && !(dx = dt__empty(DT_F32, 4, x->shape))) goto fail;
    if (nw && !(dw = dt__empty(DT_F32, 4, w->shape))) goto fail;
    if (nb && !(db = dt__empty(DT_F32, 1, &g.O))) goto fail;
    rc = dt__conv2d_relu_pool_bw(&g, xc ? F32(xc) : NULL, wc ? F32(wc) : NULL, F32(gc), (const int32_t *)dt__ptr(idx),
                                 dx ? F32(dx) : NULL, dw ? F32(dw) : NULL, db ? F32(db) : NULL);
    if (rc < 0) goto fail;
    rc = DT_ENOMEM;
    if (nx && !(gi[0] = dt__adopt(dx))) { dx = NULL; goto fail; }
    dx = NULL;
    if (nw && !(gi[1] = dt__adopt(dw))) { dw = NULL; goto fail; }
    dw = NULL;
    if (nb && !(gi[2] = dt__adopt(db))) { db = NULL; goto fail; }
    db = NULL;
    rc = 0;
fail:
    if (rc < 0 && dt_last_error_code() < 0) rc = dt_last_error_code();
    dt_tensor_release(xc);
    dt_tensor_release(wc);
    dt_tensor_release(gc);
    dt_tensor_release(dx);
    dt_tensor_release(dw);
    dt_tensor_release(db);
    return rc;
}

/* The geometry when the fused kernels apply, else false. */
static bool fusable(const dt_tensor *x, const dt_tensor *w, const dt_tensor *b, int ph, int pw, dt__conv_geom *g)
{
    if (x->dtype != DT_F32 || w->dtype != DT_F32 || (b && b->dtype != DT_F32)) return false;
    if (x->ndim != 4 || w->ndim != 4 || (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))) return false;
    if (ph < 0 || pw < 0 || w->shape[1] != x->shape[1] || x->shape[0] < 1) return false;
    *g = (dt__conv_geom){.N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3], .O = w->shape[0],
                         .kh = w->shape[2], .kw = w->shape[3], .sh = 1, .sw = 1, .ph = ph, .pw = pw};
    g->Ho = g->H + 2 * g->ph - g->kh + 1;
    g->Wo = g->W + 2 * g->pw - g->kw + 1;
    if (g->C < 1 || g->O < 1 || g->kh < 1 || g->kw < 1 || g->Ho < 2 || g->Wo < 2) return false;
    int64_t K = g->C * g->kh * g->kw, P = g->Ho * g->Wo;
    if (K > INT32_MAX || P > INT32_MAX || g->O * P > INT32_MAX || g->C * g->H * g->W > INT32_MAX) return false;
    return dt__conv2d_shift_ok(g, DT_F32) && dt__conv2d_shift_dx_ok(g);
}

dt_tensor *dt_conv2d_relu_max_pool2d(dt_tensor *x, dt_tensor *w, dt_tensor *b, int pad_h, int pad_w)
{
    if (!x || !w) { dt__null_arg("conv2d_relu_max_pool2d"); return NULL; }
    dt__conv_geom g;
    if (!fusable(x, w, b, pad_h, pad_w, &g)) {
        int tok = dt_scope_begin();
        dt_tensor *r = dt_max_pool2d(dt_relu(dt_conv2d(x, w, b, 1, 1, pad_h, pad_w)), 2, 2, 2, 2, 0, 0);
        dt_keep(r);
        dt_scope_end(tok);
        return r;
    }
    dt_tensor *in[3] = {x, w, b};
    dt__rec r = {.name = "conv2d_relu_max_pool2d", .fn = fused_bw, .save_in = 3, .i = {pad_h, pad_w}};
    bool grad = dt_needs_grad(in, b ? 3 : 2);
    dt_tensor *xc = dt__contig_as(x, DT_F32);
    dt_tensor *wc = xc ? dt__contig_as(w, DT_F32) : NULL;
    dt_tensor *bc = wc && b ? dt__contig_as(b, DT_F32) : NULL;
    int64_t shape[4] = {g.N, g.O, g.Ho / 2, g.Wo / 2};
    dt_tensor *y = wc && (!b || bc) ? dt__empty(DT_F32, 4, shape) : NULL;
    dt_tensor *idx = y ? dt__empty(DT_I32, 4, shape) : NULL;
    if (y && (!idx || dt__conv2d_relu_pool_fwd(&g, F32(xc), F32(wc), bc ? F32(bc) : NULL, F32(y),
                                               (int32_t *)dt__ptr(idx)) < 0)) {
        dt_tensor_release(y);
        y = NULL;
    }
    dt_tensor_release(xc);
    dt_tensor_release(wc);
    dt_tensor_release(bc);
    r.save_extra = grad ? idx : NULL;
    dt_tensor *out = dt__record(y, in, b ? 3 : 2, &r);
    dt_tensor_release(idx);
    return out;
}
