/* A small thread pool: fork-join parallel_for (the caller runs chunk 0) and a
 * FIFO of independent tasks. Workers spin briefly on a new job before sleeping
 * on a condition variable, so back-to-back kernels do not pay a wake-up each.
 * Does not do work stealing or nested parallelism. */
#include <dtrain/util.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <unistd.h>

typedef struct task {
    struct task *next;
    dt_task_fn fn;
    void *arg;
} task;

struct dt_threadpool {
    int n;                    /* threads, the caller included */
    pthread_t *threads;       /* n - 1 workers */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    bool stop;
    /* parallel_for job, valid while gen is odd-numbered relative to done */
    atomic_long gen;          /* incremented for each parallel_for */
    dt_range_fn fn;
    void *arg;
    int64_t n_items;
    int nchunks;
    atomic_int pending;       /* chunks not yet finished */
    /* submitted tasks */
    task *head, *tail;
    int running_tasks;
};

static void chunk_bounds(int64_t n, int nchunks, int c, int64_t *b, int64_t *e)
{
    int64_t base = n / nchunks, rem = n % nchunks;
    *b = c * base + (c < rem ? c : rem);
    *e = *b + base + (c < rem ? 1 : 0);
}

static void *worker_main(void *p)
{
    dt_threadpool *pool = p;
    int tid = -1;
    long seen = 0;
    pthread_mutex_lock(&pool->mu);
    for (int i = 0; i < pool->n - 1; i++)
        if (pthread_equal(pool->threads[i], pthread_self())) tid = i + 1;
    pthread_mutex_unlock(&pool->mu);
    for (;;) {
        /* Spin a little for the next parallel_for before taking the lock. */
        for (int s = 0; s < 2000 && atomic_load(&pool->gen) == seen; s++) sched_yield();
        pthread_mutex_lock(&pool->mu);
        while (!pool->stop && atomic_load(&pool->gen) == seen && !pool->head)
            pthread_cond_wait(&pool->cv_work, &pool->mu);
        if (pool->stop && !pool->head) { pthread_mutex_unlock(&pool->mu); break; }
        if (atomic_load(&pool->gen) != seen) {
            seen = atomic_load(&pool->gen);
            dt_range_fn fn = pool->fn;
            void *arg = pool->arg;
            int64_t n = pool->n_items;
            int nchunks = pool->nchunks;
            pthread_mutex_unlock(&pool->mu);
            if (tid > 0 && tid < nchunks) {
                int64_t b, e;
                chunk_bounds(n, nchunks, tid, &b, &e);
                fn(arg, b, e, tid);
                if (atomic_fetch_sub(&pool->pending, 1) == 1) {
                    pthread_mutex_lock(&pool->mu);
                    pthread_cond_broadcast(&pool->cv_done);
                    pthread_mutex_unlock(&pool->mu);
                }
            }
            continue;
        }
        task *t = pool->head;
        pool->head = t->next;
        if (!pool->head) pool->tail = NULL;
        pool->running_tasks++;
        pthread_mutex_unlock(&pool->mu);
        t->fn(t->arg);
        dt_free(t);
        pthread_mutex_lock(&pool->mu);
        pool->running_tasks--;
        if (!pool->head && pool->running_tasks == 0) pthread_cond_broadcast(&pool->cv_done);
        pthread_mutex_unlock(&pool->mu);
    }
    return NULL;
}

dt_threadpool *dt_threadpool_new(int nthreads)
{
    if (nthreads < 1 || nthreads > 1024) {
        dt_set_error(DT_EINVAL, "thread pool size %d is outside 1..1024", nthreads);
        return NULL;
    }
    dt_threadpool *pool = dt_calloc(1, sizeof *pool, DT_MEM_OTHER);
    if (!pool) return NULL;
    pool->n = nthreads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv_work, NULL);
    pthread_cond_init(&pool->cv_done, NULL);
    if (nthreads > 1) {
        pool->threads = dt_calloc((size_t)nthreads - 1, sizeof(pthread_t), DT_MEM_OTHER);
        if (!pool->threads) goto fail;
        pthread_mutex_lock(&pool->mu);
        for (int i = 0; i < nthreads - 1; i++) {
            int err = pthread_create(&pool->threads[i], NULL, worker_main, pool);
            if (err) {
                pool->n = i + 1;
                pthread_mutex_unlock(&pool->mu);
                dt_threadpool_free(pool);
                dt_set_error_errno(DT_ESYS, err, "pthread_create for thread pool worker %d", i + 1);
                return NULL;
            }
        }
        pthread_mutex_unlock(&pool->mu);
    }
    return pool;
fail:
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv_work);
    pthread_cond_destroy(&pool->cv_done);
    dt_free(pool);
    return NULL;
}

void dt_threadpool_free(dt_threadpool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    pool->stop = true;
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < pool->n - 1; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv_work);
    pthread_cond_destroy(&pool->cv_done);
    dt_free(pool->threads);
    dt_free(pool);
}

int dt_threadpool_size(const dt_threadpool *pool) { return pool ? pool->n : 1; }

void dt_threadpool_parallel_for(dt_threadpool *pool, int64_t n, int64_t grain, dt_range_fn fn, void *arg)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t maxc = (n + grain - 1) / grain;
    int nchunks = (!pool || pool->n == 1) ? 1 : (int)(maxc < pool->n ? maxc : pool->n);
    if (nchunks == 1) { fn(arg, 0, n, 0); return; }
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->arg = arg;
    pool->n_items = n;
    pool->nchunks = nchunks;
    atomic_store(&pool->pending, nchunks - 1);
    atomic_fetch_add(&pool->gen, 1);
    pthread_cond_broadcast(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);
    int64_t b, e;
    chunk_bounds(n, nchunks, 0, &b, &e);
    fn(arg, b, e, 0);
    for (int s = 0; s < 20000 && atomic_load(&pool->pending) > 0; s++)
        if (s > 100) sched_yield();
    if (atomic_load(&pool->pending) > 0) {
        pthread_mutex_lock(&pool->mu);
        while (atomic_load(&pool->pending) > 0) pthread_cond_wait(&pool->cv_done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
    }
}

int dt_threadpool_submit(dt_threadpool *pool, dt_task_fn fn, void *arg)
{
    if (!pool || pool->n == 1) { fn(arg); return 0; }
    task *t = dt_alloc(sizeof *t, DT_MEM_OTHER);
    if (!t) return dt_error_wrap(DT_ENOMEM, "thread pool task");
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&pool->mu);
    if (pool->tail) pool->tail->next = t; else pool->head = t;
    pool->tail = t;
    pthread_cond_signal(&pool->cv_work);
    pthread_mutex_unlock(&pool->mu);
    return 0;
}

void dt_threadpool_wait(dt_threadpool *pool)
{
    if (!pool || pool->n == 1) return;
    pthread_mutex_lock(&pool->mu);
    while (pool->head || pool->running_tasks > 0) pthread_cond_wait(&pool->cv_done, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}
