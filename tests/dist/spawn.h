/* spawn.h: the multi-rank test harness. The parent hosts a TCP store server
 * (port picked by the kernel) and forks one child per rank; a child joins a
 * process group through that store (test_pg) and runs the test's body, in
 * which DT_ASSERT failures end the child with status 1. The parent reaps every
 * child, with a hang detector: a child still running after HANG_S seconds is
 * killed and counts as a failure. Children may be expected to die (fault
 * tests): pass their ranks in `dies`; they must end by SIGKILL (a victim
 * ended by the hang alarm's SIGALRM hung, it did not die as planned). The backend is shm unless the test's
 * command line says `--backend NAME` (spawn_args) or DT_TEST_BACKEND does. */
#ifndef TESTS_DIST_SPAWN_H
#define TESTS_DIST_SPAWN_H

#include "dt_test.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define HANG_S 100

typedef void (*rank_fn)(int rank, int n, void *arg);

static int spawn_port;
static const char *spawn_backend = "shm";

/* --backend NAME from main's arguments, else $DT_TEST_BACKEND, else shm. */
__attribute__((unused)) static void spawn_args(int argc, char **argv)
{
    const char *e = getenv("DT_TEST_BACKEND");
    if (e && *e) spawn_backend = e;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--backend") == 0) spawn_backend = argv[i + 1];
    fprintf(stderr, "backend: %s\n", spawn_backend);
}

/* In a child: join an n-rank group of spawn_backend through the parent's store. */
static dt_pg *test_pg(int rank, int n, int64_t timeout_ms)
{
    dt_store_opts so = DT_STORE_OPTS_INIT;
    so.timeout_ms = timeout_ms;
    dt_store *s = dt_store_tcp("127.0.0.1", spawn_port, false, &so);
    if (!s) return NULL;
    dt_pg_opts o = DT_PG_OPTS_INIT;
    o.rank = rank;
    o.world_size = n;
    o.store = s;
    o.timeout_ms = timeout_ms;
    dt_pg *pg = dt_init_process_group(spawn_backend, NULL, &o);
    dt_store_release(s);
    return pg;
}

/* Fork n ranks running fn; returns the number of children that did not end
 * as expected (exit 0, or killed by SIGKILL for ranks whose bit is in dies). */
static int spawn_ranks(int n, rank_fn fn, void *arg, unsigned dies)
{
    dt_store_opts so = DT_STORE_OPTS_INIT;
    so.timeout_ms = 60000;
    dt_store *server = dt_store_tcp("127.0.0.1", 0, true, &so);
    if (!server) {
        fprintf(stderr, "spawn: store server: %s\n", dt_last_error());
        return n;
    }
    spawn_port = dt_store_port(server);
    fflush(stderr);
    pid_t pids[64];
    for (int r = 0; r < n; r++) {
        pid_t p = fork();
        if (p == 0) {
            alarm(HANG_S);
            int st = 0;
            if (setjmp(dt__test_jmp) == 0) fn(r, n, arg);
            else st = 1;
            fflush(stderr);
            _exit(st);
        }
        pids[r] = p;
    }
    int bad = 0;
    int64_t deadline = dt_deadline_ns((HANG_S + 5) * 1000LL);
    for (int r = 0; r < n; r++) {
        int st = 0;
        pid_t got;
        while ((got = waitpid(pids[r], &st, WNOHANG)) == 0 && dt_now_ns() < deadline) dt_sleep_ms(5);
        if (got == 0) {
            kill(pids[r], SIGKILL);
            waitpid(pids[r], &st, 0);
            fprintf(stderr, "rank %d hung: killed\n", r);
            bad++;
            continue;
        }
        bool want_death = dies & (1u << r);
        bool ok = want_death ? (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) : (WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (!ok) {
            fprintf(stderr, "rank %d (pid %d) ended with status %#x\n", r, (int)pids[r], st);
            bad++;
        }
    }
    dt_store_release(server);
    return bad;
}

#endif /* TESTS_DIST_SPAWN_H */
