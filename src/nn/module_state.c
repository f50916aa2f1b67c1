/* state_dict files: a module tree's parameters and buffers saved as safetensors under
 * torch's dotted names, and loaded back strictly (load_state_dict(strict=True)): every
 * key checked (present, expected, dtype, shape) before any value is copied.
 * Does not: save optimizer state (optim.h) or wrap several modules in one file. */
#include "nn/module_internal.h"

#include <dtrain/safetensors.h>

#include <stdio.h>
#include <string.h>

/* One entry of the state dict: the full name (owned) and the tensor (borrowed). */
typedef struct {
    char *name;
    dt_tensor *t;
} entry;

typedef struct {
    entry *e;
    size_t n, cap;
    int rc;
} dict;

static void add(dict *d, const char *prefix, size_t plen, const char *name, dt_tensor *t)
{
    if (d->rc) return;
    if (d->n == d->cap) {
        size_t nc = d->cap ? 2 * d->cap : 16;
        entry *e = dt_realloc(d->e, nc * sizeof *e, DT_MEM_OTHER);
        if (!e) {
            d->rc = DT_ENOMEM;
            return;
        }
        d->e = e;
        d->cap = nc;
    }
    size_t nl = strlen(name);
    char *full = dt_alloc(plen + nl + 1, DT_MEM_OTHER);
    if (!full) {
        d->rc = DT_ENOMEM;
        return;
    }
    memcpy(full, prefix, plen);
    memcpy(full + plen, name, nl + 1);
    d->e[d->n++] = (entry){full, t};
}

/* torch's state_dict order: a module's parameters, its buffers, then each child's. */
static void collect(dt_module *m, char *prefix, size_t plen, size_t cap, dict *d)
{
    for (size_t i = 0; i < m->nparams; i++) add(d, prefix, plen, m->params[i].name, m->params[i].t);
    for (size_t i = 0; i < m->nbuffers; i++) add(d, prefix, plen, m->buffers[i].name, m->buffers[i].t);
    for (size_t i = 0; i < m->nchildren && !d->rc; i++) {
        size_t cl = strlen(m->children[i].name);
        if (plen + cl + 2 > cap) {
            d->rc = dt_set_error(DT_EINVAL, "state_dict key longer than %zu characters", cap);
            return;
        }
        memcpy(prefix + plen, m->children[i].name, cl);
        prefix[plen + cl] = '.';
        collect(m->children[i].m, prefix, plen + cl + 1, cap, d);
    }
}

static void dict_free(dict *d)
{
    for (size_t i = 0; i < d->n; i++) dt_free(d->e[i].name);
    dt_free(d->e);
}

static int make_dict(dt_module *m, dict *d)
{
    memset(d, 0, sizeof *d);
    DT_CHECK(dt__module_ensure_packed(m));
    char prefix[1024];
    collect(m, prefix, 0, sizeof prefix, d);
    if (d->rc) {
        int rc = d->rc;
        dict_free(d);
        return rc;
    }
    return 0;
}

int dt_module_state_add(dt_module *m, dt_st_list *l, const char *prefix)
{
    if (!m || !l) return dt_set_error(DT_EINVAL, "dt_module_state_add: NULL argument");
    dict d;
    DT_CHECK(make_dict(m, &d));
    int rc = 0;
    for (size_t i = 0; i < d.n && rc == 0; i++) {
        dt_tensor *t = d.e[i].t;
        if (!dt_tensor_is_contiguous(t))
            rc = dt_set_error(DT_EINTERNAL, "dt_module_state_add: '%s' is not contiguous", d.e[i].name);
        else
            rc = dt_st_list_add(l, prefix, d.e[i].name, dt_tensor_dtype(t), dt_tensor_ndim(t), dt_tensor_shape(t),
                                dt_tensor_data(t));
    }
    dict_free(&d);
    return rc;
}

int dt_module_save(dt_module *m, const char *path)
{
    if (!m || !path) return dt_set_error(DT_EINVAL, "dt_module_save: NULL argument");
    dt_st_list *l = dt_st_list_new();
    int rc = l ? dt_module_state_add(m, l, NULL) : dt_last_error_code();
    if (rc == 0) rc = dt_st_list_write(l, path);
    if (rc < 0) dt_error_wrap(rc, "saving the state of %s", m->type);
    dt_st_list_free(l);
    return rc;
}

static bool same_shape(const dt_st_tensor *s, const dt_tensor *t)
{
    if (s->ndim != dt_tensor_ndim(t)) return false;
    for (int k = 0; k < s->ndim; k++)
        if (s->shape[k] != dt_tensor_shape(t)[k]) return false;
    return true;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    size_t at = (size_t)snprintf(buf, len, "[");
    for (int k = 0; k < ndim && at < len; k++) at += (size_t)snprintf(buf + at, len - at, k ? ", %lld" : "%lld", (long long)shape[k]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

/* f's entry for prefix + name, NULL when absent. */
static const dt_st_tensor *find(const dt_st_file *f, const char *prefix, const char *name)
{
    char key[1280];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return dt_st_find(f, key);
}

/* Checks every key of f under prefix against d: 0, or the first problem (missing and
 * unexpected keys first, as torch reports them, with how many more there are). */
static int check(const dt_st_file *f, const dict *d, const char *prefix, const char *path)
{
    size_t missing = 0, unexpected = 0, np = strlen(prefix);
    const char *first_missing = NULL, *first_unexpected = NULL;
    for (size_t i = 0; i < d->n; i++)
        if (!find(f, prefix, d->e[i].name) && missing++ == 0) first_missing = d->e[i].name;
    size_t nf = dt_st_count(f);
    for (size_t j = 0; j < nf; j++) {
        const char *name = dt_st_at(f, j)->name;
        if (strncmp(name, prefix, np) != 0) continue;   /* another part of the file */
        name += np;
        bool known = false;
        for (size_t i = 0; i < d->n && !known; i++) known = strcmp(d->e[i].name, name) == 0;
        if (!known && unexpected++ == 0) first_unexpected = name;
    }
    dt_clear_error();
    if (missing)
        return dt_set_error(DT_EMISMATCH, "%s: missing key '%s' (%zu key(s) missing, %zu unexpected)", path, first_missing,
                            missing, unexpected);
    if (unexpected)
        return dt_set_error(DT_EMISMATCH, "%s: unexpected key '%s' (%zu unexpected)", path, first_unexpected, unexpected);
    for (size_t i = 0; i < d->n; i++) {
        const dt_st_tensor *s = find(f, prefix, d->e[i].name);
        dt_tensor *t = d->e[i].t;
        if (s->dtype != dt_tensor_dtype(t))
            return dt_set_error(DT_EDTYPE, "%s: key '%s' is %s in the file, the module's is %s", path, d->e[i].name,
                                dt_dtype_name(s->dtype), dt_dtype_name(dt_tensor_dtype(t)));
        if (!same_shape(s, t)) {
            char a[160], b[160];
            shape_str(s->ndim, s->shape, a, sizeof a);
            shape_str(dt_tensor_ndim(t), dt_tensor_shape(t), b, sizeof b);
            return dt_set_error(DT_ESHAPE, "%s: key '%s' has shape %s in the file, the module's is %s", path, d->e[i].name, a, b);
        }
    }
    return 0;
}

int dt_module_state_load(dt_module *m, const dt_st_file *f, const char *prefix, const char *label)
{
    if (!m || !f) return dt_set_error(DT_EINVAL, "dt_module_state_load: NULL argument");
    if (!prefix) prefix = "";
    if (!label) label = "state";
    dict d;
    DT_CHECK(make_dict(m, &d));
    int rc = check(f, &d, prefix, label);
    for (size_t i = 0; rc == 0 && i < d.n; i++) {
        const dt_st_tensor *s = find(f, prefix, d.e[i].name);
        if (s->nbytes) memcpy(dt_tensor_data(d.e[i].t), s->data, s->nbytes);   /* file data may be unaligned */
    }
    dict_free(&d);
    return rc;
}

int dt_module_load(dt_module *m, const char *path)
{
    if (!m || !path) return dt_set_error(DT_EINVAL, "dt_module_load: NULL argument");
    dt_st_file *f = dt_st_open(path);
    int rc = f ? dt_module_state_load(m, f, "", path) : dt_last_error_code();
    if (rc < 0) dt_error_wrap(rc, "loading the state of %s", m->type);
    dt_st_close(f);
    return rc;
}
