/* examples/gpt_model.h without torch: the parameter names and count of the reference GPT,
 * bad sizes refused, every allocation of gpt_new failing in turn (NULL + DT_ENOMEM and
 * nothing left allocated), and training steps that return the allocator to the same bytes
 * after each step and to the start once the model and optimizer are freed. The numbers
 * against torch are test_gpt_parity's and test_nn_mod_torch's. */
#include "dt_test.h"
#include "gpt_model.h"

static int64_t mem_now(void)
{
    dt_mem_stats s;
    dt_mem_get_stats(&s);
    return s.total_current;
}

static void t_names(void)
{
    gpt_config c = {.layers = 3, .heads = 2, .embd = 8, .block_size = 5};
    dt_rng g = dt_rng_make(1, dt_rng_stream(DT_RNG_INIT, 0));
    dt_module *m = gpt_new(&c, &g);
    DT_ASSERT_MSG(m, "%s", dt_last_error());
    size_t n;
    const dt_named_param *p = dt_module_params(m, &n);
    DT_ASSERT_EQ(n, 2 + 12 * 3 + 3);
    DT_ASSERT_STREQ(p[0].name, "tok.weight");
    DT_ASSERT_STREQ(p[1].name, "pos.weight");
    DT_ASSERT_STREQ(p[2].name, "blocks.0.ln1.weight");
    DT_ASSERT_STREQ(p[13].name, "blocks.0.out.bias");
    DT_ASSERT_STREQ(p[n - 1].name, "head.weight");
    DT_ASSERT_EQ(p[1].shape[0], 5);
    /* torch: 256E + TE + L(12E^2 + 13E) + 2E + 256E */
    int64_t E = 8;
    DT_ASSERT_EQ(dt_module_num_params(m), 256 * E + 5 * E + 3 * (12 * E * E + 13 * E) + 2 * E + 256 * E);
    dt_module_free(m);

    gpt_config bad = {.layers = 1, .heads = 3, .embd = 8, .block_size = 5};
    DT_ASSERT(gpt_new(&bad, &g) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    gpt_config zero = {.layers = 0, .heads = 1, .embd = 4, .block_size = 2};
    m = gpt_new(&zero, &g);
    DT_ASSERT_MSG(m, "%s", dt_last_error());
    DT_ASSERT_EQ(dt_module_num_params(m), 256 * 4 + 2 * 4 + 2 * 4 + 256 * 4);
    dt_module_free(m);
}

static void t_alloc_failures(void)
{
    gpt_config c = {.layers = 2, .heads = 2, .embd = 8, .block_size = 4};
    int64_t base = mem_now();
    bool finished = false;
    for (int64_t k = 1; !finished && k < 10000; k++) {
        dt_rng g = dt_rng_make(1, dt_rng_stream(DT_RNG_INIT, 0));
        dt_alloc_fail_at(k);
        dt_module *m = gpt_new(&c, &g);
        int rc = m ? dt_module_finalize(m) : dt_last_error_code();
        bool done = dt_alloc_count_since_arm() < k;
        dt_alloc_fail_at(0);
        if (!done) DT_ASSERT_MSG(rc == DT_ENOMEM, "allocation %lld: rc %d (%s)", (long long)k, rc, dt_last_error());
        else { DT_ASSERT_OK(rc); finished = true; }
        dt_module_free(m);
        DT_ASSERT_EQ(mem_now(), base);
    }
    DT_ASSERT(finished);
}

static void t_steps_do_not_leak(void)
{
    int64_t B = 3, T = 6;
    gpt_config c = {.layers = 2, .heads = 2, .embd = 8, .block_size = T};
    dt_rng g = dt_rng_make(2, dt_rng_stream(DT_RNG_INIT, 0));
    int64_t x[18], y[18];
    for (int i = 0; i < 18; i++) x[i] = (i * 37) % 256, y[i] = (i * 91 + 5) % 256;
    int64_t start = mem_now(), after_first = 0;
    dt_module *m = gpt_new(&c, &g);
    DT_ASSERT_MSG(m, "%s", dt_last_error());
    size_t ns;
    const dt_param_slot *s = dt_module_slots(m, &ns);
    dt_adam_opts o = DT_ADAMW_OPTS_INIT;
    o.lr = 1e-2;
    dt_optim *opt = dt_optim_adamw(s, ns, o);
    DT_ASSERT(opt);
    double first = 0, last = 0;
    for (int step = 0; step < 30; step++) {
        int rc = 0;
        DT_SCOPE {
            dt_tensor *xt = dt_from_buffer(x, DT_I64, DT_SHAPE(B, T)), *yt = dt_from_buffer(y, DT_I64, DT_SHAPE(B * T));
            dt_tensor *loss = dt_cross_entropy(dt_view(dt_module_forward(m, xt), DT_SHAPE(-1, 256)), yt);
            dt_optim_zero_grad(opt);
            rc = loss ? dt_backward(loss) : dt_last_error_code();
            if (rc == 0) rc = dt_optim_step(opt);
            if (rc == 0) last = dt_tensor_item(loss);
        }
        DT_ASSERT_MSG(rc == 0, "step %d: %s", step, dt_last_error());
        if (step == 0) first = last, after_first = mem_now();
        else DT_ASSERT_EQ(mem_now(), after_first);
    }
    DT_ASSERT_MSG(last < first - 1.0, "30 steps on one batch: loss %g -> %g", first, last);
    dt_optim_free(opt);
    dt_module_free(m);
    DT_ASSERT_EQ(mem_now(), start);
}

int main(void)
{
    DT_RUN(t_names);
    DT_RUN(t_alloc_failures);
    DT_RUN(t_steps_do_not_leak);
    return DT_TEST_END();
}
