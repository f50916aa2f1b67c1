/* The compute pool's size from the environment: run with DTRAIN_NUM_THREADS and/or
 * LOCAL_WORLD_SIZE set (see CMakeLists.txt); argv[1] is the thread count expected, or
 * "cores/N" for dt_num_cpus() / N (at least 1). */
#include "dt_test.h"

#include <stdlib.h>

static int g_expect;

static void t_pool_size(void)
{
    DT_ASSERT_EQ(dt_tensor_num_threads(), g_expect);
    /* kernels run (and agree) at that size */
    DT_SCOPE {
        dt_tensor *a = dt_arange(DT_F32, 0, 100000, 1);
        dt_tensor *s = dt_sum(dt_mul_scalar(a, 2), NULL, 0, false);
        DT_ASSERT_NEAR(dt_tensor_item(s), 99999.0 * 100000.0, 1e4);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    if (strncmp(argv[1], "cores/", 6) == 0) {
        int n = dt_num_cpus() / atoi(argv[1] + 6);
        g_expect = n > 0 ? n : 1;
    } else {
        g_expect = atoi(argv[1]);
    }
    DT_RUN(t_pool_size);
    return DT_TEST_END();
}
