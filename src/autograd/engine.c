/* The backward engine. dt_backward(loss) runs in two passes over the graph below
 * loss's node:
 *   1. count: a depth-first walk gives each node the number of consumer edges that
 *      will deliver into it (deps) and each leaf the number of edges into it (pending);
 *   2. run: a node whose deps reached 0 is ready; its backward function turns the
 *      accumulated output gradient (gacc) into input gradients, which are added into
 *      the input nodes' gacc or the leaves' .grad. A leaf whose pending count reaches 0
 *      has its final gradient, and its gradient-ready hooks fire right there, while
 *      the rest of backward still runs (DDP starts its all-reduce from them).
 * Each node drops its saved data and edges as soon as it has run, so memory falls as
 * backward proceeds and a graph can be run once. */
#include "autograd/ag_internal.h"

static _Atomic uint64_t g_epoch;

typedef struct {
    void **v;
    int64_t n, cap;
} vec;

static int vec_push(vec *s, void *p)
{
    if (s->n == s->cap) {
        int64_t cap = s->cap ? s->cap * 2 : 64;
        void **v = dt_realloc(s->v, (size_t)cap * sizeof *v, DT_MEM_OTHER);
        if (!v) return DT_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = p;
    return 0;
}

int dt__accumulate_leaf(dt_tensor *leaf, dt__meta *m, const dt_tensor *g)
{
    if (m->grad) return dt__add_into(m->grad, g);
    dt_mem_cat old = dt_tensor_set_mem_cat(DT_MEM_GRAD);
    dt_tensor *grad = dt__empty((dt_dtype)leaf->dtype, leaf->ndim, leaf->shape);
    dt_tensor_set_mem_cat(old);
    if (!grad) return dt_last_error_code();
    int rc = dt__copy(grad, g);
    if (rc < 0) { dt_tensor_release(grad); return rc; }
    m->grad = grad;
    return 0;
}

static void fire_hooks(dt_tensor *leaf, dt__meta *m)
{
    dt_no_grad_begin();
    for (int i = 0; i < m->nhooks; i++) m->hooks[i].fn(leaf, m->hooks[i].ctx);
    dt_no_grad_end();
}

static bool same_shape(const dt_tensor *g, int ndim, const int64_t *shape)
{
    return g->ndim == ndim && memcmp(g->shape, shape, (size_t)ndim * sizeof *shape) == 0;
}

/* Ready nodes are retained while they wait: running a node drops its edges, which
 * may hold the only references to the nodes it just made ready. */
static int push_ready(vec *ready, dt_node *n)
{
    atomic_fetch_add(&n->refs, 1);
    int rc = vec_push(ready, n);
    if (rc < 0) dt__node_release(n);
    return rc;
}

/* The gradient a backward function gave for edge e, checked and retained. */
static int take_grad(const dt_node *n, int i, dt_tensor *g, dt_tensor **out)
{
    const dt__edge *e = &n->in[i];
    *out = NULL;
    if (!g || !e->needs) return 0;
    if (!same_shape(g, e->ndim, e->shape)) {
        char a[96];
        return dt_set_error(DT_ESHAPE, "backward of %s: gradient %s for input %d of %d dims", n->name, dt_tensor_describe(g, a, sizeof a), i, e->ndim);
    }
    if (g->dtype != e->dtype) {
        *out = dt__cast(g, (dt_dtype)e->dtype);
        return *out ? 0 : dt_last_error_code();
    }
    *out = dt_tensor_retain(g);
    return 0;
}

/* Run one node: compute its input gradients and deliver them. */
static int run_node(dt_node *n, vec *ready)
{
    dt_tensor *gout = n->gacc;
    n->gacc = NULL;
    if (!gout) gout = dt__full((dt_dtype)n->out_dtype, n->out_ndim, n->out_shape, 0);
    if (!gout) return dt_last_error_code();
    dt_tensor *gin[DT_NODE_MAX_INPUTS] = {NULL}, *got[DT_NODE_MAX_INPUTS] = {NULL};
    int rc;
    dt_no_grad_begin();
    int tok = dt_scope_begin();
    rc = n->fn(n, gout, gin);
    if (rc < 0) dt_error_wrap(rc, "backward of %s", n->name);
    for (int i = 0; i < n->nin && rc >= 0; i++) rc = take_grad(n, i, gin[i], &got[i]);
    dt_scope_end(tok);
    dt_no_grad_end();
    dt_tensor_release(gout);
    for (int i = 0; i < n->nin && rc >= 0; i++) {
        dt__edge *e = &n->in[i];
        if (!e->needs) continue;
        if (e->node) {
            dt_node *c = e->node;
            if (got[i]) {
                if (!c->gacc) { c->gacc = got[i]; got[i] = NULL; }
                else {
                    dt_tensor *s = dt__ew(DT__EW_ADD, c->gacc, got[i], 0);
                    if (!s) { rc = dt_last_error_code(); break; }
                    dt_tensor_release(c->gacc);
                    c->gacc = s;
                }
            }
            if (--c->deps == 0 && (rc = push_ready(ready, c)) < 0) break;
        } else if (e->leaf) {
            dt__meta *m = dt__meta_of(e->leaf);
            if (got[i] && (rc = dt__accumulate_leaf(e->leaf, m, got[i])) < 0) break;
            if (--m->pending == 0) fire_hooks(e->leaf, m);
        }
    }
    for (int i = 0; i < n->nin; i++) dt_tensor_release(got[i]);
    if (rc >= 0) dt__node_clear(n);
    return rc < 0 ? rc : 0;
}

/* Pass 1: deps of every node and pending of every leaf below root. */
static int count(dt_node *root, uint64_t epoch)
{
    vec stack = {0};
    int rc = 0;
    root->epoch = epoch;
    root->deps = 0;
    if ((rc = vec_push(&stack, root)) < 0) return rc;
    while (stack.n && rc >= 0) {
        dt_node *n = stack.v[--stack.n];
        if (n->released) {
            rc = dt_set_error(DT_ESTATE, "backward through %s a second time: the graph was freed by the first backward", n->name);
            break;
        }
        for (int i = 0; i < n->nin && rc >= 0; i++) {
            dt__edge *e = &n->in[i];
            if (e->node) {
                if (e->node->epoch != epoch) {
                    e->node->epoch = epoch;
                    e->node->deps = 0;
                    rc = vec_push(&stack, e->node);
                }
                e->node->deps++;
            } else if (e->leaf) {
                dt__meta *m = dt__meta_of(e->leaf);
                if (m->epoch != epoch) { m->epoch = epoch; m->pending = 0; }
                m->pending++;
            }
        }
    }
    dt_free(stack.v);
    return rc;
}

/* Callbacks queued during the running backward of this thread (torch's
 * queue_callback): run in order once the graph is done, before dt_backward returns. */
typedef struct {
    dt_backward_callback_fn fn;
    void *ctx;
} queued_cb;
static _Thread_local struct {
    int depth;          /* dt_backward calls running on this thread */
    queued_cb *v;
    int n, cap;
} t_cb;

int dt_backward_queue_callback(dt_backward_callback_fn fn, void *ctx)
{
    if (!fn) return dt_set_error(DT_EINVAL, "dt_backward_queue_callback: NULL function");
    if (t_cb.depth == 0) return dt_set_error(DT_ESTATE, "dt_backward_queue_callback: no backward is running on this thread");
    if (t_cb.n == t_cb.cap) {
        int cap = t_cb.cap ? 2 * t_cb.cap : 8;
        queued_cb *v = dt_realloc(t_cb.v, (size_t)cap * sizeof *v, DT_MEM_OTHER);
        if (!v) return dt_last_error_code();
        t_cb.v = v;
        t_cb.cap = cap;
    }
    t_cb.v[t_cb.n++] = (queued_cb){fn, ctx};
    return 0;
}

/* Run (and drop) the callbacks queued since index `from`; the first failure is kept
 * in rc unless rc already holds one. Each runs in no-grad mode. */
static int run_callbacks(int from, int rc)
{
    dt_no_grad_begin();
    for (int i = from; i < t_cb.n; i++) {
        int r = t_cb.v[i].fn(t_cb.v[i].ctx);
        if (r < 0 && rc == 0) rc = r;
    }
    dt_no_grad_end();
    t_cb.n = from;
    if (t_cb.n == 0) {
        dt_free(t_cb.v);
        t_cb.v = NULL;
        t_cb.cap = 0;
    }
    return rc;
}

static int backward(dt_tensor *loss);

int dt_backward(dt_tensor *loss)
{
    int from = t_cb.n;
    t_cb.depth++;
    int rc = backward(loss);
    rc = run_callbacks(from, rc);
    t_cb.depth--;
    return rc;
}

int dt_autograd_visit_leaves(dt_tensor *root, dt_grad_ready_fn fn, void *ctx)
{
    static _Atomic uint64_t g_visit;
    if (!root || !fn) return dt_set_error(DT_EINVAL, "dt_autograd_visit_leaves: NULL %s", root ? "function" : "root");
    dt__meta *m = dt__meta_of(root);
    if (!m) return 0;
    if (!m->grad_fn) {
        if (m->requires_grad) fn(root, ctx);
        return 0;
    }
    uint64_t visit = atomic_fetch_add(&g_visit, 1) + 1;
    vec stack = {0};
    int rc = vec_push(&stack, m->grad_fn);
    m->grad_fn->visit = visit;
    while (stack.n && rc >= 0) {
        dt_node *n = stack.v[--stack.n];
        for (int i = 0; i < n->nin && rc >= 0; i++) {
            dt__edge *e = &n->in[i];
            if (e->node && e->node->visit != visit) {
                e->node->visit = visit;
                rc = vec_push(&stack, e->node);
            } else if (e->leaf) {
                fn(e->leaf, ctx);
            }
        }
    }
    dt_free(stack.v);
    return rc < 0 ? rc : 0;
}

static int backward(dt_tensor *loss)
{
    if (!loss) return dt__null_arg("dt_backward");
    if (loss->numel != 1 || !dt_dtype_is_float((dt_dtype)loss->dtype)) {
        char a[96];
        return dt_set_error(DT_EINVAL, "dt_backward: loss %s must be one floating element", dt_tensor_describe(loss, a, sizeof a));
    }
    dt__meta *lm = dt__meta_of(loss);
    if (!lm || (!lm->grad_fn && !lm->requires_grad))
        return dt_set_error(DT_EINVAL, "dt_backward: the loss does not require grad (no input required grad, or it was computed in no-grad mode)");
    dt_tensor *seed = dt__full((dt_dtype)loss->dtype, loss->ndim, loss->shape, 1);
    if (!seed) return dt_last_error_code();
    int rc = 0;
    if (!lm->grad_fn) {   /* the loss is itself a leaf */
        rc = dt__accumulate_leaf(loss, lm, seed);
        if (rc == 0) fire_hooks(loss, lm);
        dt_tensor_release(seed);
        return rc;
    }
    dt_node *root = lm->grad_fn;
    uint64_t epoch = atomic_fetch_add(&g_epoch, 1) + 1;
    if ((rc = count(root, epoch)) < 0) { dt_tensor_release(seed); return rc; }
    dt_tensor_release(root->gacc);
    root->gacc = seed;
    vec ready = {0};
    rc = push_ready(&ready, root);
    while (ready.n) {
        dt_node *n = ready.v[--ready.n];
        if (rc == 0) rc = run_node(n, &ready);
        dt__node_release(n);
    }
    dt_free(ready.v);
    return rc;
}
