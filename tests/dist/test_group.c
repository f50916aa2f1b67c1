/* The rest of dist.h over real processes: subgroups (members in any order,
 * non-member handles, collectives in two subgroups at once), asynchronous
 * collectives (queued, waited out of order, a wait that expires before its
 * op completes, sync calls behind async ones), the byte-object collectives,
 * monitored_barrier (everyone there; a rank missing, named, and the group
 * still usable), and dt_pg_alloc buffers (the direct paths, in place, heap
 * exhaustion). */
#include "spawn.h"

#include <string.h>

static void store_signal(dt_pg *pg, const char *key) { DT_ASSERT_OK(dt_store_set(dt_pg_store(pg), key, "1", 1)); }

static void store_await(dt_pg *pg, const char *key)
{
    dt_store_set_timeout(dt_pg_store(pg), 60000);
    void *v = NULL;
    size_t n = 0;
    DT_ASSERT_OK(dt_store_get(dt_pg_store(pg), key, &v, &n));
    dt_free(v);
}

/* World 4: subgroups {0, 2} and {3, 1} (group rank 0 is world rank 3). */
static void subgroups(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *world = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(world, "init: %s", dt_last_error());
    int even_ranks[] = {0, 2}, odd_ranks[] = {3, 1};
    dt_pg_opts o = DT_PG_OPTS_INIT;
    o.name = "evens";
    dt_pg *even = dt_new_group(world, even_ranks, 2, &o);
    DT_ASSERT_MSG(even, "new_group evens: %s", dt_last_error());
    dt_pg *odd = dt_new_group(world, odd_ranks, 2, NULL);
    DT_ASSERT_MSG(odd, "new_group odds: %s", dt_last_error());
    dt_pg *mine = rank % 2 ? odd : even, *other = rank % 2 ? even : odd;
    DT_ASSERT(dt_pg_is_member(mine));
    DT_ASSERT(!dt_pg_is_member(other));
    DT_ASSERT_EQ(dt_pg_rank(other), -1);
    DT_ASSERT_EQ(dt_pg_size(other), -1);
    DT_ASSERT_STREQ(dt_pg_backend(other), "none");
    DT_ASSERT_STREQ(dt_pg_name(even), "evens");
    DT_ASSERT_EQ(dt_pg_size(mine), 2);
    int want_rank = rank == 0 ? 0 : rank == 2 ? 1 : rank == 3 ? 0 : 1;
    DT_ASSERT_EQ(dt_pg_rank(mine), want_rank);
    DT_ASSERT_EQ(dt_pg_world_rank(odd, 0), 3);
    DT_ASSERT_EQ(dt_pg_group_rank(odd, 1), 1);
    DT_ASSERT_ERR(dt_pg_group_rank(odd, 2), DT_ENOTMEMBER);
    DT_ASSERT_ERR(dt_pg_world_rank(odd, 2), DT_ERANGE);
    float x = 1;
    DT_ASSERT_ERR(dt_pg_allreduce(other, &x, &x, 1, DT_F32, DT_RED_SUM, NULL, NULL), DT_ENOTMEMBER);
    /* both subgroups at once, while each also sums world ranks */
    for (int k = 0; k < 20; k++) {
        float v[3] = {(float)rank, 1, (float)k};
        DT_ASSERT_OK(dt_pg_allreduce(mine, v, v, 3, DT_F32, DT_RED_SUM, NULL, NULL));
        DT_ASSERT_NEAR(v[0], rank % 2 ? 4 : 2, 0);
        DT_ASSERT_NEAR(v[1], 2, 0);
        DT_ASSERT_NEAR(v[2], 2 * k, 0);
        float b = dt_pg_rank(mine) == 0 ? (float)(100 + rank) : 0;
        DT_ASSERT_OK(dt_pg_broadcast(mine, &b, 1, DT_F32, 0, NULL, NULL));
        DT_ASSERT_NEAR(b, rank % 2 ? 103 : 100, 0);
    }
    int32_t big[5000];
    for (int i = 0; i < 5000; i++) big[i] = rank + i;
    DT_ASSERT_OK(dt_pg_allreduce(world, big, big, 5000, DT_I32, DT_RED_SUM, NULL, NULL));
    for (int i = 0; i < 5000; i++) DT_ASSERT_EQ(big[i], 6 + 4 * i);
    /* point to point inside a subgroup uses group ranks */
    int32_t m = rank;
    if (dt_pg_rank(mine) == 0) DT_ASSERT_OK(dt_pg_send(mine, &m, 1, DT_I32, 1, 5, NULL, NULL));
    else {
        DT_ASSERT_EQ(dt_pg_recv(mine, &m, 1, DT_I32, 0, 5, NULL, NULL), 0);
        DT_ASSERT_EQ(m, rank % 2 ? 3 : 0);
    }
    dt_destroy_process_group(odd);
    dt_destroy_process_group(even);
    DT_ASSERT_OK(dt_pg_barrier(world, NULL, NULL));
    dt_destroy_process_group(world);
}

/* Async collectives: queued in order, waited in any order; a wait that
 * expires first (the last rank joins only after rank 0's wait gave up). */
static void async_ops(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    enum { K = 8, C = 100000 };
    float *bufs[K];
    dt_work *w[K];
    for (int k = 0; k < K; k++) {
        bufs[k] = malloc(C * sizeof(float));
        for (int i = 0; i < C; i++) bufs[k][i] = (float)(k + rank);
        DT_ASSERT_OK(dt_pg_allreduce(pg, bufs[k], bufs[k], C, DT_F32, DT_RED_SUM, NULL, &w[k]));
        DT_ASSERT(w[k]);
    }
    float s = (float)rank; /* synchronous, queued behind the async ones */
    DT_ASSERT_OK(dt_pg_allreduce(pg, &s, &s, 1, DT_F32, DT_RED_MAX, NULL, NULL));
    DT_ASSERT_NEAR(s, n - 1, 0);
    for (int k = K - 1; k >= 0; k--) {
        DT_ASSERT_OK(dt_work_wait(w[k], -1));
        DT_ASSERT(dt_work_is_completed(w[k]));
        DT_ASSERT_EQ(dt_work_error(w[k]), 0);
        double ts, te, now = dt_now_s();
        DT_ASSERT_OK(dt_work_times(w[k], &ts, &te));
        DT_ASSERT(ts > 0 && ts <= te && te <= now);
        if (k > 0) { /* the queue runs them in order */
            double ps;
            DT_ASSERT_OK(dt_work_times(w[k - 1], &ps, NULL));
            DT_ASSERT(ps <= ts);
        }
        for (int i = 0; i < C; i += 997) DT_ASSERT_NEAR(bufs[k][i], n * k + n * (n - 1) / 2, 0);
        dt_work_free(w[k]);
        free(bufs[k]);
    }
    /* an expired wait: the op goes on and completes later */
    float y = 1;
    dt_work *wy = NULL;
    if (rank == n - 1 && n > 1) store_await(pg, "test/waited");
    DT_ASSERT_OK(dt_pg_allreduce(pg, &y, &y, 1, DT_F32, DT_RED_SUM, NULL, &wy));
    if (rank == 0 && n > 1) {
        DT_ASSERT_ERR(dt_work_wait(wy, 20), DT_ETIMEOUT);
        DT_ASSERT_CONTAINS(dt_last_error(), "all_reduce #");
        DT_ASSERT(!dt_work_is_completed(wy));
        DT_ASSERT_ERR(dt_work_times(wy, NULL, NULL), DT_ESTATE);
        store_signal(pg, "test/waited");
    }
    DT_ASSERT_OK(dt_work_wait(wy, -1));
    DT_ASSERT_NEAR(y, n, 0);
    dt_work_free(wy);
    /* a handle freed before completion: the op still runs */
    float z = 2;
    dt_work *wz = NULL;
    DT_ASSERT_OK(dt_pg_allreduce(pg, &z, &z, 1, DT_F32, DT_RED_SUM, NULL, &wz));
    dt_work_free(wz);
    DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
    DT_ASSERT_NEAR(z, 2 * n, 0);
    DT_ASSERT_EQ(dt_pg_error(pg), 0);
    dt_destroy_process_group(pg);
}

static void objects(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    char text[64];
    int len = snprintf(text, sizeof text, "hello from rank %d%s", rank, rank == 1 ? "!!" : "");
    /* broadcast_bytes from the last rank */
    int root = n - 1;
    void *data = rank == root ? text : NULL;
    size_t dl = rank == root ? (size_t)len : 0;
    DT_ASSERT_OK(dt_pg_broadcast_bytes(pg, &data, &dl, root, NULL));
    char want[64];
    int wl = snprintf(want, sizeof want, "hello from rank %d%s", root, root == 1 ? "!!" : "");
    DT_ASSERT_EQ(dl, (size_t)wl);
    DT_ASSERT(memcmp(data, want, dl) == 0);
    if (rank != root) dt_free(data);
    /* allgather_bytes: lengths differ, rank 0 gives nothing */
    dt_bytes *all = NULL;
    DT_ASSERT_OK(dt_pg_allgather_bytes(pg, text, rank == 0 ? 0 : (size_t)len, &all, NULL));
    for (int q = 0; q < n; q++) {
        wl = snprintf(want, sizeof want, "hello from rank %d%s", q, q == 1 ? "!!" : "");
        if (q == 0) wl = 0;
        DT_ASSERT_EQ(all[q].len, (size_t)wl);
        DT_ASSERT(wl == 0 || memcmp(all[q].data, want, (size_t)wl) == 0);
    }
    dt_free(all);
    DT_ASSERT_OK(dt_pg_monitored_barrier(pg, 30000, false));
    DT_ASSERT_OK(dt_pg_monitored_barrier(pg, 30000, true));
    dt_destroy_process_group(pg);
}

/* monitored_barrier with the last rank (and, when wait_all, rank 1 too) late:
 * rank 0 names them and every rank gets its verdict; then all arrive and the
 * group goes on. */
static void monitored_missing(int rank, int n, void *arg)
{
    bool wait_all = *(int *)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    bool late = rank == n - 1 || (wait_all && rank == 1);
    char key[32];
    if (late && rank != 0) store_await(pg, "test/verdict");
    /* the punctual ranks announce themselves and rank 0 starts its clock only
     * then: on a loaded machine a punctual rank must not be named late */
    if (!late && rank != 0) {
        snprintf(key, sizeof key, "test/punctual/%d", rank);
        DT_ASSERT_OK(dt_store_set(dt_pg_store(pg), key, "1", 1));
    }
    if (rank == 0)
        for (int q = 1; q < n; q++) {
            if (q == n - 1 || (wait_all && q == 1)) continue;
            snprintf(key, sizeof key, "test/punctual/%d", q);
            store_await(pg, key);
        }
    int rc = dt_pg_monitored_barrier(pg, 1000, wait_all);
    DT_ASSERT_EQ(rc, DT_ETIMEOUT);
    const char *e = dt_last_error();
    char want[96];
    if (wait_all) snprintf(want, sizeof want, "ranks that did not arrive: 1, %d", n - 1);
    else snprintf(want, sizeof want, "ranks that did not arrive: %d", n - 1);
    DT_ASSERT_CONTAINS(e, want);
    if (rank == 0) store_signal(pg, "test/verdict");
    float x = 1;
    DT_ASSERT_OK(dt_pg_allreduce(pg, &x, &x, 1, DT_F32, DT_RED_SUM, NULL, NULL));
    DT_ASSERT_NEAR(x, n, 0);
    dt_destroy_process_group(pg);
}

/* dt_pg_alloc buffers: every large collective's direct path, in place too. */
static void shared_buffers(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "init: %s", dt_last_error());
    size_t c = 300001; /* past the small-message size */
    float *a = dt_pg_alloc(pg, c * n * sizeof(float)), *b = dt_pg_alloc(pg, c * n * sizeof(float));
    DT_ASSERT_MSG(a && b, "dt_pg_alloc: %s", dt_last_error());
    DT_ASSERT(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0);
    for (size_t i = 0; i < c; i++) a[i] = (float)(rank + i % 5);
    DT_ASSERT_OK(dt_pg_allreduce(pg, a, b, c, DT_F32, DT_RED_SUM, NULL, NULL));
    for (size_t i = 0; i < c; i++) DT_ASSERT_MSG(b[i] == (float)(n * (n - 1) / 2 + n * (i % 5)), "allreduce [%zu] = %g", i, b[i]);
    DT_ASSERT_OK(dt_pg_allreduce(pg, a, a, c, DT_F32, DT_RED_SUM, NULL, NULL)); /* in place */
    for (size_t i = 0; i < c; i++) DT_ASSERT_MSG(a[i] == b[i], "in place [%zu] = %g, want %g", i, a[i], b[i]);
    for (size_t i = 0; i < c; i++) a[i] = (float)(rank * 10 + i % 3);
    DT_ASSERT_OK(dt_pg_reduce(pg, a, b, c, DT_F32, DT_RED_MAX, n - 1, NULL, NULL));
    if (rank == n - 1)
        for (size_t i = 0; i < c; i++) DT_ASSERT_MSG(b[i] == (float)((n - 1) * 10 + i % 3), "reduce [%zu] = %g", i, b[i]);
    DT_ASSERT_OK(dt_pg_allgather(pg, a, b, c, DT_F32, NULL, NULL));
    for (int q = 0; q < n; q++)
        for (size_t i = 0; i < c; i += 7) DT_ASSERT_EQ(b[q * c + i], (float)(q * 10 + i % 3));
    for (size_t i = 0; i < c * n; i++) a[i] = (float)(rank + i % 4);
    DT_ASSERT_OK(dt_pg_reduce_scatter(pg, a, b, c, DT_F32, DT_RED_SUM, NULL, NULL));
    for (size_t i = 0; i < c; i++)
        DT_ASSERT_MSG(b[i] == (float)(n * (n - 1) / 2 + n * ((rank * c + i) % 4)), "reduce_scatter [%zu] = %g", i, b[i]);
    for (size_t i = 0; i < c; i++) a[i] = rank == 0 ? (float)i : -1;
    DT_ASSERT_OK(dt_pg_broadcast(pg, a, c, DT_F32, 0, NULL, NULL));
    for (size_t i = 0; i < c; i++) DT_ASSERT_EQ(a[i], (float)i);
    dt_pg_free(pg, a);
    dt_pg_free(pg, b);
    /* more than the heap: NULL and a message, the group fine */
    void *huge = dt_pg_alloc(pg, (size_t)1 << 50);
    DT_ASSERT(huge == NULL);
    DT_ASSERT(dt_last_error_code() != 0);
    dt_pg_free(pg, NULL);
    DT_ASSERT_OK(dt_pg_barrier(pg, NULL, NULL));
    dt_destroy_process_group(pg);
}

static void t_subgroups(void) { DT_ASSERT_EQ(spawn_ranks(4, subgroups, NULL, 0), 0); }
static void t_async(void)
{
    for (int n = 1; n <= 3; n++) DT_ASSERT_MSG(spawn_ranks(n, async_ops, NULL, 0) == 0, "%d ranks", n);
}
static void t_objects(void)
{
    for (int n = 1; n <= 4; n++) DT_ASSERT_MSG(spawn_ranks(n, objects, NULL, 0) == 0, "%d ranks", n);
}
static void t_monitored_missing(void)
{
    int first = 0, all = 1;
    DT_ASSERT_EQ(spawn_ranks(3, monitored_missing, &first, 0), 0);
    DT_ASSERT_EQ(spawn_ranks(3, monitored_missing, &all, 0), 0);
}
static void t_shared_buffers(void)
{
    for (int n = 1; n <= 3; n++) DT_ASSERT_MSG(spawn_ranks(n, shared_buffers, NULL, 0) == 0, "%d ranks", n);
}

int main(void)
{
    DT_RUN(t_subgroups);
    DT_RUN(t_async);
    DT_RUN(t_objects);
    DT_RUN(t_monitored_missing);
    DT_RUN(t_shared_buffers);
    return DT_TEST_END();
}
