/* tcp send/recv: each message is one P2P frame carrying its tag. A receive
 * from one source takes that source's next message, which must have its tag
 * and size (else DT_EMISMATCH); one from any source takes the first message,
 * from any rank, whose tag and size match. Messages that arrive before their
 * receive (eagerly sent by a peer that went on) wait in the transfer engine's
 * unexpected list; sends to self go straight to their receive or onto that
 * list.
 *
 * The group layer calls p2p() with every incomplete message of its set, in
 * issue order, and again with the same ones plus any issued since: p2p()
 * posts each message to the engine the first time it sees it (a dt__tcp_p2px
 * on t->p2p, found again by the dt__p2p's address), then moves every posted
 * transfer until one more message completes, all have, or *kick says the group
 * layer has new messages to add. So a receive posted before the send its peer
 * waits for (irecv, isend, wait both, on both ranks) does not hold that send
 * back: the send is posted on the next call and both move together. Messages
 * to one rank are posted, and so arrive, in issue order. */
#include "dist/backend/tcp/tcp.h"

typedef struct dt__tcp_p2px {
    struct dt__tcp_p2px *next;
    dt__p2p *op;                 /* the group layer's message (borrowed; alive until complete or failed) */
    dt__tcp_xfer x;
} dt__tcp_p2px;

typedef struct {
    _Atomic int *kick;
} p2p_wait;

static bool any_complete(dt__tcp *t, void *arg)
{
    const p2p_wait *w = arg;
    if (w->kick && atomic_load(w->kick)) return true;
    for (dt__tcp_p2px *e = t->p2p; e; e = e->next)
        if (e->x.complete) return true;
    return !t->p2p;
}

void dt__tcp_p2p_drop(dt__tcp *t)
{
    for (dt__tcp_p2px *e = t->p2p, *nx; e; e = nx) {
        nx = e->next;
        dt_free(e);
    }
    t->p2p = NULL;
}

/* Mark the messages whose transfers completed, and forget them. */
static void harvest(dt__tcp *t)
{
    dt__tcp_p2px **pp = &t->p2p;
    while (*pp) {
        dt__tcp_p2px *e = *pp;
        if (!e->x.complete) {
            pp = &e->next;
            continue;
        }
        if (e->op->kind == DT_P2P_RECV) e->op->source = e->x.source;
        e->op->done = e->op->bytes;
        e->op->complete = true;
        *pp = e->next;
        dt_free(e);
    }
}

int dt__tcp_p2p(dt__tcp *t, dt__p2p *const *ops, int nops, int64_t deadline_ns, _Atomic int *kick)
{
    dt__tcp_p2px **tail = &t->p2p;
    while (*tail) tail = &(*tail)->next;
    for (int i = 0; i < nops; i++) {
        dt__p2p *op = ops[i];
        if (op->complete || op->started) continue;
        dt__tcp_p2px *e = dt_alloc(sizeof *e, DT_MEM_COMM);
        if (!e) return dt__tcp_fail(t, DT_ENOMEM, 0, "tcp: no memory for a message");
        e->next = NULL;
        e->op = op;
        *tail = e;
        tail = &e->next;
        op->started = true;
        dt__tcp_frame f = {.type = DT__TCP_F_P2P, .tag = op->tag};
        if (op->kind == DT_P2P_SEND) dt__tcp_post_send(t, &e->x, op->peer, &f, op->buf, op->bytes);
        else dt__tcp_post_recv(t, &e->x, op->peer, &f, op->buf, op->bytes);
    }
    p2p_wait w = {kick};
    int rc = dt__tcp_wait_until(t, any_complete, &w, deadline_ns);
    if (rc < 0) { /* the engine forgot every posted transfer */
        dt__tcp_p2p_drop(t);
        return rc;
    }
    harvest(t);
    return 0;
}
