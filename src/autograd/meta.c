/* Per-tensor autograd state (requires_grad, grad_fn, .grad, gradient-ready hooks),
 * created on demand so plain tensors carry none, and grad mode (per thread, nestable).
 * Freed through the tensor layer's destructor hook when its tensor goes. */
#include "autograd/ag_internal.h"

#include <pthread.h>

static _Thread_local int tl_no_grad;

bool dt_grad_enabled(void) { return tl_no_grad == 0; }
void dt_no_grad_begin(void) { tl_no_grad++; }
void dt_no_grad_end(void) { if (tl_no_grad > 0) tl_no_grad--; }

static void meta_free(void *p)
{
    dt__meta *m = p;
    dt_tensor_release(m->grad);
    dt__node_release(m->grad_fn);
    dt_free(m->hooks);
    dt_free(m);
}

dt__meta *dt__meta_of(const dt_tensor *t) { return t ? (dt__meta *)t->ag : NULL; }

static void register_dtor(void) { dt__tensor_ag_dtor = meta_free; }

dt__meta *dt__meta_get(dt_tensor *t)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (t->ag) return t->ag;
    pthread_once(&once, register_dtor);
    dt__meta *m = dt_calloc(1, sizeof *m, DT_MEM_OTHER);
    if (!m) return NULL;
    t->ag = m;
    return m;
}

int dt_tensor_set_requires_grad(dt_tensor *t, bool on)
{
    if (!t) return dt__null_arg("dt_tensor_set_requires_grad");
    dt__meta *m = dt__meta_of(t);
    if (m && m->grad_fn) return dt_set_error(DT_EINVAL, "requires_grad can only be set on leaves (this tensor comes from %s)", m->grad_fn->name);
    if (on && !dt_dtype_is_float((dt_dtype)t->dtype))
        return dt_set_error(DT_EDTYPE, "requires_grad on a %s tensor: floating dtypes only", dt_dtype_name((dt_dtype)t->dtype));
    if (!m && !on) return 0;
    if (!m && !(m = dt__meta_get(t))) return dt_last_error_code();
    m->requires_grad = on;
    return 0;
}

bool dt_tensor_requires_grad(const dt_tensor *t)
{
    const dt__meta *m = dt__meta_of(t);
    return m && (m->requires_grad || m->grad_fn);
}

bool dt_tensor_is_leaf(const dt_tensor *t)
{
    const dt__meta *m = dt__meta_of(t);
    return !m || !m->grad_fn;
}

dt_tensor *dt_tensor_grad(const dt_tensor *t)
{
    const dt__meta *m = dt__meta_of(t);
    return m ? m->grad : NULL;
}

int dt_tensor_set_grad_buffer(dt_tensor *leaf, dt_tensor *grad)
{
    if (!leaf) return dt__null_arg("dt_tensor_set_grad_buffer");
    dt__meta *m = dt__meta_of(leaf);
    if (m && m->grad_fn) return dt_set_error(DT_EINVAL, "dt_tensor_set_grad_buffer: not a leaf");
    if (grad) {
        if (grad->dtype != leaf->dtype) return dt_set_error(DT_EDTYPE, "dt_tensor_set_grad_buffer: grad %s for a %s leaf", dt_dtype_name((dt_dtype)grad->dtype), dt_dtype_name((dt_dtype)leaf->dtype));
        if (grad->ndim != leaf->ndim || memcmp(grad->shape, leaf->shape, (size_t)leaf->ndim * sizeof(int64_t)) != 0) {
            char a[96], b[96];
            return dt_set_error(DT_ESHAPE, "dt_tensor_set_grad_buffer: grad %s for leaf %s", dt_tensor_describe(grad, a, sizeof a), dt_tensor_describe(leaf, b, sizeof b));
        }
        if (dt_tensor_same_storage(grad, leaf)) return dt_set_error(DT_EINVAL, "dt_tensor_set_grad_buffer: grad shares the leaf's storage");
    }
    if (!m && !grad) return 0;
    if (!m && !(m = dt__meta_get(leaf))) return dt_last_error_code();
    dt_tensor *old = m->grad;
    m->grad = dt_tensor_retain(grad);
    dt_tensor_release(old);
    return 0;
}

int dt_tensor_zero_grad(dt_tensor *leaf)
{
    dt_tensor *g = dt_tensor_grad(leaf);
    return g ? dt_tensor_fill(g, 0) : 0;
}

int dt_tensor_on_grad_ready(dt_tensor *leaf, dt_grad_ready_fn fn, void *ctx)
{
    if (!leaf || !fn) return dt__null_arg("dt_tensor_on_grad_ready");
    dt__meta *m = dt__meta_get(leaf);
    if (!m) return dt_last_error_code();
    if (m->grad_fn) return dt_set_error(DT_EINVAL, "dt_tensor_on_grad_ready: not a leaf");
    dt__hook *h = dt_realloc(m->hooks, (size_t)(m->nhooks + 1) * sizeof *h, DT_MEM_OTHER);
    if (!h) return dt_last_error_code();
    h[m->nhooks++] = (dt__hook){.fn = fn, .ctx = ctx};
    m->hooks = h;
    return 0;
}

void dt_tensor_clear_hooks(dt_tensor *leaf)
{
    dt__meta *m = dt__meta_of(leaf);
    if (!m) return;
    dt_free(m->hooks);
    m->hooks = NULL;
    m->nhooks = 0;
}

dt_tensor *dt_detach(dt_tensor *t)
{
    if (!t) { dt__null_arg("dt_detach"); return NULL; }
    return dt__adopt(dt__alias(t, t->ndim, t->shape, t->strides, t->offset));
}

/* A NULL input is usually the result of an op that failed just before: keep that
 * error (with this op named in front), so a chain reports its first failure. */
int dt__null_arg(const char *what)
{
    int code = dt_last_error_code();
    if (code < 0) return dt_error_wrap(code, "%s of a failed result", what);
    return dt_set_error(DT_EINVAL, "%s: NULL tensor argument", what);
}
