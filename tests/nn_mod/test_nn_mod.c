/* Modules (nn.h "modules"): torch's parameter names for the Fashion-MNIST MLP and CNN and a
 * nested custom module (the GPT's layout), default init ranges, the flat parameter and
 * gradient buffers, repacking, moving gradients into a caller's buffer, train/eval, forward
 * and backward into the flat buffer, save/load roundtrip and every strict-load error. */
#include "dt_test.h"
#include "nn_mod/models.h"

#include <stdlib.h>
#include <unistd.h>

static dt_rng rng(uint64_t seed) { return dt_rng_make(seed, dt_rng_stream(DT_RNG_INIT, 0)); }

static void expect_names(dt_module *m, const char *const *names, size_t n)
{
    size_t got;
    const dt_named_param *p = dt_module_params(m, &got);
    DT_ASSERT_MSG(p || n == 0, "dt_module_params: %s", dt_last_error());
    DT_ASSERT_EQ(got, n);
    for (size_t i = 0; i < n; i++) DT_ASSERT_STREQ(p[i].name, names[i]);
}

static void expect_shape(dt_module *m, const char *name, int ndim, const int64_t *shape)
{
    dt_tensor *t = dt_module_param(m, name);
    DT_ASSERT_MSG(t, "param %s: %s", name, dt_last_error());
    DT_ASSERT_EQ(dt_tensor_ndim(t), ndim);
    for (int k = 0; k < ndim; k++) DT_ASSERT_EQ(dt_tensor_shape(t)[k], shape[k]);
}

static void t_mlp_names_and_flat_buffers(void)
{
    dt_rng g = rng(1);
    dt_module *m = test_mlp(&g, 784, 256, 10);
    DT_ASSERT(m);
    static const char *const names[] = {"1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"};
    expect_names(m, names, 6);
    expect_shape(m, "1.weight", DT_SHAPE(256, 784));
    expect_shape(m, "5.bias", DT_SHAPE(10));
    int64_t total = 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10, cnt, gcnt;
    DT_ASSERT_EQ(dt_module_num_params(m), total);
    float *pb = dt_module_param_buffer(m, &cnt), *gb = dt_module_grad_buffer(m, &gcnt);
    DT_ASSERT(pb && gb);
    DT_ASSERT_EQ(cnt, total);
    DT_ASSERT_EQ(gcnt, total);
    DT_ASSERT_EQ((uintptr_t)pb % 64, 0);
    DT_ASSERT_EQ((uintptr_t)gb % 64, 0);
    size_t n;
    const dt_named_param *p = dt_module_params(m, &n);
    const dt_param_slot *s = dt_module_slots(m, &n);
    int64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        DT_ASSERT_EQ(p[i].offset, off);
        DT_ASSERT(p[i].data == pb + off);
        DT_ASSERT(p[i].grad_data == gb + off);
        DT_ASSERT(dt_tensor_data_f32(p[i].param) == p[i].data);
        DT_ASSERT(dt_tensor_grad(p[i].param) == p[i].grad);
        DT_ASSERT(dt_tensor_requires_grad(p[i].param));
        DT_ASSERT_EQ(p[i].numel, dt_tensor_numel(p[i].param));
        DT_ASSERT_STREQ(s[i].name, p[i].name);
        DT_ASSERT(s[i].data == p[i].data && s[i].grad == p[i].grad_data);
        DT_ASSERT_EQ(s[i].numel, p[i].numel);
        off += p[i].numel;
    }
    DT_ASSERT_EQ(off, total);
    for (int64_t i = 0; i < total; i++) DT_ASSERT_EQ(gb[i], 0);
    /* A sub-module sees its slice, with names relative to it. */
    dt_module *l3 = dt_module_child(m, "3");
    DT_ASSERT(l3);
    DT_ASSERT_STREQ(dt_module_type(l3), "Linear");
    static const char *const sub[] = {"weight", "bias"};
    expect_names(l3, sub, 2);
    DT_ASSERT(dt_module_param_buffer(l3, &cnt) == pb + 784 * 256 + 256);
    DT_ASSERT_EQ(cnt, 256 * 256 + 256);
    DT_ASSERT(dt_module_param(m, "3.weight") == dt_module_param(l3, "weight"));
    DT_ASSERT(dt_module_param(m, "2.weight") == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_ENOTFOUND);
    DT_ASSERT(dt_module_child(m, "7") == NULL);
    dt_module_free(m);
}

static void t_cnn_names(void)
{
    dt_rng g = rng(2);
    dt_module *m = test_cnn(&g);
    DT_ASSERT_MSG(m, "%s", dt_last_error());
    static const char *const names[] = {"0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias"};
    expect_names(m, names, 8);
    expect_shape(m, "0.weight", DT_SHAPE(32, 1, 3, 3));
    expect_shape(m, "3.weight", DT_SHAPE(64, 32, 3, 3));
    expect_shape(m, "7.weight", DT_SHAPE(128, 3136));
    expect_shape(m, "9.bias", DT_SHAPE(10));
    DT_ASSERT_EQ(dt_module_num_children(m), 10);
    const char *nm;
    DT_ASSERT_STREQ(dt_module_type(dt_module_child_at(m, 2, &nm)), "MaxPool2d");
    DT_ASSERT_STREQ(nm, "2");
    dt_module_free(m);
}

/* The GPT of torch_gpt_ddp.py, structure only: Block and GPT as custom containers. */
static dt_module *gpt_block(int64_t E, dt_rng *g)
{
    dt_module *b = dt_module_new("Block", NULL, NULL, NULL);
    DT_ASSERT(b);
    DT_ASSERT_OK(dt_module_add_child(b, "ln1", dt_nn_layer_norm(E, 1e-5)));
    DT_ASSERT_OK(dt_module_add_child(b, "ln2", dt_nn_layer_norm(E, 1e-5)));
    DT_ASSERT_OK(dt_module_add_child(b, "qkv", dt_nn_linear(E, 3 * E, true, g)));
    DT_ASSERT_OK(dt_module_add_child(b, "proj", dt_nn_linear(E, E, true, g)));
    DT_ASSERT_OK(dt_module_add_child(b, "fc", dt_nn_linear(E, 4 * E, true, g)));
    DT_ASSERT_OK(dt_module_add_child(b, "out", dt_nn_linear(4 * E, E, true, g)));
    return b;
}

static void t_nested_custom_names(void)
{
    dt_rng g = rng(3);
    int64_t E = 8, T = 16;
    dt_module *gpt = dt_module_new("GPT", NULL, NULL, NULL);
    DT_ASSERT_OK(dt_module_add_child(gpt, "tok", dt_nn_embedding(256, E, &g)));
    DT_ASSERT_OK(dt_module_add_child(gpt, "pos", dt_nn_embedding(T, E, &g)));
    dt_module *blocks[2] = {gpt_block(E, &g), gpt_block(E, &g)};
    DT_ASSERT_OK(dt_module_add_child(gpt, "blocks", dt_nn_sequential(2, blocks)));
    DT_ASSERT_OK(dt_module_add_child(gpt, "ln", dt_nn_layer_norm(E, 1e-5)));
    DT_ASSERT_OK(dt_module_add_child(gpt, "head", dt_nn_linear(E, 256, false, &g)));
    const char *names[64];
    size_t k = 0;
    names[k++] = "tok.weight";
    names[k++] = "pos.weight";
    static char buf[2][12][40];
    const char *sub[] = {"ln1", "ln2", "qkv", "proj", "fc", "out"};
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < 6; j++)
            for (int w = 0; w < 2; w++) {
                snprintf(buf[b][j * 2 + w], 40, "blocks.%d.%s.%s", b, sub[j], w ? "bias" : "weight");
                names[k++] = buf[b][j * 2 + w];
            }
    names[k++] = "ln.weight";
    names[k++] = "ln.bias";
    names[k++] = "head.weight";
    expect_names(gpt, names, k);
    expect_shape(gpt, "blocks.1.qkv.weight", DT_SHAPE(3 * E, E));
    expect_shape(gpt, "head.weight", DT_SHAPE(256, E));
    DT_ASSERT(dt_module_param(gpt, "head.bias") == NULL);
    DT_ASSERT_STREQ(dt_module_type(dt_module_child(gpt, "blocks.1")), "Block");
    DT_ASSERT_STREQ(dt_module_type(dt_module_child(gpt, "blocks.1.fc")), "Linear");
    DT_ASSERT(dt_module_forward(gpt, NULL) == NULL);   /* a container without forward */
    /* Bad names, duplicates, a module with a parent: refused. */
    DT_ASSERT_ERR(dt_module_add_child(gpt, "ln", dt_nn_relu()), DT_EINVAL);
    DT_ASSERT_ERR(dt_module_add_child(gpt, "a.b", dt_nn_relu()), DT_EINVAL);
    DT_ASSERT_ERR(dt_module_add_child(gpt, "", dt_nn_relu()), DT_EINVAL);
    DT_ASSERT_ERR(dt_module_add_child(gpt, "again", dt_module_child(gpt, "ln")), DT_EINVAL);
    DT_ASSERT_ERR(dt_module_add_child(gpt, "null", NULL), DT_EINVAL);
    DT_ASSERT_ERR(dt_module_add_child(gpt, "bad", dt_nn_linear(0, 3, true, &g)), DT_EINVAL);
    DT_SCOPE {
        DT_ASSERT_ERR(dt_module_add_param(gpt, "tok", dt_zeros(DT_F32, DT_SHAPE(2))), DT_EINVAL);
        DT_ASSERT_ERR(dt_module_add_param(gpt, "i", dt_zeros(DT_I64, DT_SHAPE(2))), DT_EDTYPE);
    }
    dt_module_free(dt_module_child(gpt, "ln"));   /* not a root: warns, does nothing */
    DT_ASSERT(dt_module_child(gpt, "ln"));
    dt_module_free(gpt);
}

/* A custom module with its own parameter and a child: y = relu(fc(x)) * scale. */
static dt_tensor *scaled_fwd(dt_module *self, dt_tensor *x, void *ctx)
{
    (void)ctx;
    return dt_mul(dt_relu(dt_module_forward(dt_module_child(self, "fc"), x)), dt_module_param(self, "scale"));
}

static dt_module *scaled(int64_t in, int64_t out, dt_rng *g)
{
    dt_module *m = dt_module_new("Scaled", scaled_fwd, NULL, NULL);
    DT_SCOPE DT_ASSERT_OK(dt_module_add_param(m, "scale", dt_full(DT_F32, DT_SHAPE(out), 2.0)));
    DT_ASSERT_OK(dt_module_add_child(m, "fc", dt_nn_linear(in, out, true, g)));
    DT_SCOPE DT_ASSERT_OK(dt_module_add_buffer(m, "count", dt_full(DT_I64, DT_SHAPE(1), 7)));
    return m;
}

static void t_custom_forward_backward(void)
{
    dt_rng g = rng(4);
    dt_module *m = scaled(5, 3, &g);
    static const char *const names[] = {"scale", "fc.weight", "fc.bias"};
    expect_names(m, names, 3);
    DT_ASSERT(dt_module_buffer(m, "count"));
    size_t nb;
    const dt_named_buffer *bl = dt_module_buffers(m, &nb);
    DT_ASSERT(bl && nb == 1);
    DT_ASSERT_STREQ(bl[0].name, "count");
    DT_ASSERT(bl[0].t == dt_module_buffer(m, "count"));
    dt_module *parts[] = {dt_nn_relu(), scaled(3, 3, &g)};
    dt_module *seq = dt_nn_sequential(2, parts);
    bl = dt_module_buffers(seq, &nb);
    DT_ASSERT(bl && nb == 1);
    DT_ASSERT_STREQ(bl[0].name, "1.count");
    DT_ASSERT(dt_module_buffers(dt_module_child(seq, "0"), &nb) == NULL && nb == 0);
    dt_module_free(seq);
    DT_SCOPE {
        dt_tensor *x = dt_randn(&g, DT_F32, DT_SHAPE(4, 5));
        dt_tensor *y = dt_module_forward(m, x);
        DT_ASSERT_MSG(y, "%s", dt_last_error());
        dt_tensor *ref = dt_mul_scalar(dt_relu(dt_linear(x, dt_module_param(m, "fc.weight"), dt_module_param(m, "fc.bias"))), 2.0);
        float *a = dt_tensor_data_f32(y), *b = dt_tensor_data_f32(ref);
        for (int i = 0; i < 12; i++) DT_ASSERT_EQ(a[i], b[i]);
        DT_ASSERT_OK(dt_backward(dt_sum(y, NULL, 0, false)));
        /* d/d scale = sum over the batch of relu(fc(x)); lands in the flat grad buffer. */
        int64_t n;
        float *gb = dt_module_grad_buffer(m, &n);
        DT_ASSERT_EQ(n, 3 + 15 + 3);
        for (int j = 0; j < 3; j++) {
            double s = 0;
            for (int i = 0; i < 4; i++) s += b[i * 3 + j] / 2.0;
            DT_ASSERT_NEAR(gb[j], s, 1e-5);
        }
        /* bias grad: 2 * count of positive outputs per column. */
        for (int j = 0; j < 3; j++) {
            int pos = 0;
            for (int i = 0; i < 4; i++) pos += b[i * 3 + j] > 0;
            DT_ASSERT_NEAR(gb[18 + j], 2.0 * pos, 1e-6);
        }
        dt_module_zero_grad(m);
        for (int i = 0; i < n; i++) DT_ASSERT_EQ(gb[i], 0);
    }
    dt_module_free(m);
}

static void expect_same(dt_tensor *a, dt_tensor *b)
{
    DT_ASSERT_MSG(a && b, "%s", dt_last_error());
    DT_ASSERT_EQ(dt_tensor_numel(a), dt_tensor_numel(b));
    const float *x = dt_tensor_data_f32(a), *y = dt_tensor_data_f32(b);
    for (int64_t i = 0; i < dt_tensor_numel(a); i++) DT_ASSERT_MSG(x[i] == y[i], "element %lld: %g vs %g", (long long)i, x[i], y[i]);
}

/* Each built-in's forward is its functional op with its own parameters. */
static void t_layer_forwards(void)
{
    dt_rng g = rng(13);
    dt_module *ln = dt_nn_layer_norm(6, 1e-5), *emb = dt_nn_embedding(10, 6, &g), *gelu = dt_nn_gelu(DT_GELU_TANH);
    dt_module *conv = dt_nn_conv2d(2, 3, 3, 2, 1, false, &g), *pool = dt_nn_max_pool2d(2, 1), *flat = dt_nn_flatten();
    dt_module *drop = dt_nn_dropout(0.5, &g);
    DT_SCOPE {
        dt_tensor *x = dt_randn(&g, DT_F32, DT_SHAPE(4, 6));
        DT_SCOPE dt_tensor_fill(dt_module_param(ln, "weight"), 1.5);
        expect_same(dt_module_forward(ln, x), dt_layer_norm(x, 1, dt_module_param(ln, "weight"), dt_module_param(ln, "bias"), 1e-5));
        dt_tensor *ids = dt_rand_int(&g, 0, 10, DT_I64, DT_SHAPE(2, 3));
        dt_tensor *e = dt_module_forward(emb, ids);
        DT_ASSERT(e && dt_tensor_ndim(e) == 3 && dt_tensor_size(e, 2) == 6);
        expect_same(e, dt_embedding(dt_module_param(emb, "weight"), ids));
        expect_same(dt_module_forward(gelu, x), dt_gelu(x, DT_GELU_TANH));
        dt_tensor *img = dt_randn(&g, DT_F32, DT_SHAPE(2, 2, 7, 7));
        dt_tensor *c = dt_module_forward(conv, img);
        DT_ASSERT(c && dt_tensor_size(c, 2) == 4);   /* (7 + 2 - 3) / 2 + 1 */
        expect_same(c, dt_conv2d(img, dt_module_param(conv, "weight"), NULL, 2, 2, 1, 1));
        expect_same(dt_module_forward(pool, img), dt_max_pool2d(img, 2, 2, 1, 1, 0, 0));
        dt_tensor *f = dt_module_forward(flat, img);
        DT_ASSERT(f && dt_tensor_ndim(f) == 2 && dt_tensor_size(f, 1) == 98);
        /* Dropout: masks in training mode (a different one each call), identity in eval. */
        dt_tensor *d1 = dt_module_forward(drop, x), *d2 = dt_module_forward(drop, x);
        DT_ASSERT(d1 && d2);
        int zeros = 0, differ = 0;
        for (int i = 0; i < 24; i++) {
            float a = dt_tensor_data_f32(d1)[i], b = dt_tensor_data_f32(d2)[i], v = dt_tensor_data_f32(x)[i];
            zeros += a == 0;
            differ += a != b;
            DT_ASSERT(a == 0 || fabsf(a - 2 * v) <= 1e-6f * fabsf(v));
        }
        DT_ASSERT(zeros > 0 && zeros < 24 && differ > 0);
        dt_module_train(drop, false);
        expect_same(dt_module_forward(drop, x), x);
    }
    dt_module_free(ln), dt_module_free(emb), dt_module_free(gelu), dt_module_free(conv);
    dt_module_free(pool), dt_module_free(flat), dt_module_free(drop);
}

static double mean_of(const float *v, int64_t n, double *var)
{
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) s += v[i], s2 += (double)v[i] * v[i];
    double mu = s / n;
    *var = s2 / n - mu * mu;
    return mu;
}

static void check_uniform(dt_tensor *t, double bound)
{
    int64_t n = dt_tensor_numel(t);
    const float *v = dt_tensor_data_f32(t);
    float lo = v[0], hi = v[0];
    for (int64_t i = 0; i < n; i++) lo = v[i] < lo ? v[i] : lo, hi = v[i] > hi ? v[i] : hi;
    DT_ASSERT_MSG(lo >= -bound && hi <= bound, "values [%g, %g] outside +-%g", lo, hi, bound);
    DT_ASSERT_MSG(lo < -0.9 * bound && hi > 0.9 * bound, "values [%g, %g] do not spread over +-%g", lo, hi, bound);
    double var, mu = mean_of(v, n, &var);
    DT_ASSERT_NEAR(mu, 0, 4 * bound / sqrt(3.0 * n));
    DT_ASSERT_NEAR(var, bound * bound / 3, 0.1 * bound * bound / 3);
}

static void t_init_ranges(void)
{
    dt_rng g = rng(5);
    dt_module *lin = dt_nn_linear(100, 300, true, &g);
    check_uniform(dt_module_param(lin, "weight"), 0.1);
    check_uniform(dt_module_param(lin, "bias"), 0.1);
    dt_module *conv = dt_nn_conv2d(3, 64, 3, 1, 1, true, &g);
    check_uniform(dt_module_param(conv, "weight"), 1 / sqrt(27.0));
    dt_module *emb = dt_nn_embedding(200, 50, &g);
    double var, mu = mean_of(dt_tensor_data_f32(dt_module_param(emb, "weight")), 10000, &var);
    DT_ASSERT_NEAR(mu, 0, 0.04);
    DT_ASSERT_NEAR(var, 1, 0.05);
    dt_module *ln = dt_nn_layer_norm(17, 1e-5);
    const float *w = dt_tensor_data_f32(dt_module_param(ln, "weight")), *b = dt_tensor_data_f32(dt_module_param(ln, "bias"));
    for (int i = 0; i < 17; i++) DT_ASSERT(w[i] == 1.0f && b[i] == 0.0f);
    /* Same seed, same values; the generator advances between layers. */
    dt_rng g1 = rng(9), g2 = rng(9);
    dt_module *a = dt_nn_linear(10, 10, true, &g1), *c = dt_nn_linear(10, 10, true, &g2), *d = dt_nn_linear(10, 10, true, &g2);
    DT_ASSERT(memcmp(dt_module_param_buffer(a, NULL), dt_module_param_buffer(c, NULL), 110 * 4) == 0);
    DT_ASSERT(memcmp(dt_module_param_buffer(a, NULL), dt_module_param_buffer(d, NULL), 110 * 4) != 0);
    DT_ASSERT(dt_nn_linear(10, 10, true, NULL) == NULL);
    DT_ASSERT(dt_nn_conv2d(1, 1, 0, 1, 0, true, &g) == NULL);
    DT_ASSERT(dt_nn_dropout(1.5, NULL) == NULL);
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    dt_module_free(lin), dt_module_free(conv), dt_module_free(emb), dt_module_free(ln);
    dt_module_free(a), dt_module_free(c), dt_module_free(d);
}

static void t_repack_keeps_values(void)
{
    dt_rng g = rng(6);
    dt_module *l = dt_nn_linear(4, 3, true, &g);
    float before[15];
    memcpy(before, dt_module_param_buffer(l, NULL), sizeof before);   /* packs l on its own */
    DT_SCOPE {
        dt_tensor *x = dt_randn(&g, DT_F32, DT_SHAPE(2, 4));
        DT_ASSERT_OK(dt_backward(dt_sum(dt_module_forward(l, x), NULL, 0, false)));
    }
    float gbefore[15];
    memcpy(gbefore, dt_module_grad_buffer(l, NULL), sizeof gbefore);
    dt_module *parts[] = {dt_nn_relu(), l};
    dt_module *seq = dt_nn_sequential(2, parts);
    DT_ASSERT_OK(dt_module_finalize(seq));
    int64_t n;
    float *pb = dt_module_param_buffer(seq, &n);
    DT_ASSERT_EQ(n, 15);
    DT_ASSERT(memcmp(pb, before, sizeof before) == 0);
    DT_ASSERT(memcmp(dt_module_grad_buffer(seq, NULL), gbefore, sizeof gbefore) == 0);
    DT_ASSERT(dt_module_param_buffer(l, NULL) == pb);
    /* Adding a parameter later repacks at the next use. */
    DT_SCOPE DT_ASSERT_OK(dt_module_add_param(seq, "extra", dt_ones(DT_F32, DT_SHAPE(2))));
    static const char *const names[] = {"extra", "1.weight", "1.bias"};
    expect_names(seq, names, 3);
    pb = dt_module_param_buffer(seq, &n);
    DT_ASSERT_EQ(n, 17);
    DT_ASSERT(pb[0] == 1 && pb[1] == 1);
    DT_ASSERT(memcmp(pb + 2, before, sizeof before) == 0);
    dt_module_free(seq);
}

static void t_grad_storage(void)
{
    dt_rng g = rng(7);
    dt_module *m = test_mlp(&g, 6, 5, 2);
    int64_t n = dt_module_num_params(m);
    float *mine = calloc((size_t)n, sizeof(float));
    float *own = dt_module_grad_buffer(m, NULL);
    own[0] = 3.5f;
    DT_ASSERT_ERR(dt_module_set_grad_storage(dt_module_child(m, "1"), mine), DT_EINVAL);
    DT_ASSERT_OK(dt_module_set_grad_storage(m, mine));
    DT_ASSERT(mine[0] == 3.5f);
    DT_ASSERT(dt_module_grad_buffer(m, NULL) == mine);
    size_t np;
    const dt_param_slot *s = dt_module_slots(m, &np);
    DT_ASSERT(s[0].grad == mine && s[1].grad == mine + 30);
    mine[0] = 0;
    DT_SCOPE {
        dt_tensor *x = dt_randn(&g, DT_F32, DT_SHAPE(3, 6));
        DT_ASSERT_OK(dt_backward(dt_sum(dt_module_forward(m, x), NULL, 0, false)));
    }
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += fabs(mine[i]);
    DT_ASSERT(sum > 0);
    DT_ASSERT(dt_tensor_data_f32(dt_tensor_grad(dt_module_param(m, "5.bias"))) == mine + n - 2);
    DT_ASSERT_NEAR(mine[n - 1], 3.0, 1e-6);   /* d sum / d last bias = batch size */
    DT_ASSERT_OK(dt_module_set_grad_storage(m, NULL));
    DT_ASSERT(dt_module_grad_buffer(m, NULL) == own);
    DT_ASSERT(memcmp(own, mine, (size_t)n * 4) == 0);
    dt_module_free(m);
    free(mine);
}

static void t_train_eval(void)
{
    dt_rng g = rng(8);
    dt_module *m = test_mlp(&g, 4, 4, 2);
    DT_ASSERT(dt_module_is_training(m) && dt_module_is_training(dt_module_child(m, "3")));
    dt_module_train(m, false);
    DT_ASSERT(!dt_module_is_training(m) && !dt_module_is_training(dt_module_child(m, "3")));
    dt_module_train(dt_module_child(m, "3"), true);
    DT_ASSERT(!dt_module_is_training(m) && dt_module_is_training(dt_module_child(m, "3")));
    dt_module_train(m, true);
    DT_ASSERT(dt_module_is_training(dt_module_child(m, "5")));
    dt_module_free(m);
}

static char g_dir[64];
static char *path_of(const char *name)
{
    static char p[8][160];
    static int k;
    char *s = p[k++ % 8];
    snprintf(s, 160, "%s/%s", g_dir, name);
    return s;
}

static void t_save_load_roundtrip(void)
{
    dt_rng g = rng(10), h = rng(11);
    dt_module *a = scaled(5, 3, &g), *b = scaled(5, 3, &h);
    DT_SCOPE dt_tensor_fill(dt_module_buffer(a, "count"), 42);
    int64_t n;
    float *pa = dt_module_param_buffer(a, &n), *pb = dt_module_param_buffer(b, NULL);
    pa[0] = -1.25f;
    DT_ASSERT(memcmp(pa, pb, (size_t)n * 4) != 0);
    DT_ASSERT_OK(dt_module_save(a, path_of("a.safetensors")));
    dt_st_file *f = dt_st_open(path_of("a.safetensors"));
    DT_ASSERT(f);
    DT_ASSERT_EQ(dt_st_count(f), 4);
    const dt_st_tensor *w = dt_st_find(f, "fc.weight"), *c = dt_st_find(f, "count");
    DT_ASSERT(w && w->dtype == DT_F32 && w->ndim == 2 && w->shape[0] == 3 && w->shape[1] == 5);
    DT_ASSERT(c && c->dtype == DT_I64);
    dt_st_close(f);
    DT_ASSERT_OK(dt_module_load(b, path_of("a.safetensors")));
    DT_ASSERT(memcmp(pa, pb, (size_t)n * 4) == 0);
    DT_ASSERT_EQ(((int64_t *)dt_tensor_data(dt_module_buffer(b, "count")))[0], 42);
    /* A sub-module saves under names relative to itself. */
    DT_ASSERT_OK(dt_module_save(dt_module_child(a, "fc"), path_of("fc.safetensors")));
    dt_module *lin = dt_nn_linear(5, 3, true, &h);
    DT_ASSERT_OK(dt_module_load(lin, path_of("fc.safetensors")));
    DT_ASSERT(memcmp(dt_module_param_buffer(lin, NULL), pa + 3, 18 * 4) == 0);
    dt_module_free(a), dt_module_free(b), dt_module_free(lin);
}

/* Writes a file of the given (name, dtype, shape) entries, filled with 0.5. */
static void write_file(const char *path, int n, const char *const *names, const dt_dtype *dts, const int *ndims,
                       const int64_t (*shapes)[4])
{
    dt_st_entry e[8];
    static double d64[4096];
    static float d32[4096];
    for (int i = 0; i < 4096; i++) d64[i] = 0.5, d32[i] = 0.5f;
    for (int i = 0; i < n; i++)
        e[i] = (dt_st_entry){names[i], dts[i], ndims[i], shapes[i], dts[i] == DT_F64 ? (void *)d64 : (void *)d32};
    DT_ASSERT_OK(dt_st_write(path, e, (size_t)n, NULL, 0));
}

static void expect_load_err(dt_module *m, const char *path, int code, const char *needle)
{
    int64_t n;
    float *p = dt_module_param_buffer(m, &n);
    float *copy = malloc((size_t)n * 4);
    memcpy(copy, p, (size_t)n * 4);
    int rc = dt_module_load(m, path);
    bool same = memcmp(copy, p, (size_t)n * 4) == 0;
    free(copy);
    DT_ASSERT_MSG(rc == code, "load %s: %s, expected %s (%s)", path, dt_errname(rc), dt_errname(code), dt_last_error());
    DT_ASSERT_CONTAINS(dt_last_error(), needle);
    DT_ASSERT_MSG(same, "a failed load changed the parameters");
}

/* The state as a prefixed part of a larger file: entries of other parts are not
 * "unexpected", a missing one under the prefix is. */
static void t_state_in_list(void)
{
    dt_rng g = rng(12), h = rng(13);
    dt_module *a = scaled(5, 3, &g), *b = scaled(5, 3, &h);
    DT_SCOPE dt_tensor_fill(dt_module_buffer(a, "count"), 7);
    dt_st_list *l = dt_st_list_new();
    DT_ASSERT(l);
    int64_t one[1] = {1}, step = 9;
    DT_ASSERT_OK(dt_module_state_add(a, l, "model."));
    DT_ASSERT_OK(dt_st_list_add(l, "train.", "step", DT_I64, 1, one, &step));
    DT_ASSERT_OK(dt_st_list_write(l, path_of("snap.safetensors")));
    dt_st_list_free(l);
    dt_st_file *f = dt_st_open(path_of("snap.safetensors"));
    DT_ASSERT(f);
    DT_ASSERT_ERR(dt_module_state_load(b, f, "nothing.", "snap"), DT_EMISMATCH);   /* all missing */
    DT_ASSERT_CONTAINS(dt_last_error(), "missing key");
    DT_ASSERT_OK(dt_module_state_load(b, f, "model.", "snap"));
    dt_st_close(f);
    int64_t n;
    float *pa = dt_module_param_buffer(a, &n), *pb = dt_module_param_buffer(b, NULL);
    DT_ASSERT(memcmp(pa, pb, (size_t)n * 4) == 0);
    DT_SCOPE DT_ASSERT_EQ(dt_tensor_item(dt_sum(dt_module_buffer(b, "count"), NULL, 0, false)),
                          dt_tensor_item(dt_sum(dt_module_buffer(a, "count"), NULL, 0, false)));
    dt_module_free(a);
    dt_module_free(b);
}

static void t_load_errors(void)
{
    dt_rng g = rng(12);
    dt_module *l = dt_nn_linear(4, 3, true, &g);
    const char *nm[] = {"weight", "bias", "extra"};
    dt_dtype f32[] = {DT_F32, DT_F32, DT_F32}, f64[] = {DT_F32, DT_F64};
    int nd[] = {2, 1, 1};
    const int64_t good[][4] = {{3, 4}, {3}, {2}}, bad[][4] = {{4, 3}, {3}};
    write_file(path_of("missing.st"), 1, nm, f32, nd, good);
    expect_load_err(l, path_of("missing.st"), DT_EMISMATCH, "missing key 'bias'");
    write_file(path_of("unexpected.st"), 3, nm, f32, nd, good);
    expect_load_err(l, path_of("unexpected.st"), DT_EMISMATCH, "unexpected key 'extra'");
    write_file(path_of("shape.st"), 2, nm, f32, nd, bad);
    expect_load_err(l, path_of("shape.st"), DT_ESHAPE, "'weight' has shape [4, 3] in the file, the module's is [3, 4]");
    write_file(path_of("dtype.st"), 2, nm, f64, nd, good);
    expect_load_err(l, path_of("dtype.st"), DT_EDTYPE, "'bias' is float64 in the file, the module's is float32");
    FILE *f = fopen(path_of("garbage.st"), "wb");
    fputs("this is not a safetensors file at all", f);
    fclose(f);
    expect_load_err(l, path_of("garbage.st"), DT_ECORRUPT, "garbage.st");
    /* A good file cut short. */
    write_file(path_of("good.st"), 2, nm, f32, nd, good);
    DT_ASSERT_OK(truncate(path_of("good.st"), 60));
    expect_load_err(l, path_of("good.st"), DT_ECORRUPT, "good.st");
    expect_load_err(l, path_of("nope.st"), DT_ENOTFOUND, "nope.st");
    write_file(path_of("good.st"), 2, nm, f32, nd, good);
    DT_ASSERT_OK(dt_module_load(l, path_of("good.st")));
    DT_ASSERT(dt_tensor_data_f32(dt_module_param(l, "bias"))[2] == 0.5f);
    dt_module_free(l);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_nn_mod_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    DT_RUN(t_mlp_names_and_flat_buffers);
    DT_RUN(t_cnn_names);
    DT_RUN(t_nested_custom_names);
    DT_RUN(t_custom_forward_backward);
    DT_RUN(t_layer_forwards);
    DT_RUN(t_init_ranges);
    DT_RUN(t_repack_keeps_values);
    DT_RUN(t_grad_storage);
    DT_RUN(t_train_eval);
    DT_RUN(t_save_load_roundtrip);
    DT_RUN(t_load_errors);
    DT_RUN(t_state_in_list);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return DT_TEST_END();
}
