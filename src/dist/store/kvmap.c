/* dist/store/kvmap: a chained, seeded hash table of string keys to byte values,
 * and the add / compare_set rules every store applies (see kvmap.h). */
#include "dist/store/kvmap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_MIN_BUCKETS 16

static uint64_t hash_key(uint64_t seed, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;  /* FNV-1a, then a murmur3 finaliser */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 0x100000001b3ull;
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull; h ^= h >> 33;
    return h;
}

int dt__kvmap_init(dt__kvmap *m)
{
    memset(m, 0, sizeof *m);
    m->buckets = dt_calloc(KV_MIN_BUCKETS, sizeof *m->buckets, DT_MEM_COMM);
    if (!m->buckets) return dt_error_wrap(DT_ENOMEM, "store table");
    m->nbuckets = KV_MIN_BUCKETS;
    m->seed = (uint64_t)dt_now_ns() * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)m;
    return 0;
}

static void free_entry(dt__kv_entry *e)
{
    dt_free(e->key);
    dt_free(e->val);
    dt_free(e);
}

void dt__kvmap_clear(dt__kvmap *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (dt__kv_entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            free_entry(e);
        }
        m->buckets[i] = NULL;
    }
    m->count = 0;
}

void dt__kvmap_destroy(dt__kvmap *m)
{
    if (!m->buckets) return;
    dt__kvmap_clear(m);
    dt_free(m->buckets);
    memset(m, 0, sizeof *m);
}

dt__kv_entry *dt__kvmap_find(const dt__kvmap *m, const char *key)
{
    uint64_t h = hash_key(m->seed, key);
    for (dt__kv_entry *e = m->buckets[h & (m->nbuckets - 1)]; e; e = e->next)
        if (e->hash == h && strcmp(e->key, key) == 0) return e;
    return NULL;
}

/* Double the table; on allocation failure keep the old one (still correct, slower). */
static void grow(dt__kvmap *m)
{
    size_t nb = m->nbuckets * 2;
    dt__kv_entry **b = dt_calloc(nb, sizeof *b, DT_MEM_COMM);
    if (!b) { dt_clear_error(); return; }
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (dt__kv_entry *e = m->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    }
    dt_free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
}

int dt__kvmap_set(dt__kvmap *m, const char *key, const void *val, size_t len)
{
    void *copy = NULL;
    if (len > 0) {
        copy = dt_alloc(len, DT_MEM_COMM);
        if (!copy) return dt_error_wrap(DT_ENOMEM, "store value of key '%s'", key);
        memcpy(copy, val, len);
    }
    dt__kv_entry *e = dt__kvmap_find(m, key);
    if (e) {
        dt_free(e->val);
        e->val = copy;
        e->vlen = len;
        return 0;
    }
    e = dt_alloc(sizeof *e, DT_MEM_COMM);
    char *k = dt_strdup(key);
    if (!e || !k) {
        dt_free(e); dt_free(k); dt_free(copy);
        return dt_error_wrap(DT_ENOMEM, "store key '%s'", key);
    }
    e->hash = hash_key(m->seed, key);
    e->key = k;
    e->val = copy;
    e->vlen = len;
    e->next = m->buckets[e->hash & (m->nbuckets - 1)];
    m->buckets[e->hash & (m->nbuckets - 1)] = e;
    if (++m->count > m->nbuckets) grow(m);
    return 0;
}

bool dt__kvmap_del(dt__kvmap *m, const char *key)
{
    uint64_t h = hash_key(m->seed, key);
    for (dt__kv_entry **pp = &m->buckets[h & (m->nbuckets - 1)]; *pp; pp = &(*pp)->next) {
        dt__kv_entry *e = *pp;
        if (e->hash == h && strcmp(e->key, key) == 0) {
            *pp = e->next;
            free_entry(e);
            m->count--;
            return true;
        }
    }
    return false;
}

bool dt__kvmap_has_all(const dt__kvmap *m, const char *const *keys, int n)
{
    for (int i = 0; i < n; i++)
        if (!dt__kvmap_find(m, keys[i])) return false;
    return true;
}

int dt__kv_add_value(const dt__kv_entry *e, const char *key, int64_t delta, int64_t *out)
{
    int64_t cur = 0;
    if (e) {
        char buf[32];
        if (e->vlen == 0 || e->vlen >= sizeof buf)
            return dt_set_error(DT_EINVAL, "add: the value of key '%s' is not an integer (%zu bytes)", key, e->vlen);
        memcpy(buf, e->val, e->vlen);
        buf[e->vlen] = '\0';
        char *end;
        errno = 0;
        long long v = strtoll(buf, &end, 10);
        if (errno || end == buf || *end != '\0' || memchr(buf, '\0', e->vlen))
            return dt_set_error(DT_EINVAL, "add: the value of key '%s' is not an integer", key);
        cur = v;
    }
    if ((delta > 0 && cur > INT64_MAX - delta) || (delta < 0 && cur < INT64_MIN - delta))
        return dt_set_error(DT_ERANGE, "add: key '%s' would overflow (%" PRId64 " + %" PRId64 ")", key, cur, delta);
    *out = cur + delta;
    return 0;
}

size_t dt__kv_format_int(int64_t v, char *buf)
{
    return (size_t)snprintf(buf, 24, "%" PRId64, v);
}

bool dt__kv_cas_decide(const dt__kv_entry *e, const void *expected, size_t elen, const void *desired,
                       size_t dlen, const void **res, size_t *res_len)
{
    bool equal = e && e->vlen == elen && (elen == 0 || memcmp(e->val, expected, elen) == 0);
    if ((!e && elen == 0) || equal) {
        *res = desired;
        *res_len = dlen;
        return true;
    }
    if (!e) { *res = expected; *res_len = elen; }
    else { *res = e->val; *res_len = e->vlen; }
    return false;
}
