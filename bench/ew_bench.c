/* ew_bench: the exp-heavy f32 elementwise kernels on a (2048, 512) tensor, 1 compute
 * thread, best of N: exact GELU forward (DT__EW_GELU), its backward (DT__EW_GELU_BW),
 * exp, sigmoid, tanh, and softmax / log_softmax over the last dim.
 *
 *   build/bin/ew_bench [reps=20]
 *
 * Prints ms per call and Gelem/s. To compare with libm's scalar erff/expf, build the
 * same file against an older tree (the kernels are internal, the entry points are not). */
#include <dtrain/dtrain.h>
#include "tensor/tensor_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    dt_tensor_set_num_threads(1);
    int64_t shape[2] = {2048, 512}, n = shape[0] * shape[1];
    dt_tensor *x = dt_empty(DT_F32, 2, shape), *g = dt_empty(DT_F32, 2, shape);
    float *px = dt_tensor_data_f32(x), *pg = dt_tensor_data_f32(g);
    uint32_t s = 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        px[i] = (float)(s >> 8) * 0x1p-24f * 8 - 4;
        pg[i] = (float)(s & 0xffff) * 0x1p-16f - 0.5f;
    }
    const char *names[] = {"gelu", "gelu_bw", "gelu+bw", "exp", "sigmoid", "tanh", "softmax", "log_softmax"};
    for (int k = 0; k < 8; k++) {
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            dt_tensor *y = NULL, *y2 = NULL;
            switch (k) {
            case 0: y = dt__ew(DT__EW_GELU, x, NULL, 0); break;
            case 1: y = dt__ew(DT__EW_GELU_BW, g, x, 0); break;
            case 2: y = dt__ew(DT__EW_GELU, x, NULL, 0); y2 = dt__ew(DT__EW_GELU_BW, g, x, 0); break;
            case 3: y = dt__ew(DT__EW_EXP, x, NULL, 0); break;
            case 4: y = dt__ew(DT__EW_SIGMOID, x, NULL, 0); break;
            case 5: y = dt__ew(DT__EW_TANH, x, NULL, 0); break;
            case 6: y = dt__softmax(x, 1, false); break;
            default: y = dt__softmax(x, 1, true); break;
            }
            double t = now() - t0;
            if (!y) { fprintf(stderr, "%s: %s\n", names[k], dt_last_error()); return 1; }
            dt_tensor_release(y);
            dt_tensor_release(y2);
            if (t < best) best = t;
        }
        printf("%-12s %8.3f ms  %6.2f Gelem/s\n", names[k], best * 1e3, n / best * 1e-9);
    }
    dt_tensor_release(x);
    dt_tensor_release(g);
    return 0;
}
