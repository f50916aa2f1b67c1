/* The thread pool: parallel_for covers [0, n) exactly once, tasks all run. */
#include "dt_test.h"

#include <stdatomic.h>

typedef struct { atomic_int *hits; atomic_int calls; atomic_int maxtid; } cover;

static void mark(void *arg, int64_t b, int64_t e, int tid)
{
    cover *c = arg;
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&c->hits[i], 1);
    atomic_fetch_add(&c->calls, 1);
    int m = atomic_load(&c->maxtid);
    while (tid > m && !atomic_compare_exchange_weak(&c->maxtid, &m, tid)) {}
}

static void t_parallel_for(void)
{
    int sizes[] = {1, 2, 3, 4};
    int64_t ns[] = {0, 1, 2, 7, 1000, 100003};
    for (int s = 0; s < 4; s++) {
        dt_threadpool *p = dt_threadpool_new(sizes[s]);
        DT_ASSERT(p);
        DT_ASSERT_EQ(dt_threadpool_size(p), sizes[s]);
        for (int k = 0; k < 6; k++) {
            for (int rep = 0; rep < 20; rep++) {
                int64_t n = ns[k];
                atomic_int *hits = dt_calloc((size_t)n + 1, sizeof *hits, DT_MEM_OTHER);
                cover c = {hits, 0, 0};
                dt_threadpool_parallel_for(p, n, 1, mark, &c);
                for (int64_t i = 0; i < n; i++) DT_ASSERT_EQ(atomic_load(&hits[i]), 1);
                DT_ASSERT(atomic_load(&c.calls) <= sizes[s]);
                DT_ASSERT(atomic_load(&c.maxtid) < sizes[s]);
                dt_free(hits);
            }
        }
        /* grain limits the number of chunks */
        atomic_int hits[10] = {0};
        cover c = {hits, 0, 0};
        dt_threadpool_parallel_for(p, 10, 10, mark, &c);
        DT_ASSERT_EQ(atomic_load(&c.calls), 1);
        dt_threadpool_free(p);
    }
}

static atomic_int task_sum;
static void add_task(void *arg) { atomic_fetch_add(&task_sum, (int)(intptr_t)arg); }

static void t_tasks(void)
{
    dt_threadpool *p = dt_threadpool_new(3);
    atomic_store(&task_sum, 0);
    for (int i = 1; i <= 1000; i++) DT_ASSERT_OK(dt_threadpool_submit(p, add_task, (void *)(intptr_t)i));
    dt_threadpool_wait(p);
    DT_ASSERT_EQ(atomic_load(&task_sum), 500500);
    dt_threadpool_free(p);
}

static void t_bad_size(void)
{
    DT_ASSERT(dt_threadpool_new(0) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    DT_ASSERT_CONTAINS(dt_last_error(), "thread pool size 0");
}

int main(void)
{
    DT_RUN(t_parallel_for);
    DT_RUN(t_tasks);
    DT_RUN(t_bad_size);
    return DT_TEST_END();
}
