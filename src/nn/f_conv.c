/* F.conv2d as a differentiable op: argument checks, dtype handling (f32 and f64 native,
 * bf16/f16 through f32 copies), contiguous copies of strided inputs, and the node whose
 * backward gives dx, dw and db. The arithmetic is k_conv.c's. An unbatched (C, H, W)
 * input is run as a batch of one, as torch does. */
#include "autograd/ag_internal.h"
#include <dtrain/nn.h>
#include "nn/nn_conv.h"

static dt_dtype ctype(dt_dtype t) { return t == DT_F64 ? DT_F64 : DT_F32; }

/* The geometry of x (N, C, H, W) by w (O, C, kh, kw); DT_ESHAPE when it does not fit. */
static int geom_of(const dt_tensor *x, const dt_tensor *w, const int64_t *p, dt__conv_geom *g)
{
    *g = (dt__conv_geom){.N = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                         .O = w->shape[0], .kh = w->shape[2], .kw = w->shape[3],
                         .sh = p[0], .sw = p[1], .ph = p[2], .pw = p[3]};
    if (w->shape[1] != g->C || g->O < 1 || g->C < 1 || g->kh < 1 || g->kw < 1)
        return dt_set_error(DT_ESHAPE, "conv2d: input (%lld, %lld, %lld, %lld) and weight (%lld, %lld, %lld, %lld): channels differ or a size is 0",
                            (long long)g->N, (long long)g->C, (long long)g->H, (long long)g->W, (long long)g->O,
                            (long long)w->shape[1], (long long)g->kh, (long long)g->kw);
    int64_t eh = g->H + 2 * g->ph - g->kh, ew = g->W + 2 * g->pw - g->kw;
    if (eh < 0 || ew < 0)
        return dt_set_error(DT_ESHAPE, "conv2d: kernel %lldx%lld larger than the padded input %lldx%lld",
                            (long long)g->kh, (long long)g->kw, (long long)(g->H + 2 * g->ph), (long long)(g->W + 2 * g->pw));
    g->Ho = eh / g->sh + 1;
    g->Wo = ew / g->sw + 1;
    int64_t K = g->C * g->kh * g->kw, P = g->Ho * g->Wo;
    if (K > INT32_MAX || P > INT32_MAX || g->O > INT32_MAX || K * P > INT32_MAX)
        return dt_set_error(DT_EUNSUPPORTED, "conv2d: a GEMM dimension above 2^31");
    return 0;
}

/* A new contiguous tensor in dtype as from f32/f64 kernel output y (released). */
static dt_tensor *finish(dt_tensor *y, dt_dtype as)
{
    if (!y || y->dtype == as) return y;
    dt_tensor *c = dt__cast(y, as);
    dt_tensor_release(y);
    return c;
}

static int conv_bw(dt_node *n, dt_tensor *gout, dt_tensor **gi)
{
    dt_tensor *x = dt_node_saved(n, 0), *w = dt_node_saved(n, 1);
    dt__conv_geom g;
    int rc = geom_of(x, w, dt_node_i64(n), &g);
    if (rc < 0) return rc;
    bool nx = dt_node_needs_input_grad(n, 0), nw = dt_node_needs_input_grad(n, 1);
    bool nb = n->nin > 2 && dt_node_needs_input_grad(n, 2);
    dt_dtype ct = ctype((dt_dtype)x->dtype);
    dt_tensor *xc = NULL, *wc = NULL, *gc = NULL, *dx = NULL, *dw = NULL, *db = NULL;
    rc = DT_ENOMEM;
    if (!(gc = dt__contig_as(gout, ct))) goto fail;
    if (nw && !(xc = dt__contig_as(x, ct))) goto fail;
    if (nx && !(wc = dt__contig_as(w, ct))) goto fail;
    if (nx && !(dx = dt__empty(ct, 4, x->shape))) goto fail;
    if (nw && !(dw = dt__empty(ct, 4, w->shape))) goto fail;
    if (nb && !(db = dt__empty(ct, 1, &g.O))) goto fail;
    rc = dt__conv2d_bw(&g, ct, xc ? dt__ptr(xc) : NULL, wc ? dt__ptr(wc) : NULL, dt__ptr(gc),
                       dx ? dt__ptr(dx) : NULL, dw ? dt__ptr(dw) : NULL, db ? dt__ptr(db) : NULL);
    if (rc < 0) goto fail;
    rc = DT_ENOMEM;
    if (nx && !(gi[0] = dt__adopt(finish(dx, dt_node_input_dtype(n, 0))))) { dx = NULL; goto fail; }
    dx = NULL;
    if (nw && !(gi[1] = dt__adopt(finish(dw, dt_node_input_dtype(n, 1))))) { dw = NULL; goto fail; }
    dw = NULL;
    if (nb && !(gi[2] = dt__adopt(finish(db, dt_node_input_dtype(n, 2))))) { db = NULL; goto fail; }
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

/* The forward kernel on checked 4-D operands; a caller-owned result or NULL. */
static dt_tensor *conv_fwd(const dt_tensor *x, const dt_tensor *w, const dt_tensor *b, const int64_t *p)
{
    dt__conv_geom g;
    if (geom_of(x, w, p, &g) < 0) return NULL;
    if (b && (b->ndim != 1 || b->shape[0] != g.O)) {
        dt_set_error(DT_ESHAPE, "conv2d: bias of %d dims (size %lld) for %lld output channels", b->ndim,
                     (long long)(b->ndim ? b->shape[0] : 1), (long long)g.O);
        return NULL;
    }
    dt_dtype ct = ctype((dt_dtype)x->dtype);
    dt_tensor *xc = dt__contig_as((dt_tensor *)x, ct);
    dt_tensor *wc = xc ? dt__contig_as((dt_tensor *)w, ct) : NULL;
    dt_tensor *bc = wc && b ? dt__contig_as((dt_tensor *)b, ct) : NULL;
    dt_tensor *out = wc && (!b || bc) ? dt__empty(ct, DT_SHAPE(g.N, g.O, g.Ho, g.Wo)) : NULL;
    if (out && dt__conv2d_fwd(&g, ct, dt__ptr(xc), dt__ptr(wc), bc ? dt__ptr(bc) : NULL, dt__ptr(out)) < 0) {
        dt_tensor_release(out);
        out = NULL;
    }
    dt_tensor_release(xc);
    dt_tensor_release(wc);
    dt_tensor_release(bc);
    return finish(out, (dt_dtype)x->dtype);
}

dt_tensor *dt_conv2d(dt_tensor *x, dt_tensor *w, dt_tensor *b, int stride_h, int stride_w, int pad_h, int pad_w)
{
    if (!x || !w) { dt__null_arg("conv2d"); return NULL; }
    if (!dt_dtype_is_float((dt_dtype)x->dtype) || w->dtype != x->dtype || (b && b->dtype != x->dtype)) {
        dt_set_error(DT_EDTYPE, "conv2d: input %s, weight %s, bias %s (one floating dtype)", dt_dtype_name((dt_dtype)x->dtype),
                     dt_dtype_name((dt_dtype)w->dtype), b ? dt_dtype_name((dt_dtype)b->dtype) : "none");
        return NULL;
    }
    if (stride_h < 1 || stride_w < 1 || pad_h < 0 || pad_w < 0) {
        dt_set_error(DT_EINVAL, "conv2d: stride (%d, %d), padding (%d, %d)", stride_h, stride_w, pad_h, pad_w);
        return NULL;
    }
    if ((x->ndim != 4 && x->ndim != 3) || w->ndim != 4) {
        dt_set_error(DT_ESHAPE, "conv2d: input of %d dims (want (N, C, H, W) or (C, H, W)), weight of %d (want (O, C, kh, kw))", x->ndim, w->ndim);
        return NULL;
    }
    if (x->ndim == 3) {
        int tok = dt_scope_begin();
        dt_tensor *r = dt_squeeze(dt_conv2d(dt_unsqueeze(x, 0), w, b, stride_h, stride_w, pad_h, pad_w), 0);
        dt_keep(r);
        dt_scope_end(tok);
        return r;
    }
    dt_tensor *in[3] = {x, w, b};
    dt__rec r = {.name = "conv2d", .fn = conv_bw, .save_in = 3, .i = {stride_h, stride_w, pad_h, pad_w}};
    return dt__record(conv_fwd(x, w, b, r.i), in, b ? 3 : 2, &r);
}
