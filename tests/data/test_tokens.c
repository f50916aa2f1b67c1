/* Token streams: u8/u16 token files, the fortunes corpus rule (on a made-up directory
 * with every kind of entry the rule must skip, and on the real one) and the sequential
 * window rule, against tests/data/tokens_ref.py (the reference job's own code). */
#include "dt_test.h"
#include "dt_python.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define FORTUNES "/usr/share/games/fortunes"

static char g_dir[256];

static void put(const char *dir, const char *name, const char *text)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    fputs(text, f);
    fclose(f);
}

static void t_token_files(void)
{
    char p[600];
    snprintf(p, sizeof p, "%s/tok.u16", g_dir);
    FILE *f = fopen(p, "wb");
    for (int i = 0; i < 1000; i++) {
        uint16_t v = (uint16_t)(i * 97 + 3);
        uint8_t b[2] = {(uint8_t)(v & 0xff), (uint8_t)(v >> 8)}; /* little-endian */
        fwrite(b, 1, 2, f);
    }
    fclose(f);
    dt_tokens *t = dt_tokens_open(p, 2);
    DT_ASSERT_MSG(t, "%s", dt_last_error());
    DT_ASSERT_EQ(dt_tokens_len(t), 1000);
    DT_ASSERT_EQ(dt_tokens_width(t), 2);
    for (int i = 0; i < 1000; i++) DT_ASSERT_EQ(dt_tokens_at(t, i), (uint16_t)(i * 97 + 3));
    int64_t x[10], y[10];
    DT_ASSERT_OK(dt_tokens_window(dt_tokens_all(t), 990, 9, x, y));
    for (int i = 0; i < 9; i++) {
        DT_ASSERT_EQ(x[i], (uint16_t)((990 + i) * 97 + 3));
        DT_ASSERT_EQ(y[i], (uint16_t)((991 + i) * 97 + 3));
    }
    DT_ASSERT_ERR(dt_tokens_window(dt_tokens_all(t), 990, 10, x, y), DT_ERANGE);
    dt_tokens_free(t);
    /* the same bytes as u8: twice as many tokens */
    t = dt_tokens_open(p, 1);
    DT_ASSERT(t);
    DT_ASSERT_EQ(dt_tokens_len(t), 2000);
    DT_ASSERT_EQ(dt_tokens_at(t, 3), (97 + 3) >> 8);
    dt_tokens_free(t);
    /* odd size as u16, bad width, missing, empty */
    f = fopen(p, "ab");
    fputc(1, f);
    fclose(f);
    DT_ASSERT(dt_tokens_open(p, 2) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ECORRUPT);
    DT_ASSERT(dt_tokens_open(p, 4) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    snprintf(p, sizeof p, "%s/absent", g_dir);
    DT_ASSERT(dt_tokens_open(p, 1) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ENOTFOUND);
    put(g_dir, "empty.bin", "");
    snprintf(p, sizeof p, "%s/empty.bin", g_dir);
    t = dt_tokens_open(p, 2);
    DT_ASSERT(t);
    DT_ASSERT_EQ(dt_tokens_len(t), 0);
    dt_tokens_free(t);
    dt_tokens_free(NULL);
}

/* A made-up fortunes directory: what the rule keeps and what it skips. */
static void make_corpus_dir(char *d, size_t n)
{
    snprintf(d, n, "%s/fortunes", g_dir);
    mkdir(d, 0755);
    put(d, "zeta", "last file\n");
    put(d, "alpha", "first file\n%\nsecond fortune\n");
    put(d, "alpha.dat", "DATFILE");
    put(d, "Beta", "capital B sorts before lower case\n");
    put(d, ".hidden", "glob skips dot files\n");
    put(d, "mid.txt", "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\n");
    char p[700], q[700];
    snprintf(p, sizeof p, "%s/alpha.u8", d);
    if (symlink("alpha", p) != 0) DT__FAIL("symlink");
    snprintf(p, sizeof p, "%s/link", d); /* a symlink to a file counts (os.path.isfile follows it) */
    if (symlink("zeta", p) != 0) DT__FAIL("symlink");
    snprintf(p, sizeof p, "%s/dangling", d);
    if (symlink("nowhere", p) != 0) DT__FAIL("symlink");
    snprintf(q, sizeof q, "%s/subdir", d);
    mkdir(q, 0755);
    put(q, "inner", "not read\n");
}

static void t_corpus_rule(void)
{
    char d[600];
    make_corpus_dir(d, sizeof d);
    dt_tokens *t = dt_tokens_fortunes(d);
    DT_ASSERT_MSG(t, "%s", dt_last_error());
    const char *want = "capital B sorts before lower case\nfirst file\n%\nsecond fortune\nlast file\n"
                       "0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\nlast file\n";
    DT_ASSERT_EQ(dt_tokens_len(t), strlen(want));
    DT_ASSERT(memcmp(dt_tokens_data(t), want, strlen(want)) == 0);
    dt_token_span tr, va;
    dt_tokens_split(t, 10, &tr, &va);
    DT_ASSERT_EQ(va.len, (int64_t)strlen(want) / 10);
    DT_ASSERT_EQ(tr.len + va.len, (int64_t)strlen(want));
    DT_ASSERT_EQ(va.begin, tr.len);
    dt_tokens_free(t);
    char e[700];
    snprintf(e, sizeof e, "%s/subdir", d);
    t = dt_tokens_fortunes(e);
    DT_ASSERT(t && dt_tokens_len(t) == 9 && memcmp(dt_tokens_data(t), "not read\n", 9) == 0);
    dt_tokens_free(t);
    snprintf(e, sizeof e, "%s/nope", g_dir);
    DT_ASSERT(dt_tokens_fortunes(e) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ENOTFOUND);
}

static void t_seq_rule(void)
{
    /* independent of python: the formula, mod and range checks */
    DT_ASSERT_EQ(dt_tokens_seq_start(1000, 0, 1, 0, 4, 0, 10), 0);
    DT_ASSERT_EQ(dt_tokens_seq_start(1000, 0, 1, 0, 4, 3, 10), 30);
    DT_ASSERT_EQ(dt_tokens_seq_start(1000, 2, 3, 1, 4, 2, 10), ((2 * 3 + 1) * 4 + 2) * 10 % 989);
    DT_ASSERT_EQ(dt_tokens_seq_start(11, 0, 1, 0, 1, 0, 10), -1);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    DT_ASSERT_EQ(dt_tokens_seq_start(100, 0, 2, 2, 1, 0, 10), -1);
    /* a large k does not overflow: the same as the reduced product */
    int64_t k = 3000000000000LL;
    __int128 a = ((__int128)k * 4 + 1) * 16 + 5;
    DT_ASSERT_EQ(dt_tokens_seq_start(100000, k, 4, 1, 16, 5, 128), (int64_t)((a * 128) % (100000 - 129)));
}

static void check_vs_python(const char *dir, const char *label)
{
    char ref[600];
    snprintf(ref, sizeof ref, "%s/tokref_%s.safetensors", g_dir, label);
    DT_ASSERT_EQ(dt_py_sh(DT_PY " " DT_SRC_DIR "/tests/data/tokens_ref.py %s %s", dir, ref), 0);
    dt_st_file *f = dt_st_open(ref);
    DT_ASSERT_MSG(f, "%s", dt_last_error());
    dt_tokens *t = dt_tokens_fortunes(dir);
    DT_ASSERT_MSG(t, "%s", dt_last_error());
    const dt_st_tensor *c = dt_st_find(f, "corpus");
    DT_ASSERT(c);
    int same_len = c->numel == dt_tokens_len(t);
    int same = same_len && memcmp(c->data, dt_tokens_data(t), (size_t)c->numel) == 0;
    int64_t n_val;
    memcpy(&n_val, dt_st_find(f, "n_val")->data, 8);
    dt_token_span tr, va;
    dt_tokens_split(t, 10, &tr, &va);
    int cases = 0, bad = 0;
    static int64_t x[16 * 128], y[16 * 128];
    for (size_t i = 0; i < dt_st_count(f); i++) {
        const dt_st_tensor *s = dt_st_at(f, i);
        if (strncmp(s->name, "seq.", 4) != 0) continue;
        char split[8];
        long long kk, n, r, B, T;
        if (sscanf(s->name, "seq.%7[a-z].%lld.%lld.%lld.%lld.%lld", split, &kk, &n, &r, &B, &T) != 6) { bad++; continue; }
        dt_token_span sp = strcmp(split, "train") == 0 ? tr : va;
        int64_t want[16]; /* the data may be unaligned: the corpus before it has odd length */
        if (B > 16 || s->numel != B) { bad++; continue; }
        memcpy(want, s->data, (size_t)s->nbytes);
        for (long long j = 0; j < B; j++)
            if (dt_tokens_seq_start(sp.len, kk, n, r, B, j, T) != want[j]) bad++;
        if (dt_tokens_seq_batch(sp, kk, n, r, B, T, x, y) < 0) bad++;
        char xn[128], yn[128];
        snprintf(xn, sizeof xn, "x.%s", s->name + 4);
        snprintf(yn, sizeof yn, "y.%s", s->name + 4);
        const dt_st_tensor *xt = dt_st_find(f, xn), *yt = dt_st_find(f, yn);
        if (xt && yt) {
            if (xt->numel != B * T || memcmp(xt->data, x, (size_t)xt->nbytes) || memcmp(yt->data, y, (size_t)yt->nbytes)) bad++;
            cases += 100;
        }
        cases++;
    }
    /* the random order: replay each rank's generator through 5 train and 10 val batches */
    const int64_t sr[3][2] = {{0, 0}, {0, 1}, {3, 2}};
    int rnd = 0;
    for (int c = 0; c < 3; c++) {
        dt_mt19937 g;
        dt_mt19937_seed(&g, (uint64_t)(1000 + sr[c][0] * 1000 + sr[c][1]));
        for (int b = 0; b < 15; b++) {
            char name[96];
            snprintf(name, sizeof name, "rnd.%lld.%lld.%s.%d", (long long)sr[c][0], (long long)sr[c][1], b < 5 ? "train" : "val",
                     b < 5 ? b : b - 5);
            const dt_st_tensor *w = dt_st_find(f, name);
            dt_token_span sp = b < 5 ? tr : va;
            int64_t want[16];
            if (!w || w->numel != 16) { bad++; continue; }
            memcpy(want, w->data, sizeof want);
            if (dt_tokens_random_batch(sp, &g, 16, 128, x, y) < 0) { bad++; continue; }
            for (int j = 0; j < 16; j++) {
                int64_t wx[128], wy[128];
                dt_tokens_window(sp, want[j], 128, wx, wy);
                if (memcmp(wx, x + j * 128, sizeof wx) || memcmp(wy, y + j * 128, sizeof wy)) bad++;
            }
            rnd++;
        }
    }
    dt_tokens_free(t);
    dt_st_close(f);
    DT_ASSERT_EQ(rnd, 45);
    DT_ASSERT_MSG(same, "%s corpus differs from python's (%s)", label, same_len ? "bytes" : "length");
    DT_ASSERT_EQ(va.len, n_val);
    DT_ASSERT_EQ(bad, 0);
    DT_ASSERT_EQ(cases, 114); /* 14 cases, one with its batches */
}

static void t_vs_python_made_up(void)
{
    if (!dt_py_have_torch()) return;
    char d[600];
    snprintf(d, sizeof d, "%s/fortunes", g_dir);
    /* long enough for T = 128 windows: pad a file */
    char p[700];
    snprintf(p, sizeof p, "%s/padding", d);
    FILE *f = fopen(p, "wb");
    for (int i = 0; i < 5000; i++) fputc('a' + i % 26, f);
    fclose(f);
    check_vs_python(d, "made_up");
}

static void t_vs_python_fortunes(void)
{
    struct stat st;
    if (stat(FORTUNES, &st) != 0) { fprintf(stderr, "SKIP t_vs_python_fortunes: %s is missing\n", FORTUNES); return; }
    if (!dt_py_have_torch()) return;
    check_vs_python(FORTUNES, "fortunes");
    dt_tokens *t = dt_tokens_fortunes(NULL); /* the default directory */
    DT_ASSERT(t && dt_tokens_len(t) > 1000000);
    dt_tokens_free(t);
}

static void t_alloc_sweep(void)
{
    char d[600];
    snprintf(d, sizeof d, "%s/fortunes", g_dir);
    int ok = 0;
    for (int64_t k = 1; k < 100 && !ok; k++) {
        dt_mem_stats base, now;
        dt_mem_get_stats(&base);
        dt_alloc_fail_at(k);
        dt_tokens *t = dt_tokens_fortunes(d);
        int code = dt_last_error_code();
        dt_alloc_fail_at(0);
        if (t) ok = 1;
        else DT_ASSERT_EQ(code, DT_ENOMEM);
        dt_tokens_free(t);
        dt_mem_get_stats(&now);
        DT_ASSERT_EQ(now.total_current, base.total_current);
    }
    DT_ASSERT(ok);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_tokens_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    DT_RUN(t_token_files);
    DT_RUN(t_corpus_rule);
    DT_RUN(t_seq_rule);
    DT_RUN(t_vs_python_made_up);
    DT_RUN(t_vs_python_fortunes);
    DT_RUN(t_alloc_sweep);
    dt_py_sh("rm -rf %s", g_dir);
    return DT_TEST_END();
}
