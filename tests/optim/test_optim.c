/* Optimizers, schedules and clipping against PyTorch (tests/optim/optim_ref.py writes
 * torch's results for the same inputs), plus rules checked without torch: option
 * checking, zero_grad, rebind, save/load continuing bit for bit, bad state files,
 * an allocation-failure sweep. */
#include "dt_test.h"
#include "dt_python.h"
#include "optim/optim_internal.h"

#include <stdlib.h>
#include <unistd.h>

static char g_dir[256];
static dt_st_file *g_ref; /* torch's results; NULL when torch is missing */

#define NSLOT 3
static const int64_t NUMEL[NSLOT] = {7, 15, 33};
static const char *const NAMES[NSLOT] = {"0.weight", "0.bias", "fc.weight"};
#define STEPS 5

typedef struct {
    const char *name;
    dt_optim_kind kind;
    dt_sgd_opts sgd;
    dt_adam_opts adam;
} config;

static config CONFIGS[] = {
    {.name = "sgd_plain", .kind = DT_OPTIM_SGD, .sgd = {.lr = 0.1}},
    {.name = "sgd_mom", .kind = DT_OPTIM_SGD, .sgd = {.lr = 0.1, .momentum = 0.9}},
    {.name = "sgd_damp", .kind = DT_OPTIM_SGD, .sgd = {.lr = 0.05, .momentum = 0.9, .dampening = 0.3, .weight_decay = 0.01}},
    {.name = "sgd_nest", .kind = DT_OPTIM_SGD, .sgd = {.lr = 0.1, .momentum = 0.8, .nesterov = true, .weight_decay = 1e-3}},
    {.name = "sgd_max", .kind = DT_OPTIM_SGD, .sgd = {.lr = 0.1, .momentum = 0.5, .maximize = true}},
    {.name = "adam", .kind = DT_OPTIM_ADAM, .adam = DT_ADAM_OPTS_INIT},
    {.name = "adam_wd", .kind = DT_OPTIM_ADAM, .adam = {.lr = 0.01, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1}},
    {.name = "adamw", .kind = DT_OPTIM_ADAMW, .adam = DT_ADAMW_OPTS_INIT},
    {.name = "adamw_wd", .kind = DT_OPTIM_ADAMW, .adam = {.lr = 0.01, .beta1 = 0.85, .beta2 = 0.995, .eps = 1e-8, .weight_decay = 0.1, .maximize = true}},
};
#define NCONFIG (sizeof CONFIGS / sizeof *CONFIGS)

static dt_optim *make(const config *c, const dt_param_slot *s, size_t n)
{
    switch (c->kind) {
    case DT_OPTIM_SGD: return dt_optim_sgd(s, n, c->sgd);
    case DT_OPTIM_ADAM: return dt_optim_adam(s, n, c->adam);
    default: return dt_optim_adamw(s, n, c->adam);
    }
}

/* Copy reference tensor `key` (f32 or f64) into dst; 0 when absent. */
static int ref_f32(const char *key, float *dst, int64_t n)
{
    const dt_st_tensor *t = dt_st_find(g_ref, key);
    if (!t) return 0;
    if (t->dtype != DT_F32 || t->numel != n) DT__FAIL("reference %s: dtype %d, %lld elements", key, t->dtype, (long long)t->numel);
    memcpy(dst, t->data, (size_t)n * 4);
    return 1;
}

static double ref_f64_at(const char *key, int64_t i)
{
    const dt_st_tensor *t = dt_st_find(g_ref, key);
    if (!t || t->dtype != DT_F64 || i >= t->numel) DT__FAIL("reference %s missing or short", key);
    double v;
    memcpy(&v, (const char *)t->data + 8 * i, 8);
    return v;
}

/* |a - b| <= 1.2e-7 * max(1, |b|) for every element; returns the largest such ratio. */
static double worst_err(const float *a, const float *b, int64_t n, int64_t *at)
{
    double w = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        if (!(e <= w)) { w = e; *at = i; }
    }
    return w;
}

static void t_vs_torch(void)
{
    if (!g_ref) return;
    double worst_all = 0;
    for (size_t c = 0; c < NCONFIG; c++) {
        const config *cf = &CONFIGS[c];
        float p[NSLOT][64], g[NSLOT][64], want[64];
        dt_param_slot s[NSLOT];
        char key[128];
        for (int j = 0; j < NSLOT; j++) {
            snprintf(key, sizeof key, "%s.init.%d", cf->name, j);
            DT_ASSERT_MSG(ref_f32(key, p[j], NUMEL[j]), "%s missing", key);
            s[j] = (dt_param_slot){NAMES[j], p[j], g[j], NUMEL[j]};
        }
        dt_optim *o = make(cf, s, NSLOT);
        DT_ASSERT_MSG(o, "%s", dt_last_error());
        for (int k = 0; k < STEPS; k++) {
            snprintf(key, sizeof key, "%s.lr.%d", cf->name, k);
            dt_optim_set_lr(o, ref_f64_at(key, 0));
            for (int j = 0; j < NSLOT; j++) {
                snprintf(key, sizeof key, "%s.grad.%d.%d", cf->name, k, j);
                s[j].grad = ref_f32(key, g[j], NUMEL[j]) ? g[j] : NULL; /* absent: None in torch */
            }
            DT_ASSERT_OK(dt_optim_rebind(o, s, NSLOT));
            DT_ASSERT_OK(dt_optim_step(o));
            for (int j = 0; j < NSLOT; j++) {
                snprintf(key, sizeof key, "%s.param.%d.%d", cf->name, k, j);
                DT_ASSERT(ref_f32(key, want, NUMEL[j]));
                int64_t at = 0;
                double w = worst_err(p[j], want, NUMEL[j], &at);
                if (w > worst_all) worst_all = w;
                DT_ASSERT_MSG(w <= 1.2e-7, "%s step %d param %d [%lld]: %.9g vs torch %.9g (rel err %.3g)", cf->name, k, j,
                              (long long)at, p[j][at], want[at], w);
            }
        }
        DT_ASSERT_EQ(dt_optim_steps(o), STEPS);
        dt_optim_free(o);
    }
    fprintf(stderr, "     largest difference from torch over %zu optimizers x %d steps: %.3g (relative, floor 1)\n", NCONFIG,
            STEPS, worst_all);
}

static void check_sched(const char *key, const dt_lr_sched *s, int n)
{
    for (int e = 0; e <= n; e++) {
        double want = ref_f64_at(key, e), got = dt_lr_at(s, e);
        DT_ASSERT_MSG(fabs(got - want) <= 1e-12 * s->base_lr, "%s epoch %d: %.17g vs torch %.17g", key, e, got, want);
    }
}

static void t_schedules_vs_torch(void)
{
    if (!g_ref) return;
    dt_lr_sched s = dt_lr_step(0.1, 3, 0.5);
    check_sched("sched.step", &s, 20);
    s = dt_lr_cosine(0.1, 10, 0.001);
    check_sched("sched.cosine", &s, 35);
    s = dt_lr_linear(0.1, 0.25, 1.0, 4);
    check_sched("sched.linear_up", &s, 10);
    s = dt_lr_linear(0.1, 1.0, 0.1, 6);
    check_sched("sched.linear_down", &s, 10);
    s = dt_lr_warmup_cosine(0.1, 5, 0.1, 15, 0.0);
    check_sched("sched.warmup_cosine", &s, 25);
}

/* The schedules' rules, without torch. */
static void t_schedules_rules(void)
{
    dt_lr_sched s = dt_lr_step(1.0, 10, 0.1);
    DT_ASSERT_NEAR(dt_lr_at(&s, 0), 1.0, 0);
    DT_ASSERT_NEAR(dt_lr_at(&s, 9), 1.0, 0);
    DT_ASSERT_NEAR(dt_lr_at(&s, 10), 0.1, 1e-15);
    DT_ASSERT_NEAR(dt_lr_at(&s, 25), 0.01, 1e-15);
    DT_ASSERT_NEAR(dt_lr_at(&s, -3), 1.0, 0);
    s = dt_lr_cosine(2.0, 100, 0.5);
    DT_ASSERT_NEAR(dt_lr_at(&s, 0), 2.0, 1e-15);
    DT_ASSERT_NEAR(dt_lr_at(&s, 50), 1.25, 1e-15);
    DT_ASSERT_NEAR(dt_lr_at(&s, 100), 0.5, 1e-15);
    DT_ASSERT_NEAR(dt_lr_at(&s, 200), 2.0, 1e-15);
    s = dt_lr_linear(1.0, 0.5, 1.0, 4);
    DT_ASSERT_NEAR(dt_lr_at(&s, 0), 0.5, 0);
    DT_ASSERT_NEAR(dt_lr_at(&s, 2), 0.75, 1e-15);
    DT_ASSERT_NEAR(dt_lr_at(&s, 4), 1.0, 0);
    DT_ASSERT_NEAR(dt_lr_at(&s, 100), 1.0, 0);
    s = dt_lr_warmup_cosine(1.0, 10, 0.1, 90, 0.0);
    DT_ASSERT_NEAR(dt_lr_at(&s, 0), 0.1, 1e-15);
    DT_ASSERT_NEAR(dt_lr_at(&s, 5), 0.55, 1e-15);
    DT_ASSERT_NEAR(dt_lr_at(&s, 10), 1.0, 1e-15);
    DT_ASSERT_NEAR(dt_lr_at(&s, 55), 0.5, 1e-15);
    DT_ASSERT_NEAR(dt_lr_at(&s, 100), 0.0, 1e-15);
    dt_lr_sched bad = dt_lr_step(1.0, 0, 0.1);
    DT_ASSERT_ERR(dt_lr_check(&bad), DT_EINVAL);
    DT_ASSERT(isnan(dt_lr_at(&bad, 1)));
    bad = dt_lr_cosine(1.0, 0, 0);
    DT_ASSERT_ERR(dt_lr_check(&bad), DT_EINVAL);
    bad = dt_lr_linear(1.0, 0.0, 1.0, 3);
    DT_ASSERT_ERR(dt_lr_check(&bad), DT_EINVAL);
}

static void t_clip_vs_torch(void)
{
    if (!g_ref) return;
    const int64_t n[4] = {7, 15, 33, 300};
    const char *mode[2] = {"clip", "noclip"};
    const double max_norm[2] = {1.0, 100.0};
    for (int m = 0; m < 2; m++) {
        static float g[4][300], want[300];
        dt_param_slot s[5];
        char key[96];
        for (int j = 0; j < 4; j++) {
            snprintf(key, sizeof key, "clip.%s.grad.%d", mode[m], j);
            DT_ASSERT(ref_f32(key, g[j], n[j]));
            s[j] = (dt_param_slot){NAMES[j % 3], g[j], g[j], n[j]};
        }
        s[4] = (dt_param_slot){"nograd", g[0], NULL, 7}; /* skipped, as torch skips grad None */
        double norm = dt_clip_grad_norm(s, 5, max_norm[m]);
        float tn;
        snprintf(key, sizeof key, "clip.%s.norm", mode[m]);
        DT_ASSERT(ref_f32(key, &tn, 1));
        DT_ASSERT_MSG(fabs(norm - tn) <= 2e-7 * tn, "%s: norm %.9g vs torch %.9g", mode[m], norm, (double)tn);
        for (int j = 0; j < 4; j++) {
            snprintf(key, sizeof key, "clip.%s.out.%d", mode[m], j);
            DT_ASSERT(ref_f32(key, want, n[j]));
            for (int64_t i = 0; i < n[j]; i++)
                DT_ASSERT_MSG(fabs(g[j][i] - want[i]) <= 2.4e-7 * fmax(fabs(want[i]), 1e-3), "%s grad %d[%lld]: %.9g vs torch %.9g",
                              mode[m], j, (long long)i, g[j][i], want[i]);
        }
    }
}

/* Clipping rules without torch: the norm, the scale, no-op under the limit. */
static void t_clip_rules(void)
{
    float a[2] = {3, 0}, b[1] = {4};
    dt_param_slot s[2] = {{"a", a, a, 2}, {"b", b, b, 1}};
    double norm = dt_clip_grad_norm(s, 2, 1.0);
    DT_ASSERT_NEAR(norm, 5.0, 1e-6);
    DT_ASSERT_NEAR(a[0], 3.0 / (5 + 1e-6), 1e-7);
    DT_ASSERT_NEAR(b[0], 4.0 / (5 + 1e-6), 1e-7);
    norm = dt_clip_grad_norm(s, 2, 10.0);
    DT_ASSERT_NEAR(norm, 1.0, 1e-6);
    DT_ASSERT_NEAR(a[0], 3.0 / (5 + 1e-6), 1e-7); /* unchanged */
    DT_ASSERT_EQ(dt_clip_grad_norm(s, 0, 1.0), 0);
}

/* SGD's and Adam's formulas on one element, computed here in double (the rules of
 * TORCH_SEMANTICS.md), independent of torch. */
static void t_formulas(void)
{
    float p = 1.5f, g = 0.25f;
    dt_param_slot s = {"w", &p, &g, 1};
    dt_optim *o = dt_optim_sgd(&s, 1, (dt_sgd_opts){.lr = 0.1, .momentum = 0.9, .dampening = 0.5, .weight_decay = 0.2});
    DT_ASSERT(o);
    double pd = 1.5, buf = 0;
    for (int t = 1; t <= 3; t++) {
        DT_ASSERT_OK(dt_optim_step(o));
        double d = 0.25 + 0.2 * pd;
        buf = t == 1 ? d : 0.9 * buf + 0.5 * d;
        pd -= 0.1 * buf;
        DT_ASSERT_NEAR(p, pd, 1e-6);
    }
    dt_optim_free(o);
    p = 1.5f;
    pd = 1.5;
    o = dt_optim_adamw(&s, 1, (dt_adam_opts)DT_ADAMW_OPTS_INIT);
    DT_ASSERT(o);
    double m = 0, v = 0;
    for (int t = 1; t <= 3; t++) {
        DT_ASSERT_OK(dt_optim_step(o));
        pd *= 1 - 1e-3 * 0.01;
        m = 0.9 * m + 0.1 * 0.25;
        v = 0.999 * v + 0.001 * 0.0625;
        pd -= (1e-3 / (1 - pow(0.9, t))) * m / (sqrt(v) / sqrt(1 - pow(0.999, t)) + 1e-8);
        DT_ASSERT_NEAR(p, pd, 1e-6);
    }
    DT_ASSERT_NEAR(dt_optim_get_lr(o), 1e-3, 0);
    DT_ASSERT_EQ(dt_optim_get_kind(o), DT_OPTIM_ADAMW);
    dt_optim_zero_grad(o);
    DT_ASSERT(g == 0.0f);
    dt_optim_free(o);
    dt_optim_free(NULL);
}

static void t_bad_options(void)
{
    float p[2] = {0}, g[2] = {0};
    dt_param_slot s[2] = {{"a", p, g, 1}, {"a", p + 1, g + 1, 1}};
    DT_ASSERT(dt_optim_sgd(s, 2, (dt_sgd_opts)DT_SGD_OPTS_INIT) == NULL);
    DT_ASSERT_CONTAINS(dt_last_error(), "'a' appears twice");
    s[1].name = "b";
    DT_ASSERT(dt_optim_sgd(s, 2, (dt_sgd_opts){.lr = -1}) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    DT_ASSERT(dt_optim_sgd(s, 2, (dt_sgd_opts){.lr = 0.1, .nesterov = true}) == NULL);
    DT_ASSERT_CONTAINS(dt_last_error(), "nesterov");
    DT_ASSERT(dt_optim_adam(s, 2, (dt_adam_opts){.lr = 0.1, .beta1 = 1.0, .beta2 = 0.9}) == NULL);
    DT_ASSERT_CONTAINS(dt_last_error(), "beta1");
    DT_ASSERT(dt_optim_adamw(s, 2, (dt_adam_opts){.lr = 0.1, .beta1 = 0.9, .beta2 = 0.9, .eps = -1}) == NULL);
    s[1].numel = -1;
    DT_ASSERT(dt_optim_adam(s, 2, (dt_adam_opts)DT_ADAM_OPTS_INIT) == NULL);
    s[1].numel = 1;
    s[1].data = NULL;
    DT_ASSERT(dt_optim_adam(s, 2, (dt_adam_opts)DT_ADAM_OPTS_INIT) == NULL);
    s[1].data = p + 1;
    dt_optim *o = dt_optim_adam(s, 2, (dt_adam_opts)DT_ADAM_OPTS_INIT);
    DT_ASSERT(o);
    dt_param_slot r[2] = {s[0], s[1]};
    r[1].name = "c";
    DT_ASSERT_ERR(dt_optim_rebind(o, r, 2), DT_EMISMATCH);
    DT_ASSERT_ERR(dt_optim_rebind(o, r, 1), DT_EMISMATCH);
    dt_optim_free(o);
}

/* Save after 2 steps, load into a fresh optimizer, 3 more steps: the same bits as 5
 * uninterrupted steps, for every config. Then bad files leave the optimizer as it was. */
static void t_save_load(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/opt.safetensors", g_dir);
    uint32_t seed = 1;
#define RND() ((seed = seed * 1664525u + 1013904223u), ((float)(seed >> 8) / 16777216.0f - 0.5f) * 4)
    for (size_t c = 0; c < NCONFIG; c++) {
        static float pa[NSLOT][64], pb[NSLOT][64], gr[STEPS][NSLOT][64];
        dt_param_slot sa[NSLOT], sb[NSLOT];
        for (int j = 0; j < NSLOT; j++) {
            for (int i = 0; i < NUMEL[j]; i++) pa[j][i] = pb[j][i] = RND();
            for (int k = 0; k < STEPS; k++)
                for (int i = 0; i < NUMEL[j]; i++) gr[k][j][i] = RND();
            sa[j] = (dt_param_slot){NAMES[j], pa[j], NULL, NUMEL[j]};
            sb[j] = (dt_param_slot){NAMES[j], pb[j], NULL, NUMEL[j]};
        }
        dt_optim *a = make(&CONFIGS[c], sa, NSLOT), *b = make(&CONFIGS[c], sb, NSLOT);
        DT_ASSERT(a && b);
        for (int k = 0; k < STEPS; k++) {
            for (int j = 0; j < NSLOT; j++) sa[j].grad = sb[j].grad = (k == 1 && j == 2) ? NULL : gr[k][j];
            dt_optim_set_lr(a, 0.01 * (k + 1));
            DT_ASSERT_OK(dt_optim_rebind(a, sa, NSLOT));
            DT_ASSERT_OK(dt_optim_step(a));
            if (k == 2) { /* b: saved and reloaded into a new optimizer before its third step */
                DT_ASSERT_OK(dt_optim_save(b, path));
                dt_optim_free(b);
                dt_sgd_opts so = CONFIGS[c].sgd;
                dt_adam_opts ao = CONFIGS[c].adam;
                so.lr = ao.lr = 12345; /* the file's lr and hyperparameters win */
                so.dampening = so.nesterov ? 0 : 0.77;
                ao.beta2 = 0.5;
                config other = {CONFIGS[c].name, CONFIGS[c].kind, so, ao};
                b = make(&other, sb, NSLOT);
                DT_ASSERT(b);
                DT_ASSERT_OK(dt_optim_load(b, path));
                DT_ASSERT_NEAR(dt_optim_get_lr(b), 0.01 * k, 0);
            }
            dt_optim_set_lr(b, 0.01 * (k + 1));
            DT_ASSERT_OK(dt_optim_rebind(b, sb, NSLOT));
            DT_ASSERT_OK(dt_optim_step(b));
        }
        for (int j = 0; j < NSLOT; j++)
            DT_ASSERT_MSG(memcmp(pa[j], pb[j], (size_t)NUMEL[j] * 4) == 0, "%s: slot %d differs after save/load", CONFIGS[c].name, j);
        DT_ASSERT_EQ(dt_optim_steps(b), STEPS);
        dt_optim_free(a);
        dt_optim_free(b);
    }
#undef RND
    /* the file: torch's state names */
    float p[3] = {1, 2, 3}, g[3] = {1, 1, 1};
    dt_param_slot s = {"w", p, g, 3};
    dt_optim *o = dt_optim_adam(&s, 1, (dt_adam_opts)DT_ADAM_OPTS_INIT);
    DT_ASSERT_OK(dt_optim_step(o));
    DT_ASSERT_OK(dt_optim_save(o, path));
    dt_st_file *f = dt_st_open(path);
    DT_ASSERT(f);
    DT_ASSERT(dt_st_find(f, "state.w.exp_avg") && dt_st_find(f, "state.w.exp_avg_sq") && dt_st_find(f, "state.w.step"));
    DT_ASSERT_STREQ(dt_st_meta_get(f, "optimizer"), "adam");
    DT_ASSERT_STREQ(dt_st_meta_get(f, "beta2"), "0.999");
    dt_st_close(f);
    /* wrong kind, wrong size, unknown parameter, not an optimizer file: errors, state unchanged */
    dt_optim *sgd = dt_optim_sgd(&s, 1, (dt_sgd_opts){.lr = 0.1, .momentum = 0.9});
    DT_ASSERT_ERR(dt_optim_load(sgd, path), DT_EMISMATCH);
    DT_ASSERT_CONTAINS(dt_last_error(), "adam");
    dt_optim_free(sgd);
    dt_param_slot s2 = {"w", p, g, 2};
    dt_optim *o2 = dt_optim_adam(&s2, 1, (dt_adam_opts)DT_ADAM_OPTS_INIT);
    DT_ASSERT_ERR(dt_optim_load(o2, path), DT_ESHAPE);
    dt_optim_free(o2);
    dt_param_slot s3 = {"v", p, g, 3};
    dt_optim *o3 = dt_optim_adam(&s3, 1, (dt_adam_opts){.lr = 0.5, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8});
    DT_ASSERT_ERR(dt_optim_load(o3, path), DT_EMISMATCH);
    DT_ASSERT_CONTAINS(dt_last_error(), "'state.w.");
    DT_ASSERT_NEAR(dt_optim_get_lr(o3), 0.5, 0); /* untouched */
    DT_ASSERT_EQ(dt_optim_steps(o3), 0);
    dt_optim_free(o3);
    int64_t sh[1] = {3};
    dt_st_entry e = {"w", DT_F32, 1, sh, p};
    DT_ASSERT_OK(dt_st_write(path, &e, 1, NULL, 0));
    DT_ASSERT_ERR(dt_optim_load(o, path), DT_ECORRUPT);
    DT_ASSERT_EQ(dt_optim_steps(o), 1);
    snprintf(path, sizeof path, "%s/absent.safetensors", g_dir);
    DT_ASSERT_ERR(dt_optim_load(o, path), DT_ENOTFOUND);
    dt_optim_free(o);
}

/* The state as one part of a bigger file (a snapshot): prefixed names and keys next
 * to other entries; loading looks at its prefix only. */
static void t_state_in_list(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/snap.safetensors", g_dir);
    float p[3] = {1, 2, 3}, g[3] = {0.5f, -1, 2}, q[3] = {1, 2, 3}, w[4] = {9, 8, 7, 6};
    dt_param_slot s = {"w", p, g, 3}, t = {"w", q, g, 3};
    dt_adam_opts ao = DT_ADAMW_OPTS_INIT;
    ao.lr = 0.1;
    dt_optim *a = dt_optim_adamw(&s, 1, ao);
    DT_ASSERT_OK(dt_optim_step(a));
    dt_st_list *l = dt_st_list_new();
    DT_ASSERT(l);
    int64_t sh4[1] = {4};
    DT_ASSERT_OK(dt_st_list_add(l, "model.", "w", DT_F32, 1, sh4, w));
    DT_ASSERT_ERR(dt_st_list_add(l, "model.", "w", DT_F32, 1, sh4, w), DT_EINVAL);   /* twice */
    DT_ASSERT_OK(dt_optim_state_add(a, l, "optim."));
    DT_ASSERT_OK(dt_st_list_meta(l, NULL, "epoch", "1"));
    DT_ASSERT_OK(dt_st_list_meta(l, NULL, "epoch", "2"));   /* replaced */
    size_t ne, nm;
    dt_st_list_entries(l, &ne);
    dt_st_list_metas(l, &nm);
    DT_ASSERT_EQ(ne, 4);   /* model.w, optim.state.w.{step,exp_avg,exp_avg_sq} */
    DT_ASSERT_OK(dt_st_list_write(l, path));
    dt_st_list_free(l);
    dt_st_file *f = dt_st_open(path);
    DT_ASSERT(f);
    DT_ASSERT_STREQ(dt_st_meta_get(f, "epoch"), "2");
    DT_ASSERT_STREQ(dt_st_meta_get(f, "optim.optimizer"), "adamw");
    DT_ASSERT(dt_st_find(f, "optim.state.w.exp_avg") && dt_st_find(f, "model.w"));
    dt_optim *b = dt_optim_adamw(&t, 1, (dt_adam_opts)DT_ADAMW_OPTS_INIT);
    DT_ASSERT_ERR(dt_optim_state_load(b, f, "", "snap"), DT_ECORRUPT);   /* no unprefixed state there */
    DT_ASSERT_OK(dt_optim_state_load(b, f, "optim.", "snap"));
    dt_st_close(f);
    DT_ASSERT_NEAR(dt_optim_get_lr(b), 0.1, 0);
    memcpy(q, p, sizeof q);
    DT_ASSERT_OK(dt_optim_step(a));
    DT_ASSERT_OK(dt_optim_step(b));
    DT_ASSERT(memcmp(p, q, sizeof p) == 0);
    dt_optim_free(a);
    dt_optim_free(b);
}

static void t_alloc_sweep(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/sweep.safetensors", g_dir);
    float p[2][5] = {{1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}}, g[2][5] = {{1, 1, 1, 1, 1}, {2, 2, 2, 2, 2}};
    dt_param_slot s[2] = {{"a", p[0], g[0], 5}, {"b", p[1], g[1], 5}};
    int done = 0;
    for (int64_t n = 1; n < 200 && !done; n++) {
        dt_mem_stats base, now;
        dt_mem_get_stats(&base);
        dt_alloc_fail_at(n);
        int rc = DT_ENOMEM;
        dt_optim *o = dt_optim_adamw(s, 2, (dt_adam_opts)DT_ADAMW_OPTS_INIT);
        if (o && dt_optim_step(o) == 0 && dt_optim_save(o, path) == 0) {
            dt_optim *q = dt_optim_adamw(s, 2, (dt_adam_opts)DT_ADAMW_OPTS_INIT);
            if (q) {
                rc = dt_optim_load(q, path);
                dt_optim_free(q);
            }
        }
        int code = dt_last_error_code();
        dt_alloc_fail_at(0);
        dt_optim_free(o);
        if (rc == 0) done = 1;
        else DT_ASSERT_MSG(code == DT_ENOMEM, "allocation %lld failing gave %s: %s", (long long)n, dt_errname(code), dt_last_error());
        dt_mem_get_stats(&now);
        DT_ASSERT_MSG(now.total_current == base.total_current, "leak of %lld bytes when allocation %lld fails",
                      (long long)(now.total_current - base.total_current), (long long)n);
    }
    DT_ASSERT(done);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_optim_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    if (dt_py_have_torch()) {
        char ref[512];
        snprintf(ref, sizeof ref, "%s/ref.safetensors", g_dir);
        if (dt_py_sh(DT_PY " " DT_SRC_DIR "/tests/optim/optim_ref.py %s", ref) != 0) {
            fprintf(stderr, "FAIL: optim_ref.py did not run\n");
            return 1;
        }
        g_ref = dt_st_open(ref);
        if (!g_ref) { fprintf(stderr, "FAIL: %s\n", dt_last_error()); return 1; }
    }
    DT_RUN(t_vs_torch);
    dt__optim_force_generic(1); /* the loops without FMA instructions: the same bits */
    DT_RUN(t_vs_torch);
    dt__optim_force_generic(0);
    DT_RUN(t_schedules_vs_torch);
    DT_RUN(t_schedules_rules);
    DT_RUN(t_clip_vs_torch);
    DT_RUN(t_clip_rules);
    DT_RUN(t_formulas);
    DT_RUN(t_bad_options);
    DT_RUN(t_save_load);
    DT_RUN(t_state_in_list);
    DT_RUN(t_alloc_sweep);
    dt_st_close(g_ref);
    dt_py_sh("rm -rf %s", g_dir);
    return DT_TEST_END();
}
