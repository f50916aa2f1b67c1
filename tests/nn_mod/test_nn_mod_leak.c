/* A training loop does not leak: 1000 steps of a small MLP (forward, cross-entropy,
 * backward into the flat gradient buffer, SGD over the module's slots), each step in a
 * scope; the allocator's byte counters return to the same values after every step, and
 * to the starting values once the model and optimizer are freed. Also a grad-free
 * evaluation loop, and train/eval switching, in the same way. */
#include "dt_test.h"
#include "nn_mod/models.h"

#include <stdlib.h>
#include <unistd.h>

/* One step of a throw-away model: the library's lazily made per-thread state (scope
 * stacks, the thread pool, ...) then exists before the baseline is taken. */
static void warm_up(void)
{
    dt_rng g = dt_rng_make(0, 0);
    dt_module *m = test_mlp(&g, 3, 3, 2);
    DT_SCOPE {
        dt_tensor *x = dt_randn(&g, DT_F32, DT_SHAPE(2, 3));
        dt_tensor *y = dt_zeros(DT_I64, DT_SHAPE(2));
        dt_backward(dt_cross_entropy(dt_module_forward(m, x), y));
        dt_argmax(x, 1, false);
    }
    dt_module_free(m);
}

static void t_training_loop_returns_to_baseline(void)
{
    dt_mem_stats s0, s1, s;
    warm_up();
    dt_mem_get_stats(&s0);
    dt_rng g = dt_rng_make(1, dt_rng_stream(DT_RNG_INIT, 0));
    dt_rng data = dt_rng_make(2, dt_rng_stream(DT_RNG_DATA, 0));
    dt_module *m = test_mlp(&g, 20, 32, 4);
    DT_ASSERT(m);
    size_t n;
    const dt_param_slot *slots = dt_module_slots(m, &n);
    dt_sgd_opts so = DT_SGD_OPTS_INIT;
    so.lr = 0.05, so.momentum = 0.9, so.weight_decay = 5e-4;
    dt_optim *opt = dt_optim_sgd(slots, n, so);
    DT_ASSERT(opt);
    dt_tensor *x = dt_randn(&data, DT_F32, DT_SHAPE(16, 20));
    dt_tensor *y = dt_rand_int(&data, 0, 4, DT_I64, DT_SHAPE(16));
    double first = 0, last = 0;
    for (int step = 0; step < 1000; step++) {
        DT_SCOPE {
            dt_optim_zero_grad(opt);
            dt_tensor *loss = dt_cross_entropy(dt_module_forward(m, x), y);
            DT_ASSERT_MSG(loss, "step %d: %s", step, dt_last_error());
            DT_ASSERT_OK(dt_backward(loss));
            DT_ASSERT_OK(dt_optim_step(opt));
            if (step == 0) first = dt_tensor_item(loss);
            last = dt_tensor_item(loss);
        }
        if (step == 0) dt_mem_get_stats(&s1);   /* after the momentum buffers exist */
        dt_mem_get_stats(&s);
        for (int c = 0; c < DT_MEM_COUNT; c++)
            DT_ASSERT_MSG(s.current[c] == s1.current[c], "step %d: %s bytes %lld, after step 0 %lld", step, dt_mem_cat_name(c),
                          (long long)s.current[c], (long long)s1.current[c]);
    }
    DT_ASSERT_MSG(last < 0.5 * first, "loss %g -> %g: not learning", first, last);
    dt_module_train(m, false);
    for (int i = 0; i < 100; i++) DT_SCOPE DT_NO_GRAD {
        dt_tensor *pred = dt_argmax(dt_module_forward(m, x), 1, false);
        DT_ASSERT(pred);
    }
    dt_mem_get_stats(&s);
    DT_ASSERT_EQ(s.total_current, s1.total_current);
    dt_tensor_release(x);
    dt_tensor_release(y);
    dt_optim_free(opt);
    dt_module_free(m);
    dt_mem_get_stats(&s);
    for (int c = 0; c < DT_MEM_COUNT; c++)
        DT_ASSERT_MSG(s.current[c] == s0.current[c], "%s bytes %lld at the end, %lld at the start", dt_mem_cat_name(c),
                      (long long)s.current[c], (long long)s0.current[c]);
    DT_ASSERT_EQ(s.allocs - s.frees, s0.allocs - s0.frees);
}

/* Every allocation of building, packing, saving and loading a model may fail: each
 * failure is reported and frees what was made. */
static void t_alloc_failures(void)
{
    char dir[] = "/tmp/dt_nn_leak_XXXXXX", path[96];
    DT_ASSERT(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    {
        dt_rng g = dt_rng_make(1, 1);
        dt_module *m = test_mlp(&g, 5, 4, 3);
        DT_ASSERT_OK(dt_module_save(m, path));
        dt_module_free(m);
    }
    dt_mem_stats s0, s;
    dt_mem_get_stats(&s0);
    int failures = 0;
    for (int64_t k = 1; k < 400; k++) {
        dt_rng g = dt_rng_make(1, 1);
        dt_alloc_fail_at(k);
        dt_module *m = test_mlp(&g, 5, 4, 3);
        int rc = m ? dt_module_finalize(m) : -1;
        if (rc == 0) rc = dt_module_load(m, path);
        if (rc == 0) rc = dt_module_save(m, path);
        size_t n;
        if (rc == 0 && !dt_module_slots(m, &n)) rc = -1;
        bool armed = dt_alloc_count_since_arm() >= k;
        dt_alloc_fail_at(0);
        if (rc < 0) {
            failures++;
            DT_ASSERT_MSG(dt_last_error_code() == DT_ENOMEM || dt_last_error_code() == DT_EIO,
                          "k=%lld: %s", (long long)k, dt_last_error());
        }
        dt_module_free(m);
        dt_mem_get_stats(&s);
        DT_ASSERT_MSG(s.total_current == s0.total_current, "k=%lld: %lld bytes left", (long long)k,
                      (long long)(s.total_current - s0.total_current));
        if (!armed) break;
    }
    DT_ASSERT(failures > 20);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    DT_RUN(t_training_loop_returns_to_baseline);
    DT_RUN(t_alloc_failures);
    return DT_TEST_END();
}
