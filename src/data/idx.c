/* IDX files (MNIST, Fashion-MNIST), gzip'd or raw, read whole into one buffer and
 * converted to host byte order. Does not normalise, batch or know about labels. */
#include <dtrain/idx.h>
#include <dtrain/util.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

size_t dt_idx_type_size(int code)
{
    switch (code) {
    case DT_IDX_U8: case DT_IDX_I8: return 1;
    case DT_IDX_I16: return 2;
    case DT_IDX_I32: case DT_IDX_F32: return 4;
    case DT_IDX_F64: return 8;
    default: return 0;
    }
}

int dt_idx_dtype(dt_idx_type t, dt_dtype *out)
{
    switch (t) {
    case DT_IDX_U8: *out = DT_U8; return 0;
    case DT_IDX_I32: *out = DT_I32; return 0;
    case DT_IDX_F32: *out = DT_F32; return 0;
    case DT_IDX_F64: *out = DT_F64; return 0;
    default: return dt_set_error(DT_EUNSUPPORTED, "IDX type 0x%02x has no dtrain dtype", (unsigned)t);
    }
}

void dt_idx_free(dt_idx *a)
{
    if (!a) return;
    dt_free(a->data);
    memset(a, 0, sizeof *a);
}

/* Read up to n bytes; *got says how many arrived. A stream error is returned
 * (DT_ECORRUPT for bad gzip data, DT_EIO for a read failure); running out of
 * input is not an error here. */
static int read_some(gzFile gz, void *buf, size_t n, size_t *got, const char *path)
{
    *got = 0;
    while (*got < n) {
        size_t want = n - *got > (1u << 30) ? (1u << 30) : n - *got;
        int r = gzread(gz, (char *)buf + *got, (unsigned)want);
        if (r < 0) {
            int zerr = 0;
            const char *msg = gzerror(gz, &zerr);
            if (zerr == Z_ERRNO) return dt_set_error_errno(DT_EIO, errno, "reading %s", path);
            return dt_set_error(DT_ECORRUPT, "%s: bad gzip data (%s)", path, msg);
        }
        if (r == 0) break;
        *got += (size_t)r;
    }
    /* zlib reports a gzip stream cut short as a Z_BUF_ERROR after returning what it had. */
    int zerr = 0;
    gzerror(gz, &zerr);
    if (zerr != Z_OK && zerr != Z_BUF_ERROR) return dt_set_error(DT_ECORRUPT, "%s: bad gzip data", path);
    return 0;
}

/* IDX is big-endian: reverse each element's bytes on a little-endian host. */
static void swap_bytes(uint8_t *p, int64_t numel, size_t es)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return;
#endif
    if (es == 1) return;
    for (int64_t i = 0; i < numel; i++, p += es)
        for (size_t a = 0, b = es - 1; a < b; a++, b--) { uint8_t t = p[a]; p[a] = p[b]; p[b] = t; }
}

static int open_gz(const char *path, gzFile *gz)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dt_set_error_errno(errno == ENOENT ? DT_ENOTFOUND : DT_ESYS, errno, "opening %s", path);
    *gz = gzdopen(fd, "rb");
    if (!*gz) {
        close(fd);
        return dt_set_error(DT_ENOMEM, "%s: cannot start zlib", path);
    }
    gzbuffer(*gz, 1 << 17);
    return 0;
}

/* The magic, type code and dimensions: fills out's fields but data. */
static int read_header(gzFile gz, const char *path, dt_idx *out)
{
    uint8_t hdr[4 + 4 * 255];
    size_t got;
    DT_CHECK(read_some(gz, hdr, 4, &got, path));
    if (got < 4) return dt_set_error(DT_ECORRUPT, "%s: truncated: %zu bytes, shorter than the 4-byte IDX magic", path, got);
    if (hdr[0] != 0 || hdr[1] != 0)
        return dt_set_error(DT_ECORRUPT, "%s: not an IDX file (magic bytes %02x %02x, expected 00 00)", path, hdr[0], hdr[1]);
    size_t es = dt_idx_type_size(hdr[2]);
    if (!es) return dt_set_error(DT_ECORRUPT, "%s: unknown IDX type code 0x%02x", path, hdr[2]);
    int nd = hdr[3];
    if (nd < 1 || nd > DT_IDX_MAX_DIMS)
        return dt_set_error(DT_ECORRUPT, "%s: %d dimensions (IDX readers take 1..%d)", path, nd, DT_IDX_MAX_DIMS);
    DT_CHECK(read_some(gz, hdr + 4, 4 * (size_t)nd, &got, path));
    if (got < 4 * (size_t)nd)
        return dt_set_error(DT_ECORRUPT, "%s: truncated in the dimensions (%zu of %d bytes)", path, got, 4 * nd);
    out->type = (dt_idx_type)hdr[2];
    out->ndim = nd;
    out->elem_size = es;
    uint64_t numel = 1;
    for (int d = 0; d < nd; d++) {
        const uint8_t *p = hdr + 4 + 4 * d;
        uint64_t v = (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | p[3];
        out->dims[d] = (int64_t)v;
        if (v && numel > (UINT64_C(1) << 48) / v)
            return dt_set_error(DT_ECORRUPT, "%s: dimensions multiply to more than 2^48 elements", path);
        numel *= v;
    }
    out->numel = (int64_t)numel;
    return 0;
}

int dt_idx_read_header(const char *path, dt_idx *out)
{
    if (!path || !out) return dt_set_error(DT_EINVAL, "dt_idx_read_header: NULL argument");
    memset(out, 0, sizeof *out);
    gzFile gz;
    DT_CHECK(open_gz(path, &gz));
    int rc = read_header(gz, path, out);
    gzclose(gz);
    if (rc < 0) memset(out, 0, sizeof *out);
    return rc;
}

int dt_idx_read(const char *path, dt_idx *out)
{
    if (!path || !out) return dt_set_error(DT_EINVAL, "dt_idx_read: NULL argument");
    memset(out, 0, sizeof *out);
    gzFile gz;
    DT_CHECK(open_gz(path, &gz));
    int rc = 0;
    uint8_t *data = NULL;
    size_t got;
    uint64_t numel, es;
    DT_CHECK_GOTO(read_header(gz, path, out), rc, out);
    numel = (uint64_t)out->numel;
    es = out->elem_size;
    /* Grow the buffer as bytes arrive, so a corrupt header that claims terabytes
     * fails as "truncated" rather than as a huge allocation. */
    uint64_t total = numel * es, have = 0, cap = 0;
    while (have < total) {
        uint64_t ncap = cap ? cap * 2 : (uint64_t)1 << 20;
        if (ncap > total) ncap = total;
        uint8_t *nd2 = dt_realloc(data, (size_t)ncap, DT_MEM_DATA);
        if (!nd2) { rc = dt_error_wrap(DT_ENOMEM, "reading %s", path); goto out; }
        data = nd2;
        cap = ncap;
        DT_CHECK_GOTO(read_some(gz, data + have, (size_t)(cap - have), &got, path), rc, out);
        have += got;
        if (have < cap) {
            rc = dt_set_error(DT_ECORRUPT, "%s: truncated: %" PRIu64 " of %" PRIu64 " data bytes", path, have, total);
            goto out;
        }
    }
    if (!data) { /* zero elements: still hand out a valid (empty) block */
        data = dt_alloc(1, DT_MEM_DATA);
        if (!data) { rc = dt_error_wrap(DT_ENOMEM, "reading %s", path); goto out; }
    }
    uint8_t extra;
    DT_CHECK_GOTO(read_some(gz, &extra, 1, &got, path), rc, out);
    if (got) { rc = dt_set_error(DT_ECORRUPT, "%s: trailing bytes after the %" PRIu64 " data bytes", path, total); goto out; }
    {
        int zerr = 0;
        const char *msg = gzerror(gz, &zerr);
        if (zerr == Z_BUF_ERROR) { rc = dt_set_error(DT_ECORRUPT, "%s: truncated gzip stream (%s)", path, msg); goto out; }
    }
    swap_bytes(data, out->numel, es);
    out->data = data;
    data = NULL;
out:
    gzclose(gz);
    dt_free(data);
    if (rc < 0) memset(out, 0, sizeof *out);
    return rc;
}

int dt_idx_normalize_u8(const dt_idx *a, float mean, float std, float *out)
{
    if (!a || a->type != DT_IDX_U8) return dt_set_error(DT_EDTYPE, "dt_idx_normalize_u8: the data is not u8");
    /* 256 possible inputs: build the table once, then look up */
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = ((float)v / 255.0f - mean) / std;
    const uint8_t *x = a->data;
    for (int64_t i = 0; i < a->numel; i++) out[i] = lut[x[i]];
    return 0;
}

int dt_idx_to_i64(const dt_idx *a, int64_t *out)
{
    if (!a) return dt_set_error(DT_EINVAL, "dt_idx_to_i64: NULL");
    for (int64_t i = 0; i < a->numel; i++) {
        switch (a->type) {
        case DT_IDX_U8: out[i] = ((const uint8_t *)a->data)[i]; break;
        case DT_IDX_I8: out[i] = ((const int8_t *)a->data)[i]; break;
        case DT_IDX_I16: out[i] = ((const int16_t *)a->data)[i]; break;
        case DT_IDX_I32: out[i] = ((const int32_t *)a->data)[i]; break;
        default: return dt_set_error(DT_EDTYPE, "dt_idx_to_i64: floating-point IDX data");
        }
    }
    return 0;
}
