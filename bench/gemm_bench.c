/* gemm_bench: our AVX-512 SGEMM (dt__sgemm_ours) against OpenBLAS cblas_sgemm on the
 * shapes the models run, in the same process, alternating, best of N, at 1 and 2
 * compute threads (dt_tensor_set_num_threads sets OpenBLAS's count too).
 *
 *   build/bin/gemm_bench [reps=15] [threads=1,2] [MxNxK:OP ...]   (OP: NN NT TN TT)
 *
 * With shapes on the command line, those instead of the model shapes.
 * Prints GFLOP/s of both, the ratio ours/blas, and which one dt__sgemm picks.
 * Does not touch OPENBLAS_* variables (OPENBLAS_CORETYPE comes from the environment). */
#include <dtrain/dtrain.h>
#include "tensor/tensor_internal.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { const char *what; int m, n, k; bool ta, tb; } shape;

static shape shapes[64] = {
    {"mlp fc1 x@W^T", 64, 256, 784, false, true},
    {"mlp fc2 x@W^T", 64, 256, 256, false, true},
    {"mlp fc3 x@W^T", 64, 10, 256, false, true},
    {"mlp dx fc1", 64, 784, 256, false, false},
    {"mlp dx fc2", 64, 256, 256, false, false},
    {"mlp dx fc3", 64, 256, 10, false, false},
    {"mlp dW fc1", 256, 784, 64, true, false},
    {"mlp dW fc2", 256, 256, 64, true, false},
    {"mlp dW fc3", 10, 256, 64, true, false},
    {"gpt qkv", 2048, 384, 128, false, true},
    {"gpt proj", 2048, 128, 128, false, true},
    {"gpt fc", 2048, 512, 128, false, true},
    {"gpt fcproj", 2048, 128, 512, false, true},
    {"gpt dx qkv", 2048, 128, 384, false, false},
    {"gpt dx proj", 2048, 128, 128, false, false},
    {"gpt dx fc", 2048, 128, 512, false, false},
    {"gpt dx fcproj", 2048, 512, 128, false, false},
    {"gpt dW qkv", 384, 128, 2048, true, false},
    {"gpt dW proj", 128, 128, 2048, true, false},
    {"gpt dW fc", 512, 128, 2048, true, false},
    {"gpt dW fcproj", 128, 512, 2048, true, false},
    {"attn q@k^T", 128, 128, 32, false, true},
    {"attn p@v", 128, 32, 128, false, false},
    {"attn dp=dy@v^T", 128, 128, 32, false, true},
    {"attn dv=p^T@dy", 128, 32, 128, true, false},
    {"attn dq=ds@k", 128, 32, 128, false, false},
    {"attn dk=ds^T@q", 128, 32, 128, true, false},
    {"cnn conv1 im2col", 784, 32, 9, false, false},
    {"cnn conv2 im2col", 196, 64, 288, false, false},
    {"cnn conv2 batched", 64 * 196, 64, 288, false, false},
    {"cnn conv2 dx cols", 64 * 196, 288, 64, false, true},
    {"cnn conv2 dW", 64, 288, 64 * 196, true, false},
    {"cnn conv1 dW", 32, 9, 64 * 784, true, false},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef void (*gemm_fn)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                        int64_t, float, float *, int64_t);

static void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                 const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* Seconds per call: iters calls timed together. */
static double time_once(gemm_fn f, const shape *s, const float *a, const float *b, float *c, int iters)
{
    int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    double t0 = now_s();
    for (int i = 0; i < iters; i++) f(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n);
    return (now_s() - t0) / iters;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 15;
    const char *tl = argc > 2 ? argv[2] : "1,2";
    if (reps < 1) reps = 1;
    size_t nshapes = 0;
    while (nshapes < 64 && shapes[nshapes].what) nshapes++;
    if (argc > 3) {
        nshapes = 0;
        for (int i = 3; i < argc && nshapes < 64; i++) {
            shape *s = &shapes[nshapes];
            char ta = 'N', tb = 'N';
            if (sscanf(argv[i], "%dx%dx%d:%c%c", &s->m, &s->n, &s->k, &ta, &tb) < 3 || s->m < 1 || s->n < 1 || s->k < 1) {
                fprintf(stderr, "gemm_bench: bad shape %s (MxNxK:OP)\n", argv[i]);
                return 2;
            }
            s->what = argv[i];
            s->ta = ta == 'T';
            s->tb = tb == 'T';
            nshapes++;
        }
    }
    printf("# gemm_bench: GFLOP/s, best of %d, ours = dt__sgemm_ours (AVX-512 %s), blas = cblas_sgemm "
           "(OPENBLAS_CORETYPE=%s)\n", reps, dt__sgemm_ours_available() ? "yes" : "NO: runs blas",
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    printf("%-3s %-20s %6s %5s %6s %3s %8s %8s %6s %s\n", "thr", "shape", "M", "N", "K", "op", "ours", "blas",
           "ratio", "picked");
    char tbuf[64];
    snprintf(tbuf, sizeof tbuf, "%s", tl);
    for (char *tok = strtok(tbuf, ","); tok; tok = strtok(NULL, ",")) {
        int nt = atoi(tok);
        if (nt < 1 || dt_tensor_set_num_threads(nt) < 0) continue;
        for (size_t si = 0; si < nshapes; si++) {
            const shape *s = &shapes[si];
            size_t na = (size_t)s->m * s->k, nb = (size_t)s->k * s->n, nc = (size_t)s->m * s->n;
            float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4);
            for (size_t i = 0; i < na; i++) a[i] = (float)rand() / RAND_MAX - 0.5f;
            for (size_t i = 0; i < nb; i++) b[i] = (float)rand() / RAND_MAX - 0.5f;
            double flop = 2.0 * s->m * s->n * s->k;
            /* ~3 ms per timing: short enough that, on a shared machine, the best of reps
             * is usually a window in which nobody else had the core. */
            int iters = (int)(4e8 * nt / flop) + 1;
            if (iters > 20000) iters = 20000;
            time_once(dt__sgemm_ours, s, a, b, c, iters);
            time_once(blas, s, a, b, c, iters);
            double best_o = 1e30, best_b = 1e30;
            for (int r = 0; r < reps; r++) {
                double to = time_once(dt__sgemm_ours, s, a, b, c, iters);
                double tb = time_once(blas, s, a, b, c, iters);
                if (to < best_o) best_o = to;
                if (tb < best_b) best_b = tb;
            }
            double go = flop / best_o * 1e-9, gb = flop / best_b * 1e-9;
            printf("%-3d %-20s %6d %5d %6d %c%c  %8.1f %8.1f %6.2f %s\n", nt, s->what, s->m, s->n, s->k,
                   s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', go, gb, go / gb,
                   dt__sgemm_picks_ours(s->ta, s->tb, s->m, s->n, s->k) ? "ours" : "blas");
            fflush(stdout);
            free(a);
            free(b);
            free(c);
        }
    }
    return 0;
}
