/* dt_spawn (see spawn.h): fork the ranks after the parent's store is up,
 * collect each rank's result through its own pipe (code + message), stop the
 * rest at the first failure. Does not restart anything: dtrun does that. */
#define _GNU_SOURCE
#include <dtrain/spawn.h>
#include "dist/backend/backend.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    int32_t code;
    char msg[1020];
} spawn_result;   /* what a rank writes to its pipe when fn returns */

typedef struct {
    pid_t pid;
    int fd;               /* read end; -1 once the rank is done */
    bool have_result;
    spawn_result res;
    int status;
} spawn_rank;

static void set_env_int(const char *name, int v)
{
    char b[16];
    snprintf(b, sizeof b, "%d", v);
    setenv(name, b, 1);
}

/* The child: environment, fn, the result down the pipe, _exit (no atexit
 * handlers of the parent's, no flushing of its stdio buffers twice). */
static void run_rank(dt_spawn_fn fn, int rank, int nprocs, void *arg, int port, int wfd, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(128 + SIGKILL);
    set_env_int("RANK", rank);
    set_env_int("LOCAL_RANK", rank);
    set_env_int("WORLD_SIZE", nprocs);
    set_env_int("LOCAL_WORLD_SIZE", nprocs);
    set_env_int("GROUP_RANK", 0);
    set_env_int("GROUP_WORLD_SIZE", 1);
    set_env_int("MASTER_PORT", port);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
    setenv("TORCHELASTIC_RESTART_COUNT", "0", 1);
    setenv("TORCHELASTIC_RUN_ID", "dt_spawn", 1);
    dt_log_set_rank(rank);
    dt_clear_error();
    int rc = fn(rank, nprocs, arg);
    spawn_result r;
    memset(&r, 0, sizeof r);
    r.code = rc;
    if (rc != 0) snprintf(r.msg, sizeof r.msg, "%s", dt_last_error()[0] ? dt_last_error() : dt_strerror(rc));
    fflush(stdout);
    fflush(stderr);
    ssize_t w = write(wfd, &r, sizeof r);   /* < PIPE_BUF: one atomic write */
    _exit(w == (ssize_t)sizeof r && rc == 0 ? 0 : 1);
}

static void describe(const spawn_rank *r, int rank, int *code, char *msg, size_t cap)
{
    if (r->have_result && r->res.code != 0) {
        *code = r->res.code < 0 ? r->res.code : DT_EINTERNAL;
        snprintf(msg, cap, "rank %d failed: %s", rank, r->res.msg);
    } else if (WIFSIGNALED(r->status)) {
        *code = DT_EPEER;
        snprintf(msg, cap, "rank %d died by signal %d (%s)", rank, WTERMSIG(r->status), strsignal(WTERMSIG(r->status)));
    } else {
        *code = DT_EPEER;
        snprintf(msg, cap, "rank %d exited with code %d before returning from its function", rank, WEXITSTATUS(r->status));
    }
}

static bool failed(const spawn_rank *r)
{
    return !(r->have_result && r->res.code == 0 && WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0);
}

/* Read rank i's result (if any) and reap it once its pipe reached EOF. */
static void finish(spawn_rank *r)
{
    ssize_t n;
    while ((n = read(r->fd, &r->res, sizeof r->res)) < 0 && errno == EINTR) {}
    r->have_result = n == (ssize_t)sizeof r->res;
    close(r->fd);
    r->fd = -1;
    while (waitpid(r->pid, &r->status, 0) < 0 && errno == EINTR) {}
}

int dt_spawn(dt_spawn_fn fn, int nprocs, void *arg)
{
    if (!fn || nprocs < 1) return dt_set_error(DT_EINVAL, "dt_spawn: fn %s, nprocs %d", fn ? "set" : "NULL", nprocs);
    int64_t stop_s;
    DT_CHECK(dt_param_int(DT_PARAM_STOP_TIMEOUT, &stop_s));
    dt_store_opts so = DT_STORE_OPTS_INIT;
    dt_store *store = dt_store_tcp("127.0.0.1", 0, true, &so);
    if (!store) return dt_error_wrap(dt_last_error_code(), "dt_spawn: hosting the store");
    int port = dt_store_port(store);
    spawn_rank *ranks = dt_calloc((size_t)nprocs, sizeof *ranks, DT_MEM_OTHER);
    if (!ranks) { dt_store_release(store); return DT_ENOMEM; }
    int rc = 0, started = 0;
    pid_t self = getpid();
    fflush(stdout);
    fflush(stderr);
    for (; started < nprocs; started++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) { rc = dt_set_error_errno(DT_ESYS, errno, "dt_spawn: pipe"); break; }
        pid_t pid = fork();
        if (pid < 0) { close(p[0]); close(p[1]); rc = dt_set_error_errno(DT_ESYS, errno, "dt_spawn: fork rank %d", started); break; }
        if (pid == 0) {
            close(p[0]);
            for (int j = 0; j < started; j++) close(ranks[j].fd);
            run_rank(fn, started, nprocs, arg, port, p[1], self);
        }
        close(p[1]);
        ranks[started].pid = pid;
        ranks[started].fd = p[0];
    }

    /* join: the first rank to fail (in the order seen) is the one reported */
    int first = -1, left = started;
    int64_t kill_at = -1;
    struct pollfd *pf = dt_calloc((size_t)nprocs, sizeof *pf, DT_MEM_OTHER);
    int *idx = dt_calloc((size_t)nprocs, sizeof *idx, DT_MEM_OTHER);
    if (!pf || !idx) { rc = DT_ENOMEM; first = -2; }
    if (rc < 0 || first == -2) {
        for (int i = 0; i < started; i++) kill(ranks[i].pid, SIGTERM);
        kill_at = dt_deadline_ns(stop_s * 1000);
    }
    while (left > 0) {
        int n = 0;
        for (int i = 0; pf && i < started; i++)
            if (ranks[i].fd >= 0) pf[n].fd = ranks[i].fd, pf[n].events = POLLIN, idx[n++] = i;
        int timeout = kill_at < 0 ? -1 : (int)dt_ms_left(kill_at) + 1;
        int r = pf ? poll(pf, (nfds_t)n, timeout) : 0;
        if (!pf) {   /* no memory for poll: just wait for each */
            for (int i = 0; i < started; i++) if (ranks[i].fd >= 0) { finish(&ranks[i]); left--; }
            break;
        }
        if (r < 0 && errno != EINTR) break;
        for (int k = 0; r > 0 && k < n; k++) {
            if (!pf[k].revents) continue;
            spawn_rank *sr = &ranks[idx[k]];
            finish(sr);
            left--;
            if (failed(sr) && first == -1 && rc == 0) {
                first = idx[k];
                for (int j = 0; j < started; j++)
                    if (ranks[j].fd >= 0) kill(ranks[j].pid, SIGTERM);
                kill_at = dt_deadline_ns(stop_s * 1000);
            }
        }
        if (kill_at >= 0 && dt_ms_left(kill_at) == 0) {
            for (int j = 0; j < started; j++)
                if (ranks[j].fd >= 0) kill(ranks[j].pid, SIGKILL);
            kill_at = -1;
        }
    }
    if (rc == 0 && first >= 0) {
        char msg[1200];
        describe(&ranks[first], first, &rc, msg, sizeof msg);
        dt_set_error(rc, "dt_spawn: %s", msg);
    }
    dt_free(pf);
    dt_free(idx);
    dt_free(ranks);
    dt_store_release(store);
    return rc;
}

bool dt__pid_gone(pid_t pid)
{
    if (pid <= 0) return false;
    if (kill(pid, 0) != 0) return errno == ESRCH;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');   /* the state follows the command name */
    return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}
