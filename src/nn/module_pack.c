/* Flat parameter and gradient buffers of a module tree (CONVENTIONS: flat buffers with
 * named views), the named parameter lists and optimizer slots over them, and moving the
 * gradients into a caller's buffer (for DDP buckets in shared memory).
 *
 * Packing, at the root: number the parameters depth first (a module's own, then each
 * child's subtree: torch's named_parameters order), allocate one f32 buffer for their
 * values and one for their gradients, make each parameter a view of its slice with the
 * gradient slice as its .grad, copying values (and gradients) from where they were. All
 * new views are made before anything is replaced, so a failure leaves the tree as it was.
 * Does not: deduplicate tied parameters, or pack buffers (they keep their own storage). */
#include "nn/module_internal.h"

#include <string.h>

void dt__module_pack_free(dt__mod_pack *p)
{
    if (!p) return;
    dt_free(p->param);
    dt_free(p->grad_own);
    dt_free(p);
}

void dt__module_cache_clear(dt__mod_cache *c)
{
    for (size_t i = 0; c->names && i < c->n; i++) dt_free(c->names[i]);
    for (size_t i = 0; c->buffers && i < c->nb; i++) dt_free((char *)c->buffers[i].name);
    dt_free(c->names);
    dt_free(c->buffers);
    dt_free(c->params);
    dt_free(c->slots);
    memset(c, 0, sizeof *c);
}

static void cache_clear_cb(dt_module *m, void *arg)
{
    (void)arg;
    dt__module_cache_clear(&m->cache);
}

/* Assigns pack_start/pack_numel to m's subtree, counting from *at; counts params in *np. */
static void number(dt_module *m, int64_t *at, size_t *np)
{
    m->pack_start = *at;
    for (size_t i = 0; i < m->nparams; i++) *at += dt_tensor_numel(m->params[i].t);
    *np += m->nparams;
    for (size_t i = 0; i < m->nchildren; i++) number(m->children[i].m, at, np);
    m->pack_numel = *at - m->pack_start;
}

typedef struct {
    dt__mod_tensor **slot;   /* [np] where each parameter lives */
    dt_tensor **pv, **gv;    /* [np] new views */
    size_t i;
} gather;

static void gather_cb(dt_module *m, void *arg)
{
    gather *g = arg;
    for (size_t i = 0; i < m->nparams; i++) g->slot[g->i++] = &m->params[i];
}

static void free_pack_cb(dt_module *m, void *keep)
{
    if (m->pack != keep) {
        dt__module_pack_free(m->pack);
        m->pack = NULL;
    }
    m->dirty = false;
}

/* A caller-owned contiguous f32 view of buf[off ...] with t's shape. */
static dt_tensor *view_of(float *buf, int64_t off, const dt_tensor *t)
{
    return dt__module_own(dt_from_buffer(buf ? buf + off : NULL, DT_F32, dt_tensor_ndim(t), dt_tensor_shape(t)));
}

static int pack(dt_module *root)
{
    int64_t total = 0;
    size_t np = 0;
    number(root, &total, &np);
    int rc = 0;
    gather g = {0};
    dt__mod_pack *pk = dt_calloc(1, sizeof *pk, DT_MEM_OTHER);
    if (!pk) return DT_ENOMEM;
    pk->numel = total;
    if (total > 0) {
        pk->param = dt_alloc((size_t)total * sizeof(float), DT_MEM_PARAM);
        pk->grad_own = dt_calloc((size_t)total, sizeof(float), DT_MEM_GRAD);
        if (!pk->param || !pk->grad_own) {
            rc = DT_ENOMEM;
            goto fail;
        }
    }
    pk->grad = pk->grad_own;
    if (np) {
        g.slot = dt_calloc(np, sizeof *g.slot, DT_MEM_OTHER);
        g.pv = dt_calloc(np, sizeof *g.pv, DT_MEM_OTHER);
        g.gv = dt_calloc(np, sizeof *g.gv, DT_MEM_OTHER);
        if (!g.slot || !g.pv || !g.gv) {
            rc = DT_ENOMEM;
            goto fail;
        }
    }
    dt__module_walk(root, gather_cb, &g);
    int64_t off = 0;
    for (size_t i = 0; i < np; i++) {
        dt__mod_tensor *p = g.slot[i];
        g.pv[i] = view_of(pk->param, off, p->t);
        g.gv[i] = view_of(pk->grad, off, p->t);
        if (!g.pv[i] || !g.gv[i]) {
            rc = dt_last_error_code() ? dt_last_error_code() : DT_ENOMEM;
            goto fail;
        }
        DT_CHECK_GOTO(dt_tensor_copy_(g.pv[i], p->t), rc, fail);
        dt_tensor *old_grad = p->grad ? p->grad : dt_tensor_grad(p->t);
        if (old_grad) DT_CHECK_GOTO(dt_tensor_copy_(g.gv[i], old_grad), rc, fail);
        DT_CHECK_GOTO(dt_tensor_set_requires_grad(g.pv[i], true), rc, fail);
        DT_CHECK_GOTO(dt_tensor_set_grad_buffer(g.pv[i], g.gv[i]), rc, fail);
        off += dt_tensor_numel(p->t);
    }
    /* Commit: nothing below fails. */
    for (size_t i = 0; i < np; i++) {
        dt__mod_tensor *p = g.slot[i];
        dt_tensor_set_grad_buffer(p->t, NULL);
        dt_tensor_release(p->t);
        dt_tensor_release(p->grad);
        p->t = g.pv[i];
        p->grad = g.gv[i];
    }
    dt__module_walk(root, cache_clear_cb, NULL);
    dt__module_walk(root, free_pack_cb, pk);
    dt__module_pack_free(root->pack);
    root->pack = pk;
    root->dirty = false;
    dt_free(g.slot);
    dt_free(g.pv);
    dt_free(g.gv);
    return 0;
fail:
    for (size_t i = 0; g.pv && g.gv && i < np; i++) {
        if (g.pv[i]) dt_tensor_set_grad_buffer(g.pv[i], NULL);
        dt_tensor_release(g.pv[i]);
        dt_tensor_release(g.gv[i]);
    }
    dt_free(g.slot);
    dt_free(g.pv);
    dt_free(g.gv);
    dt__module_pack_free(pk);
    /* The numbering may be from the failed attempt: the root stays dirty. */
    root->dirty = true;
    return dt_error_wrap(rc, "packing the parameters of %s", root->type);
}

int dt__module_ensure_packed(dt_module *m)
{
    dt_module *r = dt__module_root(m);
    if (!r) return dt_set_error(DT_EINVAL, "NULL module");
    if (r->pack && !r->dirty) return 0;
    return pack(r);
}

int dt_module_finalize(dt_module *m) { return dt__module_ensure_packed(m); }

typedef struct {
    dt__mod_cache *c;
    int64_t at;   /* offset of the next parameter in m's slice */
    int rc;
} build;

static void build_names(dt_module *m, char *prefix, size_t plen, size_t cap, build *b)
{
    for (size_t i = 0; i < m->nparams && b->rc == 0; i++) {
        dt__mod_tensor *p = &m->params[i];
        size_t nl = strlen(p->name);
        char *full = dt_alloc(plen + nl + 1, DT_MEM_OTHER);
        if (!full) {
            b->rc = DT_ENOMEM;
            return;
        }
        memcpy(full, prefix, plen);
        memcpy(full + plen, p->name, nl + 1);
        size_t k = b->c->n++;
        b->c->names[k] = full;
        float *data = dt_tensor_data_f32(p->t), *grad = dt_tensor_data_f32(p->grad);
        b->c->params[k] = (dt_named_param){
            .name = full, .param = p->t, .grad = p->grad, .data = data, .grad_data = grad,
            .offset = b->at, .numel = dt_tensor_numel(p->t),
            .ndim = dt_tensor_ndim(p->t), .shape = dt_tensor_shape(p->t)};
        b->c->slots[k] = (dt_param_slot){full, data, grad, dt_tensor_numel(p->t)};
        b->at += dt_tensor_numel(p->t);
    }
    for (size_t i = 0; i < m->nbuffers && b->rc == 0; i++) {
        size_t nl = strlen(m->buffers[i].name);
        char *full = dt_alloc(plen + nl + 1, DT_MEM_OTHER);
        if (!full) {
            b->rc = DT_ENOMEM;
            return;
        }
        memcpy(full, prefix, plen);
        memcpy(full + plen, m->buffers[i].name, nl + 1);
        b->c->buffers[b->c->nb++] = (dt_named_buffer){full, m->buffers[i].t};
    }
    for (size_t i = 0; i < m->nchildren && b->rc == 0; i++) {
        size_t cl = strlen(m->children[i].name);
        if (plen + cl + 2 > cap) {
            b->rc = dt_set_error(DT_EINVAL, "parameter path longer than %zu characters", cap);
            return;
        }
        memcpy(prefix + plen, m->children[i].name, cl);
        prefix[plen + cl] = '.';
        build_names(m->children[i].m, prefix, plen + cl + 1, cap, b);
    }
}

static void count_params(dt_module *m, void *n) { *(size_t *)n += m->nparams; }
static void count_buffers(dt_module *m, void *n) { *(size_t *)n += m->nbuffers; }

/* Builds m's cache when needed. */
static int ensure_cache(dt_module *m)
{
    DT_CHECK(dt__module_ensure_packed(m));
    if (m->cache.valid) return 0;
    dt__module_cache_clear(&m->cache);
    size_t n = 0, nb = 0;
    dt__module_walk(m, count_params, &n);
    dt__module_walk(m, count_buffers, &nb);
    dt__mod_cache *c = &m->cache;
    if (n || nb) {
        c->params = dt_calloc(n + 1, sizeof *c->params, DT_MEM_OTHER);
        c->slots = dt_calloc(n + 1, sizeof *c->slots, DT_MEM_OTHER);
        c->names = dt_calloc(n + 1, sizeof *c->names, DT_MEM_OTHER);
        c->buffers = dt_calloc(nb + 1, sizeof *c->buffers, DT_MEM_OTHER);
        if (!c->params || !c->slots || !c->names || !c->buffers) {
            dt__module_cache_clear(c);
            return DT_ENOMEM;
        }
    }
    char prefix[1024];
    build b = {c, 0, 0};
    build_names(m, prefix, 0, sizeof prefix, &b);
    if (b.rc < 0) {
        dt__module_cache_clear(c);
        return b.rc;
    }
    c->valid = true;
    return 0;
}

/* Borrowed from m (see nn.h for how long). */
const dt_named_param *dt_module_params(dt_module *m, size_t *n)
{
    if (n) *n = 0;
    if (!m) {
        dt_set_error(DT_EINVAL, "dt_module_params: NULL module");
        return NULL;
    }
    if (ensure_cache(m) < 0) return NULL;
    if (n) *n = m->cache.n;
    return m->cache.n ? m->cache.params : NULL;
}

/* Borrowed from m, as dt_module_params. */
const dt_named_buffer *dt_module_buffers(dt_module *m, size_t *n)
{
    if (n) *n = 0;
    if (!m) {
        dt_set_error(DT_EINVAL, "dt_module_buffers: NULL module");
        return NULL;
    }
    if (ensure_cache(m) < 0) return NULL;
    if (n) *n = m->cache.nb;
    return m->cache.nb ? m->cache.buffers : NULL;
}

const dt_param_slot *dt_module_slots(dt_module *m, size_t *n)
{
    if (!dt_module_params(m, n)) return NULL;
    return m->cache.slots;
}

static float *slice(dt_module *m, int64_t *count, bool grad)
{
    if (count) *count = 0;
    if (!m || dt__module_ensure_packed(m) < 0) return NULL;
    dt__mod_pack *pk = dt__module_root(m)->pack;
    if (!m->pack_numel) return NULL;
    if (count) *count = m->pack_numel;
    return (grad ? pk->grad : pk->param) + m->pack_start;
}

float *dt_module_param_buffer(dt_module *m, int64_t *count) { return slice(m, count, false); }
float *dt_module_grad_buffer(dt_module *m, int64_t *count) { return slice(m, count, true); }

static void sum_numel(dt_module *m, void *acc)
{
    for (size_t i = 0; i < m->nparams; i++) *(int64_t *)acc += dt_tensor_numel(m->params[i].t);
}

int64_t dt_module_num_params(dt_module *m)
{
    int64_t n = 0;
    if (m) dt__module_walk(m, sum_numel, &n);
    return n;
}

void dt_module_zero_grad(dt_module *m)
{
    int64_t n;
    float *g = slice(m, &n, true);
    if (g) memset(g, 0, (size_t)n * sizeof(float));
}

/* buf is borrowed (NULL: back to the module's own buffer). */
int dt_module_set_grad_storage(dt_module *m, float *buf)
{
    if (!m) return dt_set_error(DT_EINVAL, "dt_module_set_grad_storage: NULL module");
    if (m->parent) return dt_set_error(DT_EINVAL, "dt_module_set_grad_storage: the %s is not a root module", m->type);
    DT_CHECK(dt__module_ensure_packed(m));
    dt__mod_pack *pk = m->pack;
    float *to = buf ? buf : pk->grad_own;
    if (to == pk->grad) return 0;
    size_t np = 0;
    dt__module_walk(m, count_params, &np);
    int rc = 0;
    gather g = {0};
    if (np) {
        g.slot = dt_calloc(np, sizeof *g.slot, DT_MEM_OTHER);
        g.gv = dt_calloc(np, sizeof *g.gv, DT_MEM_OTHER);
        if (!g.slot || !g.gv) {
            rc = DT_ENOMEM;
            goto done;
        }
    }
    dt__module_walk(m, gather_cb, &g);
    for (size_t i = 0; i < np; i++) {
        float *old = dt_tensor_data_f32(g.slot[i]->grad);
        g.gv[i] = view_of(to, old - pk->grad, g.slot[i]->t);
        if (!g.gv[i]) {
            rc = dt_last_error_code() ? dt_last_error_code() : DT_ENOMEM;
            goto done;
        }
    }
    if (pk->numel) memmove(to, pk->grad, (size_t)pk->numel * sizeof(float));
    for (size_t i = 0; i < np; i++) {
        dt__mod_tensor *p = g.slot[i];
        dt_tensor_set_grad_buffer(p->t, g.gv[i]);
        dt_tensor_release(p->grad);
        p->grad = g.gv[i];
        g.gv[i] = NULL;
    }
    pk->grad = to;
    dt__module_walk(m, cache_clear_cb, NULL);
done:
    for (size_t i = 0; g.gv && i < np; i++) dt_tensor_release(g.gv[i]);
    dt_free(g.slot);
    dt_free(g.gv);
    return rc;
}
