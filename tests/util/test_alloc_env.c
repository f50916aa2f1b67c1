/* DTRAIN_ALLOC_FAIL_AT=2 (set by ctest) fails exactly the second allocation. */
#include "dt_test.h"

static void t_env_armed(void)
{
    void *a = dt_alloc(16, DT_MEM_OTHER);
    void *b = dt_alloc(16, DT_MEM_OTHER);
    void *c = dt_alloc(16, DT_MEM_OTHER);
    DT_ASSERT(a != NULL);
    DT_ASSERT(b == NULL);
    DT_ASSERT(c != NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ENOMEM);
    dt_free(a);
    dt_free(c);
}

int main(void)
{
    DT_RUN(t_env_armed);
    return DT_TEST_END();
}
