/* Snapshots: save/keep-last/load, fall back past truncated or corrupt ones,
 * full disk (a tiny tmpfs), leftovers of a crashed save, allocation failures. */
#include "dt_test.h"

#include <dtrain/checkpoint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];

static void fresh_dir(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", root, name);
}

/* One snapshot's content: a weight of n floats filled with step + i, and meta. */
static bool g_use_list;   /* save through dt_st_list / dt_snapshot_save_list */

static int save_step(dt_snapshot *s, int64_t step, int64_t n)
{
    float *w = dt_alloc((size_t)n * sizeof *w, DT_MEM_OTHER);
    if (!w) return DT_ENOMEM;
    for (int64_t i = 0; i < n; i++) w[i] = (float)(step * 1000 + i);
    int64_t shape[1] = {n}, sshape[1] = {1};
    int64_t stepv = step;
    dt_st_entry e[2] = {{"model.weight", DT_F32, 1, shape, w}, {"train.step", DT_I64, 1, sshape, &stepv}};
    char epoch[32];
    snprintf(epoch, sizeof epoch, "%lld", (long long)(step / 10));
    dt_st_meta m[1] = {{"epoch", epoch}};
    int rc;
    if (g_use_list) {
        dt_st_list *l = dt_st_list_new();
        rc = l ? 0 : DT_ENOMEM;
        if (rc == 0) rc = dt_st_list_add(l, "model.", "weight", DT_F32, 1, shape, w);
        if (rc == 0) rc = dt_st_list_add(l, "train.", "step", DT_I64, 1, sshape, &stepv);
        if (rc == 0) rc = dt_st_list_meta(l, NULL, "epoch", epoch);
        if (rc == 0) rc = dt_snapshot_save_list(s, step, l);
        dt_st_list_free(l);
    } else {
        rc = dt_snapshot_save(s, step, e, 2, m, 1);
    }
    dt_free(w);
    return rc;
}

static void check_loaded(dt_st_file *f, int64_t step, int64_t n)
{
    const dt_st_tensor *t = dt_st_find(f, "model.weight");
    DT_ASSERT(t != NULL);
    DT_ASSERT_EQ(t->numel, n);
    float v;
    memcpy(&v, (const char *)t->data + 4 * (n - 1), 4);
    DT_ASSERT_NEAR(v, (double)(step * 1000 + n - 1), 0);
    char epoch[32];
    snprintf(epoch, sizeof epoch, "%lld", (long long)(step / 10));
    DT_ASSERT_STREQ(dt_st_meta_get(f, "epoch"), epoch);
}

static void t_save_keep_load(void)
{
    char dir[512];
    fresh_dir(dir, sizeof dir, g_use_list ? "a/b/listsnaps" : "a/b/snaps");  /* parents are created */
    dt_snapshot_opts o = DT_SNAPSHOT_OPTS_INIT;
    o.chunk_bytes = 4096;
    dt_snapshot *s = dt_snapshot_open(dir, &o);
    DT_ASSERT_MSG(s != NULL, "%s", dt_last_error());
    dt_st_file *f = NULL;
    int64_t step = -1;
    DT_ASSERT_ERR(dt_snapshot_load_latest(s, &f, &step), DT_ENOTFOUND);
    DT_ASSERT_CONTAINS(dt_last_error(), "no snapshot");
    for (int64_t k = 10; k <= 30; k += 10) DT_ASSERT_OK(save_step(s, k, 5000));
    int64_t steps[8];
    int n = 0;
    DT_ASSERT_OK(dt_snapshot_list(s, steps, 8, &n));
    DT_ASSERT_EQ(n, 2);                       /* keep_last = 2 */
    DT_ASSERT_EQ(steps[0], 30);
    DT_ASSERT_EQ(steps[1], 20);
    char p[4096];
    DT_ASSERT_OK(dt_snapshot_data_path(s, 10, p, sizeof p));
    DT_ASSERT(access(p, F_OK) != 0);          /* pruned with its record */
    DT_ASSERT_OK(dt_snapshot_load_latest(s, &f, &step));
    DT_ASSERT_EQ(step, 30);
    check_loaded(f, 30, 5000);
    dt_st_close(f);
    dt_snapshot_close(s);
}

static void corrupt_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    pread(fd, &c, 1, at);
    c ^= 0x5a;
    pwrite(fd, &c, 1, at);
    close(fd);
}

static void t_fallback(void)
{
    char dir[512], p[4096];
    fresh_dir(dir, sizeof dir, "fallback");
    dt_snapshot_opts o = DT_SNAPSHOT_OPTS_INIT;
    o.chunk_bytes = 4096;
    o.keep_last = 4;
    dt_snapshot *s = dt_snapshot_open(dir, &o);
    DT_ASSERT(s);
    for (int64_t k = 1; k <= 4; k++) DT_ASSERT_OK(save_step(s, k, 3000));
    dt_st_file *f = NULL;
    int64_t step = -1;

    /* 4: truncated data file */
    DT_ASSERT_OK(dt_snapshot_data_path(s, 4, p, sizeof p));
    DT_ASSERT_EQ(truncate(p, 5000), 0);
    /* 3: one byte flipped in the data section (a checksum failure) */
    DT_ASSERT_OK(dt_snapshot_data_path(s, 3, p, sizeof p));
    corrupt_byte(p, 9000);
    /* 2: garbage record */
    DT_ASSERT_OK(dt_snapshot_record_path(s, 2, p, sizeof p));
    FILE *fp = fopen(p, "w");
    fputs("{\"format\": \"dtrain-snap", fp);
    fclose(fp);
    DT_ASSERT_OK(dt_snapshot_load_latest(s, &f, &step));
    DT_ASSERT_EQ(step, 1);
    check_loaded(f, 1, 3000);
    dt_st_close(f);

    /* 1 too: nothing verifies -> DT_ENOTFOUND naming the count */
    DT_ASSERT_OK(dt_snapshot_data_path(s, 1, p, sizeof p));
    corrupt_byte(p, 20);
    DT_ASSERT_ERR(dt_snapshot_load_latest(s, &f, &step), DT_ENOTFOUND);
    DT_ASSERT_CONTAINS(dt_last_error(), "none of the 4 snapshot(s)");
    DT_ASSERT(f == NULL);
    dt_snapshot_close(s);
}

static void t_leftovers_removed(void)
{
    char dir[512], p[4096];
    fresh_dir(dir, sizeof dir, "leftovers");
    dt_snapshot *s = dt_snapshot_open(dir, NULL);
    DT_ASSERT(s);
    DT_ASSERT_OK(save_step(s, 5, 100));
    /* a crash between the data rename and the record rename, and a temporary */
    DT_ASSERT_OK(dt_snapshot_data_path(s, 6, p, sizeof p));
    FILE *fp = fopen(p, "w"); fputs("partial", fp); fclose(fp);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.abcdef", p);
    fp = fopen(tmp, "w"); fputs("partial", fp); fclose(fp);
    dt_snapshot_close(s);
    s = dt_snapshot_open(dir, NULL);
    DT_ASSERT(access(p, F_OK) != 0);
    DT_ASSERT(access(tmp, F_OK) != 0);
    dt_st_file *f;
    int64_t step;
    DT_ASSERT_OK(dt_snapshot_load_latest(s, &f, &step));
    DT_ASSERT_EQ(step, 5);
    dt_st_close(f);
    dt_snapshot_close(s);
}

static void t_bad_args(void)
{
    dt_snapshot_opts o = DT_SNAPSHOT_OPTS_INIT;
    o.keep_last = 0;
    DT_ASSERT(dt_snapshot_open("/tmp/x", &o) == NULL);
    DT_ASSERT_CONTAINS(dt_last_error(), "keep_last");
    char p[512];
    fresh_dir(p, sizeof p, "afile");
    FILE *fp = fopen(p, "w"); fclose(fp);
    DT_ASSERT(dt_snapshot_open(p, NULL) == NULL);
    DT_ASSERT_CONTAINS(dt_last_error(), "not a directory");
    dt_snapshot *s = dt_snapshot_open(root, NULL);
    DT_ASSERT_ERR(save_step(s, -1, 10), DT_EINVAL);
    dt_snapshot_close(s);
}

/* A 512 KiB tmpfs: the first snapshot fits, a bigger one does not. */
static void t_full_disk(void)
{
    char dir[512];
    fresh_dir(dir, sizeof dir, "tiny");
    mkdir(dir, 0755);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=512k") != 0) {
        fprintf(stderr, "SKIP t_full_disk: cannot mount a tmpfs here (%s); needs root\n", strerror(errno));
        return;
    }
    dt_snapshot *s = dt_snapshot_open(dir, NULL);
    DT_ASSERT(s);
    int rc1 = save_step(s, 1, 20000);            /* 80 KB */
    int rc2 = save_step(s, 2, 200000);           /* 800 KB: does not fit */
    dt_st_file *f = NULL;
    int64_t step = -1;
    int rc3 = dt_snapshot_load_latest(s, &f, &step);
    int64_t steps[4];
    int n = -1;
    dt_snapshot_list(s, steps, 4, &n);
    if (f) { check_loaded(f, 1, 20000); dt_st_close(f); }
    dt_snapshot_close(s);
    umount(dir);
    DT_ASSERT_EQ(rc1, 0);
    DT_ASSERT_EQ(rc2, DT_ENOSPC);
    DT_ASSERT_EQ(rc3, 0);
    DT_ASSERT_EQ(step, 1);
    DT_ASSERT_EQ(n, 1);
}

static void t_alloc_failures(void)
{
    char dir[512];
    fresh_dir(dir, sizeof dir, "allocfail");
    dt_mem_stats a, b;
    int ok = 0;
    for (int64_t k = 1; k < 200 && !ok; k++) {
        dt_mem_get_stats(&a);
        dt_alloc_fail_at(k);
        dt_snapshot *s = dt_snapshot_open(dir, NULL);
        int rc = s ? save_step(s, k, 100) : dt_last_error_code();
        dt_st_file *f = NULL;
        int64_t step;
        int rc2 = (s && rc == 0) ? dt_snapshot_load_latest(s, &f, &step) : rc;
        dt_alloc_fail_at(0);
        if (rc2 == 0) ok = 1;
        else DT_ASSERT_MSG(rc2 == DT_ENOMEM || rc2 == DT_ENOTFOUND, "alloc %lld: %d %s", (long long)k, rc2, dt_last_error());
        dt_st_close(f);
        dt_snapshot_close(s);
        dt_mem_get_stats(&b);
        DT_ASSERT_MSG(a.total_current == b.total_current, "leak of %lld bytes when allocation %lld fails",
                      (long long)(b.total_current - a.total_current), (long long)k);
    }
    DT_ASSERT(ok);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/dt_snap_XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    DT_RUN(t_save_keep_load);
    g_use_list = true;
    DT_RUN(t_save_keep_load);
    g_use_list = false;
    DT_RUN(t_fallback);
    DT_RUN(t_leftovers_removed);
    DT_RUN(t_bad_args);
    DT_RUN(t_full_disk);
    DT_RUN(t_alloc_failures);
    int rc = DT_TEST_END();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return rc;
}
