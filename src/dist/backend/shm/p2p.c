/* shm send/recv: one channel per ordered pair of ranks (src -> dst) with two
 * chunk buffers of DT__SHM_CHAN bytes. A sender writes a chunk's metadata and
 * bytes, then bumps `sent`; a receiver copies it out and bumps `acked`; each
 * rings the other's doorbell. Up to two chunks are buffered, so a message of
 * at most two chunks completes without the receiver (eager), a longer one
 * flows as the receiver drains it.
 *
 * A batch progresses all its messages in one loop (so two ranks exchanging
 * large messages cannot deadlock) and sleeps on this rank's doorbell when no
 * message can move. Messages from one source are taken in order by the
 * batch's receives in the order given; a receive from any source takes the
 * first waiting message with its tag and size. Does not do collectives. */
#include "dist/backend/shm/shm.h"

#include <string.h>

typedef struct {
    size_t done;
    bool started, complete;
} p2p_state;

/* Push as many chunks of send op i as the channel takes; true if any moved. */
static bool send_step(dt__shm *st, dt__p2p *op, p2p_state *s)
{
    dt__shm_chan *ch = dt__shm_chan_at(st, st->rank, op->peer);
    bool moved = false;
    for (;;) {
        uint64_t k = atomic_load_explicit(&ch->sent, memory_order_relaxed);
        if (k - atomic_load_explicit(&ch->acked, memory_order_acquire) >= 2) break;
        size_t len = op->bytes - s->done < DT__SHM_CHAN ? op->bytes - s->done : DT__SHM_CHAN;
        dt__shm_chunk_meta *meta = &ch->meta[k & 1];
        meta->tag = op->tag;
        meta->first = !s->started;
        meta->total = op->bytes;
        meta->len = len;
        if (len) memcpy(dt__shm_chan_data(ch, k), (const char *)op->buf + s->done, len);
        atomic_store_explicit(&ch->sent, k + 1, memory_order_release);
        dt__shm_ring(st, op->peer);
        s->done += len;
        s->started = true;
        moved = true;
        if (s->done == op->bytes) {
            s->complete = true;
            break;
        }
    }
    return moved;
}

/* Whether the next chunk from src is the first of a message recv op would take. */
static int waiting_msg(dt__shm *st, int src, const dt__p2p *op, bool any, bool *match)
{
    dt__shm_chan *ch = dt__shm_chan_at(st, src, st->rank);
    uint64_t a = atomic_load_explicit(&ch->acked, memory_order_relaxed);
    *match = false;
    if (atomic_load_explicit(&ch->sent, memory_order_acquire) == a) return 0;
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

static bool recv_step(dt__shm *st, dt__p2p *op, p2p_state *s, int *owner, int i, int *rc)
{
    if (!s->started) {
        int from = op->peer, to = op->peer;
        if (op->peer == DT_ANY_SOURCE) from = 0, to = st->size - 1;
        for (int j = from; j <= to && !s->started; j++) {
            if (owner[j] >= 0) continue;
            bool match;
            if ((*rc = waiting_msg(st, j, op, op->peer == DT_ANY_SOURCE, &match)) < 0) return false;
            if (match) {
                owner[j] = i;
                op->source = j;
                s->started = true;
            }
        }
        if (!s->started) return false;
    }
    dt__shm_chan *ch = dt__shm_chan_at(st, op->source, st->rank);
    bool moved = false;
    for (;;) {
        uint64_t a = atomic_load_explicit(&ch->acked, memory_order_relaxed);
        if (atomic_load_explicit(&ch->sent, memory_order_acquire) == a) break;
        const dt__shm_chunk_meta *m = &ch->meta[a & 1];
        if (m->len > op->bytes - s->done) {
            *rc = dt__shm_fail(st, DT_EPROTO, 0, "p2p channel %d->%d: chunk overruns the message", op->source, st->rank);
            return false;
        }
        if (m->len) memcpy((char *)op->buf + s->done, dt__shm_chan_data(ch, a), m->len);
        s->done += m->len;
        atomic_store_explicit(&ch->acked, a + 1, memory_order_release);
        dt__shm_ring(st, op->source);
        moved = true;
        if (s->done == op->bytes) {
            s->complete = true;
            owner[op->source] = -1;
            break;
        }
    }
    return moved;
}

int dt__shm_p2p(void *state, dt__p2p *ops, int nops, int64_t deadline_ns)
{
    dt__shm *st = state;
    st->op = "send/recv";
    DT_CHECK(dt__shm_check(st));
    p2p_state local[16], *s = nops <= 16 ? local : dt_calloc((size_t)nops, sizeof *s, DT_MEM_COMM);
    if (!s) return DT_ENOMEM;
    memset(s, 0, (size_t)nops * sizeof *s);
    int recv_owner[DT__SHM_MAX_RANKS], send_owner[DT__SHM_MAX_RANKS], rc = 0;
    uint64_t peers = 0;
    for (int j = 0; j < st->size; j++) recv_owner[j] = send_owner[j] = -1;
    for (int i = 0; i < nops; i++)
        peers |= ops[i].peer == DT_ANY_SOURCE ? ~0ull >> (64 - st->size) & ~(1ull << st->rank) : 1ull << ops[i].peer;
    peers &= ~(1ull << st->rank);
    for (;;) {
        uint32_t bell = atomic_load_explicit(&st->ctrl[st->rank].bell, memory_order_acquire);
        bool moved = false;
        int left = 0;
        for (int i = 0; i < nops; i++) {
            if (s[i].complete) continue;
            if (ops[i].kind == DT_P2P_SEND) {
                int d = ops[i].peer;
                if (send_owner[d] < 0) send_owner[d] = i;
                if (send_owner[d] == i) {
                    moved |= send_step(st, &ops[i], &s[i]);
                    if (s[i].complete) send_owner[d] = -1;
                }
            } else {
                moved |= recv_step(st, &ops[i], &s[i], recv_owner, i, &rc);
                if (rc < 0) goto out;
            }
            if (!s[i].complete) left++;
        }
        if (!left) break;
        if (!moved && (rc = dt__shm_wait_bell(st, bell, peers, deadline_ns)) < 0) goto out;
    }
out:
    if (s != local) dt_free(s);
    return rc;
}
