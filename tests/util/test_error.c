/* The error model: table, names, thread-local last error, wrapping. */
#include "dt_test.h"

#include <errno.h>
#include <pthread.h>

static void t_table(void)
{
    DT_ASSERT_STREQ(dt_strerror(DT_EINVAL), "invalid argument");
    DT_ASSERT_STREQ(dt_strerror(DT_ETIMEOUT), "timed out");
    DT_ASSERT_STREQ(dt_strerror(0), "success");
    DT_ASSERT_STREQ(dt_strerror(-9999), "unknown error");
    DT_ASSERT_STREQ(dt_errname(DT_ENOMEM), "DT_ENOMEM");
    DT_ASSERT_STREQ(dt_errname(DT_EINTERNAL), "DT_EINTERNAL");
    /* codes are distinct and negative */
    int codes[] = {
#define C(name, code, msg) code,
        DT_ERROR_MAP(C)
#undef C
    };
    int n = (int)(sizeof codes / sizeof codes[0]);
    for (int i = 0; i < n; i++) {
        DT_ASSERT(codes[i] < 0);
        DT_ASSERT_NE(strcmp(dt_strerror(codes[i]), "unknown error"), 0);
        for (int j = i + 1; j < n; j++) DT_ASSERT_NE(codes[i], codes[j]);
    }
}

static void t_last_error(void)
{
    dt_clear_error();
    DT_ASSERT_STREQ(dt_last_error(), "");
    DT_ASSERT_EQ(dt_last_error_code(), 0);
    int rc = dt_set_error(DT_ETIMEOUT, "all_reduce seq %d on group %s", 7, "world");
    DT_ASSERT_EQ(rc, DT_ETIMEOUT);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ETIMEOUT);
    DT_ASSERT_STREQ(dt_last_error(), "timed out: all_reduce seq 7 on group world");
    rc = dt_error_wrap(DT_EPEER, "rank %d", 3);
    DT_ASSERT_EQ(rc, DT_EPEER);
    DT_ASSERT_STREQ(dt_last_error(), "rank 3: timed out: all_reduce seq 7 on group world");
    dt_set_error_errno(DT_EIO, ENOENT, "open %s", "/x");
    DT_ASSERT_CONTAINS(dt_last_error(), "I/O error: open /x: No such file");
}

static void *other_thread(void *arg)
{
    (void)arg;
    /* a fresh thread starts with no error, and its error stays its own */
    if (dt_last_error_code() != 0) return (void *)1;
    dt_set_error(DT_EAUTH, "thread");
    return NULL;
}

static void t_thread_local(void)
{
    dt_set_error(DT_EINVAL, "main");
    pthread_t t;
    void *ret;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, &ret);
    DT_ASSERT(ret == NULL);
    DT_ASSERT_STREQ(dt_last_error(), "invalid argument: main");
}

static int helper_goto(int fail_at, int *cleaned)
{
    int rc = 0;
    DT_CHECK_GOTO(fail_at == 1 ? dt_set_error(DT_EIO, "step 1") : 0, rc, fail);
    DT_CHECK_GOTO(fail_at == 2 ? dt_set_error(DT_ENOSPC, "step 2") : 0, rc, fail);
    return 0;
fail:
    *cleaned = 1;
    return rc;
}

static int helper_check(int fail) { DT_CHECK(fail ? dt_set_error(DT_ERANGE, "x") : 0); return 5; }

static void t_macros(void)
{
    int cleaned = 0;
    DT_ASSERT_EQ(helper_goto(0, &cleaned), 0);
    DT_ASSERT_EQ(cleaned, 0);
    DT_ASSERT_EQ(helper_goto(2, &cleaned), DT_ENOSPC);
    DT_ASSERT_EQ(cleaned, 1);
    DT_ASSERT_EQ(helper_check(0), 5);
    DT_ASSERT_EQ(helper_check(1), DT_ERANGE);
}

int main(void)
{
    DT_RUN(t_table);
    DT_RUN(t_last_error);
    DT_RUN(t_thread_local);
    DT_RUN(t_macros);
    return DT_TEST_END();
}
