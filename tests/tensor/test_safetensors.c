/* safetensors: round trip, the bytes on disk, interop with safetensors_min.py and
 * the safetensors package (both ways), malformed files, write failures (/dev/full,
 * a full tmpfs) leaving the old file whole, and an allocation-failure sweep. */
#define _GNU_SOURCE
#include "dt_test.h"
#include "dt_python.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[256];

/* ---------------------------------------------- the table st_interop.py shares */
typedef struct { const char *name; dt_dtype dt; int ndim; int64_t shape[3]; } spec;
static const spec SPECS[] = {
    {"a.f32", DT_F32, 2, {3, 4}}, {"b.f64", DT_F64, 1, {5}},     {"c.f16", DT_F16, 3, {2, 3, 2}},
    {"d.i64", DT_I64, 1, {7}},    {"e.i32", DT_I32, 2, {2, 2}},  {"f.u8", DT_U8, 1, {10}},
    {"g.scalar", DT_F32, 0, {0}}, {"h.empty", DT_F32, 2, {0, 3}}, {"i.bf16", DT_BF16, 1, {4}},
};
#define NSPEC 9

static int64_t numel_of(const spec *s)
{
    int64_t n = 1;
    for (int d = 0; d < s->ndim; d++) n *= s->shape[d];
    return n;
}

/* Fill buf with spec s's expected values (the formula of st_interop.py). */
static void fill(const spec *s, void *buf)
{
    int64_t n = numel_of(s);
    for (int64_t i = 0; i < n; i++) {
        double v = (i * 0.37 - 1.5) / 3.0;
        switch (s->dt) {
        case DT_F32: ((float *)buf)[i] = (float)v; break;
        case DT_F64: ((double *)buf)[i] = v; break;
        case DT_F16: ((uint16_t *)buf)[i] = dt_f32_to_f16((float)v); break;
        case DT_BF16: ((uint16_t *)buf)[i] = dt_f32_to_bf16((float)v); break;
        case DT_I64: ((int64_t *)buf)[i] = i * 7919 - 300; break;
        case DT_I32: ((int32_t *)buf)[i] = (int32_t)(i * 7919 - 300); break;
        case DT_U8: ((uint8_t *)buf)[i] = (uint8_t)((i * 37 + 11) % 256); break;
        default: break;
        }
    }
}

/* safetensors_min.save writes a 0-d tensor with shape [1] (np.ascontiguousarray
 * returns at least 1-d): set while checking its files. */
static int g_min_scalar_quirk;

/* Check every spec (the first nspec) is in f with the right dtype, shape and bytes. */
static void check_specs(const dt_st_file *f, int nspec)
{
    DT_ASSERT_EQ(dt_st_count(f), nspec);
    for (int k = 0; k < nspec; k++) {
        spec s1 = SPECS[k];
        if (g_min_scalar_quirk && s1.ndim == 0) { s1.ndim = 1; s1.shape[0] = 1; }
        const spec *s = &s1;
        const dt_st_tensor *t = dt_st_find(f, s->name);
        DT_ASSERT_MSG(t, "%s missing: %s", s->name, dt_last_error());
        DT_ASSERT_EQ(t->dtype, s->dt);
        DT_ASSERT_EQ(t->ndim, s->ndim);
        for (int d = 0; d < s->ndim; d++) DT_ASSERT_EQ(t->shape[d], s->shape[d]);
        DT_ASSERT_EQ(t->numel, numel_of(s));
        DT_ASSERT_EQ(t->nbytes, (uint64_t)numel_of(s) * dt_dtype_size(s->dt));
        uint8_t want[256], got[256];
        fill(s, want);
        DT_ASSERT_OK(dt_st_read_into(f, s->name, s->dt, s->ndim, s->shape, got));
        DT_ASSERT_MSG(memcmp(want, got, t->nbytes) == 0, "%s: values differ", s->name);
    }
}

static int write_specs(const char *path, int nspec, const dt_st_meta *meta, size_t nmeta)
{
    static uint8_t bufs[NSPEC][256];
    dt_st_entry e[NSPEC];
    for (int k = 0; k < nspec; k++) {
        fill(&SPECS[k], bufs[k]);
        e[k] = (dt_st_entry){SPECS[k].name, SPECS[k].dt, SPECS[k].ndim, SPECS[k].shape, bufs[k]};
    }
    return dt_st_write(path, e, (size_t)nspec, meta, nmeta);
}

static char *path_in(const char *name)
{
    static char p[8][512];
    static int k;
    char *r = p[k++ % 8];
    snprintf(r, 512, "%s/%s", g_dir, name);
    return r;
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

/* Files in dir whose name contains ".tmp." (leftover temporaries). */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

/* ------------------------------------------------------------------ tests */

static const dt_st_meta META[] = {{"format", "pt"}, {"note", "written by \"dtrain\"\n"}};

static void t_roundtrip(void)
{
    const char *p = path_in("rt.safetensors");
    DT_ASSERT_OK(write_specs(p, NSPEC, META, 2));
    dt_st_file *f = dt_st_open(p);
    DT_ASSERT_MSG(f, "%s", dt_last_error());
    check_specs(f, NSPEC);
    /* file order: 8-byte elements first, then 4, 2, 1, each in the order given;
     * offsets contiguous, each aligned to its element size */
    static const char *const order[NSPEC] = {"b.f64", "d.i64", "a.f32", "e.i32", "g.scalar",
                                             "h.empty", "c.f16", "i.bf16", "f.u8"};
    uint64_t pos = dt_st_at(f, 0)->offset;
    DT_ASSERT_EQ(pos % 8, 0);
    for (int k = 0; k < NSPEC; k++) {
        const dt_st_tensor *t = dt_st_at(f, (size_t)k);
        DT_ASSERT_STREQ(t->name, order[k]);
        DT_ASSERT_EQ(t->offset, pos);
        DT_ASSERT_EQ(t->offset % dt_dtype_size(t->dtype), 0);
        DT_ASSERT_EQ((uintptr_t)t->data % dt_dtype_size(t->dtype), 0);
        pos += t->nbytes;
    }
    DT_ASSERT(dt_st_at(f, NSPEC) == NULL);
    DT_ASSERT_EQ(dt_st_meta_count(f), 2);
    DT_ASSERT_STREQ(dt_st_meta_get(f, "note"), "written by \"dtrain\"\n");
    const char *k, *v;
    DT_ASSERT_OK(dt_st_meta_at(f, 0, &k, &v));
    DT_ASSERT_STREQ(k, "format");
    DT_ASSERT_STREQ(v, "pt");
    DT_ASSERT(dt_st_meta_get(f, "nope") == NULL);
    DT_ASSERT(dt_st_find(f, "zz") == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ENOTFOUND);
    DT_ASSERT_CONTAINS(dt_last_error(), "zz");
    float dst[12];
    int64_t wrong[2] = {4, 3};
    DT_ASSERT_ERR(dt_st_read_into(f, "a.f32", DT_F32, 2, wrong, dst), DT_ESHAPE);
    DT_ASSERT_CONTAINS(dt_last_error(), "[3, 4], expected [4, 3]");
    DT_ASSERT_ERR(dt_st_read_into(f, "a.f32", DT_F64, 2, SPECS[0].shape, dst), DT_EDTYPE);
    DT_ASSERT_ERR(dt_st_read_into(f, "nope", DT_F32, 2, SPECS[0].shape, dst), DT_ENOTFOUND);
    dt_st_close(f);
    dt_st_close(NULL);

    /* the bytes: length prefix, header padded with spaces to 8, JSON as the reference writes it */
    size_t len;
    uint8_t *b = slurp(p, &len);
    DT_ASSERT(b);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    int ok = hl % 8 == 0 && hl < len && b[8] == '{';
    char *hdr = strndup((char *)b + 8, hl);
    free(b);
    DT_ASSERT(ok);
    DT_ASSERT(strstr(hdr, "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"written by \\\"dtrain\\\"\\n\"},"
                          "\"b.f64\":{\"dtype\":\"F64\",\"shape\":[5],\"data_offsets\":[0,40]},"
                          "\"d.i64\":{\"dtype\":\"I64\",\"shape\":[7],\"data_offsets\":[40,96]},"
                          "\"a.f32\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[96,144]},") == hdr);
    DT_ASSERT(strstr(hdr, "\"g.scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":"));
    free(hdr);
    DT_ASSERT_EQ(count_tmp(g_dir), 0);

    /* an empty file (no tensors, no metadata) */
    p = path_in("empty.safetensors");
    DT_ASSERT_OK(dt_st_write(p, NULL, 0, NULL, 0));
    f = dt_st_open(p);
    DT_ASSERT_MSG(f, "%s", dt_last_error());
    DT_ASSERT_EQ(dt_st_count(f), 0);
    dt_st_close(f);
}

static void t_bad_entries(void)
{
    const char *p = path_in("keep.safetensors");
    DT_ASSERT_OK(write_specs(p, 3, NULL, 0));
    float x[2] = {1, 2};
    int64_t sh[1] = {2}, neg[1] = {-1};
    dt_st_entry dup[2] = {{"w", DT_F32, 1, sh, x}, {"w", DT_F32, 1, sh, x}};
    DT_ASSERT_ERR(dt_st_write(p, dup, 2, NULL, 0), DT_EINVAL);
    DT_ASSERT_CONTAINS(dt_last_error(), "'w' appears twice");
    dt_st_entry bad[4] = {{"", DT_F32, 1, sh, x}, {"__metadata__", DT_F32, 1, sh, x},
                          {"n", DT_F32, 1, neg, x}, {"d", (dt_dtype)99, 1, sh, x}};
    for (int i = 0; i < 4; i++) DT_ASSERT_ERR(dt_st_write(p, &bad[i], 1, NULL, 0), DT_EINVAL);
    dt_st_entry nodata = {"z", DT_F32, 1, sh, NULL};
    DT_ASSERT_ERR(dt_st_write(p, &nodata, 1, NULL, 0), DT_EINVAL);
    DT_ASSERT_ERR(dt_st_write("/nonexistent-dir/x.safetensors", dup, 1, NULL, 0), DT_ESYS);
    /* the earlier file is untouched and no temporaries are left */
    dt_st_file *f = dt_st_open(p);
    DT_ASSERT_MSG(f, "%s", dt_last_error());
    check_specs(f, 3);
    dt_st_close(f);
    DT_ASSERT_EQ(count_tmp(g_dir), 0);
    DT_ASSERT(dt_st_open(path_in("absent.safetensors")) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ENOTFOUND);
    DT_ASSERT(dt_st_open(g_dir) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
}

static void t_dev_full(void)
{
    int fd = open("/dev/full", O_WRONLY);
    if (fd < 0) { fprintf(stderr, "SKIP t_dev_full: cannot open /dev/full\n"); return; }
    static float big[1 << 16];
    int64_t sh[1] = {1 << 16};
    dt_st_entry e = {"big", DT_F32, 1, sh, big};
    int rc = dt_st_write_fd(fd, "/dev/full", &e, 1, NULL, 0);
    close(fd);
    DT_ASSERT_EQ(rc, DT_ENOSPC);
    DT_ASSERT_CONTAINS(dt_last_error(), "/dev/full");
}

/* A 64 KiB tmpfs in a private mount namespace: a write that does not fit fails
 * with DT_ENOSPC and the previous file stays whole. Needs root; skipped otherwise. */
static void t_full_disk(void)
{
    char mnt[512];
    snprintf(mnt, sizeof mnt, "%s/small", g_dir);
    mkdir(mnt, 0755);
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
        fprintf(stderr, "SKIP t_full_disk: cannot mount a tmpfs (%s); the /dev/full test covers the error path\n",
                strerror(errno));
        rmdir(mnt);
        return;
    }
    char p[600];
    snprintf(p, sizeof p, "%s/model.safetensors", mnt);
    int rc1 = write_specs(p, NSPEC, NULL, 0);
    static float big[1 << 15]; /* 128 KiB: does not fit */
    for (int i = 0; i < (1 << 15); i++) big[i] = (float)i;
    int64_t sh[1] = {1 << 15};
    dt_st_entry e = {"big", DT_F32, 1, sh, big};
    int rc2 = dt_st_write(p, &e, 1, NULL, 0);
    char err[512];
    snprintf(err, sizeof err, "%s", dt_last_error());
    dt_st_file *f = dt_st_open(p);
    int ntmp = count_tmp(mnt);
    if (f) { check_specs(f, NSPEC); dt_st_close(f); }
    umount(mnt);
    rmdir(mnt);
    DT_ASSERT_EQ(rc1, 0);
    DT_ASSERT_MSG(rc2 == DT_ENOSPC, "got %d: %s", rc2, err);
    DT_ASSERT_CONTAINS(err, "model.safetensors");
    DT_ASSERT(f != NULL);
    DT_ASSERT_EQ(ntmp, 0);
}

/* --------------------------------------------------------- malformed files */

/* Bytes of a file: an 8-byte length, the JSON padded to 8 with spaces, then data_len bytes. */
static uint8_t *make(const char *json, size_t data_len, size_t *len)
{
    size_t hl = strlen(json);
    size_t pad = (8 - hl % 8) % 8;
    *len = 8 + hl + pad + data_len;
    uint8_t *b = calloc(1, *len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)(hl + pad) >> (8 * i));
    memcpy(b + 8, json, hl);
    memset(b + 8 + hl, ' ', pad);
    return b;
}

static void expect_bad_mem(const uint8_t *b, size_t len, int code, const char *what)
{
    dt_st_file *f = dt_st_open_mem(b, len, "case.safetensors");
    if (f) dt_st_close(f);
    DT_ASSERT_MSG(f == NULL, "accepted a file that should fail with \"%s\"", what);
    DT_ASSERT_MSG(dt_last_error_code() == code, "expected %s for \"%s\", got %s: %s", dt_errname(code), what,
                  dt_errname(dt_last_error_code()), dt_last_error());
    DT_ASSERT_CONTAINS(dt_last_error(), "case.safetensors");
    DT_ASSERT_CONTAINS(dt_last_error(), what);
}

static void expect_bad(const char *json, size_t data_len, int code, const char *what)
{
    size_t len;
    uint8_t *b = make(json, data_len, &len);
    dt_st_file *f = dt_st_open_mem(b, len, "case.safetensors");
    free(b);
    if (f) dt_st_close(f);
    DT_ASSERT_MSG(f == NULL, "accepted %s", json);
    DT_ASSERT_MSG(dt_last_error_code() == code, "%s: expected %s, got %s: %s", json, dt_errname(code),
                  dt_errname(dt_last_error_code()), dt_last_error());
    DT_ASSERT_CONTAINS(dt_last_error(), "case.safetensors");
    DT_ASSERT_CONTAINS(dt_last_error(), what);
}

#define T4(o0, o1) "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" #o0 "," #o1 "]}"

static void t_malformed(void)
{
    /* truncations of a real file, and the same file cut and written to disk */
    const char *p = path_in("trunc_src.safetensors");
    DT_ASSERT_OK(write_specs(p, NSPEC, META, 2));
    size_t len;
    uint8_t *b = slurp(p, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    size_t cuts[] = {0, 3, 7, 8, 8 + hl / 2, 8 + hl - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) expect_bad_mem(b, cuts[i], DT_ECORRUPT, "truncated");
    size_t dcuts[] = {8 + hl, 8 + hl + 1, len - 1};
    for (size_t i = 0; i < 3; i++) expect_bad_mem(b, dcuts[i], DT_ECORRUPT, "beyond the data section");
    const char *tp = path_in("case.safetensors");
    for (size_t i = 0; i < 3; i++) {
        FILE *fp = fopen(tp, "wb");
        fwrite(b, 1, i == 0 ? 5 : i == 1 ? 8 + hl / 3 : len - 2, fp);
        fclose(fp);
        DT_ASSERT(dt_st_open(tp) == NULL);
        DT_ASSERT_EQ(dt_last_error_code(), DT_ECORRUPT);
        DT_ASSERT_CONTAINS(dt_last_error(), tp);
    }
    /* header length huge, or just past the end */
    uint8_t save[8];
    memcpy(save, b, 8);
    memset(b, 0, 8);
    b[5] = 1; /* 2^40 */
    expect_bad_mem(b, len, DT_ECORRUPT, "exceeds the limit");
    memset(b, 0xff, 8);
    expect_bad_mem(b, len, DT_ECORRUPT, "exceeds the limit");
    memset(b, 0, 8);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)(len - 7) >> (8 * i));
    expect_bad_mem(b, len, DT_ECORRUPT, "truncated");
    memcpy(b, save, 8);
    b[8 + hl - 1] = 'x'; /* garbage in the padding */
    expect_bad_mem(b, len, DT_ECORRUPT, "unexpected bytes after the JSON header");
    free(b);

    /* the header */
    expect_bad("[1,2]", 0, DT_ECORRUPT, "does not start with '{'");
    expect_bad("{\"a\": [1,2", 0, DT_ECORRUPT, "not valid JSON");
    expect_bad("{\"a\":" T4(0, 4) ",}", 4, DT_ECORRUPT, "not valid JSON");
    expect_bad("{\"a\":" T4(0, 4) "}{}", 4, DT_ECORRUPT, "unexpected bytes");
    expect_bad("{\"a\":1}", 0, DT_ECORRUPT, "'a' is not an object");
    expect_bad("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DT_ECORRUPT, "no dtype");
    expect_bad("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DT_ECORRUPT, "unknown dtype 'F33'");
    expect_bad("{\"a\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, DT_EUNSUPPORTED, "BOOL");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, DT_ECORRUPT, "no shape");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, DT_ECORRUPT, "non-negative integer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, DT_ECORRUPT, "non-negative integer");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
               DT_ECORRUPT, "17 dimensions");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, DT_ECORRUPT, "data_offsets");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, DT_ECORRUPT, "data_offsets");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4, DT_ECORRUPT, "data_offsets");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, DT_ECORRUPT, "not the data_offsets span");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, DT_ECORRUPT,
               "not the data_offsets span");
    expect_bad("{\"a\":" T4(8, 4) "}", 8, DT_ECORRUPT, "end before they begin");
    /* offsets */
    expect_bad("{\"a\":" T4(0, 4) ",\"b\":" T4(4, 8) "}", 6, DT_ECORRUPT, "beyond the data section");
    expect_bad("{\"a\":" T4(1000000, 1000004) "}", 8, DT_ECORRUPT, "beyond the data section");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":" T4(4, 8) "}", 8, DT_ECORRUPT,
               "overlaps");
    expect_bad("{\"a\":" T4(0, 4) ",\"b\":" T4(0, 4) "}", 4, DT_ECORRUPT, "overlaps");
    expect_bad("{\"a\":" T4(0, 4) ",\"b\":" T4(8, 12) "}", 12, DT_ECORRUPT, "gap");
    expect_bad("{\"a\":" T4(4, 8) "}", 8, DT_ECORRUPT, "gap");
    expect_bad("{\"a\":" T4(0, 4) "}", 8, DT_ECORRUPT, "4 bytes after the last");
    expect_bad("{}", 1, DT_ECORRUPT, "1 bytes after the last");
    expect_bad("{\"a\":" T4(0, 4) ",\"a\":" T4(4, 8) "}", 8, DT_ECORRUPT, "'a' appears twice");
    expect_bad("{\"__metadata__\":{\"k\":1}}", 0, DT_ECORRUPT, "not a string");
    expect_bad("{\"__metadata__\":[]}", 0, DT_ECORRUPT, "__metadata__ is not an object");

    /* and what must pass: out-of-order offsets, zero-size tensors, padding with more spaces */
    size_t l2;
    uint8_t *ok = make("{\"b\":" T4(4, 8) ",\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},\"a\":" T4(0, 4) "}   ", 8, &l2);
    memcpy(ok + l2 - 8, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    dt_st_file *f = dt_st_open_mem(ok, l2, "ok");
    DT_ASSERT_MSG(f, "%s", dt_last_error());
    DT_ASSERT_STREQ(dt_st_at(f, 0)->name, "a");
    DT_ASSERT_STREQ(dt_st_at(f, 1)->name, "e");
    DT_ASSERT_STREQ(dt_st_at(f, 2)->name, "b");
    DT_ASSERT_EQ(((const uint8_t *)dt_st_find(f, "b")->data)[0], 5);
    dt_st_close(f);
    free(ok);
}

/* -------------------------------------------------------- interop: python */

static void t_python_min(void)
{
    if (!dt_py_have_torch()) return;
    const char *src = DT_SRC_DIR "/tests/tensor/st_interop.py";
    DT_ASSERT_EQ(dt_py_sh(DT_PY " %s gen-min %s", src, g_dir), 0);
    dt_st_file *f = dt_st_open(path_in("from_min.safetensors"));
    DT_ASSERT_MSG(f, "%s", dt_last_error());
    g_min_scalar_quirk = 1;
    check_specs(f, NSPEC - 1); /* safetensors_min has no bf16 */
    g_min_scalar_quirk = 0;
    dt_st_close(f);
    const char *p = path_in("for_min.safetensors");
    DT_ASSERT_OK(write_specs(p, NSPEC - 1, META, 2));
    DT_ASSERT_EQ(dt_py_sh(DT_PY " %s check-min %s", src, p), 0);
    /* the checker does fail on a wrong value */
    const char *q = path_in("for_min_wrong.safetensors");
    static uint8_t bufs[NSPEC][256];
    dt_st_entry e[NSPEC];
    for (int k = 0; k < NSPEC - 1; k++) {
        fill(&SPECS[k], bufs[k]);
        e[k] = (dt_st_entry){SPECS[k].name, SPECS[k].dt, SPECS[k].ndim, SPECS[k].shape, bufs[k]};
    }
    bufs[5][3] ^= 1;
    DT_ASSERT_OK(dt_st_write(q, e, NSPEC - 1, NULL, 0));
    DT_ASSERT_NE(dt_py_sh(DT_PY " %s check-min %s >/dev/null", src, q), 0);
}

/* The safetensors package: DT_TEST_ST_PYTHON names a python that has it, else a
 * venv at /tmp/stvenv (created with pip when missing); skipped when none works. */
static const char *st_python(void)
{
    const char *env = getenv("DT_TEST_ST_PYTHON");
    if (env && *env) return env;
    static const char *venv = "/tmp/stvenv/bin/python";
    if (dt_py_sh("%s -c 'import safetensors.torch' >/dev/null 2>&1", venv) == 0) return venv;
    if (dt_py_sh("(" DT_PY " -m venv --system-site-packages /tmp/stvenv && timeout 60 /tmp/stvenv/bin/pip install -q --retries 0 --timeout 10 "
                 "safetensors) >/dev/null 2>&1") == 0 &&
        dt_py_sh("%s -c 'import safetensors.torch' >/dev/null 2>&1", venv) == 0)
        return venv;
    return NULL;
}

static void t_python_pkg(void)
{
    if (!dt_py_have_torch()) return;
    const char *py = st_python();
    if (!py) { fprintf(stderr, "SKIP t_python_pkg: no python with the safetensors package (pip install failed)\n"); return; }
    const char *src = DT_SRC_DIR "/tests/tensor/st_interop.py";
    DT_ASSERT_EQ(dt_py_sh("%s %s gen-pkg %s", py, src, g_dir), 0);
    dt_st_file *f = dt_st_open(path_in("from_pkg.safetensors"));
    DT_ASSERT_MSG(f, "%s", dt_last_error());
    check_specs(f, NSPEC);
    DT_ASSERT_STREQ(dt_st_meta_get(f, "who"), "pkg");
    dt_st_close(f);
    const char *p = path_in("for_pkg.safetensors");
    DT_ASSERT_OK(write_specs(p, NSPEC, META, 2));
    DT_ASSERT_EQ(dt_py_sh("%s %s check-pkg %s", py, src, p), 0);
}

/* ---------------------------------------------------- allocation failures */

static void t_alloc_sweep(void)
{
    const char *p = path_in("sweep.safetensors");
    DT_ASSERT_OK(write_specs(p, NSPEC, META, 2));
    int wrote = 0, opened = 0;
    for (int64_t n = 1; n < 200 && !(wrote && opened); n++) {
        dt_mem_stats base, now;
        dt_mem_get_stats(&base);
        dt_alloc_fail_at(n);
        int rc = write_specs(p, NSPEC, META, 2);
        dt_st_file *f = rc == 0 ? dt_st_open(p) : NULL;
        int code = dt_last_error_code();
        dt_alloc_fail_at(0);
        if (rc == 0) wrote = 1;
        else DT_ASSERT_MSG(rc == DT_ENOMEM, "write with allocation %lld failing: %d %s", (long long)n, rc, dt_last_error());
        if (f) {
            opened = 1;
            check_specs(f, NSPEC);
            dt_st_close(f);
        } else if (rc == 0) {
            DT_ASSERT_MSG(code == DT_ENOMEM, "open with allocation %lld failing: %s", (long long)n, dt_last_error());
        }
        dt_mem_get_stats(&now);
        DT_ASSERT_MSG(now.total_current == base.total_current, "leak of %lld bytes when allocation %lld fails",
                      (long long)(now.total_current - base.total_current), (long long)n);
        /* the file on disk is whole after every failure */
        dt_st_file *g = dt_st_open(p);
        DT_ASSERT_MSG(g, "%s", dt_last_error());
        check_specs(g, NSPEC);
        dt_st_close(g);
    }
    DT_ASSERT(wrote && opened);
    DT_ASSERT_EQ(count_tmp(g_dir), 0);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_st_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    DT_RUN(t_roundtrip);
    DT_RUN(t_bad_entries);
    DT_RUN(t_dev_full);
    DT_RUN(t_malformed);
    DT_RUN(t_python_min);
    g_min_scalar_quirk = 0; /* even when t_python_min failed midway */
    DT_RUN(t_python_pkg);
    DT_RUN(t_alloc_sweep);
    DT_RUN(t_full_disk);
    dt_py_sh("rm -rf %s", g_dir);
    return DT_TEST_END();
}
