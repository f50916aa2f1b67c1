/* The error file: a process with TORCHELASTIC_ERROR_FILE set that failed a
 * dtrain call writes torch's JSON there when it exits; dt_error_file_record's
 * message is kept over later errors; no error, no file; no variable, no file. */
#include "dt_test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_path[256];

/* Run body in a child with the variable set (or not), return its exit status. */
static int in_child(void (*body)(void), bool set_var)
{
    unlink(g_path);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        if (set_var) setenv("TORCHELASTIC_ERROR_FILE", g_path, 1);
        else unsetenv("TORCHELASTIC_ERROR_FILE");
        body();
        exit(1);   /* atexit handlers run */
    }
    int st;
    waitpid(pid, &st, 0);
    return st;
}

/* The file's message.message, or NULL when absent; checks torch's layout. */
static char *read_message(void)
{
    FILE *f = fopen(g_path, "r");
    if (!f) return NULL;
    static char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    cJSON *root = cJSON_Parse(text);
    if (!root) return strdup("<not JSON>");
    cJSON *m = cJSON_GetObjectItem(root, "message");
    cJSON *mm = cJSON_GetObjectItem(m, "message");
    cJSON *extra = cJSON_GetObjectItem(m, "extraInfo");
    cJSON *ts = cJSON_GetObjectItem(extra, "timestamp");
    cJSON *stack = cJSON_GetObjectItem(extra, "py_callstack");
    char *out = NULL;
    if (cJSON_IsString(mm) && cJSON_IsString(ts) && atoll(ts->valuestring) > 1600000000 && cJSON_IsString(stack))
        out = strdup(mm->valuestring);
    else
        out = strdup("<wrong layout>");
    cJSON_Delete(root);
    return out;
}

static void fails(void) { dt_set_error(DT_ETIMEOUT, "allreduce seq %d on group \"x\"", 7); }
static void wraps(void) { dt_set_error(DT_EPEER, "inner"); dt_error_wrap(DT_EPEER, "outer"); }
static void records(void) { dt_error_file_record("my own words"); dt_set_error(DT_EIO, "later"); }
static void nothing(void) {}
static void from_thread_then_cleared(void) { dt_set_error(DT_EIO, "background"); dt_clear_error(); }

static void t_written_on_error(void)
{
    in_child(fails, true);
    char *m = read_message();
    DT_ASSERT_STREQ(m, "timed out: allreduce seq 7 on group \"x\"");
    free(m);
    in_child(wraps, true);
    m = read_message();
    DT_ASSERT_STREQ(m, "outer: peer failed or disconnected: inner");
    free(m);
}

static void t_explicit_kept(void)
{
    in_child(records, true);
    char *m = read_message();
    DT_ASSERT_STREQ(m, "my own words");
    free(m);
}

static void t_no_error_no_file(void)
{
    in_child(nothing, true);
    DT_ASSERT(access(g_path, F_OK) != 0);
    in_child(fails, false);
    DT_ASSERT(access(g_path, F_OK) != 0);
    /* an error this thread cleared still leaves the process's most recent one */
    in_child(from_thread_then_cleared, true);
    char *m = read_message();
    DT_ASSERT_STREQ(m, "I/O error: background");
    free(m);
}

int main(void)
{
    snprintf(g_path, sizeof g_path, "/tmp/dt_errfile_%d.json", (int)getpid());
    DT_RUN(t_written_on_error);
    DT_RUN(t_explicit_kept);
    DT_RUN(t_no_error_no_file);
    unlink(g_path);
    return DT_TEST_END();
}
