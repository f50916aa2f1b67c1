/* Reduction kernels (see reduce.h). Each kernel walks the elements in blocks
 * of DT__RBLK: a block of every input is folded into an accumulator on the
 * stack, in input order, then written to out, so out may alias an input.
 * The f32 sum and average, the hot paths of gradient all-reduce, are compiled
 * for AVX-512, AVX2 and baseline x86-64 and picked at load time (target_clones). */
#include "dist/reduce.h"

#include <string.h>

#define DT__RBLK 512

const char *dt_redop_name(dt_redop op)
{
    static const char *names[DT_RED_COUNT] = {"sum", "avg", "product", "min", "max", "band", "bor", "bxor", "premul_sum"};
    return (unsigned)op < DT_RED_COUNT ? names[op] : "?";
}

int dt__redop_check(dt_dtype dtype, dt_redop op)
{
    if ((unsigned)op >= DT_RED_COUNT) return dt_set_error(DT_EINVAL, "unknown reduction %d", (int)op);
    if ((unsigned)dtype >= DT_DTYPE_COUNT) return dt_set_error(DT_EINVAL, "unknown dtype %d", (int)dtype);
    bool fl = dt_dtype_is_float(dtype);
    if (fl && (op == DT_RED_BAND || op == DT_RED_BOR || op == DT_RED_BXOR))
        return dt_set_error(DT_EINVAL, "reduction %s needs an integer dtype, not %s", dt_redop_name(op), dt_dtype_name(dtype));
    if (!fl && (op == DT_RED_AVG || op == DT_RED_PREMUL_SUM))
        return dt_set_error(DT_EINVAL, "reduction %s needs a floating dtype, not %s", dt_redop_name(op), dt_dtype_name(dtype));
    return 0;
}

#if defined(__x86_64__) && !defined(DTRAIN_SANITIZED)
#define DT__CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DT__CLONES
#endif

/* f32 sum of nin inputs: the common case, written with GCC vector types (16
 * floats: one zmm, two ymm or four xmm per clone) because -O2's cost model
 * leaves the plain loop scalar. Per block: acc = in[0] + in[1], acc += in[k]
 * for the middle inputs, out = acc + in[nin-1]: the rank-order fold of the
 * reference (sum_f32_ref), one pass for two inputs. Each element of out is
 * written after every input's element at the same index was read, so out may
 * be one of the inputs (in place). */
typedef float dt__f32x16 __attribute__((vector_size(64)));

/* dst = a + b over m elements (dst may be a or b) */
static inline void add2(float *dst, const float *a, const float *b, size_t m)
{
    size_t i = 0;
    for (; i + 16 <= m; i += 16) {
        dt__f32x16 x, y;
        memcpy(&x, a + i, sizeof x);
        memcpy(&y, b + i, sizeof y);
        x += y;
        memcpy(dst + i, &x, sizeof x);
    }
    for (; i < m; i++) dst[i] = a[i] + b[i];
}

/* dst = a / d over m elements */
static inline void div1(float *dst, const float *a, float d, size_t m)
{
    size_t i = 0;
    for (; i + 16 <= m; i += 16) {
        dt__f32x16 x;
        memcpy(&x, a + i, sizeof x);
        x /= d;
        memcpy(dst + i, &x, sizeof x);
    }
    for (; i < m; i++) dst[i] = a[i] / d;
}

/* avg (DDP's gradient all_reduce): the sum stays in the block on the stack and is
 * divided by nin on the way out, the generic kernel's acc /= nin. */
DT__CLONES static void sum_f32(float *out, const void *const *in, int nin, size_t count, bool avg)
{
    if (nin == 1) {
        if (out != in[0]) memmove(out, in[0], count * sizeof(float)); /* and x / 1 == x */
        return;
    }
    for (size_t b = 0; b < count; b += DT__RBLK) {
        size_t m = count - b < DT__RBLK ? count - b : DT__RBLK;
        float acc[DT__RBLK], *last = avg ? acc : out + b; /* where the last input is added */
        add2(nin == 2 ? last : acc, (const float *)in[0] + b, (const float *)in[1] + b, m);
        for (int k = 2; k < nin; k++) add2(k == nin - 1 ? last : acc, acc, (const float *)in[k] + b, m);
        if (avg) div1(out + b, acc, (float)nin, m);
    }
}

/* The reference sum_f32 is checked against (tests/dist/test_reduce.c). */
void dt__reduce_sum_f32_ref(float *out, const void *const *in, int nin, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        float acc = ((const float *)in[0])[i];
        for (int k = 1; k < nin; k++) acc += ((const float *)in[k])[i];
        out[i] = acc;
    }
}

/* Floating types reduce in ACC (f32 for the halves) and convert on load/store. */
#define DT__FLOAT_KERNEL(fname, T, ACC, LOAD, STORE)                                           \
    static void fname(void *out_, const void *const *in, int nin, size_t count, dt_redop op,  \
                      double premul)                                                            \
    {                                                                                          \
        T *out = out_;                                                                         \
        ACC pre = (ACC)premul, div = (ACC)nin;                                                 \
        for (size_t b = 0; b < count; b += DT__RBLK) {                                         \
            size_t m = count - b < DT__RBLK ? count - b : DT__RBLK;                            \
            ACC acc[DT__RBLK];                                                                 \
            const T *x = (const T *)in[0] + b;                                                 \
            for (size_t i = 0; i < m; i++) acc[i] = LOAD(x[i]);                                \
            if (op == DT_RED_PREMUL_SUM)                                                       \
                for (size_t i = 0; i < m; i++) acc[i] *= pre;                                  \
            for (int k = 1; k < nin; k++) {                                                    \
                x = (const T *)in[k] + b;                                                      \
                switch (op) {                                                                  \
                case DT_RED_PRODUCT: for (size_t i = 0; i < m; i++) acc[i] *= LOAD(x[i]); break; \
                case DT_RED_MIN:                                                               \
                    for (size_t i = 0; i < m; i++) { ACC v = LOAD(x[i]); acc[i] = v < acc[i] ? v : acc[i]; } \
                    break;                                                                     \
                case DT_RED_MAX:                                                               \
                    for (size_t i = 0; i < m; i++) { ACC v = LOAD(x[i]); acc[i] = v > acc[i] ? v : acc[i]; } \
                    break;                                                                     \
                case DT_RED_PREMUL_SUM: for (size_t i = 0; i < m; i++) acc[i] += pre * LOAD(x[i]); break; \
                default: for (size_t i = 0; i < m; i++) acc[i] += LOAD(x[i]); break;          \
                }                                                                              \
            }                                                                                  \
            if (op == DT_RED_AVG)                                                              \
                for (size_t i = 0; i < m; i++) acc[i] /= div;                                  \
            for (size_t i = 0; i < m; i++) out[b + i] = STORE(acc[i]);                         \
        }                                                                                      \
    }

/* Integers wrap (arithmetic in the unsigned type UT). */
#define DT__INT_KERNEL(fname, T, UT)                                                           \
    static void fname(void *out_, const void *const *in, int nin, size_t count, dt_redop op,  \
                      double premul)                                                            \
    {                                                                                          \
        (void)premul;                                                                          \
        T *out = out_;                                                                         \
        for (size_t b = 0; b < count; b += DT__RBLK) {                                         \
            size_t m = count - b < DT__RBLK ? count - b : DT__RBLK;                            \
            T acc[DT__RBLK];                                                                   \
            memcpy(acc, (const T *)in[0] + b, m * sizeof(T));                                  \
            for (int k = 1; k < nin; k++) {                                                    \
                const T *x = (const T *)in[k] + b;                                             \
                switch (op) {                                                                  \
                case DT_RED_PRODUCT: for (size_t i = 0; i < m; i++) acc[i] = (T)((UT)acc[i] * (UT)x[i]); break; \
                case DT_RED_MIN: for (size_t i = 0; i < m; i++) acc[i] = x[i] < acc[i] ? x[i] : acc[i]; break; \
                case DT_RED_MAX: for (size_t i = 0; i < m; i++) acc[i] = x[i] > acc[i] ? x[i] : acc[i]; break; \
                case DT_RED_BAND: for (size_t i = 0; i < m; i++) acc[i] &= x[i]; break;        \
                case DT_RED_BOR: for (size_t i = 0; i < m; i++) acc[i] |= x[i]; break;         \
                case DT_RED_BXOR: for (size_t i = 0; i < m; i++) acc[i] ^= x[i]; break;        \
                default: for (size_t i = 0; i < m; i++) acc[i] = (T)((UT)acc[i] + (UT)x[i]); break; \
                }                                                                              \
            }                                                                                  \
            memcpy(out + b, acc, m * sizeof(T));                                               \
        }                                                                                      \
    }

#define DT__ID(x) (x)
DT__FLOAT_KERNEL(red_f32, float, float, DT__ID, DT__ID)
DT__FLOAT_KERNEL(red_f64, double, double, DT__ID, DT__ID)
DT__FLOAT_KERNEL(red_bf16, uint16_t, float, dt_bf16_to_f32, dt_f32_to_bf16)
DT__FLOAT_KERNEL(red_f16, uint16_t, float, dt_f16_to_f32, dt_f32_to_f16)
DT__INT_KERNEL(red_i32, int32_t, uint32_t)
DT__INT_KERNEL(red_i64, int64_t, uint64_t)
DT__INT_KERNEL(red_u8, uint8_t, unsigned)

void dt__reduce_n(void *out, const void *const *in, int nin, size_t count, dt_dtype dtype,
                  dt_redop op, double premul)
{
    if (count == 0 || nin <= 0) return;
    switch (dtype) {
    case DT_F32:
        if (op == DT_RED_SUM || op == DT_RED_AVG) sum_f32(out, in, nin, count, op == DT_RED_AVG);
        else red_f32(out, in, nin, count, op, premul);
        break;
    case DT_F64: red_f64(out, in, nin, count, op, premul); break;
    case DT_BF16: red_bf16(out, in, nin, count, op, premul); break;
    case DT_F16: red_f16(out, in, nin, count, op, premul); break;
    case DT_I32: red_i32(out, in, nin, count, op, premul); break;
    case DT_I64: red_i64(out, in, nin, count, op, premul); break;
    case DT_U8: red_u8(out, in, nin, count, op, premul); break;
    default: break;
    }
}
