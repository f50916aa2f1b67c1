/* The shm heap: dt_pg_alloc's buffers, carved from this rank's arena of the
 * group's segment so peers can read and write them in place. First fit over
 * a sorted list of free extents, coalesced on free; the bookkeeping is private
 * to this process (only this rank allocates in its arena). Pages are reserved
 * (fallocate) as they are handed out, so a full /dev/shm is an error here, not
 * a SIGBUS later. */
#define _GNU_SOURCE
#include "dist/backend/shm/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#define DT__SHM_ALIGN 64

static int push(struct dt__shm_ext **a, int *n, int *cap, int at, struct dt__shm_ext e)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        struct dt__shm_ext *b = dt_realloc(*a, (size_t)nc * sizeof **a, DT_MEM_COMM);
        if (!b) return DT_ENOMEM;
        *a = b;
        *cap = nc;
    }
    memmove(*a + at + 1, *a + at, (size_t)(*n - at) * sizeof **a);
    (*a)[at] = e;
    (*n)++;
    return 0;
}

static void drop(struct dt__shm_ext *a, int *n, int at)
{
    memmove(a + at, a + at + 1, (size_t)(*n - at - 1) * sizeof *a);
    (*n)--;
}

int dt__shm_heap_init(dt__shm *st)
{
    if (pthread_mutex_init(&st->heap_mu, NULL) != 0) return dt_set_error(DT_ESYS, "shm: heap mutex");
    uint64_t hb = st->hdr->heap_bytes;
    if (hb == 0) return 0;
    struct dt__shm_ext e = {st->hdr->off_heap + (uint64_t)st->rank * hb, hb};
    return push(&st->free_ext, &st->nfree, &st->cap_free, 0, e);
}

void dt__shm_heap_fini(dt__shm *st)
{
    if (st->nused) DT_LOGW(SHM, "group '%s': %d dt_pg_alloc buffer(s) not freed before destroy", st->group, st->nused);
    dt_free(st->free_ext);
    dt_free(st->used_ext);
    st->free_ext = st->used_ext = NULL;
    st->nfree = st->nused = 0;
    pthread_mutex_destroy(&st->heap_mu);
}

void *dt__shm_alloc(void *state, size_t bytes)
{
    dt__shm *st = state;
    uint64_t len = ((bytes ? bytes : 1) + DT__SHM_ALIGN - 1) / DT__SHM_ALIGN * DT__SHM_ALIGN;
    pthread_mutex_lock(&st->heap_mu);
    int i = 0;
    while (i < st->nfree && st->free_ext[i].len < len) i++;
    if (i == st->nfree) {
        pthread_mutex_unlock(&st->heap_mu);
        dt_set_error(DT_ENOMEM, "dt_pg_alloc(%zu): the shm heap of group '%s' has no free extent that large "
                     "(DTRAIN_SHM_HEAP_MB sets its size)", bytes, st->group);
        return NULL;
    }
    struct dt__shm_ext e = {st->free_ext[i].off, len};
    int err = posix_fallocate(st->fd, (off_t)e.off, (off_t)len);
    if (err) {
        pthread_mutex_unlock(&st->heap_mu);
        dt_set_error_errno(err == ENOSPC ? DT_ENOSPC : DT_ESYS, err, "dt_pg_alloc(%zu): reserving /dev/shm pages", bytes);
        return NULL;
    }
    if (push(&st->used_ext, &st->nused, &st->cap_used, st->nused, e) < 0) {
        pthread_mutex_unlock(&st->heap_mu);
        return NULL;
    }
    st->free_ext[i].off += len;
    st->free_ext[i].len -= len;
    if (st->free_ext[i].len == 0) drop(st->free_ext, &st->nfree, i);
    pthread_mutex_unlock(&st->heap_mu);
    return st->base + e.off;
}

void dt__shm_free(void *state, void *p)
{
    dt__shm *st = state;
    if (!p) return;
    uint64_t off = (uint64_t)((char *)p - st->base);
    pthread_mutex_lock(&st->heap_mu);
    int u = 0;
    while (u < st->nused && st->used_ext[u].off != off) u++;
    if (u == st->nused) {
        pthread_mutex_unlock(&st->heap_mu);
        DT_LOGE(SHM, "dt_pg_free(%p): not a live dt_pg_alloc buffer of group '%s'", p, st->group);
        return;
    }
    struct dt__shm_ext e = st->used_ext[u];
    drop(st->used_ext, &st->nused, u);
    int i = 0;
    while (i < st->nfree && st->free_ext[i].off < e.off) i++;
    if (i > 0 && st->free_ext[i - 1].off + st->free_ext[i - 1].len == e.off) {
        st->free_ext[i - 1].len += e.len;
        if (i < st->nfree && e.off + e.len == st->free_ext[i].off) {
            st->free_ext[i - 1].len += st->free_ext[i].len;
            drop(st->free_ext, &st->nfree, i);
        }
    } else if (i < st->nfree && e.off + e.len == st->free_ext[i].off) {
        st->free_ext[i].off = e.off;
        st->free_ext[i].len += e.len;
    } else if (push(&st->free_ext, &st->nfree, &st->cap_free, i, e) < 0) {
        DT_LOGW(SHM, "dt_pg_free: out of memory for the free list; %llu heap bytes lost", (unsigned long long)e.len);
    }
    pthread_mutex_unlock(&st->heap_mu);
}
