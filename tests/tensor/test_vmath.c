/* The vectorisable f32 exp, erf, tanh and sigmoid of src/tensor/vmath.h against double
 * libm, rounded to float, over a dense sweep of all float bit patterns (every 61st; set
 * DT_VMATH_FULL=1 for all 2^32) plus the specials: +-0, denormals, tails, +-inf, NaN.
 * Then the f32 kernels that use them (exp, sigmoid, tanh, exact GELU and its backward,
 * softmax) against the same functions called one element at a time here, bit for bit
 * (the vectorised AVX2 clone must give what the scalar code gives), and GELU forward
 * and backward against a double reference. */
#include "dt_test.h"
#include "tensor/tensor_internal.h"
#include "tensor/vmath.h"

#include <stdint.h>
#include <stdlib.h>

static float f_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t u_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Distance in ulps between float got and the exact value ref (a double): |got - ref|
 * over the spacing of floats at ref (2^-149 in the denormals). */
static double ulps(float got, double ref)
{
    if (isnan(ref)) return isnan(got) ? 0 : INFINITY;
    if (isinf((float)ref) || isinf(got)) return got == (float)ref ? 0 : INFINITY; /* overflow */
    double a = fabs(ref);
    int e;
    frexp(a > 0x1p-126 ? a : 0x1p-126, &e);
    return fabs((double)got - ref) / ldexp(1.0, e - 24);
}

static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

typedef struct {
    const char *name;
    float (*f)(float);
    double (*ref)(double);
} fn;

static float v_exp(float x) { return dt__vexpf(x); }
static float v_erf(float x) { return dt__verff(x); }
static float v_tanh(float x) { return dt__vtanhf(x); }
static float v_sigmoid(float x) { return dt__vsigmoidf(x); }
static const fn g_fns[] = {
    {"exp", v_exp, exp}, {"erf", v_erf, erf}, {"tanh", v_tanh, tanh}, {"sigmoid", v_sigmoid, ref_sigmoid},
};

static void t_sweep_vs_libm(void)
{
    const char *full = getenv("DT_VMATH_FULL");
    uint64_t step = full && atoi(full) ? 1 : 61;
    for (size_t k = 0; k < sizeof g_fns / sizeof g_fns[0]; k++) {
        const fn *F = &g_fns[k];
        double worst = 0, worst_rel = 0;
        float worst_x = 0;
        for (uint64_t u = 0; u < (1ull << 32); u += step) {
            float x = f_of((uint32_t)u);
            double ref = F->ref((double)x);
            float got = F->f(x);
            double d = ulps(got, ref);
            if (d > worst) { worst = d; worst_x = x; }
            if (fabs(ref) >= 0x1p-126 && isfinite((float)ref) && isfinite(got)) {
                double rel = fabs(got - ref) / fabs(ref);
                if (rel > worst_rel) worst_rel = rel;
            }
        }
        printf("  %-8s max %.3f ulp (at %a), max rel %.3g, %s sweep\n", F->name, worst, worst_x, worst_rel,
               step == 1 ? "full" : "1/61");
        DT_ASSERT_MSG(worst <= 1.0, "%s: %.3f ulp at x = %a: %a vs %a", F->name, worst, worst_x, F->f(worst_x),
                      F->ref(worst_x));
        DT_ASSERT_MSG(worst_rel <= 2.5e-7, "%s: max relative error %g", F->name, worst_rel);
    }
}

/* The softmax exp, dt__vexpf_fast, over [-87.33, 0] (every 61st float, all with
 * DT_VMATH_FULL=1): within 1.35 ulp (the full sweep's maximum); below, 0. */
static void t_exp_fast(void)
{
    const char *full = getenv("DT_VMATH_FULL");
    uint32_t step = full && atoi(full) ? 1 : 61;
    double worst = 0;
    float worst_x = 0;
    for (uint32_t u = 0x80000000u; u <= u_of(-87.33f); u += step) { /* -0 .. -87.33 */
        float x = f_of(u);
        double d = ulps(dt__vexpf_fast(x), exp((double)x));
        if (d > worst) { worst = d; worst_x = x; }
    }
    for (uint32_t u = 0; u <= u_of(88.0f); u += step * 97) { /* positives, sparser */
        float x = f_of(u);
        double d = ulps(dt__vexpf_fast(x), exp((double)x));
        if (d > worst) { worst = d; worst_x = x; }
    }
    printf("  exp_fast max %.3f ulp (at %a)\n", worst, worst_x);
    DT_ASSERT_MSG(worst <= 1.35, "dt__vexpf_fast: %.3f ulp at %a", worst, worst_x);
    DT_ASSERT(dt__vexpf_fast(-INFINITY) == 0 && dt__vexpf_fast(-87.34f) == 0 && dt__vexpf_fast(-1e30f) == 0);
    DT_ASSERT(dt__vexpf_fast(-87.33f) >= 0x1p-126f && dt__vexpf_fast(0.0f) == 1 && dt__vexpf_fast(-0.0f) == 1);
    DT_ASSERT(isnan(dt__vexpf_fast(NAN)));
}

static void t_specials(void)
{
    DT_ASSERT(dt__vexpf(-INFINITY) == 0 && !signbit(dt__vexpf(-INFINITY)));
    DT_ASSERT(dt__vexpf(INFINITY) == INFINITY);
    DT_ASSERT(dt__vexpf(89.0f) == INFINITY);
    DT_ASSERT(dt__vexpf(88.72f) == expf(88.72f));
    DT_ASSERT(dt__vexpf(-104.0f) == 0);
    DT_ASSERT(dt__vexpf(-103.0f) > 0);                 /* a denormal */
    DT_ASSERT(dt__vexpf(0.0f) == 1 && dt__vexpf(-0.0f) == 1);
    DT_ASSERT(dt__vexpf(0x1p-149f) == 1);
    DT_ASSERT(isnan(dt__vexpf(NAN)) && isnan(dt__verff(NAN)) && isnan(dt__vtanhf(NAN)) && isnan(dt__vsigmoidf(NAN)));
    DT_ASSERT(dt__verff(INFINITY) == 1 && dt__verff(-INFINITY) == -1);
    DT_ASSERT(dt__verff(3.92f) == 1 && dt__verff(-5.0f) == -1 && dt__verff(1e30f) == 1);
    DT_ASSERT(dt__verff(0.0f) == 0 && !signbit(dt__verff(0.0f)) && signbit(dt__verff(-0.0f)));
    DT_ASSERT(dt__verff(0x1p-149f) == 0x1p-149f * 1.0f || dt__verff(0x1p-149f) == 0x1p-148f);
    DT_ASSERT(dt__vtanhf(INFINITY) == 1 && dt__vtanhf(-INFINITY) == -1 && signbit(dt__vtanhf(-0.0f)));
    DT_ASSERT(dt__vsigmoidf(-INFINITY) == 0 && dt__vsigmoidf(INFINITY) == 1);
}

/* n floats spread over every binade, both signs, with the specials first. */
static dt_tensor *spread(int64_t n, float lo, float hi)
{
    dt_tensor *t = dt_empty(DT_F32, 1, &n);
    float *p = dt_tensor_data_f32(t);
    const float sp[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0x1p-149f, -0x1p-140f, 3.92f, -3.92f, 4.0f, 88.7f, -103.5f};
    uint32_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        float x = f_of(s);
        if (!(x >= lo && x <= hi)) x = lo + (hi - lo) * (float)(s >> 8) * 0x1p-24f;
        p[i] = i < (int64_t)(sizeof sp / sizeof sp[0]) ? sp[i] : x;
    }
    return t;
}

static bool same(float a, float b) { return u_of(a) == u_of(b) || (isnan(a) && isnan(b)); }

/* The kernels' results, element by element, equal the scalar functions'. */
static void t_kernels_bitwise(void)
{
    const int64_t n = 100003; /* odd: vector body and scalar tail */
    dt_tensor *x = spread(n, -120.0f, 120.0f), *g = spread(n, -2.0f, 2.0f);
    const float *px = dt_tensor_data_f32(x), *pg = dt_tensor_data_f32(g);
    dt__ew_op ops[] = {DT__EW_EXP, DT__EW_SIGMOID, DT__EW_TANH, DT__EW_GELU, DT__EW_GELU_BW};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        dt__ew_op op = ops[k];
        dt_tensor *y = op == DT__EW_GELU_BW ? dt__ew(op, g, x, 0) : dt__ew(op, x, NULL, 0);
        DT_ASSERT(y);
        const float *py = dt_tensor_data_f32(y);
        for (int64_t i = 0; i < n; i++) {
            float v = px[i], want;
            switch (op) {
            case DT__EW_EXP: want = dt__vexpf(v); break;
            case DT__EW_SIGMOID: want = dt__vsigmoidf(v); break;
            case DT__EW_TANH: want = dt__vtanhf(v); break;
            case DT__EW_GELU: want = dt__vgeluf(v); break;
            default: want = pg[i] * dt__vgelu_gradf(v);
            }
            DT_ASSERT_MSG(same(py[i], want), "op %d at x = %a: kernel %a, scalar %a", (int)op, v, py[i], want);
        }
        dt_tensor_release(y);
    }
    dt_tensor_release(x);
    dt_tensor_release(g);
}

/* Exact GELU and its derivative in f32 against double (Phi from erfc, so there is no
 * cancellation for negative x): within 12 ulp (gelu' within 12 ulp of its larger term,
 * Phi or x phi(x), as the two cancel near its root x = -0.7518) down to x = -4 sqrt 2,
 * where Phi becomes 0 (the float formula's erf rounds to -1 from x = -5.54 on); below
 * it, within 1e-8 |x| and 1e-8. A sweep of every 7th float in [-14, 14] found at most
 * 7.6 ulp (gelu) and 8.8 (gelu', near x = 0.0155); torch's own f32 GELU is 3e-6
 * relative (50 ulp) off at x = -1.5. */
static void t_gelu_vs_double(void)
{
    const int64_t n = 200001;
    dt_tensor *x = spread(n, -12.0f, 12.0f);
    float *px = dt_tensor_data_f32(x);
    for (int64_t i = 0; i < 12; i++) px[i] = (float)(i - 6) * 0.37f; /* finite only here */
    px[12] = -0.75179165f; /* near the root of gelu' */
    dt_tensor *one = dt__full(DT_F32, 1, &n, 1.0);
    dt_tensor *y = dt__ew(DT__EW_GELU, x, NULL, 0), *d = dt__ew(DT__EW_GELU_BW, one, x, 0);
    DT_ASSERT(y && d);
    const float *py = dt_tensor_data_f32(y), *pd = dt_tensor_data_f32(d);
    double worst_y = 0, worst_d = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = px[i];
        double phi = 0.5 * erfc(-v * M_SQRT1_2);
        double ry = v * phi, rd = phi + v * 0.39894228040143267794 * exp(-0.5 * v * v);
        if (v > -4 * M_SQRT2) {
            double term = fmax(fabs(phi), fabs(rd - phi));
            double ey = fabs(py[i] - ry) <= 1e-30 ? 0 : ulps(py[i], ry);
            double ed = fabs(pd[i] - rd) / (0x1p-24 * term); /* in ulps of the larger term */
            worst_y = ey > worst_y ? ey : worst_y;
            worst_d = ed > worst_d ? ed : worst_d;
            DT_ASSERT_MSG(ey <= 12 && ed <= 12, "x = %a: gelu %a vs %a (%.2f ulp), gelu' %a vs %a (%.2f ulp)", px[i],
                          py[i], ry, ey, pd[i], rd, ed);
        } else {
            DT_ASSERT_MSG(fabs(py[i] - ry) <= 1e-8 * fabs(v) && fabs(pd[i] - rd) <= 1e-8, "x = %a: gelu %a vs %a, gelu' %a vs %a",
                          px[i], py[i], ry, pd[i], rd);
        }
    }
    printf("  gelu: max %.3f ulp, gelu': max %.3f ulp of its larger term (x > -5.66)\n", worst_y, worst_d);
    dt_tensor_release(x);
    dt_tensor_release(one);
    dt_tensor_release(y);
    dt_tensor_release(d);
}

/* softmax over rows (inner == 1, the vectorised loop) and over columns (strided). */
static void t_softmax(void)
{
    for (int dim = 0; dim < 2; dim++) {
        int64_t shape[2] = {37, 1001};
        dt_tensor *x = dt_empty(DT_F32, 2, shape);
        float *px = dt_tensor_data_f32(x);
        uint32_t s = 7;
        for (int64_t i = 0; i < shape[0] * shape[1]; i++) { s = s * 1664525u + 1013904223u; px[i] = (float)(s >> 8) * 0x1p-24f * 40 - 20; }
        dt_tensor *y = dt__softmax(x, dim, false), *ly = dt__softmax(x, dim, true);
        DT_ASSERT(y && ly);
        const float *py = dt_tensor_data_f32(y), *ply = dt_tensor_data_f32(ly);
        int64_t len = shape[dim], outer = dim ? shape[0] : 1, inner = dim ? 1 : shape[1];
        for (int64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < inner; i++) {
                const float *r = px + o * len * inner + i;
                double m = r[0], sum = 0;
                for (int64_t k = 1; k < len; k++) m = r[k * inner] > m ? r[k * inner] : m;
                for (int64_t k = 0; k < len; k++) sum += exp((double)r[k * inner] - m);
                for (int64_t k = 0; k < len; k++) {
                    int64_t j = o * len * inner + i + k * inner;
                    double ref = exp((double)px[j] - m) / sum, lref = (double)px[j] - m - log(sum);
                    /* rounding x - m to float costs |x - m| eps relative; the float sum len eps */
                    DT_ASSERT_MSG(fabs(py[j] - ref) <= ref * (2e-7 * (1 + fabs(px[j] - m)) + 2e-5), "softmax dim %d [%lld]: %a vs %a", dim, (long long)j, py[j], ref);
                    DT_ASSERT_MSG(fabs(ply[j] - lref) <= 1e-5 * (1 + fabs(lref)), "log_softmax dim %d: %a vs %a", dim, ply[j], lref);
                }
            }
        dt_tensor_release(x);
        dt_tensor_release(y);
        dt_tensor_release(ly);
    }
}

int main(void)
{
    DT_RUN(t_specials);
    DT_RUN(t_sweep_vs_libm);
    DT_RUN(t_exp_fast);
    DT_RUN(t_kernels_bitwise);
    DT_RUN(t_gelu_vs_double);
    DT_RUN(t_softmax);
    return DT_TEST_END();
}
