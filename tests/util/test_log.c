/* Logging: levels, subsystem mask, rank prefix, one line per write, bad settings. */
#include "dt_test.h"

#include <stdlib.h>
#include <unistd.h>

/* Run fn with stderr captured into buf. */
static void capture(void (*fn)(void), char *buf, size_t cap)
{
    char path[] = "/tmp/dt_test_log_XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, buf, cap - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
}

static void emit(void)
{
    DT_LOGE(DIST, "an error %d", 1);
    DT_LOGW(STORE, "a warning");
    DT_LOGI(DIST, "some info");
    DT_LOGD(TCP, "debug detail");
}

static void t_levels(void)
{
    char out[4096];
    setenv("DTRAIN_LOG", "warn", 1);
    setenv("DTRAIN_LOG_SUBSYS", "all", 1);
    DT_ASSERT_OK(dt_log_reload());
    dt_log_set_rank(-1);
    capture(emit, out, sizeof out);
    DT_ASSERT_STREQ(out, "[dtrain ERROR dist] an error 1\n[dtrain WARN store] a warning\n");

    setenv("DTRAIN_LOG", "debug", 1);
    DT_ASSERT_OK(dt_log_reload());
    dt_log_set_rank(3);
    capture(emit, out, sizeof out);
    DT_ASSERT_CONTAINS(out, "[dtrain r3 INFO dist] some info\n");
    DT_ASSERT_CONTAINS(out, "[dtrain r3 DEBUG tcp] debug detail\n");
    DT_ASSERT(dt_log_enabled(DT_LOG_DEBUG, DT_SUB_TCP));
    DT_ASSERT(!dt_log_enabled(DT_LOG_TRACE, DT_SUB_TCP));
}

static void t_subsys(void)
{
    char out[4096];
    setenv("DTRAIN_LOG", "trace", 1);
    setenv("DTRAIN_LOG_SUBSYS", "store,tcp", 1);
    DT_ASSERT_OK(dt_log_reload());
    dt_log_set_rank(0);
    capture(emit, out, sizeof out);
    DT_ASSERT_STREQ(out, "[dtrain r0 WARN store] a warning\n[dtrain r0 DEBUG tcp] debug detail\n");
}

static void t_bad_settings(void)
{
    setenv("DTRAIN_LOG", "verbose", 1);
    setenv("DTRAIN_LOG_SUBSYS", "all", 1);
    DT_ASSERT_ERR(dt_log_reload(), DT_EINVAL);
    DT_ASSERT_CONTAINS(dt_last_error(), "'verbose'");
    DT_ASSERT_CONTAINS(dt_last_error(), "DTRAIN_LOG");
    setenv("DTRAIN_LOG", "info", 1);
    setenv("DTRAIN_LOG_SUBSYS", "dist,nosuch", 1);
    DT_ASSERT_ERR(dt_log_reload(), DT_EINVAL);
    DT_ASSERT_CONTAINS(dt_last_error(), "'nosuch'");
    /* the old, valid setting (store,tcp at trace) stays */
    DT_ASSERT(dt_log_enabled(DT_LOG_TRACE, DT_SUB_TCP));
    DT_ASSERT(!dt_log_enabled(DT_LOG_ERROR, DT_SUB_DIST));
}

static void long_line(void)
{
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    DT_LOGE(APP, "%s", big);
}

static void t_long_line_truncated(void)
{
    char out[8192];
    setenv("DTRAIN_LOG", "warn", 1);
    setenv("DTRAIN_LOG_SUBSYS", "all", 1);
    DT_ASSERT_OK(dt_log_reload());
    capture(long_line, out, sizeof out);
    size_t n = strlen(out);
    DT_ASSERT(n > 1000 && n < 2100);
    DT_ASSERT_EQ(out[n - 1], '\n');
    DT_ASSERT(strchr(out, '\n') == out + n - 1);
}

int main(void)
{
    DT_RUN(t_levels);
    DT_RUN(t_subsys);
    DT_RUN(t_bad_settings);
    DT_RUN(t_long_line_truncated);
    return DT_TEST_END();
}
