/* 02_hello: join a process group and say who we are: every rank prints its
 * rank, local rank and world size, then all meet at a barrier.
 * Launch:  build/bin/dtrun --standalone --nproc_per_node=2 build/bin/hello
 *   or by hand (env://, the default):
 *     MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=0 build/bin/hello &
 *     MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 WORLD_SIZE=2 RANK=1 build/bin/hello
 *   tcp:// or file:// (rank and world size from RANK/WORLD_SIZE or the flags):
 *     build/bin/hello --init-method tcp://127.0.0.1:29500 --rank 0 --world-size 2 &
 *     build/bin/hello --init-method tcp://127.0.0.1:29500 --rank 1 --world-size 2
 *     build/bin/hello --init-method file:///tmp/hello.store --rank 0 --world-size 1
 * Options: [--init-method URL] [--backend auto|shm] [--rank N] [--world-size N] */
#include <dtrain/dtrain.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr, "usage: hello [--init-method env://|tcp://HOST:PORT|file:///PATH] [--backend auto|shm] "
                    "[--rank N] [--world-size N]\n");
}

int main(int argc, char **argv)
{
    const char *init = "env://", *backend = "auto";
    dt_pg_opts o = DT_PG_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        if (!v) { usage(); return 2; }
        if (!strcmp(a, "--init-method")) init = v;
        else if (!strcmp(a, "--backend")) backend = v;
        else if (!strcmp(a, "--rank")) o.rank = atoi(v);
        else if (!strcmp(a, "--world-size")) o.world_size = atoi(v);
        else { usage(); return 2; }
        i++;
    }
    dt_pg *pg = dt_init_process_group(backend, init, &o);
    if (!pg) {
        fprintf(stderr, "hello: %s\n", dt_last_error());
        return 1;
    }
    printf("rank %d local_rank %d world_size %d\n", dt_pg_rank(pg), dt_pg_local_rank(pg), dt_pg_size(pg));
    fflush(stdout);
    int rc = dt_pg_barrier(pg, NULL, NULL);
    if (rc < 0) fprintf(stderr, "hello: barrier: %s\n", dt_last_error());
    dt_destroy_process_group(pg);
    return rc < 0;
}
