/* The file store: every operation (the common suite, threads as peers), then
 * real processes (fork) for world sizes 1..4, concurrent adds and a blocked
 * get woken from another process; the file's life (deleted by the last of
 * world_size to leave), the stale rule (a crashed run's file does not hang or
 * leak into a new run; a clean, unfinished run's file is joined), files that
 * are not stores, torn and corrupt records. Each test in its own mkdtemp dir. */
#include "store_suite.h"
#include "multi.h"

#include <fcntl.h>
#include <sys/stat.h>

static char g_dir[256];
static int g_seq;

/* A fresh path in the test's directory. */
static const char *new_path(void)
{
    static char p[320];
    snprintf(p, sizeof p, "%s/store%d", g_dir, g_seq++);
    return p;
}

static char g_path[320];

static dt_store *open_file(const char *path, int world, int64_t timeout_ms)
{
    dt_store_opts o = DT_STORE_OPTS_INIT;
    o.timeout_ms = timeout_ms;
    return dt_store_file(path, world, &o);
}

static dt_store *suite_peer_file(void *ctx)
{
    (void)ctx;
    return open_file(g_path, 1000, 30000);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- world sizes over forked processes; the file goes with the last. */

static int rank_child(int world, int i, int n)
{
    (void)n;
    dt_store *s = open_file(g_path, world, 60000);
    if (!s) return -1;
    int rc = rank_body(s, i + 1, world);
    /* Nobody leaves before everyone finished (so the counts below are whole). */
    const char *k = "all_done";
    if (rc == 0) rc = dt_store_wait(s, &k, 1, 60000);
    dt_store_release(s);
    return rc;
}

static void t_world_sizes(void)
{
    for (int world = 1; world <= 4; world++) {
        snprintf(g_path, sizeof g_path, "%s", new_path());
        pid_t pids[4];
        spawn(pids, world - 1, rank_child, world);
        dt_store *s = open_file(g_path, world, 60000);
        DT_ASSERT_MSG(s, "open: %s", dt_last_error());
        int rc = rank_body(s, 0, world);
        int64_t fin = 0;
        while (rc == 0 && fin < world) {
            rc = dt_store_add(s, "finished", 0, &fin);
            if (fin < world) dt_sleep_ms(2);
        }
        int64_t nk = 0;
        if (rc == 0) rc = dt_store_num_keys(s, &nk);
        if (rc == 0) rc = dt_store_set(s, "all_done", "1", 1);
        int bad = reap(pids, world - 1);
        DT_ASSERT_MSG(rc == 0, "rank 0: %s", dt_last_error());
        DT_ASSERT_EQ(bad, 0);
        DT_ASSERT_EQ(nk, world + 2);
        DT_ASSERT(exists(g_path));            /* rank 0 has not left yet */
        dt_store_release(s);
        DT_ASSERT_MSG(!exists(g_path), "the last of %d to leave deletes the file", world);
    }
}

/* ---- many processes adding at once; a blocked get woken by another process. */

enum { ADDERS = 8, ADDS = 50 };

static int adder_child(int world, int i, int n)
{
    (void)n;
    dt_store *s = open_file(g_path, world, 60000);
    if (!s) return -1;
    int rc = 0;
    for (int j = 0; j < ADDS && rc == 0; j++) rc = dt_store_add(s, "total", i + 1, NULL);
    void *v = NULL;
    size_t len = 0;
    if (rc == 0) rc = dt_store_add(s, "adders_done", 1, NULL);
    if (rc == 0) rc = dt_store_get(s, "go_home", &v, &len);   /* blocks until the parent says */
    if (rc == 0 && (len != 3 || memcmp(v, "now", 3) != 0)) rc = dt_set_error(DT_EINTERNAL, "wrong go_home");
    dt_free(v);
    dt_store_release(s);
    return rc;
}

static void t_many_processes_add(void)
{
    snprintf(g_path, sizeof g_path, "%s", new_path());
    dt_store *s = open_file(g_path, ADDERS + 1, 60000);
    DT_ASSERT(s);
    pid_t pids[ADDERS];
    spawn(pids, ADDERS, adder_child, ADDERS + 1);
    const char *k = "adders_done";
    int64_t done = 0;
    int rc = 0;
    while (rc == 0 && done < ADDERS) {
        rc = dt_store_wait(s, &k, 1, 60000);
        if (rc == 0) rc = dt_store_add(s, k, 0, &done);
        if (done < ADDERS) dt_sleep_ms(5);
    }
    dt_sleep_ms(50);   /* most children are now parked in get */
    if (rc == 0) rc = dt_store_set(s, "go_home", "now", 3);
    int bad = reap(pids, ADDERS);
    DT_ASSERT_OK(rc);
    DT_ASSERT_EQ(bad, 0);
    int64_t total = 0;
    DT_ASSERT_OK(dt_store_add(s, "total", 0, &total));
    DT_ASSERT_EQ(total, (int64_t)ADDS * ADDERS * (ADDERS + 1) / 2);
    dt_store_release(s);
    DT_ASSERT(!exists(g_path));
}

/* ---- the stale rule. */

static int g_ready_fd = -1;

static int crash_child(int world, int i, int n)
{
    (void)i; (void)n;
    dt_store *s = open_file(g_path, world, 60000);
    if (!s) return -1;
    DT_CHECK(dt_store_set(s, "old", "from the crashed run", 20));
    DT_CHECK(dt_store_set(s, "rank/1", "stale", 5));
    char one = 1;
    if (write(g_ready_fd, &one, 1) != 1) return -1;
    pause();   /* SIGKILLed here, holding the store */
    return 0;
}

static int new_run_child(int world, int i, int n)
{
    (void)n;
    dt_store *s = open_file(g_path, world, 60000);
    if (!s) return -1;
    const char *k = "old";
    bool ex = true;
    int rc = dt_store_check(s, &k, 1, &ex);
    if (rc == 0 && ex) rc = dt_set_error(DT_EINTERNAL, "the new run sees the crashed run's key");
    if (rc == 0) rc = rank_body(s, i + 1, world);
    dt_store_release(s);
    return rc;
}

/* A run of world 2 whose participants die (or one leaves and one dies). */
static void crash_a_run(bool one_leaves_cleanly)
{
    int pfd[2];
    DT_ASSERT_EQ(pipe(pfd), 0);
    g_ready_fd = pfd[1];
    dt_store *clean = one_leaves_cleanly ? open_file(g_path, 2, 10000) : NULL;
    pid_t pid;
    spawn(&pid, 1, crash_child, 2);
    char b;
    DT_ASSERT_EQ(read(pfd[0], &b, 1), 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    dt_store_release(clean);
    close(pfd[0]);
    close(pfd[1]);
    DT_ASSERT(exists(g_path));   /* left behind: nobody deleted it */
}

static void new_run_works(void)
{
    pid_t pid;
    spawn(&pid, 1, new_run_child, 2);
    dt_store *s = open_file(g_path, 2, 60000);
    DT_ASSERT_MSG(s, "open after a crash: %s", dt_last_error());
    const char *k = "old";
    bool ex = true;
    DT_ASSERT_OK(dt_store_check(s, &k, 1, &ex));
    DT_ASSERT(!ex);
    int rc = rank_body(s, 0, 2);
    int bad = reap(&pid, 1);
    DT_ASSERT_MSG(rc == 0, "rank 0: %s", dt_last_error());
    DT_ASSERT_EQ(bad, 0);
    dt_store_release(s);
    DT_ASSERT(!exists(g_path));
}

static void t_stale_after_crash(void)
{
    snprintf(g_path, sizeof g_path, "%s", new_path());
    crash_a_run(false);
    new_run_works();
}

static void t_stale_after_crash_and_clean_leave(void)
{
    snprintf(g_path, sizeof g_path, "%s", new_path());
    crash_a_run(true);   /* 2 joined, 1 left, 1 died */
    new_run_works();
}

static void t_unfinished_clean_run_is_joined(void)
{
    /* Rank 0 of 2 comes, writes and leaves before rank 1 arrives: same run, not stale. */
    snprintf(g_path, sizeof g_path, "%s", new_path());
    dt_store *a = open_file(g_path, 2, 10000);
    DT_ASSERT(a);
    DT_ASSERT_OK(dt_store_set(a, "msg", "for rank 1", 10));
    dt_store_release(a);
    DT_ASSERT(exists(g_path));
    dt_store *b = open_file(g_path, 2, 10000);
    DT_ASSERT(b);
    dt_store_set_timeout(b, 100);
    ASSERT_GET(b, "msg", "for rank 1");
    dt_store_release(b);
    DT_ASSERT(!exists(g_path));
}

static void t_membership_errors(void)
{
    snprintf(g_path, sizeof g_path, "%s", new_path());
    dt_store *a = open_file(g_path, 2, 10000), *b = open_file(g_path, 2, 10000);
    DT_ASSERT(a && b);
    DT_ASSERT(open_file(g_path, 2, 10000) == NULL);   /* a third of two, both alive */
    DT_ASSERT_EQ(dt_last_error_code(), DT_ESTATE);
    DT_ASSERT_CONTAINS(dt_last_error(), g_path);
    dt_store_release(b);
    dt_store_release(a);
    DT_ASSERT(!exists(g_path));
    a = open_file(g_path, 3, 10000);
    DT_ASSERT(open_file(g_path, 2, 10000) == NULL);   /* another world size, while in use */
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    DT_ASSERT_CONTAINS(dt_last_error(), "world size 3");
    dt_store_release(a);
    unlink(g_path);
    DT_ASSERT(dt_store_file(NULL, 1, NULL) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    DT_ASSERT(dt_store_file(g_path, 0, NULL) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    char bad[400];
    snprintf(bad, sizeof bad, "%s/no/such/dir/f", g_dir);
    DT_ASSERT(dt_store_file(bad, 1, NULL) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ESYS);
    DT_ASSERT_CONTAINS(dt_last_error(), bad);
}

static void write_file(const char *path, const void *p, size_t n, int flags)
{
    int fd = open(path, O_WRONLY | O_CREAT | flags, 0600);
    DT_ASSERT(fd >= 0);
    DT_ASSERT_EQ(write(fd, p, n), (ssize_t)n);
    close(fd);
}

static void t_not_a_store_file(void)
{
    const char *text = "precious data, not a store\n";
    for (int len = 5; len <= 28; len += 23) {   /* shorter and longer than a record header */
        snprintf(g_path, sizeof g_path, "%s", new_path());
        write_file(g_path, text, (size_t)len, O_TRUNC);
        DT_ASSERT(open_file(g_path, 1, 10000) == NULL);
        DT_ASSERT_EQ(dt_last_error_code(), DT_ECORRUPT);
        DT_ASSERT_CONTAINS(dt_last_error(), "not a dtrain file store");
        struct stat st;
        DT_ASSERT_EQ(stat(g_path, &st), 0);
        DT_ASSERT_EQ(st.st_size, len);          /* untouched */
        unlink(g_path);
    }
}

static void t_torn_and_corrupt_records(void)
{
    snprintf(g_path, sizeof g_path, "%s", new_path());
    dt_store *a = open_file(g_path, 3, 10000);   /* 3: the run stays unfinished */
    DT_ASSERT(a);
    DT_ASSERT_OK(dt_store_set(a, "k", "v", 1));
    struct stat st;
    DT_ASSERT_EQ(stat(g_path, &st), 0);
    /* A writer that died mid-append left 9 bytes of a record: cut, not fatal. */
    unsigned char torn[9] = {3, 0, 0, 0, 200, 0, 0, 0, 1};
    write_file(g_path, torn, sizeof torn, O_APPEND);
    DT_ASSERT_OK(dt_store_set(a, "k2", "v2", 2));
    dt_store *b = open_file(g_path, 3, 10000);
    DT_ASSERT_MSG(b, "open after a torn record: %s", dt_last_error());
    ASSERT_GET(b, "k2", "v2");
    /* A flipped byte in a complete record: the checksum catches it. */
    int fd = open(g_path, O_RDWR);
    unsigned char c;
    DT_ASSERT_EQ(pread(fd, &c, 1, st.st_size - 1), 1);
    c ^= 0x40;
    DT_ASSERT_EQ(pwrite(fd, &c, 1, st.st_size - 1), 1);
    close(fd);
    dt_store *fresh = open_file(g_path, 3, 10000);   /* replays from the start */
    DT_ASSERT(fresh == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ECORRUPT);
    DT_ASSERT_CONTAINS(dt_last_error(), "checksum");
    dt_store_release(b);
    dt_store_release(a);
    DT_ASSERT(exists(g_path));
    /* Nobody uses the damaged file now: the next run starts it afresh. */
    dt_store *c1 = open_file(g_path, 1, 10000);
    DT_ASSERT_MSG(c1, "open of a damaged, unused file: %s", dt_last_error());
    bool ex = true;
    const char *k = "k";
    DT_ASSERT_OK(dt_store_check(c1, &k, 1, &ex));
    DT_ASSERT(!ex);
    dt_store_release(c1);
    DT_ASSERT(!exists(g_path));
}

int main(void)
{
    signal(SIGPIPE, SIG_DFL);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/dt_file_store_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }

    snprintf(g_path, sizeof g_path, "%s", new_path());
    dt_store *s = open_file(g_path, 1000, 30000);   /* world 1000: the suite's peers join too */
    if (!s) { fprintf(stderr, "file store: %s\n", dt_last_error()); return 1; }
    store_suite(s, suite_peer_file, NULL, "file");
    dt_store_release(s);
    unlink(g_path);

    DT_RUN(t_world_sizes);
    DT_RUN(t_many_processes_add);
    DT_RUN(t_stale_after_crash);
    DT_RUN(t_stale_after_crash_and_clean_leave);
    DT_RUN(t_unfinished_clean_run_is_joined);
    DT_RUN(t_membership_errors);
    DT_RUN(t_not_a_store_file);
    DT_RUN(t_torn_and_corrupt_records);
    rmdir(g_dir);
    return DT_TEST_END();
}
