/* 01_threads: the foundation at work — a parallel reduction on dtrain's thread
 * pool, checked against the closed form, with the allocator's accounting.
 * Launch: build/bin/threads [N]      (the main job until DDP lands: `make run`) */
#include <dtrain/dtrain.h>

#include <stdio.h>
#include <stdlib.h>

typedef struct { const double *x; double *partial; } job;

static void sum_sq(void *arg, int64_t b, int64_t e, int tid)
{
    job *j = arg;
    double s = 0;
    for (int64_t i = b; i < e; i++) s += j->x[i] * j->x[i];
    j->partial[tid] = s;
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 10000000;
    if (n < 1) { fprintf(stderr, "threads: N must be positive\n"); return 2; }
    int nt = dt_num_cpus();
    dt_threadpool *pool = dt_threadpool_new(nt);
    double *x = dt_alloc((size_t)n * sizeof *x, DT_MEM_DATA);
    double *partial = dt_calloc((size_t)nt, sizeof *partial, DT_MEM_OTHER);
    if (!pool || !x || !partial) { fprintf(stderr, "threads: %s\n", dt_last_error()); return 1; }
    for (int64_t i = 0; i < n; i++) x[i] = (double)(i + 1);
    job j = {x, partial};
    double t0 = dt_now_s();
    dt_threadpool_parallel_for(pool, n, 1 << 16, sum_sq, &j);
    double t1 = dt_now_s();
    double s = 0;
    for (int i = 0; i < nt; i++) s += partial[i];
    double nn = (double)n, exact = nn * (nn + 1) * (2 * nn + 1) / 6;
    dt_mem_stats st;
    dt_mem_get_stats(&st);
    printf("sum of squares 1..%lld on %d threads: %.6e (closed form %.6e, rel err %.1e) in %.2f ms\n",
           (long long)n, nt, s, exact, (s - exact) / exact, (t1 - t0) * 1e3);
    printf("memory: %lld bytes in use, peak %lld (data %lld)\n", (long long)st.total_current,
           (long long)st.total_peak, (long long)st.peak[DT_MEM_DATA]);
    dt_free(x);
    dt_free(partial);
    dt_threadpool_free(pool);
    return (s - exact) / exact < 1e-9 && (exact - s) / exact < 1e-9 ? 0 : 1;
}
