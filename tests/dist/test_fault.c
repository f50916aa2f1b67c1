/* Failures: a rank killed (SIGKILL) in the middle of an all_reduce of a large
 * buffer, a rank that never arrives (short group timeout), dt_pg_abort from
 * another thread and from another rank, and mismatched calls (op, dtype,
 * count, root) under DTRAIN_DEBUG=DETAIL and without it. Every surviving rank
 * must return an error naming the operation, its sequence number, the group
 * and the rank that failed or is missing, and the group must refuse later
 * calls. Nothing here measures time: the group timeouts bound the waits and
 * spawn.h's hang detector bounds the test. Store clients killed mid-request
 * are tested in tests/dist/store/test_store_tcp_multi.c. */
#include "spawn.h"
#include "dist/backend/shm/shm.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BIG (8u << 20) /* floats: 32 MiB, many staging chunks */

static void *xalloc(size_t n) { void *p = calloc(n ? n : 1, 1); DT_ASSERT(p); return p; }

/* The later-call contract of a failed group. */
static void expect_failed(dt_pg *pg, const char *needle)
{
    DT_ASSERT(dt_pg_error(pg) != 0);
    DT_ASSERT_CONTAINS(dt_last_error(), needle);
    float x = 1;
    DT_ASSERT_ERR(dt_pg_allreduce(pg, &x, &x, 1, DT_F32, DT_RED_SUM, NULL, NULL), DT_ESTATE);
    DT_ASSERT_CONTAINS(dt_last_error(), "failed earlier");
    DT_ASSERT_ERR(dt_pg_barrier(pg, NULL, NULL), DT_ESTATE);
    DT_ASSERT_ERR(dt_pg_send(pg, &x, 1, DT_F32, 0, 0, NULL, NULL), DT_ESTATE);
    dt_work *w = (dt_work *)1;
    DT_ASSERT_ERR(dt_pg_allreduce(pg, &x, &x, 1, DT_F32, DT_RED_SUM, NULL, &w), DT_ESTATE);
    DT_ASSERT(w == NULL);
}

/* The victim's death, at a known point of its all_reduce and nowhere else.
 * The staging algorithm (allreduce.c) takes a BIG buffer through the slots in
 * chunks of DT__SHM_SLOT bytes, in order; before its third all_reduce the
 * victim makes chunk TRAP_CHUNK of its buffer inaccessible, so the op faults
 * on its first touch of it (the copy-in of that chunk, after TRAP_CHUNK
 * chunks have gone through every rank) and the handler kills the process.
 * No thread and no clock decides the moment: the victim cannot die before it
 * has entered the op nor get past that chunk, and its peers cannot get past
 * it either (they wait for the victim's copy-in), so every survivor is inside
 * all_reduce #3 when the victim dies, however the ranks are scheduled. */
#define TRAP_CHUNK 3
#define CHUNK_FLOATS (DT__SHM_SLOT / sizeof(float))
_Static_assert((TRAP_CHUNK + 1) * CHUNK_FLOATS < BIG, "the trap lies inside the buffer, chunks before it");

static void die_on_fault(int sig)
{
    (void)sig;
    kill(getpid(), SIGKILL); /* async-signal-safe; SIGKILL, like a rank killed from outside */
}

static void arm_trap(float *buf)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = die_on_fault;
    sigemptyset(&sa.sa_mask);
    DT_ASSERT_OK(sigaction(SIGSEGV, &sa, NULL));
    DT_ASSERT_OK(sigaction(SIGBUS, &sa, NULL));
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)(buf + TRAP_CHUNK * CHUNK_FLOATS) + page - 1) & ~(page - 1);
    uintptr_t hi = (uintptr_t)(buf + (TRAP_CHUNK + 1) * CHUNK_FLOATS) & ~(page - 1);
    DT_ASSERT(hi > lo);
    DT_ASSERT_MSG(mprotect((void *)lo, hi - lo, PROT_NONE) == 0, "mprotect: %s", strerror(errno));
}

/* Whether the failure message's list of ranks that did not take part names r. */
static bool lists_rank(const char *e, int r)
{
    const char *q = strstr(e, "did not take part: ");
    if (!q) return false;
    q += strlen("did not take part: ");
    for (;;) {
        char *end;
        long v = strtol(q, &end, 10);
        if (end == q) return false;
        if (v == r) return true;
        if (strncmp(end, ", ", 2) != 0) return false;
        q = end + 2;
    }
}

/* The last rank dies inside its third all_reduce of BIG floats (the trap
 * above); the others get DT_EPEER naming it, or DT_ETIMEOUT listing it when
 * the box is too loaded to notice the death first (both list it). */
static void killed_mid_allreduce(int rank, int n, void *arg)
{
    int async = *(int *)arg;
    /* shm stages through the segment here: with cross-memory reads (cma.c) a peer
     * reading the victim's buffer meets the trapped page before the victim does
     * and fails the op with "could not read rank N's send buffer" (every rank,
     * the victim too, returns that error instead of the victim dying) */
    setenv("DTRAIN_SHM_CMA", "0", 1);
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    int victim = n - 1;
    float *buf = xalloc(BIG * sizeof(float));
    for (int k = 0; k < 2; k++) DT_ASSERT_OK(dt_pg_allreduce(pg, buf, buf, BIG, DT_F32, DT_RED_SUM, NULL, NULL));
    dt_pg_set_timeout(pg, 8000); /* short from here on (init and warm-up had a long one: a loaded box) */
    if (rank == victim) {
        arm_trap(buf);
        int rc = dt_pg_allreduce(pg, buf, buf, BIG, DT_F32, DT_RED_SUM, NULL, NULL);
        DT_ASSERT_MSG(0, "the victim's all_reduce #3 returned %d (%s) instead of faulting", rc, dt_last_error());
    }
    int rc;
    if (async) {
        dt_work *w = NULL;
        DT_ASSERT_OK(dt_pg_allreduce(pg, buf, buf, BIG, DT_F32, DT_RED_SUM, NULL, &w));
        rc = dt_work_wait(w, -1);
        DT_ASSERT(dt_work_is_completed(w));
        DT_ASSERT_EQ(dt_work_error(w), rc);
        dt_work_free(w);
    } else {
        rc = dt_pg_allreduce(pg, buf, buf, BIG, DT_F32, DT_RED_SUM, NULL, NULL);
    }
    const char *e = dt_last_error();
    if (rank == 0) fprintf(stderr, "  rank 0 saw: %s\n", e);
    DT_ASSERT_MSG(rc == DT_EPEER || rc == DT_ETIMEOUT, "rank %d: all_reduce returned %d: %s", rank, rc, e);
    DT_ASSERT_CONTAINS(e, "all_reduce #3");
    DT_ASSERT_CONTAINS(e, "group 'world'");
    if (rc == DT_EPEER) {
        char want[64];
        snprintf(want, sizeof want, "rank %d (pid ", victim);
        DT_ASSERT_CONTAINS(e, want);
        DT_ASSERT_CONTAINS(e, "exited");
    }
    /* in either case the list names the victim: nobody gets past the trap,
     * so every step a survivor waits for once the victim is dead is one it
     * never published (a rank merely late on a loaded box may be listed too) */
    DT_ASSERT_MSG(lists_rank(e, victim), "rank %d: the message does not list rank %d: %s", rank, victim, e);
    expect_failed(pg, "all_reduce #3");
    free(buf);
    dt_destroy_process_group(pg);
}

/* The last rank never calls the all_reduce (it sleeps past the others'
 * 1.5 s timeout, then leaves): the others time out naming it and the op. */
static void missing_rank(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    float *buf = xalloc(BIG * sizeof(float));
    DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
    dt_pg_set_timeout(pg, 1500);
    if (rank == n - 1) {
        /* stay alive (not calling) until rank 0 says it has given up */
        dt_store_set_timeout(dt_pg_store(pg), 60000);
        void *v = NULL;
        size_t len = 0;
        DT_ASSERT_OK(dt_store_get(dt_pg_store(pg), "test/gave_up", &v, &len));
        dt_free(v);
        free(buf);
        dt_destroy_process_group(pg);
        return;
    }
    int rc = dt_pg_allreduce(pg, buf, buf, BIG, DT_F32, DT_RED_SUM, NULL, NULL);
    const char *e = dt_last_error();
    DT_ASSERT_MSG(rc == DT_ETIMEOUT, "rank %d: all_reduce returned %d: %s", rank, rc, e);
    DT_ASSERT_CONTAINS(e, "all_reduce #2 on group 'world'");
    /* the list names the absent rank (a rank merely late on a loaded box may be listed too) */
    const char *list = strstr(e, "did not take part: ");
    DT_ASSERT_MSG(list, "no list of missing ranks in: %s", e);
    char want[16];
    snprintf(want, sizeof want, "%d", n - 1);
    DT_ASSERT_CONTAINS(list, want);
    expect_failed(pg, "timed out");
    if (rank == 0) DT_ASSERT_OK(dt_store_set(dt_pg_store(pg), "test/gave_up", "1", 1));
    free(buf);
    dt_destroy_process_group(pg);
}

typedef struct { dt_pg *pg; int delay_ms; } aborter_arg;

static void *aborter(void *arg)
{
    aborter_arg *a = arg;
    dt_sleep_ms(a->delay_ms);
    dt_pg_abort(a->pg);
    return NULL;
}

/* Rank 0 blocks in a recv nobody sends and has an async recv pending; a
 * thread aborts the group. The other ranks sit in an all_reduce rank 0 never
 * joins, with a long timeout: the abort reaches them through the segment. */
static void abort_unblocks(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
    float x[4] = {0};
    if (rank == 0) {
        dt_work *w = NULL;
        DT_ASSERT_OK(dt_pg_recv(pg, &x[1], 1, DT_F32, DT_ANY_SOURCE, 77, NULL, &w));
        aborter_arg a = {pg, 200};
        pthread_t t;
        pthread_create(&t, NULL, aborter, &a);
        int rc = dt_work_wait(w, -1);
        DT_ASSERT_MSG(rc == DT_EABORTED, "async recv after abort: %d %s", rc, dt_last_error());
        DT_ASSERT(dt_work_is_completed(w));
        dt_work_free(w);
        pthread_join(t, NULL);
        expect_failed(pg, "abort");
    } else {
        int rc = dt_pg_allreduce(pg, x, x, 4, DT_F32, DT_RED_SUM, NULL, NULL);
        DT_ASSERT_MSG(rc == DT_EABORTED, "rank %d: all_reduce after rank 0's abort: %d %s", rank, rc, dt_last_error());
        DT_ASSERT_CONTAINS(dt_last_error(), "rank 0 aborted");
        DT_ASSERT_CONTAINS(dt_last_error(), "all_reduce #2");
        expect_failed(pg, "abort");
    }
    dt_destroy_process_group(pg);
}

/* A synchronous all_reduce waiting on the calling thread, aborted by another thread of the same rank. */
static void abort_same_rank(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    float x = 1;
    if (rank == 1) {
        aborter_arg a = {pg, 200};
        pthread_t t;
        pthread_create(&t, NULL, aborter, &a);
        int rc = dt_pg_allreduce(pg, &x, &x, 1, DT_F32, DT_RED_SUM, NULL, NULL); /* rank 0 never joins */
        DT_ASSERT_MSG(rc == DT_EABORTED, "aborted all_reduce: %d %s", rc, dt_last_error());
        pthread_join(t, NULL);
        expect_failed(pg, "abort");
    } else {
        dt_work *w = NULL; /* rank 0 waits on a recv rank 1 never sends */
        DT_ASSERT_OK(dt_pg_recv(pg, &x, 1, DT_F32, 1, 3, NULL, &w));
        int rc = dt_work_wait(w, -1);
        DT_ASSERT_MSG(rc == DT_EABORTED, "peer's recv after abort: %d %s", rc, dt_last_error());
        DT_ASSERT_CONTAINS(dt_last_error(), "rank 1 aborted");
        dt_work_free(w);
        expect_failed(pg, "abort");
    }
    dt_destroy_process_group(pg);
}

/* Mismatched calls: rank 1 differs from the others in one way. */
enum { MM_COUNT, MM_DTYPE, MM_OP, MM_ROOT, MM_REDOP, MM_KINDS };
static const char *const MM_NAME[] = {"count", "dtype", "op", "root", "redop"};
typedef struct { int kind; bool detail; } mm_arg;

static void mismatch(int rank, int n, void *arg)
{
    mm_arg *m = arg;
    if (m->detail) setenv("DTRAIN_DEBUG", "DETAIL", 1);
    dt_pg *pg = test_pg(rank, n, 20000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    double buf[64] = {0};
    DT_ASSERT_OK(dt_pg_allreduce(pg, buf, buf, 8, DT_F32, DT_RED_SUM, NULL, NULL));
    bool odd = rank == 1;
    int rc;
    switch (m->kind) {
    case MM_COUNT: rc = dt_pg_allreduce(pg, buf, buf, odd ? 5 : 4, DT_F32, DT_RED_SUM, NULL, NULL); break;
    case MM_DTYPE: rc = dt_pg_allreduce(pg, buf, buf, 4, odd ? DT_F64 : DT_F32, DT_RED_SUM, NULL, NULL); break;
    case MM_OP:
        rc = odd ? dt_pg_broadcast(pg, buf, 4, DT_F32, 0, NULL, NULL)
                 : dt_pg_allreduce(pg, buf, buf, 4, DT_F32, DT_RED_SUM, NULL, NULL);
        break;
    case MM_ROOT: rc = dt_pg_broadcast(pg, buf, 4, DT_F32, odd ? 1 : 0, NULL, NULL); break;
    default: rc = dt_pg_allreduce(pg, buf, buf, 4, DT_F32, odd ? DT_RED_MAX : DT_RED_SUM, NULL, NULL); break;
    }
    const char *e = dt_last_error();
    DT_ASSERT_MSG(rc == DT_EMISMATCH, "rank %d, %s mismatch (detail %d): returned %d: %s", rank, MM_NAME[m->kind],
                  m->detail, rc, e);
    if (m->detail) DT_ASSERT_CONTAINS(e, "DTRAIN_DEBUG=DETAIL");
    /* whoever recorded it, the message says what rank 1 called and what a peer did */
    DT_ASSERT_CONTAINS(e, "rank 1 called");
    DT_ASSERT_CONTAINS(e, "#2");
    static const char *const fragment[][2] = {
        {"count 4", "count 5"}, {"(float32", "(float64"}, {"all_reduce #2", "broadcast #2"}, {"root 0", "root 1"}, {"sum", "max"}};
    static const char *const differs[] = {"(count differs)", "(dtype differs)", "(op differs)", "(root differs)",
                                          "(reduction differs)"};
    DT_ASSERT_CONTAINS(e, differs[m->kind]);
    DT_ASSERT_CONTAINS(e, fragment[m->kind][0]);
    DT_ASSERT_CONTAINS(e, fragment[m->kind][1]);
    expect_failed(pg, "called");
    dt_destroy_process_group(pg);
}

static void t_killed_sync2(void) { int a = 0; DT_ASSERT_EQ(spawn_ranks(2, killed_mid_allreduce, &a, 1u << 1), 0); }
static void t_killed_sync3(void) { int a = 0; DT_ASSERT_EQ(spawn_ranks(3, killed_mid_allreduce, &a, 1u << 2), 0); }
static void t_killed_async4(void) { int a = 1; DT_ASSERT_EQ(spawn_ranks(4, killed_mid_allreduce, &a, 1u << 3), 0); }
static void t_missing_rank(void) { DT_ASSERT_EQ(spawn_ranks(3, missing_rank, NULL, 0), 0); }
static void t_abort_other_ranks(void) { DT_ASSERT_EQ(spawn_ranks(3, abort_unblocks, NULL, 0), 0); }
static void t_abort_same_rank(void) { DT_ASSERT_EQ(spawn_ranks(2, abort_same_rank, NULL, 0), 0); }
static void t_mismatch(void)
{
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < MM_KINDS; k++) {
            mm_arg a = {k, d == 1};
            int n = 2 + (k % 2); /* 2 and 3 ranks */
            DT_ASSERT_MSG(spawn_ranks(n, mismatch, &a, 0) == 0, "%s mismatch, detail %d, %d ranks", MM_NAME[k], d, n);
        }
}

int main(void)
{
    DT_RUN(t_mismatch);
    DT_RUN(t_abort_same_rank);
    DT_RUN(t_abort_other_ranks);
    DT_RUN(t_missing_rank);
    DT_RUN(t_killed_sync2);
    DT_RUN(t_killed_sync3);
    DT_RUN(t_killed_async4);
    return DT_TEST_END();
}
