/* The allocator: alignment, accounting per category, realloc, and the test mode
 * that fails the N-th allocation, used here the way every layer's tests use it:
 * sweep N over a constructor until it succeeds, checking each failure is clean. */
#include "dt_test.h"

#include <stdint.h>

static void t_accounting(void)
{
    dt_mem_stats a, b;
    dt_mem_get_stats(&a);
    char *p = dt_alloc(1000, DT_MEM_PARAM);
    char *q = dt_calloc(10, 100, DT_MEM_GRAD);
    DT_ASSERT(p && q);
    DT_ASSERT_EQ((uintptr_t)p % 64, 0);
    DT_ASSERT_EQ((uintptr_t)q % 64, 0);
    for (int i = 0; i < 1000; i++) DT_ASSERT_EQ(q[i], 0);
    DT_ASSERT_EQ(dt_alloc_size(p), 1000);
    dt_mem_get_stats(&b);
    DT_ASSERT_EQ(b.current[DT_MEM_PARAM] - a.current[DT_MEM_PARAM], 1000);
    DT_ASSERT_EQ(b.current[DT_MEM_GRAD] - a.current[DT_MEM_GRAD], 1000);
    DT_ASSERT_EQ(b.total_current - a.total_current, 2000);
    DT_ASSERT(b.total_peak >= b.total_current);
    DT_ASSERT_EQ(b.allocs - a.allocs, 2);
    memset(p, 7, 1000);
    p = dt_realloc(p, 3000, DT_MEM_PARAM);
    DT_ASSERT(p);
    DT_ASSERT_EQ(p[999], 7);
    dt_mem_get_stats(&b);
    DT_ASSERT_EQ(b.current[DT_MEM_PARAM] - a.current[DT_MEM_PARAM], 3000);
    int64_t peak = b.peak[DT_MEM_PARAM];
    dt_free(p);
    dt_free(q);
    dt_free(NULL);
    dt_mem_get_stats(&b);
    DT_ASSERT_EQ(b.total_current, a.total_current);
    DT_ASSERT_EQ(b.peak[DT_MEM_PARAM], peak);       /* peak remembers */
    dt_mem_reset_peak();
    dt_mem_get_stats(&b);
    DT_ASSERT_EQ(b.peak[DT_MEM_PARAM], b.current[DT_MEM_PARAM]);
    DT_ASSERT_STREQ(dt_mem_cat_name(DT_MEM_COMM), "comm");
}

static void t_too_big(void)
{
    DT_ASSERT(dt_alloc(SIZE_MAX - 8, DT_MEM_OTHER) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ENOMEM);
    DT_ASSERT(dt_calloc(SIZE_MAX / 2, 4, DT_MEM_OTHER) == NULL);
    DT_ASSERT_CONTAINS(dt_last_error(), "overflows");
}

static void t_fail_nth(void)
{
    dt_alloc_fail_at(3);
    void *a = dt_alloc(8, DT_MEM_OTHER), *b = dt_alloc(8, DT_MEM_OTHER);
    void *c = dt_alloc(8, DT_MEM_OTHER), *d = dt_alloc(8, DT_MEM_OTHER);
    dt_alloc_fail_at(0);
    DT_ASSERT(a && b && !c && d);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ENOMEM);
    DT_ASSERT_CONTAINS(dt_last_error(), "DTRAIN_ALLOC_FAIL_AT");
    dt_free(a); dt_free(b); dt_free(d);
}

/* The sweep: fail allocation 1, 2, ... of dt_threadpool_new + a parallel_for +
 * a submitted task; every failure returns a clear error and leaks nothing. */
static void noop_range(void *arg, int64_t b, int64_t e, int tid) { (void)arg; (void)b; (void)e; (void)tid; }
static void noop_task(void *arg) { (void)arg; }

static void t_fail_sweep_threadpool(void)
{
    dt_mem_stats base, now;
    int succeeded = 0;
    for (int64_t n = 1; n < 100 && !succeeded; n++) {
        dt_mem_get_stats(&base);
        dt_alloc_fail_at(n);
        dt_threadpool *p = dt_threadpool_new(3);
        if (p) {
            dt_threadpool_parallel_for(p, 100, 1, noop_range, NULL);
            int rc = dt_threadpool_submit(p, noop_task, NULL);
            dt_threadpool_wait(p);
            dt_threadpool_free(p);
            if (rc == 0) succeeded = 1;
            else DT_ASSERT_EQ(dt_last_error_code(), DT_ENOMEM);
        } else {
            DT_ASSERT_EQ(dt_last_error_code(), DT_ENOMEM);
        }
        dt_alloc_fail_at(0);
        dt_mem_get_stats(&now);
        DT_ASSERT_MSG(now.total_current == base.total_current, "leak of %lld bytes when allocation %lld fails",
                      (long long)(now.total_current - base.total_current), (long long)n);
    }
    DT_ASSERT(succeeded);
}

int main(void)
{
    DT_RUN(t_accounting);
    DT_RUN(t_too_big);
    DT_RUN(t_fail_nth);
    DT_RUN(t_fail_sweep_threadpool);
    return DT_TEST_END();
}
