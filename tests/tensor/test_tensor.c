/* The tensor layer: creation, accessors, views sharing storage, the scope rule and
 * refcounts (no leak, no double free), copies and casts between every dtype pair,
 * borrowed buffers, the Philox generator (known-answer vectors from Random123) and
 * its fills, thread-count independence, and allocation failures in the constructors. */
#include "dt_test.h"

static int64_t mem_now(void)
{
    dt_mem_stats s;
    dt_mem_get_stats(&s);
    return s.total_current;
}

static void t_create(void)
{
    DT_SCOPE {
        dt_tensor *z = dt_zeros(DT_F32, DT_SHAPE(2, 3));
        DT_ASSERT(z);
        DT_ASSERT_EQ(dt_tensor_ndim(z), 2);
        DT_ASSERT_EQ(dt_tensor_numel(z), 6);
        DT_ASSERT_EQ(dt_tensor_size(z, -1), 3);
        DT_ASSERT_EQ(dt_tensor_strides(z)[0], 3);
        DT_ASSERT(dt_tensor_is_contiguous(z));
        DT_ASSERT_EQ((uintptr_t)dt_tensor_data(z) % 64, 0);
        for (int i = 0; i < 6; i++) DT_ASSERT_EQ(dt_tensor_data_f32(z)[i], 0);
        dt_tensor *o = dt_full(DT_I64, DT_SHAPE(4), 7);
        DT_ASSERT_EQ(dt_tensor_get(o, (int64_t[]){3}), 7);
        dt_tensor *a = dt_arange(DT_F64, 0, 1, 0.25);
        DT_ASSERT_EQ(dt_tensor_numel(a), 4);
        DT_ASSERT_NEAR(dt_tensor_get(a, (int64_t[]){3}), 0.75, 0);
        dt_tensor *s = dt_scalar(DT_BF16, 1.5);
        DT_ASSERT_EQ(dt_tensor_ndim(s), 0);
        DT_ASSERT_NEAR(dt_tensor_item(s), 1.5, 0);
        DT_ASSERT(!dt_zeros(DT_F32, DT_SHAPE(2, -1)));
        DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
        DT_ASSERT(!dt_empty(DT_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}));
        DT_ASSERT(!dt_arange(DT_F32, 0, 1, 0));
        char buf[64];
        DT_ASSERT_STREQ(dt_tensor_describe(z, buf, sizeof buf), "f32[2, 3]");
        dt_tensor *e = dt_zeros(DT_F32, DT_SHAPE(0, 5));
        DT_ASSERT(e && dt_tensor_numel(e) == 0);
    }
}

static void t_scope_rule(void)
{
    int64_t base = mem_now();
    dt_tensor *kept = NULL, *outer = NULL;
    DT_SCOPE {
        dt_tensor *a = dt_ones(DT_F32, DT_SHAPE(100));
        DT_ASSERT_EQ(dt_scope_depth(), 1);
        DT_SCOPE {
            DT_ASSERT_EQ(dt_scope_depth(), 2);
            dt_tensor *b = dt_add(a, a);
            outer = dt_keep(b);   /* to the outer scope */
            (void)dt_mul(b, b);   /* freed at the inner end */
        }
        DT_ASSERT_NEAR(dt_tensor_data_f32(outer)[5], 2, 0);
        kept = dt_keep(dt_mul_scalar(outer, 3));   /* out of every scope: ours */
    }
    DT_ASSERT_EQ(dt_scope_depth(), 0);
    DT_ASSERT(kept);
    DT_ASSERT_NEAR(dt_tensor_data_f32(kept)[99], 6, 0);
    DT_ASSERT(dt_keep(kept) == kept);   /* no scope holds it: unchanged */
    dt_tensor_release(kept);
    DT_ASSERT_EQ(mem_now(), base);

    /* begin/end with early exit, and end() closing several levels at once */
    int t1 = dt_scope_begin();
    (void)dt_zeros(DT_F32, DT_SHAPE(10));
    int t2 = dt_scope_begin();
    (void)dt_zeros(DT_F32, DT_SHAPE(10));
    DT_ASSERT_EQ(t2, t1 + 1);
    dt_scope_end(t1);
    DT_ASSERT_EQ(dt_scope_depth(), 0);
    dt_scope_end(t1);   /* not open: no-op */
    DT_ASSERT_EQ(mem_now(), base);

    /* retain inside a scope survives it; the caller releases the extra reference */
    dt_tensor *r = NULL;
    DT_SCOPE { r = dt_tensor_retain(dt_ones(DT_F64, DT_SHAPE(3))); }
    DT_ASSERT_NEAR(dt_tensor_data_f64(r)[2], 1, 0);
    dt_tensor_release(r);
    /* discard of a scoped tensor: the scope must not release it again */
    DT_SCOPE { dt_tensor_discard(dt_ones(DT_F32, DT_SHAPE(3))); }
    DT_ASSERT_EQ(mem_now(), base);
    /* too deep */
    int toks[70], n = 0, last = 0;
    for (int i = 0; i < 70; i++) { toks[n] = dt_scope_begin(); if (toks[n] > 0) last = toks[n], n++; }
    DT_ASSERT_EQ(last, 64);
    DT_ASSERT_EQ(dt_scope_begin(), DT_ERANGE);
    dt_scope_end(toks[0]);
    DT_ASSERT_EQ(dt_scope_depth(), 0);
}

static void t_views(void)
{
    DT_SCOPE {
        dt_tensor *a = dt_arange(DT_F32, 0, 24, 1);
        dt_tensor *v = dt_view(a, DT_SHAPE(2, 3, 4));
        DT_ASSERT(dt_tensor_same_storage(a, v));
        DT_ASSERT_EQ(dt_tensor_get(v, (int64_t[]){1, 2, 3}), 23);
        dt_tensor *t = dt_transpose(v, 0, 2);   /* (4, 3, 2) */
        DT_ASSERT_EQ(dt_tensor_size(t, 0), 4);
        DT_ASSERT(!dt_tensor_is_contiguous(t));
        DT_ASSERT_EQ(dt_tensor_get(t, (int64_t[]){3, 2, 1}), 23);
        DT_ASSERT(!dt_view(t, DT_SHAPE(24)));
        DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
        dt_tensor *r = dt_reshape(t, DT_SHAPE(-1));
        DT_ASSERT(r && !dt_tensor_same_storage(r, a));
        DT_ASSERT_EQ(dt_tensor_get(r, (int64_t[]){1}), 12);
        dt_tensor *p = dt_permute(v, (int[]){1, 2, 0});   /* (3, 4, 2) */
        DT_ASSERT_EQ(dt_tensor_get(p, (int64_t[]){2, 1, 1}), 12 + 8 + 1);
        dt_tensor *n = dt_narrow(v, 2, 1, 2);             /* (2, 3, 2) */
        DT_ASSERT_EQ(dt_tensor_get(n, (int64_t[]){1, 1, 0}), 12 + 4 + 1);
        dt_tensor *nv = dt_view(n, DT_SHAPE(6, 2));       /* narrow on the last dim still views */
        DT_ASSERT(nv && dt_tensor_same_storage(nv, a));
        dt_tensor *s = dt_slice(a, 0, -5, 100, 2);        /* 19, 21, 23 */
        DT_ASSERT_EQ(dt_tensor_numel(s), 3);
        DT_ASSERT_EQ(dt_tensor_get(s, (int64_t[]){2}), 23);
        dt_tensor *e = dt_expand(dt_view(a, DT_SHAPE(1, 24)), DT_SHAPE(5, -1));
        DT_ASSERT_EQ(dt_tensor_strides(e)[0], 0);
        DT_ASSERT_EQ(dt_tensor_get(e, (int64_t[]){4, 7}), 7);
        DT_ASSERT(!dt_expand(a, DT_SHAPE(2, 25)));
        dt_tensor *u = dt_unsqueeze(a, 0);
        DT_ASSERT_EQ(dt_tensor_ndim(u), 2);
        dt_tensor *q = dt_squeeze(u, 0);
        DT_ASSERT_EQ(dt_tensor_ndim(q), 1);
        DT_ASSERT(!dt_squeeze(v, 0));
        dt_tensor *f = dt_flatten(v, 1, 2);
        DT_ASSERT_EQ(dt_tensor_size(f, 1), 12);
        dt_tensor *c = dt_contiguous(t);
        DT_ASSERT(dt_tensor_is_contiguous(c));
        DT_ASSERT_EQ(dt_tensor_get(c, (int64_t[]){3, 2, 1}), 23);
        dt_tensor *parts[4];
        DT_ASSERT_EQ(dt_split(a, 10, 0, parts, 4), 3);
        DT_ASSERT_EQ(dt_tensor_numel(parts[2]), 4);
        DT_ASSERT_EQ(dt_split(a, 1, 0, parts, 4), DT_ERANGE);
        dt_tensor *cat = dt_cat(parts, 3, 0);
        DT_ASSERT_EQ(dt_tensor_numel(cat), 24);
        DT_ASSERT_EQ(dt_tensor_get(cat, (int64_t[]){23}), 23);
    }
}

static void t_copy_cast(void)
{
    DT_SCOPE {
        const double vals[6] = {-2.75, -1, 0, 1.5, 3, 200.25};
        dt_tensor *src = dt_empty(DT_F64, DT_SHAPE(6));
        DT_ASSERT_OK(dt_tensor_write(src, vals, 6));
        for (int to = 0; to < DT_DTYPE_COUNT; to++) {
            dt_tensor *c = dt_to_dtype(src, (dt_dtype)to);
            DT_ASSERT(c);
            for (int i = 0; i < 6; i++) {
                double want = vals[i];
                if (!dt_dtype_is_float((dt_dtype)to)) want = (double)(int64_t)vals[i];
                if (to == DT_U8) want = (double)(uint8_t)(int64_t)vals[i];
                if (to == DT_BF16) want = dt_bf16_to_f32(dt_f32_to_bf16((float)vals[i]));
                DT_ASSERT_NEAR(dt_tensor_get(c, (int64_t[]){i}), want, 0);
            }
            dt_tensor *back = dt_to_dtype(c, DT_F64);
            DT_ASSERT(back);
        }
        /* strided copy with broadcasting */
        dt_tensor *dst = dt_zeros(DT_F32, DT_SHAPE(3, 4));
        dt_tensor *row = dt_arange(DT_F32, 0, 4, 1);
        DT_ASSERT_OK(dt_tensor_copy_(dt_transpose(dst, 0, 1), dt_unsqueeze(dt_arange(DT_F32, 0, 4, 1), 1)));
        DT_ASSERT_EQ(dt_tensor_get(dst, (int64_t[]){2, 3}), 3);
        DT_ASSERT_OK(dt_tensor_copy_(dst, row));
        DT_ASSERT_EQ(dt_tensor_get(dst, (int64_t[]){2, 1}), 1);
        DT_ASSERT_ERR(dt_tensor_copy_(dst, dt_zeros(DT_F32, DT_SHAPE(5))), DT_ESHAPE);
        DT_ASSERT_OK(dt_tensor_fill(dst, -0.5));
        float out[12];
        DT_ASSERT_OK(dt_tensor_read(dst, out, 12));
        DT_ASSERT_NEAR(out[11], -0.5, 0);
        DT_ASSERT_ERR(dt_tensor_read(dst, out, 11), DT_ESHAPE);
    }
}

static void t_borrowed(void)
{
    int64_t base = mem_now();
    float *flat = dt_calloc(10, sizeof(float), DT_MEM_PARAM);
    DT_SCOPE {
        dt_tensor *w = dt_from_buffer(flat, DT_F32, DT_SHAPE(2, 3));
        dt_tensor *b = dt_from_buffer(flat + 6, DT_F32, DT_SHAPE(4));
        DT_ASSERT_OK(dt_tensor_fill(w, 1));
        DT_ASSERT_OK(dt_tensor_fill(b, 2));
        DT_ASSERT_NEAR(flat[5], 1, 0);
        DT_ASSERT_NEAR(flat[9], 2, 0);
        DT_ASSERT(!dt_from_buffer(NULL, DT_F32, DT_SHAPE(2)));
    }
    DT_ASSERT_NEAR(flat[0], 1, 0);   /* not freed by us */
    dt_free(flat);
    DT_ASSERT_EQ(mem_now(), base);
}

static void t_mem_category(void)
{
    dt_mem_stats a, b;
    dt_mem_get_stats(&a);
    dt_mem_cat old = dt_tensor_set_mem_cat(DT_MEM_PARAM);
    dt_tensor *p = dt_zeros(DT_F32, DT_SHAPE(1000));
    dt_tensor_set_mem_cat(old);
    dt_mem_get_stats(&b);
    DT_ASSERT(b.current[DT_MEM_PARAM] - a.current[DT_MEM_PARAM] >= 4000);
    DT_ASSERT_EQ(b.current[DT_MEM_ACT], a.current[DT_MEM_ACT]);
    dt_tensor_release(p);
}

/* Random123 kat_vectors for philox4x32_10. */
static void t_philox_kat(void)
{
    static const uint32_t cases[3][3][4] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}, {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (int c = 0; c < 3; c++) {
        uint32_t out[4];
        dt_philox4x32(cases[c][1], cases[c][0], out);
        for (int i = 0; i < 4; i++) DT_ASSERT_MSG(out[i] == cases[c][2][i], "case %d word %d: %08x != %08x", c, i, out[i], cases[c][2][i]);
    }
}

static void t_rng_fills(void)
{
    DT_SCOPE {
        dt_rng g = dt_rng_make(42, dt_rng_stream(DT_RNG_INIT, 0));
        dt_tensor *u = dt_rand(&g, DT_F32, DT_SHAPE(100000));
        DT_ASSERT_EQ(g.offset, 25000);
        double sum = 0, mn = 1, mx = 0;
        const float *p = dt_tensor_data_f32(u);
        for (int i = 0; i < 100000; i++) { sum += p[i]; mn = fmin(mn, p[i]); mx = fmax(mx, p[i]); }
        DT_ASSERT_NEAR(sum / 100000, 0.5, 0.01);
        DT_ASSERT(mn >= 0 && mx < 1);
        dt_tensor *n = dt_randn(&g, DT_F64, DT_SHAPE(100001));
        double s1 = 0, s2 = 0;
        const double *q = dt_tensor_data_f64(n);
        for (int i = 0; i < 100001; i++) { s1 += q[i]; s2 += q[i] * q[i]; }
        DT_ASSERT_NEAR(s1 / 100001, 0, 0.02);
        DT_ASSERT_NEAR(s2 / 100001, 1, 0.02);
        /* same key, same numbers; other stream, other numbers; threads do not matter */
        dt_rng g1 = dt_rng_make(7, 3), g2 = dt_rng_make(7, 3), g3 = dt_rng_make(7, 4);
        dt_tensor *a = dt_randn(&g1, DT_F32, DT_SHAPE(70001));
        int nt = dt_tensor_num_threads();
        DT_ASSERT_OK(dt_tensor_set_num_threads(nt == 1 ? 2 : 1));
        dt_tensor *b = dt_randn(&g2, DT_F32, DT_SHAPE(70001));
        DT_ASSERT_OK(dt_tensor_set_num_threads(nt));
        dt_tensor *c = dt_randn(&g3, DT_F32, DT_SHAPE(70001));
        DT_ASSERT(memcmp(dt_tensor_data(a), dt_tensor_data(b), 70001 * 4) == 0);
        DT_ASSERT(memcmp(dt_tensor_data(a), dt_tensor_data(c), 70001 * 4) != 0);
        /* a fill in two halves equals one fill (the offset advances by whole blocks) */
        dt_rng h1 = dt_rng_make(9, 1), h2 = dt_rng_make(9, 1);
        dt_tensor *whole = dt_rand(&h1, DT_F32, DT_SHAPE(16));
        dt_tensor *x = dt_rand(&h2, DT_F32, DT_SHAPE(8)), *y = dt_rand(&h2, DT_F32, DT_SHAPE(8));
        DT_ASSERT(memcmp(dt_tensor_data(whole), dt_tensor_data(x), 32) == 0);
        DT_ASSERT(memcmp((float *)dt_tensor_data(whole) + 8, dt_tensor_data(y), 32) == 0);
        dt_tensor *ri = dt_rand_int(&g, -3, 5, DT_I64, DT_SHAPE(1000));
        int seen[8] = {0};
        for (int i = 0; i < 1000; i++) {
            int64_t v = ((int64_t *)dt_tensor_data(ri))[i];
            DT_ASSERT(v >= -3 && v < 5);
            seen[v + 3]++;
        }
        for (int i = 0; i < 8; i++) DT_ASSERT(seen[i] > 60);
        DT_ASSERT(!dt_rand_int(&g, 5, 5, DT_I64, DT_SHAPE(2)));
        DT_ASSERT_ERR(dt_tensor_uniform_(ri, &g, 0, 1), DT_EDTYPE);
        dt_tensor *bf = dt_randn(&g, DT_BF16, DT_SHAPE(9));
        DT_ASSERT(bf && dt_tensor_dtype(bf) == DT_BF16);
    }
}

/* Every constructor fails cleanly at each of its allocations. */
static void t_alloc_failures(void)
{
    int64_t base = mem_now();
    for (int which = 0; which < 6; which++) {
        for (int64_t k = 1; k < 40; k++) {
            int tok = dt_scope_begin();
            dt_tensor *a = dt_ones(DT_F32, DT_SHAPE(3, 4));
            dt_tensor *b = dt_arange(DT_F32, 0, 4, 1);
            DT_ASSERT(a && b);
            dt_alloc_fail_at(k);
            dt_tensor *r = NULL;
            dt_rng g = dt_rng_make(1, 1);
            switch (which) {
            case 0: r = dt_zeros(DT_BF16, DT_SHAPE(5, 5)); break;
            case 1: r = dt_add(a, b); break;
            case 2: r = dt_to_dtype(a, DT_F16); break;
            case 3: r = dt_randn(&g, DT_F32, DT_SHAPE(7)); break;
            case 4: r = dt_reshape(dt_transpose(a, 0, 1), DT_SHAPE(12)); break;
            case 5: r = dt_sum(dt_matmul(a, dt_transpose(a, 0, 1)), NULL, 0, false); break;
            }
            int64_t used = dt_alloc_count_since_arm();
            dt_alloc_fail_at(0);
            if (!r) DT_ASSERT_EQ(dt_last_error_code(), DT_ENOMEM);
            dt_scope_end(tok);
            DT_ASSERT_EQ(mem_now(), base);
            if (r && used < k) break;   /* succeeded without reaching the k-th allocation */
        }
    }
}

int main(void)
{
    DT_RUN(t_create);
    DT_RUN(t_scope_rule);
    DT_RUN(t_views);
    DT_RUN(t_copy_cast);
    DT_RUN(t_borrowed);
    DT_RUN(t_mem_category);
    DT_RUN(t_philox_kat);
    DT_RUN(t_rng_fills);
    DT_RUN(t_alloc_failures);
    return DT_TEST_END();
}
