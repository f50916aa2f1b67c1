/* DDP over real forked ranks (tests/dist/spawn.h), world sizes 1-4: N-rank DDP equals
 * one process training on the concatenated batch; the construction check and
 * broadcast; several buckets, their rebuild in ready order and the staged
 * (non-adjacent) bucket; no_sync accumulation; unused parameters with and without
 * find_unused_parameters; the fp16/bf16 hooks. The model is made of autograd ops on
 * leaves, so this tests DDP alone. */
#include "dist/spawn.h"
#include "parallel/ddp_internal.h"

enum { B = 4, IN = 5, HID = 7, OUT = 3, NP = 5 };

/* Parameters in registration order: w1 (HID, IN), b1 (HID), w2 (OUT, HID), b2 (OUT),
 * side (OUT, IN): side is used in a second branch from x, so its gradient is ready at
 * another point of backward than its neighbours'. */
static const int64_t SHAPES[NP][2] = {{HID, IN}, {HID, 0}, {OUT, HID}, {OUT, 0}, {OUT, IN}};
static const char *NAMES[NP] = {"w1", "b1", "w2", "b2", "side"};

typedef struct {
    dt_tensor *p[NP];
} model;

static void model_init(model *m, uint64_t seed)
{
    dt_rng g = dt_rng_make(seed, 7);
    for (int i = 0; i < NP; i++) {
        int nd = SHAPES[i][1] ? 2 : 1;
        m->p[i] = dt_keep(dt_rand(&g, DT_F32, nd, SHAPES[i]));
        dt_tensor_set_requires_grad(m->p[i], true);
    }
}

static void model_free(model *m)
{
    for (int i = 0; i < NP; i++) dt_tensor_release(m->p[i]);
}

/* The batch of rank r at step s (rows of the global batch r*B .. r*B+B-1). */
static dt_tensor *batch(int r, int s, int rows)
{
    dt_rng g = dt_rng_make(1000 + (uint64_t)s, (uint64_t)r);
    return dt_rand(&g, DT_F32, DT_SHAPE(rows, IN));
}

/* mean over rows of sum((tanh(x w1^T + b1) w2^T + b2 + x side^T)^2); `skip_side`
 * leaves side out (an unused parameter). */
static dt_tensor *loss_of(model *m, dt_tensor *x, bool skip_side)
{
    dt_tensor *h = dt_tanh(dt_linear(x, m->p[0], m->p[1]));
    dt_tensor *y = dt_linear(h, m->p[2], m->p[3]);
    if (!skip_side) y = dt_add(y, dt_linear(x, m->p[4], NULL));
    return dt_mean(dt_sum(dt_mul(y, y), (int[]){1}, 1, false), NULL, 0, false);
}

static void sgd(model *m, double lr)
{
    DT_NO_GRAD DT_SCOPE {
        for (int i = 0; i < NP; i++) {
            dt_tensor *g = dt_tensor_grad(m->p[i]);
            if (g) dt_tensor_copy_(m->p[i], dt_sub(m->p[i], dt_mul_scalar(g, lr)));
            if (g) dt_tensor_zero_grad(m->p[i]);
        }
    }
}

static double max_rel(dt_tensor *a, dt_tensor *b)
{
    int64_t n = dt_tensor_numel(a);
    const float *x = dt_tensor_data(a), *y = dt_tensor_data(b);
    double m = 0, s = 1e-6;
    for (int64_t i = 0; i < n; i++) s = fmax(s, fabs(y[i]));
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i] - y[i]) / s);
    return m;
}

static dt_ddp *wrap(dt_pg *pg, model *m, const dt_ddp_opts *o)
{
    dt_ddp_tensor ps[NP];
    for (int i = 0; i < NP; i++) ps[i] = (dt_ddp_tensor){NAMES[i], m->p[i]};
    return dt_ddp_new(pg, ps, NP, NULL, 0, o);
}

typedef struct {
    dt_ddp_opts o;
    double tol;
    int accum;   /* micro-batches per step (no_sync on all but the last) */
} equiv_case;

/* 4 steps of DDP vs the same steps on one process over all ranks' rows. */
static void r_equiv(int rank, int n, void *arg)
{
    const equiv_case *c = arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT_MSG(pg, "%s", dt_last_error());
    model m, ref;
    model_init(&m, 50 + (uint64_t)rank);   /* different per rank: the wrap broadcasts rank 0's */
    model_init(&ref, 50);
    dt_ddp *d = wrap(pg, &m, &c->o);
    DT_ASSERT_MSG(d, "%s", dt_last_error());
    for (int i = 0; i < NP; i++) DT_ASSERT(max_rel(m.p[i], ref.p[i]) == 0);
    for (int s = 0; s < 4; s++) {
        for (int a = 0; a < c->accum; a++) DT_SCOPE {
            dt_ddp_set_no_sync(d, a < c->accum - 1);
            DT_ASSERT_OK(dt_ddp_pre_forward(d));
            dt_tensor *l = loss_of(&m, batch(rank, s * c->accum + a, B), false);
            DT_ASSERT_OK(dt_ddp_prepare_backward(d, l));
            /* the mean over accum micro-batches, as the reference's mean over its rows */
            DT_ASSERT_MSG(dt_backward(dt_div_scalar(l, c->accum)) == 0, "%s", dt_last_error());
        }
        DT_SCOPE {
            dt_tensor *xs[64];
            for (int r = 0; r < n; r++)
                for (int a = 0; a < c->accum; a++) xs[r * c->accum + a] = batch(r, s * c->accum + a, B);
            DT_ASSERT_OK(dt_backward(loss_of(&ref, dt_cat(xs, n * c->accum, 0), false)));
        }
        for (int i = 0; i < NP; i++) {
            double e = max_rel(dt_tensor_grad(m.p[i]), dt_tensor_grad(ref.p[i]));
            DT_ASSERT_MSG(e <= c->tol, "step %d grad %s: rel err %g > %g", s, NAMES[i], e, c->tol);
        }
        sgd(&m, 0.1);
        sgd(&ref, 0.1);
    }
    dt_ddp_stats st = dt_ddp_get_stats(d);
    DT_ASSERT_EQ(st.syncs, 4);
    DT_ASSERT(st.rebuilt);
    /* every synchronised step ran its buckets' all_reduces; the hidden part is a part */
    DT_ASSERT(st.hidden_s >= 0 && st.hidden_s <= st.comm_s + 1e-9);
    if (n > 1) DT_ASSERT(st.comm_s > 0);
    if (n > 1) DT_ASSERT(st.shared);
    dt_ddp_free(d);
    /* the grads are the params' own again, values kept */
    for (int i = 0; i < NP; i++) DT_ASSERT(dt_tensor_grad(m.p[i]) != NULL);
    model_free(&m);
    model_free(&ref);
    dt_destroy_process_group(pg);
}

static void t_equivalence(void)
{
    equiv_case c = {.o = DT_DDP_OPTS_INIT, .tol = 2e-6, .accum = 1};
    for (int n = 1; n <= 4; n++) DT_ASSERT_EQ(spawn_ranks(n, r_equiv, &c, 0), 0);
}

/* tiny buckets: one parameter or two each, rebuilt in ready order; side's ready point
 * puts non-adjacent parameters in one bucket (the staged path) */
static void r_buckets(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT(pg);
    model m;
    model_init(&m, 5);
    dt_ddp_opts o = DT_DDP_OPTS_INIT;
    o.first_bucket_mb = 50.0 / (1 << 20);   /* 50 bytes */
    o.bucket_cap_mb = 50.0 / (1 << 20);
    dt_ddp *d = wrap(pg, &m, &o);
    DT_ASSERT_MSG(d, "%s", dt_last_error());
    DT_ASSERT(dt_ddp_get_stats(d).buckets >= 3);
    DT_SCOPE {
        DT_ASSERT_OK(dt_ddp_pre_forward(d));
        DT_ASSERT_OK(dt_backward(loss_of(&m, batch(rank, 0, B), false)));
    }
    DT_ASSERT(dt_ddp_get_stats(d).rebuilt);
    int staged = 0;
    for (int j = 0; j < d->nbk; j++) staged += !d->b[j].contiguous;
    if (rank == 0) fprintf(stderr, "world %d: %d buckets after the rebuild, %d staged\n", n, d->nbk, staged);
    dt_ddp_free(d);
    model_free(&m);
    dt_destroy_process_group(pg);
}

static void t_buckets(void)
{
    for (int n = 1; n <= 3; n++) DT_ASSERT_EQ(spawn_ranks(n, r_buckets, NULL, 0), 0);
    /* then the same equivalence through those buckets, and through a staged one */
    equiv_case c = {.o = DT_DDP_OPTS_INIT, .tol = 2e-6, .accum = 1};
    c.o.first_bucket_mb = 50.0 / (1 << 20);
    c.o.bucket_cap_mb = 50.0 / (1 << 20);
    for (int n = 2; n <= 3; n++) DT_ASSERT_EQ(spawn_ranks(n, r_equiv, &c, 0), 0);
}

static void t_no_sync(void)
{
    equiv_case c = {.o = DT_DDP_OPTS_INIT, .tol = 2e-6, .accum = 3};
    for (int n = 1; n <= 3; n += 2) DT_ASSERT_EQ(spawn_ranks(n, r_equiv, &c, 0), 0);
}

static void t_hooks(void)
{
    equiv_case c = {.o = DT_DDP_OPTS_INIT, .tol = 2e-3, .accum = 1};
    c.o.comm_hook = DT_DDP_HOOK_FP16;
    DT_ASSERT_EQ(spawn_ranks(2, r_equiv, &c, 0), 0);
    c.o.comm_hook = DT_DDP_HOOK_BF16;
    c.tol = 1.6e-2;
    DT_ASSERT_EQ(spawn_ranks(3, r_equiv, &c, 0), 0);
}

/* A parameter the loss does not use: an error naming it, unless find_unused. */
static void r_unused(int rank, int n, void *arg)
{
    bool find = arg != NULL;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT(pg);
    model m;
    model_init(&m, 9);
    dt_ddp_opts o = DT_DDP_OPTS_INIT;
    o.find_unused_parameters = find;
    dt_ddp *d = wrap(pg, &m, &o);
    DT_ASSERT(d);
    for (int s = 0; s < (find ? 3 : 1); s++) DT_SCOPE {
        DT_ASSERT_OK(dt_ddp_pre_forward(d));
        dt_tensor *l = loss_of(&m, batch(rank, s, B), true);
        DT_ASSERT_OK(dt_ddp_prepare_backward(d, l));
        int rc = dt_backward(l);
        if (find) {
            DT_ASSERT_MSG(rc == 0, "%s", dt_last_error());
        } else {
            DT_ASSERT_EQ(rc, DT_ESTATE);
            DT_ASSERT_CONTAINS(dt_last_error(), "side");
            DT_ASSERT_CONTAINS(dt_last_error(), "find_unused_parameters");
            DT_ASSERT_EQ(dt_ddp_pre_forward(d), DT_ESTATE);   /* and it stays failed */
            DT_ASSERT_CONTAINS(dt_last_error(), "side");
        }
    }
    if (find) {
        /* the used gradients are averaged: equal on every rank */
        float v = dt_tensor_data_f32(dt_tensor_grad(m.p[0]))[0], mx = v, mn = v;
        DT_ASSERT_OK(dt_pg_allreduce(pg, &mx, &mx, 1, DT_F32, DT_RED_MAX, NULL, NULL));
        DT_ASSERT_OK(dt_pg_allreduce(pg, &mn, &mn, 1, DT_F32, DT_RED_MIN, NULL, NULL));
        DT_ASSERT_EQ(mx, mn);
    }
    dt_ddp_free(d);
    model_free(&m);
    dt_destroy_process_group(pg);
}

static void t_unused(void)
{
    DT_ASSERT_EQ(spawn_ranks(2, r_unused, NULL, 0), 0);
    DT_ASSERT_EQ(spawn_ranks(2, r_unused, (void *)1, 0), 0);
}

/* Rank 1 has a different shape: every rank fails, rank 1's error names it. */
static void r_mismatch(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT(pg);
    DT_SCOPE {
        dt_tensor *a = dt_zeros(DT_F32, DT_SHAPE(3, 4)), *b = dt_zeros(DT_F32, rank == 1 ? 1 : 2, (const int64_t[]){5, 2});
        dt_tensor_set_requires_grad(a, true);
        dt_tensor_set_requires_grad(b, true);
        dt_ddp_tensor ps[2] = {{"enc.weight", a}, {"enc.bias", b}};
        dt_ddp *d = dt_ddp_new(pg, ps, 2, NULL, 0, NULL);
        DT_ASSERT(d == NULL);
        DT_ASSERT_EQ(dt_last_error_code(), DT_EMISMATCH);
        if (rank == 1) {
            DT_ASSERT_CONTAINS(dt_last_error(), "rank 1");
            DT_ASSERT_CONTAINS(dt_last_error(), "enc.bias:5,2");
            DT_ASSERT_CONTAINS(dt_last_error(), "enc.bias:5");
        } else {
            DT_ASSERT_CONTAINS(dt_last_error(), "rank 1's");
        }
        /* a bad parameter is refused before any communication */
        dt_tensor *i = dt_zeros(DT_I64, DT_SHAPE(2));
        dt_ddp_tensor bad[1] = {{"ids", i}};
        DT_ASSERT(dt_ddp_new(pg, bad, 1, NULL, 0, NULL) == NULL);
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    }
    dt_destroy_process_group(pg);
}

static void t_mismatch(void)
{
    DT_ASSERT_EQ(spawn_ranks(3, r_mismatch, NULL, 0), 0);
}

/* Buffers: rank 0's broadcast at the wrap and before each forward. */
static void r_buffers(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT(pg);
    model m;
    model_init(&m, 3);
    dt_tensor *stat = dt_full(DT_F32, DT_SHAPE(4), rank + 1);
    dt_ddp_tensor ps[NP], bs[1] = {{"running_mean", stat}};
    for (int i = 0; i < NP; i++) ps[i] = (dt_ddp_tensor){NAMES[i], m.p[i]};
    dt_ddp *d = dt_ddp_new(pg, ps, NP, bs, 1, NULL);
    DT_ASSERT(d);
    DT_ASSERT_EQ(dt_tensor_data_f32(stat)[3], 1.0f);
    dt_tensor_fill(stat, 10 + rank);
    DT_ASSERT_OK(dt_ddp_pre_forward(d));
    DT_ASSERT_EQ(dt_tensor_data_f32(stat)[0], 10.0f);
    dt_ddp_free(d);
    dt_tensor_release(stat);
    model_free(&m);
    dt_destroy_process_group(pg);
}

static void t_buffers(void)
{
    DT_ASSERT_EQ(spawn_ranks(3, r_buffers, NULL, 0), 0);
}

/* Uneven inputs: rank r has 2 + r steps. Each step averages over the initial world
 * (joined ranks add zeros); at the end every rank holds the last joiner's model,
 * which equals one process doing the same steps. */
static void r_join(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT(pg);
    model m, ref;
    model_init(&m, 21);
    model_init(&ref, 21);
    dt_ddp *d = wrap(pg, &m, NULL);
    DT_ASSERT(d);
    DT_ASSERT_OK(dt_ddp_join_enable(d, true));
    for (int s = 0; s < 2 + rank; s++) DT_SCOPE {
        DT_ASSERT_OK(dt_ddp_pre_forward(d));
        DT_ASSERT_OK(dt_backward(loss_of(&m, batch(rank, s, B), false)));
        sgd(&m, 0.1);
    }
    DT_ASSERT_MSG(dt_ddp_join(d) == 0, "%s", dt_last_error());
    for (int s = 0; s < 2 + n - 1; s++) DT_SCOPE {
        dt_tensor *l = NULL;
        for (int r = 0; r < n; r++)
            if (s < 2 + r) {
                dt_tensor *lr = loss_of(&ref, batch(r, s, B), false);
                l = l ? dt_add(l, lr) : lr;
            }
        DT_ASSERT_OK(dt_backward(dt_div_scalar(l, n)));
        sgd(&ref, 0.1);
    }
    for (int i = 0; i < NP; i++) {
        double e = max_rel(m.p[i], ref.p[i]);
        DT_ASSERT_MSG(e <= 2e-6, "param %s: rel err %g", NAMES[i], e);
    }
    dt_ddp_free(d);
    model_free(&m);
    model_free(&ref);
    dt_destroy_process_group(pg);
}

static void t_join(void)
{
    for (int n = 2; n <= 3; n++) DT_ASSERT_EQ(spawn_ranks(n, r_join, NULL, 0), 0);
}

/* dt_ddp_wrap over an nn module: 3 SGD steps with momentum through dt_module_slots
 * equal one process on the concatenated batch; the grads go back to the module. */
static dt_module *mlp(uint64_t seed)
{
    dt_rng g = dt_rng_make(seed, dt_rng_stream(DT_RNG_INIT, 0));
    dt_module *l[] = {dt_nn_flatten(), dt_nn_linear(IN, HID, true, &g), dt_nn_relu(), dt_nn_linear(HID, OUT, true, &g)};
    return dt_nn_sequential(4, l);
}

static dt_tensor *labels(int r, int s, int rows)
{
    dt_rng g = dt_rng_make(2000 + (uint64_t)s, (uint64_t)r);
    return dt_rand_int(&g, 0, OUT, DT_I64, DT_SHAPE(rows));
}

static void r_module(int rank, int n, void *arg)
{
    (void)arg;
    dt_pg *pg = test_pg(rank, n, 60000);
    DT_ASSERT(pg);
    dt_module *m = mlp(80 + (uint64_t)rank), *ref = mlp(80);
    dt_ddp *d = dt_ddp_wrap(m, pg, NULL);
    DT_ASSERT_MSG(d, "%s", dt_last_error());
    DT_ASSERT(dt_ddp_module(d) == m);
    size_t ns, nr;
    const dt_param_slot *sl = dt_module_slots(m, &ns);
    const dt_param_slot *sr = dt_module_slots(ref, &nr);
    dt_sgd_opts so = DT_SGD_OPTS_INIT;
    so.lr = 0.1;
    so.momentum = 0.9;
    dt_optim *om = dt_optim_sgd(sl, ns, so), *or = dt_optim_sgd(sr, nr, so);
    DT_ASSERT(om && or);
    for (int s = 0; s < 3; s++) {
        DT_SCOPE {
            dt_optim_zero_grad(om);
            DT_ASSERT_OK(dt_backward(dt_cross_entropy(dt_ddp_forward(d, batch(rank, s, B)), labels(rank, s, B))));
            DT_ASSERT_OK(dt_optim_step(om));
        }
        DT_SCOPE {
            dt_tensor *xs[8], *ys[8];
            for (int r = 0; r < n; r++) xs[r] = batch(r, s, B), ys[r] = labels(r, s, B);
            dt_optim_zero_grad(or);
            DT_ASSERT_OK(dt_backward(dt_cross_entropy(dt_module_forward(ref, dt_cat(xs, n, 0)), dt_cat(ys, n, 0))));
            DT_ASSERT_OK(dt_optim_step(or));
        }
    }
    size_t np;
    const dt_named_param *pm = dt_module_params(m, &np), *pr = dt_module_params(ref, &np);
    for (size_t i = 0; i < np; i++) {
        double e = max_rel(pm[i].param, pr[i].param);
        DT_ASSERT_MSG(e <= 2e-6, "%s: rel err %g", pm[i].name, e);
    }
    float g0 = sl[0].grad[0];
    dt_ddp_free(d);
    int64_t cnt;
    float *gb = dt_module_grad_buffer(m, &cnt);
    DT_ASSERT(gb != NULL);
    DT_ASSERT_EQ(gb[dt_module_params(m, &np)[0].offset], g0);   /* values kept, back in the module */
    dt_optim_free(om);
    dt_optim_free(or);
    dt_module_free(m);
    dt_module_free(ref);
    dt_destroy_process_group(pg);
}

static void t_module(void)
{
    for (int n = 1; n <= 3; n++) DT_ASSERT_EQ(spawn_ranks(n, r_module, NULL, 0), 0);
}

int main(void)
{
    DT_RUN(t_equivalence);
    DT_RUN(t_buckets);
    DT_RUN(t_no_sync);
    DT_RUN(t_hooks);
    DT_RUN(t_unused);
    DT_RUN(t_mismatch);
    DT_RUN(t_buffers);
    DT_RUN(t_join);
    DT_RUN(t_module);
    return DT_TEST_END();
}
