/* MT19937, randperm and DistributedSampler: against torch (tests/data/sampler_ref.py
 * writes torch's lists for many cases) and against the rules, checked without torch. */
#include "dt_test.h"
#include "dt_python.h"

#include <stdlib.h>
#include <unistd.h>

static char g_dir[256];
static dt_st_file *g_ref;

/* The standard's check values: with the default seed 5489 the first output is
 * 3499211612 and the 10000th is 4123659995 (C++ [rand.predef]). */
static void t_mt19937_known(void)
{
    dt_mt19937 g;
    dt_mt19937_seed(&g, 5489);
    uint32_t first = dt_mt19937_next(&g), x = first;
    for (int i = 1; i < 10000; i++) x = dt_mt19937_next(&g);
    DT_ASSERT_EQ(first, 3499211612u);
    DT_ASSERT_EQ(x, 4123659995u);
    /* only the low 32 bits of the seed count */
    dt_mt19937 a, b;
    dt_mt19937_seed(&a, 7);
    dt_mt19937_seed(&b, (1ull << 32) + 7);
    for (int i = 0; i < 1000; i++) DT_ASSERT_EQ(dt_mt19937_next(&a), dt_mt19937_next(&b));
}

static void t_randperm_rules(void)
{
    static int64_t p[1000];
    int seen[1000];
    dt_mt19937 g;
    dt_mt19937_seed(&g, 3);
    dt_randperm(&g, 1000, p);
    memset(seen, 0, sizeof seen);
    int moved = 0;
    for (int i = 0; i < 1000; i++) {
        DT_ASSERT(p[i] >= 0 && p[i] < 1000);
        DT_ASSERT_EQ(seen[p[i]], 0);
        seen[p[i]] = 1;
        moved += p[i] != i;
    }
    DT_ASSERT(moved > 900);
    /* n - 1 draws: the generator continues where a replay of them ends */
    dt_mt19937 h;
    dt_mt19937_seed(&h, 3);
    for (int i = 0; i < 999; i++) dt_mt19937_next(&h);
    DT_ASSERT_EQ(dt_mt19937_next(&g), dt_mt19937_next(&h));
    /* the first swap uses the first draw */
    dt_mt19937_seed(&g, 11);
    dt_mt19937_seed(&h, 11);
    dt_randperm(&g, 10, p);
    DT_ASSERT_EQ(p[0], (int64_t)(dt_mt19937_next(&h) % 10));
    dt_randperm(&g, 1, p);
    DT_ASSERT_EQ(p[0], 0);
    dt_randperm(&g, 0, p);
}

static int64_t parse_i(const char **s)
{
    int neg = **s == 'm';
    if (neg) (*s)++;
    char *end;
    long long v = strtoll(*s, &end, 10);
    *s = *end == '.' ? end + 1 : end;
    return neg ? -v : v;
}

static void t_randperm_vs_torch(void)
{
    if (!g_ref) return;
    int cases = 0;
    static int64_t mine[60000];
    for (size_t i = 0; i < dt_st_count(g_ref); i++) {
        const dt_st_tensor *t = dt_st_at(g_ref, i);
        if (strncmp(t->name, "perm.", 5) != 0) continue;
        const char *s = t->name + 5;
        int64_t n = parse_i(&s), seed = parse_i(&s);
        DT_ASSERT(t->numel == n && n <= 60000);
        dt_mt19937 g;
        dt_mt19937_seed(&g, (uint64_t)seed);
        dt_randperm(&g, n, mine);
        DT_ASSERT_MSG(memcmp(mine, t->data, (size_t)n * 8) == 0, "%s differs from torch", t->name);
        cases++;
    }
    DT_ASSERT_EQ(cases, 48);
}

static void t_randint_vs_torch(void)
{
    if (!g_ref) return;
    int cases = 0;
    for (size_t i = 0; i < dt_st_count(g_ref); i++) {
        const dt_st_tensor *t = dt_st_at(g_ref, i);
        if (strncmp(t->name, "randint.", 8) != 0) continue;
        const char *s = t->name + 8;
        int64_t seed = parse_i(&s), low = parse_i(&s), high = parse_i(&s);
        int64_t mine[53];
        dt_mt19937 g;
        dt_mt19937_seed(&g, (uint64_t)seed);
        DT_ASSERT_OK(dt_randint(&g, low, high, 50, mine));
        DT_ASSERT_OK(dt_randint(&g, 0, 1000, 3, mine + 50));
        for (int k = 0; k < 50; k++) DT_ASSERT(mine[k] >= low && mine[k] < high);
        DT_ASSERT_EQ(t->numel, 53);
        DT_ASSERT_MSG(memcmp(mine, t->data, sizeof mine) == 0, "%s differs from torch", t->name);
        cases++;
    }
    DT_ASSERT_EQ(cases, 27);
    dt_mt19937 g;
    dt_mt19937_seed(&g, 1);
    int64_t x;
    DT_ASSERT_ERR(dt_randint(&g, 5, 5, 1, &x), DT_EINVAL);
}

static void t_sampler_vs_torch(void)
{
    if (!g_ref) return;
    int cases = 0;
    for (size_t i = 0; i < dt_st_count(g_ref); i++) {
        const dt_st_tensor *t = dt_st_at(g_ref, i);
        if (strncmp(t->name, "ds.", 3) != 0) continue;
        const char *s = t->name + 3;
        int64_t n = parse_i(&s);
        dt_sampler_opts o = DT_SAMPLER_OPTS_INIT;
        o.num_replicas = parse_i(&s);
        o.rank = parse_i(&s);
        o.drop_last = parse_i(&s);
        o.shuffle = parse_i(&s);
        o.seed = parse_i(&s);
        int64_t epoch = parse_i(&s);
        DT_ASSERT_MSG(dt_sampler_count(n, &o) == t->numel, "%s: count %lld, torch %lld", t->name,
                      (long long)dt_sampler_count(n, &o), (long long)t->numel);
        dt_sampler *sm = dt_sampler_distributed(n, o);
        DT_ASSERT_MSG(sm, "%s", dt_last_error());
        DT_ASSERT_OK(dt_sampler_set_epoch(sm, epoch));
        DT_ASSERT_EQ(dt_sampler_len(sm), t->numel);
        DT_ASSERT_EQ(dt_sampler_epoch(sm), epoch);
        int same = memcmp(dt_sampler_indices(sm), t->data, (size_t)t->nbytes) == 0;
        dt_sampler_free(sm);
        DT_ASSERT_MSG(same, "%s differs from torch's DistributedSampler", t->name);
        cases++;
    }
    /* every (n, R, rank, drop_last, shuffle, seed, epoch) case sampler_ref.py writes */
    DT_ASSERT_EQ(cases, 5740 + 20);
}

/* The rules, without torch. */
static void t_sampler_rules(void)
{
    const int64_t ns[] = {0, 1, 3, 10, 13, 100};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (int64_t R = 1; R <= 7; R++)
            for (int mode = 0; mode < 3; mode++)
                for (int shuf = 0; shuf < 2; shuf++) {
                    int64_t n = ns[a];
                    int64_t per = mode == 1 ? n / R : (n + R - 1) / R;
                    int64_t total = 0, hits[100] = {0}, first_order[100 + 7 * 15];
                    /* the order the ranks interleave: rank r's j-th is position r + j R */
                    int64_t filled = 0;
                    for (int64_t r = 0; r < R; r++) {
                        dt_sampler_opts o = DT_SAMPLER_OPTS_INIT;
                        o.num_replicas = R;
                        o.rank = r;
                        o.shuffle = shuf;
                        o.seed = 5;
                        o.drop_last = mode == 1;
                        o.uneven = mode == 2;
                        int64_t c = dt_sampler_count(n, &o), out[100];
                        if (mode == 2) DT_ASSERT_EQ(c, n / R + (r < n % R));
                        else DT_ASSERT_EQ(c, per);
                        DT_ASSERT_OK(dt_sampler_indices_for(n, &o, 2, out));
                        for (int64_t j = 0; j < c; j++) {
                            DT_ASSERT(out[j] >= 0 && out[j] < n);
                            hits[out[j]]++;
                            first_order[r + j * R] = out[j];
                            if (!shuf) DT_ASSERT_EQ(out[j], (r + j * R) % n);
                        }
                        total += c;
                        filled += c;
                    }
                    if (mode == 0) {
                        DT_ASSERT_EQ(total, per * R);
                        for (int64_t i = 0; i < n; i++) DT_ASSERT(hits[i] >= 1); /* every item, padding repeats */
                        for (int64_t k = n; k < total; k++) DT_ASSERT_EQ(first_order[k], first_order[k % n]);
                    } else {
                        DT_ASSERT_EQ(total, mode == 1 ? per * R : n);
                        for (int64_t i = 0; i < n; i++) DT_ASSERT(hits[i] <= 1); /* disjoint */
                    }
                    (void)filled;
                }
    /* epochs reshuffle; the same epoch repeats; seed + epoch is what counts */
    dt_sampler_opts o = DT_SAMPLER_OPTS_INIT;
    o.num_replicas = 2;
    o.seed = 10;
    dt_sampler *a = dt_sampler_distributed(1000, o);
    o.seed = 11;
    dt_sampler *b = dt_sampler_distributed(1000, o);
    DT_ASSERT(a && b);
    static int64_t e0[500];
    memcpy(e0, dt_sampler_indices(a), sizeof e0);
    DT_ASSERT_OK(dt_sampler_set_epoch(a, 1));
    DT_ASSERT(memcmp(e0, dt_sampler_indices(a), sizeof e0) != 0);
    DT_ASSERT_OK(dt_sampler_set_epoch(b, 0));
    DT_ASSERT(memcmp(dt_sampler_indices(a), dt_sampler_indices(b), sizeof e0) == 0);
    DT_ASSERT_OK(dt_sampler_set_epoch(a, 0));
    DT_ASSERT(memcmp(e0, dt_sampler_indices(a), sizeof e0) == 0);
    dt_sampler_free(a);
    dt_sampler_free(b);
    dt_sampler_free(NULL);
    /* bad options */
    o.rank = 2;
    DT_ASSERT(dt_sampler_distributed(10, o) == NULL);
    DT_ASSERT_CONTAINS(dt_last_error(), "invalid rank 2");
    o.rank = 0;
    o.num_replicas = 0;
    DT_ASSERT(dt_sampler_distributed(10, o) == NULL);
    o.num_replicas = 2;
    o.uneven = o.drop_last = true;
    DT_ASSERT(dt_sampler_distributed(10, o) == NULL);
    o.uneven = o.drop_last = false;
    DT_ASSERT(dt_sampler_distributed(-1, o) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
}

static void t_alloc_sweep(void)
{
    int ok = 0;
    for (int64_t k = 1; k < 20 && !ok; k++) {
        dt_mem_stats base, now;
        dt_mem_get_stats(&base);
        dt_alloc_fail_at(k);
        dt_sampler_opts o = DT_SAMPLER_OPTS_INIT;
        dt_sampler *s = dt_sampler_distributed(100, o);
        int rc = s ? dt_sampler_set_epoch(s, 3) : -1;
        int code = dt_last_error_code();
        dt_alloc_fail_at(0);
        if (s && rc == 0) ok = 1;
        else DT_ASSERT_EQ(code, DT_ENOMEM);
        dt_sampler_free(s);
        dt_mem_get_stats(&now);
        DT_ASSERT_EQ(now.total_current, base.total_current);
    }
    DT_ASSERT(ok);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_sampler_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    if (dt_py_have_torch()) {
        char ref[512];
        snprintf(ref, sizeof ref, "%s/ref.safetensors", g_dir);
        if (dt_py_sh(DT_PY " " DT_SRC_DIR "/tests/data/sampler_ref.py %s", ref) != 0) {
            fprintf(stderr, "FAIL: sampler_ref.py did not run\n");
            return 1;
        }
        g_ref = dt_st_open(ref);
        if (!g_ref) { fprintf(stderr, "FAIL: %s\n", dt_last_error()); return 1; }
    }
    DT_RUN(t_mt19937_known);
    DT_RUN(t_randperm_rules);
    DT_RUN(t_randperm_vs_torch);
    DT_RUN(t_randint_vs_torch);
    DT_RUN(t_sampler_vs_torch);
    DT_RUN(t_sampler_rules);
    DT_RUN(t_alloc_sweep);
    dt_st_close(g_ref);
    dt_py_sh("rm -rf %s", g_dir);
    return DT_TEST_END();
}
