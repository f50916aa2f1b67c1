/* auto_worker: one rank of the multi-host test (test_auto_netns.sh). Joins
 * the default group with backend "auto" through env:// (RANK, WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT), checks a large and a small all_reduce, a
 * broadcast and a barrier, and prints one line:
 *   rank R world N local L/S backend B ok
 * With a second argument V (a rank), rank V then SIGKILLs itself and every
 * other rank loops on all_reduces until one fails, which must be DT_EPEER
 * naming rank V: it prints "rank R: failed as expected: <message>".
 * Exits 1 with the error on stderr on any failure. */
#include <dtrain/dtrain.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int die(const char *what, int rank)
{
    fprintf(stderr, "rank %d: %s: %s\n", rank, what, dt_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    size_t count = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000003;
    dt_pg_opts o = DT_PG_OPTS_INIT;
    o.timeout_ms = 60000;
    dt_pg *pg = dt_init_process_group("auto", "env://", &o);
    if (!pg) return die("init", -1);
    int r = dt_pg_rank(pg), n = dt_pg_size(pg);
    float *x = malloc(count * sizeof *x);
    if (!x) return 1;
    for (size_t i = 0; i < count; i++) x[i] = (float)(r + 1 + (int)(i % 7));
    if (dt_pg_allreduce(pg, x, x, count, DT_F32, DT_RED_SUM, NULL, NULL) < 0) return die("all_reduce", r);
    for (size_t i = 0; i < count; i++) {
        float want = (float)(n * (n + 1) / 2 + n * (int)(i % 7));
        if (x[i] != want) {
            fprintf(stderr, "rank %d: all_reduce [%zu] = %g, want %g\n", r, i, x[i], want);
            return 1;
        }
    }
    int64_t v = r, b = r == n - 1 ? 4242 : 0;
    if (dt_pg_allreduce(pg, &v, &v, 1, DT_I64, DT_RED_SUM, NULL, NULL) < 0) return die("small all_reduce", r);
    if (dt_pg_broadcast(pg, &b, 1, DT_I64, n - 1, NULL, NULL) < 0) return die("broadcast", r);
    if (v != (int64_t)n * (n - 1) / 2 || b != 4242) {
        fprintf(stderr, "rank %d: small all_reduce %lld, broadcast %lld\n", r, (long long)v, (long long)b);
        return 1;
    }
    if (dt_pg_barrier(pg, NULL, NULL) < 0) return die("barrier", r);
    printf("rank %d world %d local %d/%d backend %s ok\n", r, n, dt_pg_local_rank(pg), dt_pg_local_size(pg),
           dt_pg_backend(pg));
    fflush(stdout);
    if (argc > 2) {
        int victim = atoi(argv[2]);
        int rc = 0;
        for (int i = 0; i < 100000 && rc == 0; i++) {
            /* after one more all_reduce: it cannot complete before every rank has
             * finished the checks above (a barrier only says we are through) */
            if (r == victim && i == 1) kill(getpid(), SIGKILL);
            rc = dt_pg_allreduce(pg, x, x, count, DT_F32, DT_RED_SUM, NULL, NULL);
        }
        char want[32];
        snprintf(want, sizeof want, "rank %d (", victim);
        if (rc != DT_EPEER || !strstr(dt_last_error(), want)) {
            fprintf(stderr, "rank %d: after rank %d's death got %s: %s\n", r, victim, dt_strerror(rc), dt_last_error());
            return 1;
        }
        printf("rank %d: failed as expected: %s\n", r, dt_last_error());
        fflush(stdout);
    }
    free(x);
    dt_destroy_process_group(pg);
    return 0;
}
