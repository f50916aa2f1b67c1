/* The executor of a process group and the dt_work handle: the queue, the
 * communication thread, the synchronous fast path, deadlines, error wrapping
 * and the group's failed state (see dist_internal.h for the scheme).
 * Does not know any algorithm: it hands ops to the backend's table. */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

pthread_mutex_t dt__store_mu = PTHREAD_MUTEX_INITIALIZER;

/* The gate word (dist_internal.h). */
#define DT__GATE_INLINE 1ull
#define DT__GATE_WORK 2ull                 /* one work queued or running */
#define DT__GATE_WORKS 0xfffffeull
#define DT__GATE_SEQ_SHIFT 24
#define DT__GATE_SEQ (1ull << DT__GATE_SEQ_SHIFT)

static uint64_t gate_seq(uint64_t g) { return g >> DT__GATE_SEQ_SHIFT; }

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

/* Not its lock, condition, refs or message buffer: only a queued copy
 * (clone_work) has those. */
void dt__work_init(dt_work *w, dt_pg *pg, const dt_op_opts *o)
{
    w->rc = 0;
    w->is_p2p = false;
    memset(&w->c, 0, sizeof w->c);
    w->p2p = NULL;
    w->np2p = 0;
    w->owned = NULL;
    w->next = NULL;
    w->pg = pg;
    w->timeout_ms = o && o->timeout_ms >= 0 ? o->timeout_ms : pg->timeout_ms;
    w->c.premul = o ? o->premul : 1.0;
}

int dt__pg_usable(const dt_pg *pg, const char *what)
{
    if (!pg) return dt_set_error(DT_EINVAL, "%s: NULL group", what);
    if (!pg->member)
        return dt_set_error(DT_ENOTMEMBER, "%s: world rank %d is not a member of group '%s'", what, pg->world_rank,
                            pg->name);
    if (atomic_load(&pg->failed))
        return dt_set_error(DT_ESTATE, "%s: group '%s' failed earlier: %s", what, pg->name, pg->fail_msg);
    return 0;
}

int dt__reraise(int code, const char *msg)
{
    char pre[128];
    snprintf(pre, sizeof pre, "%s: ", dt_strerror(code));
    const char *at = strstr(msg, pre);
    if (!at) return dt_set_error(code, "%s", msg);
    if (at == msg) return dt_set_error(code, "%s", msg + strlen(pre));
    /* "context: <strerror>: inner", as dt_error_wrap made it */
    dt_set_error(code, "%s", at + strlen(pre));
    int head = (int)(at - msg);
    if (head >= 2 && msg[head - 2] == ':' && msg[head - 1] == ' ') head -= 2;
    return dt_error_wrap(code, "%.*s", head, msg);
}

void dt__pg_set_failed(dt_pg *pg, int code, const char *msg)
{
    pthread_mutex_lock(&pg->fail_mu);
    if (!atomic_load(&pg->failed)) {
        snprintf(pg->fail_msg, sizeof pg->fail_msg, "%s", msg);
        atomic_store(&pg->failed, code);
    }
    pthread_mutex_unlock(&pg->fail_mu);
}

static const char *work_name(const dt_work *w) { return w->is_p2p ? "send/recv" : dt__op_name(w->c.kind); }

static int p2p_fail(dt_pg *pg, int rc, int nworks, int nmsgs)
{
    rc = dt_error_wrap(rc, "send/recv (%d work%s, %d message%s in flight) on group '%s' (%s, rank %d of %d)", nworks,
                       nworks == 1 ? "" : "s", nmsgs, nmsgs == 1 ? "" : "s", pg->name, pg->ops->name, pg->rank,
                       pg->size);
    if (rc != DT_EINVAL) dt__pg_set_failed(pg, rc, dt_last_error());
    return rc;
}

/* A synchronous p2p work on the calling thread: its messages only. */
static int execute_p2p(dt_pg *pg, dt_work *w)
{
    dt__p2p *stack[16], **v = w->np2p <= 16 ? stack : dt_alloc((size_t)w->np2p * sizeof *v, DT_MEM_COMM);
    if (!v) return dt_set_error(DT_ENOMEM, "send/recv: %d messages", w->np2p);
    for (int i = 0; i < w->np2p; i++) v[i] = &w->p2p[i];
    int64_t deadline = dt_deadline_ns(w->timeout_ms);
    int rc = 0, left = w->np2p;
    while (left && rc == 0) {
        rc = pg->ops->p2p(pg->be, v, w->np2p, deadline, NULL);
        left = 0;
        for (int i = 0; i < w->np2p; i++) left += !w->p2p[i].complete;
    }
    if (v != stack) dt_free(v);
    return rc < 0 ? p2p_fail(pg, rc, 1, w->np2p) : 0;
}

/* Run one op on this thread: the DETAIL check, the backend, the wrapping. */
static int execute(dt_pg *pg, dt_work *w)
{
    int rc = 0;
    if (atomic_load_explicit(&pg->failed, memory_order_acquire)) return dt__pg_usable(pg, work_name(w));
    if (w->is_p2p) return execute_p2p(pg, w);
    w->c.timeout_ms = w->timeout_ms;
    w->c.deadline_ns = pg->ops->lazy_deadline && !pg->detail ? DT__DEADLINE_LAZY : dt_deadline_ns(w->timeout_ms);
    if (pg->detail) rc = dt__detail_check(pg, &w->c);
    if (rc == 0) rc = pg->ops->coll[w->c.kind](pg->be, &w->c);
    if (rc == 0) return 0;
    rc = dt_error_wrap(rc, "%s #%llu on group '%s' (%s, rank %d of %d)", dt__op_name(w->c.kind),
                       (unsigned long long)w->c.seq, pg->name, pg->ops->name, pg->rank, pg->size);
    if (rc != DT_EINVAL) dt__pg_set_failed(pg, rc, dt_last_error());
    return rc;
}

static void work_release(dt_work *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1) return;
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    dt_free(w->owned);
    dt_free(w);
}

static void complete(dt_work *w, int rc)
{
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    if (rc) snprintf(w->msg, sizeof w->msg, "%s", dt_last_error());
    atomic_store(&w->done, true);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* The communication thread's p2p set (see dist_internal.h): first, then every
 * p2p work that reaches the head of the queue while the set runs. Called and
 * returns with pg->mu held. */
static void run_p2p_set(dt_pg *pg, dt_work *first)
{
    dt_work **set = NULL;
    dt__p2p **msgs = NULL;
    int nset = 0, capset = 0, capmsg = 0, rc = 0;
    int64_t deadline = INT64_MAX;
    dt_work *add = first;
    for (;;) {
        /* absorb: first, then the p2p works now at the head of the queue */
        atomic_store(&pg->p2p_kick, 0);
        while (add || (pg->head && pg->head->is_p2p)) {
            dt_work *w = add;
            if (!w) {
                w = pg->head;
                pg->head = w->next;
                if (!pg->head) pg->tail = NULL;
            }
            add = NULL;
            if (nset == capset) {
                capset = capset ? 2 * capset : 8;
                dt_work **ns = dt_realloc(set, (size_t)capset * sizeof *ns, DT_MEM_COMM);
                if (!ns) {
                    pthread_mutex_unlock(&pg->mu);
                    dt_set_error(DT_ENOMEM, "send/recv: %d works in flight", nset + 1);
                    atomic_fetch_sub(&pg->gate, DT__GATE_WORK);
                    complete(w, DT_ENOMEM);
                    work_release(w);
                    pthread_mutex_lock(&pg->mu);
                    continue;
                }
                set = ns;
            }
            set[nset++] = w;
            w->c.deadline_ns = dt_deadline_ns(w->timeout_ms); /* a p2p work's clock starts when it joins */
            if (w->c.deadline_ns < deadline) deadline = w->c.deadline_ns;
        }
        pthread_mutex_unlock(&pg->mu);
        int nmsg = 0;
        for (int k = 0; k < nset; k++) nmsg += set[k]->np2p;
        if (nmsg > capmsg) {
            dt__p2p **nm = dt_realloc(msgs, (size_t)nmsg * sizeof *nm, DT_MEM_COMM);
            if (nm) msgs = nm, capmsg = nmsg;
            else rc = dt_set_error(DT_ENOMEM, "send/recv: %d messages in flight", nmsg);
        }
        if (rc == 0) rc = dt__pg_usable(pg, "send/recv");
        if (rc == 0 && nset) {
            int m = 0;
            for (int k = 0; k < nset; k++)
                for (int i = 0; i < set[k]->np2p; i++) msgs[m++] = &set[k]->p2p[i];
            rc = pg->ops->p2p(pg->be, msgs, m, deadline, &pg->p2p_kick);
            if (rc < 0) rc = p2p_fail(pg, rc, nset, m);
        }
        /* complete what is done (everything on failure), keep the rest in order */
        int keep = 0;
        deadline = INT64_MAX;
        for (int k = 0; k < nset; k++) {
            dt_work *w = set[k];
            bool done = rc < 0;
            if (!done) {
                done = true;
                for (int i = 0; i < w->np2p; i++) done &= w->p2p[i].complete;
            }
            if (done) {
                atomic_fetch_sub(&pg->gate, DT__GATE_WORK);
                complete(w, rc < 0 ? rc : 0);
                work_release(w);
            } else {
                set[keep++] = w;
                if (w->c.deadline_ns < deadline) deadline = w->c.deadline_ns;
            }
        }
        nset = keep;
        pthread_mutex_lock(&pg->mu);
        if (!nset && !(pg->head && pg->head->is_p2p)) break;
    }
    dt_free(set);
    dt_free(msgs);
}

static void *comm_main(void *arg)
{
    dt_pg *pg = arg;
    pthread_mutex_lock(&pg->mu);
    for (;;) {
        /* stop waits for the queue; a queued work waits for an inline op to end */
        while (!pg->head && !pg->stop) pthread_cond_wait(&pg->cv, &pg->mu);
        if (!pg->head) break;
        if (atomic_load(&pg->gate) & DT__GATE_INLINE) {
            pthread_cond_wait(&pg->cv, &pg->mu);
            continue;
        }
        dt_work *w = pg->head;
        pg->head = w->next;
        if (!pg->head) pg->tail = NULL;
        if (w->is_p2p) {
            run_p2p_set(pg, w);
        } else {
            pthread_mutex_unlock(&pg->mu);
            w->t_run = dt_now_s();
            int rc = execute(pg, w);
            w->t_done = dt_now_s();
            atomic_fetch_sub(&pg->gate, DT__GATE_WORK); /* the backend is free: before the waiter wakes */
            complete(w, rc);
            work_release(w);
            pthread_mutex_lock(&pg->mu);
        }
    }
    pthread_mutex_unlock(&pg->mu);
    return NULL;
}

int dt__pg_exec_init(dt_pg *pg)
{
    pthread_mutex_init(&pg->mu, NULL);
    pthread_mutex_init(&pg->fail_mu, NULL);
    cond_init_mono(&pg->cv);
    return 0;
}

void dt__pg_stop(dt_pg *pg)
{
    pthread_mutex_lock(&pg->mu);
    pg->stop = true;
    pthread_cond_broadcast(&pg->cv);
    bool started = pg->thread_started;
    pthread_mutex_unlock(&pg->mu);
    if (started) pthread_join(pg->thread, NULL);
    pthread_mutex_destroy(&pg->mu);
    pthread_mutex_destroy(&pg->fail_mu);
    pthread_cond_destroy(&pg->cv);
}

/* A heap copy of the stack work w with its lists, for the queue. */
static dt_work *clone_work(const dt_work *w, int n)
{
    size_t lists = 0;
    if (w->c.sendv) lists += (size_t)n * sizeof(void *);
    if (w->c.recvv) lists += (size_t)n * sizeof(void *);
    if (w->c.send_counts) lists += (size_t)n * sizeof(size_t);
    if (w->c.recv_counts) lists += (size_t)n * sizeof(size_t);
    lists += (size_t)w->np2p * sizeof(dt__p2p);
    dt_work *q = dt_alloc(sizeof *q, DT_MEM_COMM);
    if (!q) return NULL;
    *q = *w;
    q->owned = NULL;
    if (lists) {
        char *b = dt_alloc(lists, DT_MEM_COMM);
        if (!b) {
            dt_free(q);
            return NULL;
        }
        q->owned = b;
#define DT__COPY_LIST(field, T, cnt)                                          \
        if (w->field) {                                                       \
            memcpy(b, w->field, (size_t)(cnt) * sizeof(T));                   \
            q->field = (void *)b;                                             \
            b += (size_t)(cnt) * sizeof(T);                                   \
        }
        DT__COPY_LIST(c.sendv, void *, n)
        DT__COPY_LIST(c.recvv, void *, n)
        DT__COPY_LIST(c.send_counts, size_t, n)
        DT__COPY_LIST(c.recv_counts, size_t, n)
        DT__COPY_LIST(p2p, dt__p2p, w->np2p)
#undef DT__COPY_LIST
    }
    atomic_store(&q->refs, 2);
    atomic_store(&q->done, false);
    pthread_mutex_init(&q->mu, NULL);
    cond_init_mono(&q->cv);
    return q;
}

uint64_t dt__pg_take_seq(dt_pg *pg) { return gate_seq(atomic_fetch_add(&pg->gate, DT__GATE_SEQ) + DT__GATE_SEQ); }

/* Whether this thread may run an op inline now (the gate was idle); takes
 * the inline bit and, for a collective, the sequence number into *seq. */
static bool inline_begin(dt_pg *pg, bool coll, uint64_t *seq)
{
    uint64_t g = atomic_load_explicit(&pg->gate, memory_order_relaxed);
    for (;;) {
        if (g & (DT__GATE_INLINE | DT__GATE_WORKS)) return false;
        uint64_t ng = g + DT__GATE_INLINE + (coll ? DT__GATE_SEQ : 0);
        if (atomic_compare_exchange_weak_explicit(&pg->gate, &g, ng, memory_order_acq_rel, memory_order_relaxed)) {
            *seq = gate_seq(ng);
            return true;
        }
    }
}

static void inline_end(dt_pg *pg)
{
    if (!(atomic_fetch_sub_explicit(&pg->gate, DT__GATE_INLINE, memory_order_acq_rel) & DT__GATE_WORKS)) return;
    pthread_mutex_lock(&pg->mu); /* works were queued meanwhile: the thread waits for us */
    pthread_cond_broadcast(&pg->cv);
    pthread_mutex_unlock(&pg->mu);
}

int dt__pg_submit(dt_pg *pg, dt_work *w, dt_work **out)
{
    if (out) *out = NULL;
    uint64_t seq;
    if (!out && inline_begin(pg, !w->is_p2p, &seq)) {
        if (!w->is_p2p) w->c.seq = seq;
        int rc = execute(pg, w);
        inline_end(pg);
        return rc;
    }
    dt_work *q = clone_work(w, pg->size);
    if (!q) return dt_error_wrap(DT_ENOMEM, "queueing %s on group '%s'", work_name(w), pg->name);
    pthread_mutex_lock(&pg->mu);
    if (!pg->thread_started) {
        if (pthread_create(&pg->thread, NULL, comm_main, pg) != 0) {
            pthread_mutex_unlock(&pg->mu);
            atomic_store(&q->refs, 1);
            work_release(q);
            return dt_set_error(DT_ESYS, "starting the communication thread of group '%s'", pg->name);
        }
        pg->thread_started = true;
    }
    uint64_t g = atomic_fetch_add(&pg->gate, DT__GATE_WORK + (w->is_p2p ? 0 : DT__GATE_SEQ));
    if (!w->is_p2p) q->c.seq = gate_seq(g + DT__GATE_SEQ);
    if (pg->tail) pg->tail->next = q;
    else pg->head = q;
    pg->tail = q;
    pthread_cond_broadcast(&pg->cv);
    pthread_mutex_unlock(&pg->mu);
    if (q->is_p2p) {
        atomic_store(&pg->p2p_kick, 1);
        if (pg->ops->p2p_kick) pg->ops->p2p_kick(pg->be);
    }
    if (out) {
        *out = q;
        return 0;
    }
    int rc = dt_work_wait(q, -1);
    if (w->is_p2p)
        for (int i = 0; i < w->np2p; i++) w->p2p[i].source = q->p2p[i].source;
    work_release(q);
    return rc;
}

int dt_work_wait(dt_work *w, int64_t timeout_ms)
{
    if (!w) return dt_set_error(DT_EINVAL, "dt_work_wait: NULL work");
    if (!atomic_load(&w->done)) {
        int64_t dl = dt_deadline_ns(timeout_ms);
        struct timespec ts = {.tv_sec = dl / 1000000000LL, .tv_nsec = dl % 1000000000LL};
        pthread_mutex_lock(&w->mu);
        while (!atomic_load(&w->done)) {
            if (timeout_ms < 0) pthread_cond_wait(&w->cv, &w->mu);
            else if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) != 0 && dt_now_ns() >= dl) break;
        }
        pthread_mutex_unlock(&w->mu);
        if (!atomic_load(&w->done))
            return w->is_p2p ? dt_set_error(DT_ETIMEOUT, "dt_work_wait: send/recv not complete after %lld ms (it goes on)",
                                            (long long)timeout_ms)
                             : dt_set_error(DT_ETIMEOUT, "dt_work_wait: %s #%llu not complete after %lld ms (it goes on)",
                                            work_name(w), (unsigned long long)w->c.seq, (long long)timeout_ms);
    }
    if (w->rc) return dt__reraise(w->rc, w->msg);
    return 0;
}

bool dt_work_is_completed(dt_work *w) { return w && atomic_load(&w->done); }

int dt_work_error(dt_work *w) { return w && atomic_load(&w->done) ? w->rc : 0; }

int dt_work_times(dt_work *w, double *start_s, double *end_s)
{
    if (!w) return dt_set_error(DT_EINVAL, "dt_work_times: NULL work");
    if (!atomic_load_explicit(&w->done, memory_order_acquire))
        return dt_set_error(DT_ESTATE, "dt_work_times: %s has not completed", work_name(w));
    if (start_s) *start_s = w->t_run;
    if (end_s) *end_s = w->t_done;
    return 0;
}

int dt_work_source(dt_work *w)
{
    if (!w || !atomic_load(&w->done) || !w->is_p2p || w->np2p < 1) return -1;
    return w->p2p[0].source;
}

void dt_work_free(dt_work *w)
{
    if (w) work_release(w);
}
