/* Failures and point-to-point messages of a backend (shm unless --backend):
 * a rank SIGKILLed in the middle of all_reduces, all_gathers and
 * reduce_scatters (the others fail with
 * DT_EPEER naming it, well before their timeout, then refuse further calls
 * with DT_ESTATE), dt_pg_abort on one rank while the others wait
 * (DT_EABORTED), a rank that never comes (DT_ETIMEOUT naming it), different
 * counts (DT_EMISMATCH on both), and send/recv: a ring exchange of large
 * messages in one batch, tags, any-source receives, a message sent before a
 * collective and received after it, a message to self; a subgroup; abort
 * while an asynchronous op is in flight on the group's thread; eight ranks;
 * (tcp) a DTRAIN_SOCKET_IFNAME that does not exist, ranks with different
 * DTRAIN_TCP_CONNS; asynchronous receives
 * posted before the sends they depend on, on every rank. */
#include "spawn.h"

#include <pthread.h>

#define GROUP_TIMEOUT_MS 60000

static void *killer(void *arg)
{
    dt_sleep_ms(*(int *)arg);
    kill(getpid(), SIGKILL);
    return NULL;
}

/* The last rank kills itself after a while; everyone loops on all_reduces of
 * alternating sizes until that fails. */
static void kill_mid(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, GROUP_TIMEOUT_MS);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    int victim = n - 1;
    size_t count = 2u << 20, part = (1u << 20) / (size_t)n; /* all_gather / reduce_scatter: count elements in all */
    float *buf = calloc(count, sizeof(float)), *out = calloc(count, sizeof(float));
    DT_ASSERT(buf && out);
    DT_ASSERT_OK(dt_pg_allreduce(pg, buf, buf, count, DT_F32, DT_RED_SUM, NULL, NULL));
    int64_t t0 = dt_now_ns();
    int rc = 0;
    for (int i = 0; i < 100000 && rc == 0; i++) {
        switch (i % 4) { /* small, and large ones of the ops that read peers' memory (cma.c) */
        case 0: rc = dt_pg_allreduce(pg, buf, buf, 17, DT_F32, DT_RED_SUM, NULL, NULL); break;
        case 1: rc = dt_pg_allreduce(pg, buf, buf, count, DT_F32, DT_RED_SUM, NULL, NULL); break;
        case 2: rc = dt_pg_allgather(pg, buf, out, 2 * part, DT_F32, NULL, NULL); break;
        default: rc = dt_pg_reduce_scatter(pg, buf, out, 2 * part, DT_F32, DT_RED_SUM, NULL, NULL); break;
        }
        /* the victim's first loop all_reduce done: everyone is past the asserted one */
        if (rank == victim && i == 0) {
            static int ms = 300;
            pthread_t th;
            pthread_create(&th, NULL, killer, &ms);
        }
    }
    double s = (double)(dt_now_ns() - t0) * 1e-9;
    DT_ASSERT_MSG(rank != victim, "the victim survived");
    char want[32];
    snprintf(want, sizeof want, "rank %d (", victim);
    DT_ASSERT_MSG(rc == DT_EPEER, "rank %d got %s after %.1f s: %s", rank, dt_strerror(rc), s, dt_last_error());
    DT_ASSERT_MSG(strstr(dt_last_error(), want), "rank %d: the message does not name rank %d: %s", rank, victim,
                  dt_last_error());
    fprintf(stderr, "rank %d: failed after %.2f s as it should: %s\n", rank, s, dt_last_error());
    DT_ASSERT_ERR(dt_pg_allreduce(pg, buf, buf, 3, DT_F32, DT_RED_SUM, NULL, NULL), DT_ESTATE);
    free(buf);
    free(out);
    dt_destroy_process_group(pg);
}

static void t_kill3(void) { DT_ASSERT_EQ(spawn_ranks(3, kill_mid, NULL, 1u << 2), 0); }
static void t_kill4(void) { DT_ASSERT_EQ(spawn_ranks(4, kill_mid, NULL, 1u << 3), 0); }

static void abort_one(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, GROUP_TIMEOUT_MS);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    float x[64] = {0};
    DT_ASSERT_OK(dt_pg_allreduce(pg, x, x, 64, DT_F32, DT_RED_SUM, NULL, NULL));
    if (rank == 0) {
        dt_sleep_ms(300);
        dt_pg_abort(pg);
        DT_ASSERT_ERR(dt_pg_barrier(pg, NULL, NULL), DT_ESTATE);
    } else {
        int rc = dt_pg_allreduce(pg, x, x, 64, DT_F32, DT_RED_SUM, NULL, NULL);
        DT_ASSERT_MSG(rc == DT_EABORTED, "rank %d got %s: %s", rank, dt_strerror(rc), dt_last_error());
        DT_ASSERT_MSG(strstr(dt_last_error(), "rank 0 aborted"), "rank %d: %s", rank, dt_last_error());
    }
    dt_destroy_process_group(pg);
}

static void t_abort(void) { DT_ASSERT_EQ(spawn_ranks(3, abort_one, NULL, 0), 0); }

/* Rank 1's asynchronous all_reduce waits for rank 0 (which comes late) on
 * the group's thread when rank 1 aborts from its main thread. */
static void abort_inflight(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, GROUP_TIMEOUT_MS);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    float x[1000] = {0};
    if (rank == 1) {
        dt_work *w = NULL;
        DT_ASSERT_OK(dt_pg_allreduce(pg, x, x, 1000, DT_F32, DT_RED_SUM, NULL, &w));
        dt_sleep_ms(200);
        dt_pg_abort(pg);
        int rc = dt_work_wait(w, -1);
        DT_ASSERT_MSG(rc == DT_EABORTED || rc == DT_ESTATE, "rank 1: the work ended with %s: %s", dt_strerror(rc),
                      dt_last_error());
        dt_work_free(w);
    } else {
        dt_sleep_ms(5000);
        int rc = dt_pg_allreduce(pg, x, x, 1000, DT_F32, DT_RED_SUM, NULL, NULL);
        DT_ASSERT_MSG(rc == DT_EABORTED, "rank 0 got %s: %s", dt_strerror(rc), dt_last_error());
    }
    dt_destroy_process_group(pg);
}

static void t_abort_inflight(void) { DT_ASSERT_EQ(spawn_ranks(2, abort_inflight, NULL, 0), 0); }

/* A subgroup of the upper ranks, its own collectives, the world's after. */
static void subgroup(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, GROUP_TIMEOUT_MS);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    int ranks[3] = {1, 2, 3};
    dt_pg *sub = dt_new_group(pg, ranks, n - 1, NULL);
    DT_ASSERT_MSG(sub, "new_group: %s", dt_last_error());
    int64_t v = rank;
    if (dt_pg_is_member(sub)) {
        DT_ASSERT_OK(dt_pg_allreduce(sub, &v, &v, 1, DT_I64, DT_RED_SUM, NULL, NULL));
        DT_ASSERT_EQ(v, (int64_t)n * (n - 1) / 2);
        DT_ASSERT_OK(dt_pg_barrier(sub, NULL, NULL));
    }
    v = rank;
    DT_ASSERT_OK(dt_pg_allreduce(pg, &v, &v, 1, DT_I64, DT_RED_MAX, NULL, NULL));
    DT_ASSERT_EQ(v, n - 1);
    dt_destroy_process_group(sub);
    dt_destroy_process_group(pg);
}

/* Eight ranks: all_reduce (small and pipelined), broadcast (the split path),
 * all_gather, barrier, checked. */
static void wide(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, GROUP_TIMEOUT_MS);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    size_t big = 300001;
    int32_t *x = malloc(big * 4), *all = malloc((size_t)n * 1000 * 4);
    DT_ASSERT(x && all);
    for (size_t i = 0; i < big; i++) x[i] = rank + (int32_t)(i % 5);
    DT_ASSERT_OK(dt_pg_allreduce(pg, x, x, big, DT_I32, DT_RED_SUM, NULL, NULL));
    for (size_t i = 0; i < big; i++) DT_ASSERT_EQ(x[i], n * (n - 1) / 2 + n * (int32_t)(i % 5));
    DT_ASSERT_OK(dt_pg_allreduce(pg, x, x, 3, DT_I32, DT_RED_MAX, NULL, NULL));
    for (size_t i = 0; i < big; i++) x[i] = rank == 3 ? (int32_t)(i * 7) : -1;
    DT_ASSERT_OK(dt_pg_broadcast(pg, x, big, DT_I32, 3, NULL, NULL));
    for (size_t i = 0; i < big; i++) DT_ASSERT_EQ(x[i], (int32_t)(i * 7));
    for (int i = 0; i < 1000; i++) x[i] = rank * 1000 + i;
    DT_ASSERT_OK(dt_pg_allgather(pg, x, all, 1000, DT_I32, NULL, NULL));
    for (int i = 0; i < n * 1000; i++) DT_ASSERT_EQ(all[i], i);
    DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
    free(x);
    free(all);
    dt_destroy_process_group(pg);
}

static void t_world8(void) { DT_ASSERT_EQ(spawn_ranks(8, wide, NULL, 0), 0); }

/* tcp: an interface that does not exist fails the group's creation, naming it. */
static void bad_ifname(int rank, int n, void *arg)
{
    (void)arg;
    setenv("DTRAIN_SOCKET_IFNAME", "nosuch0", 1);
    dt_pg *pg = test_pg(rank, n, 20000);
    DT_ASSERT_MSG(!pg, "rank %d: a group on interface nosuch0", rank);
    DT_ASSERT_MSG(dt_last_error_code() == DT_EINVAL && strstr(dt_last_error(), "nosuch0"), "rank %d: %s", rank,
                  dt_last_error());
}

static void t_bad_ifname(void)
{
    if (strcmp(spawn_backend, "tcp") != 0) return;
    DT_ASSERT_EQ(spawn_ranks(2, bad_ifname, NULL, 0), 0);
}

/* tcp: ranks configured with different connection counts fail the group's
 * creation (naming the setting) rather than waiting for connections that
 * never come. */
static void conns_differ(int rank, int n, void *arg)
{
    (void)arg;
    setenv("DTRAIN_TCP_CONNS", rank == 0 ? "2" : "1", 1);
    dt_pg *pg = test_pg(rank, n, 20000);
    DT_ASSERT_MSG(!pg, "rank %d: a group with DTRAIN_TCP_CONNS 2 and 1", rank);
    DT_ASSERT_MSG(dt_last_error_code() != DT_ETIMEOUT, "rank %d: %s", rank, dt_last_error());
    DT_ASSERT_MSG(strstr(dt_last_error(), "DTRAIN_TCP_CONNS"), "rank %d: %s", rank, dt_last_error());
}

static void t_conns_differ(void)
{
    if (strcmp(spawn_backend, "tcp") != 0) return;
    DT_ASSERT_EQ(spawn_ranks(2, conns_differ, NULL, 0), 0);
}

static void t_subgroup(void) { DT_ASSERT_EQ(spawn_ranks(4, subgroup, NULL, 0), 0); }

static void absent(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, GROUP_TIMEOUT_MS);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    float x[5] = {0};
    if (rank == n - 1) {
        dt_sleep_ms(3000); /* then leaves without a word */
    } else {
        dt_op_opts o = DT_OP_OPTS_INIT;
        o.timeout_ms = 1000;
        int rc = dt_pg_allreduce(pg, x, x, 5, DT_F32, DT_RED_SUM, &o, NULL);
        DT_ASSERT_MSG(rc == DT_ETIMEOUT, "rank %d got %s: %s", rank, dt_strerror(rc), dt_last_error());
        /* the list may name more ranks on a slow machine, but never not the absent one */
        const char *list = strstr(dt_last_error(), "did not take part: ");
        bool named = false;
        for (const char *q = list ? list + 19 : ""; *q && !named; q++)
            named = atoi(q) == n - 1 && (q[-1] == ' ' || q[-1] == ',');
        DT_ASSERT_MSG(named, "rank %d: the message does not name rank %d: %s", rank, n - 1, dt_last_error());
    }
    dt_destroy_process_group(pg);
}

static void t_timeout(void) { DT_ASSERT_EQ(spawn_ranks(3, absent, NULL, 0), 0); }

static void mismatch(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, GROUP_TIMEOUT_MS);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    float x[11] = {0};
    int rc = dt_pg_allreduce(pg, x, x, rank == 0 ? 10 : 11, DT_F32, DT_RED_SUM, NULL, NULL);
    DT_ASSERT_MSG(rc == DT_EMISMATCH, "rank %d got %s: %s", rank, dt_strerror(rc), dt_last_error());
    dt_destroy_process_group(pg);
}

static void t_mismatch(void) { DT_ASSERT_EQ(spawn_ranks(2, mismatch, NULL, 0), 0); }

static void p2p(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, GROUP_TIMEOUT_MS);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    int next = (rank + 1) % n, prev = (rank + n - 1) % n;
    /* ring exchange of a large and a small message, one batch */
    size_t big = 3000017;
    int32_t *out = malloc(big * 4), *in = malloc(big * 4), small_out[3], small_in[3];
    DT_ASSERT(out && in);
    for (size_t i = 0; i < big; i++) out[i] = (int32_t)(rank * 1000003 + i);
    for (int i = 0; i < 3; i++) small_out[i] = rank * 10 + i;
    dt_p2p_op ops[4] = {
        {.kind = DT_P2P_SEND, .buf = out, .count = big, .dtype = DT_I32, .peer = next, .tag = 1},
        {.kind = DT_P2P_SEND, .buf = small_out, .count = 3, .dtype = DT_I32, .peer = next, .tag = 2},
        {.kind = DT_P2P_RECV, .buf = in, .count = big, .dtype = DT_I32, .peer = prev, .tag = 1},
        {.kind = DT_P2P_RECV, .buf = small_in, .count = 3, .dtype = DT_I32, .peer = prev, .tag = 2},
    };
    DT_ASSERT_OK(dt_pg_batch_p2p(pg, ops, 4, NULL, NULL));
    for (size_t i = 0; i < big; i++) DT_ASSERT_EQ(in[i], (int32_t)(prev * 1000003 + i));
    for (int i = 0; i < 3; i++) DT_ASSERT_EQ(small_in[i], prev * 10 + i);
    /* any source: everyone sends its rank to rank 0 */
    int32_t v = rank;
    if (rank == 0) {
        unsigned seen = 0;
        for (int q = 1; q < n; q++) {
            int32_t got = -1;
            int src = dt_pg_recv(pg, &got, 1, DT_I32, DT_ANY_SOURCE, 5, NULL, NULL);
            DT_ASSERT_MSG(src >= 1 && src < n && got == src, "any-source recv: source %d, value %d: %s", src, got,
                          src < 0 ? dt_last_error() : "");
            seen |= 1u << src;
        }
        DT_ASSERT_EQ(seen, ((1u << n) - 1) & ~1u);
    } else {
        DT_ASSERT_OK(dt_pg_send(pg, &v, 1, DT_I32, 0, 5, NULL, NULL));
    }
    /* a message sent before a collective, received after it */
    float x[4] = {1, 2, 3, 4};
    if (n > 1 && rank == 0) DT_ASSERT_OK(dt_pg_send(pg, &v, 1, DT_I32, 1, 9, NULL, NULL));
    DT_ASSERT_OK(dt_pg_allreduce(pg, x, x, 4, DT_F32, DT_RED_SUM, NULL, NULL));
    DT_ASSERT_EQ(x[3], 4.0f * n);
    if (n > 1 && rank == 1) {
        int32_t got = -1;
        DT_ASSERT_EQ(dt_pg_recv(pg, &got, 1, DT_I32, 0, 9, NULL, NULL), 0);
        DT_ASSERT_EQ(got, 0);
    }
    /* to self */
    int32_t self_in = -1;
    dt_p2p_op me[2] = {
        {.kind = DT_P2P_SEND, .buf = &v, .count = 1, .dtype = DT_I32, .peer = rank, .tag = 4},
        {.kind = DT_P2P_RECV, .buf = &self_in, .count = 1, .dtype = DT_I32, .peer = rank, .tag = 4},
    };
    DT_ASSERT_OK(dt_pg_batch_p2p(pg, me, 2, NULL, NULL));
    DT_ASSERT_EQ(self_in, rank);
    DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
    free(out);
    free(in);
    dt_destroy_process_group(pg);
}

static void t_p2p(void)
{
    for (int n = 1; n <= 4; n++) DT_ASSERT_EQ(spawn_ranks(n, p2p, NULL, 0), 0);
}

/* Every rank posts an asynchronous receive from its predecessor before the
 * asynchronous send to its successor that the predecessor's receive waits
 * for, then waits for both (torch: irecv, isend, wait, wait). The group's
 * thread gets the receive first and the send while the receive is in flight:
 * the backend must take the send in rather than finish the receive first. */
static void recv_first(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, GROUP_TIMEOUT_MS);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    int next = (rank + 1) % n, prev = (rank + n - 1) % n;
    dt_op_opts o = DT_OP_OPTS_INIT;
    o.timeout_ms = 10000;
    static const size_t counts[] = {1, 3001, 1000003};
    for (int k = 0; k < 3; k++) {
        size_t cnt = counts[k];
        int32_t *out = malloc(cnt * 4), *in = malloc(cnt * 4);
        DT_ASSERT(out && in);
        for (size_t i = 0; i < cnt; i++) out[i] = (int32_t)(rank * 7919 + i), in[i] = -1;
        dt_work *wr = NULL, *ws = NULL;
        DT_ASSERT_OK(dt_pg_recv(pg, in, cnt, DT_I32, prev, 3 + k, &o, &wr));
        dt_sleep_ms(20); /* let the group's thread start on the receive alone */
        DT_ASSERT_OK(dt_pg_send(pg, out, cnt, DT_I32, next, 3 + k, &o, &ws));
        int rr = dt_work_wait(wr, -1);
        DT_ASSERT_MSG(rr == 0, "rank %d: recv of %zu posted before its send: %s", rank, cnt, dt_last_error());
        DT_ASSERT_OK(dt_work_wait(ws, -1));
        for (size_t i = 0; i < cnt; i++) DT_ASSERT_EQ(in[i], (int32_t)(prev * 7919 + i));
        dt_work_free(wr);
        dt_work_free(ws);
        free(out);
        free(in);
    }
    DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
    dt_destroy_process_group(pg);
}

static void t_recv_first(void)
{
    for (int n = 2; n <= 3; n++) DT_ASSERT_EQ(spawn_ranks(n, recv_first, NULL, 0), 0);
}

int main(int argc, char **argv)
{
    spawn_args(argc, argv);
    DT_RUN(t_p2p);
    DT_RUN(t_recv_first);
    DT_RUN(t_mismatch);
    DT_RUN(t_timeout);
    DT_RUN(t_abort);
    DT_RUN(t_abort_inflight);
    DT_RUN(t_subgroup);
    DT_RUN(t_bad_ifname);
    DT_RUN(t_conns_differ);
    DT_RUN(t_world8);
    DT_RUN(t_kill3);
    DT_RUN(t_kill4);
    return DT_TEST_END();
}
