/* dist/store/file: a store in one file shared by the processes of a run
 * (file:// init; torch's FileStore). The file is an append-only log of
 * checksummed records (a header naming the world size, then JOIN, SET, DEL,
 * LEAVE); every process replays what it has not yet read into its own table
 * before each operation, and appends under the file's lock. Blocking get and
 * wait re-read the file with backoff until the keys appear or the timeout.
 *
 * Two open-file-description locks (F_OFD_SETLK; held per open, released by
 * the kernel when a process dies) do the coordination:
 *   byte 0, exclusive: the operation lock, held while reading or appending;
 *   byte 1, shared:    held by every live participant for its whole life.
 * The stale rule (docs/store.md): a non-empty file that no live participant
 * holds, and in which a participant joined without leaving (it crashed) or
 * all world_size joined (the run is over), belongs to an earlier run; the next
 * process to open it starts the file afresh. When all world_size joined and
 * left, the last to leave deletes the file.
 *
 * It does not fsync (a store lives as long as its run), and does not compact. */
#define _GNU_SOURCE
#include "dist/store/kvmap.h"
#include "dist/store/store_impl.h"

#include <dtrain/crc32c.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_MAGIC   0x4b465444u  /* "DTFK" */
#define FS_VERSION 1u
#define FS_HDR     16u          /* record header: u8 type, 3 pad, u32 klen, u32 vlen, u32 crc */
#define FS_HEADER_KEY "dtrain-file-store"

enum { R_HEADER = 1, R_JOIN, R_SET, R_DEL, R_LEAVE };

typedef struct {
    dt_store base;
    int fd;
    char *path;
    int world_size;
    dt__kvmap map;         /* the replayed view */
    uint64_t off;          /* bytes of the file replayed into map */
    int file_world;        /* world size in the file's header; 0 before it is read */
    int64_t joins, leaves;
    bool live;             /* holds the shared byte-1 lock */
} file_store;

/* ------------------------------------------------------------ locks */

static int ofd_lock(int fd, int cmd, short type, off_t at)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = at;
    fl.l_len = 1;
    return fcntl(fd, cmd, &fl);
}

static int lock_op(file_store *f, int64_t deadline)
{
    for (int attempt = 0;; attempt++) {
        if (ofd_lock(f->fd, F_OFD_SETLK, F_WRLCK, 0) == 0) return 0;
        if (errno == EINVAL)
            return dt_set_error_errno(DT_EUNSUPPORTED, errno, "%s: open file description locks", f->base.desc);
        if (errno != EAGAIN && errno != EACCES && errno != EINTR)
            return dt_set_error_errno(DT_ESYS, errno, "%s: locking", f->base.desc);
        if (dt_now_ns() >= deadline)
            return dt_set_error(DT_ETIMEOUT, "%s: another process held the file's lock past the timeout", f->base.desc);
        if (attempt < 16) sched_yield();
        else dt__store_poll_sleep(attempt - 16, deadline);
    }
}

static void unlock_op(file_store *f) { ofd_lock(f->fd, F_OFD_SETLK, F_UNLCK, 0); }

/* Whether any other open of the file holds the participants' lock. */
static int others_live(file_store *f, bool *live)
{
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 1;
    fl.l_len = 1;
    if (fcntl(f->fd, F_OFD_GETLK, &fl) < 0) return dt_set_error_errno(DT_ESYS, errno, "%s: F_OFD_GETLK", f->base.desc);
    *live = fl.l_type != F_UNLCK;
    return 0;
}

/* ------------------------------------------------------------ records */

static uint32_t rec_crc(const unsigned char *hdr, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    uint32_t c = dt_crc32c(0, hdr, 12);
    c = dt_crc32c(c, key, klen);
    return dt_crc32c(c, val, vlen);
}

/* Append one record at the end (we hold the lock and have replayed to it). */
static int append(file_store *f, int type, const char *key, const void *val, size_t vlen)
{
    uint32_t klen = (uint32_t)strlen(key);
    size_t n = FS_HDR + klen + vlen;
    unsigned char *r = dt_alloc(n, DT_MEM_COMM);
    if (!r) return dt_error_wrap(DT_ENOMEM, "%s: record", f->base.desc);
    memset(r, 0, FS_HDR);
    r[0] = (unsigned char)type;
    for (int i = 0; i < 4; i++) {
        r[4 + i] = (unsigned char)(klen >> (8 * i));
        r[8 + i] = (unsigned char)((uint32_t)vlen >> (8 * i));
    }
    memcpy(r + FS_HDR, key, klen);
    if (vlen) memcpy(r + FS_HDR + klen, val, vlen);
    uint32_t crc = rec_crc(r, key, klen, val, (uint32_t)vlen);
    for (int i = 0; i < 4; i++) r[12 + i] = (unsigned char)(crc >> (8 * i));
    int rc = 0;
    ssize_t w = 0;
    size_t done = 0;
    while (done < n && (w = pwrite(f->fd, r + done, n - done, (off_t)(f->off + done))) > 0) done += (size_t)w;
    if (done < n) {
        int e = w < 0 ? errno : EIO;
        rc = dt_set_error_errno(e == ENOSPC || e == EDQUOT ? DT_ENOSPC : DT_EIO, e, "%s: appending", f->base.desc);
        if (ftruncate(f->fd, (off_t)f->off) < 0) DT_LOGW(STORE, "%s: could not cut a failed append", f->base.desc);
    }
    dt_free(r);
    if (rc == 0) f->off += n;
    return rc;
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int apply(file_store *f, int type, const char *key, const unsigned char *val, uint32_t vlen, uint64_t at)
{
    switch (type) {
    case R_HEADER:
        if (at != 0 || vlen != 12 || get32(val) != FS_MAGIC || get32(val + 4) != FS_VERSION || get32(val + 8) < 1)
            return dt_set_error(DT_ECORRUPT, "%s: bad header record at offset %llu", f->base.desc, (unsigned long long)at);
        f->file_world = (int)get32(val + 8);
        return 0;
    case R_JOIN: f->joins++; return 0;
    case R_LEAVE: f->leaves++; return 0;
    case R_SET: return dt__kvmap_set(&f->map, key, val, vlen);
    case R_DEL: dt__kvmap_del(&f->map, key); return 0;
    default:
        return dt_set_error(DT_ECORRUPT, "%s: unknown record type %d at offset %llu", f->base.desc, type,
                            (unsigned long long)at);
    }
}

/* Replay every complete record past f->off. With the lock held, an incomplete
 * record at the end is a dead writer's and is cut off. A file that does not
 * start with a header is not a store file: DT_ECORRUPT. */
static int refresh(file_store *f)
{
    struct stat st;
    if (fstat(f->fd, &st) < 0) return dt_set_error_errno(DT_ESYS, errno, "%s: fstat", f->base.desc);
    uint64_t size = (uint64_t)st.st_size;
    unsigned char hdr[FS_HDR];
    unsigned char *body = NULL;
    int rc = 0;
    while (f->off < size) {
        if (size - f->off < FS_HDR) break;
        if (pread(f->fd, hdr, FS_HDR, (off_t)f->off) != FS_HDR) {
            rc = dt_set_error_errno(DT_EIO, errno, "%s: reading", f->base.desc);
            break;
        }
        uint32_t klen = get32(hdr + 4), vlen = get32(hdr + 8);
        if ((f->off == 0 && hdr[0] != R_HEADER) || klen > DT__STORE_MAX_KEY || vlen > DT__STORE_MAX_VALUE) {
            rc = dt_set_error(DT_ECORRUPT, "%s: not a dtrain file store, or corrupt at offset %llu", f->base.desc,
                              (unsigned long long)f->off);
            break;
        }
        if (size - f->off - FS_HDR < (uint64_t)klen + vlen) break;
        body = dt_alloc((size_t)klen + vlen + 1, DT_MEM_COMM);
        if (!body) { rc = DT_ENOMEM; break; }
        if (pread(f->fd, body, (size_t)klen + vlen, (off_t)(f->off + FS_HDR)) != (ssize_t)(klen + vlen)) {
            rc = dt_set_error_errno(DT_EIO, errno, "%s: reading", f->base.desc);
            break;
        }
        if (rec_crc(hdr, body, klen, body + klen, vlen) != get32(hdr + 12)) {
            rc = dt_set_error(DT_ECORRUPT, "%s: bad checksum in the record at offset %llu", f->base.desc,
                              (unsigned long long)f->off);
            break;
        }
        char *key = dt__store_dup_value(body, klen);
        if (!key) { rc = DT_ENOMEM; break; }
        rc = memchr(key, '\0', klen) ? dt_set_error(DT_ECORRUPT, "%s: NUL in a key", f->base.desc)
                                     : apply(f, hdr[0], key, body + klen, vlen, f->off);
        dt_free(key);
        dt_free(body);
        body = NULL;
        if (rc < 0) break;
        f->off += FS_HDR + klen + vlen;
    }
    dt_free(body);
    if (rc == 0 && f->off < size) {
        unsigned char first = 0;
        if (f->off == 0 && (pread(f->fd, &first, 1, 0) != 1 || first != R_HEADER))
            return dt_set_error(DT_ECORRUPT, "%s: not a dtrain file store", f->base.desc);
        DT_LOGW(STORE, "%s: cutting an incomplete record at offset %llu (a writer died mid-append)", f->base.desc,
                (unsigned long long)f->off);
        if (ftruncate(f->fd, (off_t)f->off) < 0)
            rc = dt_set_error_errno(DT_EIO, errno, "%s: cutting an incomplete record", f->base.desc);
    }
    return rc;
}

static int64_t op_deadline(const file_store *f) { return dt_deadline_ns(atomic_load(&f->base.timeout_ms)); }

static int lock_and_refresh(file_store *f)
{
    DT_CHECK(lock_op(f, op_deadline(f)));
    int rc = refresh(f);
    if (rc < 0) unlock_op(f);
    return rc;
}

/* ------------------------------------------------------------ operations */

static int file_set(dt_store *s, const char *key, const void *val, size_t len)
{
    file_store *f = (file_store *)s;
    DT_CHECK(lock_and_refresh(f));
    int rc = append(f, R_SET, key, val, len);
    if (rc == 0) rc = dt__kvmap_set(&f->map, key, val, len);
    unlock_op(f);
    return rc;
}

static bool all_exist(file_store *f, const char *const *keys, int nkeys)
{
    for (int i = 0; i < nkeys; i++)
        if (!dt__kvmap_find(&f->map, keys[i])) return false;
    return true;
}

/* Re-read the file with backoff until every key exists; with the lock held on
 * success (so a get can copy the value before anyone deletes it). */
static int wait_keys(file_store *f, const char *const *keys, int nkeys, int64_t timeout_ms)
{
    int64_t deadline = dt_deadline_ns(timeout_ms);
    for (int attempt = 0;; attempt++) {
        int rc = lock_op(f, deadline > op_deadline(f) ? deadline : op_deadline(f));
        if (rc == 0) rc = refresh(f);
        if (rc < 0) return rc;
        if (all_exist(f, keys, nkeys)) return 0;
        unlock_op(f);
        if (dt_now_ns() >= deadline) return dt__store_timeout_error(&f->base, keys, nkeys, timeout_ms);
        dt__store_poll_sleep(attempt, deadline);
    }
}

static int file_get(dt_store *s, const char *key, int64_t timeout_ms, void **val, size_t *len)
{
    file_store *f = (file_store *)s;
    DT_CHECK(wait_keys(f, &key, 1, timeout_ms));
    const dt__kv_entry *e = dt__kvmap_find(&f->map, key);
    int rc = 0;
    if (!(*val = dt__store_dup_value(e->val, e->vlen))) rc = dt_error_wrap(DT_ENOMEM, "%s get", s->desc);
    *len = e->vlen;
    unlock_op(f);
    return rc;
}

static int file_wait(dt_store *s, const char *const *keys, int nkeys, int64_t timeout_ms)
{
    file_store *f = (file_store *)s;
    DT_CHECK(wait_keys(f, keys, nkeys, timeout_ms));
    unlock_op(f);
    return 0;
}

static int file_add(dt_store *s, const char *key, int64_t delta, int64_t *out)
{
    file_store *f = (file_store *)s;
    char txt[24];
    DT_CHECK(lock_and_refresh(f));
    int rc = dt__kv_add_value(dt__kvmap_find(&f->map, key), key, delta, out);
    size_t n = rc == 0 ? dt__kv_format_int(*out, txt) : 0;
    if (rc == 0) rc = append(f, R_SET, key, txt, n);
    if (rc == 0) rc = dt__kvmap_set(&f->map, key, txt, n);
    unlock_op(f);
    return rc;
}

static int file_compare_set(dt_store *s, const char *key, const void *expected, size_t elen, const void *desired,
                            size_t dlen, void **cur, size_t *cur_len)
{
    file_store *f = (file_store *)s;
    const void *res;
    DT_CHECK(lock_and_refresh(f));
    int rc = 0;
    if (dt__kv_cas_decide(dt__kvmap_find(&f->map, key), expected, elen, desired, dlen, &res, cur_len)) {
        rc = append(f, R_SET, key, desired, dlen);
        if (rc == 0) rc = dt__kvmap_set(&f->map, key, desired, dlen);
    }
    if (rc == 0 && !(*cur = dt__store_dup_value(res, *cur_len))) rc = dt_error_wrap(DT_ENOMEM, "%s compare_set", s->desc);
    unlock_op(f);
    return rc;
}

static int file_check(dt_store *s, const char *const *keys, int nkeys, bool *exists)
{
    file_store *f = (file_store *)s;
    DT_CHECK(lock_and_refresh(f));
    *exists = all_exist(f, keys, nkeys);
    unlock_op(f);
    return 0;
}

static int file_del(dt_store *s, const char *key, bool *deleted)
{
    file_store *f = (file_store *)s;
    DT_CHECK(lock_and_refresh(f));
    int rc = 0;
    *deleted = dt__kvmap_find(&f->map, key) != NULL;
    if (*deleted) rc = append(f, R_DEL, key, NULL, 0);
    if (rc == 0) dt__kvmap_del(&f->map, key);
    unlock_op(f);
    return rc;
}

static int file_num_keys(dt_store *s, int64_t *out)
{
    file_store *f = (file_store *)s;
    DT_CHECK(lock_and_refresh(f));
    *out = (int64_t)f->map.count;
    unlock_op(f);
    return 0;
}

/* ------------------------------------------------------------ joining, leaving */

/* Whether fd still is the file at path (the last participant of a finished run
 * may have deleted it between our open and our lock). */
static bool still_at_path(const file_store *f)
{
    struct stat a, b;
    return fstat(f->fd, &a) == 0 && stat(f->path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int start_afresh(file_store *f)
{
    if (ftruncate(f->fd, 0) < 0) return dt_set_error_errno(DT_EIO, errno, "%s: truncating", f->base.desc);
    dt__kvmap_clear(&f->map);
    f->off = 0;
    f->joins = f->leaves = 0;
    unsigned char h[12];
    uint32_t v[3] = {FS_MAGIC, FS_VERSION, (uint32_t)f->world_size};
    for (int i = 0; i < 12; i++) h[i] = (unsigned char)(v[i / 4] >> (8 * (i % 4)));
    DT_CHECK(append(f, R_HEADER, FS_HEADER_KEY, h, sizeof h));
    f->file_world = f->world_size;
    return 0;
}

/* With the operation lock held and the file replayed: apply the stale rule, join. */
static int join(file_store *f)
{
    bool live = false;
    DT_CHECK(others_live(f, &live));
    if (f->off == 0) {
        DT_CHECK(start_afresh(f));
    } else if (!live && (f->joins > f->leaves || f->joins >= f->file_world || f->file_world != f->world_size)) {
        DT_LOGW(STORE, "%s: the file is from an earlier run (%lld joined, %lld left, no live participant); "
                "starting it afresh", f->base.desc, (long long)f->joins, (long long)f->leaves);
        DT_CHECK(start_afresh(f));
    } else if (f->file_world != f->world_size) {
        return dt_set_error(DT_EINVAL, "%s is in use by a run of world size %d, not %d", f->base.desc,
                            f->file_world, f->world_size);
    } else if (f->joins >= f->file_world) {
        return dt_set_error(DT_ESTATE, "%s already has its %d participants (and some are still running)",
                            f->base.desc, f->file_world);
    }
    DT_CHECK(append(f, R_JOIN, "", NULL, 0));
    f->joins++;
    if (ofd_lock(f->fd, F_OFD_SETLK, F_RDLCK, 1) < 0)
        return dt_set_error_errno(DT_ESYS, errno, "%s: taking the participant lock", f->base.desc);
    f->live = true;
    return 0;
}

static void file_destroy(dt_store *s)
{
    file_store *f = (file_store *)s;
    if (f->live) {
        ofd_lock(f->fd, F_OFD_SETLK, F_UNLCK, 1);
        if (lock_and_refresh(f) == 0) {
            if (append(f, R_LEAVE, "", NULL, 0) == 0) f->leaves++;
            if (f->joins >= f->file_world && f->leaves >= f->joins && still_at_path(f)) {
                if (unlink(f->path) < 0) DT_LOGW(STORE, "%s: could not delete the file: %s", s->desc, strerror(errno));
            }
            unlock_op(f);
        } else {
            DT_LOGW(STORE, "%s: leaving without a record: %s", s->desc, dt_last_error());
        }
    }
    if (f->fd >= 0) close(f->fd);
    dt__kvmap_destroy(&f->map);
    dt_free(f->path);
    dt_free(f);
}

static const dt__store_ops file_ops = {
    .kind = "file", .set = file_set, .get = file_get, .add = file_add, .compare_set = file_compare_set,
    .wait = file_wait, .check = file_check, .del = file_del, .num_keys = file_num_keys, .port = NULL,
    .destroy = file_destroy,
};

dt_store *dt_store_file(const char *path, int world_size, const dt_store_opts *opts)
{
    if (!path || !*path || world_size < 1) {
        dt_set_error(DT_EINVAL, "file store: %s", !path || !*path ? "no path given" : "world_size must be >= 1");
        return NULL;
    }
    file_store *f = dt_calloc(1, sizeof *f, DT_MEM_COMM);
    if (!f) return NULL;
    f->fd = -1;
    f->world_size = world_size;
    int rc = 0;
    DT_CHECK_GOTO(dt__store_init(&f->base, &file_ops, opts, "file store %s", path), rc, fail);
    DT_CHECK_GOTO(dt__kvmap_init(&f->map), rc, fail);
    if (!(f->path = dt_strdup(path))) goto fail;
    int64_t deadline = op_deadline(f);
    for (;;) {
        f->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (f->fd < 0) {
            dt_set_error_errno(DT_ESYS, errno, "file store: opening %s", path);
            goto fail;
        }
        DT_CHECK_GOTO(lock_op(f, deadline), rc, fail);
        if (still_at_path(f)) break;
        close(f->fd);   /* deleted (or replaced) under us: open the new one */
        f->fd = -1;
    }
    rc = refresh(f);
    if (rc == DT_ECORRUPT && f->off > 0) {
        /* A store file damaged after its header: start afresh if nobody uses it.
         * (A file without our header is not ours: never truncated.) */
        bool live = true;
        if (others_live(f, &live) == 0 && !live) {
            DT_LOGW(STORE, "%s: %s; nobody uses the file, starting it afresh", f->base.desc, dt_last_error());
            rc = start_afresh(f);
        }
    }
    if (rc == 0) rc = join(f);
    unlock_op(f);
    if (rc < 0) goto fail;
    return &f->base;
fail:
    (void)rc;
    f->live = false;
    file_destroy(&f->base);
    return NULL;
}
