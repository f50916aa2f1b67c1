/* The compute pool the kernels split work over, and OpenBLAS's thread count kept equal
 * to it. Sized by DTRAIN_NUM_THREADS (0: the cores this rank owns, dt_num_cpus() /
 * LOCAL_WORLD_SIZE). One kernel at a time uses the pool; a second thread calling a
 * kernel meanwhile runs it serially rather than waiting. Never touches OPENBLAS_*
 * environment variables. */
#include "tensor/tensor_internal.h"

#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;   /* guards g_pool while in use */
static dt_threadpool *g_pool;
static int g_nthreads;

static int default_threads(void)
{
    int64_t n = 0;
    if (dt_param_int(DT_PARAM_NUM_THREADS, &n) < 0) {
        dt_log(DT_LOG_WARN, DT_SUB_TENSOR, "%s; using 1 compute thread", dt_last_error());
        dt_clear_error();
        n = 1;
    }
    if (n > 0) return (int)n;
    long local = 1;
    const char *lws = getenv("LOCAL_WORLD_SIZE");
    if (lws && *lws) {
        char *end;
        long v = strtol(lws, &end, 10);
        if (*end == 0 && v > 0) local = v;
    }
    long c = dt_num_cpus() / local;
    return c >= 1 ? (int)c : 1;
}

/* At exit, join the workers and free the pool (so leak checkers see nothing left),
 * unless a kernel is still running on another thread. */
static void shutdown_pool(void)
{
    if (pthread_mutex_trylock(&g_mu) != 0) return;
    dt_threadpool_free(g_pool);
    g_pool = NULL;
    pthread_mutex_unlock(&g_mu);
}

/* Called with g_mu held. */
static int resize(int n)
{
    static bool registered;
    if (!registered) registered = atexit(shutdown_pool) == 0;
    if (g_pool && g_nthreads == n) return 0;
    dt_threadpool *p = NULL;
    if (n > 1) {
        p = dt_threadpool_new(n);
        if (!p) return dt_last_error_code();
    }
    dt_threadpool_free(g_pool);
    g_pool = p;
    g_nthreads = n;
#ifdef __SANITIZE_THREAD__
    /* OpenBLAS's own threads synchronise in code TSan cannot see: every GEMM would
     * be reported as a race. Under TSan it runs on the calling thread. */
    openblas_set_num_threads(1);
#else
    openblas_set_num_threads(n);
#endif
    return 0;
}

static void ensure(void)
{
    if (g_nthreads) return;
    pthread_mutex_lock(&g_mu);
    if (!g_nthreads && resize(default_threads()) < 0) {
        dt_log(DT_LOG_WARN, DT_SUB_TENSOR, "compute pool: %s; running on one thread", dt_last_error());
        g_nthreads = 1;
        openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&g_mu);
}

int dt_tensor_num_threads(void)
{
    ensure();
    return g_nthreads;
}

int dt_tensor_set_num_threads(int n)
{
    if (n < 1 || n > 1024) return dt_set_error(DT_EINVAL, "dt_tensor_set_num_threads: %d (1..1024)", n);
    pthread_mutex_lock(&g_mu);
    int rc = resize(n);
    pthread_mutex_unlock(&g_mu);
    return rc;
}

void dt__parallel_for(int64_t n, int64_t grain, dt_range_fn fn, void *arg)
{
    ensure();
    if (n <= 0) return;
    if (g_nthreads <= 1 || n < 2 * grain || pthread_mutex_trylock(&g_mu) != 0) {
        fn(arg, 0, n, 0);
        return;
    }
    if (g_pool) dt_threadpool_parallel_for(g_pool, n, grain, fn, arg);
    else fn(arg, 0, n, 0);
    pthread_mutex_unlock(&g_mu);
}
