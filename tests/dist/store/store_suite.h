/* store_suite.h: the checks every store kind must pass, written once and run
 * by each kind's test on its own store (hash, tcp, file, prefix over each).
 * `peer` opens a second handle on the same store (another client, another
 * file handle, or the same shareable store retained) for the checks that need
 * a second thread. Keys carry a per-call tag so a suite can run on a store
 * that already holds keys. Include after dt_test.h. */
#ifndef STORE_SUITE_H
#define STORE_SUITE_H

#include "dt_test.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

typedef dt_store *(*suite_peer_fn)(void *ctx);

static dt_store *suite_store;
static suite_peer_fn suite_peer;
static void *suite_ctx;
static char suite_tag[64];

static const char *K(const char *name)
{
    static char buf[8][256];
    static int slot;
    char *b = buf[slot++ & 7];
    snprintf(b, 256, "%s/%s", suite_tag, name);
    return b;
}

/* Get key and compare with the expected text. */
#define ASSERT_GET(s, key, text)                                               \
    do {                                                                       \
        void *dt__v = NULL; size_t dt__n = 0;                                  \
        DT_ASSERT_OK(dt_store_get((s), (key), &dt__v, &dt__n));                \
        DT_ASSERT_EQ(dt__n, strlen(text));                                     \
        DT_ASSERT(memcmp(dt__v, (text), dt__n) == 0);                          \
        dt_free(dt__v);                                                        \
    } while (0)

static void s_set_get(void)
{
    dt_store *s = suite_store;
    DT_ASSERT_OK(dt_store_set(s, K("a"), "hello", 5));
    ASSERT_GET(s, K("a"), "hello");
    DT_ASSERT_OK(dt_store_set(s, K("a"), "bye", 3));   /* overwrite */
    ASSERT_GET(s, K("a"), "bye");
    const unsigned char bin[5] = {0, 1, 0, 255, 7};    /* values are bytes, NULs included */
    DT_ASSERT_OK(dt_store_set(s, K("bin"), bin, sizeof bin));
    void *v = NULL;
    size_t n = 0;
    DT_ASSERT_OK(dt_store_get(s, K("bin"), &v, &n));
    DT_ASSERT_EQ(n, 5);
    DT_ASSERT(memcmp(v, bin, 5) == 0);
    dt_free(v);
    DT_ASSERT_OK(dt_store_set(s, K("empty"), NULL, 0));
    DT_ASSERT_OK(dt_store_get(s, K("empty"), &v, &n));
    DT_ASSERT_EQ(n, 0);
    DT_ASSERT(v != NULL);
    dt_free(v);
    /* A large value (1 MiB) goes through whole. */
    size_t big = 1u << 20;
    unsigned char *b = dt_alloc(big, DT_MEM_OTHER);
    for (size_t i = 0; i < big; i++) b[i] = (unsigned char)(i * 131 + 7);
    DT_ASSERT_OK(dt_store_set(s, K("big"), b, big));
    DT_ASSERT_OK(dt_store_get(s, K("big"), &v, &n));
    DT_ASSERT_EQ(n, big);
    DT_ASSERT(memcmp(v, b, big) == 0);
    dt_free(v);
    dt_free(b);
}

static void s_get_timeout(void)
{
    dt_store *s = suite_store;
    int64_t old = dt_store_timeout(s);
    dt_store_set_timeout(s, 100);
    DT_ASSERT_EQ(dt_store_timeout(s), 100);
    void *v = (void *)1;
    size_t n = 1;
    DT_ASSERT_ERR(dt_store_get(s, K("never"), &v, &n), DT_ETIMEOUT);
    DT_ASSERT_CONTAINS(dt_last_error(), K("never"));
    DT_ASSERT_CONTAINS(dt_last_error(), "store");
    DT_ASSERT(v == NULL);
    DT_ASSERT_EQ(n, 0);
    /* The store is still usable after a timeout. */
    DT_ASSERT_OK(dt_store_set(s, K("after"), "x", 1));
    ASSERT_GET(s, K("after"), "x");
    dt_store_set_timeout(s, old);
}

static void s_add(void)
{
    dt_store *s = suite_store;
    int64_t v = 0;
    DT_ASSERT_OK(dt_store_add(s, K("ctr"), 5, &v));
    DT_ASSERT_EQ(v, 5);
    DT_ASSERT_OK(dt_store_add(s, K("ctr"), -7, &v));
    DT_ASSERT_EQ(v, -2);
    DT_ASSERT_OK(dt_store_add(s, K("ctr"), 0, NULL));
    ASSERT_GET(s, K("ctr"), "-2");                    /* decimal text, as torch stores it */
    DT_ASSERT_OK(dt_store_set(s, K("num"), "40", 2));
    DT_ASSERT_OK(dt_store_add(s, K("num"), 2, &v));
    DT_ASSERT_EQ(v, 42);
    DT_ASSERT_OK(dt_store_set(s, K("txt"), "abc", 3));
    DT_ASSERT_ERR(dt_store_add(s, K("txt"), 1, &v), DT_EINVAL);
    DT_ASSERT_CONTAINS(dt_last_error(), K("txt"));
    DT_ASSERT_OK(dt_store_set(s, K("max"), "9223372036854775807", 19));
    DT_ASSERT_ERR(dt_store_add(s, K("max"), 1, &v), DT_ERANGE);
    ASSERT_GET(s, K("max"), "9223372036854775807");  /* unchanged */
}

static void s_compare_set(void)
{
    dt_store *s = suite_store;
    void *cur = NULL;
    size_t n = 0;
    bool ex = false;
    const char *k = K("cas");
    /* Absent, expected non-empty: nothing set, the result is expected (torch's rule). */
    DT_ASSERT_OK(dt_store_compare_set(s, k, "old", 3, "new", 3, &cur, &n));
    DT_ASSERT_EQ(n, 3);
    DT_ASSERT(memcmp(cur, "old", 3) == 0);
    dt_free(cur);
    DT_ASSERT_OK(dt_store_check(s, &k, 1, &ex));
    DT_ASSERT(!ex);
    /* Absent, expected empty: set to desired, the result is desired. */
    DT_ASSERT_OK(dt_store_compare_set(s, k, "", 0, "v1", 2, &cur, &n));
    DT_ASSERT_EQ(n, 2);
    DT_ASSERT(memcmp(cur, "v1", 2) == 0);
    dt_free(cur);
    ASSERT_GET(s, k, "v1");
    /* Present, expected differs: unchanged, the result is the current value. */
    DT_ASSERT_OK(dt_store_compare_set(s, k, "zz", 2, "v2", 2, &cur, &n));
    DT_ASSERT_EQ(n, 2);
    DT_ASSERT(memcmp(cur, "v1", 2) == 0);
    dt_free(cur);
    ASSERT_GET(s, k, "v1");
    /* Present, expected empty but the value is not: unchanged. */
    DT_ASSERT_OK(dt_store_compare_set(s, k, "", 0, "v3", 2, &cur, &n));
    DT_ASSERT(n == 2 && memcmp(cur, "v1", 2) == 0);
    dt_free(cur);
    /* Present and equal: set, the result is desired. */
    DT_ASSERT_OK(dt_store_compare_set(s, k, "v1", 2, "v2!", 3, NULL, NULL));
    ASSERT_GET(s, k, "v2!");
    /* An empty stored value equals an empty expected. */
    DT_ASSERT_OK(dt_store_set(s, K("cas0"), "", 0));
    DT_ASSERT_OK(dt_store_compare_set(s, K("cas0"), "", 0, "full", 4, &cur, &n));
    DT_ASSERT(n == 4 && memcmp(cur, "full", 4) == 0);
    dt_free(cur);
}

static void s_wait_check_delete(void)
{
    dt_store *s = suite_store;
    const char *keys[3] = {K("w1"), K("w2"), K("w3")};
    bool ex = true, del = false;
    DT_ASSERT_OK(dt_store_check(s, keys, 2, &ex));
    DT_ASSERT(!ex);
    DT_ASSERT_OK(dt_store_set(s, keys[0], "1", 1));
    DT_ASSERT_OK(dt_store_check(s, keys, 1, &ex));
    DT_ASSERT(ex);
    DT_ASSERT_OK(dt_store_check(s, keys, 2, &ex));
    DT_ASSERT(!ex);
    DT_ASSERT_ERR(dt_store_wait(s, keys, 3, 80), DT_ETIMEOUT);
    DT_ASSERT_CONTAINS(dt_last_error(), keys[1]);
    DT_ASSERT_CONTAINS(dt_last_error(), keys[2]);
    DT_ASSERT_OK(dt_store_set(s, keys[1], "2", 1));
    DT_ASSERT_OK(dt_store_set(s, keys[2], "3", 1));
    DT_ASSERT_OK(dt_store_wait(s, keys, 3, 1000));
    DT_ASSERT_OK(dt_store_wait(s, keys, 3, -1));
    DT_ASSERT_OK(dt_store_wait(s, keys, 0, 0));
    DT_ASSERT_OK(dt_store_delete(s, keys[1], &del));
    DT_ASSERT(del);
    DT_ASSERT_OK(dt_store_delete(s, keys[1], &del));
    DT_ASSERT(!del);
    DT_ASSERT_OK(dt_store_check(s, keys, 3, &ex));
    DT_ASSERT(!ex);
    DT_ASSERT_ERR(dt_store_wait(s, keys + 1, 1, 0), DT_ETIMEOUT);
}

static void s_num_keys(void)
{
    dt_store *s = suite_store;
    int64_t n0 = -1, n1 = -1;
    DT_ASSERT_OK(dt_store_num_keys(s, &n0));
    DT_ASSERT(n0 >= 0);
    DT_ASSERT_OK(dt_store_set(s, K("nk1"), "a", 1));
    DT_ASSERT_OK(dt_store_set(s, K("nk2"), "b", 1));
    DT_ASSERT_OK(dt_store_set(s, K("nk1"), "c", 1));
    DT_ASSERT_OK(dt_store_num_keys(s, &n1));
    DT_ASSERT_EQ(n1, n0 + 2);
    DT_ASSERT_OK(dt_store_delete(s, K("nk1"), NULL));
    DT_ASSERT_OK(dt_store_num_keys(s, &n1));
    DT_ASSERT_EQ(n1, n0 + 1);
}

static void s_bad_args(void)
{
    dt_store *s = suite_store;
    void *v;
    size_t n;
    DT_ASSERT_ERR(dt_store_set(NULL, "k", "v", 1), DT_EINVAL);
    DT_ASSERT_ERR(dt_store_set(s, NULL, "v", 1), DT_EINVAL);
    DT_ASSERT_ERR(dt_store_set(s, "k", NULL, 1), DT_EINVAL);
    DT_ASSERT_ERR(dt_store_get(s, "k", NULL, &n), DT_EINVAL);
    DT_ASSERT_ERR(dt_store_wait(s, NULL, 1, 0), DT_EINVAL);
    DT_ASSERT_ERR(dt_store_check(s, NULL, -1, NULL), DT_EINVAL);
    DT_ASSERT_ERR(dt_store_num_keys(s, NULL), DT_EINVAL);
    char *longkey = dt_alloc(5000, DT_MEM_OTHER);
    memset(longkey, 'k', 4999);
    longkey[4999] = '\0';
    DT_ASSERT_ERR(dt_store_set(s, longkey, "v", 1), DT_ERANGE);
    DT_ASSERT_ERR(dt_store_get(s, longkey, &v, &n), DT_ERANGE);
    dt_free(longkey);
    DT_ASSERT_ERR(dt_store_set(s, "k", "v", (size_t)65 << 20), DT_ERANGE);
    /* The store still works after rejected calls. */
    DT_ASSERT_OK(dt_store_set(s, K("ok"), "1", 1));
}

/* ---- two handles: a blocked get / wait woken by a set through the other. */

typedef struct {
    const char *key;
    int delay_ms;
    int rc;
    char err[512];
} setter_arg;

static void *setter_main(void *p)
{
    setter_arg *a = p;
    dt_store *o = suite_peer(suite_ctx);
    if (!o) { a->rc = dt_last_error_code(); snprintf(a->err, sizeof a->err, "%s", dt_last_error()); return NULL; }
    dt_sleep_ms(a->delay_ms);
    a->rc = dt_store_set(o, a->key, "woken", 5);
    if (a->rc) snprintf(a->err, sizeof a->err, "%s", dt_last_error());
    dt_store_release(o);
    return NULL;
}

static void s_blocking_get_woken(void)
{
    dt_store *s = suite_store;
    int64_t old = dt_store_timeout(s);
    dt_store_set_timeout(s, 60000);                       /* a hang detector */
    setter_arg a = {.key = K("late"), .delay_ms = 50, .rc = 0};
    pthread_t th;
    DT_ASSERT_EQ(pthread_create(&th, NULL, setter_main, &a), 0);
    void *v = NULL;
    size_t n = 0;
    int rc = dt_store_get(s, a.key, &v, &n);
    pthread_join(th, NULL);
    dt_store_set_timeout(s, old);
    DT_ASSERT_MSG(a.rc == 0, "setter: %s", a.err);
    DT_ASSERT_OK(rc);
    DT_ASSERT(n == 5 && memcmp(v, "woken", 5) == 0);
    dt_free(v);
    /* The same for wait. */
    setter_arg b = {.key = K("late2"), .delay_ms = 50, .rc = 0};
    DT_ASSERT_EQ(pthread_create(&th, NULL, setter_main, &b), 0);
    const char *keys[2] = {K("late"), b.key};
    rc = dt_store_wait(s, keys, 2, 60000);
    pthread_join(th, NULL);
    DT_ASSERT_MSG(b.rc == 0, "setter: %s", b.err);
    DT_ASSERT_OK(rc);
}

/* ---- adds from several threads (each its own handle) give the exact total. */

typedef struct {
    const char *key;
    int n;
    int rc;
    char err[512];
} adder_arg;

static void *adder_main(void *p)
{
    adder_arg *a = p;
    dt_store *o = suite_peer(suite_ctx);
    if (!o) { a->rc = dt_last_error_code(); snprintf(a->err, sizeof a->err, "%s", dt_last_error()); return NULL; }
    for (int i = 0; i < a->n && a->rc == 0; i++) {
        a->rc = dt_store_add(o, a->key, 1, NULL);
        if (a->rc) snprintf(a->err, sizeof a->err, "%s", dt_last_error());
    }
    dt_store_release(o);
    return NULL;
}

static void s_threads_add(void)
{
    enum { NT = 4, PER = 200 };
    pthread_t th[NT];
    adder_arg a[NT];
    for (int i = 0; i < NT; i++) {
        a[i] = (adder_arg){.key = K("tadd"), .n = PER, .rc = 0};
        DT_ASSERT_EQ(pthread_create(&th[i], NULL, adder_main, &a[i]), 0);
    }
    for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < NT; i++) DT_ASSERT_MSG(a[i].rc == 0, "adder %d: %s", i, a[i].err);
    int64_t v = 0;
    DT_ASSERT_OK(dt_store_add(suite_store, K("tadd"), 0, &v));
    DT_ASSERT_EQ(v, NT * PER);
}

/* Run every check on s, keys tagged with tag. */
static void store_suite(dt_store *s, suite_peer_fn peer, void *ctx, const char *tag)
{
    suite_store = s;
    suite_peer = peer;
    suite_ctx = ctx;
    snprintf(suite_tag, sizeof suite_tag, "%s", tag);
    DT_RUN(s_set_get);
    DT_RUN(s_get_timeout);
    DT_RUN(s_add);
    DT_RUN(s_compare_set);
    DT_RUN(s_wait_check_delete);
    DT_RUN(s_num_keys);
    DT_RUN(s_bad_args);
    DT_RUN(s_blocking_get_woken);
    DT_RUN(s_threads_add);
}

#endif /* STORE_SUITE_H */
