/* dtrain tensor: n-dimensional arrays over refcounted storage, the scope rule for
 * temporaries, creation, in-place fills and copies, the counter-based RNG, and the
 * compute threads.
 *
 * This layer knows nothing of gradients: the differentiable operations (add, matmul,
 * views, ...) and the backward engine are in autograd.h, which builds on this one.
 *
 * Shapes are passed as (ndim, const int64_t *shape); DT_SHAPE(2, 3) writes both.
 * Strides and offsets count elements, not bytes. Dims may be negative (-1 = last).
 *
 * Ownership, in one rule: every function that returns a dt_tensor * returns a new
 * reference. Inside a scope (DT_SCOPE or dt_scope_begin/end) that reference belongs to
 * the innermost scope and is released when it ends, unless dt_keep() hands it out;
 * outside any scope it belongs to the caller, who releases it with dt_tensor_release.
 * Tensors passed as arguments are borrowed. */
#ifndef DTRAIN_TENSOR_H
#define DTRAIN_TENSOR_H

#include <dtrain/util.h>
#include <dtrain/dtype.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DT_MAX_DIMS 8

typedef struct dt_tensor dt_tensor;

/* (ndim, shape) for a literal shape: dt_zeros(DT_F32, DT_SHAPE(64, 784)). */
#define DT_SHAPE(...) \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}

/* ------------------------------------------------------------ references */
/* Add a reference (the caller then owns one more); returns t. NULL is passed through. */
dt_tensor *dt_tensor_retain(dt_tensor *t);
/* Drop a reference the caller owns; the tensor (and its storage, when no other tensor
 * shares it) is freed with the last one. NULL is a no-op. Do not release a reference
 * that a scope holds (one made inside a scope and not kept): the scope releases it. */
void dt_tensor_release(dt_tensor *t);

/* ---------------------------------------------------------------- scopes
 * Scopes are per thread and nest (up to 64 deep). Every tensor created while a scope
 * is open is released when that scope ends, except those passed to dt_keep().
 *
 *   DT_SCOPE {
 *       dt_tensor *h = dt_relu(dt_matmul(x, w));   // all temporaries
 *       out = dt_keep(dt_sum(h, NULL, 0, false));  // survives the scope
 *   }
 *
 * Do not `return`, `break` or `goto` out of a DT_SCOPE body (its end would not run);
 * use dt_scope_begin/dt_scope_end where the control flow needs it. */
/* Open a scope; returns its depth token (>= 1), or DT_ERANGE past 64 levels (tensors
 * then go to the enclosing scope). */
int dt_scope_begin(void);
/* Close every scope down to and including the one `token` opened, releasing their
 * tensors. A token that is not open (or negative) does nothing. */
void dt_scope_end(int token);
/* Depth of this thread's innermost open scope (0: none). */
int dt_scope_depth(void);
/* Move t from the innermost scope that holds it to the enclosing scope, or to the
 * caller when there is none (who then releases it). Returns t. A tensor no scope
 * holds (made outside, or already kept out) is returned unchanged. */
dt_tensor *dt_keep(dt_tensor *t);
/* Release a reference just created, wherever it belongs (its scope, or the caller):
 * for error paths in op code. NULL is a no-op. */
void dt_tensor_discard(dt_tensor *t);

#define DT__CAT2(a, b) a##b
#define DT__CAT(a, b) DT__CAT2(a, b)
#define DT_SCOPE                                                                         \
    for (int DT__CAT(dt__scope_, __LINE__) = dt_scope_begin(), DT__CAT(dt__once_, __LINE__) = 1; \
         DT__CAT(dt__once_, __LINE__);                                                   \
         DT__CAT(dt__once_, __LINE__) = 0, dt_scope_end(DT__CAT(dt__scope_, __LINE__)))

/* ----------------------------------------------------------- accessors */
int dt_tensor_ndim(const dt_tensor *t);
/* Borrowed: valid while t lives. */
const int64_t *dt_tensor_shape(const dt_tensor *t);
const int64_t *dt_tensor_strides(const dt_tensor *t);
/* Size of one dim (negative counts from the end); -1 for a dim out of range. */
int64_t dt_tensor_size(const dt_tensor *t, int dim);
int64_t dt_tensor_numel(const dt_tensor *t);
/* Offset of element 0 in the storage, in elements. */
int64_t dt_tensor_offset(const dt_tensor *t);
dt_dtype dt_tensor_dtype(const dt_tensor *t);
/* Row-major with no gaps (a 0- or 1-element tensor always is). */
bool dt_tensor_is_contiguous(const dt_tensor *t);
/* Pointer to element 0 (storage + offset). Borrowed: valid while the storage lives.
 * Reading it as an array is only right when the tensor is contiguous. */
void *dt_tensor_data(const dt_tensor *t);
/* Same, typed; NULL (and DT_EDTYPE) when the dtype is not f32 / f64. */
float *dt_tensor_data_f32(const dt_tensor *t);
double *dt_tensor_data_f64(const dt_tensor *t);
/* True when a and b view the same storage. */
bool dt_tensor_same_storage(const dt_tensor *a, const dt_tensor *b);
/* Element at a multi-index (ndim entries), converted to double; NaN and DT_ERANGE for
 * an index out of range. For tests and small reads, not for loops. */
double dt_tensor_get(const dt_tensor *t, const int64_t *idx);
/* The value of a one-element tensor as double (NaN and DT_EINVAL otherwise). */
double dt_tensor_item(const dt_tensor *t);
/* "f32[64, 784]" into buf (always NUL-terminated); returns buf. */
char *dt_tensor_describe(const dt_tensor *t, char *buf, size_t len);

/* ------------------------------------------------------------- creation
 * All return NULL + last error on failure: DT_EINVAL (ndim outside 0..8, a negative
 * size, a bad dtype), DT_ENOMEM. Memory comes from dt_alloc in the thread's current
 * category (DT_MEM_ACT unless set below), 64-byte aligned. */
dt_tensor *dt_empty(dt_dtype dtype, int ndim, const int64_t *shape);
dt_tensor *dt_zeros(dt_dtype dtype, int ndim, const int64_t *shape);
dt_tensor *dt_ones(dt_dtype dtype, int ndim, const int64_t *shape);
dt_tensor *dt_full(dt_dtype dtype, int ndim, const int64_t *shape, double value);
/* A 0-dim tensor holding value. */
dt_tensor *dt_scalar(dt_dtype dtype, double value);
/* torch.arange(start, end, step): ceil((end - start) / step) values; DT_EINVAL for
 * step 0 or a negative count. */
dt_tensor *dt_arange(dt_dtype dtype, double start, double end, double step);
/* Same shape and dtype as t, uninitialised / zero. */
dt_tensor *dt_empty_like(const dt_tensor *t);
dt_tensor *dt_zeros_like(const dt_tensor *t);

/* A tensor over the caller's memory (contiguous, row-major): borrowed, never freed by
 * dtrain, and it must outlive every tensor that views it. This is how flat parameter
 * and gradient buffers get per-parameter tensors. DT_EINVAL for NULL data with
 * numel > 0. */
dt_tensor *dt_from_buffer(void *data, dt_dtype dtype, int ndim, const int64_t *shape);
/* Same with explicit strides and offset (in elements, relative to data). */
dt_tensor *dt_from_buffer_strided(void *data, dt_dtype dtype, int ndim, const int64_t *shape,
                                  const int64_t *strides, int64_t offset);

/* The category new tensor storage is counted under on this thread (DT_MEM_ACT at
 * start). Returns the previous one: nn sets DT_MEM_PARAM around parameter creation. */
dt_mem_cat dt_tensor_set_mem_cat(dt_mem_cat cat);

/* ------------------------------------------------- in place (no autograd)
 * These write into dst and record nothing for autograd. */
int dt_tensor_fill(dt_tensor *dst, double value);
/* Copy src into dst, converting dtypes (float -> int truncates toward zero, as torch);
 * src broadcasts to dst's shape. Either may be non-contiguous; overlapping views of
 * one storage give an unspecified result. DT_ESHAPE when src does not broadcast. */
int dt_tensor_copy_(dt_tensor *dst, const dt_tensor *src);
/* Copy raw contiguous elements of dst's dtype in / out (n must equal numel). */
int dt_tensor_write(dt_tensor *dst, const void *src, int64_t n);
int dt_tensor_read(const dt_tensor *src, void *dst, int64_t n);

/* ------------------------------------------------------------------- RNG
 * Philox4x32-10 (Salmon et al., SC'11), counter-based: output block c of generator
 * (seed, stream) is philox(key = seed, counter = (c, stream)). Element i of a fill
 * uses block offset + i / 4 (lane i % 4; normals use pairs of lanes), so results do
 * not depend on thread count or chunking, and each fill advances offset past the
 * blocks it used. Independent streams: one per (purpose, rank), see dt_rng_stream. */
typedef struct {
    uint64_t seed;
    uint64_t stream;
    uint64_t offset;   /* next 128-bit block */
} dt_rng;

enum { DT_RNG_INIT = 1, DT_RNG_DROPOUT = 2, DT_RNG_DATA = 3 };

dt_rng dt_rng_make(uint64_t seed, uint64_t stream);
/* A stream id for a purpose (DT_RNG_*) and a rank: distinct pairs give distinct ids. */
uint64_t dt_rng_stream(uint32_t purpose, uint32_t rank);
/* One Philox4x32-10 block: out = philox(key, ctr). */
void dt_philox4x32(const uint32_t key[2], const uint32_t ctr[4], uint32_t out[4]);
/* The next raw 32-bit values (n of them), advancing offset by ceil(n / 4). */
void dt_rng_u32(dt_rng *g, uint32_t *out, int64_t n);

/* Fill a floating tensor from a uniform [lo, hi) / normal(mean, std) (Box-Muller).
 * f32/bf16/f16 draw 24-bit uniforms, f64 53-bit. DT_EDTYPE for integer dtypes. */
int dt_tensor_uniform_(dt_tensor *t, dt_rng *g, double lo, double hi);
int dt_tensor_normal_(dt_tensor *t, dt_rng *g, double mean, double std);
/* Integers uniform in [lo, hi) (any dtype); DT_EINVAL when hi <= lo. Unbiased
 * (rejection on 64-bit draws). Not torch's generator: the data order that must
 * equal torch's uses dt_sampler's MT19937 instead. */
int dt_tensor_randint_(dt_tensor *t, dt_rng *g, int64_t lo, int64_t hi);
dt_tensor *dt_rand(dt_rng *g, dt_dtype dtype, int ndim, const int64_t *shape);
dt_tensor *dt_randn(dt_rng *g, dt_dtype dtype, int ndim, const int64_t *shape);
dt_tensor *dt_rand_int(dt_rng *g, int64_t lo, int64_t hi, dt_dtype dtype, int ndim, const int64_t *shape);

/* --------------------------------------------------------------- threads
 * Kernels split work over a pool of DTRAIN_NUM_THREADS threads (0: dt_num_cpus() /
 * LOCAL_WORLD_SIZE, at least 1), created at first use; OpenBLAS is set to the same
 * count. */
int dt_tensor_num_threads(void);
/* Resize the pool (n >= 1) and OpenBLAS with it. Not while kernels run. */
int dt_tensor_set_num_threads(int n);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_TENSOR_H */
