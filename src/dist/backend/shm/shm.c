/* The shm backend: ranks on one host talk through one shared segment per group
 * (segment.c). This file has its ops table, create/destroy/abort, and the
 * round helpers the algorithms in allreduce.c, gather.c and p2p.c are built
 * from (the round protocol is described in shm.h). */
#include "dist/backend/shm/shm.h"

#include <stdio.h>
#include <string.h>

static int shm_create(const dt__backend_init *init, void **state)
{
    if (init->size > DT__SHM_MAX_RANKS)
        return dt_set_error(DT_EUNSUPPORTED, "shm: groups of more than %d ranks (asked for %d)", DT__SHM_MAX_RANKS,
                            init->size);
    dt__shm *st = dt_calloc(1, sizeof *st, DT_MEM_COMM);
    if (!st) return DT_ENOMEM;
    st->rank = init->rank;
    st->size = init->size;
    snprintf(st->group, sizeof st->group, "%s", init->group_name);
    /* Waiting (wait.c): a short pure spin while every rank has a core, then
     * a spin that yields the core between polls for up to 1 ms (a peer that
     * shares our core, because ranks outnumber cores or other work runs
     * there, gets it at once), then futex sleeps. A long pure spin measured
     * badly: a rank sharing its core with the peer it waits for holds the
     * core for the whole spin (each small all_reduce took spin + 3 us). */
    st->spin_iters = init->size <= dt_num_cpus() ? dt__shm_pauses_per_us() : 0;
    st->yield_ns = 1000000;
    st->cma = -1;
    st->polls = 20;
    int rc = dt__shm_segment_create(st, init);
    if (rc < 0) {
        dt_free(st);
        return rc;
    }
    rc = dt__shm_heap_init(st);
    if (rc < 0) {
        dt__shm_segment_destroy(st);
        dt_free(st);
        return rc;
    }
    *state = st;
    return 0;
}

static void shm_destroy(void *state)
{
    dt__shm *st = state;
    if (!st) return;
    dt__shm_heap_fini(st);
    dt__shm_segment_destroy(st);
    dt_free(st->cma_tmp);
    dt_free(st);
}

static void shm_abort(void *state)
{
    dt__shm *st = state;
    atomic_store(&st->local_abort, 1);
    int32_t expect = 0;
    /* Not dt__shm_fail: that sets this (possibly unrelated) thread's error. */
    if (atomic_compare_exchange_strong(&st->hdr->fail_code, &expect, DT_EABORTED)) {
        snprintf(st->hdr->fail_msg, sizeof st->hdr->fail_msg, "rank %d aborted group '%s'", st->rank, st->group);
        st->hdr->fail_rank = st->rank;
        st->hdr->fail_seq = st->seq;
        st->hdr->fail_missing = 0;
        atomic_store_explicit(&st->hdr->fail_ready, 1, memory_order_release);
    }
    dt__shm_wake_all(st);
}

int dt__shm_round_begin(dt__shm *st, const dt__coll *c, int *p)
{
    *p = (int)(st->round & 1);
    return dt__shm_wait_all(st, st->guard[*p], c->deadline_ns);
}

void dt__shm_round_end(dt__shm *st, int p)
{
    dt__shm_publish(st);
    st->guard[p] = st->step;
    st->round++;
}

void dt__shm_post_hdr(dt__shm *st, int p, const dt__coll *c, uint64_t count, int64_t send_off, int64_t recv_off)
{
    dt__shm_slot_hdr *h = dt__shm_slot_hdr_at(st, p, st->rank);
    h->seq = c->seq;
    h->kind = (uint32_t)c->kind;
    h->dtype = (uint32_t)c->dtype;
    h->redop = (uint32_t)c->redop;
    h->root = (uint32_t)c->root;
    h->count = count;
    h->send_off = send_off;
    h->recv_off = recv_off;
}

static bool rooted(uint32_t k)
{
    return k == DT__OP_BROADCAST || k == DT__OP_REDUCE || k == DT__OP_GATHER || k == DT__OP_SCATTER;
}

static bool reducing(uint32_t k) { return k == DT__OP_ALLREDUCE || k == DT__OP_REDUCE || k == DT__OP_REDUCE_SCATTER; }

static void describe(const dt__shm_slot_hdr *h, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s #%llu (%s", (unsigned)h->kind < DT__OP_COUNT ? dt__op_name((dt__op_kind)h->kind) : "?",
                     (unsigned long long)h->seq, dt_dtype_name((dt_dtype)h->dtype));
    if (n < 0 || (size_t)n >= cap) return;
    if (h->kind == DT__OP_ALLREDUCE || h->kind == DT__OP_BROADCAST || h->kind == DT__OP_REDUCE)
        n += snprintf(buf + n, cap - (size_t)n, ", count %llu", (unsigned long long)h->count);
    else if (h->kind != DT__OP_BARRIER && h->kind != DT__OP_ALLTOALL)
        n += snprintf(buf + n, cap - (size_t)n, ", counts #%08llx", (unsigned long long)(h->count & 0xffffffffu));
    if ((size_t)n < cap && reducing(h->kind))
        n += snprintf(buf + n, cap - (size_t)n, ", %s", dt_redop_name((dt_redop)h->redop));
    if ((size_t)n < cap && rooted(h->kind)) n += snprintf(buf + n, cap - (size_t)n, ", root %u", h->root);
    if ((size_t)n < cap) snprintf(buf + n, cap - (size_t)n, ")");
}

int dt__shm_check_hdrs(dt__shm *st, int p, const dt__coll *c)
{
    const dt__shm_slot_hdr *mine = dt__shm_slot_hdr_at(st, p, st->rank);
    for (int j = 0; j < st->size; j++) {
        const dt__shm_slot_hdr *h = dt__shm_slot_hdr_at(st, p, j);
        bool same = h->seq == mine->seq && h->kind == mine->kind && h->dtype == mine->dtype &&
                    (h->kind == DT__OP_ALLTOALL || h->count == mine->count) &&
                    (!reducing(h->kind) || h->redop == mine->redop) && (!rooted(h->kind) || h->root == mine->root);
        if (same) continue;
        char a[160], b[160], what[64] = "";
        describe(h, a, sizeof a);
        describe(mine, b, sizeof b);
        if (h->seq != mine->seq) strcat(what, ", sequence number");
        if (h->kind != mine->kind) strcat(what, ", op");
        else {
            if (h->dtype != mine->dtype) strcat(what, ", dtype");
            if (h->count != mine->count) strcat(what, ", count");
            if (reducing(h->kind) && h->redop != mine->redop) strcat(what, ", reduction");
            if (rooted(h->kind) && h->root != mine->root) strcat(what, ", root");
        }
        return dt__shm_fail(st, DT_EMISMATCH, 0, "rank %d called %s while rank %d called %s (%s differ%s)", j, a, st->rank,
                            b, what[0] ? what + 2 : "arguments", what[0] && !strchr(what + 2, ',') ? "s" : "");
    }
    return 0;
}

const dt__backend_ops dt__backend_shm = {
    .name = "shm",
    .lazy_deadline = true,
    .create = shm_create,
    .destroy = shm_destroy,
    .abort = shm_abort,
    .coll = {
        [DT__OP_ALLREDUCE] = dt__shm_allreduce,
        [DT__OP_BROADCAST] = dt__shm_broadcast,
        [DT__OP_REDUCE] = dt__shm_allreduce,
        [DT__OP_ALLGATHER] = dt__shm_allgather,
        [DT__OP_GATHER] = dt__shm_allgather,
        [DT__OP_SCATTER] = dt__shm_scatter,
        [DT__OP_REDUCE_SCATTER] = dt__shm_reduce_scatter,
        [DT__OP_ALLTOALL] = dt__shm_alltoall,
        [DT__OP_BARRIER] = dt__shm_barrier,
    },
    .p2p = dt__shm_p2p,
    .p2p_kick = dt__shm_p2p_kick,
    .alloc = dt__shm_alloc,
    .free = dt__shm_free,
};
