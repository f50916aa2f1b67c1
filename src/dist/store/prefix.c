/* dist/store/prefix: a view of another store with every key written as
 * "prefix/key" (torch's PrefixStore). It retains its base and passes its own
 * timeout down on blocking calls; num_keys is the base's (as in torch). Thread
 * safety is the base's. It stores nothing itself. */
#include "dist/store/store_impl.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    dt_store base;
    dt_store *inner;   /* retained */
    char *prefix;      /* owned, without the '/' */
    size_t plen;
} prefix_store;

/* "prefix/key" as a dt_alloc'd string; NULL + DT_ENOMEM / DT_ERANGE. */
static char *full_key(const prefix_store *p, const char *key)
{
    size_t klen = strlen(key);
    if (p->plen + 1 + klen > DT__STORE_MAX_KEY) {
        dt_set_error(DT_ERANGE, "%s: key '%s' with its prefix is longer than the limit %u", p->base.desc, key,
                     DT__STORE_MAX_KEY);
        return NULL;
    }
    char *k = dt_alloc(p->plen + 1 + klen + 1, DT_MEM_COMM);
    if (!k) return NULL;
    memcpy(k, p->prefix, p->plen);
    k[p->plen] = '/';
    memcpy(k + p->plen + 1, key, klen + 1);
    return k;
}

/* An array of prefixed keys (each owned); NULL on failure. */
static char **full_keys(const prefix_store *p, const char *const *keys, int nkeys)
{
    char **out = dt_calloc((size_t)nkeys, sizeof *out, DT_MEM_COMM);
    if (!out) return NULL;
    for (int i = 0; i < nkeys; i++) {
        if (!(out[i] = full_key(p, keys[i]))) {
            for (int j = 0; j < i; j++) dt_free(out[j]);
            dt_free(out);
            return NULL;
        }
    }
    return out;
}

static void free_keys(char **keys, int nkeys)
{
    for (int i = 0; i < nkeys; i++) dt_free(keys[i]);
    dt_free(keys);
}

#define WITH_KEY(s, key, call)                                                 \
    do {                                                                       \
        prefix_store *p = (prefix_store *)(s);                                 \
        char *k = full_key(p, key);                                            \
        if (!k) return dt_last_error_code();                                   \
        int rc = (call);                                                       \
        dt_free(k);                                                            \
        return rc;                                                             \
    } while (0)

static int pre_set(dt_store *s, const char *key, const void *val, size_t len)
{
    WITH_KEY(s, key, p->inner->ops->set(p->inner, k, val, len));
}

static int pre_get(dt_store *s, const char *key, int64_t timeout_ms, void **val, size_t *len)
{
    WITH_KEY(s, key, p->inner->ops->get(p->inner, k, timeout_ms, val, len));
}

static int pre_add(dt_store *s, const char *key, int64_t delta, int64_t *out)
{
    WITH_KEY(s, key, p->inner->ops->add(p->inner, k, delta, out));
}

static int pre_compare_set(dt_store *s, const char *key, const void *expected, size_t elen, const void *desired,
                           size_t dlen, void **cur, size_t *cur_len)
{
    WITH_KEY(s, key, p->inner->ops->compare_set(p->inner, k, expected, elen, desired, dlen, cur, cur_len));
}

static int pre_del(dt_store *s, const char *key, bool *deleted)
{
    WITH_KEY(s, key, p->inner->ops->del(p->inner, k, deleted));
}

static int pre_wait(dt_store *s, const char *const *keys, int nkeys, int64_t timeout_ms)
{
    prefix_store *p = (prefix_store *)s;
    char **k = full_keys(p, keys, nkeys);
    if (!k) return dt_last_error_code();
    int rc = p->inner->ops->wait(p->inner, (const char *const *)k, nkeys, timeout_ms);
    free_keys(k, nkeys);
    return rc;
}

static int pre_check(dt_store *s, const char *const *keys, int nkeys, bool *exists)
{
    prefix_store *p = (prefix_store *)s;
    char **k = full_keys(p, keys, nkeys);
    if (!k) return dt_last_error_code();
    int rc = p->inner->ops->check(p->inner, (const char *const *)k, nkeys, exists);
    free_keys(k, nkeys);
    return rc;
}

static int pre_num_keys(dt_store *s, int64_t *out)
{
    prefix_store *p = (prefix_store *)s;
    return p->inner->ops->num_keys(p->inner, out);
}

static int pre_port(const dt_store *s) { return dt_store_port(((const prefix_store *)s)->inner); }

static void pre_destroy(dt_store *s)
{
    prefix_store *p = (prefix_store *)s;
    dt_store_release(p->inner);
    dt_free(p->prefix);
    dt_free(p);
}

static const dt__store_ops prefix_ops = {
    .kind = "prefix", .set = pre_set, .get = pre_get, .add = pre_add, .compare_set = pre_compare_set,
    .wait = pre_wait, .check = pre_check, .del = pre_del, .num_keys = pre_num_keys, .port = pre_port,
    .destroy = pre_destroy,
};

dt_store *dt_store_prefix(dt_store *base, const char *prefix)
{
    if (!base || !prefix) {
        dt_set_error(DT_EINVAL, "prefix store: %s is NULL", base ? "prefix" : "base");
        return NULL;
    }
    if (strlen(prefix) >= DT__STORE_MAX_KEY) {
        dt_set_error(DT_ERANGE, "prefix store: prefix of %zu bytes is too long", strlen(prefix));
        return NULL;
    }
    prefix_store *p = dt_calloc(1, sizeof *p, DT_MEM_COMM);
    if (!p) return NULL;
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = dt_store_timeout(base);
    if (dt__store_init(&p->base, &prefix_ops, &o, "%s (prefix '%s')", base->desc, prefix) < 0 ||
        !(p->prefix = dt_strdup(prefix))) {
        dt_free(p);
        return NULL;
    }
    p->plen = strlen(prefix);
    p->inner = dt_store_retain(base);
    return &p->base;
}
