/* The module tree: creation, children, parameters and buffers by name, lookups by dotted
 * path, train/eval mode, forward, and freeing. The flat buffers are module_pack.c, state
 * dicts module_state.c, the built-in layers layers*.c. */
#include "nn/module_internal.h"

#include <string.h>

dt_tensor *dt__module_own(dt_tensor *t)
{
    if (!t) return NULL;
    dt_tensor_retain(t);
    dt_tensor_discard(t);
    return t;
}

dt_module *dt__module_root(dt_module *m)
{
    while (m && m->parent) m = m->parent;
    return m;
}

void dt__module_touch(dt_module *m)
{
    dt_module *r = dt__module_root(m);
    if (r) r->dirty = true;
}

void dt__module_walk(dt_module *m, void (*fn)(dt_module *, void *), void *arg)
{
    fn(m, arg);
    for (size_t i = 0; i < m->nchildren; i++) dt__module_walk(m->children[i].m, fn, arg);
}

/* Owned by the caller (a root); free with dt_module_free. */
dt_module *dt_module_new(const char *type_name, dt_module_forward_fn forward, void *ctx,
                         void (*free_ctx)(void *))
{
    dt_module *m = dt_calloc(1, sizeof *m, DT_MEM_OTHER);
    if (!m) return NULL;
    m->type = dt_strdup(type_name ? type_name : "Module");
    if (!m->type) {
        dt_free(m);
        return NULL;
    }
    m->forward = forward;
    m->ctx = ctx;
    m->free_ctx = free_ctx;
    m->training = true;
    m->dirty = true;
    return m;
}

static bool name_taken(const dt_module *m, const char *name)
{
    for (size_t i = 0; i < m->nchildren; i++)
        if (strcmp(m->children[i].name, name) == 0) return true;
    for (size_t i = 0; i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return true;
    for (size_t i = 0; i < m->nbuffers; i++)
        if (strcmp(m->buffers[i].name, name) == 0) return true;
    return false;
}

static int check_name(const dt_module *m, const char *name, const char *what)
{
    if (!m) return dt_set_error(DT_EINVAL, "dt_module_add_%s: NULL module", what);
    if (!name || !name[0] || strchr(name, '.'))
        return dt_set_error(DT_EINVAL, "dt_module_add_%s: bad name '%s' (not empty, no dots)", what, name ? name : "(null)");
    if (name_taken(m, name))
        return dt_set_error(DT_EINVAL, "dt_module_add_%s: %s already has a member named '%s'", what, m->type, name);
    return 0;
}

/* Grows *arr (of elem-sized items, *cap of them) to hold one more. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 4;
    void *p = dt_realloc(*arr, nc * elem, DT_MEM_OTHER);
    if (!p) return DT_ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

/* Takes ownership of child (freed on failure unless it already has a parent). */
int dt_module_add_child(dt_module *m, const char *name, dt_module *child)
{
    if (!child) {
        int code = dt_last_error_code();
        return code ? dt_error_wrap(code, "dt_module_add_child('%s')", name ? name : "(null)")
                    : dt_set_error(DT_EINVAL, "dt_module_add_child('%s'): NULL child", name ? name : "(null)");
    }
    if (child->parent)
        return dt_set_error(DT_EINVAL, "dt_module_add_child('%s'): the %s already has a parent", name ? name : "(null)", child->type);
    int rc = check_name(m, name, "child");
    if (rc == 0 && dt__module_root(m) == child) rc = dt_set_error(DT_EINVAL, "dt_module_add_child('%s'): a module cannot contain itself", name);
    char *nm = NULL;
    if (rc == 0 && !(nm = dt_strdup(name))) rc = DT_ENOMEM;
    if (rc == 0) rc = grow((void **)&m->children, &m->cap_children, m->nchildren, sizeof *m->children);
    if (rc < 0) {
        dt_free(nm);
        dt_module_free(child);
        return rc;
    }
    /* The child's own flat buffers (if it was used on its own) go at the next repack,
     * which copies its values out of them first. */
    m->children[m->nchildren++] = (dt__mod_child){nm, child};
    child->parent = m;
    dt__module_touch(m);
    return 0;
}

static int add_tensor(dt_module *m, const char *name, dt_tensor *init, bool param)
{
    const char *what = param ? "param" : "buffer";
    DT_CHECK(check_name(m, name, what));
    if (!init) return dt_set_error(DT_EINVAL, "dt_module_add_%s('%s'): NULL tensor", what, name);
    if (param && dt_tensor_dtype(init) != DT_F32)
        return dt_set_error(DT_EDTYPE, "dt_module_add_param('%s'): parameters are f32, got %s", name, dt_dtype_name(dt_tensor_dtype(init)));
    dt__mod_tensor **arr = param ? &m->params : &m->buffers;
    size_t *n = param ? &m->nparams : &m->nbuffers, *cap = param ? &m->cap_params : &m->cap_buffers;
    DT_CHECK(grow((void **)arr, cap, *n, sizeof **arr));
    char *nm = dt_strdup(name);
    if (!nm) return DT_ENOMEM;
    dt_mem_cat old = dt_tensor_set_mem_cat(DT_MEM_PARAM);
    dt_tensor *t = dt__module_own(dt_empty(dt_tensor_dtype(init), dt_tensor_ndim(init), dt_tensor_shape(init)));
    dt_tensor_set_mem_cat(old);
    int rc = t ? dt_tensor_copy_(t, init) : dt_last_error_code();
    if (rc < 0) {
        dt_tensor_release(t);
        dt_free(nm);
        return rc;
    }
    (*arr)[(*n)++] = (dt__mod_tensor){nm, t, NULL};
    dt__module_touch(m);   /* lists and slots change (a buffer only needs the lists rebuilt) */
    return 0;
}

int dt_module_add_param(dt_module *m, const char *name, dt_tensor *init) { return add_tensor(m, name, init, true); }
int dt_module_add_buffer(dt_module *m, const char *name, dt_tensor *init) { return add_tensor(m, name, init, false); }

/* Resolves "a.b.c": the module holding the last component and that component (pointing
 * into path). NULL when a module on the way is missing. */
static dt_module *walk_path(dt_module *m, const char *path, const char **last)
{
    const char *p = path;
    for (const char *dot; (dot = strchr(p, '.')); p = dot + 1) {
        size_t len = (size_t)(dot - p);
        dt_module *next = NULL;
        for (size_t i = 0; i < m->nchildren; i++)
            if (strlen(m->children[i].name) == len && memcmp(m->children[i].name, p, len) == 0) next = m->children[i].m;
        if (!next) return NULL;
        m = next;
    }
    *last = p;
    return m;
}

/* Borrowed. */
dt_module *dt_module_child(dt_module *m, const char *path)
{
    const char *last;
    dt_module *h = (m && path) ? walk_path(m, path, &last) : NULL;
    if (h)
        for (size_t i = 0; i < h->nchildren; i++)
            if (strcmp(h->children[i].name, last) == 0) return h->children[i].m;
    dt_set_error(DT_ENOTFOUND, "dt_module_child: no submodule '%s'", path ? path : "(null)");
    return NULL;
}

static dt_tensor *find_tensor(dt_module *m, const char *path, bool param)
{
    const char *last;
    dt_module *h = (m && path) ? walk_path(m, path, &last) : NULL;
    if (h) {
        dt__mod_tensor *arr = param ? h->params : h->buffers;
        size_t n = param ? h->nparams : h->nbuffers;
        for (size_t i = 0; i < n; i++)
            if (strcmp(arr[i].name, last) == 0) return arr[i].t;
    }
    dt_set_error(DT_ENOTFOUND, "dt_module_%s: no %s '%s'", param ? "param" : "buffer", param ? "parameter" : "buffer",
                 path ? path : "(null)");
    return NULL;
}

/* Borrowed: the packed view (valid until a repack or dt_module_free). */
dt_tensor *dt_module_param(dt_module *m, const char *path)
{
    if (m && dt__module_ensure_packed(m) < 0) return NULL;
    return find_tensor(m, path, true);
}

dt_tensor *dt_module_buffer(dt_module *m, const char *path) { return find_tensor(m, path, false); }

size_t dt_module_num_children(const dt_module *m) { return m ? m->nchildren : 0; }

dt_module *dt_module_child_at(const dt_module *m, size_t i, const char **name)
{
    if (!m || i >= m->nchildren) {
        if (name) *name = NULL;
        return NULL;
    }
    if (name) *name = m->children[i].name;
    return m->children[i].m;
}

const char *dt_module_type(const dt_module *m) { return m ? m->type : NULL; }
void *dt_module_ctx(const dt_module *m) { return m ? m->ctx : NULL; }

/* Result: a new reference owned by the innermost scope (or the caller). */
dt_tensor *dt_module_forward(dt_module *m, dt_tensor *x)
{
    if (!m) {
        dt_set_error(DT_EINVAL, "dt_module_forward: NULL module");
        return NULL;
    }
    if (!m->forward) {
        dt_set_error(DT_EINVAL, "dt_module_forward: %s has no forward function", m->type);
        return NULL;
    }
    if (!x) {
        int code = dt_last_error_code();
        if (code) dt_error_wrap(code, "%s forward", m->type);
        else dt_set_error(DT_EINVAL, "%s forward: NULL input", m->type);
        return NULL;
    }
    if (dt__module_ensure_packed(m) < 0) return NULL;
    return m->forward(m, x, m->ctx);
}

static void set_mode(dt_module *m, void *on) { m->training = *(bool *)on; }

void dt_module_train(dt_module *m, bool on)
{
    if (m) dt__module_walk(m, set_mode, &on);
}

bool dt_module_is_training(const dt_module *m) { return m && m->training; }

static void free_tree(dt_module *m)
{
    for (size_t i = 0; i < m->nchildren; i++) {
        free_tree(m->children[i].m);
        dt_free(m->children[i].name);
    }
    for (size_t i = 0; i < m->nparams; i++) {
        if (m->params[i].grad) dt_tensor_set_grad_buffer(m->params[i].t, NULL);
        dt_tensor_release(m->params[i].t);
        dt_tensor_release(m->params[i].grad);
        dt_free(m->params[i].name);
    }
    for (size_t i = 0; i < m->nbuffers; i++) {
        dt_tensor_release(m->buffers[i].t);
        dt_free(m->buffers[i].name);
    }
    dt__module_cache_clear(&m->cache);
    dt__module_pack_free(m->pack);
    if (m->free_ctx) m->free_ctx(m->ctx);
    dt_free(m->children);
    dt_free(m->params);
    dt_free(m->buffers);
    dt_free(m->type);
    dt_free(m);
}

/* Frees a root and everything it owns; a child is its parent's to free. */
void dt_module_free(dt_module *m)
{
    if (!m) return;
    if (m->parent) {
        dt_log(DT_LOG_WARN, DT_SUB_NN, "dt_module_free: the %s belongs to a parent module; not freed", m->type);
        return;
    }
    free_tree(m);
}
