/* Nodes: how an op records itself (dt_node_new / save / attach), the accessors a
 * backward function uses, and freeing. Freeing walks a worklist instead of recursing,
 * so dropping the last tensor of a graph a million ops deep does not overflow the
 * stack. Does not run backward (engine.c does). */
#include "autograd/ag_internal.h"

bool dt_needs_grad(dt_tensor *const *inputs, int n)
{
    if (!dt_grad_enabled()) return false;
    for (int i = 0; i < n; i++) {
        const dt__meta *m = dt__meta_of(inputs[i]);
        if (m && (m->requires_grad || m->grad_fn)) return true;
    }
    return false;
}

dt_node *dt_node_new(const char *name, dt_backward_fn fn, dt_tensor *const *inputs, int n)
{
    if (!fn || n < 0 || n > DT_NODE_MAX_INPUTS || (n && !inputs)) {
        dt_set_error(DT_EINVAL, "dt_node_new(%s): %d inputs (at most %d) and a backward function", name ? name : "?", n, DT_NODE_MAX_INPUTS);
        return NULL;
    }
    dt_node *nd = dt_calloc(1, sizeof *nd + (size_t)n * sizeof(dt__edge), DT_MEM_OTHER);
    if (!nd) return NULL;
    atomic_init(&nd->refs, 1);
    nd->name = name ? name : "op";
    nd->fn = fn;
    nd->nin = n;
    for (int i = 0; i < n; i++) {
        dt_tensor *t = inputs[i];
        dt__edge *e = &nd->in[i];
        if (!t) continue;
        e->ndim = t->ndim;
        e->dtype = t->dtype;
        memcpy(e->shape, t->shape, sizeof e->shape);
        dt__meta *m = dt__meta_of(t);
        if (!m) continue;
        if (m->grad_fn) {
            e->node = m->grad_fn;
            atomic_fetch_add(&e->node->refs, 1);
            e->needs = true;
        } else if (m->requires_grad) {
            e->leaf = dt_tensor_retain(t);
            e->needs = true;
        }
    }
    return nd;
}

void dt_node_save(dt_node *node, dt_tensor *t)
{
    if (!node) return;
    if (!t || node->nsaved >= DT__NODE_MAX_SAVED) {
        dt_set_error(DT_EINVAL, "dt_node_save(%s): %s", node->name, t ? "more than 8 saved tensors" : "NULL tensor");
        node->failed = true;
        return;
    }
    dt_tensor *h = dt__alias(t, t->ndim, t->shape, t->strides, t->offset);
    if (!h) { node->failed = true; return; }
    node->saved[node->nsaved++] = h;
}

dt_tensor *dt_node_saved(const dt_node *node, int i) { return i >= 0 && i < node->nsaved ? node->saved[i] : NULL; }
double *dt_node_f64(dt_node *node) { return node->f64; }
int64_t *dt_node_i64(dt_node *node) { return node->i64; }
void *dt_node_ctx(const dt_node *node) { return node->ctx; }
const char *dt_node_name(const dt_node *node) { return node->name; }
bool dt_node_needs_input_grad(const dt_node *node, int i) { return i >= 0 && i < node->nin && node->in[i].needs; }
int dt_node_input_ndim(const dt_node *node, int i) { return node->in[i].ndim; }
const int64_t *dt_node_input_shape(const dt_node *node, int i) { return node->in[i].shape; }
dt_dtype dt_node_input_dtype(const dt_node *node, int i) { return (dt_dtype)node->in[i].dtype; }

void dt_node_set_ctx(dt_node *node, void *ctx, void (*free_fn)(void *))
{
    if (!node) { if (free_fn && ctx) free_fn(ctx); return; }
    if (node->ctx_free && node->ctx) node->ctx_free(node->ctx);
    node->ctx = ctx;
    node->ctx_free = free_fn;
}

dt_tensor *dt_node_attach(dt_node *node, dt_tensor *out)
{
    dt__meta *m = NULL;
    if (!node || node->failed || !out) {
        if (node && out) dt_error_wrap(dt_last_error_code() < 0 ? dt_last_error_code() : DT_ENOMEM, "recording %s", node->name);
    } else if (dt__meta_of(out) && dt__meta_of(out)->grad_fn) {
        dt_set_error(DT_EINVAL, "dt_node_attach(%s): the output already has a grad_fn", node->name);
    } else {
        m = dt__meta_get(out);
    }
    if (!m) {
        dt_node_free(node);
        dt_tensor_discard(out);
        return NULL;
    }
    node->out_ndim = out->ndim;
    node->out_dtype = out->dtype;
    memcpy(node->out_shape, out->shape, sizeof node->out_shape);
    m->grad_fn = node;
    m->requires_grad = true;
    return out;
}

void dt_node_free(dt_node *node) { dt__node_release(node); }

/* What a node holds besides its edges' targets. */
static void clear_data(dt_node *n)
{
    for (int i = 0; i < n->nsaved; i++) dt_tensor_release(n->saved[i]);
    n->nsaved = 0;
    if (n->ctx_free && n->ctx) n->ctx_free(n->ctx);
    n->ctx = NULL;
    n->ctx_free = NULL;
    dt_tensor_release(n->gacc);
    n->gacc = NULL;
}

static _Thread_local dt_node *tl_work;     /* nodes whose edges are still to drop */
static _Thread_local bool tl_draining;

static void drain(void)
{
    tl_draining = true;
    while (tl_work) {
        dt_node *n = tl_work;
        tl_work = n->next_free;
        clear_data(n);
        for (int i = 0; i < n->nin; i++) {
            dt__edge *e = &n->in[i];
            if (e->node && atomic_fetch_sub(&e->node->refs, 1) == 1) {
                e->node->next_free = tl_work;
                tl_work = e->node;
            }
            dt_tensor_release(e->leaf);   /* may free metadata -> dt__node_release -> queued */
            e->node = NULL;
            e->leaf = NULL;
        }
        dt_free(n);
    }
    tl_draining = false;
}

void dt__node_release(dt_node *n)
{
    if (!n || atomic_fetch_sub(&n->refs, 1) != 1) return;
    n->next_free = tl_work;
    tl_work = n;
    if (!tl_draining) drain();
}

void dt__node_clear(dt_node *n)
{
    /* Keep n itself (its output still points at it); hand its edges to the worklist
     * machinery by clearing them here. */
    clear_data(n);
    for (int i = 0; i < n->nin; i++) {
        dt__edge *e = &n->in[i];
        dt_node *child = e->node;
        dt_tensor *leaf = e->leaf;
        e->node = NULL;
        e->leaf = NULL;
        dt__node_release(child);
        dt_tensor_release(leaf);
    }
    n->released = true;
}
