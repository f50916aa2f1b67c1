/* Snapshots: a safetensors file + a JSON record with CRC32C per chunk, the
 * record's atomic rename being the commit point; keep the newest K; on load,
 * fall back past snapshots that are truncated or fail their checksums.
 * Does not decide what goes into a snapshot, nor which rank writes it. */
#include <dtrain/checkpoint.h>
#include <dtrain/crc32c.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECORD_FORMAT "dtrain-snapshot"
#define RECORD_VERSION 1
#define RECORD_MAX_BYTES (16 << 20)   /* a record is small; a bigger one is corrupt */
#define MAX_CHUNKS (1 << 22)

struct dt_snapshot {
    char *dir;
    dt_snapshot_opts opts;
};

static int make_dirs(const char *dir)
{
    size_t n = strlen(dir);
    char *p = dt_alloc(n + 1, DT_MEM_OTHER);
    if (!p) return dt_error_wrap(DT_ENOMEM, "creating %s", dir);
    memcpy(p, dir, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            rc = dt_set_error_errno(errno == ENOSPC ? DT_ENOSPC : DT_ESYS, errno, "creating snapshot directory %s", p);
        p[i] = c;
    }
    struct stat st;
    if (rc == 0 && (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)))
        rc = dt_set_error(DT_EINVAL, "snapshot path %s exists and is not a directory", dir);
    dt_free(p);
    return rc;
}

/* "snapshot-000000000042.json" -> 42; -1 when name is not a record's. */
static int64_t parse_name(const char *name, const char *suffix)
{
    const char *pre = "snapshot-";
    size_t lp = strlen(pre), ls = strlen(suffix), n = strlen(name);
    if (n != lp + 12 + ls || strncmp(name, pre, lp) != 0 || strcmp(name + lp + 12, suffix) != 0) return -1;
    int64_t v = 0;
    for (size_t i = lp; i < lp + 12; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        v = v * 10 + (name[i] - '0');
    }
    return v;
}

int dt_snapshot_data_path(const dt_snapshot *s, int64_t step, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/snapshot-%012" PRId64 ".safetensors", s->dir, step);
    return n < 0 || (size_t)n >= cap ? dt_set_error(DT_ERANGE, "snapshot path too long in %s", s->dir) : 0;
}

int dt_snapshot_record_path(const dt_snapshot *s, int64_t step, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/snapshot-%012" PRId64 ".json", s->dir, step);
    return n < 0 || (size_t)n >= cap ? dt_set_error(DT_ERANGE, "snapshot path too long in %s", s->dir) : 0;
}

/* Remove what a crashed save left: temporaries (".tmp."), and data files
 * without a record (the crash came between the two renames). */
static void remove_leftovers(dt_snapshot *s)
{
    DIR *d = opendir(s->dir);
    if (!d) return;
    struct dirent *e;
    char path[4096], rec[4096];
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "snapshot-", 9) != 0) continue;
        int64_t step = parse_name(e->d_name, ".safetensors");
        bool orphan = false;
        if (step >= 0 && dt_snapshot_record_path(s, step, rec, sizeof rec) == 0) orphan = access(rec, F_OK) != 0;
        if (strstr(e->d_name, ".tmp.") || orphan) {
            snprintf(path, sizeof path, "%s/%s", s->dir, e->d_name);
            if (unlink(path) == 0) DT_LOGI(CKPT, "removed leftover of an interrupted snapshot save: %s", path);
        }
    }
    closedir(d);
}

dt_snapshot *dt_snapshot_open(const char *dir, const dt_snapshot_opts *opts)
{
    dt_snapshot_opts o = DT_SNAPSHOT_OPTS_INIT;
    if (opts) o = *opts;
    if (!dir || !dir[0]) { dt_set_error(DT_EINVAL, "dt_snapshot_open: empty directory"); return NULL; }
    if (o.keep_last < 1) { dt_set_error(DT_EINVAL, "snapshot keep_last %d must be at least 1", o.keep_last); return NULL; }
    if (o.chunk_bytes < 4096) { dt_set_error(DT_EINVAL, "snapshot chunk_bytes %lld must be at least 4096", (long long)o.chunk_bytes); return NULL; }
    if (make_dirs(dir) < 0) return NULL;
    dt_snapshot *s = dt_calloc(1, sizeof *s, DT_MEM_OTHER);
    if (!s) return NULL;
    s->dir = dt_strdup(dir);
    if (!s->dir) { dt_free(s); return NULL; }
    size_t n = strlen(s->dir);
    while (n > 1 && s->dir[n - 1] == '/') s->dir[--n] = '\0';
    s->opts = o;
    remove_leftovers(s);
    return s;
}

void dt_snapshot_close(dt_snapshot *s)
{
    if (!s) return;
    dt_free(s->dir);
    dt_free(s);
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* All record steps, newest first; *out owned by the caller (dt_free). */
static int list_steps(dt_snapshot *s, int64_t **out, int *count)
{
    *out = NULL;
    *count = 0;
    DIR *d = opendir(s->dir);
    if (!d) return dt_set_error_errno(DT_ESYS, errno, "listing snapshot directory %s", s->dir);
    int cap = 0, n = 0, rc = 0;
    int64_t *v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t step = parse_name(e->d_name, ".json");
        if (step < 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            int64_t *nv = dt_realloc(v, (size_t)cap * sizeof *v, DT_MEM_OTHER);
            if (!nv) { rc = dt_error_wrap(DT_ENOMEM, "listing snapshots in %s", s->dir); break; }
            v = nv;
        }
        v[n++] = step;
    }
    closedir(d);
    if (rc < 0) { dt_free(v); return rc; }
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_desc);
    *out = v;
    *count = n;
    return 0;
}

int dt_snapshot_list(dt_snapshot *s, int64_t *steps, int cap, int *count)
{
    int64_t *v;
    int n;
    DT_CHECK(list_steps(s, &v, &n));
    for (int i = 0; i < n && i < cap; i++) steps[i] = v[i];
    *count = n;
    dt_free(v);
    return 0;
}

/* CRC32C of each chunk_bytes-long chunk of the file at path (the last one
 * shorter); *crcs owned by the caller. Fails if the file's size is not bytes. */
static int file_crcs(const char *path, uint64_t bytes, int64_t chunk, uint32_t **crcs, size_t *nchunks)
{
    *crcs = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dt_set_error_errno(errno == ENOENT ? DT_ENOTFOUND : DT_EIO, errno, "opening %s", path);
    struct stat st;
    int rc = 0;
    char *buf = NULL;
    if (fstat(fd, &st) < 0) { rc = dt_set_error_errno(DT_EIO, errno, "stat %s", path); goto out; }
    if ((uint64_t)st.st_size != bytes) {
        rc = dt_set_error(DT_ECORRUPT, "%s has %lld bytes, its record says %llu (truncated?)", path,
                          (long long)st.st_size, (unsigned long long)bytes);
        goto out;
    }
    size_t nc = (size_t)((bytes + (uint64_t)chunk - 1) / (uint64_t)chunk);
    if (nc > MAX_CHUNKS) { rc = dt_set_error(DT_ECORRUPT, "%s: too many checksum chunks (%zu)", path, nc); goto out; }
    *crcs = dt_alloc((nc ? nc : 1) * sizeof **crcs, DT_MEM_OTHER);
    buf = dt_alloc((size_t)chunk, DT_MEM_OTHER);
    if (!*crcs || !buf) { rc = dt_error_wrap(DT_ENOMEM, "checksumming %s", path); goto out; }
    for (size_t c = 0; c < nc; c++) {
        size_t want = (size_t)((c + 1 == nc) ? bytes - (uint64_t)c * (uint64_t)chunk : (uint64_t)chunk), got = 0;
        while (got < want) {
            ssize_t r = read(fd, buf + got, want - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) { rc = dt_set_error_errno(r < 0 ? DT_EIO : DT_ECORRUPT, r < 0 ? errno : 0, "reading %s", path); goto out; }
            got += (size_t)r;
        }
        (*crcs)[c] = dt_crc32c(0, buf, want);
    }
    *nchunks = nc;
out:
    if (rc < 0) { dt_free(*crcs); *crcs = NULL; }
    dt_free(buf);
    close(fd);
    return rc;
}

typedef struct { const char *text; } record_ctx;

static int record_writer(int fd, void *p)
{
    record_ctx *c = p;
    return dt_write_all(fd, c->text, strlen(c->text), "snapshot record");
}

/* Delete records (then their data) beyond the newest keep_last. */
static void prune(dt_snapshot *s)
{
    int64_t *v;
    int n;
    if (list_steps(s, &v, &n) < 0) { DT_LOGW(CKPT, "not pruning old snapshots: %s", dt_last_error()); return; }
    char path[4096];
    for (int i = s->opts.keep_last; i < n; i++) {
        if (dt_snapshot_record_path(s, v[i], path, sizeof path) == 0) unlink(path);
        if (dt_snapshot_data_path(s, v[i], path, sizeof path) == 0) unlink(path);
    }
    if (n > s->opts.keep_last && dt_snapshot_record_path(s, v[0], path, sizeof path) == 0) dt_fsync_parent_dir(path);
    dt_free(v);
}

int dt_snapshot_save(dt_snapshot *s, int64_t step, const dt_st_entry *entries, size_t n,
                     const dt_st_meta *meta, size_t nmeta)
{
    if (!s) return dt_set_error(DT_EINVAL, "dt_snapshot_save: NULL snapshot");
    if (step < 0 || step > 999999999999LL) return dt_set_error(DT_EINVAL, "snapshot step %lld out of range", (long long)step);
    char data[4096], rec[4096];
    DT_CHECK(dt_snapshot_data_path(s, step, data, sizeof data));
    DT_CHECK(dt_snapshot_record_path(s, step, rec, sizeof rec));
    int rc = dt_st_write(data, entries, n, meta, nmeta);
    if (rc < 0) return dt_error_wrap(rc, "saving snapshot step %lld", (long long)step);

    uint32_t *crcs = NULL;
    size_t nc = 0;
    char *text = NULL;
    cJSON *j = NULL;
    struct stat st;
    if (stat(data, &st) < 0) { rc = dt_set_error_errno(DT_EIO, errno, "stat %s", data); goto fail; }
    DT_CHECK_GOTO(file_crcs(data, (uint64_t)st.st_size, s->opts.chunk_bytes, &crcs, &nc), rc, fail);
    j = cJSON_CreateObject();
    if (!j) { rc = dt_set_error(DT_ENOMEM, "snapshot record"); goto fail; }
    const char *base = strrchr(data, '/') + 1;
    cJSON_AddStringToObject(j, "format", RECORD_FORMAT);
    cJSON_AddNumberToObject(j, "version", RECORD_VERSION);
    cJSON_AddNumberToObject(j, "step", (double)step);
    cJSON_AddStringToObject(j, "data", base);
    cJSON_AddNumberToObject(j, "bytes", (double)st.st_size);
    cJSON_AddNumberToObject(j, "chunk_bytes", (double)s->opts.chunk_bytes);
    cJSON_AddNumberToObject(j, "saved_at_ms", (double)dt_wall_ms());
    cJSON *arr = cJSON_AddArrayToObject(j, "crc32c");
    for (size_t i = 0; arr && i < nc; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)crcs[i]));
    text = cJSON_Print(j);
    if (!arr || !text) { rc = dt_set_error(DT_ENOMEM, "snapshot record"); goto fail; }
    record_ctx c = {text};
    rc = dt_file_write_atomic(rec, record_writer, &c);
    if (rc < 0) { dt_error_wrap(rc, "saving snapshot step %lld", (long long)step); goto fail; }
    cJSON_free(text);
    cJSON_Delete(j);
    dt_free(crcs);
    prune(s);
    DT_LOGI(CKPT, "saved snapshot step %lld to %s (%lld bytes)", (long long)step, data, (long long)st.st_size);
    return 0;
fail:
    /* The data file without its record is not a snapshot: remove it. */
    unlink(data);
    if (text) cJSON_free(text);
    cJSON_Delete(j);
    dt_free(crcs);
    return rc;
}

/* Read the record of step and check the data file against it. */
static int verify(dt_snapshot *s, int64_t step, dt_st_file **file)
{
    char rec[4096], data[4096];
    DT_CHECK(dt_snapshot_record_path(s, step, rec, sizeof rec));
    DT_CHECK(dt_snapshot_data_path(s, step, data, sizeof data));
    int rc = 0;
    char *text = NULL;
    cJSON *j = NULL;
    uint32_t *crcs = NULL;
    int fd = open(rec, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dt_set_error_errno(DT_EIO, errno, "opening %s", rec);
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size > RECORD_MAX_BYTES) {
        close(fd);
        return dt_set_error(DT_ECORRUPT, "%s: unreadable or too large", rec);
    }
    text = dt_alloc((size_t)st.st_size + 1, DT_MEM_OTHER);
    if (!text) { close(fd); return dt_error_wrap(DT_ENOMEM, "reading %s", rec); }
    ssize_t got = 0;
    while (got < st.st_size) {
        ssize_t r = read(fd, text + got, (size_t)(st.st_size - got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += r;
    }
    close(fd);
    text[got] = '\0';
    if (got != st.st_size) { rc = dt_set_error(DT_EIO, "reading %s", rec); goto out; }
    j = cJSON_Parse(text);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version");
    const cJSON *stp = cJSON_GetObjectItemCaseSensitive(j, "step");
    const cJSON *dat = cJSON_GetObjectItemCaseSensitive(j, "data");
    const cJSON *byt = cJSON_GetObjectItemCaseSensitive(j, "bytes");
    const cJSON *chk = cJSON_GetObjectItemCaseSensitive(j, "chunk_bytes");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "crc32c");
    if (!j || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, RECORD_FORMAT) != 0 || !cJSON_IsNumber(ver) ||
        !cJSON_IsNumber(stp) || !cJSON_IsString(dat) || !cJSON_IsNumber(byt) || !cJSON_IsNumber(chk) ||
        !cJSON_IsArray(arr)) {
        rc = dt_set_error(DT_ECORRUPT, "%s is not a valid snapshot record", rec);
        goto out;
    }
    if (ver->valuedouble != RECORD_VERSION) {
        rc = dt_set_error(DT_EUNSUPPORTED, "%s: record version %g (this dtrain reads %d)", rec, ver->valuedouble, RECORD_VERSION);
        goto out;
    }
    if (stp->valuedouble != (double)step || strcmp(dat->valuestring, strrchr(data, '/') + 1) != 0 ||
        byt->valuedouble < 0 || chk->valuedouble < 1) {
        rc = dt_set_error(DT_ECORRUPT, "%s: record does not match its file name", rec);
        goto out;
    }
    size_t nc = 0;
    DT_CHECK_GOTO(file_crcs(data, (uint64_t)byt->valuedouble, (int64_t)chk->valuedouble, &crcs, &nc), rc, out);
    if ((size_t)cJSON_GetArraySize(arr) != nc) {
        rc = dt_set_error(DT_ECORRUPT, "%s: %d checksums for %zu chunks", rec, cJSON_GetArraySize(arr), nc);
        goto out;
    }
    for (size_t i = 0; i < nc; i++) {
        const cJSON *c = cJSON_GetArrayItem(arr, (int)i);
        if (!cJSON_IsNumber(c) || (uint32_t)c->valuedouble != crcs[i] || c->valuedouble != (double)crcs[i]) {
            rc = dt_set_error(DT_ECORRUPT, "%s: chunk %zu (bytes %lld..) fails its CRC32C", data, i,
                              (long long)(i * (uint64_t)chk->valuedouble));
            goto out;
        }
    }
    *file = dt_st_open(data);
    if (!*file) rc = dt_last_error_code() ? dt_last_error_code() : DT_ECORRUPT;
out:
    cJSON_Delete(j);
    dt_free(text);
    dt_free(crcs);
    return rc;
}

int dt_snapshot_load_latest(dt_snapshot *s, dt_st_file **file, int64_t *step)
{
    *file = NULL;
    int64_t *v;
    int n;
    DT_CHECK(list_steps(s, &v, &n));
    int rejected = 0;
    for (int i = 0; i < n; i++) {
        if (verify(s, v[i], file) == 0) {
            *step = v[i];
            if (rejected) DT_LOGW(CKPT, "resuming from snapshot step %lld after rejecting %d newer one(s)", (long long)v[i], rejected);
            dt_free(v);
            return 0;
        }
        rejected++;
        DT_LOGW(CKPT, "snapshot step %lld rejected: %s", (long long)v[i], dt_last_error());
    }
    dt_free(v);
    if (n == 0) return dt_set_error(DT_ENOTFOUND, "no snapshot in %s", s->dir);
    return dt_set_error(DT_ENOTFOUND, "none of the %d snapshot(s) in %s verifies (see the warnings above)", n, s->dir);
}

int dt_snapshot_save_list(dt_snapshot *s, int64_t step, const dt_st_list *l)
{
    if (!l) return dt_set_error(DT_EINVAL, "dt_snapshot_save_list: NULL list");
    size_t n, nm;
    const dt_st_entry *e = dt_st_list_entries(l, &n);
    const dt_st_meta *m = dt_st_list_metas(l, &nm);
    return dt_snapshot_save(s, step, e, n, m, nm);
}
