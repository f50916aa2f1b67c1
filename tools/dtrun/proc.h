/* Worker processes: fork + exec with an environment built in the agent, each
 * worker in its own process group with a parent-death signal, and a guardian
 * process that kills every worker group when the agent dies, however it dies.
 * Does not watch or restart anything (agent.c does). */
#ifndef DTRUN_PROC_H
#define DTRUN_PROC_H

#include <stdbool.h>
#include <sys/types.h>

/* An environment: environ's entries with some replaced or added. */
typedef struct {
    char **v;      /* NULL-terminated, malloc'd strings */
    int n, cap;
} dtrun_env;

int dtrun_env_from_environ(dtrun_env *e);
/* Replace or add NAME=value. */
int dtrun_env_set(dtrun_env *e, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Add NAME=value only when NAME is absent. */
int dtrun_env_default(dtrun_env *e, const char *name, const char *value);
const char *dtrun_env_get(const dtrun_env *e, const char *name);
void dtrun_env_free(dtrun_env *e);

/* Start the guardian (once, before any worker). It ignores the signals a
 * terminal sends and, when the agent's end of its pipe closes (the agent exited
 * or was killed), SIGKILLs every process group it was told about, so no worker
 * nor anything a worker started in its group outlives the agent. */
int dtrun_guardian_start(void);
/* Tell the guardian about a new worker group / one that is gone. */
void dtrun_guardian_watch(pid_t pgid, bool add);

/* Fork and exec argv[0] (PATH search) with env; the child's stdout/stderr are
 * out_fd/err_fd, its process group its own, and it dies with the agent
 * (PR_SET_PDEATHSIG, checked against the race where the agent died first).
 * Every other descriptor the agent holds must be O_CLOEXEC. Returns the pid, or -1 with errno. Exec failure shows as exit code 127 with
 * the reason on the worker's stderr. */
pid_t dtrun_spawn(char *const argv[], const dtrun_env *env, int out_fd, int err_fd);

/* fork() for the agent: the child starts with default signal handlers and
 * an empty mask, and no signal is handled by the agent's handlers in between. */
pid_t dtrun_fork(void);

/* Signal a worker's whole process group. */
void dtrun_signal_group(pid_t pgid, int sig);

#endif
