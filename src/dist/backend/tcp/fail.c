/* The tcp backend's failure record (the scheme is in tcp.h): recording the
 * first failure, offering it to the group's store and adopting the one
 * already there, the ABORT frames that spread it, adopting a peer's. Does not
 * detect failures: the transfer engine (xfer.c) and the ops do. */
#define _GNU_SOURCE
#include "dist/backend/tcp/tcp.h"
#include "dist/dist_internal.h"
#include "dist/net.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static void missing_list(uint64_t missing, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < 64 && len + 8 < cap; i++)
        if (missing & (1ull << i)) len += (size_t)snprintf(buf + len, cap - len, "%s%d", len ? ", " : "", i);
}

int dt__tcp_check(dt__tcp *t)
{
    int code = atomic_load(&t->fail_code);
    if (!code) return 0;
    return dt_set_error(code, "%s", t->fail_msg);
}

/* The ABORT frame of the record, sent where the connection is at a frame
 * boundary; then every connection is shut for writing. */
void dt__tcp_tell_peers(dt__tcp *t)
{
    if (t->abort_sent) return;
    t->abort_sent = true;
    size_t mlen = strnlen(t->fail_msg, sizeof t->fail_msg);
    dt__tcp_frame f = {.magic = DT__TCP_FRAME_MAGIC, .type = DT__TCP_F_ABORT, .tag = atomic_load(&t->fail_code),
                       .step = (uint32_t)t->rank, .seq = t->seq, .len = mlen};
    int64_t deadline = dt_deadline_ns(200);
    for (int l = 0; l < t->nlink; l++) {
        dt__tcp_peer *p = &t->peers[l];
        if (p->fd < 0) continue;
        if (!p->sq || p->sq->done == 0) {
            char buf[sizeof f + DT__TCP_MSG_CAP];
            memcpy(buf, &f, sizeof f);
            memcpy(buf + sizeof f, t->fail_msg, mlen);
            if (dt__net_send_all(p->fd, buf, sizeof f + mlen, deadline, "tcp abort") < 0) dt_clear_error();
        }
        shutdown(p->fd, SHUT_WR);
    }
}

void dt__tcp_drop_queues(dt__tcp *t)
{
    for (int l = 0; t->peers && l < t->nlink; l++) {
        dt__tcp_peer *p = &t->peers[l];
        for (dt__tcp_msg *m = p->uq, *nx; m; m = nx) {
            nx = m->next;
            dt_free(m);
        }
        if (p->rmsg) dt_free(p->rmsg);
        p->uq = p->uq_tail = NULL;
        p->sq = p->sq_tail = p->rq = p->rq_tail = NULL;
        p->rx = NULL;
        p->rmsg = NULL;
    }
    t->any = NULL;
}

/* Record (first failure wins) without touching this thread's error. */
static bool record(dt__tcp *t, int code, const char *msg)
{
    int expect = 0;
    if (!atomic_compare_exchange_strong(&t->fail_code, &expect, code)) return false;
    size_t n = strnlen(msg, sizeof t->fail_msg - 1); /* cut to fit */
    memcpy(t->fail_msg, msg, n);
    t->fail_msg[n] = '\0';
    return true;
}

/* The stored record: code, rank, op sequence number, message. */
typedef struct {
    int32_t code;
    uint32_t rank;
    uint64_t seq;
    char msg[DT__TCP_MSG_CAP];
} stored_fail;

/* Offer our record to the store; adopt the one already there, if any. */
static void publish(dt__tcp *t)
{
    if (!t->store) return;
    stored_fail mine = {.code = atomic_load(&t->fail_code), .rank = (uint32_t)t->rank, .seq = t->seq};
    snprintf(mine.msg, sizeof mine.msg, "%s", t->fail_msg);
    size_t len = offsetof(stored_fail, msg) + strlen(mine.msg);
    void *cur = NULL;
    size_t cur_len = 0;
    pthread_mutex_lock(&dt__store_mu);
    int rc = dt_store_compare_set(t->store, "tcp/fail", NULL, 0, &mine, len, &cur, &cur_len);
    pthread_mutex_unlock(&dt__store_mu);
    if (rc < 0) {
        dt_clear_error();
        return;
    }
    stored_fail theirs = {0};
    if (cur && cur_len >= offsetof(stored_fail, msg) && cur_len <= sizeof theirs &&
        !(cur_len == len && memcmp(cur, &mine, len) == 0)) {
        memcpy(&theirs, cur, cur_len);
        int code = theirs.code < 0 && theirs.code >= -64 ? theirs.code : DT_EPEER;
        atomic_store(&t->fail_code, code);
        snprintf(t->fail_msg, sizeof t->fail_msg, "%.400s (recorded by rank %u in its op #%llu)", theirs.msg,
                 (unsigned)theirs.rank, (unsigned long long)theirs.seq);
    }
    dt_free(cur);
}

int dt__tcp_fail(dt__tcp *t, int code, uint64_t missing, const char *fmt, ...)
{
    if (!atomic_load(&t->fail_code)) {
        char msg[DT__TCP_MSG_CAP - 64], ranks[160], full[DT__TCP_MSG_CAP + 256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        missing_list(missing, ranks, sizeof ranks);
        snprintf(full, sizeof full, "%s%s%s", msg, ranks[0] ? "; ranks that did not take part: " : "", ranks);
        if (record(t, code, full)) {
            publish(t);
            dt__tcp_tell_peers(t);
            dt__tcp_drop_queues(t);
        }
    }
    return dt__tcp_check(t);
}

/* An ABORT frame from j: adopt its record and pass it on. */
int dt__tcp_adopt_abort(dt__tcp *t, int j, dt__tcp_msg *m)
{
    char text[DT__TCP_MSG_CAP], full[DT__TCP_MSG_CAP];
    size_t n = m->f.len < sizeof text - 1 ? m->f.len : sizeof text - 1;
    memcpy(text, m->data, n);
    text[n] = '\0';
    int code = m->f.tag;
    if (code >= 0 || code < -64) code = DT_EABORTED;
    if (strstr(text, "(recorded by rank")) snprintf(full, sizeof full, "%s", text); /* passed on as adopted */
    else if ((int)m->f.step == j) snprintf(full, sizeof full, "%.400s (recorded by rank %d in its op #%llu)", text, j,
                                       (unsigned long long)m->f.seq);
    else snprintf(full, sizeof full, "%.400s (recorded by rank %u, passed on by rank %d)", text, (unsigned)m->f.step, j);
    dt_free(m);
    if (record(t, code, full)) {
        dt__tcp_tell_peers(t);
        dt__tcp_drop_queues(t);
    }
    return dt__tcp_check(t);
}
