/* dtypes: table and the bf16/f16 conversions against exhaustive checks. */
#include "dt_test.h"

#include <math.h>

static void t_table(void)
{
    DT_ASSERT_EQ(dt_dtype_size(DT_F32), 4);
    DT_ASSERT_EQ(dt_dtype_size(DT_BF16), 2);
    DT_ASSERT_EQ(dt_dtype_size(DT_I64), 8);
    DT_ASSERT_EQ(dt_dtype_size(DT_U8), 1);
    DT_ASSERT_EQ(dt_dtype_size(DT_DTYPE_COUNT), 0);
    DT_ASSERT_STREQ(dt_dtype_name(DT_F16), "float16");
    DT_ASSERT_STREQ(dt_dtype_st_name(DT_I32), "I32");
    dt_dtype t;
    DT_ASSERT_OK(dt_dtype_parse("BF16", &t));
    DT_ASSERT_EQ(t, DT_BF16);
    DT_ASSERT_OK(dt_dtype_parse("f64", &t));
    DT_ASSERT_EQ(t, DT_F64);
    DT_ASSERT_ERR(dt_dtype_parse("f8", &t), DT_EINVAL);
    DT_ASSERT_CONTAINS(dt_last_error(), "'f8'");
}

/* Every bf16 and f16 value round-trips exactly through f32. */
static void t_roundtrip_all(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dt_bf16_to_f32((uint16_t)h);
        if (!isnan(f)) DT_ASSERT_EQ(dt_f32_to_bf16(f), h);
        float g = dt_f16_to_f32((uint16_t)h);
        if (!isnan(g)) DT_ASSERT_EQ(dt_f32_to_f16(g), h);
        else DT_ASSERT(isnan(dt_f16_to_f32(dt_f32_to_f16(g))));
    }
}

/* Rounding: nearest, ties to even, checked against the neighbours in double. */
static void t_rounding(void)
{
    DT_ASSERT_NEAR(dt_f16_to_f32(dt_f32_to_f16(1.0f)), 1.0, 0);
    DT_ASSERT_NEAR(dt_f16_to_f32(dt_f32_to_f16(65504.0f)), 65504.0, 0);
    DT_ASSERT(isinf(dt_f16_to_f32(dt_f32_to_f16(65520.0f))));
    DT_ASSERT_NEAR(dt_f16_to_f32(dt_f32_to_f16(65519.0f)), 65504.0, 0);
    DT_ASSERT_NEAR(dt_f16_to_f32(dt_f32_to_f16(0x1p-24f)), 0x1p-24, 0); /* smallest subnormal */
    DT_ASSERT_NEAR(dt_f16_to_f32(dt_f32_to_f16(2.98e-8f)), 0.0, 0);
    /* tie: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 -> even (1) */
    DT_ASSERT_EQ(dt_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    DT_ASSERT_EQ(dt_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    DT_ASSERT_EQ(dt_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    DT_ASSERT_EQ(dt_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    /* random values: the result is the nearest representable one */
    uint32_t x = 12345;
    for (int i = 0; i < 200000; i++) {
        x = x * 1664525u + 1013904223u;
        float f = (float)((double)(x >> 8) / (1 << 24) * 200.0 - 100.0);
        uint16_t h = dt_f32_to_f16(f);
        double err = fabs((double)dt_f16_to_f32(h) - f);
        double e1 = fabs((double)dt_f16_to_f32((uint16_t)(h + 1)) - f);
        double e2 = fabs((double)dt_f16_to_f32((uint16_t)(h - 1)) - f);
        DT_ASSERT(err <= e1 && err <= e2);
        uint16_t b = dt_f32_to_bf16(f);
        err = fabs((double)dt_bf16_to_f32(b) - f);
        DT_ASSERT(err <= fabs((double)dt_bf16_to_f32((uint16_t)(b + 1)) - f));
        DT_ASSERT(err <= fabs((double)dt_bf16_to_f32((uint16_t)(b - 1)) - f));
    }
}

int main(void)
{
    DT_RUN(t_table);
    DT_RUN(t_roundtrip_all);
    DT_RUN(t_rounding);
    return DT_TEST_END();
}
