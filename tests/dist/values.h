/* values.h: element access by dtype in doubles, and the values each rank of
 * a collective test holds, chosen so that every expected result is exact in
 * every dtype (small integers) except AVG, checked with a tolerance. */
#ifndef TESTS_DIST_VALUES_H
#define TESTS_DIST_VALUES_H

#include "dt_test.h"

static inline double get_el(dt_dtype t, const void *b, size_t i)
{
    switch (t) {
    case DT_F32: return ((const float *)b)[i];
    case DT_F64: return ((const double *)b)[i];
    case DT_BF16: return dt_bf16_to_f32(((const uint16_t *)b)[i]);
    case DT_F16: return dt_f16_to_f32(((const uint16_t *)b)[i]);
    case DT_I32: return ((const int32_t *)b)[i];
    case DT_I64: return (double)((const int64_t *)b)[i];
    case DT_U8: return ((const uint8_t *)b)[i];
    default: return NAN;
    }
}

static inline void put_el(dt_dtype t, void *b, size_t i, double v)
{
    switch (t) {
    case DT_F32: ((float *)b)[i] = (float)v; break;
    case DT_F64: ((double *)b)[i] = v; break;
    case DT_BF16: ((uint16_t *)b)[i] = dt_f32_to_bf16((float)v); break;
    case DT_F16: ((uint16_t *)b)[i] = dt_f32_to_f16((float)v); break;
    case DT_I32: ((int32_t *)b)[i] = (int32_t)v; break;
    case DT_I64: ((int64_t *)b)[i] = (int64_t)v; break;
    case DT_U8: ((uint8_t *)b)[i] = (uint8_t)v; break;
    default: break;
    }
}

/* Rank r's i-th value: 1..11. For PRODUCT: 1 or 2. */
static inline double val(int r, size_t i) { return (double)((r * 7 + i * 3) % 11 + 1); }
static inline double pval(int r, size_t i) { return (double)(1 + (r + i) % 2); }
static inline double rval(dt_redop op, int r, size_t i) { return op == DT_RED_PRODUCT ? pval(r, i) : val(r, i); }

/* The reduction of rval over ranks 0..n-1, computed independently of the library. */
static inline double expect_red(dt_redop op, int n, size_t i)
{
    double acc = rval(op, 0, i);
    long long ia = (long long)acc;
    for (int r = 1; r < n; r++) {
        double v = rval(op, r, i);
        long long iv = (long long)v;
        switch (op) {
        case DT_RED_SUM: case DT_RED_AVG: acc += v; break;
        case DT_RED_PREMUL_SUM: acc += v; break;
        case DT_RED_PRODUCT: acc *= v; break;
        case DT_RED_MIN: acc = v < acc ? v : acc; break;
        case DT_RED_MAX: acc = v > acc ? v : acc; break;
        case DT_RED_BAND: ia &= iv; break;
        case DT_RED_BOR: ia |= iv; break;
        case DT_RED_BXOR: ia ^= iv; break;
        default: break;
        }
    }
    if (op == DT_RED_BAND || op == DT_RED_BOR || op == DT_RED_BXOR) return (double)ia;
    if (op == DT_RED_AVG) return acc / n;
    if (op == DT_RED_PREMUL_SUM) return acc * 0.5;
    return acc;
}

static inline double tol_of(dt_dtype t, dt_redop op, double v)
{
    if (op != DT_RED_AVG) return 0;
    double rel = t == DT_BF16 ? 8e-3 : t == DT_F16 ? 1e-3 : t == DT_F32 ? 2e-7 : 1e-15;
    return fabs(v) * rel;
}

#endif /* TESTS_DIST_VALUES_H */
