/* dtrain autograd: the differentiable operations on tensors, the reverse-mode tape that
 * records them, the backward engine, gradient-ready hooks, and the API for writing new
 * differentiable ops (nn's conv, pool, norm and losses are written with it).
 *
 * Every op below computes its result with the tensor layer's kernels. When grad mode is
 * on and an input requires grad, the result also gets a node (its grad_fn) that retains
 * what backward needs; the graph is freed by dt_backward, or when its tensors go.
 *
 * Ownership follows tensor.h: every returned tensor is a new reference owned by the
 * innermost scope (or the caller when none is open); arguments are borrowed. Failing ops
 * return NULL + last error. An op given a NULL input returns NULL and keeps the thread's
 * last error (naming itself in front), or sets DT_EINVAL when there is none: a chain
 * dt_relu(dt_matmul(x, w)) reports its first failure and does not crash.
 *
 * dtypes: f32 and f64 compute natively; bf16 and f16 are converted to f32, computed
 * and rounded back; integer dtypes are computed through f64 (exact below 2^53), for
 * the elementwise ops only. Binary ops need equal dtypes (DT_EDTYPE otherwise). */
#ifndef DTRAIN_AUTOGRAD_H
#define DTRAIN_AUTOGRAD_H

#include <dtrain/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ grad mode
 * Per thread, nestable. While off, ops record nothing (torch.no_grad()). */
bool dt_grad_enabled(void);
void dt_no_grad_begin(void);
void dt_no_grad_end(void);
#define DT_NO_GRAD                                                                       \
    for (int DT__CAT(dt__ng_, __LINE__) = (dt_no_grad_begin(), 1); DT__CAT(dt__ng_, __LINE__); \
         DT__CAT(dt__ng_, __LINE__) = 0, dt_no_grad_end())

/* ------------------------------------------------------- leaves and grads */
/* Mark a leaf (a tensor no op produced) as requiring grad, or not. DT_EINVAL for a
 * tensor with a grad_fn, DT_EDTYPE for an integer dtype. */
int dt_tensor_set_requires_grad(dt_tensor *t, bool on);
bool dt_tensor_requires_grad(const dt_tensor *t);
/* True when no recorded op produced t. */
bool dt_tensor_is_leaf(const dt_tensor *t);
/* A leaf's accumulated gradient, NULL before the first backward reaches it.
 * Borrowed: valid while the leaf lives and its grad is not replaced. */
dt_tensor *dt_tensor_grad(const dt_tensor *t);
/* Make grad (same shape and dtype as the leaf; any strides, e.g. a view of a flat
 * gradient buffer or a DDP bucket) the leaf's .grad: backward adds into it in place.
 * grad is retained; its current contents are the starting value. NULL drops the grad
 * (torch's `.grad = None`); the next backward then allocates one (DT_MEM_GRAD). */
int dt_tensor_set_grad_buffer(dt_tensor *leaf, dt_tensor *grad);
/* Fill the leaf's grad with zeros, keeping the buffer (no-op when it has none). */
int dt_tensor_zero_grad(dt_tensor *leaf);

/* Called during backward as soon as the leaf's gradient for this backward is final:
 * after the last node that contributes to it has added into .grad. Runs on the thread
 * that called dt_backward, in no-grad mode; it may read the grad and start
 * communication on it but must not free the leaf. Hooks fire in registration order;
 * ctx is borrowed. */
typedef void (*dt_grad_ready_fn)(dt_tensor *leaf, void *ctx);
int dt_tensor_on_grad_ready(dt_tensor *leaf, dt_grad_ready_fn fn, void *ctx);
/* Remove every hook of the leaf. */
void dt_tensor_clear_hooks(dt_tensor *leaf);

/* Backpropagate from a one-element floating tensor (seed 1): every leaf that requires
 * grad and that loss depends on gets d loss / d leaf added into its .grad. The graph
 * is freed as it goes (torch's retain_graph=False): a second backward through the same
 * nodes fails with DT_ESTATE. DT_EINVAL when loss has more than one element or does not
 * require grad. */
int dt_backward(dt_tensor *loss);

/* Queue fn(ctx) to run when the backward now running on this thread has finished
 * the graph, before dt_backward returns (torch's engine queue_callback; DDP waits
 * for its last buckets there). Callable only from inside a backward (a gradient-ready
 * hook or an op's backward): DT_ESTATE otherwise. Callbacks run in queue order, in
 * no-grad mode; the first negative return becomes dt_backward's result. */
typedef int (*dt_backward_callback_fn)(void *ctx);
int dt_backward_queue_callback(dt_backward_callback_fn fn, void *ctx);

/* Call fn(leaf, ctx) for every leaf requiring grad that root's graph reaches (what a
 * dt_backward(root) would give a gradient), root itself when it is such a leaf. A
 * leaf reached through several edges is visited once per edge. Does not change the
 * graph. DDP's find_unused_parameters walks the forward's output with it. */
int dt_autograd_visit_leaves(dt_tensor *root, dt_grad_ready_fn fn, void *ctx);

/* A tensor sharing t's storage with no grad_fn and requires_grad false. */
dt_tensor *dt_detach(dt_tensor *t);

/* ----------------------------------------------------- elementwise ops
 * NumPy broadcasting: shapes align at the right, a size-1 dim stretches. */
dt_tensor *dt_add(dt_tensor *a, dt_tensor *b);
dt_tensor *dt_sub(dt_tensor *a, dt_tensor *b);
dt_tensor *dt_mul(dt_tensor *a, dt_tensor *b);
dt_tensor *dt_div(dt_tensor *a, dt_tensor *b);
/* a^b elementwise (grad wrt b uses log a, defined for a > 0). */
dt_tensor *dt_pow(dt_tensor *a, dt_tensor *b);
dt_tensor *dt_neg(dt_tensor *a);
dt_tensor *dt_add_scalar(dt_tensor *a, double s);   /* a + s */
dt_tensor *dt_mul_scalar(dt_tensor *a, double s);   /* a * s */
dt_tensor *dt_div_scalar(dt_tensor *a, double s);   /* a / s */
dt_tensor *dt_rsub_scalar(dt_tensor *a, double s);  /* s - a */
dt_tensor *dt_rdiv_scalar(dt_tensor *a, double s);  /* s / a */
dt_tensor *dt_pow_scalar(dt_tensor *a, double p);   /* a^p */

dt_tensor *dt_exp(dt_tensor *a);
/* Natural log (dt_log is the logging call). */
dt_tensor *dt_ln(dt_tensor *a);
dt_tensor *dt_sqrt(dt_tensor *a);
dt_tensor *dt_tanh(dt_tensor *a);
dt_tensor *dt_sigmoid(dt_tensor *a);
dt_tensor *dt_relu(dt_tensor *a);
typedef enum { DT_GELU_ERF = 0, DT_GELU_TANH = 1 } dt_gelu_kind;
/* 0.5 x (1 + erf(x / sqrt 2)), or torch's approximate="tanh" form. */
dt_tensor *dt_gelu(dt_tensor *a, dt_gelu_kind kind);

/* ------------------------------------------------------------ reductions */
/* Sum / mean over the listed dims (ndims = 0: all dims), keeping them as size 1 when
 * keepdim. The result has a's dtype (f32 sums accumulate in f32, in blocks). */
dt_tensor *dt_sum(dt_tensor *a, const int *dims, int ndims, bool keepdim);
dt_tensor *dt_mean(dt_tensor *a, const int *dims, int ndims, bool keepdim);
/* Max over one dim (grad goes to the first maximal element, as torch's max(dim)). */
dt_tensor *dt_max(dt_tensor *a, int dim, bool keepdim);
/* Index of the first maximum over one dim, as i64; not differentiable. */
dt_tensor *dt_argmax(dt_tensor *a, int dim, bool keepdim);
/* Sum a down to a shape it broadcasts to (the gradient of a broadcast). */
dt_tensor *dt_sum_to(dt_tensor *a, int ndim, const int64_t *shape);

dt_tensor *dt_softmax(dt_tensor *a, int dim);
dt_tensor *dt_log_softmax(dt_tensor *a, int dim);

/* ---------------------------------------------------------------- matmul
 * torch.matmul: 1-D x 1-D is a dot product, 2-D x 2-D a matrix product, and batched
 * operands (..., m, k) x (..., k, n) broadcast their batch dims. Transposed operands
 * (a transpose view) go to the GEMM as transpose flags, not copies. f32 through our
 * AVX-512 SGEMM or cblas_sgemm (docs/tensor.md "GEMM"), f64 via cblas_dgemm, bf16/f16
 * through f32; DT_EDTYPE for integers. */
dt_tensor *dt_matmul(dt_tensor *a, dt_tensor *b);
/* x @ w^T + b (torch's F.linear): x (..., in), w (out, in), b (out) or NULL. One GEMM
 * with the bias as its starting value. */
dt_tensor *dt_linear(dt_tensor *x, dt_tensor *w, dt_tensor *b);

/* ----------------------------------------------------------------- views
 * These share a's storage (except dt_reshape and dt_contiguous when they must copy).
 * DT_ESHAPE / DT_EINVAL on impossible shapes or dims out of range. */
/* One size may be -1 (inferred). DT_ESHAPE when the strides cannot express it without
 * a copy (torch's view rule); use dt_reshape then. */
dt_tensor *dt_view(dt_tensor *a, int ndim, const int64_t *shape);
dt_tensor *dt_reshape(dt_tensor *a, int ndim, const int64_t *shape);
dt_tensor *dt_transpose(dt_tensor *a, int d0, int d1);
dt_tensor *dt_permute(dt_tensor *a, const int *dims);   /* dims: a's ndim entries */
dt_tensor *dt_narrow(dt_tensor *a, int dim, int64_t start, int64_t len);
/* Python's a[start:end:step] along dim (negative start/end count from the end and are
 * clamped, step >= 1). */
dt_tensor *dt_slice(dt_tensor *a, int dim, int64_t start, int64_t end, int64_t step);
/* Broadcast to shape (-1 keeps a size); new leading dims are allowed. */
dt_tensor *dt_expand(dt_tensor *a, int ndim, const int64_t *shape);
dt_tensor *dt_squeeze(dt_tensor *a, int dim);      /* DT_EINVAL when size(dim) != 1 */
dt_tensor *dt_unsqueeze(dt_tensor *a, int dim);    /* dim in -(ndim+1) .. ndim */
/* Merge dims start..end (inclusive) into one (a view when possible, else a copy). */
dt_tensor *dt_flatten(dt_tensor *a, int start, int end);
/* A contiguous tensor with a's values: a new handle on the same storage when a is
 * already contiguous, else a copy. */
dt_tensor *dt_contiguous(dt_tensor *a);
/* A copy in another dtype (differentiable between floating dtypes). */
dt_tensor *dt_to_dtype(dt_tensor *a, dt_dtype dtype);

/* -------------------------------------------------------------- the rest */
/* Concatenate n tensors along dim (same dtype; other sizes equal). */
dt_tensor *dt_cat(dt_tensor *const *ts, int n, int dim);
/* torch.split(a, size, dim): views of size `size` along dim, the last one shorter.
 * Writes up to max_out tensors into out (each a new reference) and returns how many
 * there are (DT_ERANGE, writing none, when more than max_out). */
int dt_split(dt_tensor *a, int64_t size, int dim, dt_tensor **out, int max_out);
/* value where mask is nonzero, a elsewhere; mask (u8, or any dtype) broadcasts to a. */
dt_tensor *dt_masked_fill(dt_tensor *a, dt_tensor *mask, double value);
/* u8 (t, t) with 1 above the diagonal: torch.triu(ones(t, t, dtype=bool), 1), the
 * positions a causal attention masks with -inf. */
dt_tensor *dt_causal_mask(int64_t t);

/* --------------------------------------------- writing differentiable ops
 * An op computes its output, then (when dt_needs_grad says so) records a node:
 *
 *   dt_tensor *out = ... forward ...;
 *   if (out && dt_needs_grad(in, 2)) {
 *       dt_node *n = dt_node_new("myop", myop_backward, in, 2);
 *       dt_node_save(n, in[0]);           // data backward needs (never creates cycles)
 *       dt_node_f64(n)[0] = alpha;        // scalar arguments
 *       out = dt_node_attach(n, out);     // NULL (out discarded) if anything failed
 *   }
 *
 * The backward function gets the gradient of the output (out's shape) and writes into
 * grad_in[i], for each i with dt_node_needs_input_grad(node, i), a tensor of input i's
 * shape and dtype (or NULL for zero). It runs in no-grad mode inside a scope of its
 * own, so it may use every op above freely; the engine retains what it returns. */
typedef struct dt_node dt_node;
typedef int (*dt_backward_fn)(dt_node *node, dt_tensor *grad_out, dt_tensor **grad_in);

#define DT_NODE_MAX_INPUTS 16

/* True when grad mode is on and some input requires grad (NULL inputs are skipped). */
bool dt_needs_grad(dt_tensor *const *inputs, int n);
/* A node for an op with n inputs (n <= DT_NODE_MAX_INPUTS); NULL + last error on
 * failure. name is borrowed (a string literal). Owned by the caller until attached. */
dt_node *dt_node_new(const char *name, dt_backward_fn fn, dt_tensor *const *inputs, int n);
/* Keep t's data for backward: saves a handle on t's storage without its grad_fn.
 * Saved tensors are numbered in call order. A failure is remembered and reported by
 * dt_node_attach. NULL node is a no-op. */
void dt_node_save(dt_node *node, dt_tensor *t);
/* Saved tensor i (borrowed, valid during backward). */
dt_tensor *dt_node_saved(const dt_node *node, int i);
/* Eight doubles and eight integers for the op's scalar arguments, zeroed. */
double *dt_node_f64(dt_node *node);
int64_t *dt_node_i64(dt_node *node);
/* Any other context: freed with free_fn (may be NULL) when the node goes. */
void dt_node_set_ctx(dt_node *node, void *ctx, void (*free_fn)(void *));
void *dt_node_ctx(const dt_node *node);
bool dt_node_needs_input_grad(const dt_node *node, int i);
/* Input i's shape and dtype as they were when the node was made. */
int dt_node_input_ndim(const dt_node *node, int i);
const int64_t *dt_node_input_shape(const dt_node *node, int i);
dt_dtype dt_node_input_dtype(const dt_node *node, int i);
const char *dt_node_name(const dt_node *node);
/* Make node out's grad_fn (the node then belongs to out) and return out. On failure
 * (node NULL, a failed save, out NULL or already recorded) the node is freed, out is
 * released from its scope (or for the caller) and NULL returned. */
dt_tensor *dt_node_attach(dt_node *node, dt_tensor *out);
/* Free a node that was never attached. NULL is a no-op. */
void dt_node_free(dt_node *node);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_AUTOGRAD_H */
