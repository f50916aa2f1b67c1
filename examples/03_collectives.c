/* 03_collectives: the two collectives data-parallel training is made of.
 * Rank r holds [1+2r, 2+2r]; all_gather gives every rank every rank's pair
 * ([[1, 2], [3, 4]] on two ranks), all_reduce sums them ([4, 6]). Each rank
 * prints all three lines and checks the results against the closed form.
 * Launch:  build/bin/dtrun --standalone --nproc_per_node=2 build/bin/collectives
 *   or by hand (env://, the default):
 *     MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=0 build/bin/collectives &
 *     MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=1 build/bin/collectives
 * Options (as hello's): [--init-method URL] [--backend auto|shm] [--rank N] [--world-size N] */
#include <dtrain/dtrain.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_pair(const char *label, int rank, const float *x)
{
    printf("rank %d %s [%g, %g]\n", rank, label, x[0], x[1]);
}

int main(int argc, char **argv)
{
    const char *init = "env://", *backend = "auto";
    dt_pg_opts o = DT_PG_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "collectives: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--init-method")) init = v;
        else if (!strcmp(a, "--backend")) backend = v;
        else if (!strcmp(a, "--rank")) o.rank = atoi(v);
        else if (!strcmp(a, "--world-size")) o.world_size = atoi(v);
        else { fprintf(stderr, "collectives: unknown option %s\n", a); return 2; }
        i++;
    }
    dt_pg *pg = dt_init_process_group(backend, init, &o);
    if (!pg) {
        fprintf(stderr, "collectives: %s\n", dt_last_error());
        return 1;
    }
    int r = dt_pg_rank(pg), n = dt_pg_size(pg), bad = 0;
    float mine[2] = {1.0f + 2 * r, 2.0f + 2 * r}, sum[2];
    float *all = malloc((size_t)n * sizeof mine); /* (n, 2) */
    print_pair("holds", r, mine);
    if (!all || dt_pg_allgather(pg, mine, all, 2, DT_F32, NULL, NULL) < 0 ||
        dt_pg_allreduce(pg, mine, sum, 2, DT_F32, DT_RED_SUM, NULL, NULL) < 0) {
        fprintf(stderr, "collectives: %s\n", dt_last_error());
        dt_destroy_process_group(pg);
        return 1;
    }
    printf("rank %d all_gather [", r);
    for (int q = 0; q < n; q++) {
        printf("%s[%g, %g]", q ? ", " : "", all[2 * q], all[2 * q + 1]);
        bad += all[2 * q] != 1.0f + 2 * q || all[2 * q + 1] != 2.0f + 2 * q;
    }
    printf("]\n");
    print_pair("all_reduce sum", r, sum);
    bad += sum[0] != (float)(n * n) || sum[1] != (float)(n * n + n); /* sums of 1+2q and 2+2q */
    if (bad) fprintf(stderr, "collectives: rank %d: wrong results\n", r);
    free(all);
    dt_destroy_process_group(pg);
    return bad != 0;
}
