/* IDX reader: the real Fashion-MNIST files (dims, label facts, values against numpy),
 * every element type in both byte orders' worth of values, raw and gzip'd, and
 * corrupt or truncated files, plus an allocation-failure sweep. */
#include "dt_test.h"
#include "dt_python.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FMNIST "/usr/share/datasets/fashion-mnist"

static char g_dir[256];

static char *path_in(const char *name)
{
    static char p[8][512];
    static int k;
    char *r = p[k++ % 8];
    snprintf(r, 512, "%s/%s", g_dir, name);
    return r;
}

static void write_bytes(const char *path, const void *b, size_t n, int gz)
{
    if (gz) {
        gzFile g = gzopen(path, "wb");
        gzwrite(g, b, (unsigned)n);
        gzclose(g);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(b, 1, n, f);
        fclose(f);
    }
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, fp);
    fclose(fp);
    return b;
}

static int have_fmnist(void)
{
    struct stat st;
    if (stat(FMNIST "/train-images-idx3-ubyte.gz", &st) == 0) return 1;
    fprintf(stderr, "SKIP: %s is missing; Fashion-MNIST checks skipped\n", FMNIST);
    return 0;
}

static const char *FILES[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

static void t_fmnist_shapes_and_labels(void)
{
    if (!have_fmnist()) return;
    const int64_t n[4] = {60000, 60000, 10000, 10000};
    for (int k = 0; k < 4; k++) {
        char p[512];
        snprintf(p, sizeof p, FMNIST "/%s", FILES[k]);
        dt_idx a;
        DT_ASSERT_OK(dt_idx_read(p, &a));
        DT_ASSERT_EQ(a.type, DT_IDX_U8);
        DT_ASSERT_EQ(a.elem_size, 1);
        DT_ASSERT_EQ(a.dims[0], n[k]);
        if (k % 2 == 0) {
            DT_ASSERT_EQ(a.ndim, 3);
            DT_ASSERT_EQ(a.dims[1], 28);
            DT_ASSERT_EQ(a.dims[2], 28);
            DT_ASSERT_EQ(a.numel, n[k] * 784);
        } else {
            /* Fashion-MNIST is balanced (6000 / 1000 of each class) and its first
             * training and test labels are both 9 (ankle boot). */
            DT_ASSERT_EQ(a.ndim, 1);
            const uint8_t *y = a.data;
            int64_t count[10] = {0};
            for (int64_t i = 0; i < a.numel; i++) {
                DT_ASSERT(y[i] < 10);
                count[y[i]]++;
            }
            for (int c = 0; c < 10; c++) DT_ASSERT_EQ(count[c], n[k] / 10);
            DT_ASSERT_EQ(y[0], 9);
        }
        dt_idx_free(&a);
        DT_ASSERT(a.data == NULL);
    }
}

static void t_fmnist_vs_numpy(void)
{
    if (!have_fmnist()) return;
    if (dt_py_sh(DT_PY " -c 'import numpy' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP t_fmnist_vs_numpy: " DT_PY " cannot import numpy\n");
        return;
    }
    const char *idxs = "0,1,7,400,1000,12345,2000000,23520000,47039999,59999,9999";
    char out[600];
    snprintf(out, sizeof out, "%s/ref.txt", g_dir);
    DT_ASSERT_EQ(dt_py_sh(DT_PY " %s/tests/data/idx_ref.py %s " FMNIST "/%s " FMNIST "/%s " FMNIST "/%s " FMNIST "/%s > %s",
                          DT_SRC_DIR, idxs, FILES[0], FILES[1], FILES[2], FILES[3], out), 0);
    FILE *fp = fopen(out, "r");
    DT_ASSERT(fp);
    const long long at[11] = {0, 1, 7, 400, 1000, 12345, 2000000, 23520000, 47039999, 59999, 9999};
    int bad = 0, checked = 0;
    for (int k = 0; k < 4; k++) {
        char p[512];
        snprintf(p, sizeof p, FMNIST "/%s", FILES[k]);
        dt_idx a;
        if (dt_idx_read(p, &a) < 0) { bad++; continue; }
        long long nd, d, numel, sum, v;
        if (fscanf(fp, "%lld", &nd) != 1 || nd != a.ndim) bad++;
        for (int i = 0; i < nd; i++)
            if (fscanf(fp, "%lld", &d) != 1 || d != a.dims[i]) bad++;
        if (fscanf(fp, "%lld %lld", &numel, &sum) != 2 || numel != a.numel) bad++;
        long long mysum = 0;
        const uint8_t *x = a.data;
        for (int64_t i = 0; i < a.numel; i++) mysum += x[i];
        if (mysum != sum) { fprintf(stderr, "%s: sum %lld vs numpy %lld\n", FILES[k], mysum, sum); bad++; }
        for (int i = 0; i < 11; i++) {
            if (fscanf(fp, "%lld", &v) != 1) { bad++; continue; }
            long long mine = at[i] < a.numel ? x[at[i]] : -1;
            if (mine != v) { fprintf(stderr, "%s[%lld]: %lld vs numpy %lld\n", FILES[k], at[i], mine, v); bad++; }
            checked++;
        }
        dt_idx_free(&a);
    }
    fclose(fp);
    DT_ASSERT_EQ(bad, 0);
    DT_ASSERT_EQ(checked, 44);
}

/* Every element type, raw and gzip'd: big-endian bytes in, host values out. */
static void t_types(void)
{
    uint8_t b[4 + 8 + 6 * 8];
    for (int gz = 0; gz < 2; gz++) {
        const int codes[6] = {DT_IDX_U8, DT_IDX_I8, DT_IDX_I16, DT_IDX_I32, DT_IDX_F32, DT_IDX_F64};
        for (int c = 0; c < 6; c++) {
            size_t es = dt_idx_type_size(codes[c]);
            memset(b, 0, sizeof b);
            b[2] = (uint8_t)codes[c];
            b[3] = 2;
            b[7] = 2; /* dims (2, 3) */
            b[11] = 3;
            uint8_t *p = b + 12;
            for (int i = 0; i < 6; i++) {
                uint64_t u = 0;
                double v = i * 1.25 - 3;
                switch (codes[c]) {
                case DT_IDX_U8: u = (uint64_t)(200 + i); break;
                case DT_IDX_I8: u = (uint8_t)(int8_t)(i - 3); break;
                case DT_IDX_I16: u = (uint16_t)(int16_t)(i * 1000 - 3000); break;
                case DT_IDX_I32: u = (uint32_t)(i * 100000 - 300000); break;
                case DT_IDX_F32: { float f = (float)v; uint32_t w; memcpy(&w, &f, 4); u = w; break; }
                case DT_IDX_F64: memcpy(&u, &v, 8); break;
                }
                for (size_t k = 0; k < es; k++) p[i * es + k] = (uint8_t)(u >> (8 * (es - 1 - k)));
            }
            const char *path = path_in(gz ? "t.idx.gz" : "t.idx");
            write_bytes(path, b, 12 + 6 * es, gz);
            dt_idx a;
            DT_ASSERT_OK(dt_idx_read(path, &a));
            DT_ASSERT_EQ(a.type, codes[c]);
            DT_ASSERT_EQ(a.ndim, 2);
            DT_ASSERT_EQ(a.dims[0], 2);
            DT_ASSERT_EQ(a.dims[1], 3);
            DT_ASSERT_EQ(a.numel, 6);
            for (int i = 0; i < 6; i++) {
                double v = i * 1.25 - 3;
                switch (codes[c]) {
                case DT_IDX_U8: DT_ASSERT_EQ(((uint8_t *)a.data)[i], 200 + i); break;
                case DT_IDX_I8: DT_ASSERT_EQ(((int8_t *)a.data)[i], i - 3); break;
                case DT_IDX_I16: DT_ASSERT_EQ(((int16_t *)a.data)[i], i * 1000 - 3000); break;
                case DT_IDX_I32: DT_ASSERT_EQ(((int32_t *)a.data)[i], i * 100000 - 300000); break;
                case DT_IDX_F32: DT_ASSERT_EQ(((float *)a.data)[i] == (float)v, 1); break;
                case DT_IDX_F64: DT_ASSERT_EQ(((double *)a.data)[i] == v, 1); break;
                }
            }
            dt_dtype dt;
            int rc = dt_idx_dtype(a.type, &dt);
            if (codes[c] == DT_IDX_I8 || codes[c] == DT_IDX_I16) DT_ASSERT_EQ(rc, DT_EUNSUPPORTED);
            else DT_ASSERT_EQ(dt_dtype_size(dt), es);
            dt_idx_free(&a);
        }
    }
    /* zero elements */
    uint8_t z[8] = {0, 0, 8, 1, 0, 0, 0, 0};
    write_bytes(path_in("zero.idx"), z, 8, 0);
    dt_idx a;
    DT_ASSERT_OK(dt_idx_read(path_in("zero.idx"), &a));
    DT_ASSERT_EQ(a.numel, 0);
    dt_idx_free(&a);
    dt_idx_free(NULL);
}

static void expect_bad(const void *b, size_t n, int gz, int code, const char *what)
{
    const char *p = path_in(gz ? "bad.idx.gz" : "bad.idx");
    write_bytes(p, b, n, gz);
    dt_idx a;
    memset(&a, 0x5a, sizeof a);
    int rc = dt_idx_read(p, &a);
    DT_ASSERT_MSG(rc == code, "expected %s for \"%s\" (gz %d), got %d: %s", dt_errname(code), what, gz, rc, dt_last_error());
    DT_ASSERT_CONTAINS(dt_last_error(), p);
    DT_ASSERT_CONTAINS(dt_last_error(), what);
    DT_ASSERT(a.data == NULL && a.numel == 0);
}

static void t_corrupt(void)
{
    uint8_t good[12 + 6] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6};
    for (int gz = 0; gz < 2; gz++) {
        expect_bad(good, 0, gz, DT_ECORRUPT, "truncated");
        expect_bad(good, 3, gz, DT_ECORRUPT, "truncated");
        expect_bad(good, 9, gz, DT_ECORRUPT, "truncated in the dimensions");
        expect_bad(good, 12, gz, DT_ECORRUPT, "truncated: 0 of 6 data bytes");
        expect_bad(good, 17, gz, DT_ECORRUPT, "truncated: 5 of 6");
        uint8_t more[19];
        memcpy(more, good, 18);
        more[18] = 7;
        expect_bad(more, 19, gz, DT_ECORRUPT, "trailing bytes");
        uint8_t b[18];
        memcpy(b, good, 18);
        b[1] = 8;
        expect_bad(b, 18, gz, DT_ECORRUPT, "not an IDX file");
        memcpy(b, good, 18);
        b[2] = 0x0A;
        expect_bad(b, 18, gz, DT_ECORRUPT, "unknown IDX type code 0x0a");
        memcpy(b, good, 18);
        b[3] = 0;
        expect_bad(b, 18, gz, DT_ECORRUPT, "0 dimensions");
        /* dimensions that claim ~2^40 elements: fails as truncated, without a huge allocation */
        uint8_t h[18] = {0, 0, 8, 2, 0, 0xff, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6};
        expect_bad(h, 18, gz, DT_ECORRUPT, "truncated");
        uint8_t hh[16] = {0, 0, 0x0E, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        expect_bad(hh, 16, gz, DT_ECORRUPT, "more than 2^48");
    }
    DT_ASSERT_ERR(dt_idx_read(path_in("absent.idx"), &(dt_idx){0}), DT_ENOTFOUND);

    /* a real gzip file cut short, and with its compressed bytes or CRC damaged */
    if (!have_fmnist()) return;
    size_t len;
    uint8_t *b = slurp(FMNIST "/train-labels-idx1-ubyte.gz", &len);
    DT_ASSERT(b && len > 1000);
    const char *p = path_in("cut.gz");
    size_t cuts[3] = {len / 2, len - 4, len - 1}; /* mid-stream; without ISIZE; one byte short */
    for (int i = 0; i < 3; i++) {
        write_bytes(p, b, cuts[i], 0);
        int rc = dt_idx_read(p, &(dt_idx){0});
        DT_ASSERT_MSG(rc == DT_ECORRUPT, "cut at %zu of %zu: %d %s", cuts[i], len, rc, dt_last_error());
        DT_ASSERT_CONTAINS(dt_last_error(), "truncated");
    }
    uint8_t *c = malloc(len);
    memcpy(c, b, len);
    for (size_t i = len / 3; i < len / 3 + 64; i++) c[i] ^= 0xa5;
    write_bytes(p, c, len, 0);
    DT_ASSERT_ERR(dt_idx_read(p, &(dt_idx){0}), DT_ECORRUPT);
    memcpy(c, b, len);
    c[len - 6] ^= 1; /* the CRC32 of the data */
    write_bytes(p, c, len, 0);
    DT_ASSERT_ERR(dt_idx_read(p, &(dt_idx){0}), DT_ECORRUPT);
    DT_ASSERT_CONTAINS(dt_last_error(), "gzip");
    free(c);
    free(b);
}

/* The normalisation of the reference job, for every one of the 256 pixel values,
 * bit for bit against numpy's own (x.astype(float32) / 255.0 - 0.2860) / 0.3530 on
 * a 4-d array as the job has (elementwise, so this covers every image). */
static void t_normalize_vs_numpy(void)
{
    if (dt_py_sh(DT_PY " -c 'import numpy' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP t_normalize_vs_numpy: " DT_PY " cannot import numpy\n");
        return;
    }
    char out[600];
    snprintf(out, sizeof out, "%s/norm.txt", g_dir);
    DT_ASSERT_EQ(dt_py_sh(DT_PY " -c 'import numpy as np; x = np.arange(256, dtype=np.uint8).reshape(-1, 1, 16, 16)"
                          ".astype(np.float32) / 255.0; x = (x - 0.2860) / 0.3530; assert x.dtype == np.float32; "
                          "print(*x.reshape(-1).view(np.uint32).tolist())' > %s", out), 0);
    FILE *fp = fopen(out, "r");
    DT_ASSERT(fp);
    uint8_t v[256];
    for (int i = 0; i < 256; i++) v[i] = (uint8_t)i;
    dt_idx a = {.type = DT_IDX_U8, .ndim = 1, .dims = {256}, .numel = 256, .elem_size = 1, .data = v};
    float mine[256];
    DT_ASSERT_OK(dt_idx_normalize_u8(&a, DT_FMNIST_MEAN, DT_FMNIST_STD, mine));
    int bad = 0, n = 0;
    for (int i = 0; i < 256; i++) {
        unsigned long w;
        if (fscanf(fp, "%lu", &w) != 1) { bad++; continue; }
        uint32_t u;
        memcpy(&u, &mine[i], 4);
        if (u != w) { bad++; fprintf(stderr, "pixel %d: %08x vs numpy %08lx\n", i, u, w); }
        n++;
    }
    fclose(fp);
    DT_ASSERT_EQ(bad, 0);
    DT_ASSERT_EQ(n, 256);
    int64_t lab[256];
    DT_ASSERT_OK(dt_idx_to_i64(&a, lab));
    DT_ASSERT_EQ(lab[7], 7);
    DT_ASSERT_EQ(lab[255], 255);
    a.type = DT_IDX_F32;
    DT_ASSERT_ERR(dt_idx_normalize_u8(&a, 0, 1, mine), DT_EDTYPE);
    DT_ASSERT_ERR(dt_idx_to_i64(&a, lab), DT_EDTYPE);
}

static void t_alloc_sweep(void)
{
    uint8_t good[12 + 6] = {0, 0, 0x0B, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6};
    write_bytes(path_in("sweep.idx"), good, 18, 1);
    int ok = 0;
    for (int64_t n = 1; n < 50 && !ok; n++) {
        dt_mem_stats base, now;
        dt_mem_get_stats(&base);
        dt_alloc_fail_at(n);
        dt_idx a;
        int rc = dt_idx_read(path_in("sweep.idx"), &a);
        dt_alloc_fail_at(0);
        if (rc == 0) {
            ok = 1;
            DT_ASSERT_EQ(((int16_t *)a.data)[2], 0x0506);
            dt_idx_free(&a);
        } else {
            DT_ASSERT_EQ(rc, DT_ENOMEM);
        }
        dt_mem_get_stats(&now);
        DT_ASSERT_EQ(now.total_current, base.total_current);
    }
    DT_ASSERT(ok);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_idx_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    DT_RUN(t_fmnist_shapes_and_labels);
    DT_RUN(t_fmnist_vs_numpy);
    DT_RUN(t_types);
    DT_RUN(t_corrupt);
    DT_RUN(t_normalize_vs_numpy);
    DT_RUN(t_alloc_sweep);
    dt_py_sh("rm -rf %s", g_dir);
    return DT_TEST_END();
}
