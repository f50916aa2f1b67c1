/* Finite-difference gradient checks (gradcheck.h, float64) for nn's conv, pooling and
 * losses: odd sizes, stride 2, padding, batch 1, no bias, 1x1 kernels, unbatched
 * inputs, and transposed or strided (non-contiguous) operands; the losses with
 * ignored targets, i32 and i64 targets and every reduction. */
#include "dt_test.h"
#include "autograd/gradcheck.h"

static dt_rng g_rng;

typedef struct {
    int ndim;
    int64_t shape[4];
    int layout;
} spec;

static int check(dt_gc_fn f, void *ctx, const spec *specs, int n)
{
    int rc = 0;
    DT_SCOPE {
        dt_tensor *in[4];
        for (int i = 0; i < n; i++) in[i] = dt_gc_input(&g_rng, specs[i].ndim, specs[i].shape, specs[i].layout);
        rc = dt_gradcheck(f, ctx, in, n, (dt_gc_opts)DT_GC_OPTS_INIT);
    }
    return rc;
}

#define S1(a) {1, {a}, 0}
#define S3(a, b, c, l) {3, {a, b, c}, l}
#define S4(a, b, c, d, l) {4, {a, b, c, d}, l}
#define NONE_ {0, {0}, -1}

/* ---- conv2d: inputs x, w and (when the spec has one) b */
typedef struct {
    spec x, w, b;
    int sh, sw, ph, pw;
} conv_case;

static dt_tensor *f_conv(dt_tensor *const *in, void *ctx)
{
    const conv_case *c = ctx;
    return dt_gc_project(dt_conv2d(in[0], in[1], c->b.layout >= 0 ? in[2] : NULL, c->sh, c->sw, c->ph, c->pw));
}

static void t_conv2d(void)
{
    conv_case cases[] = {
        {S4(2, 3, 5, 5, 0), S4(4, 3, 3, 3, 0), S1(4), 1, 1, 1, 1},                       /* the CNN's shape */
        {S4(1, 2, 7, 6, DT_GC_TRANSPOSED), S4(3, 2, 3, 2, 0), NONE_, 2, 2, 1, 0},        /* no bias, stride 2, batch 1 */
        {S4(2, 2, 6, 5, DT_GC_STRIDED), S4(2, 2, 1, 1, 0), S1(2), 1, 1, 0, 0},          /* 1x1 (no im2col) */
        {S4(2, 2, 6, 5, 0), S4(3, 2, 1, 1, DT_GC_TRANSPOSED), NONE_, 2, 1, 0, 0},       /* 1x1 stride 2 */
        {S4(1, 3, 4, 5, 0), S4(2, 3, 2, 2, DT_GC_STRIDED), S1(2), 2, 1, 0, 0},          /* unequal strides */
        {S4(3, 1, 5, 5, 0), S4(2, 1, 3, 3, DT_GC_TRANSPOSED), S1(2), 2, 2, 1, 1},       /* odd size, stride 2, pad */
        {S4(1, 1, 2, 2, 0), S4(2, 1, 3, 3, 0), S1(2), 1, 1, 1, 1},                      /* kernel larger than input */
        {S4(2, 2, 5, 7, 0), S4(2, 2, 3, 5, 0), NONE_, 3, 2, 2, 2},                      /* pad > kernel/2, stride 3 */
        {S3(2, 5, 4, DT_GC_TRANSPOSED), S4(3, 2, 3, 3, 0), S1(3), 1, 1, 1, 1},          /* unbatched (C, H, W) */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        spec s[3] = {cases[c].x, cases[c].w, cases[c].b};
        DT_ASSERT_MSG(check(f_conv, &cases[c], s, cases[c].b.layout >= 0 ? 3 : 2) == 0, "conv2d case %zu: %s", c, dt_last_error());
    }
}

/* ---- pooling */
typedef struct {
    bool max;
    spec x;
    int kh, kw, sh, sw, ph, pw;
} pool_case;

static dt_tensor *f_pool(dt_tensor *const *in, void *ctx)
{
    const pool_case *p = ctx;
    dt_tensor *y = p->max ? dt_max_pool2d(in[0], p->kh, p->kw, p->sh, p->sw, p->ph, p->pw)
                          : dt_avg_pool2d(in[0], p->kh, p->kw, p->sh, p->sw, p->ph, p->pw);
    return dt_gc_project(y);
}

static void t_pool(void)
{
    pool_case shapes[] = {
        {false, S4(2, 3, 6, 4, 0), 2, 2, 2, 2, 0, 0},                  /* the 2x2 fast path */
        {false, S4(1, 2, 7, 5, DT_GC_TRANSPOSED), 2, 2, 2, 2, 0, 0},   /* odd sizes: last row/col dropped */
        {false, S4(2, 2, 5, 6, DT_GC_STRIDED), 3, 3, 2, 2, 1, 1},      /* padding */
        {false, S4(1, 3, 6, 5, 0), 3, 2, 1, 2, 1, 0},                  /* overlapping windows */
        {false, S3(2, 5, 5, DT_GC_TRANSPOSED), 2, 3, 3, 1, 1, 1},      /* unbatched */
        {false, S4(2, 1, 4, 4, 0), 4, 4, 1, 1, 2, 2},                  /* padding = kernel/2 */
    };
    for (int m = 0; m < 2; m++)
        for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
            pool_case p = shapes[c];
            p.max = m == 1;
            DT_ASSERT_MSG(check(f_pool, &p, &p.x, 1) == 0, "%s case %zu: %s", p.max ? "max_pool2d" : "avg_pool2d", c, dt_last_error());
        }
}

/* ---- losses */
typedef struct {
    int kind;              /* 0 cross_entropy, 1 nll_loss, 2 mse_loss */
    dt_reduction red;
    int64_t ignore;
    dt_tensor *target;     /* class ids for 0 and 1 */
    bool bcast;            /* mse: b is (C), broadcast over rows */
} loss_case;

static dt_tensor *f_loss(dt_tensor *const *in, void *ctx)
{
    const loss_case *l = ctx;
    switch (l->kind) {
    case 0: return dt_gc_project(dt_cross_entropy_ex(in[0], l->target, l->red, l->ignore));
    case 1: return dt_gc_project(dt_nll_loss(in[0], l->target, l->red, l->ignore));
    default: return dt_gc_project(dt_mse_loss(in[0], in[1], l->red));
    }
}

static dt_tensor *targets(dt_dtype dt, const int64_t *v, int64_t n)
{
    dt_tensor *t = dt_empty(DT_I64, 1, &n);
    if (!t || dt_tensor_write(t, v, n) < 0) return NULL;
    return dt == DT_I64 ? t : dt_to_dtype(t, dt);
}

static void t_losses(void)
{
    const int64_t tv[6] = {2, -100, 0, 3, 3, 1};
    const int64_t tv7[6] = {2, 7, 0, 7, 3, 1};   /* ignore_index 7 (outside 0..C-1) */
    const int64_t tv0[6] = {2, 0, 0, 3, 0, 1};   /* ignore_index 0, a real class id */
    dt_reduction reds[3] = {DT_REDUCTION_MEAN, DT_REDUCTION_SUM, DT_REDUCTION_NONE};
    spec layouts[3] = {{2, {6, 4}, 0}, {2, {6, 4}, DT_GC_TRANSPOSED}, {2, {6, 4}, DT_GC_STRIDED}};
    DT_SCOPE {
        for (int kind = 0; kind < 2; kind++)
            for (int r = 0; r < 3; r++)
                for (int v = 0; v < 3; v++) {
                    loss_case l = {.kind = kind, .red = reds[r], .ignore = v == 0 ? DT_IGNORE_INDEX : v == 1 ? 7 : 0,
                                   .target = targets(v == 1 ? DT_I32 : DT_I64, v == 0 ? tv : v == 1 ? tv7 : tv0, 6)};
                    DT_ASSERT(l.target);
                    DT_ASSERT_MSG(check(f_loss, &l, &layouts[v], 1) == 0, "%s reduction %d targets %d: %s",
                                  kind ? "nll_loss" : "cross_entropy", (int)reds[r], v, dt_last_error());
                }
        /* a strided target (every other element of a longer one) */
        const int64_t tl[12] = {1, 9, 0, 9, 3, 9, -100, 9, 2, 9, 1, 9};
        dt_tensor *ts = dt_slice(targets(DT_I64, tl, 12), 0, 0, 12, 2);
        loss_case l = {.kind = 0, .red = DT_REDUCTION_MEAN, .ignore = DT_IGNORE_INDEX, .target = ts};
        DT_ASSERT_MSG(check(f_loss, &l, &layouts[0], 1) == 0, "cross_entropy, strided target: %s", dt_last_error());
    }
    spec mse_cases[][2] = {
        {{2, {3, 4}, 0}, {2, {3, 4}, 0}},
        {{2, {3, 4}, DT_GC_TRANSPOSED}, {2, {3, 4}, DT_GC_STRIDED}},
        {{2, {3, 4}, 0}, S1(4)},                                    /* b broadcasts */
        {{2, {1, 4}, 0}, {2, {3, 1}, DT_GC_TRANSPOSED}},            /* both broadcast */
    };
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) {
            loss_case l = {.kind = 2, .red = reds[r]};
            DT_ASSERT_MSG(check(f_loss, &l, mse_cases[c], 2) == 0, "mse_loss reduction %d case %d: %s", (int)reds[r], c, dt_last_error());
        }
}

/* The ops chained as in the CNN: conv, relu, pool, conv, pool, flatten, cross_entropy. */
static dt_tensor *f_cnn(dt_tensor *const *in, void *ctx)
{
    dt_tensor *h = dt_max_pool2d(dt_relu(dt_conv2d(in[0], in[1], in[2], 1, 1, 1, 1)), 2, 2, 2, 2, 0, 0);
    h = dt_avg_pool2d(dt_relu(dt_conv2d(h, in[3], NULL, 1, 1, 1, 1)), 2, 2, 2, 2, 0, 0);
    return dt_cross_entropy(dt_flatten(h, 1, -1), ctx);
}

static void t_cnn_chain(void)
{
    DT_SCOPE {
        const int64_t tv[2] = {5, 1};
        dt_tensor *t = targets(DT_I64, tv, 2);
        spec s[4] = {S4(2, 1, 8, 8, 0), S4(3, 1, 3, 3, 0), S1(3), S4(2, 3, 3, 3, DT_GC_TRANSPOSED)};
        DT_ASSERT_MSG(check(f_cnn, t, s, 4) == 0, "cnn chain: %s", dt_last_error());
    }
}

int main(void)
{
    g_rng = dt_rng_make(2025, dt_rng_stream(DT_RNG_INIT, 0));
    DT_RUN(t_conv2d);
    DT_RUN(t_pool);
    DT_RUN(t_losses);
    DT_RUN(t_cnn_chain);
    return DT_TEST_END();
}
