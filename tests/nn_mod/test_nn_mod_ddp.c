/* Modules under DDP (ddp.h), real forked ranks (tests/dist/spawn.h), world sizes 1-3: a
 * module's named parameters go to dt_ddp_new as they are; the construction broadcasts rank
 * 0's values into every rank's flat parameter buffer; N-rank training over dt_ddp_slots
 * equals one process training the same module on the concatenated batch; after dt_ddp_free
 * the module still saves and frees cleanly. */
#include "dist/spawn.h"
#include "nn_mod/models.h"

enum { B = 4, IN = 6, HID = 8, OUT = 3, STEPS = 3 };

static dt_tensor *xs(int r, int s, int rows)
{
    dt_rng g = dt_rng_make(100 + (uint64_t)s, (uint64_t)r);
    return dt_randn(&g, DT_F32, DT_SHAPE(rows, IN));
}

static dt_tensor *ys(int r, int s, int rows)
{
    dt_rng g = dt_rng_make(200 + (uint64_t)s, (uint64_t)r);
    return dt_rand_int(&g, 0, OUT, DT_I64, DT_SHAPE(rows));
}

static dt_optim *sgd(const dt_param_slot *s, size_t n)
{
    dt_sgd_opts o = DT_SGD_OPTS_INIT;
    o.lr = 0.1, o.momentum = 0.9;
    return dt_optim_sgd(s, n, o);
}

static void r_equiv(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 30000);
    DT_ASSERT_MSG(pg, "%s", dt_last_error());
    dt_rng g = dt_rng_make((uint64_t)rank, dt_rng_stream(DT_RNG_INIT, 0)), g0 = dt_rng_make(0, dt_rng_stream(DT_RNG_INIT, 0));
    dt_module *m = test_mlp(&g, IN, HID, OUT), *ref = test_mlp(&g0, IN, HID, OUT);
    size_t np;
    const dt_named_param *p = dt_module_params(m, &np);
    dt_ddp_tensor ps[16];
    for (size_t i = 0; i < np; i++) ps[i] = (dt_ddp_tensor){p[i].name, p[i].param};
    dt_ddp *d = dt_ddp_new(pg, ps, (int)np, NULL, 0, NULL);
    DT_ASSERT_MSG(d, "%s", dt_last_error());
    int64_t cnt;
    float *mine = dt_module_param_buffer(m, &cnt), *theirs = dt_module_param_buffer(ref, NULL);
    DT_ASSERT_MSG(memcmp(mine, theirs, (size_t)cnt * 4) == 0, "rank %d: parameters not rank 0's after the wrap", rank);
    size_t ns, nr;
    const dt_param_slot *ds = dt_ddp_slots(d, &ns), *rs = dt_module_slots(ref, &nr);
    dt_optim *opt = sgd(ds, ns), *ropt = sgd(rs, nr);
    DT_ASSERT_MSG(opt && ropt && ns == np, "opt %p ropt %p ns %zu np %zu: %s", (void *)opt, (void *)ropt, ns, np, dt_last_error());
    for (int s = 0; s < STEPS; s++) {
        DT_SCOPE {
            DT_ASSERT_OK(dt_ddp_pre_forward(d));
            dt_optim_zero_grad(opt);
            DT_ASSERT_OK(dt_backward(dt_cross_entropy(dt_module_forward(m, xs(rank, s, B)), ys(rank, s, B))));
            DT_ASSERT_OK(dt_optim_step(opt));
            /* The reference: every rank's rows in one batch, in rank order. */
            dt_tensor *xa[8], *ya[8];
            for (int r = 0; r < n; r++) xa[r] = xs(r, s, B), ya[r] = ys(r, s, B);
            dt_optim_zero_grad(ropt);
            DT_ASSERT_OK(dt_backward(dt_cross_entropy(dt_module_forward(ref, dt_cat(xa, n, 0)), dt_cat(ya, n, 0))));
            DT_ASSERT_OK(dt_optim_step(ropt));
        }
    }
    double worst = 0, scale = 1e-12;
    for (int64_t i = 0; i < cnt; i++) scale = fmax(scale, fabs(theirs[i]));
    for (int64_t i = 0; i < cnt; i++) worst = fmax(worst, fabs(mine[i] - theirs[i]) / scale);
    DT_ASSERT_MSG(worst <= 1e-5, "world %d rank %d: DDP vs one process, max error %g", n, rank, worst);
    dt_optim_free(opt);
    dt_ddp_free(d);
    char path[96];
    snprintf(path, sizeof path, "/tmp/dt_nn_ddp_%d_%d_%d.safetensors", (int)getpid(), n, rank);
    DT_ASSERT_OK(dt_module_save(m, path));
    DT_ASSERT_OK(dt_module_load(ref, path));
    unlink(path);
    dt_optim_free(ropt);
    dt_module_free(m);
    dt_module_free(ref);
    dt_destroy_process_group(pg);
}

static void t_ddp_equals_one_process(void)
{
    for (int n = 1; n <= 3; n++) DT_ASSERT_EQ(spawn_ranks(n, r_equiv, NULL, 0), 0);
}

int main(void)
{
    DT_RUN(t_ddp_equals_one_process);
    return DT_TEST_END();
}
