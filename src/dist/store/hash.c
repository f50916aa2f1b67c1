/* dist/store/hash: the in-process store (torch's HashStore): a kvmap under one
 * mutex, and one condition variable that every write broadcasts, so blocking
 * get / wait sleep until a key appears or their deadline. Shareable between
 * the threads of one process; nothing crosses a process boundary. */
#include "dist/store/kvmap.h"
#include "dist/store/store_impl.h"


typedef struct {
    dt_store base;
    pthread_mutex_t mu;   /* guards map */
    pthread_cond_t cv;    /* broadcast after every write; CLOCK_MONOTONIC */
    dt__kvmap map;
} hash_store;

/* With mu held: sleep until every key exists or the deadline. */
static int wait_locked(hash_store *h, const char *const *keys, int nkeys, int64_t timeout_ms)
{
    int64_t deadline = dt_deadline_ns(timeout_ms);
    while (!dt__kvmap_has_all(&h->map, keys, nkeys)) {
        if (dt_now_ns() >= deadline) return dt__store_timeout_error(&h->base, keys, nkeys, timeout_ms);
        dt__store_cond_wait(&h->cv, &h->mu, deadline);
    }
    return 0;
}

static int hash_set(dt_store *s, const char *key, const void *val, size_t len)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->mu);
    int rc = dt__kvmap_set(&h->map, key, val, len);
    if (rc == 0) pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

static int hash_get(dt_store *s, const char *key, int64_t timeout_ms, void **val, size_t *len)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->mu);
    int rc = wait_locked(h, &key, 1, timeout_ms);
    if (rc == 0) {
        const dt__kv_entry *e = dt__kvmap_find(&h->map, key);
        *val = dt__store_dup_value(e->val, e->vlen);
        *len = e->vlen;
        if (!*val) rc = dt_error_wrap(DT_ENOMEM, "%s get '%s'", s->desc, key);
    }
    pthread_mutex_unlock(&h->mu);
    return rc;
}

static int hash_add(dt_store *s, const char *key, int64_t delta, int64_t *out)
{
    hash_store *h = (hash_store *)s;
    char txt[24];
    pthread_mutex_lock(&h->mu);
    int rc = dt__kv_add_value(dt__kvmap_find(&h->map, key), key, delta, out);
    if (rc == 0) rc = dt__kvmap_set(&h->map, key, txt, dt__kv_format_int(*out, txt));
    if (rc == 0) pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

static int hash_compare_set(dt_store *s, const char *key, const void *expected, size_t elen, const void *desired,
                            size_t dlen, void **cur, size_t *cur_len)
{
    hash_store *h = (hash_store *)s;
    const void *res;
    int rc = 0;
    pthread_mutex_lock(&h->mu);
    if (dt__kv_cas_decide(dt__kvmap_find(&h->map, key), expected, elen, desired, dlen, &res, cur_len)) {
        rc = dt__kvmap_set(&h->map, key, desired, dlen);
        if (rc == 0) pthread_cond_broadcast(&h->cv);
    }
    if (rc == 0 && !(*cur = dt__store_dup_value(res, *cur_len))) rc = dt_error_wrap(DT_ENOMEM, "%s compare_set", s->desc);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

static int hash_wait(dt_store *s, const char *const *keys, int nkeys, int64_t timeout_ms)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->mu);
    int rc = wait_locked(h, keys, nkeys, timeout_ms);
    pthread_mutex_unlock(&h->mu);
    return rc;
}

static int hash_check(dt_store *s, const char *const *keys, int nkeys, bool *exists)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->mu);
    *exists = dt__kvmap_has_all(&h->map, keys, nkeys);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static int hash_del(dt_store *s, const char *key, bool *deleted)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->mu);
    *deleted = dt__kvmap_del(&h->map, key);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static int hash_num_keys(dt_store *s, int64_t *out)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->mu);
    *out = (int64_t)h->map.count;
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static void hash_destroy(dt_store *s)
{
    hash_store *h = (hash_store *)s;
    dt__kvmap_destroy(&h->map);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
    dt_free(h);
}

static const dt__store_ops hash_ops = {
    .kind = "hash", .set = hash_set, .get = hash_get, .add = hash_add, .compare_set = hash_compare_set,
    .wait = hash_wait, .check = hash_check, .del = hash_del, .num_keys = hash_num_keys, .port = NULL,
    .destroy = hash_destroy,
};

dt_store *dt_store_hash(const dt_store_opts *opts)
{
    hash_store *h = dt_calloc(1, sizeof *h, DT_MEM_COMM);
    if (!h) return NULL;
    if (dt__store_init(&h->base, &hash_ops, opts, "hash store %p", (void *)h) < 0 || dt__kvmap_init(&h->map) < 0) {
        dt_free(h->map.buckets);
        dt_free(h);
        return NULL;
    }
    pthread_mutex_init(&h->mu, NULL);
    dt__store_cond_init(&h->cv);
    return &h->base;
}
