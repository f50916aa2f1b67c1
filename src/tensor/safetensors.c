/* safetensors files: the writer (header built here, bytes to a temporary that is
 * synced and renamed) and the validating reader (mmap + cJSON for the header).
 * Knows buffers only; state dicts of tensors are the nn/checkpoint layers' business.
 * cJSON's own allocations go through malloc (its hooks are process-global, so they
 * are not redirected here); everything this file keeps goes through dt_alloc. */
#define _GNU_SOURCE
#include <dtrain/safetensors.h>
#include <dtrain/util.h>

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ================================================================= writing */

typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = dt_realloc(b->p, cap, DT_MEM_OTHER);
        if (!q) { b->failed = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n);
}

/* A JSON string literal: quotes, backslashes and control bytes escaped; other
 * bytes (UTF-8) as they are. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"') sb_put(b, "\\\"", 2);
        else if (*c == '\\') sb_put(b, "\\\\", 2);
        else if (*c == '\n') sb_put(b, "\\n", 2);
        else if (*c == '\t') sb_put(b, "\\t", 2);
        else if (*c == '\r') sb_put(b, "\\r", 2);
        else if (*c < 0x20) sb_fmt(b, "\\u%04x", *c);
        else sb_put(b, (const char *)c, 1);
    }
    sb_put(b, "\"", 1);
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Checks the entries and builds the padded header; *data_len gets the data section
 * size and *order_out (dt_alloc'd, the caller frees) the layout order: entries by
 * element size, largest first, in the given order within a size, so every tensor's
 * data starts at a multiple of its element size (the reference writer aligns too). */
static int build_header(const char *label, const dt_st_entry *e, size_t n, const dt_st_meta *meta,
                        size_t nmeta, sbuf *hb, uint64_t *data_len, size_t **order_out)
{
    if (n && !e) return dt_set_error(DT_EINVAL, "%s: NULL entries with n = %zu", label, n);
    if (nmeta && !meta) return dt_set_error(DT_EINVAL, "%s: NULL metadata with nmeta = %zu", label, nmeta);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (!e[i].name || !e[i].name[0] || strcmp(e[i].name, "__metadata__") == 0)
            return dt_set_error(DT_EINVAL, "%s: entry %zu has an empty or reserved name", label, i);
        if (!dt_dtype_st_name(e[i].dtype))
            return dt_set_error(DT_EINVAL, "%s: tensor '%s' has invalid dtype %d", label, e[i].name, (int)e[i].dtype);
        if (e[i].ndim < 0 || e[i].ndim > DT_ST_MAX_DIMS || (e[i].ndim > 0 && !e[i].shape))
            return dt_set_error(DT_EINVAL, "%s: tensor '%s' has ndim %d (0..%d with a shape)", label, e[i].name,
                                e[i].ndim, DT_ST_MAX_DIMS);
        uint64_t bytes = dt_dtype_size(e[i].dtype);
        for (int d = 0; d < e[i].ndim; d++) {
            int64_t s = e[i].shape[d];
            if (s < 0) return dt_set_error(DT_EINVAL, "%s: tensor '%s' has negative dimension %" PRId64, label, e[i].name, s);
            if (s && bytes > (UINT64_C(1) << 53) / (uint64_t)s)
                return dt_set_error(DT_EINVAL, "%s: tensor '%s' is too large", label, e[i].name);
            bytes *= (uint64_t)s;
        }
        if (bytes && !e[i].data) return dt_set_error(DT_EINVAL, "%s: tensor '%s' has NULL data", label, e[i].name);
        if (off + bytes > (UINT64_C(1) << 53)) return dt_set_error(DT_EINVAL, "%s: data section too large", label);
        off += bytes;
    }
    for (size_t i = 0; i < nmeta; i++)
        if (!meta[i].key || !meta[i].value)
            return dt_set_error(DT_EINVAL, "%s: metadata pair %zu has a NULL key or value", label, i);
    *data_len = off;

    /* Duplicate names: sort a copy of the name pointers. */
    if (n > 1) {
        const char **names = dt_alloc(n * sizeof *names, DT_MEM_OTHER);
        if (!names) return dt_error_wrap(DT_ENOMEM, "%s: writing safetensors", label);
        for (size_t i = 0; i < n; i++) names[i] = e[i].name;
        qsort(names, n, sizeof *names, cmp_cstr);
        for (size_t i = 1; i < n; i++)
            if (strcmp(names[i - 1], names[i]) == 0) {
                int rc = dt_set_error(DT_EINVAL, "%s: tensor name '%s' appears twice", label, names[i]);
                dt_free(names);
                return rc;
            }
        dt_free(names);
    }

    size_t *order = dt_alloc((n ? n : 1) * sizeof *order, DT_MEM_OTHER);
    if (!order) return dt_error_wrap(DT_ENOMEM, "%s: writing safetensors", label);
    *order_out = order;
    size_t k = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (size_t i = 0; i < n; i++)
            if (dt_dtype_size(e[i].dtype) == es) order[k++] = i;

    sb_put(hb, "{", 1);
    if (nmeta) {
        sb_str(hb, "\"__metadata__\":{");
        for (size_t i = 0; i < nmeta; i++) {
            if (i) sb_put(hb, ",", 1);
            sb_json_str(hb, meta[i].key);
            sb_put(hb, ":", 1);
            sb_json_str(hb, meta[i].value);
        }
        sb_str(hb, n ? "}," : "}");
    }
    off = 0;
    for (size_t oi = 0; oi < n; oi++) {
        size_t i = order[oi];
        uint64_t bytes = dt_dtype_size(e[i].dtype);
        for (int d = 0; d < e[i].ndim; d++) bytes *= (uint64_t)e[i].shape[d];
        if (oi) sb_put(hb, ",", 1);
        sb_json_str(hb, e[i].name);
        sb_fmt(hb, ":{\"dtype\":\"%s\",\"shape\":[", dt_dtype_st_name(e[i].dtype));
        for (int d = 0; d < e[i].ndim; d++) sb_fmt(hb, d ? ",%" PRId64 : "%" PRId64, e[i].shape[d]);
        sb_fmt(hb, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + bytes);
        off += bytes;
    }
    sb_put(hb, "}", 1);
    while (!hb->failed && hb->len % 8) sb_put(hb, " ", 1);
    if (hb->failed) return dt_error_wrap(DT_ENOMEM, "%s: building safetensors header", label);
    return 0;
}

int dt_st_write_fd(int fd, const char *label, const dt_st_entry *entries, size_t n,
                   const dt_st_meta *meta, size_t nmeta)
{
    if (!label) label = "(safetensors)";
    sbuf hb = {0};
    uint64_t data_len = 0;
    size_t *order = NULL;
    int rc = build_header(label, entries, n, meta, nmeta, &hb, &data_len, &order);
    if (rc < 0) goto out;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hb.len >> (8 * i));
    DT_CHECK_GOTO(dt_write_all(fd, len8, 8, label), rc, out);
    DT_CHECK_GOTO(dt_write_all(fd, hb.p, hb.len, label), rc, out);
    for (size_t oi = 0; oi < n; oi++) {
        const dt_st_entry *en = &entries[order[oi]];
        uint64_t bytes = dt_dtype_size(en->dtype);
        for (int d = 0; d < en->ndim; d++) bytes *= (uint64_t)en->shape[d];
        if (bytes) DT_CHECK_GOTO(dt_write_all(fd, en->data, (size_t)bytes, label), rc, out);
    }
out:
    dt_free(order);
    dt_free(hb.p);
    return rc;
}

typedef struct {
    const char *path;
    const dt_st_entry *entries;
    size_t n;
    const dt_st_meta *meta;
    size_t nmeta;
} st_write_ctx;

static int st_writer(int fd, void *p)
{
    st_write_ctx *c = p;
    return dt_st_write_fd(fd, c->path, c->entries, c->n, c->meta, c->nmeta);
}

int dt_st_write(const char *path, const dt_st_entry *entries, size_t n,
                const dt_st_meta *meta, size_t nmeta)
{
    st_write_ctx c = {path, entries, n, meta, nmeta};
    return dt_file_write_atomic(path, st_writer, &c);
}

/* ================================================================= reading */

struct dt_st_file {
    char *label;
    const uint8_t *base;    /* the whole file */
    size_t len;
    int mapped;
    size_t n;
    dt_st_tensor *t;        /* [n] in file order */
    size_t *by_name;        /* [n] indices into t, sorted by name */
    size_t nmeta;
    const char **meta;      /* [2*nmeta]: key, value, ... */
    char *strings;          /* names and metadata, NUL-terminated, back to back */
};

static const char *const st_other_dtypes[] = {"BOOL", "I8", "U16", "I16", "U32", "U64", "F8_E4M3", "F8_E5M2",
                                               "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"};

/* A JSON number that is a non-negative integer no larger than 2^53 (the largest
 * a double holds exactly). */
static int json_u53(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || floor(v) != v) return -1;
    *out = (uint64_t)v;
    return 0;
}


static int cmp_offset(const void *a, const void *b)
{
    const dt_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

typedef struct { const char *name; size_t idx; } name_idx;
static int cmp_name_idx(const void *a, const void *b) { return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name); }

static int parse(dt_st_file *f)
{
    const char *L = f->label;
    if (f->len < 8) return dt_set_error(DT_ECORRUPT, "%s: truncated: %zu bytes, shorter than the 8-byte header length", L, f->len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->base[i];
    if (hlen > DT_ST_MAX_HEADER)
        return dt_set_error(DT_ECORRUPT, "%s: header length %" PRIu64 " exceeds the limit of %llu bytes", L, hlen,
                            (unsigned long long)DT_ST_MAX_HEADER);
    if (hlen > f->len - 8)
        return dt_set_error(DT_ECORRUPT, "%s: truncated: header length %" PRIu64 " but only %zu bytes follow", L, hlen,
                            f->len - 8);
    if (hlen < 2 || f->base[8] != '{')
        return dt_set_error(DT_ECORRUPT, "%s: header does not start with '{'", L);
    const char *hdr = (const char *)f->base + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
        return dt_set_error(DT_ECORRUPT, "%s: header is not valid JSON (error near byte %zu of %" PRIu64 ")", L, at, hlen);
    }
    int rc = 0;
    for (const char *c = end; c < hdr + hlen; c++)
        if (*c != ' ' && *c != '\t' && *c != '\n' && *c != '\r') {
            rc = dt_set_error(DT_ECORRUPT, "%s: unexpected bytes after the JSON header (byte %zu of %" PRIu64 ")", L,
                              (size_t)(c - hdr), hlen);
            goto out;
        }
    if (!cJSON_IsObject(root)) { rc = dt_set_error(DT_ECORRUPT, "%s: header is not a JSON object", L); goto out; }

    uint64_t data_len = f->len - 8 - hlen;
    const uint8_t *data = f->base + 8 + hlen;
    size_t n = 0, nmeta = 0, strbytes = 0;
    const cJSON *metaj = NULL;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (metaj) { rc = dt_set_error(DT_ECORRUPT, "%s: __metadata__ appears twice", L); goto out; }
            metaj = it;
            if (!cJSON_IsObject(it)) { rc = dt_set_error(DT_ECORRUPT, "%s: __metadata__ is not an object", L); goto out; }
            for (const cJSON *m = it->child; m; m = m->next) {
                if (!cJSON_IsString(m)) {
                    rc = dt_set_error(DT_ECORRUPT, "%s: __metadata__ value of '%s' is not a string", L, m->string);
                    goto out;
                }
                nmeta++;
                strbytes += strlen(m->string) + strlen(m->valuestring) + 2;
            }
        } else {
            n++;
            strbytes += strlen(it->string) + 1;
        }
    }
    f->n = n;
    f->nmeta = nmeta;
    f->t = dt_calloc(n ? n : 1, sizeof *f->t, DT_MEM_OTHER);
    f->by_name = dt_calloc(n ? n : 1, sizeof *f->by_name, DT_MEM_OTHER);
    f->meta = dt_calloc(nmeta ? 2 * nmeta : 1, sizeof *f->meta, DT_MEM_OTHER);
    f->strings = dt_alloc(strbytes ? strbytes : 1, DT_MEM_OTHER);
    name_idx *ni = dt_calloc(n ? n : 1, sizeof *ni, DT_MEM_OTHER);
    if (!f->t || !f->by_name || !f->meta || !f->strings || !ni) {
        dt_free(ni);
        rc = dt_error_wrap(DT_ENOMEM, "%s: reading safetensors header", L);
        goto out;
    }
    char *sp = f->strings;
    size_t k = 0, mk = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (it == metaj) {
            for (const cJSON *m = it->child; m; m = m->next) {
                size_t a = strlen(m->string) + 1, b = strlen(m->valuestring) + 1;
                memcpy(sp, m->string, a);
                f->meta[2 * mk] = sp;
                sp += a;
                memcpy(sp, m->valuestring, b);
                f->meta[2 * mk + 1] = sp;
                sp += b;
                mk++;
            }
            continue;
        }
        const char *nm = it->string;
        dt_st_tensor *t = &f->t[k];
        size_t a = strlen(nm) + 1;
        memcpy(sp, nm, a);
        t->name = sp;
        sp += a;
        if (!cJSON_IsObject(it)) { rc = dt_set_error(DT_ECORRUPT, "%s: entry '%s' is not an object", L, nm); goto bad; }
        const cJSON *dj = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *sj = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *oj = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(dj)) { rc = dt_set_error(DT_ECORRUPT, "%s: tensor '%s' has no dtype string", L, nm); goto bad; }
        const char *ds = dj->valuestring;
        int found = 0;
        for (int d = 0; d < DT_DTYPE_COUNT; d++)
            if (strcmp(ds, dt_dtype_st_name((dt_dtype)d)) == 0) { t->dtype = (dt_dtype)d; found = 1; }
        if (!found) {
            for (size_t o = 0; o < sizeof st_other_dtypes / sizeof *st_other_dtypes; o++)
                if (strcmp(ds, st_other_dtypes[o]) == 0) {
                    rc = dt_set_error(DT_EUNSUPPORTED, "%s: tensor '%s' has dtype %s, which dtrain does not support", L, nm, ds);
                    goto bad;
                }
            rc = dt_set_error(DT_ECORRUPT, "%s: tensor '%s' has unknown dtype '%s'", L, nm, ds);
            goto bad;
        }
        if (!cJSON_IsArray(sj)) { rc = dt_set_error(DT_ECORRUPT, "%s: tensor '%s' has no shape array", L, nm); goto bad; }
        int nd = cJSON_GetArraySize(sj);
        if (nd > DT_ST_MAX_DIMS) {
            rc = dt_set_error(DT_ECORRUPT, "%s: tensor '%s' has %d dimensions (at most %d)", L, nm, nd, DT_ST_MAX_DIMS);
            goto bad;
        }
        t->ndim = nd;
        uint64_t numel = 1, overflow = 0;
        int d = 0;
        for (const cJSON *x = sj->child; x; x = x->next, d++) {
            uint64_t v;
            if (json_u53(x, &v) < 0) {
                rc = dt_set_error(DT_ECORRUPT, "%s: tensor '%s' has a shape entry that is not a non-negative integer", L, nm);
                goto bad;
            }
            t->shape[d] = (int64_t)v;
            if (v && numel > (UINT64_C(1) << 53) / v) overflow = 1;
            else numel *= v;
        }
        uint64_t b0, b1;
        if (!cJSON_IsArray(oj) || cJSON_GetArraySize(oj) != 2 || json_u53(oj->child, &b0) < 0 ||
            json_u53(oj->child->next, &b1) < 0) {
            rc = dt_set_error(DT_ECORRUPT, "%s: tensor '%s' needs data_offsets [begin, end] of non-negative integers", L, nm);
            goto bad;
        }
        if (b1 < b0) {
            rc = dt_set_error(DT_ECORRUPT, "%s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64 "] that end before they begin",
                              L, nm, b0, b1);
            goto bad;
        }
        uint64_t es = dt_dtype_size(t->dtype);
        if (overflow || numel > (UINT64_C(1) << 53) / es || numel * es != b1 - b0) {
            rc = dt_set_error(DT_ECORRUPT, "%s: tensor '%s': shape times %s size is not the data_offsets span %" PRIu64, L, nm,
                              ds, b1 - b0);
            goto bad;
        }
        if (b1 > data_len) {
            rc = dt_set_error(DT_ECORRUPT, "%s: tensor '%s' has data_offsets [%" PRIu64 ", %" PRIu64
                              "] beyond the data section of %" PRIu64 " bytes (truncated file?)", L, nm, b0, b1, data_len);
            goto bad;
        }
        t->numel = (int64_t)numel;
        t->nbytes = b1 - b0;
        t->offset = 8 + hlen + b0;
        t->data = data + b0;
        k++;
    }
    /* File order, then the coverage rule: no overlap, no gap, nothing after. */
    qsort(f->t, n, sizeof *f->t, cmp_offset);
    uint64_t pos = 8 + hlen;
    for (size_t i = 0; i < n; i++) {
        if (f->t[i].offset < pos) {
            rc = dt_set_error(DT_ECORRUPT, "%s: tensor '%s' overlaps tensor '%s' (data offsets %" PRIu64 " < %" PRIu64 ")", L,
                              f->t[i].name, f->t[i - 1].name, f->t[i].offset - 8 - hlen, pos - 8 - hlen);
            goto bad;
        }
        if (f->t[i].offset > pos) {
            rc = dt_set_error(DT_ECORRUPT, "%s: gap in the data section before tensor '%s' (offset %" PRIu64 ", expected %" PRIu64 ")",
                              L, f->t[i].name, f->t[i].offset - 8 - hlen, pos - 8 - hlen);
            goto bad;
        }
        pos += f->t[i].nbytes;
    }
    if (pos != f->len) {
        rc = dt_set_error(DT_ECORRUPT, "%s: %" PRIu64 " bytes after the last tensor's data", L, (uint64_t)f->len - pos);
        goto bad;
    }
    for (size_t i = 0; i < n; i++) ni[i] = (name_idx){f->t[i].name, i};
    qsort(ni, n, sizeof *ni, cmp_name_idx);
    for (size_t i = 0; i < n; i++) {
        if (i && strcmp(ni[i - 1].name, ni[i].name) == 0) {
            rc = dt_set_error(DT_ECORRUPT, "%s: tensor name '%s' appears twice", L, ni[i].name);
            goto bad;
        }
        f->by_name[i] = ni[i].idx;
    }
bad:
    dt_free(ni);
out:
    cJSON_Delete(root);
    return rc;
}

static void file_free(dt_st_file *f)
{
    if (!f) return;
    if (f->mapped && f->base) munmap((void *)f->base, f->len);
    dt_free(f->t);
    dt_free(f->by_name);
    dt_free(f->meta);
    dt_free(f->strings);
    dt_free(f->label);
    dt_free(f);
}

void dt_st_close(dt_st_file *f) { file_free(f); }

dt_st_file *dt_st_open_mem(const void *buf, size_t len, const char *label)
{
    if (!label) label = "(memory)";
    if (!buf && len) { dt_set_error(DT_EINVAL, "%s: NULL buffer", label); return NULL; }
    dt_st_file *f = dt_calloc(1, sizeof *f, DT_MEM_OTHER);
    if (!f) { dt_error_wrap(DT_ENOMEM, "opening %s", label); return NULL; }
    f->label = dt_strdup(label);
    if (!f->label) { dt_error_wrap(DT_ENOMEM, "opening %s", label); file_free(f); return NULL; }
    f->base = buf;
    f->len = len;
    if (parse(f) < 0) { file_free(f); return NULL; }
    return f;
}

dt_st_file *dt_st_open(const char *path)
{
    if (!path) { dt_set_error(DT_EINVAL, "dt_st_open: NULL path"); return NULL; }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dt_set_error_errno(errno == ENOENT ? DT_ENOTFOUND : DT_ESYS, errno, "opening %s", path);
        return NULL;
    }
    struct stat st;
    dt_st_file *f = NULL;
    if (fstat(fd, &st) < 0) { dt_set_error_errno(DT_ESYS, errno, "stat %s", path); goto fail; }
    if (!S_ISREG(st.st_mode)) { dt_set_error(DT_EINVAL, "%s is not a regular file", path); goto fail; }
    f = dt_calloc(1, sizeof *f, DT_MEM_OTHER);
    if (!f || !(f->label = dt_strdup(path))) { dt_error_wrap(DT_ENOMEM, "opening %s", path); goto fail; }
    f->len = (size_t)st.st_size;
    if (f->len > 0) {
        void *m = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) { dt_set_error_errno(DT_EIO, errno, "mapping %s", path); goto fail; }
        f->base = m;
        f->mapped = 1;
    }
    close(fd);
    fd = -1;
    if (parse(f) < 0) goto fail;
    return f;
fail:
    if (fd >= 0) close(fd);
    file_free(f);
    return NULL;
}

size_t dt_st_count(const dt_st_file *f) { return f ? f->n : 0; }

const dt_st_tensor *dt_st_at(const dt_st_file *f, size_t i) { return f && i < f->n ? &f->t[i] : NULL; }

const dt_st_tensor *dt_st_find(const dt_st_file *f, const char *name)
{
    if (!f || !name) { dt_set_error(DT_EINVAL, "dt_st_find: NULL argument"); return NULL; }
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[f->by_name[mid]].name, name);
        if (c == 0) return &f->t[f->by_name[mid]];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    dt_set_error(DT_ENOTFOUND, "%s: no tensor named '%s'", f->label, name);
    return NULL;
}

int dt_st_read_into(const dt_st_file *f, const char *name, dt_dtype dtype, int ndim, const int64_t *shape, void *dst)
{
    const dt_st_tensor *t = dt_st_find(f, name);
    if (!t) return dt_last_error_code();
    if (t->dtype != dtype)
        return dt_set_error(DT_EDTYPE, "%s: tensor '%s' is %s, expected %s", f->label, name, dt_dtype_name(t->dtype),
                            dt_dtype_name(dtype));
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char got[256] = "", want[256] = "";
        size_t g = 0, w = 0;
        for (int d = 0; d < t->ndim && g < sizeof got - 24; d++)
            g += (size_t)snprintf(got + g, sizeof got - g, d ? ", %" PRId64 : "%" PRId64, t->shape[d]);
        for (int d = 0; d < ndim && w < sizeof want - 24; d++)
            w += (size_t)snprintf(want + w, sizeof want - w, d ? ", %" PRId64 : "%" PRId64, shape[d]);
        return dt_set_error(DT_ESHAPE, "%s: tensor '%s' has shape [%s], expected [%s]", f->label, name, got, want);
    }
    if (t->nbytes) memcpy(dst, t->data, (size_t)t->nbytes);
    return 0;
}

size_t dt_st_meta_count(const dt_st_file *f) { return f ? f->nmeta : 0; }

int dt_st_meta_at(const dt_st_file *f, size_t i, const char **key, const char **value)
{
    if (!f || i >= f->nmeta) return dt_set_error(DT_ERANGE, "metadata index %zu out of range", i);
    if (key) *key = f->meta[2 * i];
    if (value) *value = f->meta[2 * i + 1];
    return 0;
}

const char *dt_st_meta_get(const dt_st_file *f, const char *key)
{
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}
