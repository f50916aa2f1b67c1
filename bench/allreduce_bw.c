/* allreduce_bw: all_reduce latency and bandwidth of one dtrain backend, the
 * twin of ../shared/bench/gloo_allreduce.py (same sizes, same iteration
 * counts, same warm-up, the slowest rank's time, the same columns), so the
 * two outputs can be put side by side.
 *   build/bin/allreduce_bw BACKEND WORLD [MAX_BYTES [shared]]     e.g. tcp 2
 * Forks WORLD ranks (dt_spawn) on this host; f32 sum, in place; "shared":
 * the buffer from dt_pg_alloc (the shm backend's direct path), else malloc. */
#include <dtrain/dtrain.h>
#include <dtrain/spawn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *backend;
static size_t max_bytes = 64u << 20;
static int shared;

static int body(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = dt_init_process_group(backend, "env://", NULL);
    if (!pg) return dt_last_error_code();
    if (rank == 0) printf("# dtrain %s allreduce, world=%d\n# bytes  us/op  algbw_GBps  busbw_GBps\n", dt_pg_backend(pg), n);
    float *t = shared ? dt_pg_alloc(pg, max_bytes) : malloc(max_bytes);
    if (!t) return DT_ENOMEM;
    for (size_t b = 4; b <= max_bytes; b *= 4) {
        size_t count = b / 4 ? b / 4 : 1;
        for (size_t i = 0; i < count; i++) t[i] = 1.0f;
        double lim = 2e8 / (double)(b > 10000 ? b : 10000);
        int iters = lim < 5 ? 5 : lim > 2000 ? 2000 : (int)lim;
        for (int i = 0; i < 3; i++) DT_CHECK(dt_pg_allreduce(pg, t, t, count, DT_F32, DT_RED_SUM, NULL, NULL));
        DT_CHECK(dt_pg_barrier(pg, NULL, NULL));
        int64_t t0 = dt_now_ns();
        for (int i = 0; i < iters; i++) DT_CHECK(dt_pg_allreduce(pg, t, t, count, DT_F32, DT_RED_SUM, NULL, NULL));
        double dt = (double)(dt_now_ns() - t0) * 1e-9 / iters;
        DT_CHECK(dt_pg_allreduce(pg, &dt, &dt, 1, DT_F64, DT_RED_MAX, NULL, NULL));
        double alg = (double)b / dt / 1e9;
        if (rank == 0) printf("%9zu %9.1f %8.3f %8.3f\n", b, dt * 1e6, alg, alg * 2 * (n - 1) / n), fflush(stdout);
    }
    if (shared) dt_pg_free(pg, t);
    else free(t);
    dt_destroy_process_group(pg);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s BACKEND WORLD [MAX_BYTES [shared]]\n", argv[0]);
        return 2;
    }
    backend = argv[1];
    int n = atoi(argv[2]);
    if (argc > 3) max_bytes = strtoull(argv[3], NULL, 10);
    shared = argc > 4 && !strcmp(argv[4], "shared");
    if (dt_spawn(body, n, NULL) < 0) {
        fprintf(stderr, "allreduce_bw: %s\n", dt_last_error());
        return 1;
    }
    return 0;
}
