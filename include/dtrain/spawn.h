/* dt_spawn: torch.multiprocessing.spawn for dtrain. Forks nprocs ranks of the
 * calling program, each running fn with torchrun's environment (RANK,
 * LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
 * TORCHELASTIC_USE_AGENT_STORE=True), around a TCP store the parent hosts, so
 * fn can call dt_init_process_group("...", "env://", ...) as under dtrun.
 * Sits in the dist layer: it uses stores, nothing above. */
#ifndef DTRAIN_SPAWN_H
#define DTRAIN_SPAWN_H

#include <dtrain/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A rank's body: returns 0 on success or a negative DT_E* code with the last
 * error set (its message travels back to the parent). */
typedef int (*dt_spawn_fn)(int rank, int nprocs, void *arg);

/* Run fn in nprocs forked processes and wait for them. On the first failure
 * (fn returned non-zero, the rank exited otherwise or died by a signal) the
 * others get SIGTERM, and SIGKILL after DTRAIN_STOP_TIMEOUT seconds; the call
 * then returns that rank's code (DT_EPEER when it died without one) and sets
 * the last error to "rank R failed: <its message>". arg is shared by copy
 * (fork): each rank sees the parent's memory as it was at the call.
 * The children are in the caller's process group and die with the caller
 * (PR_SET_PDEATHSIG). Not reentrant from inside fn. */
int dt_spawn(dt_spawn_fn fn, int nprocs, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_SPAWN_H */
