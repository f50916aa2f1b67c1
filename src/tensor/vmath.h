/* Vectorisable f32 exp, erf, tanh, sigmoid and exact GELU (and its derivative) for the elementwise and softmax kernels.
 * Straight-line code with selects instead of branches, so that the loops of DT__KERNEL
 * functions that call them are auto-vectorised (as doubles: 8 a vector in the AVX-512
 * clone, 4 in the AVX2 one) where libm's expf/erff/tanhf are opaque scalar calls.
 *
 * Each function widens its float argument to double, evaluates a polynomial whose
 * error is below 1e-9 relative, and rounds once to float: the result is within 1 ulp of
 * the correctly rounded float for every input (tests/tensor/test_vmath.c sweeps all
 * floats against double libm). Tails are exact: erf(|x| >= 4) = +-1, exp underflows to
 * 0 (and through the denormals) and overflows to inf, NaN propagates.
 *
 * Only plain +, -, * and compares: with FMA contraction off (the kernels' target has no
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

/* Phi(x) = (1 + erf(z)) / 2, z = x / sqrt 2, with the pieces of dt__verff, in double
 * for a double x; *ez = e^(-z^2) (0 past z^2 = 110). For z <= -1 it is erfc(|z|) / 2
 * directly, not 1 + erf(z), so there is no cancellation; past z = -4 it is 0 (the float
 * formula 0.5 x (1 + erf z) is 0 from z = -3.92 on). */
DT__VM_INLINE double dt__vphi_d(double x, double *ez)
{
    double z = x * 0.70710678118654752440, a = z < 0 ? -z : z, t = z * z;
    double p = 1.0595297682700571e-06;
    p = p * t + -1.391171309993561e-05;
    p = p * t + 0.00011956949386408103;
    p = p * t + -0.0008542670849922049;
    p = p * t + 0.005223785024394395;
    p = p * t + -0.02686613363141665;
    p = p * t + 0.11283791313605784;
    p = p * t + -0.37612638889877786;
    p = p * t + 1.128379167094697;
    double small = 0.5 + 0.5 * (z * p);

    double ac = a > 4.0 ? 4.0 : a;
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
    double tc = t < 110.0 ? t : 110.0;  /* NaN goes to 110, caught below */
    double e = dt__vexp_d(-tc);
    *ez = t < 110.0 ? e : 0.0;
    double half_erfc = 0.5 * (e * q);   /* erfc(|z|) / 2 for 1 <= |z| <= 4 */
    double big = z < 0 ? half_erfc : 1.0 - half_erfc;
    big = z < -4.0 ? 0.0 : big;
    double r = a < 1.0 ? small : big;
    return t == t ? r : z;              /* NaN */
}

/* Exact GELU x Phi(x), rounded once. */
DT__VM_INLINE float dt__vgeluf(float xf)
{
    double ez, x = xf;
    return (float)(x * dt__vphi_d(x, &ez));
}

/* Its derivative Phi(x) + x e^(-x^2/2) / sqrt(2 pi), rounded once. */
DT__VM_INLINE float dt__vgelu_gradf(float xf)
{
    double ez, x = xf;
    double phi = dt__vphi_d(x, &ez);
    return (float)(phi + x * 0.39894228040143267794 * ez);
}

#endif
