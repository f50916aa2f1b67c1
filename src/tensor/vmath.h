/* Vectorisable f32 exp, erf, tanh, sigmoid and exact GELU (and its derivative) for the elementwise and softmax kernels.
 * Straight-line code with selects instead of branches, so that the loops of DT__KERNEL
 * functions that call them are auto-vectorised where libm's expf/erff/tanhf are opaque
 * scalar calls.
 *
 * exp, erf, tanh and sigmoid widen their float argument to double (8 lanes a vector in
 * the AVX-512 clone, 4 in the AVX2 one), evaluate a polynomial whose error is below 1e-9
 * relative, and round once to float: the result is within 1 ulp of the correctly
 * rounded float for every input (tests/tensor/test_vmath.c sweeps all floats against
 * double libm). Tails are exact: erf(|x| >= 4) = +-1, exp underflows to 0 (and through
 * the denormals) and overflows to inf, NaN propagates.
 * The GELU pieces (dt__vphif) stay in float for speed (16 lanes a vector; the GELU of a
 * transformer's MLP is a tenth of its training time) and are within 12 ulp.
 *
 * Only plain +, -, *, / and compares: with FMA contraction off (the kernels' target has no
 * FMA) the result is the same bit pattern on every machine and in every clone.
 * Not for f64: the f64 kernels keep libm. */
#ifndef DT_TENSOR_VMATH_H
#define DT_TENSOR_VMATH_H

#include <stdint.h>
#include <string.h>

#define DT__VM_INLINE static inline __attribute__((always_inline))

/* e^x for x in [-745, 709] (no range checks; callers clamp). n = round(x / ln 2) by
 * the 1.5*2^52 shift, r = x - n*ln2 in [-ln2/2, ln2/2] with ln 2 split in two so
 * n*LN2_HI is exact, e^r by its Taylor polynomial to r^10 (truncation < 3e-13),
 * and 2^n built in the exponent bits. */
DT__VM_INLINE double dt__vexp_d(double x)
{
    const double shift = 0x1.8p52, log2e = 0x1.71547652b82fep0;
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    double kd = x * log2e + shift;
    double n = kd - shift;
    double r = (x - n * ln2_hi) - n * ln2_lo;
    double p = 1.0 / 3628800;
    p = p * r + 1.0 / 362880;
    p = p * r + 1.0 / 40320;
    p = p * r + 1.0 / 5040;
    p = p * r + 1.0 / 720;
    p = p * r + 1.0 / 120;
    p = p * r + 1.0 / 24;
    p = p * r + 1.0 / 6;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t kb;
    memcpy(&kb, &kd, sizeof kb);
    uint64_t sb = (kb + 1023) << 52; /* low bits of kb hold n + 2^51 */
    double scale;
    memcpy(&scale, &sb, sizeof scale);
    return p * scale;
}

/* expf: [-110, 89] holds every argument whose result is a non-zero finite float, and
 * clamping to it keeps dt__vexp_d in range; the compares leave NaN through. */
DT__VM_INLINE float dt__vexpf(float xf)
{
    double x = xf;
    x = x < -110.0 ? -110.0 : x;
    x = x > 89.0 ? 89.0 : x;
    return (float)dt__vexp_d(x);
}

/* erff. |x| < 1: x*P(x^2), P of degree 8 fitted to erf(x)/x (error 1e-12).
 * 1 <= |x|: 1 - e^(-x^2) Q(u), Q of degree 12 in u = (|x| - 2.5)/1.5 fitted to
 * erfcx = erfc e^(x^2) on [1, 4] (error 8e-9 relative to erfc, below 2e-9 relative to
 * erf). x*x is exact in double. Past 4, |x| is clamped to 4, where 1 - erfc(4) rounds
 * to 1.0f: erf is +-1 exactly from |x| = 3.92 on. */
DT__VM_INLINE float dt__verff(float xf)
{
    double x = xf, a = x < 0 ? -x : x, t = x * x;
    double p = 1.0595297682700571e-06;
    p = p * t + -1.391171309993561e-05;
    p = p * t + 0.00011956949386408103;
    p = p * t + -0.0008542670849922049;
    p = p * t + 0.005223785024394395;
    p = p * t + -0.02686613363141665;
    p = p * t + 0.11283791313605784;
    p = p * t + -0.37612638889877786;
    p = p * t + 1.128379167094697;
    double small = x * p;

    double ac = a > 4.0 ? 4.0 : a; /* NaN stays NaN */
    double u = (ac - 2.5) * (1.0 / 1.5);
    double q = 1.381932202036597e-05;
    q = q * u + -3.692937460019878e-05;
    q = q * u + 5.494660742983317e-05;
    q = q * u + -0.00014394697031731236;
    q = q * u + 0.000414508753183022;
    q = q * u + -0.0010171192391229369;
    q = q * u + 0.002401701389643658;
    q = q * u + -0.005567332339881743;
    q = q * u + 0.012489703735181927;
    q = q * u + -0.02700572537874476;
    q = q * u + 0.05611047257950709;
    q = q * u + -0.11152100469156773;
    q = q * u + 0.21080636427599792;
    double big = 1.0 - dt__vexp_d(-(ac * ac)) * q;
    big = x < 0 ? -big : big;
    return (float)(a < 1.0 ? small : big);
}

/* tanhf: (e^(2a) - 1) / (e^(2a) + 1) with the sign of x, a = |x| clamped to 10 (where
 * tanh rounds to 1.0f); x itself below 2^-13 (the next term, x^3/3, is under 2^-27
 * relative), which also keeps the cancellation in e^(2a) - 1 under 1e-12 relative. */
DT__VM_INLINE float dt__vtanhf(float xf)
{
    double x = xf, a = x < 0 ? -x : x;
    double ac = a > 10.0 ? 10.0 : a;
    double e = dt__vexp_d(2.0 * ac);
    double r = (e - 1.0) / (e + 1.0);
    r = x < 0 ? -r : r;
    return (float)(a < 0x1p-13 ? x : r);
}

/* 1 / (1 + e^-x), computed in double and rounded once. */
DT__VM_INLINE float dt__vsigmoidf(float xf)
{
    double x = -(double)xf;
    x = x < -110.0 ? -110.0 : x;
    x = x > 110.0 ? 110.0 : x;
    return (float)(1.0 / (1.0 + dt__vexp_d(x)));
}

/* e^(hi + lo) in float arithmetic, for hi + lo in [-87.33, 88] (FLT_MIN to 2^127) and
 * |lo| far below 1: n = round((hi + lo) / ln 2) by the 1.5*2^23 shift, r = hi + lo - n ln 2
 * with ln 2 split so that n*LN2_HI is exact and hi - n*LN2_HI too (Sterbenz), e^r by a
 * degree-6 polynomial fitted on [-ln2/2, ln2/2] (error 2e-9), 2^n built in the exponent
 * bits. Within 1.35 ulp for hi exact and lo = 0 (every float in [-87.33, 0] checked). */
DT__VM_INLINE float dt__vexpf_hl(float hi, float lo)
{
    const float shift = 0x1.8p23f, log2e = 1.44269504f;
    const float ln2_hi = 0x1.62e4p-1f, ln2_lo = 0x1.7f7d1cp-20f; /* ln 2 - ln2_hi */
    float kd = (hi + lo) * log2e + shift;
    float n = kd - shift;
    float r = ((hi - n * ln2_hi) + lo) - n * ln2_lo;
    float p = 0.001383683760650456f;
    p = p * r + 0.008374822326004505f;
    p = p * r + 0.04166822507977486f;
    p = p * r + 0.16666419804096222f;
    p = p * r + 0.49999991059303284f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t kb;
    memcpy(&kb, &kd, sizeof kb);
    uint32_t sb = (kb + 127u) << 23; /* low bits of kd hold n + 2^22 */
    float scale;
    memcpy(&scale, &sb, sizeof scale);
    return p * scale;
}

/* e^x for x <= 88, all in float (16 lanes a vector; 3x dt__vexpf's speed), within
 * 1.35 ulp; results below FLT_MIN (x < -87.33) are 0, so -inf gives 0; NaN propagates.
 * For softmax's e^(x - max), where the arguments are <= 0. */
DT__VM_INLINE float dt__vexpf_fast(float x)
{
    float xc = x >= -87.33f ? x : -87.33f;
    float e = dt__vexpf_hl(xc, 0.0f);
    return x >= -87.33f ? e : (x == x ? 0.0f : x);
}

/* OUT = the sum over J in [0, N) of EXPR (an expression in J), accumulated in type TA
 * in a fixed order that vectorises: 16 running sums, lane l taking J = l, l + 16, ...,
 * added up in lane order, then the tail in order. The same bits in every clone (a
 * vector of 16 or two of 8 add the same pairs). For a row's sum, of squares, of exps. */
#define DT__LANE_SUM(TA, OUT, N, J, EXPR)                                                \
    do {                                                                                 \
        TA acc_[16] = {0}, s_ = 0;                                                       \
        int64_t b_ = 0;                                                                  \
        for (; b_ + 16 <= (N); b_ += 16)                                                 \
            for (int l_ = 0; l_ < 16; l_++) { int64_t J = b_ + l_; acc_[l_] += (EXPR); } \
        for (int l_ = 0; l_ < 16; l_++) s_ += acc_[l_];                                  \
        for (int64_t J = b_; J < (N); J++) s_ += (EXPR);                                 \
        (OUT) = s_;                                                                      \
    } while (0)

/* Sum, dot product and maximum of a row in that order, for float or double. */
#define DT__LANE_SUMS(T)                                                                 \
    DT__VM_INLINE T dt__lanesum_##T(const T *x, int64_t n)                               \
    {                                                                                    \
        T s;                                                                             \
        DT__LANE_SUM(T, s, n, j, x[j]);                                                  \
        return s;                                                                        \
    }                                                                                    \
    DT__VM_INLINE T dt__lanedot_##T(const T *x, const T *y, int64_t n)                   \
    {                                                                                    \
        T s;                                                                             \
        DT__LANE_SUM(T, s, n, j, x[j] * y[j]);                                           \
        return s;                                                                        \
    }                                                                                    \
    /* The largest of x[0..n), n >= 1, as the loop m = x[0]; m = x[j] > m ? x[j] : m    \
     * gives it: NaNs after x[0] are passed over, a NaN x[0] is the result. */           \
    DT__VM_INLINE T dt__lanemax_##T(const T *x, int64_t n)                               \
    {                                                                                    \
        T acc[16], m;                                                                    \
        for (int l = 0; l < 16; l++) acc[l] = x[0];                                      \
        int64_t j = 0;                                                                   \
        for (; j + 16 <= n; j += 16)                                                     \
            for (int l = 0; l < 16; l++) acc[l] = x[j + l] > acc[l] ? x[j + l] : acc[l]; \
        m = acc[0];                                                                      \
        for (int l = 1; l < 16; l++) m = acc[l] > m ? acc[l] : m;                        \
        for (; j < n; j++) m = x[j] > m ? x[j] : m;                                      \
        return m;                                                                        \
    }
DT__LANE_SUMS(float)
DT__LANE_SUMS(double)

/* e^(-x^2/2) and Phi(x) = erfc(-x / sqrt 2) / 2 for the exact GELU, all in float (16
 * lanes a vector in the AVX-512 clone where double gives 8), within 12 ulp of the exact
 * values (tests/tensor/test_vmath.c; torch's own float GELU is 3e-6 relative off at
 * x = -1.5 and 7e-3 at x = -3, where 1 + erf(z) cancels).
 * The exponent -x^2/2 is exact in two pieces: x split into xh (its top 12 bits, so xh^2
 * is exact) and xl = x - xh; hi - n ln2_hi is then exact (Sterbenz), so e^(-x^2/2) has
 * the error of its degree-6 polynomial alone (< 2 ulp) and none from rounding x^2.
 * erfc(a) = e^(-a^2) Q(v), a = |x| / sqrt 2 clamped to 4, v = 1 / (a + 2.5), Q of
 * degree 8 in v - 1/6.5 fitted to erfcx(a) on [0, 4] (error 4e-9); one formula on both
 * sides: Phi = erfc/2 below 0 (no cancellation) and 1 - erfc/2 above.
 * Tails: Phi is 0 below x = -4 sqrt 2 (as the float formula 0.5 x (1 + erf z) is 0 from
 * z = -3.92 on) and rounds to 1 above 4 sqrt 2; e^(-x^2/2) is 0 past |x| = 13. NaN
 * propagates. */
DT__VM_INLINE float dt__vphif(float x, float *gauss)
{
    float ax = x < 0 ? -x : x;
    float xc = ax < 13.0f ? ax : 13.0f; /* NaN goes to 13, caught below */
    uint32_t b;
    memcpy(&b, &xc, sizeof b);
    b &= 0xFFFFF000u;
    float xh;
    memcpy(&xh, &b, sizeof xh);
    float xl = xc - xh;
    float e = dt__vexpf_hl((xh * xh) * -0.5f, (xl * (xc + xh)) * -0.5f);
    e = ax < 13.0f ? e : 0.0f;

    float a = ax * 0.70710678f;
    a = a < 4.0f ? a : 4.0f;
    float u = 1.0f / (a + 2.5f) - 0.15384616f;
    float q = 131.6685791015625f;
    q = q * u + -116.82133483886719f;
    q = q * u + -12.04314136505127f;
    q = q * u + 20.35655975341797f;
    q = q * u + 21.00025177001953f;
    q = q * u + 11.35909366607666f;
    q = q * u + 4.432909965515137f;
    q = q * u + 1.3682035207748413f;
    q = q * u + 0.1369994580745697f;
    float h = 0.5f * (e * q);           /* erfc(|x| / sqrt 2) / 2 */
    float phi = x < 0 ? h : 1.0f - h;
    phi = x < -5.656854f ? 0.0f : phi;
    *gauss = e;
    return x == x ? phi : x;
}

/* Exact GELU x Phi(x), and in *grad its derivative Phi(x) + x e^(-x^2/2) / sqrt(2 pi),
 * from one Phi (autograd's f32 GELU keeps the derivative for backward). */
DT__VM_INLINE float dt__vgelu_bothf(float x, float *grad)
{
    float e, phi = dt__vphif(x, &e);
    *grad = phi + x * (e * 0.39894228f);
    return x * phi;
}

/* Each alone: the same bits as dt__vgelu_bothf's. */
DT__VM_INLINE float dt__vgeluf(float x)
{
    float g;
    return dt__vgelu_bothf(x, &g);
}

DT__VM_INLINE float dt__vgelu_gradf(float x)
{
    float g;
    dt__vgelu_bothf(x, &g);
    return g;
}

#endif
