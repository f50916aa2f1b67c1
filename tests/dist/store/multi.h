/* multi.h: forked children for the multi-process store tests. A child runs a
 * function and reports through its exit status (it prints the library's last
 * error when it fails); it kills itself after HANG_S seconds, a hang detector.
 * Also the rendezvous every world-size test runs on a store. */
#ifndef STORE_MULTI_H
#define STORE_MULTI_H

#include "dt_test.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define HANG_S 90

/* A child's body: i of n, arg as the test gives it; 0 for success. */
typedef int (*child_fn)(int arg, int i, int n);

static void spawn(pid_t *pids, int n, child_fn fn, int arg)
{
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            alarm(HANG_S);
            int rc = fn(arg, i, n);
            if (rc) fprintf(stderr, "child %d: %s\n", i, dt_last_error());
            _exit(rc ? 1 : 0);
        }
        pids[i] = p;
    }
}

/* Wait for every child; returns how many did not exit 0. */
static int reap(pid_t *pids, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        int st = 0;
        if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "child %d (pid %d): status %#x\n", i, (int)pids[i], st);
            bad++;
        }
    }
    return bad;
}

/* Ranks 0..world-1 meet: each publishes "rank/<r>", counts itself in
 * "arrived", reads every rank's value back (blocking until it is there) and
 * counts itself in "finished". */
static int rank_body(dt_store *s, int rank, int world)
{
    char k[32], v[32];
    snprintf(k, sizeof k, "rank/%d", rank);
    snprintf(v, sizeof v, "value-%d", rank * 7);
    DT_CHECK(dt_store_set(s, k, v, strlen(v)));
    DT_CHECK(dt_store_add(s, "arrived", 1, NULL));
    for (int r = 0; r < world; r++) {
        void *got = NULL;
        size_t n = 0;
        snprintf(k, sizeof k, "rank/%d", r);
        snprintf(v, sizeof v, "value-%d", r * 7);
        DT_CHECK(dt_store_get(s, k, &got, &n));
        bool ok = n == strlen(v) && memcmp(got, v, n) == 0;
        dt_free(got);
        if (!ok) return dt_set_error(DT_EINTERNAL, "rank %d read a wrong value for rank %d", rank, r);
    }
    DT_CHECK(dt_store_add(s, "finished", 1, NULL));
    return 0;
}

#endif /* STORE_MULTI_H */
