/* Failure records and torchrun's failure summary (see summary.h). */
#define _GNU_SOURCE
#include "summary.h"

#include <dtrain/util.h>

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

const char *dtrun_signame(int sig)
{
    static _Thread_local char buf[32];
    const char *a = sigabbrev_np(sig);
    snprintf(buf, sizeof buf, "SIG%s", a ? a : "?");
    return buf;
}

/* The error file's message and timestamp; false when absent or unreadable. */
static bool read_error_file(const char *path, char *msg, size_t cap, int64_t *wall_ms)
{
    FILE *fp = fopen(path, "r");
    if (!fp) return false;
    char *text = malloc(1 << 20);
    size_t n = text ? fread(text, 1, (1 << 20) - 1, fp) : 0;
    fclose(fp);
    if (!text) return false;
    text[n] = '\0';
    cJSON *root = cJSON_Parse(text);
    bool ok = false;
    if (root) {
        cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "message");
        cJSON *ts = NULL;
        if (cJSON_IsString(m)) {
            snprintf(msg, cap, "%s", m->valuestring);
            ts = cJSON_GetObjectItemCaseSensitive(root, "timestamp");
            ok = true;
        } else if (cJSON_IsObject(m)) {
            cJSON *mm = cJSON_GetObjectItemCaseSensitive(m, "message");
            cJSON *extra = cJSON_GetObjectItemCaseSensitive(m, "extraInfo");
            if (cJSON_IsString(mm)) {
                snprintf(msg, cap, "%s", mm->valuestring);
                ok = true;
            }
            if (cJSON_IsObject(extra)) ts = cJSON_GetObjectItemCaseSensitive(extra, "timestamp");
        }
        if (ok && ts) {
            double t = cJSON_IsString(ts) ? atof(ts->valuestring) : cJSON_IsNumber(ts) ? ts->valuedouble : 0;
            if (t > 0) *wall_ms = (int64_t)(t * 1000);
        }
        cJSON_Delete(root);
    } else {
        /* not JSON: show the text itself, as torch would fail to */
        snprintf(msg, cap, "(error file is not JSON) %.*s", (int)(n > 500 ? 500 : n), text);
        ok = n > 0;
    }
    free(text);
    return ok;
}

void dtrun_failure_make(dtrun_failure *f, const char *host, int rank, int local_rank, pid_t pid,
                        int wait_status, const char *error_file, bool oom)
{
    memset(f, 0, sizeof *f);
    f->wall_ms = dt_wall_ms();
    snprintf(f->host, sizeof f->host, "%s", host);
    f->rank = rank, f->local_rank = local_rank, f->pid = pid;
    f->exitcode = WIFSIGNALED(wait_status) ? -WTERMSIG(wait_status) : WEXITSTATUS(wait_status);
    if (error_file && read_error_file(error_file, f->message, sizeof f->message, &f->wall_ms))
        snprintf(f->error_file, sizeof f->error_file, "%s", error_file);
    if (f->message[0]) return;
    if (f->exitcode < 0) {
        int sig = -f->exitcode;
        if (oom)
            snprintf(f->message, sizeof f->message, "Signal %d (%s) received by PID %d: killed by the kernel for out of memory (the cgroup's oom_kill count rose)",
                     sig, dtrun_signame(sig), (int)pid);
        else
            snprintf(f->message, sizeof f->message, "Signal %d (%s) received by PID %d%s", sig, dtrun_signame(sig), (int)pid,
                     sig == SIGKILL ? " (not sent by dtrun; no OOM kill recorded in this cgroup)" : "");
    } else if (f->exitcode == 127) {
        snprintf(f->message, sizeof f->message, "the program could not be executed (see the rank's stderr)");
    } else {
        snprintf(f->message, sizeof f->message, "the program recorded no error (dtrain programs write TORCHELASTIC_ERROR_FILE; see docs/launcher.md)");
    }
}

/* Fields are tab-separated; tabs and newlines inside become spaces. */
int dtrun_failure_encode(const dtrun_failure *f, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%d\t%d\t%d\t%d\t%lld\t%s\t%s\t%s", f->rank, f->local_rank, f->exitcode, (int)f->pid,
                     (long long)f->wall_ms, f->host, f->error_file, f->message);
    if (n < 0) return -1;
    size_t len = (size_t)n < cap ? (size_t)n : cap - 1;
    int tabs = 0;
    for (size_t i = 0; i < len; i++) {
        if (out[i] == '\t' && tabs < 7) { tabs++; continue; }
        if (out[i] == '\t' || out[i] == '\n') out[i] = ' ';
    }
    return (int)len;
}

int dtrun_failure_decode(dtrun_failure *f, const char *s, size_t len)
{
    char buf[12288];
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *field[8];
    char *p = buf;
    for (int i = 0; i < 8; i++) {
        field[i] = p;
        char *t = i < 7 ? strchr(p, '\t') : NULL;
        if (i < 7 && !t) return -1;
        if (t) { *t = '\0'; p = t + 1; }
    }
    memset(f, 0, sizeof *f);
    f->rank = atoi(field[0]), f->local_rank = atoi(field[1]), f->exitcode = atoi(field[2]), f->pid = atoi(field[3]);
    f->wall_ms = atoll(field[4]);
    snprintf(f->host, sizeof f->host, "%s", field[5]);
    snprintf(f->error_file, sizeof f->error_file, "%s", field[6]);
    snprintf(f->message, sizeof f->message, "%s", field[7]);
    return 0;
}

static void print_one(FILE *o, const dtrun_failure *f)
{
    char when[64];
    time_t t = (time_t)(f->wall_ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%d_%H:%M:%S", &tm);
    fprintf(o, "[%d]:\n  time      : %s\n  host      : %s\n  rank      : %d (local_rank: %d)\n", f->rank, when, f->host, f->rank, f->local_rank);
    if (f->exitcode < 0)
        fprintf(o, "  exitcode  : %d (pid: %d, signal %s)\n", f->exitcode, (int)f->pid, dtrun_signame(-f->exitcode));
    else
        fprintf(o, "  exitcode  : %d (pid: %d)\n", f->exitcode, (int)f->pid);
    fprintf(o, "  error_file: %s\n  traceback : %s\n", f->error_file[0] ? f->error_file : "<N/A>", f->message);
}

void dtrun_summary_print(const char *title, const dtrun_failure *root, const dtrun_failure *others, int nothers)
{
    static const char rule[] = "============================================================";
    static const char sect[] = "------------------------------------------------------------";
    FILE *o = stderr;
    if (!root && nothers > 0) root = &others[0], others++, nothers--;
    fprintf(o, "%s\n%s FAILED\n%s\nFailures:\n", rule, title, sect);
    if (nothers == 0) fprintf(o, "  <NO_OTHER_FAILURES>\n");
    for (int i = 0; i < nothers; i++) print_one(o, &others[i]);
    fprintf(o, "%s\nRoot Cause (first observed failure):\n", sect);
    if (root) print_one(o, root);
    else fprintf(o, "  <NO_FAILURE_RECORDED>\n");
    fprintf(o, "%s\n", rule);
    fflush(o);
}
