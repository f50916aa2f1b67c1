/* The process-group layer's insides (the .c files of src/dist): the group and work
 * structs, the executor (work.c) and the DETAIL check (check.c).
 *
 * Execution. A group runs its operations one at a time, in issue order. An
 * asynchronous op is queued for the group's communication thread (started at
 * the first one). A synchronous op runs on the calling thread when the queue
 * is empty and nothing runs, which keeps small-message latency free of
 * thread hand-offs; otherwise it queues too and waits. Collective sequence
 * numbers are taken when an op is issued, so they follow issue order.
 *
 * The gate. One atomic word says who may use the backend and numbers the
 * collectives: bit 0 (DT__GATE_INLINE) is held by a synchronous op running
 * on its caller's thread, bits 1-23 count the works queued or running on the
 * communication thread, bits 24-63 are the last collective sequence number
 * taken (it wraps after 2^40). A synchronous op runs inline only by one
 * compare-and-swap from "nothing inline, nothing queued" that also takes its
 * sequence number: no lock, no allocation. Queueing takes pg->mu and adds a
 * work and (collectives) a sequence number in one fetch-and-add, so queue
 * order is sequence order; the thread starts a work only while no op runs
 * inline (the inline op, ending, wakes it if works were queued meanwhile).
 *
 * Point to point. The communication thread runs a p2p work together with
 * every p2p work queued behind it, including those issued while it runs (the
 * submitter sets p2p_kick and wakes the backend): an isend and the irecv
 * issued after it progress at once, as torch's do, so a ring exchange of
 * large messages cannot deadlock. Works of the set complete one by one as
 * their messages do; a collective queued behind the set waits for all of it. */
#ifndef DTRAIN_DIST_INTERNAL_H
#define DTRAIN_DIST_INTERNAL_H

#include "dist/backend/backend.h"

#include <pthread.h>
#include <stdatomic.h>

#define DT__MSG_CAP 1024

struct dt_work {
    _Atomic int refs;               /* the caller's handle + the queue's */
    _Atomic bool done;
    pthread_mutex_t mu;             /* guards the wait on cv */
    pthread_cond_t cv;
    int rc;                         /* the op's result, once done */
    char msg[DT__MSG_CAP];          /* its error message */
    dt_pg *pg;
    bool is_p2p;
    int64_t timeout_ms;             /* the op's; its deadline starts when it runs */
    dt__coll c;
    dt__p2p *p2p;                   /* is_p2p: nops messages */
    int np2p;
    void *owned;                    /* one block holding the copied lists above */
    double t_run, t_done;           /* dt_now_s() when the comm thread started and finished it */
    dt_work *next;                  /* in the group's queue */
};

struct dt_pg {
    char name[64];
    char key[64];                   /* the group's store prefix: "g0", "g0.1", ... */
    const dt__backend_ops *ops;     /* NULL for a non-member */
    void *be;                       /* backend state */
    dt_store *store;                /* the group's prefixed store (owned) */
    dt_store *base;                 /* the job's store (owned reference) */
    bool member;
    int rank, size;                 /* in this group (-1 for a non-member) */
    int world_rank;                 /* this process in the default group */
    int *world_ranks;               /* [nranks]: group rank -> world rank */
    int nranks;
    int local_rank, local_size;
    int64_t timeout_ms;
    bool detail;                    /* DTRAIN_DEBUG=DETAIL */
    int children;                   /* subgroups made from this one (key numbering) */
    /* executor (work.c) */
    _Atomic uint64_t gate;          /* inline bit, works queued or running, last sequence number */
    pthread_mutex_t mu;             /* guards the queue, stop, the thread's start */
    pthread_cond_t cv;              /* the thread waits here for work or stop */
    dt_work *head, *tail;
    bool stop, thread_started;
    pthread_t thread;
    _Atomic int p2p_kick;           /* set when a p2p work is queued: the running p2p set absorbs it */
    /* failure: failed != 0 once an op failed fatally; fail_msg says why */
    _Atomic int failed;
    pthread_mutex_t fail_mu;
    char fail_msg[DT__MSG_CAP];
};

/* Serialises every store call the dist layer makes (stores are
 * single-threaded; several groups and threads of a process share one). */
extern pthread_mutex_t dt__store_mu;

/* work.c */
/* A work on the caller's stack for op kind k with call options o. */
void dt__work_init(dt_work *w, dt_pg *pg, const dt_op_opts *o);
/* Runs w (synchronously when out is NULL, else queued with *out the handle).
 * w's lists may point to the caller's stack: they are copied when queued. */
int dt__pg_submit(dt_pg *pg, dt_work *w, dt_work **out);
/* Take the next collective sequence number without running anything (every
 * rank must, in the same order). */
uint64_t dt__pg_take_seq(dt_pg *pg);
/* 0 when pg takes ops; DT_EINVAL, DT_ENOTMEMBER or DT_ESTATE with a message. */
int dt__pg_usable(const dt_pg *pg, const char *what);
/* Make msg (a stored dt_last_error() of code) this thread's error again, as it was. */
int dt__reraise(int code, const char *msg);
/* Mark pg failed (first failure wins). */
void dt__pg_set_failed(dt_pg *pg, int code, const char *msg);
/* Stop the thread after the queue drained. */
void dt__pg_stop(dt_pg *pg);
int dt__pg_exec_init(dt_pg *pg);

/* check.c: DTRAIN_DEBUG=DETAIL, every rank's fingerprint of c compared
 * through the store before it runs; DT_EMISMATCH naming who differs. */
int dt__detail_check(dt_pg *pg, const dt__coll *c);

/* init.c: this process's host identity (host name, boot id, pid namespace):
 * processes with equal ones share memory. */
void dt__host_id(char *buf, size_t cap);

/* pg.c: make a group's members' backend (or a non-member handle). */
dt_pg *dt__pg_new(const char *backend, dt_store *base, const char *key, const char *name, const int *world_ranks,
                  int nranks, int world_rank, int64_t timeout_ms, int local_rank, int local_size);

#endif /* DTRAIN_DIST_INTERNAL_H */
