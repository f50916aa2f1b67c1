/* The AVX-512 single-precision GEMM behind dt__sgemm (k_sgemm.c picks it or OpenBLAS).
 * Row-major C (m, n) = alpha op(A) (m, k) op(B) (k, n) + beta C, Goto/BLIS blocking:
 *
 *   for each column block jc of NC columns            (B block kc x nc stays in L2)
 *     for each depth block pc of kc <= KC             (kc balanced: K split evenly)
 *       pack B[pc.., jc..] into NR-column panels      (kc x NR each, zero padded)
 *       for each row block ic of MC rows
 *         [pack A[ic.., pc..] into MR-row panels]     (only in one case, below)
 *         for each MR-row tile ir                     (its A rows stay in L1)
 *           for each NR-column panel jr: microkernel  (mr x NR tile of C)
 *
 * The microkernel keeps an mr x 32 tile of C in 2*mr zmm accumulators (mr <= 12, so
 * 24 of the 32 registers), loads one 32-wide row of the B panel and broadcasts mr
 * values of A per k step. It reads A where it lies (row-major, or stored transposed):
 * measured faster than packing A on every model shape, because the broadcasts need no
 * particular layout and the tile's A rows stay in L1 across the column panels. A is
 * packed (k-major, kc x mr) only when stored transposed with a 4 KiB row stride and C
 * is wide, where those rows would collide in L1 sets. B is always packed; a transposed
 * B (x @ W^T) through 16x16 in-register transposes. Edges: rows by kernels
 * instantiated for every mr in 1..12, columns by masked C loads and stores over a
 * zero-padded B panel (16-wide kernels for a last panel of <= 16 columns). alpha is
 * applied when the tile is written; beta only on the first depth block, and C is not
 * read when beta == 0. With a bias (a row vector, F.linear's), the first depth block
 * writes alpha acc + bias instead, C not read: the same bits as C = bias, then beta 1. Each C element's k-sum runs in one fixed order (depth blocks in
 * turn, k ascending inside), whatever the thread count.
 *
 * Compiled for any x86-64: only the functions here carry the AVX-512 target
 * attribute, and k_sgemm.c calls them only after checking the CPU. Not here:
 * threading (the caller splits C into row or column ranges) and the choice of kernel. */
#include "tensor/k_sgemm.h"

#if DT__SGEMM_HAVE_AVX512

#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma")))
#define TGT_INLINE TGT __attribute__((always_inline)) static inline
/* -O2 leaves these short fixed loops rolled, which puts the zmm arrays on the stack. */
#define UNROLL _Pragma("GCC unroll 16")

enum { MR = DT__SGEMM_MR, NR = DT__SGEMM_NR, KC = DT__SGEMM_KC, MC = DT__SGEMM_MC, NC = DT__SGEMM_NC };

TGT_INLINE __mmask16 lanes(int64_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n > 0 ? n : 0)) - 1u); }

/* r[0..15] <- its transpose, in place. */
TGT_INLINE void transpose16(__m512 r[16])
{
    __m512 t[16];
    UNROLL for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    UNROLL for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    /* r[4g + q] now holds, in each 128-bit lane L, row 4L.. of column group: combine lanes. */
    UNROLL for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    UNROLL for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* dst[p * ds + r] = src[r * ld + p] for r < rows (<= 16), p < kc, and 0 for rows <= r <
 * width: a block stored with the packed dimension along rows, turned k-major. With off,
 * row r starts at src + off[r] instead of src + r * ld. */
TGT static void pack_transposed(const float *src, int64_t ld, const int64_t *off, int rows, int64_t kc, float *dst,
                                int64_t ds, int width)
{
    __mmask16 wm = lanes(width);
    for (int64_t p0 = 0; p0 < kc; p0 += 16) {
        __mmask16 rm = lanes(kc - p0);
        __m512 r[16];
        /* Short strided row segments defeat the hardware prefetcher: fetch 4 lines ahead. */
        UNROLL for (int i = 0; i < 16; i++)
            if (i < rows) _mm_prefetch((const char *)(src + (off ? off[i] : i * ld) + p0 + 64), _MM_HINT_T0);
        UNROLL for (int i = 0; i < 16; i++)
            r[i] = i < rows ? _mm512_maskz_loadu_ps(rm, src + (off ? off[i] : i * ld) + p0) : _mm512_setzero_ps();
        transpose16(r);
        if (kc - p0 >= 16) {
            UNROLL for (int q = 0; q < 16; q++) _mm512_mask_storeu_ps(dst + (p0 + q) * ds, wm, r[q]);
        } else {
            UNROLL for (int q = 0; q < 16; q++) if (q < kc - p0) _mm512_mask_storeu_ps(dst + (p0 + q) * ds, wm, r[q]);
        }
    }
}

/* dst[p * ds + r] = src[p * ld + r] for r < rows (<= 16), p < kc, and 0 for rows <= r < width.
 * With off, row p starts at src + off[p] instead of src + p * ld. */
TGT static void pack_direct(const float *src, int64_t ld, const int64_t *off, int rows, int64_t kc, float *dst,
                            int64_t ds, int width)
{
    __mmask16 rm = lanes(rows), wm = lanes(width);
    if (off)
        for (int64_t p = 0; p < kc; p++) _mm512_mask_storeu_ps(dst + p * ds, wm, _mm512_maskz_loadu_ps(rm, src + off[p]));
    else
        for (int64_t p = 0; p < kc; p++) _mm512_mask_storeu_ps(dst + p * ds, wm, _mm512_maskz_loadu_ps(rm, src + p * ld));
}

/* op(B)[pc.., jc..] (kc x nc) into ceil(nc / NR) panels of kc x NR, zero padded.
 * boff (or NULL): B's rows (tb: op(B)'s columns) start at b + boff[row], not b + row * ldb. */
TGT static void pack_b(bool tb, const float *b, int64_t ldb, const int64_t *boff, int64_t pc, int64_t jc, int64_t kc,
                       int64_t nc, float *dst)
{
    for (int64_t j = 0; j < nc; j += NR, dst += kc * NR)
        for (int h = 0; h < NR; h += 16) {
            int64_t w = nc - j - h;
            int rows = w >= 16 ? 16 : (w > 0 ? (int)w : 0);
            if (!tb) {
                if (boff) pack_direct(b + jc + j + h, 0, boff + pc, rows, kc, dst + h, NR, 16);
                else pack_direct(b + pc * ldb + jc + j + h, ldb, NULL, rows, kc, dst + h, NR, 16);
            } else {
                if (boff) pack_transposed(b + pc, 0, boff + jc + j + h, rows, kc, dst + h, NR, 16);
                else pack_transposed(b + (jc + j + h) * ldb + pc, ldb, NULL, rows, kc, dst + h, NR, 16);
            }
        }
}

/* A (k, m) read transposed, [pc.., ic..] into MR-row panels of kc x mr (the last one
 * shorter): rows of A are already k-major, so this is a copy of mr-float runs. */
TGT static void pack_a_t(const float *a, int64_t lda, int64_t ic, int64_t pc, int64_t mc, int64_t kc, float *dst)
{
    for (int64_t i = 0; i < mc; i += MR) {
        int mr = mc - i < MR ? (int)(mc - i) : MR;
        pack_direct(a + pc * lda + ic + i, lda, NULL, mr, kc, dst, mr, mr);
        dst += kc * mr;
    }
}

/* C tile (R x nr, nr <= 32) = alpha * A panel (kc x R) . B panel (kc x 32) [+ beta C].
 * R is a constant in each instantiation: the row macros below drop rows >= R, so the
 * accumulators are named variables that stay in registers. */
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECL(i) __m512 c##i##a = _mm512_setzero_ps(), c##i##b = _mm512_setzero_ps();
#define STEP(i)                                                        \
    if (R > i) {                                                       \
        __m512 av = _mm512_set1_ps(amode == 1 ? ap[i * lda + p] : amode == 2 ? ap[p * lda + i] : ap[i]); \
        c##i##a = _mm512_fmadd_ps(av, b0, c##i##a);                    \
        if (W > 1) c##i##b = _mm512_fmadd_ps(av, b1, c##i##b);         \
    }
#define PREF(i) if (R > i) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
#define SAVE(i) if (R > i) save_row(W, c + i * ldc, c##i##a, c##i##b, va, vb0, vb1, m0, m1, mode);

/* mode 0: C = alpha acc (C not read); 1: C = alpha acc + C; 2: C = alpha acc + beta C;
 * 3: C = alpha acc + bias (the row vector vb, C not read). */
TGT_INLINE void save_half(float *ci, __m512 x, __m512 va, __m512 vb, __mmask16 m, int mode)
{
    __m512 r = _mm512_mul_ps(va, x);
    if (mode == 1) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, ci));
    else if (mode == 2) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, ci), r);
    else if (mode == 3) r = _mm512_add_ps(r, vb);
    _mm512_mask_storeu_ps(ci, m, r);
}

TGT_INLINE void save_row(const int W, float *ci, __m512 x0, __m512 x1, __m512 va, __m512 vb0, __m512 vb1,
                         __mmask16 m0, __mmask16 m1, int mode)
{
    save_half(ci, x0, va, vb0, m0, mode);
    if (W > 1) save_half(ci + 16, x1, va, vb1, m1, mode);
}

/* amode 0: ap is a packed A panel; 1: A is not packed, ap is row 0 of the tile in
 * row-major A (row stride lda); 2: ap is column 0 of the tile in A stored transposed.
 * W: zmm columns of the tile (1 when nr <= 16: the second half would be all padding).
 * pf: amode 1 only, the next tile's first row (prefetched one line per k step) or NULL. */
TGT_INLINE void kernel(const int R, const int W, const int amode, int64_t kc, const float *restrict ap, int64_t lda,
                       const float *pf, const float *restrict bp, float *c, int64_t ldc, int nr, float alpha,
                       float beta, const float *bias, bool first)
{
    ROWS(DECL)
    ROWS(PREF)
    int pf_row = 0;
    int64_t pf_col = 0;
    for (int64_t p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = W > 1 ? _mm512_load_ps(bp + 16) : b0;
        _mm_prefetch((const char *)(bp + 8 * NR), _MM_HINT_T0);
        if (amode == 1 && pf && pf_col < kc) {
            /* One line of the next tile's A rows per k step: 12 rows x kc/16 lines. */
            _mm_prefetch((const char *)(pf + pf_row * lda + pf_col), _MM_HINT_T0);
            if (++pf_row == MR) { pf_row = 0; pf_col += 16; }
        }
        ROWS(STEP)
        if (amode == 0) ap += R;
        bp += NR;
    }
    __m512 va = _mm512_set1_ps(alpha), vb0 = _mm512_set1_ps(beta), vb1 = vb0;
    __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
    int mode = !first ? 1 : bias ? 3 : beta == 0.0f ? 0 : 2;
    if (mode == 3) {
        vb0 = _mm512_maskz_loadu_ps(m0, bias);
        if (W > 1) vb1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
    ROWS(SAVE)
}
#undef ROWS
#undef DECL
#undef STEP
#undef PREF
#undef SAVE

#define KERNEL_RW(R, W, D, NAME)                                                                        \
    TGT static void NAME(int64_t kc, const float *ap, int64_t lda, const float *pf, const float *bp,       \
                         float *c, int64_t ldc, int nr, float alpha, float beta, const float *bias, bool first) \
    { kernel(R, W, D, kc, ap, lda, pf, bp, c, ldc, nr, alpha, beta, bias, first); }
#define KERNEL_R(R)                                 \
    KERNEL_RW(R, 2, 0, kernel_p2_##R)               \
    KERNEL_RW(R, 1, 0, kernel_p1_##R)               \
    KERNEL_RW(R, 2, 1, kernel_d2_##R)               \
    KERNEL_RW(R, 1, 1, kernel_d1_##R)               \
    KERNEL_RW(R, 2, 2, kernel_t2_##R)               \
    KERNEL_RW(R, 1, 2, kernel_t1_##R)
KERNEL_R(1) KERNEL_R(2) KERNEL_R(3) KERNEL_R(4) KERNEL_R(5) KERNEL_R(6)
KERNEL_R(7) KERNEL_R(8) KERNEL_R(9) KERNEL_R(10) KERNEL_R(11) KERNEL_R(12)
#undef KERNEL_R
#undef KERNEL_RW

typedef void (*kernel_fn)(int64_t, const float *, int64_t, const float *, const float *, float *, int64_t, int, float,
                          float, const float *, bool);
#define ALL_R(P) {NULL, P##1, P##2, P##3, P##4, P##5, P##6, P##7, P##8, P##9, P##10, P##11, P##12}
/* kernels[amode][W - 1][R] */
static const kernel_fn kernels[3][2][MR + 1] = {
    {ALL_R(kernel_p1_), ALL_R(kernel_p2_)},
    {ALL_R(kernel_d1_), ALL_R(kernel_d2_)},
    {ALL_R(kernel_t1_), ALL_R(kernel_t2_)},
};
#undef ALL_R

/* Split len into the fewest blocks of at most cap, equal up to a multiple of unit. */
static int64_t balanced(int64_t len, int64_t cap, int64_t unit)
{
    int64_t nb = (len + cap - 1) / cap;
    int64_t b = (len + nb - 1) / nb;
    return (b + unit - 1) / unit * unit;
}

size_t dt__sgemm_avx512_scratch_floats(void)
{
    return (size_t)KC * NC + (size_t)MC * KC;
}

TGT void dt__sgemm_avx512(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                          int64_t lda, const float *b, int64_t ldb, const int64_t *boff, float beta, const float *bias,
                          float *c, int64_t ldc, float *scratch)
{
    float *bpack = scratch, *apack = scratch + (size_t)KC * NC;
    int64_t kcb = balanced(k, KC, 8), ncb = balanced(n, NC, NR), mcb = balanced(m, MC, MR);
    /* A is read in place (amode 1 or 2): that measured faster than packing it at every
     * model shape (row-major A would need a transposing pack). Packed only when A is
     * stored transposed with a row stride of a multiple of 4 KiB and C is wider than
     * two column panels: then the tile's k-rows of A share L1 sets and get evicted
     * before the next column panel reuses them (1024x512x1024: 3% faster packed). */
    int amode = !ta ? 1 : (lda % 1024 == 0 && n > 2 * NR) ? 0 : 2;
    for (int64_t jc = 0; jc < n; jc += ncb) {
        int64_t nc = n - jc < ncb ? n - jc : ncb;
        for (int64_t pc = 0; pc < k; pc += kcb) {
            int64_t kc = k - pc < kcb ? k - pc : kcb;
            bool first = pc == 0;
            pack_b(tb, b, ldb, boff, pc, jc, kc, nc, bpack);
            for (int64_t ic = 0; ic < m; ic += mcb) {
                int64_t mc = m - ic < mcb ? m - ic : mcb;
                if (amode == 0) pack_a_t(a, lda, ic, pc, mc, kc, apack);
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    int mr = mc - ir < MR ? (int)(mc - ir) : MR;
                    const float *ap = amode == 1   ? a + (ic + ir) * lda + pc
                                      : amode == 2 ? a + pc * lda + ic + ir
                                                   : apack + ir * kc;
                    /* Row-major A: the first column panel prefetches the next full tile's rows. */
                    const float *next = amode == 1 && ic + ir + 2 * MR <= m ? ap + MR * lda : NULL;
                    for (int64_t jr = 0; jr < nc; jr += NR) {
                        int nr = nc - jr < NR ? (int)(nc - jr) : NR;
                        kernels[amode][nr > 16][mr](kc, ap, lda, jr == 0 ? next : NULL, bpack + jr * kc,
                                                    c + (ic + ir) * ldc + jc + jr, ldc, nr, alpha, beta,
                                                    first && bias ? bias + jc + jr : NULL, first);
                    }
                }
            }
        }
    }
}

#endif /* DT__SGEMM_HAVE_AVX512 */
