/* Worker processes and the guardian (see proc.h). The child side between
 * fork and exec calls only async-signal-safe functions; everything it needs
 * (argv, envp) is built in the agent first. */
#define _GNU_SOURCE
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

extern char **environ;

static int env_grow(dtrun_env *e)
{
    if (e->n + 2 <= e->cap) return 0;
    int cap = e->cap ? e->cap * 2 : 64;
    char **v = realloc(e->v, sizeof *v * (size_t)cap);
    if (!v) return -1;
    e->v = v, e->cap = cap;
    return 0;
}

int dtrun_env_from_environ(dtrun_env *e)
{
    memset(e, 0, sizeof *e);
    for (char **p = environ; *p; p++) {
        if (env_grow(e) < 0) return -1;
        if (!(e->v[e->n] = strdup(*p))) return -1;
        e->v[++e->n] = NULL;
    }
    if (env_grow(e) < 0) return -1;
    e->v[e->n] = NULL;
    return 0;
}

static int find(const dtrun_env *e, const char *name)
{
    size_t nl = strlen(name);
    for (int i = 0; i < e->n; i++)
        if (strncmp(e->v[i], name, nl) == 0 && e->v[i][nl] == '=') return i;
    return -1;
}

const char *dtrun_env_get(const dtrun_env *e, const char *name)
{
    int i = find(e, name);
    return i < 0 ? NULL : e->v[i] + strlen(name) + 1;
}

static int put(dtrun_env *e, const char *name, const char *value)
{
    char *s;
    if (asprintf(&s, "%s=%s", name, value) < 0) return -1;
    int i = find(e, name);
    if (i >= 0) {
        free(e->v[i]);
        e->v[i] = s;
        return 0;
    }
    if (env_grow(e) < 0) { free(s); return -1; }
    e->v[e->n++] = s;
    e->v[e->n] = NULL;
    return 0;
}

int dtrun_env_set(dtrun_env *e, const char *name, const char *fmt, ...)
{
    char val[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    return put(e, name, val);
}

int dtrun_env_default(dtrun_env *e, const char *name, const char *value)
{
    return find(e, name) >= 0 ? 0 : put(e, name, value);
}

void dtrun_env_free(dtrun_env *e)
{
    for (int i = 0; i < e->n; i++) free(e->v[i]);
    free(e->v);
    memset(e, 0, sizeof *e);
}

/* ------------------------------------------------------------- guardian */

static int g_guardian_fd = -1;   /* write end; the guardian reads pgids */

static void guardian_main(int rfd)
{
    static const int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE};
    for (size_t i = 0; i < sizeof ignored / sizeof *ignored; i++) signal(ignored[i], SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* close what the agent had open, so pipes and sockets do not stay alive here */
    for (int fd = 3; fd < 1024; fd++)
        if (fd != rfd) close(fd);
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) { dup2(nul, 0); dup2(nul, 1); dup2(nul, 2); if (nul > 2) close(nul); }
    pid_t groups[4096];
    int n = 0;
    for (;;) {
        int32_t msg;
        ssize_t r = read(rfd, &msg, sizeof msg);
        if (r < 0 && errno == EINTR) continue;
        if (r != (ssize_t)sizeof msg) break;   /* EOF: the agent is gone */
        if (msg > 0 && n < (int)(sizeof groups / sizeof *groups)) {
            groups[n++] = msg;
        } else if (msg < 0) {
            for (int i = 0; i < n; i++)
                if (groups[i] == -msg) { groups[i] = groups[--n]; break; }
        }
    }
    for (int i = 0; i < n; i++) kill(-groups[i], SIGKILL);
    _exit(0);
}

int dtrun_guardian_start(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) { close(p[0]); close(p[1]); return -1; }
    if (pid == 0) {
        close(p[1]);
        guardian_main(p[0]);
    }
    close(p[0]);
    g_guardian_fd = p[1];
    return 0;
}

void dtrun_guardian_watch(pid_t pgid, bool add)
{
    if (g_guardian_fd < 0) return;
    int32_t msg = add ? (int32_t)pgid : -(int32_t)pgid;
    ssize_t w = write(g_guardian_fd, &msg, sizeof msg);   /* 4 bytes: atomic on a pipe */
    (void)w;
}

/* -------------------------------------------------------------- workers */

static void child_fail(const char *what, const char *arg)
{
    int e = errno;
    const char *es = strerror(e);
    /* async-signal-safe: plain writes of known strings */
    if (write(2, "dtrun: ", 7) < 0 || write(2, what, strlen(what)) < 0 || write(2, arg, strlen(arg)) < 0 ||
        write(2, ": ", 2) < 0 || write(2, es, strlen(es)) < 0 || write(2, "\n", 1) < 0) {
    }
    _exit(127);
}

pid_t dtrun_fork(void)
{
    /* Signals stay blocked across fork until the child has dropped the agent's
     * handlers: one arriving in between (the agent stopping a worker that has
     * not run yet) would run the agent's handler in the child and land in the
     * agent's signal pipe as if the agent had been signalled. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid != 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        errno = e;
        return pid;
    }
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    return 0;
}

pid_t dtrun_spawn(char *const argv[], const dtrun_env *env, int out_fd, int err_fd)
{
    pid_t agent = getpid();
    pid_t pid = dtrun_fork();
    if (pid != 0) {
        if (pid > 0) setpgid(pid, pid);   /* also in the child: whichever runs first */
        return pid;
    }
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != agent) _exit(128 + SIGKILL);   /* the agent died before prctl */
    if (dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) child_fail("cannot set up output of ", argv[0]);
    execvpe(argv[0], argv, env->v);
    child_fail("cannot execute ", argv[0]);
    return -1;
}

void dtrun_signal_group(pid_t pgid, int sig)
{
    if (pgid > 0) kill(-pgid, sig);
}
