/* dtrain dtypes: the element types tensors, collectives and files share, with
 * their sizes, names and the bf16/f16 <-> f32 conversions (round to nearest even).
 * Lives in util because both tensor and dist (which knows nothing of tensors)
 * describe buffers as (pointer, count, dtype). */
#ifndef DTRAIN_DTYPE_H
#define DTRAIN_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(enum suffix, name as torch prints it, size in bytes, safetensors name) */
#define DT_DTYPE_MAP(X)               \
    X(F32, "float32", 4, "F32")       \
    X(F64, "float64", 8, "F64")       \
    X(BF16, "bfloat16", 2, "BF16")    \
    X(F16, "float16", 2, "F16")       \
    X(I64, "int64", 8, "I64")         \
    X(I32, "int32", 4, "I32")         \
    X(U8, "uint8", 1, "U8")

typedef enum {
#define DT__DT_ENUM(e, name, size, st) DT_##e,
    DT_DTYPE_MAP(DT__DT_ENUM)
#undef DT__DT_ENUM
    DT_DTYPE_COUNT
} dt_dtype;

/* Bytes per element; 0 for an invalid dtype. */
size_t dt_dtype_size(dt_dtype t);
/* "float32", ...; "?" for an invalid dtype. */
const char *dt_dtype_name(dt_dtype t);
/* safetensors' name ("F32", "BF16", ...); NULL for an invalid dtype. */
const char *dt_dtype_st_name(dt_dtype t);
/* Parse either kind of name; returns 0 and sets *out, or DT_EINVAL. */
int dt_dtype_parse(const char *s, dt_dtype *out);
/* True for the floating types (F32, F64, BF16, F16). */
int dt_dtype_is_float(dt_dtype t);

static inline float dt_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t dt_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                             /* nearest even */
    return (uint16_t)(u >> 16);
}

static inline float dt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) { man <<= 1; exp--; }
            u = sign | (exp << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t dt_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);            /* NaN */
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);           /* overflow -> inf (>= 65520) */
    if (abs < 0x38800000u) {                                              /* subnormal or zero */
        if (abs < 0x33000000u) return (uint16_t)sign;                     /* < 2^-25 rounds to 0 */
        uint32_t e = abs >> 23, m = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                                         /* 14 + (113 - e) - 1 */
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);                       /* nearest even */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_DTYPE_H */
