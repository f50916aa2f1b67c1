/* Finite-difference gradchecks (f64) of the GPT's functional ops: layer_norm (nnorm 1
 * and 2, with and without weight and bias), embedding (repeated ids, i64 and i32, any
 * idx shape), dropout (the generator re-seeded inside the closure, so every evaluation
 * draws the same mask) and sdpa (causal and not, L != S, Ev != E, no batch dims, one and
 * two, explicit scale, L and S past one 32-row block, and q/k/v as the GPT makes them: views of a split qkv). Shapes
 * are drawn at random from a fixed seed; inputs are contiguous, transposed and strided. */
#include "dt_test.h"
#include "autograd/gradcheck.h"

static dt_rng g_shapes;

static int64_t pick(int64_t lo, int64_t hi)
{
    uint32_t r;
    dt_rng_u32(&g_shapes, &r, 1);
    return lo + (int64_t)(r % (uint32_t)(hi - lo + 1));
}

/* ------------------------------------------------------------ layer_norm */
typedef struct {
    int nnorm;
    bool w, b;
} ln_ctx;

static dt_tensor *f_ln(dt_tensor *const *in, void *ctx)
{
    const ln_ctx *c = ctx;
    int i = 1;
    dt_tensor *w = c->w ? in[i++] : NULL, *b = c->b ? in[i++] : NULL;
    return dt_gc_project(dt_layer_norm(in[0], c->nnorm, w, b, 1e-5));
}

static void t_layer_norm(void)
{
    dt_rng g = dt_rng_make(11, 0);
    for (int trial = 0; trial < 16; trial++) {
        DT_SCOPE {
            ln_ctx c = {.nnorm = 1 + trial % 2, .w = (trial / 2) % 2, .b = (trial / 4) % 2};
            int64_t B = pick(1, 3), T = pick(1, 3), D = pick(3, 6);
            int64_t xs[3] = {B, T, D};
            dt_tensor *in[3];
            int n = 0;
            in[n++] = dt_gc_input(&g, 3, xs, trial % 3);
            /* the normalised shape: (D) or (T, D); w strided or transposed sometimes */
            const int64_t *ns = xs + 3 - c.nnorm;
            if (c.w) in[n++] = dt_gc_input_shift(&g, c.nnorm, ns, (trial / 3) % 3, 1.0);
            if (c.b) in[n++] = dt_gc_input(&g, c.nnorm, ns, (trial + 1) % 3);
            int rc = dt_gradcheck(f_ln, &c, in, n, (dt_gc_opts)DT_GC_OPTS_INIT);
            DT_ASSERT_MSG(rc == 0, "trial %d: x (%lld, %lld, %lld) nnorm %d w %d b %d: %s", trial, (long long)B, (long long)T,
                          (long long)D, c.nnorm, c.w, c.b, dt_last_error());
        }
    }
    /* more rows than one block of the weight and bias gradient sums */
    DT_SCOPE {
        ln_ctx c = {.nnorm = 1, .w = true, .b = true};
        dt_tensor *in[3] = {dt_gc_input(&g, DT_SHAPE(70, 3), DT_GC_TRANSPOSED), dt_gc_input_shift(&g, DT_SHAPE(3), 0, 1.0),
                            dt_gc_input(&g, DT_SHAPE(3), 0)};
        DT_ASSERT_OK(dt_gradcheck(f_ln, &c, in, 3, (dt_gc_opts)DT_GC_OPTS_INIT));
    }
    /* a 1-D input normalised whole, no affine */
    DT_SCOPE {
        ln_ctx c = {.nnorm = 1};
        dt_tensor *x = dt_gc_input(&g, DT_SHAPE(5), DT_GC_STRIDED);
        DT_ASSERT_OK(dt_gradcheck(f_ln, &c, &x, 1, (dt_gc_opts)DT_GC_OPTS_INIT));
    }
}

/* ------------------------------------------------------------- embedding */
static dt_tensor *f_emb(dt_tensor *const *in, void *ctx) { return dt_gc_project(dt_embedding(in[0], (dt_tensor *)ctx)); }

static void t_embedding(void)
{
    dt_rng g = dt_rng_make(12, 0);
    for (int trial = 0; trial < 9; trial++) {
        DT_SCOPE {
            int64_t num = pick(2, 6), dim = pick(1, 5);
            int nd = trial % 3;   /* idx of 0, 1 and 2 dims */
            int64_t is[2] = {pick(1, 4), pick(2, 4)};
            dt_tensor *ids = dt_rand_int(&g, 0, num, trial % 2 ? DT_I32 : DT_I64, nd, is);
            /* make sure some id repeats: the first two positions share one */
            if (nd > 0 && dt_tensor_numel(ids) >= 2) {
                dt_tensor *first = dt_narrow(dt_flatten(ids, 0, -1), 0, 0, 1);
                DT_ASSERT_OK(dt_tensor_copy_(dt_narrow(dt_flatten(ids, 0, -1), 0, 1, 1), first));
            }
            dt_tensor *w = dt_gc_input(&g, DT_SHAPE(num, dim), trial % 3);
            int rc = dt_gradcheck(f_emb, ids, &w, 1, (dt_gc_opts)DT_GC_OPTS_INIT);
            DT_ASSERT_MSG(rc == 0, "trial %d: weight (%lld, %lld), idx of %d dims: %s", trial, (long long)num, (long long)dim, nd, dt_last_error());
        }
    }
}

/* --------------------------------------------------------------- dropout */
typedef struct {
    double p;
    uint64_t seed;
} drop_ctx;

static dt_tensor *f_drop(dt_tensor *const *in, void *ctx)
{
    const drop_ctx *c = ctx;
    dt_rng g = dt_rng_make(c->seed, dt_rng_stream(DT_RNG_DROPOUT, 0));   /* the same mask every evaluation */
    return dt_gc_project(dt_dropout(in[0], c->p, true, &g));
}

static void t_dropout(void)
{
    dt_rng g = dt_rng_make(13, 0);
    const double ps[] = {0.25, 0.5, 0.9, 1.0};
    for (int trial = 0; trial < 8; trial++) {
        DT_SCOPE {
            drop_ctx c = {.p = ps[trial % 4], .seed = (uint64_t)(100 + trial)};
            dt_tensor *x = dt_gc_input(&g, DT_SHAPE(pick(1, 4), pick(2, 7)), trial % 3);
            int rc = dt_gradcheck(f_drop, &c, &x, 1, (dt_gc_opts)DT_GC_OPTS_INIT);
            DT_ASSERT_MSG(rc == 0, "trial %d p %g: %s", trial, c.p, dt_last_error());
        }
    }
}

/* ------------------------------------------------------------------ sdpa */
typedef struct {
    bool causal;
    double scale;
} sdpa_ctx;

static dt_tensor *f_sdpa(dt_tensor *const *in, void *ctx)
{
    const sdpa_ctx *c = ctx;
    return dt_gc_project(dt_sdpa(in[0], in[1], in[2], c->causal, c->scale));
}

static void t_sdpa(void)
{
    dt_rng g = dt_rng_make(14, 0);
    for (int trial = 0; trial < 24; trial++) {
        DT_SCOPE {
            sdpa_ctx c = {.causal = trial % 2, .scale = trial % 5 == 4 ? 0.7 : 0};
            int nb = (trial / 2) % 3;   /* batch dims: none, (H), (B, H) */
            int64_t L = pick(1, 5), S = trial % 4 < 2 ? L : pick(1, 5), E = pick(1, 4), Ev = pick(1, 4);
            int64_t qs[4], ks[4], vs[4];
            for (int d = 0; d < nb; d++) qs[d] = ks[d] = vs[d] = pick(1, 2);
            qs[nb] = L; ks[nb] = S; vs[nb] = S;
            qs[nb + 1] = E; ks[nb + 1] = E; vs[nb + 1] = Ev;
            dt_tensor *in[3] = {dt_gc_input(&g, nb + 2, qs, trial % 3), dt_gc_input(&g, nb + 2, ks, (trial + 1) % 3),
                                dt_gc_input(&g, nb + 2, vs, (trial + 2) % 3)};
            int rc = dt_gradcheck(f_sdpa, &c, in, 3, (dt_gc_opts)DT_GC_OPTS_INIT);
            DT_ASSERT_MSG(rc == 0, "trial %d: causal %d, %d batch dims, L %lld S %lld E %lld Ev %lld, scale %g: %s", trial, c.causal, nb,
                          (long long)L, (long long)S, (long long)E, (long long)Ev, c.scale, dt_last_error());
        }
    }
    /* Past one 32-row block: causal sdpa computes only the blocks the mask keeps. */
    const int64_t ls[][2] = {{70, 70}, {70, 45}, {40, 100}, {33, 33}};
    for (int trial = 0; trial < 8; trial++) {
        DT_SCOPE {
            sdpa_ctx c = {.causal = trial < 4, .scale = 0};
            int64_t L = ls[trial % 4][0], S = ls[trial % 4][1];
            int64_t qs[3] = {1, L, 2}, ks[3] = {1, S, 2}, vs[3] = {1, S, 3};
            dt_tensor *in[3] = {dt_gc_input(&g, 3, qs, trial % 3), dt_gc_input(&g, 3, ks, (trial + 1) % 3),
                                dt_gc_input(&g, 3, vs, (trial + 2) % 3)};
            int rc = dt_gradcheck(f_sdpa, &c, in, 3, (dt_gc_opts)DT_GC_OPTS_INIT);
            DT_ASSERT_MSG(rc == 0, "causal %d, L %lld S %lld: %s", c.causal, (long long)L, (long long)S, dt_last_error());
        }
    }
}

/* q, k, v as the GPT makes them: split a (B, T, 3C) tensor, view (B, T, H, C/H),
 * transpose to (B, H, T, C/H): unit-stride rows 3C apart, no copy. */
static dt_tensor *f_sdpa_gpt(dt_tensor *const *in, void *ctx)
{
    (void)ctx;
    dt_tensor *x = in[0];
    int64_t B = dt_tensor_size(x, 0), T = dt_tensor_size(x, 1), C = dt_tensor_size(x, 2) / 3, H = 2;
    dt_tensor *qkv[3];
    if (dt_split(x, C, 2, qkv, 3) != 3) return NULL;
    for (int i = 0; i < 3; i++) qkv[i] = dt_transpose(dt_view(qkv[i], DT_SHAPE(B, T, H, C / H)), 1, 2);
    dt_tensor *y = dt_sdpa(qkv[0], qkv[1], qkv[2], true, 0);
    return dt_gc_project(dt_reshape(dt_transpose(y, 1, 2), DT_SHAPE(B, T, C)));
}

static void t_sdpa_gpt_views(void)
{
    dt_rng g = dt_rng_make(15, 0);
    DT_SCOPE {
        dt_tensor *x = dt_gc_input(&g, DT_SHAPE(2, 4, 12), DT_GC_CONTIGUOUS);
        DT_ASSERT_OK(dt_gradcheck(f_sdpa_gpt, NULL, &x, 1, (dt_gc_opts)DT_GC_OPTS_INIT));
    }
}

int main(void)
{
    g_shapes = dt_rng_make(2024, 1);
    DT_RUN(t_layer_norm);
    DT_RUN(t_embedding);
    DT_RUN(t_dropout);
    DT_RUN(t_sdpa);
    DT_RUN(t_sdpa_gpt_views);
    return DT_TEST_END();
}
