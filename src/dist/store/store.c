/* dist/store/store: the public store API's front. Checks arguments, resolves
 * timeouts (a call's, the store's, DTRAIN_TIMEOUT), counts references and
 * dispatches to the kind's ops table. Knows nothing of any kind's workings. */
#include "dist/store/store_impl.h"
#include "dist/net.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t clamp_timeout(int64_t ms) { return ms > DT__STORE_MAX_TIMEOUT_MS ? DT__STORE_MAX_TIMEOUT_MS : ms; }

int dt__store_resolve_timeout(const dt_store_opts *opts, int64_t *out)
{
    if (opts && opts->timeout_ms >= 0) { *out = clamp_timeout(opts->timeout_ms); return 0; }
    int64_t sec = 0;
    DT_CHECK(dt_param_int(DT_PARAM_TIMEOUT, &sec));
    *out = clamp_timeout(sec * 1000);
    return 0;
}

int dt__store_init(dt_store *s, const dt__store_ops *ops, const dt_store_opts *opts, const char *fmt, ...)
{
    int64_t t = 0;
    DT_CHECK(dt__store_resolve_timeout(opts, &t));
    s->ops = ops;
    atomic_init(&s->refs, 1);
    atomic_init(&s->timeout_ms, t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->desc, sizeof s->desc, fmt, ap);
    va_end(ap);
    return 0;
}

int dt__store_timeout_error(const dt_store *s, const char *const *keys, int nkeys, int64_t timeout_ms)
{
    char list[512];
    size_t n = 0;
    list[0] = '\0';
    for (int i = 0; i < nkeys && n < sizeof list - 8; i++) {
        int w = snprintf(list + n, sizeof list - n, "%s'%s'", i ? ", " : "", keys[i]);
        if (w < 0) break;
        n += (size_t)w;
    }
    if (n >= sizeof list - 8) snprintf(list + sizeof list - 8, 8, ", ...");
    return dt_set_error(DT_ETIMEOUT, "waiting for key%s %s in %s after %lld ms", nkeys == 1 ? "" : "s", list,
                        s->desc, (long long)timeout_ms);
}

void *dt__store_dup_value(const void *val, size_t len)
{
    char *p = dt_alloc(len + 1, DT_MEM_COMM);
    if (!p) return NULL;
    if (len) memcpy(p, val, len);
    p[len] = '\0';
    return p;
}

void dt__store_poll_sleep(int attempt, int64_t deadline_ns)
{
    int64_t ms = attempt < 6 ? (int64_t)1 << attempt : 64;
    ms = (int64_t)((double)ms * (0.75 + 0.5 * dt__net_jitter01()));
    if (ms < 1) ms = 1;
    int64_t left = dt_ms_left(deadline_ns);
    if (left >= 0 && ms > left) ms = left;
    dt_sleep_ms(ms);
}

void dt__store_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

int dt__store_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ns)
{
    int64_t dl = deadline_ns == INT64_MAX ? dt_now_ns() + 3600 * 1000000000LL : deadline_ns;
    struct timespec ts = {.tv_sec = dl / 1000000000LL, .tv_nsec = dl % 1000000000LL};
    pthread_cond_timedwait(cv, mu, &ts);
    return dt_now_ns() >= deadline_ns ? ETIMEDOUT : 0;
}

/* ------------------------------------------------------------ argument checks */

static int check_store(const dt_store *s, const char *op)
{
    if (!s) return dt_set_error(DT_EINVAL, "store %s: store is NULL", op);
    return 0;
}

static int check_key(const dt_store *s, const char *key, const char *op)
{
    if (!key) return dt_set_error(DT_EINVAL, "%s %s: key is NULL", s->desc, op);
    size_t n = strlen(key);
    if (n > DT__STORE_MAX_KEY)
        return dt_set_error(DT_ERANGE, "%s %s: key of %zu bytes is longer than the limit %u", s->desc, op, n,
                            DT__STORE_MAX_KEY);
    return 0;
}

static int check_value(const dt_store *s, const void *val, size_t len, const char *op)
{
    if (!val && len) return dt_set_error(DT_EINVAL, "%s %s: value is NULL with length %zu", s->desc, op, len);
    if (len > DT__STORE_MAX_VALUE)
        return dt_set_error(DT_ERANGE, "%s %s: value of %zu bytes is larger than the limit %u", s->desc, op, len,
                            DT__STORE_MAX_VALUE);
    return 0;
}

static int check_keys(const dt_store *s, const char *const *keys, int nkeys, const char *op)
{
    if (nkeys < 0 || (nkeys > 0 && !keys))
        return dt_set_error(DT_EINVAL, "%s %s: bad key list (%d keys)", s->desc, op, nkeys);
    if (nkeys > DT__STORE_MAX_KEYS)
        return dt_set_error(DT_ERANGE, "%s %s: %d keys is more than the limit %d", s->desc, op, nkeys,
                            DT__STORE_MAX_KEYS);
    for (int i = 0; i < nkeys; i++) DT_CHECK(check_key(s, keys[i], op));
    return 0;
}

/* ------------------------------------------------------------------ the API */

dt_store *dt_store_retain(dt_store *s)
{
    if (s) atomic_fetch_add(&s->refs, 1);
    return s;
}

void dt_store_release(dt_store *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) s->ops->destroy(s);
}

int dt_store_port(const dt_store *s)
{
    return s && s->ops->port ? s->ops->port(s) : -1;
}

void dt_store_set_timeout(dt_store *s, int64_t timeout_ms)
{
    if (!s) return;
    if (timeout_ms < 0) {
        dt_store_opts o = DT_STORE_OPTS_INIT;
        if (dt__store_resolve_timeout(&o, &timeout_ms) < 0) return;
    }
    atomic_store(&s->timeout_ms, clamp_timeout(timeout_ms));
}

int64_t dt_store_timeout(const dt_store *s)
{
    return s ? atomic_load(&s->timeout_ms) : -1;
}

int dt_store_set(dt_store *s, const char *key, const void *val, size_t len)
{
    DT_CHECK(check_store(s, "set"));
    DT_CHECK(check_key(s, key, "set"));
    DT_CHECK(check_value(s, val, len, "set"));
    return s->ops->set(s, key, val, len);
}

int dt_store_get(dt_store *s, const char *key, void **val, size_t *len)
{
    DT_CHECK(check_store(s, "get"));
    DT_CHECK(check_key(s, key, "get"));
    if (!val || !len) return dt_set_error(DT_EINVAL, "%s get: val or len is NULL", s->desc);
    *val = NULL;
    *len = 0;
    return s->ops->get(s, key, atomic_load(&s->timeout_ms), val, len);
}

int dt_store_add(dt_store *s, const char *key, int64_t delta, int64_t *out)
{
    DT_CHECK(check_store(s, "add"));
    DT_CHECK(check_key(s, key, "add"));
    int64_t dummy;
    return s->ops->add(s, key, delta, out ? out : &dummy);
}

int dt_store_compare_set(dt_store *s, const char *key, const void *expected, size_t expected_len,
                         const void *desired, size_t desired_len, void **cur, size_t *cur_len)
{
    DT_CHECK(check_store(s, "compare_set"));
    DT_CHECK(check_key(s, key, "compare_set"));
    DT_CHECK(check_value(s, expected, expected_len, "compare_set"));
    DT_CHECK(check_value(s, desired, desired_len, "compare_set"));
    void *v = NULL;
    size_t n = 0;
    if (cur) *cur = NULL;
    if (cur_len) *cur_len = 0;
    int rc = s->ops->compare_set(s, key, expected, expected_len, desired, desired_len, &v, &n);
    if (rc < 0) return rc;
    if (cur) *cur = v;
    else dt_free(v);
    if (cur_len) *cur_len = n;
    return 0;
}

int dt_store_wait(dt_store *s, const char *const *keys, int nkeys, int64_t timeout_ms)
{
    DT_CHECK(check_store(s, "wait"));
    DT_CHECK(check_keys(s, keys, nkeys, "wait"));
    if (nkeys == 0) return 0;
    return s->ops->wait(s, keys, nkeys, timeout_ms < 0 ? atomic_load(&s->timeout_ms) : clamp_timeout(timeout_ms));
}

int dt_store_check(dt_store *s, const char *const *keys, int nkeys, bool *exists)
{
    DT_CHECK(check_store(s, "check"));
    DT_CHECK(check_keys(s, keys, nkeys, "check"));
    if (!exists) return dt_set_error(DT_EINVAL, "%s check: exists is NULL", s->desc);
    *exists = true;
    if (nkeys == 0) return 0;
    return s->ops->check(s, keys, nkeys, exists);
}

int dt_store_delete(dt_store *s, const char *key, bool *deleted)
{
    DT_CHECK(check_store(s, "delete"));
    DT_CHECK(check_key(s, key, "delete"));
    bool dummy;
    return s->ops->del(s, key, deleted ? deleted : &dummy);
}

int dt_store_num_keys(dt_store *s, int64_t *out)
{
    DT_CHECK(check_store(s, "num_keys"));
    if (!out) return dt_set_error(DT_EINVAL, "%s num_keys: out is NULL", s->desc);
    return s->ops->num_keys(s, out);
}
