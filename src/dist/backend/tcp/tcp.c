/* The tcp backend: ranks on any hosts talk over a full mesh of TCP
 * connections (conn.c), moving frames with one poll() loop (xfer.c). This
 * file has its ops table, create/destroy/abort, and the wrapper every op runs
 * in: the op's mutex, its name for messages, the failure record checked on
 * entry, and an abort() that arrived while the op ran passed on at its end.
 * No shared buffers (alloc is NULL): dt_pg_alloc fails on this backend. */
#define _GNU_SOURCE
#include "dist/backend/tcp/tcp.h"
#include "dist/net.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void tcp_destroy(void *state)
{
    dt__tcp *t = state;
    if (!t) return;
    dt__tcp_drop_queues(t);
    dt__tcp_p2p_drop(t);
    for (int l = 0; t->peers && l < t->nlink; l++) dt__net_close(t->peers[l].fd);
    dt_free(t->peers);
    dt_free(t->tmp);
    dt__net_close(t->wake[0]);
    dt__net_close(t->wake[1]);
    pthread_mutex_destroy(&t->mu);
    dt_free(t);
}

static int tcp_create(const dt__backend_init *init, void **state)
{
    dt__tcp *t = dt_calloc(1, sizeof *t, DT_MEM_COMM);
    if (!t) return DT_ENOMEM;
    t->rank = init->rank;
    t->size = init->size;
    t->wake[0] = t->wake[1] = -1;
    snprintf(t->group, sizeof t->group, "%s", init->group_name);
    t->op = "init";
    t->store = init->store;
    /* as shm: spinning pays while every rank has a core, else it steals the peer's */
    t->spin_ns = init->size <= dt_num_cpus() ? 30000 : 0;
    t->seg = DT__TCP_SEG;
    t->depth = DT__TCP_DEPTH;
    t->spin_cur = t->spin_ns;
    pthread_mutex_init(&t->mu, NULL);
    int rc = 0;
    int64_t conns = 0;
    DT_CHECK_GOTO(dt_param_int(DT_PARAM_TCP_CONNS, &conns), rc, fail);
    if (conns == 0) { /* 8 lanes measured best on loopback (docs/tcp.md); at most 32 connections per rank */
        conns = t->size > 1 ? 32 / (t->size - 1) : 1;
        conns = conns < 1 ? 1 : conns > 8 ? 8 : conns;
    }
    t->nconn = (int)conns;
    t->nlink = t->size * t->nconn;
    t->peers = dt_calloc((size_t)t->nlink, sizeof *t->peers, DT_MEM_COMM);
    if (!t->peers) {
        rc = DT_ENOMEM;
        goto fail;
    }
    for (int l = 0; l < t->nlink; l++) t->peers[l].fd = -1;
    if (pipe2(t->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = dt_set_error_errno(DT_ESYS, errno, "tcp: pipe");
        goto fail;
    }
    DT_CHECK_GOTO(dt__tcp_connect_mesh(t, init), rc, fail);
    *state = t;
    return 0;
fail:
    tcp_destroy(t);
    return rc;
}

static void tcp_abort(void *state)
{
    dt__tcp *t = state;
    atomic_store(&t->abort_req, 1);
    if (write(t->wake[1], "a", 1) < 0) {}
    if (pthread_mutex_trylock(&t->mu) != 0) return; /* the op running passes it on */
    char msg[128];
    snprintf(msg, sizeof msg, "rank %d aborted group '%s'", t->rank, t->group);
    int expect = 0;
    if (atomic_compare_exchange_strong(&t->fail_code, &expect, DT_EABORTED))
        snprintf(t->fail_msg, sizeof t->fail_msg, "%s", msg);
    dt__tcp_tell_peers(t);
    pthread_mutex_unlock(&t->mu);
}

/* An abort() that found an op running: make sure the peers hear of it. */
static void after_op(dt__tcp *t)
{
    if (!atomic_load(&t->abort_req)) return;
    pthread_mutex_lock(&t->mu);
    if (!t->abort_sent) {
        int expect = 0;
        if (atomic_compare_exchange_strong(&t->fail_code, &expect, DT_EABORTED))
            snprintf(t->fail_msg, sizeof t->fail_msg, "rank %d aborted group '%s'", t->rank, t->group);
        dt__tcp_tell_peers(t);
    }
    pthread_mutex_unlock(&t->mu);
}

static int enter(dt__tcp *t, const char *op, uint64_t seq)
{
    pthread_mutex_lock(&t->mu);
    t->op = op;
    t->seq = seq;
    int rc = dt__tcp_check(t);
    if (rc == 0 && atomic_load(&t->abort_req))
        rc = dt__tcp_fail(t, DT_EABORTED, 0, "rank %d aborted group '%s'", t->rank, t->group);
    if (rc == 0) rc = dt__tcp_check_hangups(t);
    return rc;
}

static int leave(dt__tcp *t, int rc)
{
    pthread_mutex_unlock(&t->mu);
    after_op(t);
    return rc;
}

#define DT__TCP_COLL(name, fn)                                                  \
    static int name(void *state, const dt__coll *c)                            \
    {                                                                          \
        dt__tcp *t = state;                                                    \
        int rc = enter(t, dt__op_name(c->kind), c->seq);                       \
        if (rc == 0) rc = fn(t, c);                                            \
        return leave(t, rc);                                                   \
    }
DT__TCP_COLL(op_allreduce, dt__tcp_allreduce)
DT__TCP_COLL(op_reduce_scatter, dt__tcp_reduce_scatter)
DT__TCP_COLL(op_broadcast, dt__tcp_broadcast)
DT__TCP_COLL(op_allgather, dt__tcp_allgather)
DT__TCP_COLL(op_scatter, dt__tcp_scatter)
DT__TCP_COLL(op_alltoall, dt__tcp_alltoall)
DT__TCP_COLL(op_barrier, dt__tcp_barrier)

/* The group layer's messages: see p2p.c. */
static int op_p2p(void *state, dt__p2p *const *ops, int nops, int64_t deadline_ns, _Atomic int *kick)
{
    dt__tcp *t = state;
    int rc = enter(t, "send/recv", t->seq);
    if (rc == 0) rc = dt__tcp_p2p(t, ops, nops, deadline_ns, kick);
    else dt__tcp_p2p_drop(t);
    return leave(t, rc);
}

/* Wake the poll loop of a p2p() in flight so it sees its kick (any thread). */
static void op_p2p_kick(void *state)
{
    dt__tcp *t = state;
    if (write(t->wake[1], "k", 1) < 0) {}
}

const dt__backend_ops dt__backend_tcp = {
    .name = "tcp",
    .create = tcp_create,
    .destroy = tcp_destroy,
    .abort = tcp_abort,
    .coll = {
        [DT__OP_ALLREDUCE] = op_allreduce,
        [DT__OP_BROADCAST] = op_broadcast,
        [DT__OP_REDUCE] = op_allreduce,
        [DT__OP_ALLGATHER] = op_allgather,
        [DT__OP_GATHER] = op_allgather,
        [DT__OP_SCATTER] = op_scatter,
        [DT__OP_REDUCE_SCATTER] = op_reduce_scatter,
        [DT__OP_ALLTOALL] = op_alltoall,
        [DT__OP_BARRIER] = op_barrier,
    },
    .p2p = op_p2p,
    .p2p_kick = op_p2p_kick,
    .alloc = NULL,
    .free = NULL,
};
