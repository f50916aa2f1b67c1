/* Time: monotonic, sleeps, deadlines. */
#include "dt_test.h"

#include <stdint.h>

static void t_clock(void)
{
    int64_t a = dt_now_ns();
    dt_sleep_ms(20);
    int64_t b = dt_now_ns();
    DT_ASSERT(b - a >= 20 * 1000000LL);
    DT_ASSERT(dt_wall_ms() > 1700000000000LL);
    DT_ASSERT(dt_num_cpus() >= 1);
}

static void t_deadline(void)
{
    DT_ASSERT_EQ(dt_deadline_ns(-1), INT64_MAX);
    DT_ASSERT_EQ(dt_ms_left(INT64_MAX), -1);
    int64_t d = dt_deadline_ns(10000);
    int64_t left = dt_ms_left(d);
    DT_ASSERT(left > 9000 && left <= 10000);
    DT_ASSERT_EQ(dt_ms_left(dt_deadline_ns(0)), 0);
    DT_ASSERT_EQ(dt_ms_left(dt_now_ns() - 1000), 0);
}

int main(void)
{
    DT_RUN(t_clock);
    DT_RUN(t_deadline);
    return DT_TEST_END();
}
