/* The tensor layer's insides, shared by src/tensor/ and by the layer above
 * (src/autograd/ calls the kernels and the scope adoption; it never touches storage).
 *
 * Reference rule inside the library: the dt__ functions below return plain references
 * that belong to the caller and are in no scope; the public entry points hand their
 * final result to dt__adopt, which puts it in the innermost scope. Temporaries inside
 * a kernel therefore never reach a scope and are released by the kernel itself. */
#ifndef DT_TENSOR_INTERNAL_H
#define DT_TENSOR_INTERNAL_H

#include <dtrain/tensor.h>

#include <stdatomic.h>

/* Refcounted bytes. Owned storage lives in one dt_alloc block: this header in the
 * first 64 bytes, the data after it (so the data is 64-byte aligned). Borrowed storage
 * points at the caller's memory and frees only the header. */
typedef struct {
    atomic_int refs;
    bool borrowed;
    void *data;
    size_t nbytes;
} dt__storage;

/* Invariants: numel = prod(shape); strides >= 0; every element index offset +
 * sum(i_d * strides_d) lies inside the storage. scope_depth > 0 iff a scope holds one
 * reference (at items[scope_slot] of that scope). ag belongs to the autograd layer and
 * is freed through dt__tensor_ag_dtor when the tensor goes. */
struct dt_tensor {
    atomic_int refs;
    int8_t ndim;
    uint8_t dtype;
    int32_t scope_depth;
    int32_t scope_slot;
    int64_t numel;
    int64_t offset;
    int64_t shape[DT_MAX_DIMS];
    int64_t strides[DT_MAX_DIMS];
    dt__storage *st;
    void *ag;
};

extern void (*dt__tensor_ag_dtor)(void *ag);

/* Inner loops of the kernels: -O3 (the build's -O2 does not vectorize loops whose
 * operands may alias) and AVX-512 and AVX2 clones picked at load time. No FMA:
 * contracting a*b+c would change results between machines, and avx512f implies FMA,
 * so fp-contract=off is spelled out (every clone computes the same bits).
 * no-trapping-math (FP exception flags are not observed; values do not change) lets
 * the ternary selects of tensor/vmath.h become blends, so its loops vectorise. */
#ifdef __SANITIZE_THREAD__
/* target_clones' resolvers run before TSan is up and crash the program at load */
#define DT__KERNEL __attribute__((optimize("O3", "no-math-errno", "no-trapping-math", "fp-contract=off")))
#else
#define DT__KERNEL __attribute__((optimize("O3", "no-math-errno", "no-trapping-math", "fp-contract=off"), target_clones("avx512f", "avx2", "default")))
#endif

/* ---- storage.c */
/* Contiguous, uninitialised; DT_EINVAL for a bad shape or dtype, DT_ENOMEM. */
dt_tensor *dt__empty(dt_dtype dtype, int ndim, const int64_t *shape);
/* A new tensor on src's storage with the given geometry (not checked). */
dt_tensor *dt__alias(const dt_tensor *src, int ndim, const int64_t *shape, const int64_t *strides, int64_t offset);
int dt__check_shape(int ndim, const int64_t *shape);
void dt__contig_strides(int ndim, const int64_t *shape, int64_t *strides);
int dt__wrap_dim(int dim, int ndim, const char *what);
static inline char *dt__ptr(const dt_tensor *t) { return (char *)t->st->data + t->offset * (int64_t)dt_dtype_size((dt_dtype)t->dtype); }

/* ---- scope.c */
/* Give the caller-owned reference t to the innermost scope (no-op without one).
 * Returns t; NULL (t released) when t is NULL or the scope cannot grow. */
dt_tensor *dt__adopt(dt_tensor *t);
/* Take t out of whatever scope holds it without releasing (used when t is freed). */
void dt__scope_forget(dt_tensor *t);

/* ---- threads.c */
/* Run fn over [0, n) on the compute pool (serially when small, or when the pool is
 * busy with another caller's kernel). */
void dt__parallel_for(int64_t n, int64_t grain, dt_range_fn fn, void *arg);

/* ---- iter.c: broadcasting and strided iteration over up to 3 operands */
int dt__broadcast_shape(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout, int64_t *out);
/* Strides of t seen as shape (ndim, shape) under broadcasting (0 on stretched dims);
 * DT_ESHAPE when t does not broadcast to it. */
int dt__broadcast_strides(const dt_tensor *t, int ndim, const int64_t *shape, int64_t *strides);

typedef struct {
    int nops;
    int ndim;                        /* after merging; dim ndim-1 is the inner loop */
    int64_t shape[DT_MAX_DIMS];
    int64_t strides[3][DT_MAX_DIMS]; /* elements */
    char *data[3];
    size_t esize[3];
} dt__iter;
/* One inner row: n elements, operand k at p[k] with stride s[k] (elements). */
typedef void (*dt__row_fn)(void *ctx, char **p, const int64_t *s, int64_t n);
/* ops[0] is the output (its shape is the iteration shape); the others broadcast. */
int dt__iter_init(dt__iter *it, int nops, dt_tensor *const *ops);
/* parallel: operands' outputs never alias across rows (not for reductions). */
void dt__iter_run(const dt__iter *it, dt__row_fn fn, void *ctx, bool parallel);

/* ---- create.c */
/* dst <- src (broadcast, any dtypes). */
int dt__copy(dt_tensor *dst, const dt_tensor *src);
/* A contiguous copy in dtype (a new tensor even when nothing changes). */
dt_tensor *dt__cast(const dt_tensor *t, dt_dtype dtype);
/* t itself (retained) when contiguous and of dtype, else a contiguous cast copy. */
dt_tensor *dt__contig_as(dt_tensor *t, dt_dtype dtype);
dt_tensor *dt__full(dt_dtype dtype, int ndim, const int64_t *shape, double v);

/* ---- k_elementwise.c: out = f(x, y, s) elementwise, all ops in one table.
 * Unary ops read only x. The _BW ops are the backward formulas (x = grad). */
#define DT__EW_OPS(X)                                                                    \
    X(ADD) X(SUB) X(MUL) X(DIV) X(POW) X(NEG) X(EXP) X(LOG) X(SQRT) X(TANH) X(SIGMOID)     \
    X(RELU) X(GELU) X(GELU_TANH) X(ADDS) X(MULS) X(DIVS) X(RSUBS) X(RDIVS) X(POWS) X(MASKFILL) \
    X(RELU_BW) X(TANH_BW) X(SIGMOID_BW) X(GELU_BW) X(GELU_TANH_BW) X(POWS_BW) X(RDIVS_BW)    \
    X(SQRT_BW)
typedef enum {
#define DT__EW_ENUM(n) DT__EW_##n,
    DT__EW_OPS(DT__EW_ENUM)
#undef DT__EW_ENUM
    DT__EW_COUNT
} dt__ew_op;
/* b may be NULL for unary ops. Result has the broadcast shape and a's dtype. */
dt_tensor *dt__ew(dt__ew_op op, const dt_tensor *a, const dt_tensor *b, double s);
/* The exact GELU of an f32 x and, in *grad, its derivative at x, in one pass (bit for bit
 * DT__EW_GELU, and DT__EW_GELU_BW's factor): autograd keeps the derivative, not x. */
dt_tensor *dt__gelu_f32_with_grad(const dt_tensor *x, dt_tensor **grad);
/* dst += src (src broadcasts to dst; any strides). */
int dt__add_into(dt_tensor *dst, const dt_tensor *src);

/* ---- k_reduce.c */
/* Sum over dims with dimmask bit d set. */
dt_tensor *dt__sum(const dt_tensor *a, unsigned dimmask, bool keepdim);
/* Max values and/or first arg-max (i64) over dim; either output may be NULL. */
int dt__max(const dt_tensor *a, int dim, bool keepdim, dt_tensor **vals, dt_tensor **idx);
/* Sum a to a shape it broadcasts to. */
dt_tensor *dt__sum_to(const dt_tensor *a, int ndim, const int64_t *shape);
/* Zeros of shape with g (keepdim-shaped) placed at idx along dim: max's backward. */
dt_tensor *dt__scatter_dim(const dt_tensor *g, const dt_tensor *idx, int dim, int ndim, const int64_t *shape);

/* ---- k_softmax.c */
dt_tensor *dt__softmax(const dt_tensor *a, int dim, bool log);
/* Backward from the output y and its gradient g. */
dt_tensor *dt__softmax_bw(const dt_tensor *y, const dt_tensor *g, int dim, bool log);

/* ---- k_sgemm.c: every f32 GEMM goes through dt__sgemm.
 * Row-major, cblas_sgemm semantics: C (m, n) = alpha op(A) op(B) + beta C, op(A) (m, k)
 * is A (m, k) with leading dimension lda, or A (k, m) read transposed when ta; likewise
 * B with tb. C is not read when beta == 0 (NaN there is overwritten); A and B are not
 * read when k == 0 or alpha == 0. Dimensions below 2^31. Picks our AVX-512 kernel or
 * OpenBLAS by CPU and shape (docs/tensor.md "GEMM"). */
void dt__sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* The same through our kernel whatever the shape (for tests and bench/gemm_bench);
 * OpenBLAS when !dt__sgemm_ours_available() (no AVX-512 on this CPU or compiler). */
void dt__sgemm_ours(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
bool dt__sgemm_ours_available(void);
/* dt__sgemm with B given as rows at offsets: B's row r (k of them) is b + boff[r] when
 * !tb; when tb, the stored B^T's row j (n of them, op(B)'s column j) is b + boff[j].
 * Rows may overlap (a convolution's shifted windows over one padded image). Our kernel
 * when dt__sgemm_ours_available(), else plain loops (slow: callers check first). */
void dt__sgemm_rows(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                    const float *b, const int64_t *boff, float beta, float *c, int64_t ldc);
/* C (m, n) = op(A) op(B) + bias in every row (F.linear's bias, n floats), C not read:
 * the same bits as copying bias into C and dt__sgemm with beta 1, without that pass. */
void dt__sgemm_bias(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, const float *b,
                    int64_t ldb, const float *bias, float *c, int64_t ldc);
/* Whether dt__sgemm runs our kernel for this shape. */
bool dt__sgemm_picks_ours(bool ta, bool tb, int64_t m, int64_t n, int64_t k);

/* ---- k_matmul.c */
/* (..., m, k) x (..., k, n), both at least 2-D, batch dims broadcast. */
dt_tensor *dt__matmul(const dt_tensor *a, const dt_tensor *b);
/* x (..., in) w (out, in) b (out) or NULL. */
dt_tensor *dt__linear(const dt_tensor *x, const dt_tensor *w, const dt_tensor *b);

/* ---- k_shape.c: view geometry */
dt_tensor *dt__view(const dt_tensor *a, int ndim, const int64_t *shape);     /* NULL+DT_ESHAPE if impossible */
int dt__infer_shape(int64_t numel, int ndim, const int64_t *in, int64_t *out);
dt_tensor *dt__transpose(const dt_tensor *a, int d0, int d1);
dt_tensor *dt__permute(const dt_tensor *a, const int *dims);
dt_tensor *dt__slice(const dt_tensor *a, int dim, int64_t start, int64_t len, int64_t step);
dt_tensor *dt__expand(const dt_tensor *a, int ndim, const int64_t *shape);
dt_tensor *dt__squeeze(const dt_tensor *a, int dim);
dt_tensor *dt__unsqueeze(const dt_tensor *a, int dim);
dt_tensor *dt__cat(dt_tensor *const *ts, int n, int dim);

#endif /* DT_TENSOR_INTERNAL_H */
