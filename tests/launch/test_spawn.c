/* dt_spawn: ranks get torchrun's environment and meet through the parent's
 * store, for 1, 2, 3 and 4 ranks; the first failure (a returned error, a
 * signal, an early exit) stops the rest and comes back as that rank's code
 * and message; a rank ignoring SIGTERM is SIGKILLed after DTRAIN_STOP_TIMEOUT. */
#include "dt_test.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static int env_int(const char *n) { const char *v = getenv(n); return v ? atoi(v) : -1; }

static int meet(int rank, int nprocs, void *arg)
{
    if (env_int("RANK") != rank || env_int("LOCAL_RANK") != rank || env_int("WORLD_SIZE") != nprocs ||
        env_int("LOCAL_WORLD_SIZE") != nprocs)
        return dt_set_error(DT_EINVAL, "rank %d: environment RANK=%d WORLD_SIZE=%d", rank, env_int("RANK"), env_int("WORLD_SIZE"));
    const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
    if (!agent || strcmp(agent, "True") != 0) return dt_set_error(DT_EINVAL, "TORCHELASTIC_USE_AGENT_STORE not True");
    dt_store_opts so = DT_STORE_OPTS_INIT;
    so.timeout_ms = 30000;
    dt_store *s = dt_store_tcp(getenv("MASTER_ADDR"), env_int("MASTER_PORT"), false, &so);
    if (!s) return dt_last_error_code();
    int64_t n;
    int rc = dt_store_add(s, "arrived", 1, &n);
    char key[32];
    snprintf(key, sizeof key, "r%d", rank);
    if (rc == 0) rc = dt_store_set(s, key, arg, strlen(arg));
    for (int r = 0; rc == 0 && r < nprocs; r++) {
        snprintf(key, sizeof key, "r%d", r);
        const char *keys[1] = {key};
        rc = dt_store_wait(s, keys, 1, -1);
    }
    dt_store_release(s);
    return rc;
}

static void t_success(void)
{
    for (int n = 1; n <= 4; n++) DT_ASSERT_OK(dt_spawn(meet, n, "hello"));
}

static int fail_rank2(int rank, int nprocs, void *arg)
{
    if (rank == 2) return dt_set_error(DT_EMISMATCH, "rank %d disagrees", rank);
    dt_sleep_ms(60000);   /* stopped by dt_spawn */
    return 0;
}

static void t_first_failure(void)
{
    int64_t t0 = dt_now_ns();
    DT_ASSERT_ERR(dt_spawn(fail_rank2, 4, NULL), DT_EMISMATCH);
    DT_ASSERT_CONTAINS(dt_last_error(), "rank 2 failed");
    DT_ASSERT_CONTAINS(dt_last_error(), "rank 2 disagrees");
    DT_ASSERT_MSG(dt_now_ns() - t0 < 50 * 1000000000LL, "the sleeping ranks were not stopped");
}

static int die_rank1(int rank, int nprocs, void *arg)
{
    if (rank == 1) {
        if (*(int *)arg == 0) raise(SIGKILL);
        _exit(7);
    }
    dt_sleep_ms(60000);
    return 0;
}

static void t_death(void)
{
    int how = 0;
    DT_ASSERT_ERR(dt_spawn(die_rank1, 3, &how), DT_EPEER);
    DT_ASSERT_CONTAINS(dt_last_error(), "rank 1 died by signal 9");
    how = 1;
    DT_ASSERT_ERR(dt_spawn(die_rank1, 2, &how), DT_EPEER);
    DT_ASSERT_CONTAINS(dt_last_error(), "rank 1 exited with code 7");
}

static int stubborn(int rank, int nprocs, void *arg)
{
    if (rank == 0) { dt_sleep_ms(100); return dt_set_error(DT_EIO, "rank 0 fails"); }
    signal(SIGTERM, SIG_IGN);
    dt_sleep_ms(60000);
    return 0;
}

static void t_sigkill_after_timeout(void)
{
    setenv("DTRAIN_STOP_TIMEOUT", "1", 1);
    int64_t t0 = dt_now_ns();
    DT_ASSERT_ERR(dt_spawn(stubborn, 2, NULL), DT_EIO);
    DT_ASSERT_CONTAINS(dt_last_error(), "rank 0 fails");
    DT_ASSERT_MSG(dt_now_ns() - t0 < 50 * 1000000000LL, "the rank ignoring SIGTERM was not killed");
    unsetenv("DTRAIN_STOP_TIMEOUT");
}

static void t_bad_args(void)
{
    DT_ASSERT_ERR(dt_spawn(meet, 0, NULL), DT_EINVAL);
    DT_ASSERT_ERR(dt_spawn(NULL, 2, NULL), DT_EINVAL);
}

int main(void)
{
    DT_RUN(t_success);
    DT_RUN(t_first_failure);
    DT_RUN(t_death);
    DT_RUN(t_sigkill_after_timeout);
    DT_RUN(t_bad_args);
    return DT_TEST_END();
}
