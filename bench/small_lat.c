/* small_lat: all_reduce latency of 4 B, 1 KiB and 4 KiB (f32 sum, out of
 * place) measured both ways at once: the mean of ITERS back-to-back calls
 * (Open MPI's mpi_allreduce.c loop) and the median of 20000 calls timed one
 * by one (dtbench's), each the slowest rank's. The twin of mpi_small_lat.c,
 * run interleaved with it (see RESULTS.md, "all_reduce vs Open MPI"):
 *   build/bin/dtrun --standalone --nproc_per_node=2 build/bin/small_lat [ITERS]
 * Each rank pins itself to core LOCAL_RANK when the ranks fit the cores (as
 * mpirun binds). */
#define _GNU_SOURCE
#include <dtrain/dist.h>
#include <dtrain/util.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NTIMED 20000

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static void pin(void)
{
    const char *lr = getenv("LOCAL_RANK"), *ls = getenv("LOCAL_WORLD_SIZE");
    if (!lr || !ls || atoi(ls) > sysconf(_SC_NPROCESSORS_ONLN)) return;
    cpu_set_t c;
    CPU_ZERO(&c);
    CPU_SET(atoi(lr), &c);
    sched_setaffinity(0, sizeof c, &c);
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 100000;
    pin();
    dt_pg *pg = dt_init_process_group("shm", "env://", NULL);
    if (!pg) {
        fprintf(stderr, "small_lat: %s\n", dt_last_error());
        return 1;
    }
    static float send[1024], recv[1024];
    static double t[NTIMED];
    for (int i = 0; i < 1024; i++) send[i] = 1.0f;
    static const size_t counts[] = {1, 256, 1024};
    int rc = 0;
    for (int k = 0; k < 3 && rc == 0; k++) {
        for (int i = 0; i < 1000 && rc == 0; i++) rc = dt_pg_allreduce(pg, send, recv, counts[k], DT_F32, DT_RED_SUM, NULL, NULL);
        if (rc == 0) rc = dt_pg_barrier(pg, NULL, NULL);
        int64_t t0 = dt_now_ns();
        for (long i = 0; i < iters && rc == 0; i++) rc = dt_pg_allreduce(pg, send, recv, counts[k], DT_F32, DT_RED_SUM, NULL, NULL);
        double mean = (double)(dt_now_ns() - t0) / (double)iters * 1e-3, mean_max = mean;
        for (int i = 0; i < NTIMED && rc == 0; i++) {
            int64_t a = dt_now_ns();
            rc = dt_pg_allreduce(pg, send, recv, counts[k], DT_F32, DT_RED_SUM, NULL, NULL);
            t[i] = (double)(dt_now_ns() - a) * 1e-3;
        }
        qsort(t, NTIMED, sizeof t[0], cmp_double);
        double med = t[NTIMED / 2], med_max = med;
        if (rc == 0) rc = dt_pg_allreduce(pg, &mean, &mean_max, 1, DT_F64, DT_RED_MAX, NULL, NULL);
        if (rc == 0) rc = dt_pg_allreduce(pg, &med, &med_max, 1, DT_F64, DT_RED_MAX, NULL, NULL);
        if (rc == 0 && dt_pg_rank(pg) == 0) printf("%6zu B mean %.3f med %.3f | ", counts[k] * 4, mean_max, med_max);
    }
    if (rc < 0) fprintf(stderr, "small_lat: %s\n", dt_last_error());
    else if (dt_pg_rank(pg) == 0) printf("\n");
    dt_destroy_process_group(pg);
    return rc < 0;
}
