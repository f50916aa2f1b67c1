/* The executor of a process group and the dt_work handle: the queue, the
 * communication thread, the synchronous fast path, deadlines, error wrapping
 * and the group's failed state (see dist_internal.h for the scheme).
 * Does not know any algorithm: it hands ops to the backend's table. */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

pthread_mutex_t dt__store_mu = PTHREAD_MUTEX_INITIALIZER;

static void cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

void dt__work_init(dt_work *w, dt_pg *pg, const dt_op_opts *o)
{
    memset(w, 0, offsetof(dt_work, c));
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

/* Run one op on this thread: the DETAIL check, the backend, the wrapping. */
static int execute(dt_pg *pg, dt_work *w)
{
    int rc = dt__pg_usable(pg, work_name(w));
    if (rc < 0) return rc;
    int64_t deadline = dt_deadline_ns(w->timeout_ms);
    if (w->is_p2p) {
        rc = pg->ops->p2p(pg->be, w->p2p, w->np2p, deadline);
    } else {
        w->c.deadline_ns = deadline;
        if (pg->detail) rc = dt__detail_check(pg, &w->c);
        if (rc == 0) rc = pg->ops->coll[w->c.kind](pg->be, &w->c);
    }
    if (rc == 0) return 0;
    if (w->is_p2p)
        rc = dt_error_wrap(rc, "send/recv on group '%s' (%s, rank %d of %d)", pg->name, pg->ops->name, pg->rank,
                           pg->size);
    else
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

static void *comm_main(void *arg)
{
    dt_pg *pg = arg;
    pthread_mutex_lock(&pg->mu);
    for (;;) {
        while (!(pg->head && !pg->busy) && !pg->stop) pthread_cond_wait(&pg->cv, &pg->mu);
        if (!(pg->head && !pg->busy)) break; /* stop, and nothing left */
        dt_work *w = pg->head;
        pg->head = w->next;
        if (!pg->head) pg->tail = NULL;
        pg->busy = true;
        pthread_mutex_unlock(&pg->mu);
        int rc = execute(pg, w);
        complete(w, rc);
        work_release(w);
        pthread_mutex_lock(&pg->mu);
        pg->busy = false;
        pthread_cond_broadcast(&pg->cv);
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

int dt__pg_submit(dt_pg *pg, dt_work *w, dt_work **out)
{
    if (out) *out = NULL;
    pthread_mutex_lock(&pg->mu);
    if (!w->is_p2p) w->c.seq = ++pg->seq;
    if (!out && !pg->head && !pg->busy) {
        pg->busy = true;
        pthread_mutex_unlock(&pg->mu);
        int rc = execute(pg, w);
        pthread_mutex_lock(&pg->mu);
        pg->busy = false;
        if (pg->head) pthread_cond_broadcast(&pg->cv);
        pthread_mutex_unlock(&pg->mu);
        return rc;
    }
    dt_work *q = clone_work(w, pg->size);
    if (!q) {
        if (!w->is_p2p) pg->seq--;
        pthread_mutex_unlock(&pg->mu);
        return dt_error_wrap(DT_ENOMEM, "queueing %s on group '%s'", work_name(w), pg->name);
    }
    if (!pg->thread_started) {
        if (pthread_create(&pg->thread, NULL, comm_main, pg) != 0) {
            if (!w->is_p2p) pg->seq--;
            pthread_mutex_unlock(&pg->mu);
            atomic_store(&q->refs, 1);
            work_release(q);
            return dt_set_error(DT_ESYS, "starting the communication thread of group '%s'", pg->name);
        }
        pg->thread_started = true;
    }
    if (pg->tail) pg->tail->next = q;
    else pg->head = q;
    pg->tail = q;
    pthread_cond_broadcast(&pg->cv);
    pthread_mutex_unlock(&pg->mu);
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
            return dt_set_error(DT_ETIMEOUT, "dt_work_wait: %s (collective #%llu) not complete after %lld ms (it goes on)",
                                work_name(w), (unsigned long long)w->c.seq, (long long)timeout_ms);
    }
    if (w->rc) return dt_set_error(w->rc, "%s", w->msg);
    return 0;
}

bool dt_work_is_completed(dt_work *w) { return w && atomic_load(&w->done); }

int dt_work_error(dt_work *w) { return w && atomic_load(&w->done) ? w->rc : 0; }

int dt_work_source(dt_work *w)
{
    if (!w || !atomic_load(&w->done) || !w->is_p2p || w->np2p < 1) return -1;
    return w->p2p[0].source;
}

void dt_work_free(dt_work *w)
{
    if (w) work_release(w);
}
