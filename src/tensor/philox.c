/* The counter-based RNG: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3", SC'11), keyed by the seed, countered by (block, stream).
 * Fills map element i to a fixed block and lane, so a result depends only on (seed,
 * stream, offset, shape), never on threads. Uniform and normal (Box-Muller) fills and
 * unbiased integers. Not torch's generator (the data order that must equal torch's is
 * dt_sampler's MT19937). */
#include "tensor/tensor_internal.h"

#include <math.h>

#define M0 0xD2511F53u
#define M1 0xCD9E8D57u
#define W0 0x9E3779B9u
#define W1 0xBB67AE85u

void dt_philox4x32(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)M0 * c0, p1 = (uint64_t)M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0; c1 = (uint32_t)p1; c2 = n2; c3 = (uint32_t)p0;
        k0 += W0; k1 += W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

dt_rng dt_rng_make(uint64_t seed, uint64_t stream)
{
    dt_rng g = {.seed = seed, .stream = stream, .offset = 0};
    return g;
}

uint64_t dt_rng_stream(uint32_t purpose, uint32_t rank) { return (uint64_t)purpose << 32 | rank; }

static void block(const dt_rng *g, uint64_t b, uint32_t out[4])
{
    uint32_t key[2] = {(uint32_t)g->seed, (uint32_t)(g->seed >> 32)};
    uint32_t ctr[4] = {(uint32_t)b, (uint32_t)(b >> 32), (uint32_t)g->stream, (uint32_t)(g->stream >> 32)};
    dt_philox4x32(key, ctr, out);
}

void dt_rng_u32(dt_rng *g, uint32_t *out, int64_t n)
{
    for (int64_t i = 0; i < n; i += 4) {
        uint32_t r[4];
        block(g, g->offset + (uint64_t)(i / 4), r);
        for (int l = 0; l < 4 && i + l < n; l++) out[i + l] = r[l];
    }
    g->offset += (uint64_t)((n + 3) / 4);
}

/* Uniforms in [0, 1): 24 bits for f32-computed dtypes, 53 for f64. */
static double u24(uint32_t u) { return (double)(u >> 8) * 0x1p-24; }
static double u53(uint32_t hi, uint32_t lo) { return (double)(((uint64_t)hi << 21) ^ (lo >> 11)) * 0x1p-53; }

typedef struct {
    const dt_rng *g;
    double *out;        /* [n] values in f64 before conversion */
    bool wide, normal;
    double a, b;        /* uniform: lo, hi - lo; normal: mean, std */
} fill_ctx;

/* Element i: f32 -> block i/4 lane i%4 (normal: lanes paired); f64 -> block i/2,
 * lanes 2(i%2), 2(i%2)+1 (normal: the block's two uniforms give elements 2j, 2j+1). */
static void fill_range(void *arg, int64_t begin, int64_t end, int tid)
{
    const fill_ctx *c = arg;
    int per = c->wide ? 2 : 4;
    for (int64_t i = begin; i < end;) {
        uint32_t r[4];
        int64_t bi = i / per;
        block(c->g, c->g->offset + (uint64_t)bi, r);
        double u[4];
        int nu = c->wide ? 2 : 4;
        for (int l = 0; l < nu; l++) u[l] = c->wide ? u53(r[2 * l], r[2 * l + 1]) : u24(r[l]);
        for (int64_t j = bi * per; j < (bi + 1) * per; j++) {
            if (j < begin || j >= end) continue;
            int l = (int)(j - bi * per);
            double v;
            if (c->normal) {
                int p = l & ~1;
                double rad = sqrt(-2.0 * log(1.0 - u[p])), th = 2.0 * M_PI * u[p + 1];
                v = c->a + c->b * rad * ((l & 1) ? sin(th) : cos(th));
            } else {
                v = c->a + c->b * u[l];
            }
            c->out[j] = v;
        }
        i = (bi + 1) * per;
    }
}

static int fill(dt_tensor *t, dt_rng *g, bool normal, double a, double b, const char *what)
{
    if (!t || !g) return dt_set_error(DT_EINVAL, "%s: NULL argument", what);
    if (!dt_dtype_is_float((dt_dtype)t->dtype))
        return dt_set_error(DT_EDTYPE, "%s: %s is not a floating dtype", what, dt_dtype_name((dt_dtype)t->dtype));
    dt_tensor *tmp = dt__empty(DT_F64, t->ndim, t->shape);
    if (!tmp) return dt_last_error_code();
    fill_ctx c = {.g = g, .out = (double *)tmp->st->data, .wide = t->dtype == DT_F64, .normal = normal, .a = a, .b = b};
    dt__parallel_for(t->numel, 16384, fill_range, &c);
    int per = c.wide ? 2 : 4;
    g->offset += (uint64_t)((t->numel + per - 1) / per);
    int rc = dt__copy(t, tmp);
    dt_tensor_release(tmp);
    return rc;
}

int dt_tensor_uniform_(dt_tensor *t, dt_rng *g, double lo, double hi)
{
    return fill(t, g, false, lo, hi - lo, "dt_tensor_uniform_");
}

int dt_tensor_normal_(dt_tensor *t, dt_rng *g, double mean, double std)
{
    return fill(t, g, true, mean, std, "dt_tensor_normal_");
}

int dt_tensor_randint_(dt_tensor *t, dt_rng *g, int64_t lo, int64_t hi)
{
    if (!t || !g) return dt_set_error(DT_EINVAL, "dt_tensor_randint_: NULL argument");
    if (hi <= lo) return dt_set_error(DT_EINVAL, "dt_tensor_randint_: empty range [%lld, %lld)", (long long)lo, (long long)hi);
    dt_tensor *tmp = dt__empty(DT_F64, t->ndim, t->shape);
    if (!tmp) return dt_last_error_code();
    double *out = (double *)tmp->st->data;
    uint64_t range = (uint64_t)hi - (uint64_t)lo;
    uint64_t limit = UINT64_MAX - (UINT64_MAX % range + 1) % range;   /* accept draws <= limit */
    uint32_t r[4];
    int lane = 4;
    for (int64_t i = 0; i < t->numel;) {
        if (lane == 4) { block(g, g->offset++, r); lane = 0; }
        uint64_t v = (uint64_t)r[lane] << 32 | r[lane + 1];
        lane += 2;
        if (v > limit) continue;
        out[i++] = (double)(int64_t)((uint64_t)lo + v % range);
    }
    int rc = dt__copy(t, tmp);
    dt_tensor_release(tmp);
    return rc;
}

static dt_tensor *made(dt_tensor *t, int rc)
{
    if (rc < 0) { dt_tensor_release(t); return NULL; }
    return dt__adopt(t);
}

dt_tensor *dt_rand(dt_rng *g, dt_dtype dtype, int ndim, const int64_t *shape)
{
    dt_tensor *t = dt__empty(dtype, ndim, shape);
    return t ? made(t, dt_tensor_uniform_(t, g, 0, 1)) : NULL;
}

dt_tensor *dt_randn(dt_rng *g, dt_dtype dtype, int ndim, const int64_t *shape)
{
    dt_tensor *t = dt__empty(dtype, ndim, shape);
    return t ? made(t, dt_tensor_normal_(t, g, 0, 1)) : NULL;
}

dt_tensor *dt_rand_int(dt_rng *g, int64_t lo, int64_t hi, dt_dtype dtype, int ndim, const int64_t *shape)
{
    dt_tensor *t = dt__empty(dtype, ndim, shape);
    return t ? made(t, dt_tensor_randint_(t, g, lo, hi)) : NULL;
}
