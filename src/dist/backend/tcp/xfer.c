/* The tcp backend's transfer engine: posting sends and receives, the poll()
 * loop that moves them, frame matching (and the mismatch check it carries)
 * and unexpected frames (the scheme is described in tcp.h). The failure
 * record is fail.c's. Knows no algorithm. */
#define _GNU_SOURCE
#include "dist/backend/tcp/tcp.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define DT__TCP_READ_BURST (8u << 20)    /* bytes read from one peer before polling again */
#define DT__TCP_MAX_FRAME (1ull << 40)   /* a longer frame header is garbage */

/* ---------------------------------------------------------------- frames */

static bool rooted(unsigned k)
{
    return k == DT__OP_BROADCAST || k == DT__OP_REDUCE || k == DT__OP_GATHER || k == DT__OP_SCATTER;
}
static bool reducing(unsigned k) { return k == DT__OP_ALLREDUCE || k == DT__OP_REDUCE || k == DT__OP_REDUCE_SCATTER; }

dt__tcp_frame dt__tcp_coll_frame(const dt__coll *c, uint64_t fp, uint32_t step, size_t len)
{
    dt__tcp_frame f = {.magic = DT__TCP_FRAME_MAGIC, .type = DT__TCP_F_COLL, .kind = (uint8_t)c->kind,
                       .dtype = (uint8_t)c->dtype, .redop = reducing(c->kind) ? (uint8_t)c->redop : 0,
                       .tag = rooted(c->kind) ? c->root : 0, .step = step, .seq = c->seq, .fp = fp, .len = len};
    return f;
}

static void describe(const dt__tcp_frame *f, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s #%llu (%s, step %u, %llu bytes", f->kind < DT__OP_COUNT ? dt__op_name(f->kind) : "?",
                     (unsigned long long)f->seq, dt_dtype_name((dt_dtype)f->dtype), (unsigned)f->step,
                     (unsigned long long)f->len);
    if (n < 0 || (size_t)n >= cap) return;
    if (f->kind == DT__OP_ALLREDUCE || f->kind == DT__OP_BROADCAST || f->kind == DT__OP_REDUCE)
        n += snprintf(buf + n, cap - (size_t)n, ", count %llu", (unsigned long long)f->fp);
    else if (f->kind != DT__OP_BARRIER && f->kind != DT__OP_ALLTOALL)
        n += snprintf(buf + n, cap - (size_t)n, ", counts #%08llx", (unsigned long long)(f->fp & 0xffffffffu));
    if ((size_t)n < cap && reducing(f->kind))
        n += snprintf(buf + n, cap - (size_t)n, ", %s", dt_redop_name((dt_redop)f->redop));
    if ((size_t)n < cap && rooted(f->kind)) n += snprintf(buf + n, cap - (size_t)n, ", root %d", (int)f->tag);
    if ((size_t)n < cap) snprintf(buf + n, cap - (size_t)n, ")");
}

/* Whether frame got (from rank j) is what receive x expects; else fail. */
static int check_frame(dt__tcp *t, int j, const dt__tcp_frame *got, const dt__tcp_xfer *x)
{
    const dt__tcp_frame *w = &x->f;
    if (got->type == DT__TCP_F_P2P) {
        if (got->tag == w->tag && got->len == x->len) return 0;
        return dt__tcp_fail(t, DT_EMISMATCH, 0,
                            "rank %d sent a message of %llu bytes with tag %d; rank %d's recv expects %zu bytes with tag %d",
                            j, (unsigned long long)got->len, (int)got->tag, t->rank, x->len, (int)w->tag);
    }
    if (got->seq == w->seq && got->kind == w->kind && got->dtype == w->dtype && got->redop == w->redop &&
        got->tag == w->tag && got->fp == w->fp && got->step == w->step && got->len == x->len)
        return 0;
    char a[200], b[200];
    describe(got, a, sizeof a);
    dt__tcp_frame want = *w;
    want.len = x->len;
    describe(&want, b, sizeof b);
    return dt__tcp_fail(t, DT_EMISMATCH, 0, "rank %d called %s while rank %d called %s", j, a, t->rank, b);
}

static void unlink_xfer(dt__tcp_xfer **head, dt__tcp_xfer **tail, dt__tcp_xfer *x)
{
    dt__tcp_xfer *prev = NULL;
    for (dt__tcp_xfer *q = *head; q; prev = q, q = q->next)
        if (q == x) {
            if (prev) prev->next = q->next;
            else *head = q->next;
            if (tail && *tail == q) *tail = prev;
            x->next = NULL;
            return;
        }
}

static void append(dt__tcp_xfer **head, dt__tcp_xfer **tail, dt__tcp_xfer *x)
{
    x->next = NULL;
    if (*tail) (*tail)->next = x;
    else *head = x;
    *tail = x;
}

/* Whether receive x takes frame f: a COLL receive the frame of its op and
 * step (the steps of one op may arrive in any order), a P2P receive the next
 * P2P frame. */
static bool takes(const dt__tcp_xfer *x, const dt__tcp_frame *f)
{
    if (x->f.type != f->type) return false;
    return f->type != DT__TCP_F_COLL || (f->seq == x->f.seq && f->step == x->f.step);
}

/* A COLL frame of x's op that disagrees with x on what the op is. */
static bool conflicts(const dt__tcp_xfer *x, const dt__tcp_frame *f)
{
    const dt__tcp_frame *w = &x->f;
    return f->type == DT__TCP_F_COLL && w->type == DT__TCP_F_COLL && f->seq == w->seq &&
           (f->kind != w->kind || f->dtype != w->dtype || f->redop != w->redop || f->tag != w->tag || f->fp != w->fp);
}

/* The first message in j's unexpected list that x takes (and its predecessor). */
static dt__tcp_msg *first_msg(dt__tcp_peer *p, const dt__tcp_xfer *x, dt__tcp_msg **prev)
{
    *prev = NULL;
    for (dt__tcp_msg *m = p->uq; m; *prev = m, m = m->next)
        if (takes(x, &m->f)) return m;
    return NULL;
}

static void take_msg(dt__tcp_peer *p, dt__tcp_msg *m, dt__tcp_msg *prev, dt__tcp_xfer *x, int src)
{
    if (prev) prev->next = m->next;
    else p->uq = m->next;
    if (p->uq_tail == m) p->uq_tail = prev;
    if (m->f.len) memcpy(x->buf, m->data, m->f.len);
    x->complete = true;
    x->source = src;
    dt_free(m);
}

static void xfer_init(dt__tcp_xfer *x, int peer, bool is_send, const dt__tcp_frame *f, const void *buf, size_t len)
{
    x->next = NULL;
    x->peer = peer;
    x->is_send = is_send;
    x->complete = false;
    x->f = *f;
    x->f.magic = DT__TCP_FRAME_MAGIC;
    x->f.len = len;
    x->buf = (char *)buf;
    x->len = len;
    x->done = 0;
    x->source = -1;
}

static int link_of(const dt__tcp *t, int rank, int lane) { return rank * t->nconn + lane % t->nconn; }
static int rank_of(const dt__tcp *t, int l) { return l / t->nconn; }

void dt__tcp_post_send_on(dt__tcp *t, dt__tcp_xfer *x, int peer, int lane, const dt__tcp_frame *f, const void *buf,
                          size_t len)
{
    xfer_init(x, peer, true, f, buf, len);
    if (atomic_load(&t->fail_code)) return;
    dt__tcp_peer *p = &t->peers[link_of(t, peer, lane)];
    if (peer == t->rank) { /* to self: into the receive posted for it, else onto our own unexpected list */
        dt__tcp_xfer *r = p->rq;
        while (r && !takes(r, &x->f)) r = r->next;
        if (r) {
            if (check_frame(t, peer, &x->f, r) < 0) return;
            unlink_xfer(&p->rq, &p->rq_tail, r);
        } else if (x->f.type == DT__TCP_F_P2P) {
            for (r = t->any; r && !(r->f.tag == x->f.tag && r->len == len); r = r->next) {}
            if (r) unlink_xfer(&t->any, NULL, r);
        }
        if (r) {
            if (len) memcpy(r->buf, buf, len);
            r->complete = true;
            r->source = peer;
            x->complete = true;
            return;
        }
        dt__tcp_msg *m = dt_alloc(sizeof *m + len, DT_MEM_COMM);
        if (!m) {
            dt__tcp_fail(t, DT_ENOMEM, 0, "tcp: no memory for a message of %zu bytes to self", len);
            return;
        }
        m->next = NULL;
        m->f = x->f;
        if (len) memcpy(m->data, buf, len);
        if (p->uq_tail) p->uq_tail->next = m;
        else p->uq = m;
        p->uq_tail = m;
        x->complete = true;
        return;
    }
    append(&p->sq, &p->sq_tail, x);
}

/* If j's frame being read right now is an unexpected one that x would take
 * (it comes before anything posted later), let x take it over. */
static bool take_inflight(dt__tcp *t, int l, dt__tcp_xfer *x, bool any)
{
    dt__tcp_peer *p = &t->peers[l];
    int j = rank_of(t, l);
    dt__tcp_msg *m = p->rmsg;
    if (!m || p->rf_got < sizeof p->rf || !takes(x, &m->f)) return false;
    if (any && !(m->f.tag == x->f.tag && m->f.len == x->len)) return false;
    if (!any && check_frame(t, j, &m->f, x) < 0) return true; /* failed: recorded */
    if (p->r_done) memcpy(x->buf, m->data, p->r_done);
    dt_free(m);
    p->rmsg = NULL;
    p->rx = x;
    x->source = j;
    return true;
}

void dt__tcp_post_recv_on(dt__tcp *t, dt__tcp_xfer *x, int peer, int lane, const dt__tcp_frame *f, void *buf,
                          size_t len)
{
    xfer_init(x, peer, false, f, buf, len);
    if (atomic_load(&t->fail_code)) return;
    dt__tcp_msg *m, *prev;
    if (peer == DT_ANY_SOURCE) { /* p2p: lane 0 */
        for (int j = 0; j < t->size; j++) {
            dt__tcp_peer *p = &t->peers[link_of(t, j, 0)];
            if ((m = first_msg(p, x, &prev)) && m->f.tag == x->f.tag && m->f.len == len) {
                take_msg(p, m, prev, x, j);
                return;
            }
            if (!m && take_inflight(t, link_of(t, j, 0), x, true)) return;
        }
        dt__tcp_xfer *tail = t->any;
        while (tail && tail->next) tail = tail->next;
        append(&t->any, &tail, x);
        return;
    }
    int l = link_of(t, peer, lane);
    dt__tcp_peer *p = &t->peers[l];
    if ((m = first_msg(p, x, &prev))) {
        if (check_frame(t, peer, &m->f, x) < 0) return;
        take_msg(p, m, prev, x, peer);
        return;
    }
    for (m = p->uq; m; m = m->next)
        if (conflicts(x, &m->f)) {
            check_frame(t, peer, &m->f, x);
            return;
        }
    if (take_inflight(t, l, x, false)) return;
    append(&p->rq, &p->rq_tail, x);
}

/* ---------------------------------------------------------------- moving */

/* Whether link l has work posted (an any-source receive needs every peer's lane 0). */
static bool needed(const dt__tcp *t, int l)
{
    const dt__tcp_peer *p = &t->peers[l];
    return p->sq || p->rq || p->rx || (t->any && l % t->nconn == 0 && rank_of(t, l) != t->rank);
}

static uint64_t needed_mask(const dt__tcp *t)
{
    uint64_t m = 0;
    for (int l = 0; l < t->nlink; l++) {
        int j = rank_of(t, l);
        if (j != t->rank && j < 64 && needed(t, l)) m |= 1ull << j;
    }
    return m;
}

static int peer_lost(dt__tcp *t, int l, const char *what, int err)
{
    dt__tcp_peer *p = &t->peers[l];
    int j = rank_of(t, l);
    return dt__tcp_fail(t, DT_EPEER, j < 64 ? 1ull << j : 0, "rank %d (%s) %s%s%s while rank %d was in %s", j, p->addr,
                        what, err ? ": " : "", err ? strerror(err) : "", t->rank, t->op ? t->op : "an op");
}

static int do_send(dt__tcp *t, int l)
{
    dt__tcp_peer *p = &t->peers[l];
    dt__tcp_xfer *x;
    while ((x = p->sq)) {
        const size_t hl = sizeof x->f;
        struct iovec iov[2];
        int niov = 0;
        if (x->done < hl) {
            iov[niov++] = (struct iovec){(char *)&x->f + x->done, hl - x->done};
            if (x->len) iov[niov++] = (struct iovec){x->buf, x->len};
        } else {
            iov[niov++] = (struct iovec){x->buf + (x->done - hl), x->len - (x->done - hl)};
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)niov};
        ssize_t k = sendmsg(p->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EINTR) continue;
            return peer_lost(t, l, "lost its connection", errno);
        }
        x->done += (size_t)k;
        if (x->done == hl + x->len) {
            x->complete = true;
            p->sq = x->next;
            if (!p->sq) p->sq_tail = NULL;
            x->next = NULL;
        }
    }
    return 0;
}

/* The header of link l's frame is in: find its receive, or a buffer for it. */
static int dispatch(dt__tcp *t, int l)
{
    dt__tcp_peer *p = &t->peers[l];
    int j = rank_of(t, l);
    dt__tcp_frame *f = &p->rf;
    if (f->magic != DT__TCP_FRAME_MAGIC)
        return dt__tcp_fail(t, DT_EPROTO, 0, "rank %d (%s) sent a frame with bad magic %#x", j, p->addr,
                            (unsigned)f->magic);
    if (f->len > DT__TCP_MAX_FRAME || (f->type == DT__TCP_F_ABORT && f->len > DT__TCP_MSG_CAP))
        return dt__tcp_fail(t, DT_EPROTO, 0, "rank %d (%s) sent a frame of %llu bytes", j, p->addr,
                            (unsigned long long)f->len);
    dt__tcp_xfer *x = NULL;
    if (f->type == DT__TCP_F_COLL || f->type == DT__TCP_F_P2P) {
        for (x = p->rq; x && !takes(x, f); x = x->next) {}
        if (x) {
            DT_CHECK(check_frame(t, j, f, x));
            unlink_xfer(&p->rq, &p->rq_tail, x);
        } else if (f->type == DT__TCP_F_COLL) {
            for (dt__tcp_xfer *y = p->rq; y; y = y->next)
                if (conflicts(y, f)) return check_frame(t, j, f, y);
        } else if (l % t->nconn == 0) {
            for (x = t->any; x && !(x->f.tag == f->tag && x->len == f->len); x = x->next) {}
            if (x) unlink_xfer(&t->any, NULL, x);
        }
    } else if (f->type != DT__TCP_F_ABORT) {
        return dt__tcp_fail(t, DT_EPROTO, 0, "rank %d (%s) sent a frame of unknown type %u", j, p->addr,
                            (unsigned)f->type);
    }
    if (x) {
        p->rx = x;
        x->source = j;
        return 0;
    }
    p->rmsg = dt_alloc(sizeof *p->rmsg + f->len, DT_MEM_COMM);
    if (!p->rmsg)
        return dt__tcp_fail(t, DT_ENOMEM, 0, "tcp: no memory to hold a frame of %llu bytes from rank %d",
                            (unsigned long long)f->len, j);
    p->rmsg->next = NULL;
    p->rmsg->f = *f;
    return 0;
}

static int finish_frame(dt__tcp *t, int l)
{
    dt__tcp_peer *p = &t->peers[l];
    p->rf_got = 0;
    p->r_done = 0;
    if (p->rx) {
        p->rx->complete = true;
        p->rx = NULL;
        return 0;
    }
    dt__tcp_msg *m = p->rmsg;
    p->rmsg = NULL;
    if (m->f.type == DT__TCP_F_ABORT) return dt__tcp_adopt_abort(t, rank_of(t, l), m);
    if (p->uq_tail) p->uq_tail->next = m;
    else p->uq = m;
    p->uq_tail = m;
    return 0;
}

/* Link l's peer closed its side. Fine unless we are in the middle of its frame or need it. */
static int on_eof(dt__tcp *t, int l)
{
    dt__tcp_peer *p = &t->peers[l];
    p->eof = true;
    if (p->rf_got) return peer_lost(t, l, "closed its connection in the middle of a frame", 0);
    if (needed(t, l)) return peer_lost(t, l, "closed its connection (it exited or failed)", 0);
    return 0;
}

/* Read what came on link l: frames for posted receives, else into buffers.
 * drain: read to the end (the peer closed its side) even with nothing posted. */
static int do_recv(dt__tcp *t, int l, bool drain)
{
    dt__tcp_peer *p = &t->peers[l];
    size_t budget = DT__TCP_READ_BURST;
    while (budget && !p->eof && !atomic_load(&t->fail_code)) {
        char *dst;
        size_t want;
        bool hdr = p->rf_got < sizeof p->rf;
        if (hdr) {
            if (!p->rf_got && !drain && !needed(t, l)) return 0;
            dst = (char *)&p->rf + p->rf_got;
            want = sizeof p->rf - p->rf_got;
        } else {
            dst = p->rx ? p->rx->buf + p->r_done : p->rmsg->data + p->r_done;
            want = p->rf.len - p->r_done;
        }
        ssize_t k = want ? recv(p->fd, dst, want, MSG_DONTWAIT) : 0;
        if (want && k == 0) return on_eof(t, l);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EINTR) continue;
            if (!p->rf_got && !needed(t, l)) { /* reset after its last frame: gone, not a failure yet */
                p->eof = true;
                return 0;
            }
            return peer_lost(t, l, "lost its connection", errno);
        }
        budget = (size_t)k < budget ? budget - (size_t)k : 0;
        if (hdr) {
            p->rf_got += (size_t)k;
            if (p->rf_got < sizeof p->rf) continue;
            DT_CHECK(dispatch(t, l));
            if (p->rf.len == 0) DT_CHECK(finish_frame(t, l));
        } else {
            p->r_done += (size_t)k;
            if (p->r_done == p->rf.len) DT_CHECK(finish_frame(t, l));
        }
    }
    return dt__tcp_check(t);
}

typedef struct {
    const dt__tcp_xfer *x;
    int nx;
} xfer_set;

static bool all_done(dt__tcp *t, void *arg)
{
    const xfer_set *s = arg;
    if (s->nx >= 0) {
        for (int i = 0; i < s->nx; i++)
            if (!s->x[i].complete) return false;
        return true;
    }
    for (int l = 0; l < t->nlink; l++)
        if (needed(t, l)) return false;
    return !t->any;
}

int dt__tcp_wait(dt__tcp *t, dt__tcp_xfer *x, int nx, int64_t deadline_ns)
{
    xfer_set s = {x, nx};
    return dt__tcp_wait_until(t, all_done, &s, deadline_ns);
}

/* The spin before sleeping adapts (up to spin_ns): a wait that the spin
 * ended, or a sleep that a longer spin would have saved, lengthens it; a
 * spin that was followed by a long sleep shortens it. So where the peers'
 * data comes quickly (each rank has a core) the ranks spin, and on a crowded
 * machine, where spinning takes the core from the rank being waited for,
 * they sleep at once. */
static void adapt_spin(dt__tcp *t, bool hit, int64_t slept_ns)
{
    int64_t c = t->spin_cur;
    if (hit || slept_ns < t->spin_ns) c = c + c / 2 + 1000;
    else c /= 2;
    t->spin_cur = c > t->spin_ns ? t->spin_ns : c < 1000 ? 0 : c;
}

int dt__tcp_wait_until(dt__tcp *t, bool (*done)(dt__tcp *t, void *arg), void *arg, int64_t deadline_ns)
{
    int n = t->nlink;
    struct pollfd local[17], *pf = n + 1 <= 17 ? local : dt_alloc((size_t)(n + 1) * sizeof *pf, DT_MEM_COMM);
    if (!pf) return dt__tcp_fail(t, DT_ENOMEM, 0, "tcp: no memory to poll %d connections", n);
    int64_t t0 = dt_now_ns();
    int rc = 0;
    for (;;) {
        if ((rc = dt__tcp_check(t)) < 0) break;
        if (atomic_load(&t->abort_req)) {
            rc = dt__tcp_fail(t, DT_EABORTED, 0, "rank %d aborted group '%s'", t->rank, t->group);
            break;
        }
        if (done(t, arg)) break;
        for (int j = 0; j < n && rc == 0; j++)
            if (rank_of(t, j) != t->rank && t->peers[j].eof && needed(t, j))
                rc = peer_lost(t, j, "closed its connection (it exited or failed)", 0);
        if (rc < 0) break;
        int64_t now = dt_now_ns();
        if (now >= deadline_ns) {
            rc = dt__tcp_fail(t, DT_ETIMEOUT, needed_mask(t), "rank %d gave up after waiting %.3f s in %s #%llu", t->rank,
                              (double)(now - t0) * 1e-9, t->op ? t->op : "?", (unsigned long long)t->seq);
            break;
        }
        for (int j = 0; j < n; j++) {
            dt__tcp_peer *p = &t->peers[j];
            pf[j].fd = -1;
            pf[j].events = 0;
            pf[j].revents = 0;
            if (rank_of(t, j) == t->rank || p->fd < 0) continue;
            short ev = 0;
            if (p->sq) ev |= POLLOUT;
            if (!p->eof) ev |= POLLRDHUP | (needed(t, j) || p->rf_got ? POLLIN : 0);
            if (ev) pf[j].fd = p->fd, pf[j].events = ev;
        }
        pf[n].fd = t->wake[0];
        pf[n].events = POLLIN;
        pf[n].revents = 0;
        int64_t ms = (deadline_ns - now) / 1000000 + 1;
        if (ms > 1000) ms = 1000;
        /* spin on a non-blocking poll for up to spin_cur before sleeping in it */
        int k = poll(pf, (nfds_t)n + 1, 0);
        bool spun = false;
        if (k == 0 && t->spin_cur > 0) {
            int64_t until = dt_now_ns() + t->spin_cur;
            while ((k = poll(pf, (nfds_t)n + 1, 0)) == 0 && dt_now_ns() < until) {}
            spun = true;
            if (k > 0) adapt_spin(t, true, 0);
        }
        if (k == 0) {
            int64_t s0 = dt_now_ns();
            k = poll(pf, (nfds_t)n + 1, (int)ms);
            if (k > 0 || spun) adapt_spin(t, false, dt_now_ns() - s0);
        }
        if (k < 0) {
            if (errno == EINTR) continue;
            rc = dt__tcp_fail(t, DT_ESYS, 0, "tcp: poll: %s", strerror(errno));
            break;
        }
        if (pf[n].revents) {
            char b[64];
            if (read(t->wake[0], b, sizeof b) < 0) {}
        }
        for (int j = 0; j < n && rc == 0; j++) {
            short re = pf[j].revents;
            if (!re) continue;
            dt__tcp_peer *p = &t->peers[j];
            if (p->sq && (re & (POLLOUT | POLLERR | POLLHUP))) rc = do_send(t, j);
            if (rc == 0 && (re & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)))
                rc = do_recv(t, j, !(pf[j].events & POLLIN));
        }
        if (rc < 0) break;
    }
    if (pf != local) dt_free(pf);
    return rc;
}

int dt__tcp_check_hangups(dt__tcp *t)
{
    int n = t->nlink, rc = 0;
    struct pollfd local[16], *pf = n <= 16 ? local : dt_alloc((size_t)n * sizeof *pf, DT_MEM_COMM);
    if (!pf) return dt__tcp_fail(t, DT_ENOMEM, 0, "tcp: no memory to poll %d connections", n);
    for (int j = 0; j < n; j++) {
        dt__tcp_peer *p = &t->peers[j];
        pf[j].fd = rank_of(t, j) == t->rank || p->fd < 0 || p->eof ? -1 : p->fd;
        pf[j].events = POLLRDHUP;
        pf[j].revents = 0;
    }
    if (poll(pf, (nfds_t)n, 0) > 0)
        for (int j = 0; j < n && rc == 0; j++)
            if (pf[j].revents & (POLLRDHUP | POLLHUP | POLLERR)) rc = do_recv(t, j, true);
    if (pf != local) dt_free(pf);
    return rc < 0 ? rc : dt__tcp_check(t);
}

void *dt__tcp_scratch(dt__tcp *t, size_t bytes)
{
    if (bytes <= t->tmp_bytes) return t->tmp;
    void *p = dt_alloc(bytes, DT_MEM_COMM);
    if (!p) {
        dt_set_error(DT_ENOMEM, "tcp: no memory for %zu bytes of scratch", bytes);
        return NULL;
    }
    dt_free(t->tmp);
    t->tmp = p;
    t->tmp_bytes = bytes;
    return p;
}
