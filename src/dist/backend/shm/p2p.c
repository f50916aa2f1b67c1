/* shm send/recv: one channel per ordered pair of ranks (src -> dst) with two
 * chunk buffers of DT__SHM_CHAN bytes. A sender writes a chunk's metadata and
 * bytes, then bumps `sent`; a receiver copies it out and bumps `acked`; each
 * rings the other's doorbell. Up to two chunks are buffered, so a message of
 * at most two chunks completes without the receiver (eager), a longer one
 * flows as the receiver drains it.
 *
 * A call progresses all its messages in one loop (so two ranks exchanging
 * large messages cannot deadlock), sleeps on this rank's doorbell when no
 * message can move, and returns as soon as one more message completes (the
 * group layer then completes its work and may add newly issued messages:
 * progress is kept in each dt__p2p). Matching: a channel carries one
 * message at a time per direction, in order; the receives of the set take a
 * source's messages in the order they are listed, a receive from any source
 * takes the first waiting message with its tag and size. A receive that did
 * not start on a source in this sweep bars later receives from starting on
 * it, so no later receive overtakes an earlier one whatever arrives when.
 * Does not do collectives. */
#include "dist/backend/shm/shm.h"

#include <string.h>

/* Push as many chunks of a send as the channel takes; true if any moved. */
static bool send_step(dt__shm *st, dt__p2p *op)
{
    dt__shm_chan *ch = dt__shm_chan_at(st, st->rank, op->peer);
    bool moved = false;
    for (;;) {
        uint64_t k = atomic_load_explicit(&ch->sent, memory_order_relaxed);
        if (k - atomic_load_explicit(&ch->acked, memory_order_acquire) >= 2) break;
        size_t len = op->bytes - op->done < DT__SHM_CHAN ? op->bytes - op->done : DT__SHM_CHAN;
        dt__shm_chunk_meta *meta = &ch->meta[k & 1];
        meta->tag = op->tag;
        meta->first = !op->started;
        meta->total = op->bytes;
        meta->len = len;
        if (len) memcpy(dt__shm_chan_data(ch, k), (const char *)op->buf + op->done, len);
        atomic_store_explicit(&ch->sent, k + 1, memory_order_release);
        dt__shm_ring(st, op->peer);
        op->done += len;
        op->started = true;
        moved = true;
        if (op->done == op->bytes) {
            op->complete = true;
            break;
        }
    }
    return moved;
}

/* Whether the next chunk from src starts a message the receive op takes
 * (*match); -1 in *present when the channel is empty. A specific-source
 * receive facing another message fails with DT_EMISMATCH. */
static int waiting_msg(dt__shm *st, int src, const dt__p2p *op, bool any, bool *match, bool *present)
{
    dt__shm_chan *ch = dt__shm_chan_at(st, src, st->rank);
    uint64_t a = atomic_load_explicit(&ch->acked, memory_order_relaxed);
    *match = false;
    *present = atomic_load_explicit(&ch->sent, memory_order_acquire) != a;
    if (!*present) return 0;
    const dt__shm_chunk_meta *m = &ch->meta[a & 1];
    if (!m->first)
        return dt__shm_fail(st, DT_EPROTO, 0, "p2p channel %d->%d out of step (a chunk that starts no message)", src,
                            st->rank);
    if (m->tag == op->tag && m->total == op->bytes) *match = true;
    else if (!any)
        return dt__shm_fail(st, DT_EMISMATCH, 0,
                            "rank %d sent a message of %llu bytes with tag %d; rank %d's recv expects %zu bytes with tag %d",
                            src, (unsigned long long)m->total, (int)m->tag, st->rank, op->bytes, op->tag);
    return 0;
}

/* Start (if it can) and drain a receive; true if any chunk moved. owner[j]:
 * the receive in progress on source j; *barred: sources a receive earlier in
 * this sweep could not start on. */
static bool recv_step(dt__shm *st, dt__p2p *op, int i, int *owner, uint64_t *barred, int *rc)
{
    if (!op->started) {
        bool any = op->peer == DT_ANY_SOURCE;
        int from = any ? 0 : op->peer, to = any ? st->size - 1 : op->peer;
        for (int j = from; j <= to && !op->started; j++) {
            if (owner[j] >= 0 || (*barred & (1ull << j))) {
                *barred |= 1ull << j;
                continue;
            }
            bool match, present;
            if ((*rc = waiting_msg(st, j, op, any, &match, &present)) < 0) return false;
            if (match) {
                owner[j] = i;
                op->source = j;
                op->started = true;
            } else if (!present) {
                *barred |= 1ull << j;
            }
        }
        if (!op->started) return false;
    }
    dt__shm_chan *ch = dt__shm_chan_at(st, op->source, st->rank);
    bool moved = false;
    for (;;) {
        uint64_t a = atomic_load_explicit(&ch->acked, memory_order_relaxed);
        if (atomic_load_explicit(&ch->sent, memory_order_acquire) == a) break;
        const dt__shm_chunk_meta *m = &ch->meta[a & 1];
        if (m->len > op->bytes - op->done || (op->done && m->first)) {
            *rc = dt__shm_fail(st, DT_EPROTO, 0, "p2p channel %d->%d: chunk overruns the message", op->source, st->rank);
            return false;
        }
        if (m->len) memcpy((char *)op->buf + op->done, dt__shm_chan_data(ch, a), m->len);
        op->done += m->len;
        atomic_store_explicit(&ch->acked, a + 1, memory_order_release);
        dt__shm_ring(st, op->source);
        moved = true;
        if (op->done == op->bytes) {
            op->complete = true;
            owner[op->source] = -1;
            break;
        }
    }
    return moved;
}

int dt__shm_p2p(void *state, dt__p2p *const *ops, int nops, int64_t deadline_ns, _Atomic int *kick)
{
    dt__shm *st = state;
    DT_CHECK(dt__shm_check(st));
    int recv_owner[DT__SHM_MAX_RANKS], send_owner[DT__SHM_MAX_RANKS], rc = 0;
    uint64_t peers = 0, others = (~0ull >> (64 - st->size)) & ~(1ull << st->rank);
    for (int j = 0; j < st->size; j++) recv_owner[j] = send_owner[j] = -1;
    for (int i = 0; i < nops; i++) {
        const dt__p2p *op = ops[i];
        if (op->complete) continue;
        peers |= op->peer == DT_ANY_SOURCE ? others : 1ull << op->peer;
        if (op->started && op->kind == DT_P2P_SEND) send_owner[op->peer] = i;
        else if (op->started) recv_owner[op->source] = i;
    }
    peers &= ~(1ull << st->rank);
    for (;;) {
        uint32_t bell = atomic_load_explicit(&st->ctrl[st->rank].bell, memory_order_acquire);
        bool moved = false;
        int left = 0, finished = 0;
        uint64_t barred = 0;
        for (int i = 0; i < nops; i++) {
            dt__p2p *op = ops[i];
            if (op->complete) continue;
            if (op->kind == DT_P2P_SEND) {
                int d = op->peer;
                if (send_owner[d] < 0) send_owner[d] = i;
                if (send_owner[d] == i) {
                    moved |= send_step(st, op);
                    if (op->complete) send_owner[d] = -1;
                }
            } else {
                moved |= recv_step(st, op, i, recv_owner, &barred, &rc);
                if (rc < 0) return rc;
            }
            if (op->complete) finished++;
            else left++;
        }
        if (!left || finished) return 0;
        if (kick && atomic_load(kick)) return 0;
        if (!moved && (rc = dt__shm_wait_bell(st, bell, peers, deadline_ns)) < 0) return rc;
    }
}

void dt__shm_p2p_kick(void *state) { dt__shm_ring(state, ((dt__shm *)state)->rank); }
