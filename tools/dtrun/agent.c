/* The agent loop (see agent.h). Per round: join the rendezvous, start the
 * local workers with torchrun's environment, then watch: a worker that exits
 * non-zero or by a signal ends the round as a failure (the others are stopped:
 * SIGTERM, SIGKILL after DTRAIN_STOP_TIMEOUT); a round ended elsewhere stops
 * the workers and joins the next; all workers done waits for the other nodes.
 * Does not parse options or talk the store protocol itself (rdzv.c). */
#define _GNU_SOURCE
#include "agent.h"
#include "output.h"
#include "proc.h"
#include "rdzv.h"
#include "summary.h"

#include <dtrain/util.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef enum { W_IDLE, W_RUNNING, W_EXITED } w_state;

typedef struct {
    int local_rank, rank;
    pid_t pid;
    w_state state;
    int status;               /* wait status once exited */
    bool signalled_by_us;     /* we sent the stop signal (its exit is not a failure) */
    bool killed_by_us;        /* we sent SIGKILL */
    dtrun_stream out, err;
    char error_file[PATH_MAX];
} worker;

typedef struct {
    const dtrun_opts *o;
    dtrun_rdzv rd;
    char host[256];
    char run_dir[PATH_MAX];   /* LOG_DIR/RUNID_XXXXXX or /tmp/dtrun_XXXXXX */
    bool remove_run_dir;
    worker *w;
    int nw;
    int pending_signal;       /* a terminating signal we received, 0 when none */
    int64_t oom_before;       /* the cgroup's oom_kill count when the group started */
    dtrun_failure *fails;     /* this node's failures in the current round */
    int nfails;
    int64_t stop_timeout_ms;
} agent;

/* ---------------------------------------------------------------- signals */

static int g_sigpipe[2] = {-1, -1};
static volatile int g_stop_signal;   /* the first terminating signal, for waits outside the loop */

static void on_signal(int sig)
{
    int e = errno;
    if (sig != SIGCHLD && !g_stop_signal) g_stop_signal = sig;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(g_sigpipe[1], &b, 1);
    (void)w;
    errno = e;
}

static int setup_signals(void)
{
    if (pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        if (sigaction(sigs[i], &sa, NULL) < 0) return -1;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* ----------------------------------------------------------- OOM heuristic
 * A worker that died of SIGKILL that dtrun did not send is named an OOM kill
 * when the memory cgroup the agent (and so the worker) lives in counted one
 * more oom_kill meanwhile (cgroup v2 memory.events, v1 memory.oom_control).
 * No dmesg, no root needed; a kill by someone else with no OOM stays a SIGKILL. */
static int64_t cgroup_oom_kills(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return -1;
    char line[4096], path[PATH_MAX] = "";
    int v2 = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b) continue;
        *b = '\0';
        if (strcmp(a + 1, "memory") == 0 || (strstr(a + 1, "memory") && strchr(a + 1, ','))) {
            snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.oom_control", b + 1);
            v2 = 0;
            break;
        }
        if (strcmp(line, "0") == 0 && a[1] == '\0') {
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.events", b + 1);
            v2 = 1;
        }
    }
    fclose(f);
    (void)v2;
    if (!path[0] || !(f = fopen(path, "r"))) return -1;
    int64_t n = -1;
    while (fgets(line, sizeof line, f)) {
        long long v;
        if (sscanf(line, "oom_kill %lld", &v) == 1) n = v;
    }
    fclose(f);
    return n;
}

/* ------------------------------------------------------------------ files */

static int mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

static void remove_tree(const char *path)
{
    pid_t pid = dtrun_fork();   /* rm -rf without writing a tree walker */
    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", path, (char *)NULL);
        _exit(127);
    }
    if (pid > 0) while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

static int open_log(const char *dir, const char *name)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0644);
    if (fd < 0) fprintf(stderr, "dtrun: cannot create %s: %s\n", p, strerror(errno));
    return fd;
}

/* ---------------------------------------------------------------- workers */

static int threads_per_rank(int nproc)
{
    int n = dt_num_cpus() / nproc;
    return n < 1 ? 1 : n;
}

static int build_env(agent *a, int local_rank, dtrun_env *e)
{
    const dtrun_opts *o = a->o;
    const dtrun_rdzv *r = &a->rd;
    char n[32];
    int rank = r->rank_base + local_rank;
    if (dtrun_env_from_environ(e) < 0) return -1;
    int rc = 0;
    rc |= dtrun_env_set(e, "LOCAL_RANK", "%d", local_rank);
    rc |= dtrun_env_set(e, "RANK", "%d", rank);
    rc |= dtrun_env_set(e, "GROUP_RANK", "%d", r->group_rank);
    rc |= dtrun_env_set(e, "ROLE_RANK", "%d", rank);
    rc |= dtrun_env_set(e, "ROLE_NAME", "%s", o->role);
    rc |= dtrun_env_set(e, "LOCAL_WORLD_SIZE", "%d", o->nproc);
    rc |= dtrun_env_set(e, "WORLD_SIZE", "%d", r->world_size);
    rc |= dtrun_env_set(e, "GROUP_WORLD_SIZE", "%d", r->group_world);
    rc |= dtrun_env_set(e, "ROLE_WORLD_SIZE", "%d", r->world_size);
    rc |= dtrun_env_set(e, "MASTER_ADDR", "%s", r->master_addr);
    rc |= dtrun_env_set(e, "MASTER_PORT", "%d", r->master_port);
    rc |= dtrun_env_set(e, "TORCHELASTIC_RESTART_COUNT", "%d", r->restarts);
    rc |= dtrun_env_set(e, "TORCHELASTIC_MAX_RESTARTS", "%d", o->max_restarts);
    rc |= dtrun_env_set(e, "TORCHELASTIC_RUN_ID", "%s", o->rdzv_id);
    rc |= dtrun_env_set(e, "TORCHELASTIC_USE_AGENT_STORE", "%s", r->agent_store ? "True" : "False");
    rc |= dtrun_env_set(e, "TORCHELASTIC_ERROR_FILE", "%s", a->w[local_rank].error_file);
    rc |= dtrun_env_default(e, "NCCL_ASYNC_ERROR_HANDLING", "1");
    rc |= dtrun_env_default(e, "TORCH_NCCL_ASYNC_ERROR_HANDLING", "1");
    snprintf(n, sizeof n, "%d", threads_per_rank(o->nproc));
    rc |= dtrun_env_default(e, "OMP_NUM_THREADS", n);
    rc |= dtrun_env_default(e, "DTRAIN_NUM_THREADS", n);
    return rc ? -1 : 0;
}

static void close_streams(worker *w)
{
    if (w->out.buf) dtrun_stream_close(&w->out);
    if (w->err.buf) dtrun_stream_close(&w->err);
}

static int start_worker(agent *a, worker *w, const char *attempt_dir)
{
    const dtrun_opts *o = a->o;
    int lr = w->local_rank;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%d", attempt_dir, lr);
    if (mkdirs(dir) < 0) { fprintf(stderr, "dtrun: cannot create %s: %s\n", dir, strerror(errno)); return -1; }
    snprintf(w->error_file, sizeof w->error_file, "%s/error.json", dir);
    unlink(w->error_file);

    bool files = o->log_dir[0] != '\0';
    int to_file[2], to_console[2];
    for (int s = 0; s < 2; s++) {
        int bit = 1 << s;
        to_file[s] = files || (o->redirects[lr] & bit) || (o->tee[lr] & bit);
        to_console[s] = o->show[lr] && (!(o->redirects[lr] & bit) || (o->tee[lr] & bit));
    }
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) < 0) return -1;
    if (pipe2(pe, O_CLOEXEC) < 0) { close(po[0]); close(po[1]); return -1; }
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    int fo = to_file[0] ? open_log(dir, "stdout.log") : -1;
    int fe = to_file[1] ? open_log(dir, "stderr.log") : -1;
    w->rank = a->rd.rank_base + lr;
    if (dtrun_stream_init(&w->out, po[0], to_console[0] ? 1 : -1, fo, w->rank) < 0 ||
        dtrun_stream_init(&w->err, pe[0], to_console[1] ? 2 : -1, fe, w->rank) < 0) {
        close(po[1]);
        close(pe[1]);
        return -1;
    }
    dtrun_env env;
    if (build_env(a, lr, &env) < 0) {
        dtrun_env_free(&env);
        close(po[1]);
        close(pe[1]);
        return -1;
    }
    w->pid = dtrun_spawn(o->argv, &env, po[1], pe[1]);
    int e = errno;
    dtrun_env_free(&env);
    close(po[1]);
    close(pe[1]);
    if (w->pid < 0) { fprintf(stderr, "dtrun: fork: %s\n", strerror(e)); return -1; }
    dtrun_guardian_watch(w->pid, true);
    w->state = W_RUNNING;
    w->signalled_by_us = w->killed_by_us = false;
    return 0;
}

static int start_group(agent *a)
{
    char attempt[PATH_MAX];
    snprintf(attempt, sizeof attempt, "%s/attempt_%d", a->run_dir, a->rd.restarts);
    /* a membership change restarts with the same attempt number: start it afresh */
    remove_tree(attempt);
    if (mkdirs(attempt) < 0) { fprintf(stderr, "dtrun: cannot create %s: %s\n", attempt, strerror(errno)); return -1; }
    a->oom_before = cgroup_oom_kills();
    a->nfails = 0;
    for (int i = 0; i < a->nw; i++) {
        worker *w = &a->w[i];
        memset(w, 0, sizeof *w);
        w->local_rank = i;
        w->out.pipe_fd = w->err.pipe_fd = -1;
        if (start_worker(a, w, attempt) < 0) return -1;
    }
    return 0;
}

static int running_count(const agent *a)
{
    int n = 0;
    for (int i = 0; i < a->nw; i++) n += a->w[i].state == W_RUNNING;
    return n;
}

static void record_failure(agent *a, worker *w)
{
    bool oom = false;
    if (WIFSIGNALED(w->status) && WTERMSIG(w->status) == SIGKILL && !w->killed_by_us) {
        int64_t now = cgroup_oom_kills();
        oom = now >= 0 && a->oom_before >= 0 && now > a->oom_before;
    }
    dtrun_failure *f = &a->fails[a->nfails++];
    dtrun_failure_make(f, a->host, w->rank, w->local_rank, w->pid, w->status, w->error_file, oom);
}

/* Reap exited workers. Returns the number of new failures. */
static int reap(agent *a)
{
    int failures = 0;
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) break;
        for (int i = 0; i < a->nw; i++) {
            worker *w = &a->w[i];
            if (w->pid != pid || w->state != W_RUNNING) continue;
            w->state = W_EXITED;
            w->status = st;
            /* whatever it wrote before exiting is in the pipes now */
            dtrun_stream_read(&w->out);
            dtrun_stream_read(&w->err);
            dtrun_guardian_watch(pid, false);
            /* stragglers in its group (it started them) go with it */
            dtrun_signal_group(pid, SIGKILL);
            bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
            if (!ok && !w->signalled_by_us) {
                record_failure(a, w);
                failures++;
            }
        }
    }
    return failures;
}

/* One pass of the loop: wait up to timeout_ms for output or a signal, handle
 * them. Returns the number of new worker failures. */
static int pump(agent *a, int timeout_ms)
{
    struct pollfd pf[1 + 2 * DTRUN_MAX_LOCAL];
    dtrun_stream *st[1 + 2 * DTRUN_MAX_LOCAL];
    int n = 0;
    pf[n].fd = g_sigpipe[0], pf[n].events = POLLIN, st[n++] = NULL;
    for (int i = 0; i < a->nw; i++) {
        dtrun_stream *ss[2] = {&a->w[i].out, &a->w[i].err};
        for (int k = 0; k < 2; k++)
            if (ss[k]->pipe_fd >= 0) pf[n].fd = ss[k]->pipe_fd, pf[n].events = POLLIN, st[n++] = ss[k];
    }
    int r = poll(pf, (nfds_t)n, timeout_ms);
    if (r < 0 && errno != EINTR) return 0;
    for (int i = 1; r > 0 && i < n; i++)
        if (pf[i].revents) dtrun_stream_read(st[i]);
    int failures = 0;
    if (r > 0 && pf[0].revents) {
        unsigned char sigs[64];
        ssize_t k;
        while ((k = read(g_sigpipe[0], sigs, sizeof sigs)) > 0) {
            for (ssize_t j = 0; j < k; j++) {
                int s = sigs[j];
                if (s == SIGCHLD) continue;
                /* forward to the workers; the agent then stops (see run) */
                if (!a->pending_signal) a->pending_signal = s;
                for (int i = 0; i < a->nw; i++)
                    if (a->w[i].state == W_RUNNING) {
                        a->w[i].signalled_by_us = true;
                        dtrun_signal_group(a->w[i].pid, s);
                    }
            }
        }
    }
    failures += reap(a);
    return failures;
}

/* Stop every running worker: sig (SIGTERM) to its group, SIGKILL after the
 * stop timeout, then wait for them all. Output keeps flowing meanwhile. */
static void stop_group(agent *a, int sig)
{
    for (int i = 0; i < a->nw; i++) {
        worker *w = &a->w[i];
        if (w->state != W_RUNNING) continue;
        w->signalled_by_us = true;
        dtrun_signal_group(w->pid, sig);
    }
    int64_t deadline = dt_deadline_ns(a->stop_timeout_ms);
    while (running_count(a) > 0 && dt_ms_left(deadline) > 0) pump(a, 20);
    for (int i = 0; i < a->nw; i++) {
        worker *w = &a->w[i];
        if (w->state != W_RUNNING) continue;
        w->killed_by_us = true;
        dtrun_signal_group(w->pid, SIGKILL);
    }
    while (running_count(a) > 0) pump(a, 20);
}

static void end_group(agent *a)
{
    for (int i = 0; i < a->nw; i++) {
        close_streams(&a->w[i]);
        a->w[i].state = W_IDLE;
    }
}

/* ------------------------------------------------------------------ rounds */

typedef enum { R_SUCCESS, R_FAILED, R_ENDED, R_SIGNAL, R_STORE_LOST } round_result;

/* Watch the running group until it succeeds, fails, the round ends
 * elsewhere, or a signal arrives. */
static round_result watch(agent *a)
{
    int64_t tick_ns = (int64_t)(a->o->monitor_interval_s * 1e9);
    int64_t next = dt_now_ns() + tick_ns;
    for (;;) {
        int64_t left = (next - dt_now_ns()) / 1000000;
        int failures = pump(a, left < 0 ? 0 : (int)left + 1);
        if (a->pending_signal) return R_SIGNAL;
        if (failures) return R_FAILED;
        if (running_count(a) == 0) return R_SUCCESS;
        if (dt_now_ns() >= next) {
            next = dt_now_ns() + tick_ns;
            int rc = dtrun_rdzv_check(&a->rd);
            if (rc < 0) return R_STORE_LOST;
            if (rc == 1) return R_ENDED;
        }
    }
}

/* After local success: wait for every node, still answering a round that
 * ends elsewhere (a failure on another node restarts this one too). */
static round_result wait_all_done(agent *a)
{
    if (dtrun_rdzv_mark_done(&a->rd) < 0) return R_STORE_LOST;
    int64_t tick_ms = (int64_t)(a->o->monitor_interval_s * 1000);
    for (;;) {
        int rc = dtrun_rdzv_finished(&a->rd);
        if (rc < 0) return R_STORE_LOST;
        if (rc == 1) return R_SUCCESS;
        rc = dtrun_rdzv_check(&a->rd);
        if (rc < 0) return R_STORE_LOST;
        if (rc == 1) return R_ENDED;
        pump(a, (int)(tick_ms < 1 ? 1 : tick_ms));
        if (a->pending_signal) return R_SIGNAL;
    }
}

static const char *title_of(const dtrun_opts *o)
{
    const char *s = strrchr(o->argv[0], '/');
    return s ? s + 1 : o->argv[0];
}

static void print_restart_note(agent *a, const dtrun_failure *f)
{
    if (f->rank >= 0)
        fprintf(stderr, "dtrun: rank %d (local_rank %d, host %s, pid %d) failed: %s%d: %s\n", f->rank, f->local_rank, f->host,
                (int)f->pid, f->exitcode < 0 ? "signal " : "exit code ", f->exitcode < 0 ? -f->exitcode : f->exitcode, f->message);
    else
        fprintf(stderr, "dtrun: %s\n", f->message);
}

static bool same_failure(const dtrun_failure *x, const dtrun_failure *y)
{
    return x->rank == y->rank && x->pid == y->pid && strcmp(x->host, y->host) == 0;
}

static void print_summary(agent *a, const dtrun_failure *root)
{
    dtrun_failure *others = malloc(sizeof *others * (size_t)(a->nfails + 1));
    int n = 0;
    for (int i = 0; others && i < a->nfails; i++)
        if (!root || !same_failure(root, &a->fails[i])) others[n++] = a->fails[i];
    dtrun_summary_print(title_of(a->o), root, others ? others : a->fails, others ? n : 0);
    free(others);
}

static int setup_run_dir(agent *a)
{
    const dtrun_opts *o = a->o;
    char base[PATH_MAX];
    if (o->log_dir[0]) {
        if (mkdirs(o->log_dir) < 0) { fprintf(stderr, "dtrun: cannot create --log_dir %s: %s\n", o->log_dir, strerror(errno)); return -1; }
        snprintf(base, sizeof base, "%s/%s_XXXXXX", o->log_dir, o->rdzv_id);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(base, sizeof base, "%s/dtrun_%s_XXXXXX", tmp && tmp[0] ? tmp : "/tmp", o->rdzv_id);
        a->remove_run_dir = !o->any_redirect_or_tee;
    }
    if (!mkdtemp(base)) { fprintf(stderr, "dtrun: cannot create %s: %s\n", base, strerror(errno)); return -1; }
    snprintf(a->run_dir, sizeof a->run_dir, "%s", base);
    if (!a->remove_run_dir && !o->log_dir[0])
        fprintf(stderr, "dtrun: worker logs in %s\n", a->run_dir);
    return 0;
}

int dtrun_agent_run(const dtrun_opts *o)
{
    static agent a;
    int code = 1;
    a.o = o;
    a.nw = o->nproc;
    if (gethostname(a.host, sizeof a.host) < 0) snprintf(a.host, sizeof a.host, "localhost");
    int64_t stop_s = 30;
    if (dt_param_int(DT_PARAM_STOP_TIMEOUT, &stop_s) < 0) { fprintf(stderr, "dtrun: %s\n", dt_last_error()); return 2; }
    a.stop_timeout_ms = stop_s * 1000;
    a.w = calloc((size_t)a.nw, sizeof *a.w);
    a.fails = calloc((size_t)a.nw + 1, sizeof *a.fails);
    if (!a.w || !a.fails) { fprintf(stderr, "dtrun: out of memory\n"); return 1; }
    for (int i = 0; i < a.nw; i++) a.w[i].out.pipe_fd = a.w[i].err.pipe_fd = -1;
    if (dtrun_guardian_start() < 0) { fprintf(stderr, "dtrun: cannot start the guardian: %s\n", strerror(errno)); return 1; }
    if (setup_run_dir(&a) < 0) return 1;
    /* a signal while the store connects just ends dtrun: nothing runs yet */
    if (dtrun_rdzv_open(&a.rd, o) < 0) goto out;
    if (setup_signals() < 0) { fprintf(stderr, "dtrun: signals: %s\n", strerror(errno)); goto out; }
    a.rd.interrupted = &g_stop_signal;

    for (;;) {
        dtrun_failure stop;
        bool have_stop;
        int rc = dtrun_rdzv_join(&a.rd, &stop, &have_stop);
        if (g_stop_signal) { code = 128 + g_stop_signal; break; }
        if (rc < 0) break;
        if (rc == 1) {
            /* the job failed (here or elsewhere) and no restarts are left */
            print_summary(&a, have_stop ? &stop : NULL);
            break;
        }
        if (start_group(&a) < 0) { stop_group(&a, SIGTERM); end_group(&a); break; }
        round_result res = watch(&a);
        if (res == R_SUCCESS) res = wait_all_done(&a);
        if (res == R_SUCCESS) { end_group(&a); code = 0; break; }
        if (res == R_FAILED) {
            const dtrun_failure *f = &a.fails[0];
            print_restart_note(&a, f);
            stop_group(&a, SIGTERM);
            pump(&a, 0);   /* failures that raced the stop are recorded too */
            if (dtrun_rdzv_end(&a.rd, DTRUN_WHY_FAILURE, f) < 0) { end_group(&a); break; }
            if (a.rd.restarts < o->max_restarts)
                fprintf(stderr, "dtrun: restarting the worker group (restart %d of %d)\n", a.rd.restarts + 1, o->max_restarts);
        } else if (res == R_ENDED) {
            stop_group(&a, SIGTERM);
        } else if (res == R_SIGNAL) {
            fprintf(stderr, "dtrun: got %s; stopping the workers\n", dtrun_signame(a.pending_signal));
            stop_group(&a, a.pending_signal);
            dtrun_failure f;
            memset(&f, 0, sizeof f);
            f.wall_ms = dt_wall_ms();
            f.rank = f.local_rank = -1;
            f.exitcode = -a.pending_signal;
            snprintf(f.host, sizeof f.host, "%s", a.host);
            snprintf(f.message, sizeof f.message, "the agent on %s received %s", a.host, dtrun_signame(a.pending_signal));
            (void)dtrun_rdzv_end(&a.rd, DTRUN_WHY_STOP, &f);
            end_group(&a);
            code = 128 + a.pending_signal;
            break;
        } else {
            fprintf(stderr, "dtrun: lost the rendezvous store; stopping the workers\n");
            stop_group(&a, SIGTERM);
            end_group(&a);
            break;
        }
        end_group(&a);
    }
out:
    dtrun_rdzv_close(&a.rd);
    /* a failed job keeps its error files and logs: the summary names them */
    if (a.remove_run_dir && a.run_dir[0] && code == 0) remove_tree(a.run_dir);
    else if (a.remove_run_dir && a.run_dir[0]) fprintf(stderr, "dtrun: worker logs and error files kept in %s\n", a.run_dir);
    free(a.w);
    free(a.fails);
    return code;
}
