/* The GPT's functional ops beyond gradients: fused sdpa against the composed ops it
 * replaces (matmul, masked_fill with the causal mask, softmax) in f32, forward and
 * grads; layer_norm against its composed formula; dropout's statistics, determinism
 * (same seed, 1 vs 2 threads), the documented mask rule and eval mode; results that
 * do not depend on the thread count (or only by rounding, through OpenBLAS); bf16; error cases; and every allocation of a
 * forward + backward failing in turn. */
#include "dt_test.h"

static int64_t mem_now(void)
{
    dt_mem_stats s;
    dt_mem_get_stats(&s);
    return s.total_current;
}

/* A f32 leaf, N(0, 1) * sd, requiring grad. */
static dt_tensor *leaf(dt_rng *g, dt_dtype dt, int ndim, const int64_t *shape, double sd)
{
    dt_tensor *t = dt_detach(dt_mul_scalar(dt_randn(g, dt, ndim, shape), sd));
    if (t) dt_tensor_set_requires_grad(t, true);
    return t;
}

/* max |a - b| / max(1, max |b|), in f64. */
static double rel_err(dt_tensor *a, dt_tensor *b)
{
    if (!a || !b || dt_tensor_numel(a) != dt_tensor_numel(b)) return INFINITY;
    dt_tensor *x = dt_contiguous(dt_to_dtype(a, DT_F64)), *y = dt_contiguous(dt_to_dtype(b, DT_F64));
    const double *p = dt_tensor_data_f64(x), *q = dt_tensor_data_f64(y);
    double worst = 0, scale = 1;
    for (int64_t i = 0; i < dt_tensor_numel(x); i++) {
        scale = fmax(scale, fabs(q[i]));
        double d = fabs(p[i] - q[i]);
        if (!(d <= worst)) worst = d;
    }
    return worst / scale;
}

static bool bit_equal(dt_tensor *a, dt_tensor *b)
{
    if (!a || !b || dt_tensor_numel(a) != dt_tensor_numel(b) || dt_tensor_dtype(a) != dt_tensor_dtype(b)) return false;
    dt_tensor *x = dt_contiguous(a), *y = dt_contiguous(b);
    return memcmp(dt_tensor_data(x), dt_tensor_data(y), (size_t)dt_tensor_numel(x) * dt_dtype_size(dt_tensor_dtype(x))) == 0;
}

/* The reference GPT's attention: (q @ k^T) / sqrt(E), masked_fill(triu(ones, 1), -inf),
 * softmax(-1), @ v. */
static dt_tensor *composed_attention(dt_tensor *q, dt_tensor *k, dt_tensor *v, bool causal)
{
    int64_t E = dt_tensor_size(q, -1), L = dt_tensor_size(q, -2);
    dt_tensor *att = dt_div_scalar(dt_matmul(q, dt_transpose(k, -2, -1)), sqrt((double)E));
    if (causal) att = dt_masked_fill(att, dt_causal_mask(L), -INFINITY);
    return dt_matmul(dt_softmax(att, -1), v);
}

/* Fused vs composed on the same leaves: out, then grads of sum(out * w). */
static void compare_attention(int nd, const int64_t *qs, const int64_t *ks, const int64_t *vs, bool causal, double tol)
{
    dt_rng g = dt_rng_make(31, 0);
    dt_tensor *q = leaf(&g, DT_F32, nd, qs, 1), *k = leaf(&g, DT_F32, nd, ks, 1), *v = leaf(&g, DT_F32, nd, vs, 1);
    dt_tensor *got[4], *want[4];
    for (int pass = 0; pass < 2; pass++) {
        dt_tensor **r = pass ? want : got;
        dt_tensor_set_grad_buffer(q, NULL);
        dt_tensor_set_grad_buffer(k, NULL);
        dt_tensor_set_grad_buffer(v, NULL);
        r[0] = pass ? composed_attention(q, k, v, causal) : dt_sdpa(q, k, v, causal, 0);
        DT_ASSERT_MSG(r[0], "%s: %s", pass ? "composed" : "sdpa", dt_last_error());
        dt_rng gw = dt_rng_make(32, 0);
        DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(r[0], dt_randn(&gw, DT_F32, dt_tensor_ndim(r[0]), dt_tensor_shape(r[0]))), NULL, 0, false)));
        r[1] = dt_mul_scalar(dt_tensor_grad(q), 1);   /* copies: the next pass replaces the grads */
        r[2] = dt_mul_scalar(dt_tensor_grad(k), 1);
        r[3] = dt_mul_scalar(dt_tensor_grad(v), 1);
    }
    const char *what[4] = {"out", "dq", "dk", "dv"};
    for (int i = 0; i < 4; i++) {
        double e = rel_err(got[i], want[i]);
        DT_ASSERT_MSG(e <= tol, "%s (causal %d): relative error %g > %g", what[i], causal, e, tol);
    }
}

static void t_sdpa_vs_composed(void)
{
    DT_SCOPE {
        /* the GPT's shape, small: (B, H, T, hd) */
        compare_attention(4, (int64_t[]){2, 4, 32, 16}, (int64_t[]){2, 4, 32, 16}, (int64_t[]){2, 4, 32, 16}, true, 1e-6);
        compare_attention(4, (int64_t[]){2, 4, 32, 16}, (int64_t[]){2, 4, 32, 16}, (int64_t[]){2, 4, 32, 16}, false, 1e-6);
        /* L != S, Ev != E, one batch dim, non-causal */
        compare_attention(3, (int64_t[]){3, 7, 8}, (int64_t[]){3, 11, 8}, (int64_t[]){3, 11, 5}, false, 1e-6);
        /* no batch dims, T = 128 as in the job */
        compare_attention(2, (int64_t[]){128, 32}, (int64_t[]){128, 32}, (int64_t[]){128, 32}, true, 1e-6);
    }
}

/* The job's block: qkv = linear(x), split, view, transpose; sdpa on the views. */
static void t_sdpa_gpt_views_vs_composed(void)
{
    DT_SCOPE {
        dt_rng g = dt_rng_make(33, 0);
        int64_t B = 2, T = 16, C = 32, H = 4;
        dt_tensor *x = leaf(&g, DT_F32, DT_SHAPE(B, T, C), 1), *w = leaf(&g, DT_F32, DT_SHAPE(3 * C, C), 0.2);
        dt_tensor *got[3], *want[3];
        for (int pass = 0; pass < 2; pass++) {
            dt_tensor **r = pass ? want : got;
            dt_tensor_set_grad_buffer(x, NULL);
            dt_tensor_set_grad_buffer(w, NULL);
            dt_tensor *qkv[3];
            DT_ASSERT_EQ(dt_split(dt_linear(x, w, NULL), C, 2, qkv, 3), 3);
            for (int i = 0; i < 3; i++) qkv[i] = dt_transpose(dt_view(qkv[i], DT_SHAPE(B, T, H, C / H)), 1, 2);
            DT_ASSERT(!dt_tensor_is_contiguous(qkv[0]));
            dt_tensor *y = pass ? composed_attention(qkv[0], qkv[1], qkv[2], true) : dt_sdpa(qkv[0], qkv[1], qkv[2], true, 0);
            r[0] = dt_reshape(dt_transpose(y, 1, 2), DT_SHAPE(B, T, C));
            DT_ASSERT(r[0]);
            dt_rng gw = dt_rng_make(34, 0);
            DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(r[0], dt_randn(&gw, DT_F32, DT_SHAPE(B, T, C))), NULL, 0, false)));
            r[1] = dt_mul_scalar(dt_tensor_grad(x), 1);
            r[2] = dt_mul_scalar(dt_tensor_grad(w), 1);
        }
        for (int i = 0; i < 3; i++) {
            double e = rel_err(got[i], want[i]);
            DT_ASSERT_MSG(e <= 1e-6, "tensor %d: relative error %g", i, e);
        }
    }
}

/* An explicit scale is the scores' factor; 0 means 1/sqrt(E). */
static void t_sdpa_scale(void)
{
    DT_SCOPE {
        dt_rng g = dt_rng_make(35, 0);
        dt_tensor *q = dt_randn(&g, DT_F64, DT_SHAPE(2, 5, 4)), *k = dt_randn(&g, DT_F64, DT_SHAPE(2, 6, 4)), *v = dt_randn(&g, DT_F64, DT_SHAPE(2, 6, 3));
        dt_tensor *a = dt_sdpa(q, k, v, false, 0.5);
        dt_tensor *b = dt_matmul(dt_softmax(dt_mul_scalar(dt_matmul(q, dt_transpose(k, 1, 2)), 0.5), -1), v);
        DT_ASSERT(rel_err(a, b) <= 1e-14);
        dt_tensor *c = dt_sdpa(q, k, v, false, 0), *d = dt_sdpa(q, k, v, false, 0.5);   /* 1/sqrt(4) */
        DT_ASSERT(bit_equal(c, d));
        /* causal with L != S: keys j > i left out (the top-left triangle) */
        dt_tensor *mask = dt_zeros(DT_U8, DT_SHAPE(5, 6));
        for (int64_t i = 0; i < 5; i++)
            for (int64_t j = i + 1; j < 6; j++) DT_ASSERT_OK(dt_tensor_copy_(dt_narrow(dt_narrow(mask, 0, i, 1), 1, j, 1), dt_scalar(DT_U8, 1)));
        dt_tensor *e = dt_sdpa(q, k, v, true, 0);
        dt_tensor *f = dt_matmul(dt_softmax(dt_masked_fill(dt_mul_scalar(dt_matmul(q, dt_transpose(k, 1, 2)), 0.5), mask, -INFINITY), -1), v);
        DT_ASSERT(rel_err(e, f) <= 1e-14);
    }
}

static void t_sdpa_bf16(void)
{
    DT_SCOPE {
        dt_rng g = dt_rng_make(36, 0);
        dt_tensor *q = leaf(&g, DT_BF16, DT_SHAPE(2, 9, 8), 1), *k = leaf(&g, DT_BF16, DT_SHAPE(2, 9, 8), 1), *v = leaf(&g, DT_BF16, DT_SHAPE(2, 9, 8), 1);
        dt_tensor *y = dt_sdpa(q, k, v, true, 0);
        DT_ASSERT(y && dt_tensor_dtype(y) == DT_BF16);
        dt_tensor *y32 = dt_sdpa(dt_to_dtype(q, DT_F32), dt_to_dtype(k, DT_F32), dt_to_dtype(v, DT_F32), true, 0);
        DT_ASSERT(rel_err(y, y32) <= 1e-2);
        DT_ASSERT_OK(dt_backward(dt_sum(y, NULL, 0, false)));
        DT_ASSERT(dt_tensor_grad(q) && dt_tensor_dtype(dt_tensor_grad(q)) == DT_BF16);
        dt_tensor *x = leaf(&g, DT_BF16, DT_SHAPE(4, 16), 1);
        dt_tensor *n = dt_layer_norm(x, 1, NULL, NULL, 1e-5);
        DT_ASSERT(n && dt_tensor_dtype(n) == DT_BF16);
        DT_ASSERT(rel_err(n, dt_layer_norm(dt_to_dtype(x, DT_F32), 1, NULL, NULL, 1e-5)) <= 1e-2);
        DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(n, n), NULL, 0, false)));
        DT_ASSERT(dt_tensor_grad(x) && dt_tensor_dtype(dt_tensor_grad(x)) == DT_BF16);
        dt_tensor *d = dt_dropout(x, 0.5, true, &g);
        DT_ASSERT(d && dt_tensor_dtype(d) == DT_BF16);
    }
}

/* layer_norm = (x - mean) / sqrt(var + eps) * w + b, composed from the autograd ops. */
static void t_layer_norm_vs_composed(void)
{
    DT_SCOPE {
        dt_rng g = dt_rng_make(37, 0);
        dt_tensor *x = leaf(&g, DT_F64, DT_SHAPE(3, 40, 6), 2), *w = leaf(&g, DT_F64, DT_SHAPE(40, 6), 1), *b = leaf(&g, DT_F64, DT_SHAPE(40, 6), 1);
        dt_tensor *got[4], *want[4];
        for (int pass = 0; pass < 2; pass++) {
            dt_tensor **r = pass ? want : got;
            dt_tensor_set_grad_buffer(x, NULL);
            dt_tensor_set_grad_buffer(w, NULL);
            dt_tensor_set_grad_buffer(b, NULL);
            if (pass) {
                int dims[2] = {1, 2};
                dt_tensor *mean = dt_mean(x, dims, 2, true);
                dt_tensor *c = dt_sub(x, mean);
                dt_tensor *var = dt_mean(dt_mul(c, c), dims, 2, true);
                r[0] = dt_add(dt_mul(dt_div(c, dt_sqrt(dt_add_scalar(var, 1e-5))), w), b);
            } else {
                r[0] = dt_layer_norm(x, 2, w, b, 1e-5);
            }
            DT_ASSERT(r[0]);
            dt_rng gw = dt_rng_make(38, 0);
            DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(r[0], dt_randn(&gw, DT_F64, DT_SHAPE(3, 40, 6))), NULL, 0, false)));
            r[1] = dt_mul_scalar(dt_tensor_grad(x), 1);
            r[2] = dt_mul_scalar(dt_tensor_grad(w), 1);
            r[3] = dt_mul_scalar(dt_tensor_grad(b), 1);
        }
        for (int i = 0; i < 4; i++) {
            double e = rel_err(got[i], want[i]);
            DT_ASSERT_MSG(e <= 1e-12, "tensor %d: relative error %g", i, e);
        }
    }
}

/* Forward + backward results of every op at 1, 2 and 4 threads. layer_norm, embedding
 * and dropout are our own kernels: bit for bit the same. sdpa's GEMMs are OpenBLAS's,
 * whose sums change with its thread count (dt_matmul's too): the same at the same
 * count, and within rounding across counts. */
static void run_all(dt_tensor **res)
{
    dt_rng g = dt_rng_make(39, 0);
    dt_tensor *x = leaf(&g, DT_F32, DT_SHAPE(300, 64), 1), *w = leaf(&g, DT_F32, DT_SHAPE(64), 1), *b = leaf(&g, DT_F32, DT_SHAPE(64), 1);
    dt_tensor *emb = leaf(&g, DT_F32, DT_SHAPE(50, 64), 1);
    dt_tensor *ids = dt_rand_int(&g, 0, 50, DT_I64, DT_SHAPE(300));
    dt_tensor *q = leaf(&g, DT_F32, DT_SHAPE(3, 4, 24, 16), 1), *k = leaf(&g, DT_F32, DT_SHAPE(3, 4, 24, 16), 1), *v = leaf(&g, DT_F32, DT_SHAPE(3, 4, 24, 16), 1);
    dt_rng gd = dt_rng_make(40, dt_rng_stream(DT_RNG_DROPOUT, 0));
    dt_tensor *h = dt_add(dt_layer_norm(x, 1, w, b, 1e-5), dt_embedding(emb, ids));
    h = dt_dropout(h, 0.2, true, &gd);
    dt_tensor *a = dt_sdpa(q, k, v, true, 0);
    /* the job's size: GEMMs big enough for OpenBLAS to thread them, called from the pool */
    dt_tensor *q2 = leaf(&g, DT_F32, DT_SHAPE(2, 4, 128, 32), 1), *k2 = leaf(&g, DT_F32, DT_SHAPE(2, 4, 128, 32), 1);
    dt_tensor *a2 = dt_sdpa(q2, k2, k2, true, 0);
    res[0] = h;
    res[1] = a;
    res[2] = a2;
    dt_tensor *loss = dt_add(dt_add(dt_sum(dt_mul(h, h), NULL, 0, false), dt_sum(dt_mul(a, a), NULL, 0, false)),
                             dt_sum(dt_mul(a2, a2), NULL, 0, false));
    DT_ASSERT_OK(dt_backward(loss));
    dt_tensor *leaves[9] = {x, w, b, emb, q, k, v, q2, k2};
    for (int i = 0; i < 9; i++) res[3 + i] = dt_tensor_grad(leaves[i]);
}

static void t_thread_count_independent(void)
{
    int before = dt_tensor_num_threads();
    DT_SCOPE {
        dt_tensor *r[4][12];
        const int threads[4] = {1, 2, 4, 4};
        for (int t = 0; t < 4; t++) {
            DT_ASSERT_OK(dt_tensor_set_num_threads(threads[t]));
            run_all(r[t]);
        }
        for (int t = 1; t < 4; t++)
            for (int i = 0; i < 12; i++) {
                bool ours = i == 0 || (i >= 3 && i <= 6);
                if (ours || t == 3) DT_ASSERT_MSG(bit_equal(r[t == 3 ? 2 : 0][i], r[t][i]), "result %d differs between %d and %d threads", i, threads[t == 3 ? 2 : 0], threads[t]);
                else DT_ASSERT_MSG(rel_err(r[0][i], r[t][i]) <= 1e-6, "result %d: 1 vs %d threads: %g", i, threads[t], rel_err(r[0][i], r[t][i]));
            }
    }
    dt_tensor_set_num_threads(before);
}

static void t_dropout_statistics(void)
{
    int before = dt_tensor_num_threads();
    DT_SCOPE {
        int64_t n = 100000;
        dt_tensor *x = dt_ones(DT_F32, DT_SHAPE(n));
        const double ps[] = {0.1, 0.3, 0.5, 0.8};
        for (int c = 0; c < 4; c++) {
            double p = ps[c];
            dt_rng g = dt_rng_make(7, dt_rng_stream(DT_RNG_DROPOUT, 0));
            dt_tensor *y = dt_dropout(x, p, true, &g);
            DT_ASSERT(y);
            DT_ASSERT_EQ(g.offset, (n + 3) / 4);
            const float *py = dt_tensor_data_f32(y);
            float keep = (float)(1.0 / (1.0 - p));
            int64_t zeros = 0;
            for (int64_t i = 0; i < n; i++) {
                if (py[i] == 0) zeros++;
                else DT_ASSERT_MSG(py[i] == keep, "element %lld = %.9g, not 0 or %.9g", (long long)i, py[i], keep);
            }
            double frac = (double)zeros / (double)n, sd = sqrt(p * (1 - p) / (double)n);
            DT_ASSERT_MSG(fabs(frac - p) <= 6 * sd, "p %g: %g zeroed", p, frac);
            /* the documented rule: element i is kept iff its f32 uniform is >= p */
            dt_rng gu = dt_rng_make(7, dt_rng_stream(DT_RNG_DROPOUT, 0));
            const float *u = dt_tensor_data_f32(dt_rand(&gu, DT_F32, DT_SHAPE(n)));
            for (int64_t i = 0; i < n; i++) DT_ASSERT_MSG((py[i] != 0) == (u[i] >= p), "element %lld: uniform %.9g, p %g", (long long)i, u[i], p);
        }
        /* same seed, same mask, at 1 and 2 threads; another seed or the advanced generator, another */
        dt_tensor *m[4];
        for (int t = 0; t < 2; t++) {
            DT_ASSERT_OK(dt_tensor_set_num_threads(1 + t));
            dt_rng g = dt_rng_make(8, 2);
            m[t] = dt_dropout(x, 0.5, true, &g);
            if (t == 0) m[3] = dt_dropout(x, 0.5, true, &g);
        }
        dt_rng g9 = dt_rng_make(9, 2);
        m[2] = dt_dropout(x, 0.5, true, &g9);
        DT_ASSERT(bit_equal(m[0], m[1]));
        DT_ASSERT(!bit_equal(m[0], m[2]));
        DT_ASSERT(!bit_equal(m[0], m[3]));
        /* p = 1: zeros, and zero gradients */
        dt_tensor *xl = dt_detach(x);
        DT_ASSERT_OK(dt_tensor_set_requires_grad(xl, true));
        dt_rng g = dt_rng_make(1, 2);
        dt_tensor *z = dt_dropout(xl, 1.0, true, &g);
        DT_ASSERT(z && dt_tensor_item(dt_sum(dt_mul(z, z), NULL, 0, false)) == 0);
        DT_ASSERT_OK(dt_backward(dt_sum(z, NULL, 0, false)));
        DT_ASSERT(dt_tensor_item(dt_sum(dt_mul(dt_tensor_grad(xl), dt_tensor_grad(xl)), NULL, 0, false)) == 0);
        /* backward is the same mask and scale */
        dt_tensor_set_grad_buffer(xl, NULL);
        dt_tensor *y = dt_dropout(xl, 0.4, true, &g);
        DT_ASSERT_OK(dt_backward(dt_sum(y, NULL, 0, false)));
        DT_ASSERT(bit_equal(dt_tensor_grad(xl), dt_detach(y)));
    }
    dt_tensor_set_num_threads(before);
}

static void t_dropout_eval(void)
{
    DT_SCOPE {
        dt_rng g = dt_rng_make(3, 2);
        dt_tensor *x = leaf(&g, DT_F32, DT_SHAPE(4, 6), 1);
        uint64_t at = g.offset;
        for (int c = 0; c < 3; c++) {
            dt_tensor *xt = dt_transpose(x, 0, 1);
            /* eval (with or without a generator), and p == 0 while training */
            dt_tensor *y = c == 0 ? dt_dropout(xt, 0.5, false, NULL) : c == 1 ? dt_dropout(xt, 0.5, false, &g) : dt_dropout(xt, 0, true, &g);
            DT_ASSERT(y && y != xt && dt_tensor_same_storage(y, xt));
            DT_ASSERT(dt_tensor_offset(y) == dt_tensor_offset(xt) && memcmp(dt_tensor_strides(y), dt_tensor_strides(xt), 16) == 0);
            DT_ASSERT(bit_equal(y, xt));
            dt_tensor_set_grad_buffer(x, NULL);
            DT_ASSERT_OK(dt_backward(dt_sum(y, NULL, 0, false)));
            DT_ASSERT(bit_equal(dt_tensor_grad(x), dt_ones(DT_F32, DT_SHAPE(4, 6))));
        }
        DT_ASSERT_EQ(g.offset, at);   /* nothing drawn */
    }
    /* outside any scope the result is the caller's, and x lives on after it goes */
    dt_tensor *x = dt_ones(DT_F32, DT_SHAPE(3));
    dt_tensor *y = dt_dropout(x, 0.3, false, NULL);
    DT_ASSERT(y);
    dt_tensor_release(y);
    float back[3];
    DT_ASSERT_OK(dt_tensor_read(x, back, 3));
    DT_ASSERT(back[0] == 1 && back[2] == 1);
    dt_tensor_release(x);
}

static void t_embedding_values(void)
{
    DT_SCOPE {
        dt_rng g = dt_rng_make(41, 0);
        dt_tensor *w = leaf(&g, DT_F32, DT_SHAPE(10, 4), 1);
        int64_t idv[6] = {3, 3, 0, 9, 3, 1};
        int32_t idv32[6] = {3, 3, 0, 9, 3, 1};
        dt_tensor *ids = dt_empty(DT_I64, DT_SHAPE(2, 3)), *ids32 = dt_empty(DT_I32, DT_SHAPE(2, 3));
        DT_ASSERT_OK(dt_tensor_write(ids, idv, 6));
        DT_ASSERT_OK(dt_tensor_write(ids32, idv32, 6));
        dt_tensor *y = dt_embedding(w, ids), *y32 = dt_embedding(w, ids32);
        DT_ASSERT(y && dt_tensor_ndim(y) == 3 && dt_tensor_size(y, 0) == 2 && dt_tensor_size(y, 1) == 3 && dt_tensor_size(y, 2) == 4);
        DT_ASSERT(bit_equal(y, y32));
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 4; j++)
                DT_ASSERT(dt_tensor_get(y, (int64_t[]){i / 3, i % 3, j}) == dt_tensor_get(w, (int64_t[]){idv[i], j}));
        DT_ASSERT_OK(dt_backward(dt_sum(y, NULL, 0, false)));
        dt_tensor *gw = dt_tensor_grad(w);
        DT_ASSERT(dt_tensor_get(gw, (int64_t[]){3, 2}) == 3 && dt_tensor_get(gw, (int64_t[]){9, 0}) == 1 && dt_tensor_get(gw, (int64_t[]){2, 1}) == 0);
        /* a transposed weight (no unit stride on dim): a copy, same values */
        dt_tensor *wt = dt_contiguous(dt_transpose(w, 0, 1));
        dt_tensor *y2 = dt_embedding(dt_transpose(wt, 0, 1), ids);
        DT_ASSERT(bit_equal(y2, y));
    }
}

static void t_errors(void)
{
    DT_SCOPE {
        dt_rng g = dt_rng_make(42, 0);
        dt_tensor *w = dt_randn(&g, DT_F32, DT_SHAPE(5, 3));
        dt_tensor *bad = dt_full(DT_I64, DT_SHAPE(4), 2);
        DT_ASSERT_OK(dt_tensor_copy_(dt_narrow(bad, 0, 2, 1), dt_scalar(DT_I64, 5)));
        DT_ASSERT(!dt_embedding(w, bad));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ERANGE);
        DT_ASSERT_CONTAINS(dt_last_error(), "id 5");
        DT_ASSERT(!dt_embedding(w, dt_full(DT_I32, DT_SHAPE(2), -1)));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ERANGE);
        DT_ASSERT(!dt_embedding(w, dt_zeros(DT_F32, DT_SHAPE(2))));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EDTYPE);
        DT_ASSERT(!dt_embedding(dt_zeros(DT_F32, DT_SHAPE(5)), dt_zeros(DT_I64, DT_SHAPE(2))));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);

        dt_tensor *x = dt_randn(&g, DT_F32, DT_SHAPE(2, 3, 4));
        DT_ASSERT(!dt_layer_norm(x, 1, dt_ones(DT_F32, DT_SHAPE(3)), NULL, 1e-5));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
        DT_ASSERT(!dt_layer_norm(x, 1, NULL, dt_ones(DT_F64, DT_SHAPE(4)), 1e-5));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EDTYPE);
        DT_ASSERT(!dt_layer_norm(x, 0, NULL, NULL, 1e-5));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
        DT_ASSERT(!dt_layer_norm(x, 4, NULL, NULL, 1e-5));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
        DT_ASSERT(!dt_layer_norm(dt_zeros(DT_I64, DT_SHAPE(3)), 1, NULL, NULL, 1e-5));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EDTYPE);

        DT_ASSERT(!dt_dropout(x, 1.5, true, &g));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
        DT_ASSERT(!dt_dropout(x, NAN, false, &g));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
        DT_ASSERT(!dt_dropout(x, 0.5, true, NULL));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);

        dt_tensor *q = dt_randn(&g, DT_F32, DT_SHAPE(2, 5, 4));
        DT_ASSERT(!dt_sdpa(q, dt_randn(&g, DT_F32, DT_SHAPE(2, 5, 3)), q, false, 0));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
        DT_ASSERT(!dt_sdpa(q, q, dt_randn(&g, DT_F32, DT_SHAPE(2, 6, 4)), false, 0));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
        DT_ASSERT(!dt_sdpa(q, q, dt_randn(&g, DT_F32, DT_SHAPE(3, 5, 4)), false, 0));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
        DT_ASSERT(!dt_sdpa(q, dt_randn(&g, DT_F32, DT_SHAPE(1, 2, 5, 4)), q, false, 0));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
        DT_ASSERT(!dt_sdpa(dt_randn(&g, DT_F32, DT_SHAPE(4)), q, q, false, 0));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
        DT_ASSERT(!dt_sdpa(q, dt_to_dtype(q, DT_F64), q, false, 0));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EDTYPE);
        DT_ASSERT(!dt_sdpa(q, q, q, false, INFINITY));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);

        /* NULL inputs: NULL and an error, never a crash; a failed input's error is kept */
        dt_clear_error();
        DT_ASSERT(!dt_layer_norm(NULL, 1, NULL, NULL, 1e-5));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
        dt_clear_error();
        DT_ASSERT(!dt_embedding(NULL, bad));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
        dt_clear_error();
        DT_ASSERT(!dt_embedding(w, NULL));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
        dt_clear_error();
        DT_ASSERT(!dt_dropout(NULL, 0.5, true, &g));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
        dt_clear_error();
        DT_ASSERT(!dt_sdpa(q, NULL, q, true, 0));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
        DT_ASSERT(!dt_sdpa(dt_embedding(w, bad), q, q, true, 0));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ERANGE);
        DT_ASSERT_CONTAINS(dt_last_error(), "sdpa");

        /* empty sizes */
        dt_tensor *e = dt_sdpa(dt_zeros(DT_F32, DT_SHAPE(2, 0, 4)), dt_zeros(DT_F32, DT_SHAPE(2, 3, 4)), dt_zeros(DT_F32, DT_SHAPE(2, 3, 5)), true, 0);
        DT_ASSERT(e && dt_tensor_numel(e) == 0 && dt_tensor_size(e, 2) == 5);
        dt_tensor *z = dt_sdpa(dt_ones(DT_F32, DT_SHAPE(2, 4)), dt_zeros(DT_F32, DT_SHAPE(0, 4)), dt_zeros(DT_F32, DT_SHAPE(0, 3)), false, 0);
        DT_ASSERT(z && dt_tensor_numel(z) == 6 && dt_tensor_item(dt_sum(z, NULL, 0, false)) == 0);
        dt_tensor *en = dt_embedding(w, dt_zeros(DT_I64, DT_SHAPE(0)));
        DT_ASSERT(en && dt_tensor_numel(en) == 0 && dt_tensor_size(en, 1) == 3);
        dt_tensor *ln = dt_layer_norm(dt_zeros(DT_F32, DT_SHAPE(0, 4)), 1, NULL, NULL, 1e-5);
        DT_ASSERT(ln && dt_tensor_numel(ln) == 0);
    }
}

/* Every allocation of forward + backward through all four ops failing in turn: a
 * clean DT_ENOMEM, and all memory back once the scope ends. */
static void t_alloc_failures(void)
{
    int before = dt_tensor_num_threads();
    DT_ASSERT_OK(dt_tensor_set_num_threads(1));
    int64_t base = mem_now();
    bool finished = false;
    for (int64_t k = 1; k < 1000 && !finished; k++) {
        int tok = dt_scope_begin();
        dt_rng g = dt_rng_make(43, 0);
        dt_tensor *emb = dt_randn(&g, DT_F32, DT_SHAPE(10, 8)), *w = dt_ones(DT_F32, DT_SHAPE(8)), *b = dt_zeros(DT_F32, DT_SHAPE(8));
        dt_tensor *ids = dt_rand_int(&g, 0, 10, DT_I64, DT_SHAPE(2, 6));
        dt_tensor_set_requires_grad(emb, true);
        dt_tensor_set_requires_grad(w, true);
        dt_tensor_set_requires_grad(b, true);
        dt_alloc_fail_at(k);
        dt_tensor *h = dt_layer_norm(dt_embedding(emb, ids), 1, w, b, 1e-5);
        h = dt_dropout(h, 0.1, true, &g);
        dt_tensor *q = dt_transpose(dt_view(h, DT_SHAPE(2, 6, 2, 4)), 1, 2);
        dt_tensor *y = dt_sum(dt_sdpa(q, q, q, true, 0), NULL, 0, false);
        int rc = y ? dt_backward(y) : dt_last_error_code();
        bool done = dt_alloc_count_since_arm() < k;
        dt_alloc_fail_at(0);
        if (!done) DT_ASSERT_MSG(rc == DT_ENOMEM, "allocation %lld: rc %d (%s)", (long long)k, rc, dt_last_error());
        dt_scope_end(tok);
        DT_ASSERT_EQ(mem_now(), base);
        if (done) { DT_ASSERT_OK(rc); finished = true; }
    }
    DT_ASSERT(finished);
    dt_tensor_set_num_threads(before);
}

int main(void)
{
    DT_RUN(t_sdpa_vs_composed);
    DT_RUN(t_sdpa_gpt_views_vs_composed);
    DT_RUN(t_sdpa_scale);
    DT_RUN(t_sdpa_bf16);
    DT_RUN(t_layer_norm_vs_composed);
    DT_RUN(t_thread_count_independent);
    DT_RUN(t_dropout_statistics);
    DT_RUN(t_dropout_eval);
    DT_RUN(t_embedding_values);
    DT_RUN(t_errors);
    DT_RUN(t_alloc_failures);
    return DT_TEST_END();
}
