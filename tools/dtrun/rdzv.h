/* The rendezvous: how agents on one or many hosts agree on a round of the job
 * (who takes part, node ranks, the world size, the failure restart count) via
 * a TCP store that one agent hosts. A round is closed when every node of a
 * static job, or MAX nodes of a dynamic one, joined, or MIN joined and the
 * last-call wait passed. Any agent can end a round (a worker failed, a node
 * died, a node waits to join); every agent sees it on its next check and
 * joins the next one. Does not start or stop workers (agent.c does).
 *
 * Store keys, under "dtrun/<run_id>/":
 *   round            current round number (decimal; changed by compare_set only)
 *   r<R>/why         "<restarts> <start|failure|membership|stop>"; first writer wins
 *   r<R>/joined      join counter (node ranks in join order for a dynamic job)
 *   r<R>/closed      number of nodes taking part in round R
 *   r<R>/node/<i>    "<nproc> <addr>" of node i
 *   r<R>/master      "<addr> <port>" of rank 0's own store (rank0 worker store)
 *   r<R>/hb/<i>      node i's heartbeat counter
 *   r<R>/done/<i>    node i's workers all succeeded
 *   r<R>/left/<i>    node i saw every node done and exits
 *   r<R>/failure     the round's first failure (summary.h's encoding) */
#ifndef DTRUN_RDZV_H
#define DTRUN_RDZV_H

#include "options.h"
#include "summary.h"

#include <dtrain/store.h>

typedef enum { DTRUN_WHY_START, DTRUN_WHY_FAILURE, DTRUN_WHY_MEMBERSHIP, DTRUN_WHY_STOP } dtrun_why;

typedef struct {
    const dtrun_opts *o;
    dt_store *tcp;               /* the agent's store (server thread inside when hosting) */
    dt_store *kv;                /* tcp with the "dtrun/<run_id>/" prefix */
    bool hosting;
    char store_host[256];        /* as the workers reach it */
    int store_port;
    char addr[256];              /* this node's address as other nodes reach it */
    /* the current round */
    int round;
    dtrun_why why;
    int restarts;                /* failure restarts before this round */
    int group_rank, group_world; /* this node's rank, the number of nodes */
    int rank_base, world_size;   /* first global rank of this node, all ranks */
    char master_addr[256];       /* what the workers get as MASTER_ADDR/PORT */
    int master_port;
    bool agent_store;            /* workers use the agent's store (TORCHELASTIC_USE_AGENT_STORE) */
    /* heartbeats of the round's nodes */
    int64_t *hb_value, *hb_changed_ns;
    int64_t next_hb_ns;
    const volatile int *interrupted; /* non-zero: a signal asks the agent to stop; waits give up */
} dtrun_rdzv;

/* Host or connect to the store. 0, or -1 after printing why. */
int dtrun_rdzv_open(dtrun_rdzv *r, const dtrun_opts *o);
void dtrun_rdzv_close(dtrun_rdzv *r);

/* Join the current round and wait until it closes with this node in it
 * (a node too late for a round waits for the next one). Returns 0; 1 when the
 * job was stopped (stop holds the root failure, if one was recorded);
 * -1 after printing why (join timeout, store lost). */
int dtrun_rdzv_join(dtrun_rdzv *r, dtrun_failure *stop, bool *have_stop);

/* A check while the workers run (every --monitor_interval): heartbeat, and for
 * a dynamic job dead nodes and waiting nodes end the round. Returns 0 when the
 * round goes on, 1 when it ended (join the next), -1 when the store is lost. */
int dtrun_rdzv_check(dtrun_rdzv *r);

/* End the round: a worker failed here (f; counts as a restart, or stops the
 * job when none are left), or membership changed (f NULL, not counted), or
 * stop (the agent was signalled). Returns 0 or -1. */
int dtrun_rdzv_end(dtrun_rdzv *r, dtrun_why why, const dtrun_failure *f);

/* This node's workers all succeeded. dtrun_rdzv_finished: every node's did
 * (then this node may exit; the hosting agent first waits, up to
 * close_timeout, for the others to leave). 1 yes, 0 not yet, -1 store lost. */
int dtrun_rdzv_mark_done(dtrun_rdzv *r);
int dtrun_rdzv_finished(dtrun_rdzv *r);

#endif
