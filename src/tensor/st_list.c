/* dt_st_list: entries and metadata gathered from several owners into one safetensors
 * file. Names are copied (prefix + name); tensor data stays borrowed. */
#include <dtrain/safetensors.h>
#include <dtrain/util.h>

#include <stdio.h>
#include <string.h>

struct dt_st_list {
    dt_st_entry *e;
    int64_t (*shapes)[DT_ST_MAX_DIMS];
    size_t n, cap;
    dt_st_meta *m;
    size_t nm, capm;
};

dt_st_list *dt_st_list_new(void) { return dt_calloc(1, sizeof(dt_st_list), DT_MEM_OTHER); }

void dt_st_list_free(dt_st_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) dt_free((char *)l->e[i].name);
    for (size_t i = 0; i < l->nm; i++) {
        dt_free((char *)l->m[i].key);
        dt_free((char *)l->m[i].value);
    }
    dt_free(l->e);
    dt_free(l->shapes);
    dt_free(l->m);
    dt_free(l);
}

static char *join(const char *prefix, const char *name)
{
    size_t a = prefix ? strlen(prefix) : 0, b = strlen(name);
    char *s = dt_alloc(a + b + 1, DT_MEM_OTHER);
    if (!s) return NULL;
    if (a) memcpy(s, prefix, a);
    memcpy(s + a, name, b + 1);
    return s;
}

int dt_st_list_add(dt_st_list *l, const char *prefix, const char *name, dt_dtype dtype, int ndim,
                   const int64_t *shape, const void *data)
{
    if (!l || !name) return dt_set_error(DT_EINVAL, "dt_st_list_add: NULL argument");
    if (ndim < 0 || ndim > DT_ST_MAX_DIMS) return dt_set_error(DT_EINVAL, "dt_st_list_add(%s): %d dims", name, ndim);
    char *full = join(prefix, name);
    if (!full) return dt_last_error_code();
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->e[i].name, full) == 0) {
            int rc = dt_set_error(DT_EINVAL, "dt_st_list_add: '%s' is already in the list", full);
            dt_free(full);
            return rc;
        }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        dt_st_entry *e = dt_realloc(l->e, cap * sizeof *e, DT_MEM_OTHER);
        if (!e) { dt_free(full); return dt_last_error_code(); }
        l->e = e;
        int64_t(*sh)[DT_ST_MAX_DIMS] = dt_realloc(l->shapes, cap * sizeof *sh, DT_MEM_OTHER);
        if (!sh) { dt_free(full); return dt_last_error_code(); }
        l->shapes = sh;
        l->cap = cap;
        for (size_t i = 0; i < l->n; i++) l->e[i].shape = l->shapes[i];   /* the shapes moved */
    }
    for (int d = 0; d < ndim; d++) l->shapes[l->n][d] = shape[d];
    l->e[l->n] = (dt_st_entry){full, dtype, ndim, l->shapes[l->n], data};
    l->n++;
    return 0;
}

int dt_st_list_meta(dt_st_list *l, const char *prefix, const char *key, const char *value)
{
    if (!l || !key || !value) return dt_set_error(DT_EINVAL, "dt_st_list_meta: NULL argument");
    char *k = join(prefix, key), *v = join(NULL, value);
    if (!k || !v) { dt_free(k); dt_free(v); return dt_last_error_code(); }
    for (size_t i = 0; i < l->nm; i++)
        if (strcmp(l->m[i].key, k) == 0) {
            dt_free(k);
            dt_free((char *)l->m[i].value);
            l->m[i].value = v;
            return 0;
        }
    if (l->nm == l->capm) {
        size_t cap = l->capm ? 2 * l->capm : 16;
        dt_st_meta *m = dt_realloc(l->m, cap * sizeof *m, DT_MEM_OTHER);
        if (!m) { dt_free(k); dt_free(v); return dt_last_error_code(); }
        l->m = m;
        l->capm = cap;
    }
    l->m[l->nm++] = (dt_st_meta){k, v};
    return 0;
}

const dt_st_entry *dt_st_list_entries(const dt_st_list *l, size_t *n)
{
    if (n) *n = l ? l->n : 0;
    return l ? l->e : NULL;
}

const dt_st_meta *dt_st_list_metas(const dt_st_list *l, size_t *n)
{
    if (n) *n = l ? l->nm : 0;
    return l ? l->m : NULL;
}

int dt_st_list_write(const dt_st_list *l, const char *path)
{
    if (!l) return dt_set_error(DT_EINVAL, "dt_st_list_write: NULL list");
    return dt_st_write(path, l->e, l->n, l->m, l->nm);
}
