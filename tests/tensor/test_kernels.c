/* The fast kernels against simple references written here (naive index loops in f64):
 * elementwise ops with broadcasting over transposed, strided and expanded operands,
 * sums over dim sets, max/argmax, softmax, copies, and matmul through every layout and
 * batch-broadcast path (transpose flags, folded batches, per-batch GEMMs). Sizes are
 * large enough to take the multi-threaded paths, and results must not depend on the
 * thread count. */
#include "dt_test.h"

static dt_rng g_rng;

/* f64 value of element lin (row-major position) of any tensor. */
static double at(const dt_tensor *t, int64_t lin)
{
    int64_t idx[DT_MAX_DIMS];
    for (int d = dt_tensor_ndim(t) - 1; d >= 0; d--) {
        idx[d] = lin % dt_tensor_shape(t)[d];
        lin /= dt_tensor_shape(t)[d];
    }
    return dt_tensor_get(t, idx);
}

/* A random f32 operand of shape (r, c) laid out as asked: 0 contiguous, 1 transposed,
 * 2 every other column, 3 a row expanded (stride 0). */
static dt_tensor *operand(int64_t r, int64_t c, int layout)
{
    switch (layout) {
    case 1: return dt_transpose(dt_randn(&g_rng, DT_F32, DT_SHAPE(c, r)), 0, 1);
    case 2: return dt_slice(dt_randn(&g_rng, DT_F32, DT_SHAPE(r, 2 * c)), 1, 0, 2 * c, 2);
    case 3: return dt_expand(dt_randn(&g_rng, DT_F32, DT_SHAPE(1, c)), DT_SHAPE(r, c));
    default: return dt_randn(&g_rng, DT_F32, DT_SHAPE(r, c));
    }
}

static void t_elementwise_vs_naive(void)
{
    DT_SCOPE {
        for (int la = 0; la < 4; la++)
            for (int lb = 0; lb < 3; lb++) {
                dt_tensor *a = operand(300, 257, la), *b = operand(300, 257, lb);
                dt_tensor *row = dt_randn(&g_rng, DT_F32, DT_SHAPE(257));
                dt_tensor *y = dt_sub(dt_mul(a, b), row);
                dt_tensor *z = dt_gelu(a, DT_GELU_TANH);
                for (int64_t i = 0; i < 300 * 257; i += 97) {
                    double want = (float)((float)(at(a, i) * at(b, i)) - at(row, i % 257));
                    DT_ASSERT_NEAR(at(y, i), want, 1e-6 * fmax(1, fabs(want)));
                    double x = at(a, i);
                    double gt = 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
                    DT_ASSERT_NEAR(at(z, i), gt, 1e-6);
                }
            }
    }
}

static void t_reduce_vs_naive(void)
{
    DT_SCOPE {
        dt_tensor *x = dt_transpose(dt_randn(&g_rng, DT_F32, DT_SHAPE(5, 40, 30)), 0, 2);   /* (30, 40, 5) */
        dt_tensor *s = dt_sum(x, (int[]){0, 2}, 2, false);                                   /* (40) */
        dt_tensor *m = dt_max(x, 1, true), *am = dt_argmax(x, 1, false);                     /* (30,1,5), (30,5) */
        dt_tensor *sm = dt_softmax(x, 1);
        for (int64_t j = 0; j < 40; j++) {
            double want = 0;
            for (int64_t i = 0; i < 30; i++)
                for (int64_t k = 0; k < 5; k++) want += dt_tensor_get(x, (int64_t[]){i, j, k});
            DT_ASSERT_NEAR(dt_tensor_get(s, (int64_t[]){j}), want, 1e-4);
        }
        for (int64_t i = 0; i < 30; i++)
            for (int64_t k = 0; k < 5; k++) {
                double best = -INFINITY, z = 0;
                int64_t bi = 0;
                for (int64_t j = 0; j < 40; j++) {
                    double v = dt_tensor_get(x, (int64_t[]){i, j, k});
                    if (v > best) { best = v; bi = j; }
                }
                for (int64_t j = 0; j < 40; j++) z += exp(dt_tensor_get(x, (int64_t[]){i, j, k}) - best);
                DT_ASSERT_NEAR(dt_tensor_get(m, (int64_t[]){i, 0, k}), best, 0);
                DT_ASSERT_EQ(dt_tensor_get(am, (int64_t[]){i, k}), bi);
                DT_ASSERT_NEAR(dt_tensor_get(sm, (int64_t[]){i, 3, k}), exp(dt_tensor_get(x, (int64_t[]){i, 3, k}) - best) / z, 1e-6);
            }
        /* first maximum wins ties, NaN propagates */
        float tie[4] = {1, 3, 3, 2};
        dt_tensor *t = dt_from_buffer(tie, DT_F32, DT_SHAPE(4));
        DT_ASSERT_EQ(dt_tensor_item(dt_argmax(t, 0, false)), 1);
        tie[2] = NAN;
        DT_ASSERT(isnan(dt_tensor_item(dt_max(t, 0, false))));
    }
}

/* C = A @ B against the triple loop, for (batch, m, k, n) and both operands' layouts. */
static void check_matmul(dt_tensor *a, dt_tensor *b)
{
    dt_tensor *c = dt_matmul(a, b);
    DT_ASSERT_MSG(c, "%s", dt_last_error());
    int na = dt_tensor_ndim(a), nb = dt_tensor_ndim(b), nc = dt_tensor_ndim(c);
    int64_t m = dt_tensor_size(c, -2), n = dt_tensor_size(c, -1), k = dt_tensor_size(a, -1);
    int64_t batch = dt_tensor_numel(c) / (m * n);
    for (int64_t p = 0; p < batch; p += 3)
        for (int64_t i = 0; i < m; i += 5)
            for (int64_t j = 0; j < n; j += 7) {
                int64_t ic[DT_MAX_DIMS], ia[DT_MAX_DIMS], ib[DT_MAX_DIMS], r = p;
                for (int d = nc - 3; d >= 0; d--) { ic[d] = r % dt_tensor_size(c, d); r /= dt_tensor_size(c, d); }
                for (int d = 0; d < na - 2; d++) { int dc = d + nc - na; ia[d] = dt_tensor_size(a, d) == 1 ? 0 : ic[dc]; }
                for (int d = 0; d < nb - 2; d++) { int dc = d + nc - nb; ib[d] = dt_tensor_size(b, d) == 1 ? 0 : ic[dc]; }
                double want = 0;
                for (int64_t q = 0; q < k; q++) {
                    ia[na - 2] = i; ia[na - 1] = q;
                    ib[nb - 2] = q; ib[nb - 1] = j;
                    want += dt_tensor_get(a, ia) * dt_tensor_get(b, ib);
                }
                ic[nc - 2] = i; ic[nc - 1] = j;
                DT_ASSERT_NEAR(dt_tensor_get(c, ic), want, 1e-4 * fmax(1, fabs(want)));
            }
}

static void t_matmul_vs_naive(void)
{
    DT_SCOPE {
        for (int la = 0; la < 4; la++)
            for (int lb = 0; lb < 4; lb++) check_matmul(operand(37, 29, la), operand(29, 41, lb));
        /* folded: batched left operand times a matrix, including a transposed right one */
        dt_tensor *x = dt_randn(&g_rng, DT_F32, DT_SHAPE(4, 6, 29));
        check_matmul(x, operand(29, 33, 0));
        check_matmul(x, operand(29, 33, 1));
        check_matmul(dt_narrow(x, 2, 3, 20), operand(20, 9, 0));     /* rows strided by 29 */
        check_matmul(dt_transpose(x, 0, 1), operand(29, 9, 0));      /* batch not foldable */
        /* batched both sides, broadcast batch dims, transposed batch operands */
        dt_tensor *b = dt_randn(&g_rng, DT_F32, DT_SHAPE(3, 1, 33, 29));
        check_matmul(dt_randn(&g_rng, DT_F32, DT_SHAPE(1, 5, 6, 33)), b);
        check_matmul(dt_transpose(dt_randn(&g_rng, DT_F32, DT_SHAPE(3, 2, 29, 6)), -1, -2), dt_transpose(b, -1, -2));
        /* f64 through dgemm */
        dt_tensor *d = dt_randn(&g_rng, DT_F64, DT_SHAPE(2, 17, 13)), *e = dt_randn(&g_rng, DT_F64, DT_SHAPE(13, 11));
        check_matmul(d, dt_transpose(dt_transpose(e, 0, 1), 0, 1));
        /* empty and k = 0 */
        dt_tensor *z = dt_matmul(dt_zeros(DT_F32, DT_SHAPE(3, 0)), dt_zeros(DT_F32, DT_SHAPE(0, 4)));
        DT_ASSERT(z && dt_tensor_numel(z) == 12 && dt_tensor_get(z, (int64_t[]){2, 3}) == 0);
        DT_ASSERT(!dt_matmul(dt_zeros(DT_F32, DT_SHAPE(3, 4)), dt_zeros(DT_F32, DT_SHAPE(5, 4))));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
        DT_ASSERT(!dt_matmul(dt_zeros(DT_I64, DT_SHAPE(3, 4)), dt_zeros(DT_I64, DT_SHAPE(4, 4))));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EDTYPE);
        /* linear = x @ w^T + b, over a 3-D input with strided rows */
        dt_tensor *w = dt_randn(&g_rng, DT_F32, DT_SHAPE(9, 20)), *bias = dt_randn(&g_rng, DT_F32, DT_SHAPE(9));
        dt_tensor *xin = dt_narrow(x, 2, 3, 20);
        dt_tensor *l = dt_linear(xin, w, bias), *r = dt_add(dt_matmul(xin, dt_transpose(w, 0, 1)), bias);
        for (int64_t i = 0; i < dt_tensor_numel(l); i++) DT_ASSERT_NEAR(at(l, i), at(r, i), 1e-5);
    }
}

/* Elementwise results, copies, fills and reductions are bitwise the same on 1 and 2 threads. */
static void t_thread_independence(void)
{
    int nt = dt_tensor_num_threads();
    dt_tensor *res[2][4];
    for (int pass = 0; pass < 2; pass++) {
        DT_ASSERT_OK(dt_tensor_set_num_threads(pass ? 2 : 1));
        DT_SCOPE {
            dt_rng g = dt_rng_make(5, 5);
            dt_tensor *a = dt_randn(&g, DT_F32, DT_SHAPE(3, 70001));   /* a few long rows: rows are cut in pieces */
            dt_tensor *b = dt_randn(&g, DT_F32, DT_SHAPE(70001));
            res[pass][0] = dt_keep(dt_tanh(dt_add(a, b)));
            res[pass][1] = dt_keep(dt_contiguous(dt_transpose(a, 0, 1)));
            res[pass][2] = dt_keep(dt_sum(a, (int[]){0}, 1, false));
            res[pass][3] = dt_keep(dt_to_dtype(a, DT_BF16));
        }
    }
    DT_ASSERT_OK(dt_tensor_set_num_threads(nt));
    for (int i = 0; i < 4; i++) {
        size_t bytes = (size_t)dt_tensor_numel(res[0][i]) * dt_dtype_size(dt_tensor_dtype(res[0][i]));
        DT_ASSERT_MSG(memcmp(dt_tensor_data(res[0][i]), dt_tensor_data(res[1][i]), bytes) == 0, "result %d differs between 1 and 2 threads", i);
        dt_tensor_release(res[0][i]);
        dt_tensor_release(res[1][i]);
    }
    DT_ASSERT_ERR(dt_tensor_set_num_threads(0), DT_EINVAL);
}

int main(void)
{
    g_rng = dt_rng_make(11, dt_rng_stream(DT_RNG_INIT, 0));
    DT_RUN(t_elementwise_vs_naive);
    DT_RUN(t_reduce_vs_naive);
    DT_RUN(t_matmul_vs_naive);
    DT_RUN(t_thread_independence);
    return DT_TEST_END();
}
