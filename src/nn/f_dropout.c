/* F.dropout: out = x * mask / (1 - p) with mask[i] = 0 with probability p, drawn from
 * the caller's Philox generator, and its backward g * mask / (1 - p) from the saved u8
 * mask. Element i uses block (offset + i / 4), lane i % 4 of the generator, as
 * dt_tensor_uniform_ on an f32 tensor does: it is kept when its 24-bit uniform
 * u = (lane >> 8) * 2^-24 is >= p. So the mask depends on (seed, stream, offset,
 * shape) only, never on the thread count, and the generator advances past ceil(n / 4)
 * blocks. Not torch's generator: masks do not equal torch's for the same seed. Not
 * training, or p == 0: a new handle on x's storage (same shape and strides) whose
 * gradient passes straight through. */
#include "autograd/ag_internal.h"

#include <math.h>

typedef struct {
    const dt_rng *g;
    uint32_t thr;        /* keep when (lane >> 8) >= thr */
    int64_t n;
    uint8_t *mask;       /* [n] */
    const void *x;       /* apply: [n] in the computed dtype */
    void *y;
    double scale;
    bool f64;
} drop_args;

static void mask_blocks(void *arg, int64_t b0, int64_t b1, int tid)
{
    (void)tid;
    const drop_args *a = arg;
    uint32_t key[2] = {(uint32_t)a->g->seed, (uint32_t)(a->g->seed >> 32)};
    for (int64_t bi = b0; bi < b1; bi++) {
        uint64_t c = a->g->offset + (uint64_t)bi;
        uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), (uint32_t)a->g->stream, (uint32_t)(a->g->stream >> 32)};
        uint32_t r[4];
        dt_philox4x32(key, ctr, r);
        for (int l = 0; l < 4 && bi * 4 + l < a->n; l++) a->mask[bi * 4 + l] = (r[l] >> 8) >= a->thr;
    }
}

#define APPLY(T)                                                                         \
    DT__KERNEL static void apply_##T(const drop_args *a, int64_t i0, int64_t i1)          \
    {                                                                                    \
        const T *x = a->x;                                                               \
        T *y = a->y, s = (T)a->scale;                                                    \
        const uint8_t *m = a->mask;                                                      \
        for (int64_t i = i0; i < i1; i++) y[i] = m[i] ? x[i] * s : (T)0;                 \
    }
APPLY(float)
APPLY(double)

static void apply_range(void *arg, int64_t i0, int64_t i1, int tid)
{
    (void)tid;
    const drop_args *a = arg;
    if (a->f64) apply_double(a, i0, i1);
    else apply_float(a, i0, i1);
}

/* x * mask * scale in x's dtype (computed in f32 for bf16/f16); NULL + error. */
static dt_tensor *masked_scale(const dt_tensor *x, const dt_tensor *mask, double scale, dt_dtype dt)
{
    dt_dtype ct = dt == DT_F64 ? DT_F64 : DT_F32;
    dt_tensor *xc = dt__contig_as((dt_tensor *)x, ct);
    dt_tensor *y = xc ? dt__empty(ct, x->ndim, x->shape) : NULL;
    if (y && y->numel) {
        drop_args a = {.n = y->numel, .mask = (uint8_t *)dt__ptr(mask), .x = dt__ptr(xc), .y = dt__ptr(y), .scale = scale, .f64 = ct == DT_F64};
        dt__parallel_for(a.n, 16384, apply_range, &a);
    }
    dt_tensor_release(xc);
    if (y && ct != dt) {
        dt_tensor *c = dt__cast(y, dt);
        dt_tensor_release(y);
        y = c;
    }
    return y;
}

static int dropout_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    gi[0] = dt__adopt(masked_scale(g, dt_node_saved(n, 0), dt_node_f64(n)[0], dt_node_input_dtype(n, 0)));
    return gi[0] ? 0 : (dt_last_error_code() < 0 ? dt_last_error_code() : DT_ENOMEM);
}

static int identity_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    (void)n;
    gi[0] = g;
    return 0;
}

dt_tensor *dt_dropout(dt_tensor *x, double p, bool training, dt_rng *g)
{
    if (!x) { dt__null_arg("dropout"); return NULL; }
    if (!(p >= 0 && p <= 1)) { dt_set_error(DT_EINVAL, "dropout: p = %g outside [0, 1]", p); return NULL; }
    if (!training || p == 0)
        return dt__record(dt__alias(x, x->ndim, x->shape, x->strides, x->offset), &x, 1,
                          &(dt__rec){.name = "dropout", .fn = identity_bw});
    if (!g) { dt_set_error(DT_EINVAL, "dropout: NULL generator while training with p = %g", p); return NULL; }
    dt_dtype dt = (dt_dtype)x->dtype;
    if (!dt_dtype_is_float(dt)) { dt_set_error(DT_EDTYPE, "dropout of %s", dt_dtype_name(dt)); return NULL; }
    dt_tensor *mask = dt__empty(DT_U8, x->ndim, x->shape);
    if (!mask) { dt_error_wrap(dt_last_error_code(), "dropout"); return NULL; }
    double t = ceil(p * 16777216.0);
    drop_args a = {.g = g, .thr = (uint32_t)t, .n = x->numel, .mask = (uint8_t *)dt__ptr(mask)};
    int64_t nblk = (x->numel + 3) / 4;
    dt__parallel_for(nblk, 4096, mask_blocks, &a);
    g->offset += (uint64_t)nblk;
    double scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;
    dt_tensor *out = dt__record(masked_scale(x, mask, scale, dt), &x, 1,
                                &(dt__rec){.name = "dropout", .fn = dropout_bw, .save_extra = mask, .f = {scale}});
    dt_tensor_release(mask);
    return out;
}
