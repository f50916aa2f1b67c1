/* Environment knobs: defaults, parsing, bounds, clear errors. */
#include "dt_test.h"

#include <stdlib.h>

static void t_defaults(void)
{
    int64_t v = -1;
    unsetenv("DTRAIN_TIMEOUT");
    DT_ASSERT_OK(dt_param_int(DT_PARAM_TIMEOUT, &v));
    DT_ASSERT_EQ(v, 1800);
    setenv("DTRAIN_TIMEOUT", "", 1);
    DT_ASSERT_OK(dt_param_int(DT_PARAM_TIMEOUT, &v));
    DT_ASSERT_EQ(v, 1800);
    unsetenv("DTRAIN_LOG");
    DT_ASSERT_STREQ(dt_param_str(DT_PARAM_LOG), "warn");
    DT_ASSERT_STREQ(dt_param_get_info(DT_PARAM_TIMEOUT)->env, "DTRAIN_TIMEOUT");
}

static void t_values(void)
{
    int64_t v = -1;
    setenv("DTRAIN_TIMEOUT", "42", 1);
    DT_ASSERT_OK(dt_param_int(DT_PARAM_TIMEOUT, &v));
    DT_ASSERT_EQ(v, 42);
    setenv("DTRAIN_SOCKET_IFNAME", "eth1", 1);
    DT_ASSERT_STREQ(dt_param_str(DT_PARAM_SOCKET_IFNAME), "eth1");
}

static void t_bad(void)
{
    int64_t v = 7;
    setenv("DTRAIN_TIMEOUT", "abc", 1);
    DT_ASSERT_ERR(dt_param_int(DT_PARAM_TIMEOUT, &v), DT_EINVAL);
    DT_ASSERT_STREQ(dt_last_error(), "invalid argument: DTRAIN_TIMEOUT='abc' is not an integer");
    DT_ASSERT_EQ(v, 7);
    setenv("DTRAIN_TIMEOUT", "12x", 1);
    DT_ASSERT_ERR(dt_param_int(DT_PARAM_TIMEOUT, &v), DT_EINVAL);
    setenv("DTRAIN_TIMEOUT", "0", 1);
    DT_ASSERT_ERR(dt_param_int(DT_PARAM_TIMEOUT, &v), DT_EINVAL);
    DT_ASSERT_CONTAINS(dt_last_error(), "DTRAIN_TIMEOUT=0 is outside 1..");
    setenv("DTRAIN_NUM_THREADS", "-2", 1);
    DT_ASSERT_ERR(dt_param_int(DT_PARAM_NUM_THREADS, &v), DT_EINVAL);
    setenv("DTRAIN_NUM_THREADS", "99999999999999999999999", 1);
    DT_ASSERT_ERR(dt_param_int(DT_PARAM_NUM_THREADS, &v), DT_EINVAL);
    DT_ASSERT_ERR(dt_param_int(DT_PARAM_LOG, &v), DT_EINVAL); /* a string knob */
    unsetenv("DTRAIN_TIMEOUT");
    unsetenv("DTRAIN_NUM_THREADS");
}

static void t_table_sane(void)
{
    for (int i = 0; i < DT_PARAM_COUNT; i++) {
        const dt_param_info *p = dt_param_get_info((dt_param_id)i);
        DT_ASSERT(p && p->env && strncmp(p->env, "DTRAIN_", 7) == 0);
        DT_ASSERT(p->doc && strlen(p->doc) > 10);
        if (i > 0) DT_ASSERT_MSG(strcmp(dt_param_get_info((dt_param_id)(i - 1))->env, p->env) < 0,
                                 "params.def not in alphabetical order at %s", p->env);
        if (p->type == DT_PARAM_INT) {
            /* the default parses and is within bounds */
            unsetenv(p->env);
            int64_t v;
            DT_ASSERT_OK(dt_param_int((dt_param_id)i, &v));
        }
    }
    DT_ASSERT(dt_param_get_info(DT_PARAM_COUNT) == NULL);
}

int main(void)
{
    DT_RUN(t_defaults);
    DT_RUN(t_values);
    DT_RUN(t_bad);
    DT_RUN(t_table_sane);
    return DT_TEST_END();
}
