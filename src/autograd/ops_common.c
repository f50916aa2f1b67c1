/* What every differentiable op shares: adopting the kernel's result into the scope and
 * recording a node over its inputs when grad is needed. */
#include "autograd/ag_internal.h"

dt_tensor *dt__record(dt_tensor *out, dt_tensor *const *in, int n, const dt__rec *r)
{
    if (!out) { dt_error_wrap(dt_last_error_code() < 0 ? dt_last_error_code() : DT_EINTERNAL, "%s", r->name); return NULL; }
    out = dt__adopt(out);
    if (!out || !dt_needs_grad(in, n)) return out;
    dt_node *nd = dt_node_new(r->name, r->fn, in, n);
    if (nd) {
        for (int i = 0; i < n; i++)
            if (r->save_in >> i & 1u) dt_node_save(nd, in[i]);
        if (r->save_out) dt_node_save(nd, out);
        if (r->save_extra) dt_node_save(nd, r->save_extra);
        memcpy(nd->f64, r->f, sizeof nd->f64);
        memcpy(nd->i64, r->i, sizeof nd->i64);
    }
    return dt_node_attach(nd, out);
}
