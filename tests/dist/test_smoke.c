/* Smoke: all_reduce (small, large), broadcast, barrier on 2 ranks. */
#include "spawn.h"

static void body(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 20000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    DT_ASSERT_EQ(dt_pg_rank(pg), rank);
    DT_ASSERT_EQ(dt_pg_size(pg), n);
    float a[3] = {1 + rank, 2, 3};
    DT_ASSERT_OK(dt_pg_allreduce(pg, a, a, 3, DT_F32, DT_RED_SUM, NULL, NULL));
    DT_ASSERT_NEAR(a[0], n * (n + 1) / 2, 0);
    DT_ASSERT_NEAR(a[1], 2 * n, 0);
    size_t big = 1 << 20;
    float *b = malloc(big * sizeof(float));
    for (size_t i = 0; i < big; i++) b[i] = (float)(i % 7 + rank);
    DT_ASSERT_OK(dt_pg_allreduce(pg, b, b, big, DT_F32, DT_RED_SUM, NULL, NULL));
    for (size_t i = 0; i < big; i++)
        DT_ASSERT_MSG(b[i] == (float)(n * (i % 7) + n * (n - 1) / 2), "b[%zu] = %g", i, b[i]);
    for (size_t i = 0; i < big; i++) b[i] = rank == 1 ? (float)i : 0;
    DT_ASSERT_OK(dt_pg_broadcast(pg, b, big, DT_F32, 1 % n, NULL, NULL));
    for (size_t i = 0; i < big; i++) DT_ASSERT_MSG(b[i] == (n > 1 ? (float)i : 0), "bcast b[%zu] = %g", i, b[i]);
    DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
    free(b);
    dt_destroy_process_group(pg);
}

static void t_smoke2(void) { DT_ASSERT_EQ(spawn_ranks(2, body, NULL, 0), 0); }
static void t_smoke3(void) { DT_ASSERT_EQ(spawn_ranks(3, body, NULL, 0), 0); }

int main(void)
{
    DT_RUN(t_smoke2);
    DT_RUN(t_smoke3);
    return DT_TEST_END();
}
