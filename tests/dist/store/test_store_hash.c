/* The hash store (in-process, shared between threads) and the prefix store
 * over it: every operation through the common suite, then prefix specifics. */
#include "store_suite.h"

static dt_store *g_hash;

static dt_store *same_store(void *ctx) { return dt_store_retain(ctx); }

static void t_prefix_keys(void)
{
    dt_store *base = dt_store_hash(NULL);
    DT_ASSERT(base);
    dt_store *p = dt_store_prefix(base, "pg0");
    DT_ASSERT(p);
    DT_ASSERT_OK(dt_store_set(p, "rank", "3", 1));
    ASSERT_GET(base, "pg0/rank", "3");       /* written under "prefix/" */
    bool ex = true;
    const char *k = "rank";
    DT_ASSERT_OK(dt_store_check(base, &k, 1, &ex));
    DT_ASSERT(!ex);
    int64_t n = 0;
    DT_ASSERT_OK(dt_store_num_keys(p, &n));   /* the base's count, as torch's */
    DT_ASSERT_EQ(n, 1);
    dt_store *pp = dt_store_prefix(p, "sub");
    DT_ASSERT_OK(dt_store_add(pp, "c", 2, NULL));
    ASSERT_GET(base, "pg0/sub/c", "2");
    /* The prefix store retains its base: the base outlives the caller's release. */
    dt_store_release(base);
    DT_ASSERT_OK(dt_store_set(p, "after", "y", 1));
    ASSERT_GET(p, "after", "y");
    dt_store_release(pp);
    dt_store_release(p);
}

static void t_prefix_timeout_own(void)
{
    dt_store *base = dt_store_hash(NULL);
    dt_store *p = dt_store_prefix(base, "q");
    DT_ASSERT_EQ(dt_store_timeout(p), dt_store_timeout(base));
    dt_store_set_timeout(p, 50);
    DT_ASSERT_ERR(dt_store_get(p, "missing", &(void *){0}, &(size_t){0}), DT_ETIMEOUT);
    DT_ASSERT_CONTAINS(dt_last_error(), "q/missing");
    DT_ASSERT(dt_store_timeout(base) != 50);
    dt_store_release(p);
    dt_store_release(base);
}

static void t_timeout_default(void)
{
    setenv("DTRAIN_TIMEOUT", "7", 1);
    dt_store *s = dt_store_hash(NULL);
    DT_ASSERT(s);
    DT_ASSERT_EQ(dt_store_timeout(s), 7000);
    dt_store_set_timeout(s, -1);             /* back to the default */
    DT_ASSERT_EQ(dt_store_timeout(s), 7000);
    dt_store_release(s);
    setenv("DTRAIN_TIMEOUT", "soon", 1);
    DT_ASSERT(dt_store_hash(NULL) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    DT_ASSERT_CONTAINS(dt_last_error(), "DTRAIN_TIMEOUT");
    unsetenv("DTRAIN_TIMEOUT");
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = 1234;
    s = dt_store_hash(&o);
    DT_ASSERT_EQ(dt_store_timeout(s), 1234);
    dt_store_release(s);
    DT_ASSERT_EQ(dt_store_port(NULL), -1);
    dt_store_release(NULL);
}

static void t_no_leak(void)
{
    dt_mem_stats a, b;
    dt_mem_get_stats(&a);
    dt_store *s = dt_store_hash(NULL);
    for (int i = 0; i < 300; i++) {
        char k[32];
        snprintf(k, sizeof k, "k%d", i);
        DT_ASSERT_OK(dt_store_set(s, k, k, strlen(k)));
    }
    dt_store *p = dt_store_prefix(s, "x");
    dt_store_release(s);
    dt_store_release(p);
    dt_mem_get_stats(&b);
    DT_ASSERT_EQ(b.total_current, a.total_current);
}

int main(void)
{
    g_hash = dt_store_hash(NULL);
    if (!g_hash) { fprintf(stderr, "dt_store_hash: %s\n", dt_last_error()); return 1; }
    store_suite(g_hash, same_store, g_hash, "hash");
    dt_store *p = dt_store_prefix(g_hash, "pre");
    store_suite(p, same_store, p, "prefix");
    dt_store_release(p);
    dt_store_release(g_hash);
    DT_RUN(t_prefix_keys);
    DT_RUN(t_prefix_timeout_own);
    DT_RUN(t_timeout_default);
    DT_RUN(t_no_leak);
    return DT_TEST_END();
}
