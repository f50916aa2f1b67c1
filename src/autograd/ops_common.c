/* What every differentiable op shares: adopting the kernel's result into the scope and
 * recording a node over its inputs when grad is needed. */
#include "autograd/ag_internal.h"

dt_tensor *dt__record(dt_tensor *out, const char *name, dt_backward_fn fn, dt_tensor *const *in, int n,
                      unsigned save_in, bool save_out, const double *f64, int nf)
{
    if (!out) { dt_error_wrap(dt_last_error_code() < 0 ? dt_last_error_code() : DT_EINTERNAL, "%s", name); return NULL; }
    out = dt__adopt(out);
    if (!out || !dt_needs_grad(in, n)) return out;
    dt_node *nd = dt_node_new(name, fn, in, n);
    if (nd) {
        for (int i = 0; i < n; i++)
            if (save_in >> i & 1u) dt_node_save(nd, in[i]);
        if (save_out) dt_node_save(nd, out);
        for (int i = 0; i < nf && i < 8; i++) nd->f64[i] = f64[i];
    }
    return dt_node_attach(nd, out);
}
