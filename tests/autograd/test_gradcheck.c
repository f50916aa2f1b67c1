/* Finite-difference gradient checks (gradcheck.h) in float64 for every differentiable
 * op, on shapes that broadcast and on transposed, strided and expanded operands. Each
 * case names the op it checks; a failing case prints the element that differs. */
#include "dt_test.h"
#include "autograd/gradcheck.h"

static dt_rng g_rng;

/* Run one closure over inputs of the given shapes/layouts (values in shift + [-1, 1)). */
typedef struct {
    int ndim;
    int64_t shape[4];
    int layout;
} spec;

static int check(dt_gc_fn f, void *ctx, const spec *specs, int n, double shift)
{
    int rc = 0;
    DT_SCOPE {
        dt_tensor *in[4];
        for (int i = 0; i < n; i++) in[i] = dt_gc_input_shift(&g_rng, specs[i].ndim, specs[i].shape, specs[i].layout, shift);
        dt_gc_opts o = DT_GC_OPTS_INIT;
        rc = dt_gradcheck(f, ctx, in, n, o);
    }
    return rc;
}

#define S1(a) {1, {a}, 0}
#define S2(a, b, l) {2, {a, b}, l}
#define S3(a, b, c, l) {3, {a, b, c}, l}

/* ---- binary ops with broadcasting */
typedef dt_tensor *(*bin_fn)(dt_tensor *, dt_tensor *);
static dt_tensor *f_bin(dt_tensor *const *in, void *ctx) { return dt_gc_project(((bin_fn)ctx)(in[0], in[1])); }

static void t_binary(void)
{
    bin_fn ops[] = {dt_add, dt_sub, dt_mul, dt_div, dt_pow};
    const char *names[] = {"add", "sub", "mul", "div", "pow"};
    spec cases[][2] = {
        {S2(3, 4, 0), S2(3, 4, 0)},
        {S2(3, 4, DT_GC_TRANSPOSED), S1(4)},                 /* row broadcast */
        {S3(2, 1, 4, 0), S2(3, 1, DT_GC_STRIDED)},           /* both stretch */
        {S2(4, 3, DT_GC_STRIDED), S2(4, 3, DT_GC_TRANSPOSED)},
        {{0, {0}, 0}, S2(2, 3, 0)},                          /* 0-dim */
    };
    for (int o = 0; o < 5; o++)
        for (int c = 0; c < 5; c++) {
            /* div and pow: keep the operands positive (away from 0 and log of negatives) */
            double shift = o >= 3 ? 2.5 : 0;
            DT_ASSERT_MSG(check(f_bin, (void *)ops[o], cases[c], 2, shift) == 0, "%s case %d: %s", names[o], c, dt_last_error());
        }
}

/* ---- unary and scalar ops */
typedef struct {
    const char *name;
    int kind;
    double s;
    double shift;
} un_case;

static dt_tensor *apply_unary(const un_case *u, dt_tensor *x)
{
    switch (u->kind) {
    case 0: return dt_neg(x);
    case 1: return dt_exp(x);
    case 2: return dt_ln(x);
    case 3: return dt_sqrt(x);
    case 4: return dt_tanh(x);
    case 5: return dt_sigmoid(x);
    case 6: return dt_relu(x);
    case 7: return dt_gelu(x, DT_GELU_ERF);
    case 8: return dt_gelu(x, DT_GELU_TANH);
    case 9: return dt_add_scalar(x, u->s);
    case 10: return dt_mul_scalar(x, u->s);
    case 11: return dt_div_scalar(x, u->s);
    case 12: return dt_rsub_scalar(x, u->s);
    case 13: return dt_rdiv_scalar(x, u->s);
    case 14: return dt_pow_scalar(x, u->s);
    default: return NULL;
    }
}

static dt_tensor *f_un(dt_tensor *const *in, void *ctx) { return dt_gc_project(apply_unary(ctx, in[0])); }

static void t_unary(void)
{
    un_case cases[] = {
        {"neg", 0, 0, 0}, {"exp", 1, 0, 0}, {"log", 2, 0, 2}, {"sqrt", 3, 0, 2}, {"tanh", 4, 0, 0},
        {"sigmoid", 5, 0, 0}, {"relu", 6, 0, 0}, {"gelu", 7, 0, 0}, {"gelu_tanh", 8, 0, 0},
        {"add_scalar", 9, 1.5, 0}, {"mul_scalar", 10, -2, 0}, {"div_scalar", 11, 3, 0},
        {"rsub_scalar", 12, 2, 0}, {"rdiv_scalar", 13, 2, 2}, {"pow_scalar", 14, 3, 0}, {"pow_scalar_frac", 14, 0.5, 2},
    };
    spec shapes[] = {S2(3, 5, 0), S2(4, 3, DT_GC_TRANSPOSED), S3(2, 3, 2, DT_GC_STRIDED)};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int s = 0; s < 3; s++)
            DT_ASSERT_MSG(check(f_un, &cases[c], &shapes[s], 1, cases[c].shift) == 0, "%s shape %d: %s", cases[c].name, s, dt_last_error());
}

/* ---- reductions */
typedef struct {
    int kind;          /* 0 sum, 1 mean, 2 max, 3 softmax, 4 log_softmax, 5 sum_to */
    int dims[2], nd;
    bool keep;
} red_case;

static dt_tensor *f_red(dt_tensor *const *in, void *ctx)
{
    const red_case *r = ctx;
    dt_tensor *x = in[0];
    switch (r->kind) {
    case 0: return dt_gc_project(dt_sum(x, r->dims, r->nd, r->keep));
    case 1: return dt_gc_project(dt_mean(x, r->dims, r->nd, r->keep));
    case 2: return dt_gc_project(dt_max(x, r->dims[0], r->keep));
    case 3: return dt_gc_project(dt_softmax(x, r->dims[0]));
    case 4: return dt_gc_project(dt_log_softmax(x, r->dims[0]));
    default: return dt_gc_project(dt_sum_to(x, DT_SHAPE(3, 1)));
    }
}

static void t_reductions(void)
{
    red_case cases[] = {
        {0, {0}, 0, false}, {0, {1}, 1, false}, {0, {0, 2}, 2, true}, {0, {-1}, 1, true},
        {1, {0}, 0, false}, {1, {1}, 1, true}, {1, {2, 0}, 2, false},
        {2, {0}, 1, false}, {2, {1}, 1, true}, {2, {-1}, 1, false},
        {3, {-1}, 1, false}, {3, {0}, 1, false}, {3, {1}, 1, false},
        {4, {-1}, 1, false}, {4, {1}, 1, false},
        {5, {0}, 0, false},
    };
    spec shapes[] = {S3(2, 3, 4, 0), S3(2, 3, 4, DT_GC_TRANSPOSED), S3(2, 3, 4, DT_GC_STRIDED)};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int s = 0; s < 3; s++)
            DT_ASSERT_MSG(check(f_red, &cases[c], &shapes[s], 1, 0) == 0, "reduction case %zu shape %d: %s", c, s, dt_last_error());
}

/* ---- matmul and linear */
static dt_tensor *f_matmul(dt_tensor *const *in, void *ctx) { return dt_gc_project(dt_matmul(in[0], in[1])); }
static dt_tensor *f_linear(dt_tensor *const *in, void *ctx) { return dt_gc_project(dt_linear(in[0], in[1], ctx ? in[2] : NULL)); }
/* batch operand made by expanding a 2-D input inside the closure */
static dt_tensor *f_matmul_expand(dt_tensor *const *in, void *ctx)
{
    return dt_gc_project(dt_matmul(in[0], dt_expand(in[1], DT_SHAPE(2, 4, 3))));
}

static void t_matmul(void)
{
    spec cases[][2] = {
        {S2(3, 4, 0), S2(4, 5, 0)},
        {S2(3, 4, DT_GC_TRANSPOSED), S2(4, 5, DT_GC_TRANSPOSED)},
        {S2(3, 4, DT_GC_STRIDED), S2(4, 2, DT_GC_STRIDED)},
        {S3(2, 3, 4, 0), S2(4, 2, 0)},                       /* batch x matrix (folded) */
        {S3(2, 3, 4, DT_GC_TRANSPOSED), S3(2, 4, 2, 0)},     /* batched */
        {S3(1, 3, 4, 0), S3(2, 4, 2, DT_GC_TRANSPOSED)},     /* batch broadcast */
        {S1(4), S2(4, 3, 0)},                                /* vector cases */
        {S2(3, 4, 0), S1(4)},
        {S1(4), S1(4)},
        {S1(4), S3(2, 4, 3, 0)},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        DT_ASSERT_MSG(check(f_matmul, NULL, cases[c], 2, 0) == 0, "matmul case %zu: %s", c, dt_last_error());
    spec ex[2] = {S3(2, 3, 4, 0), S2(4, 3, 0)};
    DT_ASSERT_MSG(check(f_matmul_expand, NULL, ex, 2, 0) == 0, "matmul expanded: %s", dt_last_error());
    spec lin[][3] = {
        {S2(5, 4, 0), S2(3, 4, 0), S1(3)},
        {S3(2, 5, 4, 0), S2(3, 4, DT_GC_TRANSPOSED), S1(3)},
        {S2(5, 4, DT_GC_TRANSPOSED), S2(3, 4, DT_GC_STRIDED), S1(3)},
        {S1(4), S2(3, 4, 0), S1(3)},
    };
    for (size_t c = 0; c < sizeof lin / sizeof *lin; c++) {
        DT_ASSERT_MSG(check(f_linear, (void *)1, lin[c], 3, 0) == 0, "linear case %zu: %s", c, dt_last_error());
        DT_ASSERT_MSG(check(f_linear, NULL, lin[c], 2, 0) == 0, "linear (no bias) case %zu: %s", c, dt_last_error());
    }
}

/* ---- views and the rest */
static dt_tensor *f_view(dt_tensor *const *in, void *ctx)
{
    dt_tensor *x = in[0];   /* (2, 3, 4) */
    switch ((int)(intptr_t)ctx) {
    case 0: return dt_gc_project(dt_mul(dt_reshape(x, DT_SHAPE(4, -1)), dt_reshape(x, DT_SHAPE(4, 6))));
    case 1: return dt_gc_project(dt_exp(dt_transpose(x, 0, 2)));
    case 2: return dt_gc_project(dt_tanh(dt_permute(x, (int[]){2, 0, 1})));
    case 3: return dt_gc_project(dt_mul(dt_narrow(x, 1, 1, 2), dt_narrow(x, 1, 0, 2)));
    case 4: return dt_gc_project(dt_sigmoid(dt_slice(x, 2, 0, 4, 3)));
    case 5: return dt_gc_project(dt_mul(dt_expand(dt_narrow(x, 0, 0, 1), DT_SHAPE(3, 2, 3, 4)), dt_unsqueeze(x, 0)));
    case 6: return dt_gc_project(dt_squeeze(dt_unsqueeze(dt_exp(x), 1), 1));
    case 7: return dt_gc_project(dt_flatten(dt_transpose(x, 0, 1), 0, 1));
    case 8: return dt_gc_project(dt_contiguous(dt_transpose(x, 1, 2)));
    case 9: {
        dt_tensor *parts[3];
        if (dt_split(x, 2, 2, parts, 3) != 2) return NULL;
        return dt_gc_project(dt_mul(parts[0], dt_exp(parts[1])));
    }
    case 10: {
        dt_tensor *ts[3] = {x, dt_exp(x), dt_narrow(x, 2, 1, 2)};
        return dt_gc_project(dt_cat(ts, 3, -1));
    }
    case 11: {
        dt_tensor *m = dt_causal_mask(4);
        return dt_gc_project(dt_softmax(dt_masked_fill(dt_narrow(x, 1, 0, 3), dt_narrow(m, 0, 0, 3), -INFINITY), -1));
    }
    case 12: return dt_gc_project(dt_to_dtype(dt_mul_scalar(x, 1.0), DT_F64));
    case 13: return dt_gc_project(dt_view(dt_narrow(x, 2, 0, 2), DT_SHAPE(6, 2)));
    default: return NULL;
    }
}

static void t_views_and_rest(void)
{
    spec shapes[] = {S3(2, 3, 4, 0), S3(2, 3, 4, DT_GC_TRANSPOSED), S3(2, 3, 4, DT_GC_STRIDED)};
    for (int c = 0; c <= 13; c++)
        for (int s = 0; s < 3; s++) {
            if (c == 13 && s == 1) continue;   /* no view of a transposed narrow: reshape's job */
            DT_ASSERT_MSG(check(f_view, (void *)(intptr_t)c, &shapes[s], 1, 0) == 0, "view case %d shape %d: %s", c, s, dt_last_error());
        }
}

/* A small attention block (what train_gpt builds): every op together. */
static dt_tensor *f_attention(dt_tensor *const *in, void *ctx)
{
    dt_tensor *x = in[0], *wqkv = in[1];   /* (B, T, C), (3C, C) */
    int64_t B = 2, T = 3, C = 4, H = 2;
    dt_tensor *qkv[3];
    if (dt_split(dt_linear(x, wqkv, NULL), C, 2, qkv, 3) != 3) return NULL;
    for (int i = 0; i < 3; i++) qkv[i] = dt_transpose(dt_view(qkv[i], DT_SHAPE(B, T, H, C / H)), 1, 2);
    dt_tensor *att = dt_div_scalar(dt_matmul(qkv[0], dt_transpose(qkv[1], -2, -1)), sqrt((double)(C / H)));
    att = dt_softmax(dt_masked_fill(att, dt_causal_mask(T), -INFINITY), -1);
    dt_tensor *y = dt_reshape(dt_transpose(dt_matmul(att, qkv[2]), 1, 2), DT_SHAPE(B, T, C));
    return dt_gc_project(dt_gelu(dt_add(x, y), DT_GELU_ERF));
}

static void t_attention(void)
{
    spec s[2] = {S3(2, 3, 4, 0), S2(12, 4, 0)};
    DT_ASSERT_MSG(check(f_attention, NULL, s, 2, 0) == 0, "attention: %s", dt_last_error());
}

/* The checker itself must catch a wrong gradient. */
static int wrong_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    gi[0] = dt_mul_scalar(g, 1.01);
    return 0;
}

static dt_tensor *f_wrong(dt_tensor *const *in, void *ctx)
{
    dt_tensor *out = dt_mul_scalar(dt_detach(in[0]), 1.0);
    if (out && dt_needs_grad(in, 1)) out = dt_node_attach(dt_node_new("wrong", wrong_bw, in, 1), out);
    return dt_gc_project(out);
}

static void t_checker_fails(void)
{
    DT_SCOPE {
        dt_tensor *x = dt_gc_input(&g_rng, DT_SHAPE(3), 0);
        dt_gc_opts o = DT_GC_OPTS_INIT;
        o.quiet = true;
        DT_ASSERT_ERR(dt_gradcheck(f_wrong, NULL, &x, 1, o), DT_EINVAL);
        DT_ASSERT_CONTAINS(dt_last_error(), "analytic");
    }
}

int main(void)
{
    g_rng = dt_rng_make(2024, dt_rng_stream(DT_RNG_INIT, 0));
    DT_RUN(t_binary);
    DT_RUN(t_unary);
    DT_RUN(t_reductions);
    DT_RUN(t_matmul);
    DT_RUN(t_views_and_rest);
    DT_RUN(t_attention);
    DT_RUN(t_checker_fails);
    return DT_TEST_END();
}
