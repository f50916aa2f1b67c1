/* dtype table: sizes and names (include/dtrain/dtype.h). */
#include <dtrain/dtype.h>
#include <dtrain/util.h>

#include <string.h>

static const struct { const char *name; size_t size; const char *st; } table[DT_DTYPE_COUNT] = {
#define DT__DT_ROW(e, name, size, st) [DT_##e] = {name, size, st},
    DT_DTYPE_MAP(DT__DT_ROW)
#undef DT__DT_ROW
};

size_t dt_dtype_size(dt_dtype t) { return (unsigned)t < DT_DTYPE_COUNT ? table[t].size : 0; }
const char *dt_dtype_name(dt_dtype t) { return (unsigned)t < DT_DTYPE_COUNT ? table[t].name : "?"; }
const char *dt_dtype_st_name(dt_dtype t) { return (unsigned)t < DT_DTYPE_COUNT ? table[t].st : NULL; }
int dt_dtype_is_float(dt_dtype t) { return t == DT_F32 || t == DT_F64 || t == DT_BF16 || t == DT_F16; }

int dt_dtype_parse(const char *s, dt_dtype *out)
{
    for (int i = 0; i < DT_DTYPE_COUNT; i++)
        if (strcmp(s, table[i].name) == 0 || strcmp(s, table[i].st) == 0) { *out = (dt_dtype)i; return 0; }
    if (strcmp(s, "f32") == 0) { *out = DT_F32; return 0; }
    if (strcmp(s, "f64") == 0) { *out = DT_F64; return 0; }
    if (strcmp(s, "bf16") == 0) { *out = DT_BF16; return 0; }
    if (strcmp(s, "f16") == 0) { *out = DT_F16; return 0; }
    if (strcmp(s, "i64") == 0) { *out = DT_I64; return 0; }
    if (strcmp(s, "i32") == 0) { *out = DT_I32; return 0; }
    if (strcmp(s, "u8") == 0) { *out = DT_U8; return 0; }
    return dt_set_error(DT_EINVAL, "unknown dtype '%s'", s);
}
