/* The shm backend's segment: its layout, creation by group rank 0, mapping by
 * the others (the name travels through the group's store), and the unlink as
 * soon as every rank has mapped it, so a crash afterwards leaks nothing.
 * Everything but the heap is reserved up front (fallocate), so touching it can
 * never raise SIGBUS on a full /dev/shm; heap pages are reserved as dt_pg_alloc
 * hands them out (heap.c). Does not run any collective. */
#define _GNU_SOURCE
#include "dist/backend/shm/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Offsets of the parts for n ranks; returns the fixed (non-heap) size. */
static size_t layout(dt__shm_hdr *h, int n, uint64_t heap_bytes)
{
    size_t off = align_up(sizeof(dt__shm_hdr), 4096);
    h->off_ctrl = off;
    off = align_up(off + (size_t)n * sizeof(dt__shm_ctrl), 4096);
    h->off_slot = off;
    off = align_up(off + 2 * (size_t)n * (sizeof(dt__shm_slot_hdr) + DT__SHM_SLOT), 4096);
    h->off_chan = off;
    off = align_up(off + (size_t)n * n * (sizeof(dt__shm_chan) + 2 * (size_t)DT__SHM_CHAN), 2u << 20);
    h->off_heap = off;
    h->heap_bytes = heap_bytes;
    h->seg_bytes = off + (size_t)n * heap_bytes;
    return off;
}

static int map_fd(dt__shm *st, size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, st->fd, 0);
    if (p == MAP_FAILED) return dt_set_error_errno(DT_ESYS, errno, "shm: mmap of %zu bytes of %s", bytes, st->name);
    st->base = p;
    st->bytes = bytes;
    st->hdr = p;
    return 0;
}

static int create_segment(dt__shm *st, uint64_t heap_bytes)
{
    static _Atomic unsigned counter;
    dt__shm_hdr h = {0};
    size_t fixed = layout(&h, st->size, heap_bytes);
    snprintf(st->name, sizeof st->name, "/dtrain-%d-%u-%llx", (int)getpid(), (unsigned)atomic_fetch_add(&counter, 1),
             (unsigned long long)(dt_now_ns() & 0xffffffffffull));
    st->fd = shm_open(st->name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (st->fd < 0) return dt_set_error_errno(DT_ESYS, errno, "shm: shm_open(%s)", st->name);
    int rc = 0;
    if (ftruncate(st->fd, (off_t)h.seg_bytes) != 0) {
        rc = dt_set_error_errno(DT_ESYS, errno, "shm: sizing %s to %llu bytes", st->name, (unsigned long long)h.seg_bytes);
        goto fail;
    }
    int err = posix_fallocate(st->fd, 0, (off_t)fixed);
    if (err) {
        rc = dt_set_error_errno(err == ENOSPC ? DT_ENOSPC : DT_ESYS, err, "shm: reserving %zu bytes of /dev/shm", fixed);
        goto fail;
    }
    DT_CHECK_GOTO(map_fd(st, h.seg_bytes), rc, fail);
    h.magic = DT__SHM_MAGIC;
    h.version = DT__SHM_VERSION;
    h.size = (uint32_t)st->size;
    memcpy(st->hdr, &h, sizeof h);
    return 0;
fail:
    shm_unlink(st->name);
    close(st->fd);
    st->fd = -1;
    return rc;
}

static int open_segment(dt__shm *st)
{
    st->fd = shm_open(st->name, O_RDWR, 0600);
    if (st->fd < 0) return dt_set_error_errno(DT_ESYS, errno, "shm: shm_open(%s) of rank 0's segment", st->name);
    struct stat sb;
    if (fstat(st->fd, &sb) != 0 || (size_t)sb.st_size < sizeof(dt__shm_hdr))
        return dt_set_error(DT_ECORRUPT, "shm: segment %s is too small", st->name);
    DT_CHECK(map_fd(st, (size_t)sb.st_size));
    const dt__shm_hdr *h = st->hdr;
    if (h->magic != DT__SHM_MAGIC || h->version != DT__SHM_VERSION || h->size != (uint32_t)st->size ||
        h->seg_bytes != (uint64_t)sb.st_size)
        return dt_set_error(DT_ECORRUPT, "shm: segment %s is not a dtrain v%u segment for %d ranks", st->name,
                            DT__SHM_VERSION, st->size);
    return 0;
}

int dt__shm_segment_create(dt__shm *st, const dt__backend_init *init)
{
    int64_t heap_mb, cma;
    DT_CHECK(dt_param_int(DT_PARAM_SHM_HEAP_MB, &heap_mb));
    DT_CHECK(dt_param_int(DT_PARAM_SHM_CMA, &cma));
    st->cma_allowed = cma != 0;
    st->fd = -1;
    int rc = 0;
    bool named = false;
    if (st->rank == 0) {
        DT_CHECK(create_segment(st, (uint64_t)heap_mb << 20));
        named = true;
        DT_CHECK_GOTO(dt_store_set(init->store, "shm/name", st->name, strlen(st->name) + 1), rc, fail);
    } else {
        void *v = NULL;
        size_t len = 0;
        DT_CHECK_GOTO(dt_store_get(init->store, "shm/name", &v, &len), rc, fail);
        if (len == 0 || len > sizeof st->name || ((char *)v)[len - 1] != '\0') {
            dt_free(v);
            rc = dt_set_error(DT_ECORRUPT, "shm: bad segment name in the store");
            goto fail;
        }
        memcpy(st->name, v, len);
        dt_free(v);
        named = true;
        DT_CHECK_GOTO(open_segment(st), rc, fail);
    }
    st->ctrl = (dt__shm_ctrl *)(st->base + st->hdr->off_ctrl);
    st->ctrl[st->rank].pid = (int32_t)getpid();
    st->ctrl[st->rank].self_va = (uint64_t)(uintptr_t)&st->ctrl[st->rank];
    /* Everyone mapped: the last to arrive unlinks the name; all wait for it. */
    int64_t n = 0;
    DT_CHECK_GOTO(dt_store_add(init->store, "shm/attached", 1, &n), rc, fail);
    if (n == st->size) {
        shm_unlink(st->name);
        DT_CHECK_GOTO(dt_store_set(init->store, "shm/ready", "1", 1), rc, fail);
    }
    const char *keys[1] = {"shm/ready"};
    DT_CHECK_GOTO(dt_store_wait(init->store, keys, 1, init->timeout_ms), rc, fail);
    return 0;
fail:
    if (named) shm_unlink(st->name);   /* ENOENT when already done: harmless */
    dt__shm_segment_destroy(st);
    return dt_error_wrap(rc, "shm: setting up the segment of group '%s' (rank %d of %d)", init->group_name,
                         st->rank, st->size);
}

void dt__shm_segment_destroy(dt__shm *st)
{
    if (st->base) munmap(st->base, st->bytes);
    st->base = NULL;
    st->hdr = NULL;
    st->ctrl = NULL;
    if (st->fd >= 0) close(st->fd);
    st->fd = -1;
}

int64_t dt__shm_heap_off(dt__shm *st, const void *p, size_t bytes)
{
    if (!p || !st->hdr || st->hdr->heap_bytes == 0) return -1;
    const char *lo = st->base + st->hdr->off_heap + (size_t)st->rank * st->hdr->heap_bytes;
    const char *hi = lo + st->hdr->heap_bytes;
    const char *q = p;
    if (q < lo || q > hi || bytes > (size_t)(hi - q)) return -1;
    return (int64_t)(q - st->base);
}
