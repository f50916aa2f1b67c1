/* mpi_small_lat: small_lat.c's twin for Open MPI (same sizes, same two
 * measures, out of place). Not built by CMake (MPI is optional):
 *   mpicc -O2 bench/mpi_small_lat.c -o /tmp/mpi_small_lat
 *   mpirun --allow-run-as-root --oversubscribe -np 2 /tmp/mpi_small_lat [ITERS] */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#define NTIMED 20000

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    long iters = argc > 1 ? atol(argv[1]) : 100000;
    static float send[1024], recv[1024];
    static double t[NTIMED];
    for (int i = 0; i < 1024; i++) send[i] = 1.0f;
    static const int counts[] = {1, 256, 1024};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 1000; i++) MPI_Allreduce(send, recv, counts[k], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (long i = 0; i < iters; i++) MPI_Allreduce(send, recv, counts[k], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double mean = (MPI_Wtime() - t0) / (double)iters * 1e6, mean_max;
        for (int i = 0; i < NTIMED; i++) {
            double a = MPI_Wtime();
            MPI_Allreduce(send, recv, counts[k], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            t[i] = (MPI_Wtime() - a) * 1e6;
        }
        qsort(t, NTIMED, sizeof t[0], cmp_double);
        double med = t[NTIMED / 2], med_max;
        MPI_Allreduce(&mean, &mean_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(&med, &med_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (rank == 0) printf("%6d B mean %.3f med %.3f | ", counts[k] * 4, mean_max, med_max);
    }
    if (rank == 0) printf("\n");
    MPI_Finalize();
    return 0;
}
