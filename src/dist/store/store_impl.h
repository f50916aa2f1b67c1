/* dist/store/store_impl: the one interface every store kind implements (an ops
 * table), and the common header each kind's object starts with.
 *
 * The front (store.c) checks arguments, resolves timeouts and counts
 * references; an ops function may assume: s, keys and out-pointers non-NULL,
 * key lengths <= DT__STORE_MAX_KEY, value lengths <= DT__STORE_MAX_VALUE,
 * 0 <= nkeys <= DT__STORE_MAX_KEYS, timeout_ms >= 0 (already resolved). Each
 * sets the last error on failure; a timeout message names the keys and the
 * store (dt__store_timeout_error builds it). */
#ifndef DT_STORE_IMPL_H
#define DT_STORE_IMPL_H

#include <dtrain/store.h>
#include <pthread.h>
#include <stdatomic.h>

/* Limits every store enforces (the TCP server also on what it reads from the wire). */
#define DT__STORE_MAX_KEY   4096u                 /* bytes in a key, without the NUL */
#define DT__STORE_MAX_VALUE (64u << 20)           /* bytes in a value */
#define DT__STORE_MAX_KEYS  4096                  /* keys in one wait / check */
/* Longer timeouts are cut to this (a year), so deadlines never overflow. */
#define DT__STORE_MAX_TIMEOUT_MS ((int64_t)366 * 86400 * 1000)

typedef struct dt__store_ops {
    const char *kind;   /* "tcp", "file", "hash", "prefix" */
    int (*set)(dt_store *s, const char *key, const void *val, size_t len);
    int (*get)(dt_store *s, const char *key, int64_t timeout_ms, void **val, size_t *len);
    int (*add)(dt_store *s, const char *key, int64_t delta, int64_t *out);
    int (*compare_set)(dt_store *s, const char *key, const void *expected, size_t elen,
                       const void *desired, size_t dlen, void **cur, size_t *cur_len);
    int (*wait)(dt_store *s, const char *const *keys, int nkeys, int64_t timeout_ms);
    int (*check)(dt_store *s, const char *const *keys, int nkeys, bool *exists);
    int (*del)(dt_store *s, const char *key, bool *deleted);
    int (*num_keys)(dt_store *s, int64_t *out);
    int (*port)(const dt_store *s);          /* NULL: -1 */
    void (*destroy)(dt_store *s);            /* frees the whole object */
} dt__store_ops;

/* The first member of every kind's object. desc names the store in messages
 * ("tcp store 127.0.0.1:29500", "file store /tmp/x"). */
struct dt_store {
    const dt__store_ops *ops;
    atomic_int refs;
    atomic_llong timeout_ms;   /* >= 0 */
    char desc[320];
};

/* Fill the header: refs = 1, the timeout from opts (or DTRAIN_TIMEOUT),
 * desc from the format. DT_EINVAL when DTRAIN_TIMEOUT is not valid. */
int dt__store_init(dt_store *s, const dt__store_ops *ops, const dt_store_opts *opts, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* opts' timeout resolved: opts->timeout_ms if >= 0, else DTRAIN_TIMEOUT * 1000. */
int dt__store_resolve_timeout(const dt_store_opts *opts, int64_t *out);

/* DT_ETIMEOUT with "waiting for key(s) 'a', 'b' in <desc> after N ms". */
int dt__store_timeout_error(const dt_store *s, const char *const *keys, int nkeys, int64_t timeout_ms);

/* A dt_alloc'd copy of len bytes (one extra NUL, so len 0 still allocates):
 * the form every get / compare_set result is handed back in. NULL + DT_ENOMEM. */
void *dt__store_dup_value(const void *val, size_t len);

/* Sleep before the attempt'th re-poll of a polling wait (file store): 1 ms
 * doubling to 64 ms, with jitter, never past deadline_ns. */
void dt__store_poll_sleep(int attempt, int64_t deadline_ns);

/* Initialise a condition variable whose timed waits use CLOCK_MONOTONIC (the
 * clock of dt_deadline_ns), and wait on it until deadline_ns (INT64_MAX: an
 * hour at a time). Returns ETIMEDOUT when the deadline passed, else 0. */
void dt__store_cond_init(pthread_cond_t *cv);
int dt__store_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ns);

#endif /* DT_STORE_IMPL_H */
