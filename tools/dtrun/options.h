/* dtrun's command line: torchrun's options, their defaults and meanings, read
 * from argv and from the PET_* environment (torchrun's convention: option
 * --nproc_per_node is also PET_NPROC_PER_NODE; the command line wins).
 * Parses and validates; does not start anything. */
#ifndef DTRUN_OPTIONS_H
#define DTRUN_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

/* Which streams of a local rank go to files (bit 1: stdout, bit 2: stderr),
 * torchrun's Std: "3" for all ranks, or "0:1,1:2" per local rank. */
#define DTRUN_MAX_LOCAL 1024

typedef enum { DTRUN_STORE_AUTO, DTRUN_STORE_AGENT, DTRUN_STORE_RANK0 } dtrun_worker_store;

typedef struct {
    int nproc;                    /* --nproc_per_node, resolved (N, cpu, gpu, auto) */
    int min_nodes, max_nodes;     /* --nnodes N or MIN:MAX */
    int node_rank;                /* --node_rank (static rendezvous) */
    char master_addr[256];        /* --master_addr */
    int master_port;              /* --master_port */
    bool standalone;              /* --standalone */
    char rdzv_backend[32];        /* static or c10d (dynamic) */
    char rdzv_host[256];          /* --rdzv_endpoint host ("" when none) */
    int rdzv_port;                /* --rdzv_endpoint port (29400 when omitted) */
    char rdzv_id[128];            /* --rdzv_id / --run_id */
    /* --rdzv_conf keys */
    double join_timeout_s, last_call_timeout_s, close_timeout_s, heartbeat_timeout_s;
    int is_host;                  /* -1: decide from the endpoint, 0/1: as configured */
    int max_restarts;             /* --max_restarts */
    double monitor_interval_s;    /* --monitor_interval */
    char role[64];                /* --role */
    char log_dir[4096];           /* --log_dir ("" when none) */
    unsigned char redirects[DTRUN_MAX_LOCAL]; /* --redirects per local rank */
    unsigned char tee[DTRUN_MAX_LOCAL];       /* --tee per local rank */
    bool any_redirect_or_tee;
    bool show[DTRUN_MAX_LOCAL];   /* --local_ranks_filter: local ranks shown on the console */
    char local_addr[256];         /* --local_addr ("" when none) */
    dtrun_worker_store worker_store; /* --worker_store (dtrun's own) */
    char **argv;                  /* PROGRAM ARGS..., borrowed from main's argv, NULL-terminated */
    int argc;
} dtrun_opts;

/* Parse argv (after the program name) and the PET_* environment into o.
 * Returns 0, 1 when --help was printed (exit 0), or -1 after printing the
 * error to stderr (exit 2). */
int dtrun_parse(int argc, char **argv, dtrun_opts *o);

/* Parse torchrun's Std syntax ("3", "0:1,1:2") into per-local-rank bits. */
int dtrun_parse_std(const char *s, unsigned char *out, int n, char *err, int errlen);

void dtrun_usage(void *file /* FILE* */);

#endif
