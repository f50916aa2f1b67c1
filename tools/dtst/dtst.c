/* dtst: look into safetensors files (state dicts, optimizer state, checkpoints).
 *   dtst FILE...                    validate and list: name, dtype, shape, bytes; then __metadata__
 *   dtst --diff A B [--tol T]       compare two files tensor by tensor: names, dtypes, shapes, and
 *                                   for numbers the largest |a - b| (exit 1 when any exceeds T, default 0)
 * Exits 1 (with the library's message) for a file that does not validate. Does not write files. */
#include <dtrain/dtrain.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void shape_str(const dt_st_tensor *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++) k += (size_t)snprintf(buf + k, n - k, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

static int list(const char *path)
{
    dt_st_file *f = dt_st_open(path);
    if (!f) {
        fprintf(stderr, "dtst: %s\n", dt_last_error());
        return 1;
    }
    size_t n = dt_st_count(f);
    long long total = 0;
    printf("%s: %zu tensors\n", path, n);
    for (size_t i = 0; i < n; i++) {
        const dt_st_tensor *t = dt_st_at(f, i);
        char sh[256];
        shape_str(t, sh, sizeof sh);
        printf("  %-40s %-4s %-20s %12llu bytes\n", t->name, dt_dtype_st_name(t->dtype), sh, (unsigned long long)t->nbytes);
        total += (long long)t->nbytes;
    }
    printf("  total %lld bytes\n", total);
    for (size_t i = 0; i < dt_st_meta_count(f); i++) {
        const char *k, *v;
        dt_st_meta_at(f, i, &k, &v);
        printf("  metadata %s = %s\n", k, v);
    }
    dt_st_close(f);
    return 0;
}

static double elem(const dt_st_tensor *t, int64_t i)
{
    const char *p = (const char *)t->data + (size_t)i * dt_dtype_size(t->dtype);
    union { float f; double d; int64_t l; int32_t w; uint16_t h; uint8_t b; } u;
    memcpy(&u, p, dt_dtype_size(t->dtype));
    switch (t->dtype) {
    case DT_F32: return u.f;
    case DT_F64: return u.d;
    case DT_BF16: return dt_bf16_to_f32(u.h);
    case DT_F16: return dt_f16_to_f32(u.h);
    case DT_I64: return (double)u.l;
    case DT_I32: return u.w;
    case DT_U8: return u.b;
    default: return NAN;
    }
}

static int diff(const char *pa, const char *pb, double tol)
{
    dt_st_file *a = dt_st_open(pa), *b = a ? dt_st_open(pb) : NULL;
    if (!a || !b) {
        fprintf(stderr, "dtst: %s\n", dt_last_error());
        dt_st_close(a);
        return 1;
    }
    int bad = 0;
    for (size_t i = 0; i < dt_st_count(a); i++) {
        const dt_st_tensor *x = dt_st_at(a, i), *y = dt_st_find(b, x->name);
        if (!y) { printf("  %-40s only in %s\n", x->name, pa); bad = 1; continue; }
        char sx[256], sy[256];
        shape_str(x, sx, sizeof sx);
        shape_str(y, sy, sizeof sy);
        if (x->dtype != y->dtype || strcmp(sx, sy) != 0) {
            printf("  %-40s %s %s vs %s %s\n", x->name, dt_dtype_st_name(x->dtype), sx, dt_dtype_st_name(y->dtype), sy);
            bad = 1;
            continue;
        }
        double worst = 0;
        int64_t at = -1;
        for (int64_t k = 0; k < x->numel; k++) {
            double u = elem(x, k), v = elem(y, k);
            double d = (isnan(u) && isnan(v)) ? 0 : fabs(u - v);
            if (!(d <= worst)) { worst = d; at = k; }
        }
        int over = !(worst <= tol);
        if (at < 0) printf("  %-40s equal\n", x->name);
        else printf("  %-40s max |a-b| %.6g at %lld (%.9g vs %.9g)%s\n", x->name, worst, (long long)at, elem(x, at),
                    elem(y, at), over ? "  > tol" : "");
        bad |= over;
    }
    for (size_t i = 0; i < dt_st_count(b); i++) {
        const dt_st_tensor *y = dt_st_at(b, i);
        if (!dt_st_find(a, y->name)) { printf("  %-40s only in %s\n", y->name, pb); bad = 1; }
    }
    printf("%s\n", bad ? "DIFFERENT" : "SAME (within tolerance)");
    dt_st_close(a);
    dt_st_close(b);
    return bad;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "--diff") == 0) {
        double tol = 0;
        if (argc == 6 && strcmp(argv[4], "--tol") == 0) {
            char *end;
            tol = strtod(argv[5], &end);
            if (*end || !(tol >= 0)) { fprintf(stderr, "dtst: bad tolerance '%s'\n", argv[5]); return 2; }
        } else if (argc != 4) {
            fprintf(stderr, "usage: dtst --diff A B [--tol T]\n");
            return 2;
        }
        return diff(argv[2], argv[3], tol);
    }
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: dtst FILE...  |  dtst --diff A B [--tol T]\n");
        return 2;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) rc |= list(argv[i]);
    return rc;
}
