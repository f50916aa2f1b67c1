/* dist/store/kvmap: the key -> value table behind the TCP store's server, the
 * hash store and the file store's replayed view, and the rules the three share
 * (add's decimal integers, compare_set's decision), so the stores cannot drift.
 *
 * Keys are NUL-terminated strings, values byte strings; the map owns copies of
 * both. A chained hash table with a per-map random seed (a client cannot pick
 * keys that all collide) that doubles when its load passes 1.
 * Not thread-safe: each owner locks around it as it needs. */
#ifndef DT_STORE_KVMAP_H
#define DT_STORE_KVMAP_H

#include <dtrain/util.h>

typedef struct dt__kv_entry {
    struct dt__kv_entry *next;   /* bucket chain */
    uint64_t hash;
    char *key;                   /* owned, NUL-terminated */
    void *val;                   /* owned; NULL when vlen == 0 */
    size_t vlen;
} dt__kv_entry;

typedef struct {
    dt__kv_entry **buckets;      /* nbuckets chains; nbuckets a power of two */
    size_t nbuckets, count;
    uint64_t seed;
} dt__kvmap;

int dt__kvmap_init(dt__kvmap *m);
/* Frees every entry and the table (a zeroed map is fine). */
void dt__kvmap_destroy(dt__kvmap *m);
/* Removes every entry, keeping the table. */
void dt__kvmap_clear(dt__kvmap *m);
/* The entry for key, or NULL. Borrowed: valid until the map next changes. */
dt__kv_entry *dt__kvmap_find(const dt__kvmap *m, const char *key);
/* Set key to a copy of val[0, len). On DT_ENOMEM the map is unchanged. */
int dt__kvmap_set(dt__kvmap *m, const char *key, const void *val, size_t len);
/* Remove key; returns whether it was there. */
bool dt__kvmap_del(dt__kvmap *m, const char *key);
/* Whether every one of the n keys is in the map. */
bool dt__kvmap_has_all(const dt__kvmap *m, const char *const *keys, int n);

/* add: the integer a value holds (decimal text, as torch stores it; an absent
 * key is 0) plus delta. DT_EINVAL naming the key when the value is not an
 * integer, DT_ERANGE on overflow. */
int dt__kv_add_value(const dt__kv_entry *e, const char *key, int64_t delta, int64_t *out);
/* Decimal text of v into buf (at least 24 bytes); returns its length. */
size_t dt__kv_format_int(int64_t v, char *buf);

/* compare_set, exactly torch's rule: when the key is absent and expected is
 * empty, or present and equal to expected, the key becomes desired (returns
 * true) and the result is desired; when absent with a non-empty expected the
 * result is expected; otherwise the result is the current value. *res points
 * into e, expected or desired (borrowed). */
bool dt__kv_cas_decide(const dt__kv_entry *e, const void *expected, size_t elen, const void *desired,
                       size_t dlen, const void **res, size_t *res_len);

#endif /* DT_STORE_KVMAP_H */
