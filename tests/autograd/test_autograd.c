/* The autograd engine: gradients accumulate, a leaf used twice, no-grad and detach,
 * grads in a caller's flat buffer, gradient-ready hooks firing during backward and
 * only once a leaf is final, the graph freed by backward (second backward refused),
 * deep graphs freed without recursion, allocation failures inside backward, a long
 * training loop that must come back to the same memory every step, and f32 GELU's
 * backward from the derivative its forward keeps, bit for bit the formula kernels'. */
#include "dt_test.h"

#include <math.h>
#include <string.h>

#include "tensor/tensor_internal.h"

static int64_t mem_now(void)
{
    dt_mem_stats s;
    dt_mem_get_stats(&s);
    return s.total_current;
}

static dt_tensor *leaf(dt_dtype dt, int ndim, const int64_t *shape, double v)
{
    dt_tensor *t = dt_full(dt, ndim, shape, v);
    if (t) dt_tensor_set_requires_grad(t, true);
    return t;
}

static void t_basic_accumulate(void)
{
    int64_t base = mem_now();
    dt_tensor *x = leaf(DT_F32, DT_SHAPE(3), 2);   /* outside any scope: ours */
    DT_ASSERT(dt_tensor_is_leaf(x) && dt_tensor_requires_grad(x));
    for (int rep = 1; rep <= 2; rep++) {
        DT_SCOPE {
            dt_tensor *y = dt_sum(dt_mul(x, x), NULL, 0, false);   /* x used twice */
            DT_ASSERT(!dt_tensor_is_leaf(y));
            DT_ASSERT_OK(dt_backward(y));
            DT_ASSERT_ERR(dt_backward(y), DT_ESTATE);
        }
        /* d(sum x^2)/dx = 2x = 4, accumulated over the repetitions */
        DT_ASSERT_NEAR(dt_tensor_get(dt_tensor_grad(x), (int64_t[]){1}), 4.0 * rep, 0);
    }
    DT_ASSERT_OK(dt_tensor_zero_grad(x));
    DT_ASSERT_NEAR(dt_tensor_get(dt_tensor_grad(x), (int64_t[]){0}), 0, 0);
    DT_ASSERT_OK(dt_tensor_set_grad_buffer(x, NULL));
    DT_ASSERT(!dt_tensor_grad(x));
    dt_tensor_release(x);
    DT_ASSERT_EQ(mem_now(), base);
}

static void t_errors(void)
{
    DT_SCOPE {
        dt_tensor *x = leaf(DT_F32, DT_SHAPE(3), 1);
        dt_tensor *y = dt_mul_scalar(x, 2);
        DT_ASSERT_ERR(dt_backward(y), DT_EINVAL);             /* not a scalar */
        DT_ASSERT_ERR(dt_tensor_set_requires_grad(y, false), DT_EINVAL);
        dt_tensor *i = dt_zeros(DT_I64, DT_SHAPE(2));
        DT_ASSERT_ERR(dt_tensor_set_requires_grad(i, true), DT_EDTYPE);
        dt_tensor *c = dt_sum(dt_ones(DT_F32, DT_SHAPE(2)), NULL, 0, false);
        DT_ASSERT_ERR(dt_backward(c), DT_EINVAL);             /* needs no grad */
        DT_ASSERT_ERR(dt_backward(NULL), DT_EINVAL);
        DT_ASSERT(!dt_add(x, dt_zeros(DT_F32, DT_SHAPE(4))));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
        DT_ASSERT_CONTAINS(dt_last_error(), "add");
        DT_ASSERT(!dt_relu(dt_add(x, dt_zeros(DT_F64, DT_SHAPE(3)))));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EDTYPE);        /* the first failure is kept */
        DT_ASSERT_ERR(dt_tensor_set_grad_buffer(x, dt_zeros(DT_F32, DT_SHAPE(4))), DT_ESHAPE);
        /* a leaf that is the loss itself */
        dt_tensor *s = leaf(DT_F64, 0, NULL, 3);
        DT_ASSERT_OK(dt_backward(s));
        DT_ASSERT_NEAR(dt_tensor_item(dt_tensor_grad(s)), 1, 0);
    }
}

static void t_no_grad_detach(void)
{
    DT_SCOPE {
        dt_tensor *x = leaf(DT_F32, DT_SHAPE(2), 1);
        DT_NO_GRAD {
            DT_ASSERT(!dt_grad_enabled());
            DT_NO_GRAD { DT_ASSERT(!dt_grad_enabled()); }
            DT_ASSERT(!dt_grad_enabled());
            DT_ASSERT(!dt_tensor_requires_grad(dt_mul(x, x)));
        }
        DT_ASSERT(dt_grad_enabled());
        dt_tensor *d = dt_detach(dt_mul(x, x));
        DT_ASSERT(!dt_tensor_requires_grad(d) && dt_tensor_is_leaf(d));
        dt_tensor *y = dt_sum(dt_add(dt_mul(d, x), x), NULL, 0, false);   /* d is a constant */
        DT_ASSERT_OK(dt_backward(y));
        DT_ASSERT_NEAR(dt_tensor_get(dt_tensor_grad(x), (int64_t[]){0}), 2, 0);
    }
}

/* llm.c-style flat buffers: parameters and gradients are views of two arrays. */
static void t_flat_grad_buffer(void)
{
    int64_t base = mem_now();
    float *params = dt_calloc(10, 4, DT_MEM_PARAM), *grads = dt_calloc(10, 4, DT_MEM_GRAD);
    DT_SCOPE {
        dt_tensor *w = dt_from_buffer(params, DT_F32, DT_SHAPE(2, 3));
        dt_tensor *b = dt_from_buffer(params + 6, DT_F32, DT_SHAPE(4));
        DT_ASSERT_OK(dt_tensor_fill(w, 1));
        DT_ASSERT_OK(dt_tensor_fill(b, 2));
        DT_ASSERT_OK(dt_tensor_set_requires_grad(w, true));
        DT_ASSERT_OK(dt_tensor_set_requires_grad(b, true));
        DT_ASSERT_OK(dt_tensor_set_grad_buffer(w, dt_from_buffer(grads, DT_F32, DT_SHAPE(2, 3))));
        /* a strided grad view works too: b's grad lives in grads[6..9] reversed order is
         * not expressible, so use a plain view */
        DT_ASSERT_OK(dt_tensor_set_grad_buffer(b, dt_from_buffer(grads + 6, DT_F32, DT_SHAPE(4))));
        dt_tensor *y = dt_add(dt_sum(w, NULL, 0, false), dt_sum(dt_mul(b, b), NULL, 0, false));
        DT_ASSERT_OK(dt_backward(y));
    }
    for (int i = 0; i < 6; i++) DT_ASSERT_NEAR(grads[i], 1, 0);
    for (int i = 6; i < 10; i++) DT_ASSERT_NEAR(grads[i], 4, 0);
    dt_free(params);
    dt_free(grads);
    DT_ASSERT_EQ(mem_now(), base);
}

typedef struct {
    dt_tensor *w1, *w2;
    int order[4], n;
    bool w1_grad_seen_at_w2;   /* w1's grad already existed when w2's hook fired */
    int64_t calls;
} hook_log;

static void on_ready(dt_tensor *leaf_, void *ctx)
{
    hook_log *h = ctx;
    h->order[h->n++ % 4] = leaf_ == h->w1 ? 1 : 2;
    h->calls++;
    if (leaf_ == h->w2) h->w1_grad_seen_at_w2 = dt_tensor_grad(h->w1) != NULL;
}

static void t_hooks(void)
{
    DT_SCOPE {
        hook_log h = {0};
        h.w1 = leaf(DT_F64, DT_SHAPE(3, 3), 0.5);
        h.w2 = leaf(DT_F64, DT_SHAPE(3, 3), 0.25);
        DT_ASSERT_OK(dt_tensor_on_grad_ready(h.w1, on_ready, &h));
        DT_ASSERT_OK(dt_tensor_on_grad_ready(h.w2, on_ready, &h));
        dt_tensor *x = dt_ones(DT_F64, DT_SHAPE(2, 3));
        /* w1 is used twice (two paths), w2 once, nearer the loss */
        dt_tensor *h1 = dt_relu(dt_matmul(x, h.w1));
        dt_tensor *h2 = dt_add(dt_matmul(h1, h.w1), h1);
        dt_tensor *y = dt_sum(dt_matmul(h2, h.w2), NULL, 0, false);
        DT_ASSERT_OK(dt_backward(y));
        DT_ASSERT_EQ(h.calls, 2);            /* once per leaf, though w1 had two uses */
        DT_ASSERT_EQ(h.order[0], 2);         /* w2 is final first, during backward */
        DT_ASSERT_EQ(h.order[1], 1);
        DT_ASSERT(!h.w1_grad_seen_at_w2);
        dt_tensor_clear_hooks(h.w1);
        dt_tensor_clear_hooks(h.w2);
    }
}

/* Callbacks queued from a hook run after the whole graph, in order, before
 * dt_backward returns; their failure is backward's result. */
typedef struct {
    dt_tensor *w1, *w2;
    int ran[4], nran, hooks_done;
    int fail_with;
    bool grad_on_in_cb;
} cb_log;

static int cb_a(void *ctx)
{
    cb_log *l = ctx;
    l->ran[l->nran++] = 1 + 10 * l->hooks_done;
    return 0;
}
static int cb_b(void *ctx)
{
    cb_log *l = ctx;
    l->ran[l->nran++] = 2 + 10 * l->hooks_done;
    l->grad_on_in_cb |= dt_grad_enabled();
    return l->fail_with;
}
static void cb_hook(dt_tensor *leaf, void *ctx)
{
    cb_log *l = ctx;
    if (leaf == l->w2) {   /* final first: queue both, the graph is not done yet */
        dt_backward_queue_callback(cb_a, l);
        dt_backward_queue_callback(cb_b, l);
    }
    l->hooks_done++;
}

static void t_queue_callback(void)
{
    DT_ASSERT_ERR(dt_backward_queue_callback(cb_a, NULL), DT_ESTATE);   /* no backward running */
    for (int fail = 0; fail < 2; fail++) DT_SCOPE {
        cb_log l = {0};
        l.fail_with = fail ? DT_EPEER : 0;
        l.w1 = leaf(DT_F64, DT_SHAPE(3, 3), 0.5);
        l.w2 = leaf(DT_F64, DT_SHAPE(3, 3), 0.25);
        DT_ASSERT_OK(dt_tensor_on_grad_ready(l.w1, cb_hook, &l));
        DT_ASSERT_OK(dt_tensor_on_grad_ready(l.w2, cb_hook, &l));
        dt_tensor *x = dt_ones(DT_F64, DT_SHAPE(2, 3));
        dt_tensor *y = dt_sum(dt_matmul(dt_relu(dt_matmul(x, l.w1)), l.w2), NULL, 0, false);
        if (fail) DT_ASSERT_ERR(dt_backward(y), DT_EPEER);
        else DT_ASSERT_OK(dt_backward(y));
        DT_ASSERT_EQ(l.nran, 2);
        DT_ASSERT_EQ(l.ran[0], 21);   /* after both hooks, in queue order */
        DT_ASSERT_EQ(l.ran[1], 22);
        DT_ASSERT(!l.grad_on_in_cb);
        DT_ASSERT_ERR(dt_backward_queue_callback(cb_a, &l), DT_ESTATE);   /* over again */
    }
}

/* dt_autograd_visit_leaves finds what backward would reach, and nothing else. */
static void count_leaf(dt_tensor *leaf, void *ctx)
{
    dt_tensor **seen = ctx;
    for (int i = 0; i < 4; i++)
        if (!seen[i] || seen[i] == leaf) { seen[i] = leaf; break; }
}

static void t_visit_leaves(void)
{
    DT_SCOPE {
        dt_tensor *a = leaf(DT_F64, DT_SHAPE(2, 2), 1), *b = leaf(DT_F64, DT_SHAPE(2, 2), 2);
        dt_tensor *unused = leaf(DT_F64, DT_SHAPE(2, 2), 3);
        dt_tensor *c = dt_ones(DT_F64, DT_SHAPE(2, 2));   /* requires no grad */
        dt_tensor *y = dt_add(dt_mul(a, c), dt_matmul(a, dt_exp(b)));
        dt_tensor *z = dt_mul(unused, c);
        (void)z;
        dt_tensor *seen[4] = {0};
        DT_ASSERT_OK(dt_autograd_visit_leaves(y, count_leaf, seen));
        DT_ASSERT((seen[0] == a && seen[1] == b) || (seen[0] == b && seen[1] == a));
        DT_ASSERT(seen[2] == NULL);
        dt_tensor *only[4] = {0};
        DT_ASSERT_OK(dt_autograd_visit_leaves(a, count_leaf, only));   /* a leaf itself */
        DT_ASSERT(only[0] == a && only[1] == NULL);
        DT_ASSERT_OK(dt_backward(dt_sum(y, NULL, 0, false)));          /* the walk changed nothing */
        DT_ASSERT(dt_tensor_grad(a) && dt_tensor_grad(b) && !dt_tensor_grad(unused));
    }
}

/* A chain of 200k ops: backward and freeing must not recurse per node. */
static void t_deep_graph(void)
{
    int64_t base = mem_now();
    dt_tensor *x = leaf(DT_F32, DT_SHAPE(1), 1);
    dt_tensor *y = dt_tensor_retain(x);
    for (int i = 0; i < 200000; i++) {
        dt_tensor *z = dt_mul_scalar(y, 1.0);
        dt_tensor_release(y);
        y = z;
        if (!y) break;
    }
    DT_ASSERT(y);
    dt_tensor *s = dt_sum(y, NULL, 0, false);
    DT_ASSERT_OK(dt_backward(s));
    DT_ASSERT_NEAR(dt_tensor_item(dt_tensor_grad(x)), 1, 0);
    dt_tensor_release(s);
    dt_tensor_release(y);
    /* and freed without backward */
    y = dt_tensor_retain(x);
    for (int i = 0; i < 200000 && y; i++) {
        dt_tensor *z = dt_add_scalar(y, 0.0);
        dt_tensor_release(y);
        y = z;
    }
    dt_tensor_release(y);
    dt_tensor_release(x);
    DT_ASSERT_EQ(mem_now(), base);
}

/* The MLP step of the Fashion-MNIST job: linear-relu-linear-relu-linear, log_softmax,
 * a picked-class loss, backward, SGD by hand. Memory must return to the same level
 * after every step, and the loss must fall. */
static void t_training_loop(void)
{
    const int64_t B = 16, IN = 20, H = 32, OUT = 5;
    dt_rng g = dt_rng_make(1, dt_rng_stream(DT_RNG_INIT, 0));
    dt_tensor *w[3], *b[3];
    int64_t dims[4] = {IN, H, H, OUT};
    for (int l = 0; l < 3; l++) {
        w[l] = dt_rand(&g, DT_F32, DT_SHAPE(dims[l + 1], dims[l]));
        b[l] = dt_zeros(DT_F32, DT_SHAPE(dims[l + 1]));
        DT_ASSERT_OK(dt_tensor_uniform_(w[l], &g, -0.3, 0.3));
        DT_ASSERT_OK(dt_tensor_set_requires_grad(w[l], true));
        DT_ASSERT_OK(dt_tensor_set_requires_grad(b[l], true));
    }
    dt_tensor *x = dt_randn(&g, DT_F32, DT_SHAPE(B, IN));
    dt_tensor *onehot = dt_zeros(DT_F32, DT_SHAPE(B, OUT));
    for (int64_t i = 0; i < B; i++) ((float *)dt_tensor_data(onehot))[i * OUT + i % OUT] = 1;
    int64_t level = -1;
    double first = 0, last = 0;
    for (int step = 0; step < 3000; step++) {
        DT_SCOPE {
            dt_tensor *h = x;
            for (int l = 0; l < 3; l++) {
                h = dt_linear(h, w[l], b[l]);
                if (l < 2) h = dt_relu(h);
            }
            dt_tensor *loss = dt_neg(dt_mean(dt_sum(dt_mul(dt_log_softmax(h, -1), onehot), (int[]){1}, 1, false), NULL, 0, false));
            DT_ASSERT(loss);
            for (int l = 0; l < 3; l++) { dt_tensor_zero_grad(w[l]); dt_tensor_zero_grad(b[l]); }
            DT_ASSERT_OK(dt_backward(loss));
            DT_NO_GRAD {
                for (int l = 0; l < 3; l++) {
                    DT_ASSERT_OK(dt_tensor_copy_(w[l], dt_sub(w[l], dt_mul_scalar(dt_tensor_grad(w[l]), 0.05))));
                    DT_ASSERT_OK(dt_tensor_copy_(b[l], dt_sub(b[l], dt_mul_scalar(dt_tensor_grad(b[l]), 0.05))));
                }
            }
            if (step == 0) first = dt_tensor_item(loss);
            last = dt_tensor_item(loss);
        }
        if (step == 1) level = mem_now();
        if (step > 1) DT_ASSERT_EQ(mem_now(), level);
    }
    DT_ASSERT_MSG(last < 0.1 * first, "loss %g -> %g", first, last);
    for (int l = 0; l < 3; l++) { dt_tensor_release(w[l]); dt_tensor_release(b[l]); }
    dt_tensor_release(x);
    dt_tensor_release(onehot);
}

/* Every allocation of a forward + backward failing in turn: a clean error, and all
 * memory back once the scope ends. */
static void t_alloc_failures(void)
{
    int64_t base = mem_now();
    bool finished = false;
    for (int64_t k = 1; k < 400 && !finished; k++) {
        int rc = 0;
        bool done = false;
        int tok = dt_scope_begin();
        dt_tensor *w = leaf(DT_F32, DT_SHAPE(4, 3), 0.5), *x = dt_ones(DT_F32, DT_SHAPE(2, 4));
        dt_alloc_fail_at(k);
        dt_tensor *y = dt_sum(dt_softmax(dt_tanh(dt_matmul(x, w)), -1), NULL, 0, false);
        rc = y ? dt_backward(y) : dt_last_error_code();
        done = dt_alloc_count_since_arm() < k;
        dt_alloc_fail_at(0);
        if (!done) DT_ASSERT_MSG(rc == DT_ENOMEM, "allocation %lld: rc %d (%s)", (long long)k, rc, dt_last_error());
        dt_scope_end(tok);
        DT_ASSERT_EQ(mem_now(), base);
        if (done) { DT_ASSERT_OK(rc); finished = true; }
    }
    DT_ASSERT(finished);
}

/* f32 GELU (exact) computes its derivative in forward and keeps that for backward: the
 * output and the gradient must be the bits of the GELU and GELU_BW formula kernels, for a
 * contiguous and a strided (transposed) input, specials included; without grad the
 * plain kernel runs (the same output). */
static bool same_bits(const dt_tensor *a, const dt_tensor *b)
{
    dt_tensor *ca = dt__contig_as((dt_tensor *)a, DT_F32), *cb = dt__contig_as((dt_tensor *)b, DT_F32);
    bool same = ca && cb && dt_tensor_numel(ca) == dt_tensor_numel(cb) &&
                memcmp(dt_tensor_data_f32(ca), dt_tensor_data_f32(cb), (size_t)dt_tensor_numel(ca) * 4) == 0;
    dt_tensor_release(ca);
    dt_tensor_release(cb);
    return same;
}

static void t_gelu_keeps_derivative(void)
{
    DT_SCOPE {
        const float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 5.656854f, -5.656854f, -5.7f, 13.0f, -13.0f, -13.5f,
                                 100.0f, -100.0f, INFINITY, -INFINITY, NAN, 0.5f, -0.5f, -1.5f, -3.0f, 3.0f};
        dt_rng g = dt_rng_make(7, 0);
        for (int strided = 0; strided < 2; strided++) {
            dt_tensor *base = dt_mul_scalar(dt_randn(&g, DT_F32, DT_SHAPE(8, 300)), 4);
            float *pb = dt_tensor_data_f32(base);
            for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) pb[37 * i] = special[i];
            dt_tensor *leafx = dt_detach(base);
            DT_ASSERT_OK(dt_tensor_set_requires_grad(leafx, true));
            dt_tensor *x = strided ? dt_transpose(leafx, 0, 1) : leafx;
            dt_tensor *w = dt_randn(&g, DT_F32, dt_tensor_ndim(x), dt_tensor_shape(x));
            dt_tensor *y = dt_gelu(x, DT_GELU_ERF);
            DT_ASSERT(same_bits(y, dt__adopt(dt__ew(DT__EW_GELU, x, NULL, 0))));
            DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(y, w), NULL, 0, false)));   /* dL/dy = w exactly */
            dt_tensor *gx = strided ? dt_transpose(dt_tensor_grad(leafx), 0, 1) : dt_tensor_grad(leafx);
            DT_ASSERT(same_bits(gx, dt__adopt(dt__ew(DT__EW_GELU_BW, w, x, 0))));
            DT_NO_GRAD { DT_ASSERT(same_bits(dt_gelu(x, DT_GELU_ERF), y)); }
        }
    }
}

int main(void)
{
    DT_RUN(t_basic_accumulate);
    DT_RUN(t_errors);
    DT_RUN(t_no_grad_detach);
    DT_RUN(t_flat_grad_buffer);
    DT_RUN(t_hooks);
    DT_RUN(t_queue_callback);
    DT_RUN(t_visit_leaves);
    DT_RUN(t_deep_graph);
    DT_RUN(t_training_loop);
    DT_RUN(t_alloc_failures);
    DT_RUN(t_gelu_keeps_derivative);
    return DT_TEST_END();
}
