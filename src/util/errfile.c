/* The error file a launcher reads (TORCHELASTIC_ERROR_FILE, torch's JSON; see
 * util.h). error.c tells this file about every error it sets; the first one
 * registers the exit handler. Does not decide whether the exit is a failure:
 * a launcher reads the file only when the worker failed. */
#include <dtrain/util.h>

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static bool g_enabled;          /* TORCHELASTIC_ERROR_FILE was set at the first error */
static bool g_recorded;         /* dt_error_file_record wrote it: the exit handler keeps it */
static int g_code;              /* the process's most recent error (any thread) */
static char g_msg[1024];

static int write_file(const char *path, const char *message, int code)
{
    char stack[1400], ts[32];
    snprintf(stack, sizeof stack, "%s (%s, pid %d; dtrain %s)", message, code ? dt_errname(code) : "no code", (int)getpid(), dt_version());
    snprintf(ts, sizeof ts, "%lld", (long long)(dt_wall_ms() / 1000));
    cJSON *root = cJSON_CreateObject(), *m = cJSON_AddObjectToObject(root, "message");
    cJSON_AddStringToObject(m, "message", message);
    cJSON *extra = cJSON_AddObjectToObject(m, "extraInfo");
    cJSON_AddStringToObject(extra, "py_callstack", stack);
    cJSON_AddStringToObject(extra, "timestamp", ts);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return DT_ENOMEM;
    int rc = 0, fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) rc = DT_EIO;
    else {
        size_t len = strlen(text);
        ssize_t w = write(fd, text, len);   /* one write; no dt_set_error from here (it would recurse) */
        if (w != (ssize_t)len) rc = DT_EIO;
        close(fd);
    }
    free(text);
    return rc;
}

static void at_exit(void)
{
    const char *path = getenv("TORCHELASTIC_ERROR_FILE");
    if (!path || !path[0]) return;
    char msg[1024];
    int code;
    pthread_mutex_lock(&g_lock);
    bool skip = g_recorded;
    if (dt_last_error_code() != 0) {   /* the exiting thread's own error comes first */
        code = dt_last_error_code();
        snprintf(msg, sizeof msg, "%s", dt_last_error());
    } else {
        code = g_code;
        snprintf(msg, sizeof msg, "%s", g_msg);
    }
    pthread_mutex_unlock(&g_lock);
    if (!skip && code != 0) (void)write_file(path, msg, code);
}

static void init_once(void)
{
    const char *path = getenv("TORCHELASTIC_ERROR_FILE");
    g_enabled = path && path[0];
    if (g_enabled) atexit(at_exit);
}

/* Called by error.c for every error set (any thread). */
void dt__error_file_note(int code, const char *msg);
void dt__error_file_note(int code, const char *msg)
{
    pthread_once(&g_once, init_once);
    if (!g_enabled) return;
    pthread_mutex_lock(&g_lock);
    g_code = code;
    snprintf(g_msg, sizeof g_msg, "%s", msg);
    pthread_mutex_unlock(&g_lock);
}

int dt_error_file_record(const char *message)
{
    const char *path = getenv("TORCHELASTIC_ERROR_FILE");
    if (!path || !path[0]) return 0;
    int rc = write_file(path, message, dt_last_error_code());
    pthread_mutex_lock(&g_lock);
    if (rc == 0) g_recorded = true;
    pthread_mutex_unlock(&g_lock);
    return rc == 0 ? 0 : dt_set_error(rc, "cannot write the error file %s", path);
}
