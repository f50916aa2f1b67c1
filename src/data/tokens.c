/* Token streams: mapped u8/u16 token files and the fortunes corpus (read into one
 * buffer), the reference GPT job's train/val split and sequential window rule.
 * Random windows use torch's generator (sampler.c). No tokeniser. */
#include <dtrain/tokens.h>
#include <dtrain/util.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct dt_tokens {
    const uint8_t *data;  /* len * width bytes */
    int64_t len;
    int width;
    size_t map_len;       /* > 0: data is an mmap of that many bytes; else owned (dt_alloc) or NULL */
};

void dt_tokens_free(dt_tokens *t)
{
    if (!t) return;
    if (t->map_len) munmap((void *)t->data, t->map_len);
    else dt_free((void *)t->data);
    dt_free(t);
}

int64_t dt_tokens_len(const dt_tokens *t) { return t ? t->len : 0; }
int dt_tokens_width(const dt_tokens *t) { return t ? t->width : 0; }
const void *dt_tokens_data(const dt_tokens *t) { return t ? t->data : NULL; }

uint32_t dt_tokens_at(const dt_tokens *t, int64_t i)
{
    if (t->width == 1) return t->data[i];
    return (uint32_t)t->data[2 * i] | (uint32_t)t->data[2 * i + 1] << 8;
}

dt_tokens *dt_tokens_open(const char *path, int width)
{
    if (!path || (width != 1 && width != 2)) {
        dt_set_error(DT_EINVAL, "dt_tokens_open: width %d (1 for u8, 2 for u16)", width);
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        dt_set_error_errno(errno == ENOENT ? DT_ENOTFOUND : DT_ESYS, errno, "opening token file %s", path);
        return NULL;
    }
    dt_tokens *t = NULL;
    struct stat st;
    if (fstat(fd, &st) < 0) { dt_set_error_errno(DT_ESYS, errno, "stat %s", path); goto fail; }
    if (!S_ISREG(st.st_mode)) { dt_set_error(DT_EINVAL, "%s is not a regular file", path); goto fail; }
    if (st.st_size % width) {
        dt_set_error(DT_ECORRUPT, "%s: %lld bytes is not a whole number of u16 tokens", path, (long long)st.st_size);
        goto fail;
    }
    t = dt_calloc(1, sizeof *t, DT_MEM_DATA);
    if (!t) { dt_error_wrap(DT_ENOMEM, "opening token file %s", path); goto fail; }
    t->width = width;
    t->len = st.st_size / width;
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) { dt_set_error_errno(DT_EIO, errno, "mapping %s", path); goto fail; }
        t->data = m;
        t->map_len = (size_t)st.st_size;
    }
    close(fd);
    return t;
fail:
    close(fd);
    dt_tokens_free(t);
    return NULL;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Append the whole file at path to *buf (size *len, capacity *cap). */
static int append_file(const char *path, uint8_t **buf, size_t *len, size_t *cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dt_set_error_errno(DT_EIO, errno, "opening %s", path);
    int rc = 0;
    for (;;) {
        if (*cap - *len < 65536) {
            size_t ncap = *cap ? *cap * 2 : 1 << 20;
            uint8_t *nb = dt_realloc(*buf, ncap, DT_MEM_DATA);
            if (!nb) { rc = dt_error_wrap(DT_ENOMEM, "reading %s", path); break; }
            *buf = nb;
            *cap = ncap;
        }
        ssize_t r = read(fd, *buf + *len, *cap - *len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { rc = dt_set_error_errno(DT_EIO, errno, "reading %s", path); break; }
        if (r == 0) break;
        *len += (size_t)r;
    }
    close(fd);
    return rc;
}

dt_tokens *dt_tokens_fortunes(const char *dir)
{
    if (!dir) dir = "/usr/share/games/fortunes";
    DIR *d = opendir(dir);
    if (!d) {
        dt_set_error_errno(errno == ENOENT ? DT_ENOTFOUND : DT_ESYS, errno, "opening the fortunes directory %s", dir);
        return NULL;
    }
    char **names = NULL, *path = NULL;
    size_t n = 0, ncap = 0, len = 0, cap = 0;
    uint8_t *buf = NULL;
    dt_tokens *t = NULL;
    size_t dlen = strlen(dir);
    path = dt_alloc(dlen + 258, DT_MEM_OTHER);
    if (!path) goto nomem;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || ends_with(e->d_name, ".dat") || ends_with(e->d_name, ".u8")) continue;
        snprintf(path, dlen + 258, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) continue; /* os.path.isfile: follows links */
        if (n == ncap) {
            size_t c = ncap ? ncap * 2 : 64;
            char **nn = dt_realloc(names, c * sizeof *nn, DT_MEM_OTHER);
            if (!nn) goto nomem;
            names = nn;
            ncap = c;
        }
        if (!(names[n] = dt_strdup(e->d_name))) goto nomem;
        n++;
    }
    if (n == 0) {
        dt_set_error(DT_ENOTFOUND, "no fortune files in %s", dir);
        goto out;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, dlen + 258, "%s/%s", dir, names[i]);
        if (append_file(path, &buf, &len, &cap) < 0) goto out;
    }
    t = dt_calloc(1, sizeof *t, DT_MEM_DATA);
    if (!t) goto nomem;
    t->data = buf;
    t->len = (int64_t)len;
    t->width = 1;
    buf = NULL;
    goto out;
nomem:
    dt_error_wrap(DT_ENOMEM, "reading the fortunes corpus in %s", dir);
out:
    closedir(d);
    for (size_t i = 0; i < n; i++) dt_free(names[i]);
    dt_free(names);
    dt_free(path);
    dt_free(buf);
    return t;
}

dt_token_span dt_tokens_all(const dt_tokens *t) { return (dt_token_span){t, 0, t ? t->len : 0}; }

void dt_tokens_split(const dt_tokens *t, int64_t val_div, dt_token_span *train, dt_token_span *val)
{
    int64_t len = t ? t->len : 0;
    int64_t n_val = val_div > 0 ? len / val_div : 0;
    if (n_val == 0) {            /* Python: data[:-0] is empty, data[-0:] is everything */
        *train = (dt_token_span){t, 0, 0};
        *val = (dt_token_span){t, 0, len};
        return;
    }
    *train = (dt_token_span){t, 0, len - n_val};
    *val = (dt_token_span){t, len - n_val, n_val};
}

int64_t dt_tokens_seq_start(int64_t len, int64_t k, int64_t world, int64_t rank, int64_t B, int64_t j, int64_t T)
{
    if (T < 1 || len <= T + 1) {
        dt_set_error(DT_EINVAL, "sequential windows of %lld tokens need a stream longer than %lld (it has %lld)", (long long)T,
                     (long long)T + 1, (long long)len);
        return -1;
    }
    if (k < 0 || world < 1 || rank < 0 || rank >= world || B < 1 || j < 0 || j >= B) {
        dt_set_error(DT_EINVAL, "sequential window: k %lld, world %lld, rank %lld, B %lld, j %lld out of range", (long long)k,
                     (long long)world, (long long)rank, (long long)B, (long long)j);
        return -1;
    }
    __int128 a = ((__int128)k * world + rank) * B + j;
    return (int64_t)((a * T) % (len - T - 1));
}

int dt_tokens_window(dt_token_span s, int64_t start, int64_t T, int64_t *x, int64_t *y)
{
    if (!s.src || T < 0 || start < 0 || start + T + 1 > s.len)
        return dt_set_error(DT_ERANGE, "window [%lld, %lld] outside a span of %lld tokens", (long long)start,
                            (long long)(start + T), (long long)s.len);
    const dt_tokens *t = s.src;
    int64_t b = s.begin + start;
    if (t->width == 1) {
        const uint8_t *p = t->data + b;
        for (int64_t i = 0; i < T; i++) { x[i] = p[i]; y[i] = p[i + 1]; }
    } else {
        for (int64_t i = 0; i < T; i++) { x[i] = dt_tokens_at(t, b + i); y[i] = dt_tokens_at(t, b + i + 1); }
    }
    return 0;
}

int dt_tokens_seq_batch(dt_token_span s, int64_t k, int64_t world, int64_t rank, int64_t B, int64_t T, int64_t *x, int64_t *y)
{
    for (int64_t j = 0; j < B; j++) {
        int64_t start = dt_tokens_seq_start(s.len, k, world, rank, B, j, T);
        if (start < 0) return DT_EINVAL;
        DT_CHECK(dt_tokens_window(s, start, T, x + j * T, y + j * T));
    }
    if (B < 1) return dt_set_error(DT_EINVAL, "sequential batch: B %lld < 1", (long long)B);
    return 0;
}

int dt_tokens_random_batch(dt_token_span s, dt_mt19937 *g, int64_t B, int64_t T, int64_t *x, int64_t *y)
{
    if (!g || B < 1 || T < 1 || s.len <= T + 1)
        return dt_set_error(DT_EINVAL, "random windows: B %lld, T %lld over %lld tokens (needs more than T + 1)", (long long)B,
                            (long long)T, (long long)s.len);
    for (int64_t j = 0; j < B; j++) {
        int64_t start;
        DT_CHECK(dt_randint(g, 0, s.len - T - 1, 1, &start));
        DT_CHECK(dt_tokens_window(s, start, T, x + j * T, y + j * T));
    }
    return 0;
}
