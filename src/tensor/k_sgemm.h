/* Between k_sgemm.c (the choice of kernel, threading, scratch) and k_sgemm_avx512.c
 * (the AVX-512 kernel): block sizes and the kernel's entry point. Callers elsewhere
 * use dt__sgemm from tensor_internal.h. */
#ifndef DT_K_SGEMM_H
#define DT_K_SGEMM_H

#include "tensor/tensor_internal.h"

/* DT_NO_AVX512 (a -D flag) builds without our kernel: dt__sgemm is then OpenBLAS. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(DT_NO_AVX512)
#define DT__SGEMM_HAVE_AVX512 1
#else
#define DT__SGEMM_HAVE_AVX512 0
#endif

/* Microkernel tile MR x NR (rows of C x columns, NR = two zmm); depth block KC (a B
 * panel KC x NR is 32 KiB, an A panel KC x MR 12 KiB: both fit L1 with room);
 * B block KC x NC (512 KiB) and, when A is packed, an A block MC x KC (120 KiB) share
 * the 1 MiB L2. */
#define DT__SGEMM_MR 12
#define DT__SGEMM_NR 32
#ifndef DT__SGEMM_KC
#define DT__SGEMM_KC 256
#endif
#define DT__SGEMM_MC 120
#define DT__SGEMM_NC 512

#if DT__SGEMM_HAVE_AVX512
/* Floats of 64-byte aligned scratch one call needs (the packed B and A blocks). */
size_t dt__sgemm_avx512_scratch_floats(void);
/* C = alpha op(A) op(B) + beta C on the calling thread; m, n, k >= 1. The CPU must have
 * AVX-512F/BW/DQ/VL. scratch: dt__sgemm_avx512_scratch_floats() floats, 64-aligned.
 * boff NULL: B's row r at b + r * ldb. Else row r at b + boff[r] (ldb unused): rows of B
 * when !tb (boff has k entries), rows of the stored B^T, op(B)'s columns, when tb (n).
 * bias non-NULL (n floats): C = alpha op(A) op(B) + bias in every row, beta unused. */
void dt__sgemm_avx512(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                      int64_t lda, const float *b, int64_t ldb, const int64_t *boff, float beta, const float *bias,
                      float *c, int64_t ldc, float *scratch);
#endif

#endif /* DT_K_SGEMM_H */
