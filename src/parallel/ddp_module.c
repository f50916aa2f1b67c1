/* DDP over an nn module: its named parameters and buffers, its flat gradient buffer
 * moved into DDP's (shared memory when it can), and forward with DDP's protocol
 * around the module's. */
#include "parallel/ddp_internal.h"

dt_ddp *dt_ddp_wrap(dt_module *m, dt_pg *pg, const dt_ddp_opts *opts)
{
    if (!m) {
        dt_set_error(DT_EINVAL, "DDP: NULL module");
        return NULL;
    }
    size_t np = 0, nb = 0;
    const dt_named_param *ps = dt_module_params(m, &np);
    if (!ps && dt_last_error_code()) return NULL;
    const dt_named_buffer *bs = dt_module_buffers(m, &nb);
    if (!bs && dt_last_error_code()) return NULL;
    dt_ddp_tensor *t = dt_alloc((np + nb + 1) * sizeof *t, DT_MEM_OTHER);
    if (!t) return NULL;
    for (size_t i = 0; i < np; i++) t[i] = (dt_ddp_tensor){ps[i].name, ps[i].param};
    for (size_t i = 0; i < nb; i++) t[np + i] = (dt_ddp_tensor){bs[i].name, bs[i].t};
    dt_ddp *d = dt__ddp_create(pg, t, (int)np, t + np, (int)nb, opts, m);
    dt_free(t);
    return d;
}

dt_module *dt_ddp_module(const dt_ddp *d) { return d ? d->mod : NULL; }

dt_tensor *dt_ddp_forward(dt_ddp *d, dt_tensor *x)
{
    if (!d || !d->mod) {
        dt_set_error(DT_EINVAL, "dt_ddp_forward: %s", d ? "this DDP wraps no module (dt_ddp_new)" : "NULL handle");
        return NULL;
    }
    if (dt_ddp_pre_forward(d) < 0) return NULL;
    dt_tensor *out = dt_module_forward(d->mod, x);
    if (out && dt_grad_enabled() && dt_ddp_prepare_backward(d, out) < 0) {
        dt_tensor_discard(out);
        return NULL;
    }
    return out;
}
