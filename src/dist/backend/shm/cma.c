/* The shm backend's large all_reduce, reduce, all_gather, reduce_scatter and all_to_all over
 * private buffers by cross-memory attach (CMA: process_vm_readv/writev),
 * where the kernel allows it. all_gather and all_to_all: each rank reads its
 * blocks straight out of the peers' send buffers into its output (one copy
 * instead of staging's two); reduce_scatter: rank r reads block r of every
 * peer's input in chunks and reduces it with its own. The rest of this
 * comment is the all_reduce (reduce: the same, each slice written to root's
 * output only).
 *
 * The staging algorithm (allreduce.c) copies what the peers reduce into the
 * segment first: 4 passes over the message per rank at 2 ranks. With CMA a
 * rank reads a peer's buffer straight out of the peer's address space, and
 * writes into it (the kernel copies once, between the two processes' pages),
 * as the direct algorithm does for buffers in the shm heap: rank r reduces
 * its 1/n slice, a cache-sized chunk at a time, reading every peer's send
 * slice into a scratch buffer and adding them, in rank order, with its own,
 * into its recv; then it writes the chunk, still hot, into every peer's
 * recv. A last publish/wait says every output is whole and no input is read
 * any more. In place is safe as in the direct algorithm: each rank reads and
 * writes only its own slice of every buffer. (Writing the peers' outputs,
 * rather than reading the other slices out of their owners' outputs after a
 * wait, saves a wait and measured faster at every size on the Intel VM of
 * session 13: 64 KiB 6.5 against 12.2 us, 1 MiB 105 against 167, 16 MiB
 * 2.47 against 2.77 ms.)
 * Only up to DT__SHM_CMA_MAX bytes (shm.h): larger messages stage, whose
 * chunked pipeline keeps each chunk in cache between its passes.
 *
 * Whether CMA works is decided once per group, unanimously, at its first
 * large all_reduce, all_gather or reduce_scatter over private buffers: every
 * rank reads each peer's control line through the peer's address space and
 * checks it is the line it sees in the segment (so the pid names that peer
 * here, not a stranger in another pid namespace); the kernel refuses the read
 * between processes that may not ptrace each other (other users, Yama's ptrace_scope >= 1 between siblings,
 * some containers). Every rank posts its answer; CMA is used only if every
 * rank could read every peer. DTRAIN_SHM_CMA=0 makes this rank answer no (so
 * the whole group stages). A peer that dies during a read or write fails the
 * op like a peer that dies during a wait. */
#define _GNU_SOURCE
#include "dist/backend/shm/shm.h"
#include "dist/reduce.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* bytes of a peer's slice per read: 256 KiB measured 8-12% faster than 64 KiB
 * and 1 MiB at 1-16 MiB (2 ranks) */
#define DT__SHM_CMA_CHUNK (256u << 10)

/* Copy len bytes between our buf and the peer's address va: into buf
 * (process_vm_readv), or from it (to_peer: process_vm_writev). Either may
 * stop short: it goes on. 0, or -errno. */
static int peer_copy(pid_t pid, void *buf, uint64_t va, size_t len, bool to_peer)
{
    while (len) {
        struct iovec l = {.iov_base = buf, .iov_len = len}, r = {.iov_base = (void *)(uintptr_t)va, .iov_len = len};
        ssize_t got = to_peer ? process_vm_writev(pid, &l, 1, &r, 1, 0) : process_vm_readv(pid, &l, 1, &r, 1, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (got == 0) return -EFAULT;
        buf = (char *)buf + got;
        va += (uint64_t)got;
        len -= (size_t)got;
    }
    return 0;
}

static int copy_fail(dt__shm *st, int j, int err, const char *verb, const char *what)
{
    if (err == -ESRCH)
        return dt__shm_fail(st, DT_EPEER, 1ull << j, "rank %d (pid %d) exited while rank %d %s its %s", j,
                            (int)st->ctrl[j].pid, st->rank, verb[0] == 'r' ? "read" : "wrote", what);
    return dt__shm_fail(st, DT_ESYS, 1ull << j, "rank %d could not %s rank %d's %s: %s", st->rank, verb, j, what,
                        strerror(-err));
}

/* n chunks: the peers' slices are read into the first n - 1; a reduce's
 * non-root rank reduces into the last. */
static int scratch(dt__shm *st, const char *op)
{
    if (st->cma_tmp) return 0;
    st->cma_tmp = dt_alloc((size_t)st->size * DT__SHM_CMA_CHUNK, DT_MEM_COMM);
    if (!st->cma_tmp)
        return dt__shm_fail(st, DT_ENOMEM, 0, "%s: %d x %u bytes of CMA scratch", op, st->size, DT__SHM_CMA_CHUNK);
    return 0;
}

static int agree(dt__shm *st, const dt__coll *c, int p)
{
    bool ok = st->cma_allowed;
    for (int j = 0; j < st->size && ok; j++) {
        if (j == st->rank) continue;
        /* the peer's own view of its ctrl line must be the line we see: then the pid
         * names that process here (not another one, in another pid namespace) */
        dt__shm_ctrl probe;
        ok = peer_copy((pid_t)st->ctrl[j].pid, &probe, st->ctrl[j].self_va, sizeof probe, false) == 0 &&
             probe.pid == st->ctrl[j].pid && probe.self_va == st->ctrl[j].self_va;
    }
    /* the answer goes in our slot header (the slot's data may hold the op's
     * counts: all_to_all) */
    dt__shm_slot_hdr_at(st, p, st->rank)->cma_ok = ok;
    dt__shm_publish(st);
    DT_CHECK(dt__shm_wait_all(st, st->step, c->deadline_ns));
    int all = 1;
    for (int j = 0; j < st->size; j++) all &= dt__shm_slot_hdr_at(st, p, j)->cma_ok != 0;
    st->cma = all;
    return 0;
}

int dt__shm_cma_usable(dt__shm *st, const dt__coll *c, int p, bool each_va, bool *use)
{
    if (st->cma < 0) DT_CHECK(agree(st, c, p));
    *use = st->cma == 1;
    for (int j = 0; j < st->size && *use && each_va; j++)
        if (!dt__shm_slot_hdr_at(st, p, j)->send_va) *use = false;
    return 0;
}

int dt__shm_cma_allreduce(dt__shm *st, const dt__coll *c, int p, size_t esz)
{
    int n = st->size, me = st->rank;
    bool reduce = c->kind == DT__OP_REDUCE;
    DT_CHECK(scratch(st, reduce ? "reduce" : "all_reduce"));
    /* reduce: a rank other than root reduces its slice into scratch and writes it to root only */
    char *mid = reduce && me != c->root ? st->cma_tmp + (size_t)(n - 1) * DT__SHM_CMA_CHUNK : NULL;
    uint64_t send_va[DT__SHM_MAX_RANKS], recv_va[DT__SHM_MAX_RANKS];
    for (int j = 0; j < n; j++) {
        const dt__shm_slot_hdr *h = dt__shm_slot_hdr_at(st, p, j);
        send_va[j] = h->send_va;
        recv_va[j] = h->recv_va;
    }
    const char *send = c->send;
    char *recv = c->recv;
    size_t lo, hi, step = DT__SHM_CMA_CHUNK / esz;
    dt__shm_split(c->count, n, me, &lo, &hi);
    for (size_t x = lo; x < hi; x += step) {
        size_t m = hi - x < step ? hi - x : step;
        const void *ins[DT__SHM_MAX_RANKS];
        char *tmp = st->cma_tmp;
        for (int j = 0; j < n; j++) {
            if (j == me) { ins[j] = send + x * esz; continue; }
            int rc = peer_copy((pid_t)st->ctrl[j].pid, tmp, send_va[j] + x * esz, m * esz, false);
            if (rc < 0) return copy_fail(st, j, rc, "read", "send buffer");
            ins[j] = tmp;
            tmp += DT__SHM_CMA_CHUNK;
        }
        char *dst = mid ? mid : recv + x * esz;
        dt__reduce_n(dst, ins, n, m, c->dtype, c->redop, c->premul);
        for (int j = 0; j < n; j++) {
            if (j == me || (reduce && j != c->root)) continue;
            int rc = peer_copy((pid_t)st->ctrl[j].pid, dst, recv_va[j] + x * esz, m * esz, true);
            if (rc < 0) return copy_fail(st, j, rc, "write", "output");
        }
    }
    dt__shm_publish(st);
    return dt__shm_wait_all(st, st->step, c->deadline_ns); /* every output written, no input read any more */
}

int dt__shm_cma_gather(dt__shm *st, const dt__coll *c, int p, size_t esz)
{
    int n = st->size, me = st->rank;
    if (c->kind == DT__OP_ALLGATHER || me == c->root)
        for (int j = 0; j < n; j++) {
            size_t bytes = c->recv_counts[j] * esz;
            if (!bytes) continue;
            if (j == me) {
                if (c->recvv[j] != c->send) memmove(c->recvv[j], c->send, bytes);
                continue;
            }
            uint64_t va = dt__shm_slot_hdr_at(st, p, j)->send_va;
            int rc = peer_copy((pid_t)st->ctrl[j].pid, c->recvv[j], va, bytes, false);
            if (rc < 0) return copy_fail(st, j, rc, "read", "send buffer");
        }
    dt__shm_publish(st);
    return dt__shm_wait_all(st, st->step, c->deadline_ns); /* nobody reads our send buffer any more */
}

int dt__shm_cma_reduce_scatter(dt__shm *st, const dt__coll *c, int p, size_t esz)
{
    int n = st->size, me = st->rank;
    DT_CHECK(scratch(st, "reduce_scatter"));
    size_t displ = 0, step = DT__SHM_CMA_CHUNK / esz, count = c->recv_counts[me];
    for (int i = 0; i < me; i++) displ += c->recv_counts[i];
    const char *own = c->sendv[me];
    char *recv = c->recv;
    for (size_t x = 0; x < count; x += step) {
        size_t m = count - x < step ? count - x : step;
        const void *ins[DT__SHM_MAX_RANKS];
        char *tmp = st->cma_tmp;
        for (int j = 0; j < n; j++) {
            if (j == me) { ins[j] = own + x * esz; continue; }
            uint64_t va = dt__shm_slot_hdr_at(st, p, j)->send_va + (displ + x) * esz;
            int rc = peer_copy((pid_t)st->ctrl[j].pid, tmp, va, m * esz, false);
            if (rc < 0) return copy_fail(st, j, rc, "read", "send buffer");
            ins[j] = tmp;
            tmp += DT__SHM_CMA_CHUNK;
        }
        dt__reduce_n(recv + x * esz, ins, n, m, c->dtype, c->redop, c->premul);
    }
    dt__shm_publish(st);
    return dt__shm_wait_all(st, st->step, c->deadline_ns); /* nobody reads our input any more */
}

int dt__shm_cma_alltoall(dt__shm *st, const dt__coll *c, int p, size_t esz)
{
    int n = st->size, me = st->rank;
    for (int j = 0; j < n; j++) {
        size_t bytes = c->recv_counts[j] * esz;
        if (!bytes) continue;
        if (j == me) {
            if (c->recvv[me] != c->sendv[me]) memmove(c->recvv[me], c->sendv[me], bytes);
            continue;
        }
        const uint64_t *theirs = (const uint64_t *)dt__shm_slot(st, p, j); /* rank j's send counts */
        uint64_t displ = 0;
        for (int k = 0; k < me; k++) displ += theirs[k];
        uint64_t va = dt__shm_slot_hdr_at(st, p, j)->send_va + displ * esz;
        int rc = peer_copy((pid_t)st->ctrl[j].pid, c->recvv[j], va, bytes, false);
        if (rc < 0) return copy_fail(st, j, rc, "read", "send buffer");
    }
    dt__shm_publish(st);
    return dt__shm_wait_all(st, st->step, c->deadline_ns); /* nobody reads our input any more */
}
