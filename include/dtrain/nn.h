/* dtrain nn: torch.nn.functional's layers and losses as differentiable ops (conv, pool,
 * norm, embedding, dropout, attention, losses), and modules with named parameters and
 * buffers, PyTorch's default initialisations, train/eval mode and state_dicts saved and
 * loaded as safetensors.
 *
 * The functional ops follow autograd.h's rules: each returns a new reference owned by the
 * innermost scope (or the caller), arguments are borrowed, a NULL input or a failure gives
 * NULL + last error, and each records its backward when grad mode is on and an input
 * requires grad. f32 and f64 compute natively; bf16/f16 go through f32. Index tensors
 * (targets, token ids) are i64 or i32. */
#ifndef DTRAIN_NN_H
#define DTRAIN_NN_H

#include <dtrain/tensor.h>
#include <dtrain/autograd.h>
#include <dtrain/optim.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================ functional */

/* F.conv2d(x, w, b, stride, padding): x (N, C, H, W), w (O, C, kh, kw), b (O) or NULL;
 * zero padding, no dilation or groups. Out (N, O, Ho, Wo), Ho = (H + 2*pad_h - kh) /
 * stride_h + 1 (floor); an unbatched x (C, H, W) gives (O, Ho, Wo), as torch.
 * DT_ESHAPE when channels differ, b is not (O) or the output would be empty, DT_EINVAL
 * for a stride < 1 or a negative padding. im2col + GEMM, or for stride 1 in f32 GEMMs
 * over shifted windows of the padded input (docs/nn.md). */
dt_tensor *dt_conv2d(dt_tensor *x, dt_tensor *w, dt_tensor *b, int stride_h, int stride_w,
                     int pad_h, int pad_w);
/* max_pool2d(relu(conv2d(x, w, b, 1, 1, pad_h, pad_w)), 2, 2, 2, 2, 0, 0) as one op: the
 * same values and gradients, without writing the full-size conv output, its relu or
 * their gradients (f32, 4-D x, padding at most kernel - 1, on a CPU with AVX-512);
 * elsewhere it runs the three ops. nn.Sequential runs Conv2d(stride 1), ReLU,
 * MaxPool2d(2) children through it. Errors as the three ops. */
dt_tensor *dt_conv2d_relu_max_pool2d(dt_tensor *x, dt_tensor *w, dt_tensor *b, int pad_h, int pad_w);

/* F.max_pool2d / F.avg_pool2d(x, kernel, stride, padding) on (N, C, H, W) or (C, H, W),
 * floor mode, no dilation. Max: padding counts as -inf, the gradient goes to the first
 * maximum of each window (torch's choice; a NaN counts as the maximum). Avg:
 * count_include_pad=True (torch's default). Kernel and stride at least 1 (torch's
 * stride=None is stride = kernel), padding at most half the kernel (DT_EINVAL otherwise,
 * as torch); DT_ESHAPE when the kernel exceeds the padded input. */
dt_tensor *dt_max_pool2d(dt_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h,
                         int pad_w);
dt_tensor *dt_avg_pool2d(dt_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h,
                         int pad_w);

typedef enum { DT_REDUCTION_MEAN = 0, DT_REDUCTION_SUM = 1, DT_REDUCTION_NONE = 2 } dt_reduction;
/* torch's default ignore_index. */
#define DT_IGNORE_INDEX (-100)

/* F.cross_entropy with class indices: logits (N, C), target (N) of class ids (i64/i32).
 * MEAN divides by the number of targets that are not ignore_index (NaN when all are,
 * as torch); NONE gives (N) with 0 at ignored positions. DT_ERANGE for a target outside
 * 0..C-1 that is not ignore_index. Fused: log_softmax and the gather in one pass, and
 * the backward (softmax - onehot) / count without materialising log-probabilities. */
dt_tensor *dt_cross_entropy_ex(dt_tensor *logits, dt_tensor *target, dt_reduction red,
                               int64_t ignore_index);
/* Mean reduction, ignore_index -100. */
dt_tensor *dt_cross_entropy(dt_tensor *logits, dt_tensor *target);
/* F.nll_loss(logp, target, reduction, ignore_index): logp (N, C) of log-probabilities. */
dt_tensor *dt_nll_loss(dt_tensor *logp, dt_tensor *target, dt_reduction red, int64_t ignore_index);
/* F.mse_loss(a, b, reduction): (a - b)^2, a and b broadcast. */
dt_tensor *dt_mse_loss(dt_tensor *a, dt_tensor *b, dt_reduction red);

/* F.layer_norm(x, normalized_shape = x's last nnorm dims, w, b, eps): biased variance,
 * w and b of the normalized shape, or NULL. Fused: backward uses the per-row mean and
 * rstd kept by the forward. DT_EINVAL for nnorm outside 1..ndim or a negative eps,
 * DT_ESHAPE / DT_EDTYPE for a w or b of another shape / dtype than x's. */
dt_tensor *dt_layer_norm(dt_tensor *x, int nnorm, dt_tensor *w, dt_tensor *b, double eps);

/* F.embedding(idx, weight): weight (num, dim), idx i64 or i32 of any shape; out
 * (*idx.shape, dim). The gradient (dense, num x dim) scatter-adds into weight's rows,
 * deterministically (each element sums its ids in order, whatever the thread count).
 * DT_ERANGE for an id outside 0..num-1, DT_EDTYPE for an idx of another dtype. */
dt_tensor *dt_embedding(dt_tensor *weight, dt_tensor *idx);

/* F.dropout(x, p, training): each element zeroed with probability p and the rest scaled
 * by 1/(1-p), the mask drawn from g (advancing it by ceil(numel / 4) blocks): element i
 * is kept when the f32 uniform dt_tensor_uniform_ would draw for it is >= p, so the
 * mask depends on g and x's shape only, never on the thread count. p == 1 gives zeros.
 * When training is false or p == 0, nothing is drawn (g may be NULL) and the result is
 * a new handle on x's storage, same shape, strides and values, whose gradient passes
 * through unchanged. DT_EINVAL for p outside [0, 1] or a NULL g while training with
 * p > 0. */
dt_tensor *dt_dropout(dt_tensor *x, double p, bool training, dt_rng *g);

/* F.scaled_dot_product_attention(q, k, v, is_causal, scale): q (..., L, E),
 * k (..., S, E), v (..., S, Ev), batch dims equal; out (..., L, Ev) =
 * softmax(q k^T * scale + mask) v, scale 0 meaning 1/sqrt(E); causal masks key j > query i
 * (torch's is_causal: the top-left triangle). Fused: batch entries run in parallel, each
 * compute thread holding one entry's (L, S) scores at a time; backward recomputes them
 * from q, k and two numbers per query row. q, k, v may be strided views (unit stride on
 * the last dim costs no copy). DT_ESHAPE for mismatched shapes, DT_EDTYPE for mixed or
 * integer dtypes, DT_EINVAL for a non-finite scale. */
dt_tensor *dt_sdpa(dt_tensor *q, dt_tensor *k, dt_tensor *v, bool causal, double scale);

/* =================================================================== modules
 * torch.nn.Module in C: a tree of modules, each with named parameters, buffers and
 * children, a forward function, and train/eval mode.
 *
 *   dt_rng g = dt_rng_make(seed, dt_rng_stream(DT_RNG_INIT, 0));
 *   dt_module *layers[] = {dt_nn_flatten(), dt_nn_linear(784, 256, true, &g), dt_nn_relu(),
 *                          dt_nn_linear(256, 10, true, &g)};
 *   dt_module *net = dt_nn_sequential(4, layers);   // names 1.weight 1.bias 3.weight 3.bias
 *   size_t n; const dt_param_slot *s = dt_module_slots(net, &n);
 *   dt_optim *opt = dt_optim_sgd(s, n, so);
 *   DT_SCOPE { dt_backward(dt_cross_entropy(dt_module_forward(net, x), y)); }
 *   dt_optim_step(opt);
 *   dt_module_save(net, "net.safetensors");          // loads in torch with strict=True
 *   dt_module_free(net);
 *
 * Flat buffers. The first time the tree is used (forward, parameter list, slots, save,
 * load, or dt_module_finalize) the root packs every parameter of the tree, in torch's
 * named_parameters() order (a module's own parameters in registration order, then each
 * child's, depth first), into ONE contiguous f32 parameter buffer (DT_MEM_PARAM) and a
 * gradient buffer of the same layout (DT_MEM_GRAD, zeroed), both 64-byte aligned. Each
 * parameter tensor is then a view of its slice, requires grad, and has the matching
 * gradient slice as its .grad (dt_tensor_set_grad_buffer), so backward accumulates
 * straight into the flat gradient buffer; a sub-module's parameters are one contiguous
 * slice of its root's buffers. Adding a child or parameter anywhere in a packed tree marks
 * it for repacking at the next use: parameter tensors, pointers, lists and slots obtained
 * before are then invalid (build the whole model first, then make the optimizer).
 *
 * Names. Children and parameters are named without dots, unique within their module;
 * full names are dotted paths ("blocks.0.qkv.weight") as torch's state_dict keys.
 *
 * Ownership. A module belongs to its creator until it is added to a parent, which then
 * owns it; free only roots, with dt_module_free. Tensors returned by the lookups are
 * borrowed from the module. Parameters must be f32; buffers may have any dtype.
 * Not done (torch has them): shared (tied) parameters, non-persistent buffers,
 * forward hooks, multiple forward inputs (pack them in a custom module's ctx). */
typedef struct dt_module dt_module;

/* forward(self, x, ctx): returns a new reference owned by the innermost scope (as every
 * op does), or NULL with the last error set. x is borrowed. ctx is dt_module_new's. */
typedef dt_tensor *(*dt_module_forward_fn)(dt_module *self, dt_tensor *x, void *ctx);

/* A custom module. type_name is copied ("Block"); forward may be NULL for a pure
 * container (dt_module_forward then fails with DT_EINVAL). ctx is owned by the module
 * when free_ctx is given (called at dt_module_free), borrowed otherwise. Starts in
 * training mode. NULL + DT_ENOMEM (ctx is then not freed). */
dt_module *dt_module_new(const char *type_name, dt_module_forward_fn forward, void *ctx,
                         void (*free_ctx)(void *));

/* Register child under name (torch's `self.name = child`). Takes ownership of child in
 * every case: on failure (DT_EINVAL: NULL m, bad or duplicate name; DT_ENOMEM) child is
 * freed, so `dt_module_add_child(m, "fc", dt_nn_linear(...))` needs no cleanup; a NULL
 * child returns the error its constructor left (or DT_EINVAL). A child that already has
 * a parent is refused (DT_EINVAL) and left to its owner. */
int dt_module_add_child(dt_module *m, const char *name, dt_module *child);

/* Register a parameter (nn.Parameter): a new f32 tensor of init's shape and values
 * (init is borrowed and copied; any strides). DT_EDTYPE unless init is f32, DT_EINVAL
 * for a bad or duplicate name, DT_ENOMEM. */
int dt_module_add_param(dt_module *m, const char *name, dt_tensor *init);
/* Register a buffer (register_buffer, persistent): a copy of init, any dtype; saved
 * and loaded with the parameters, never given to optimizers. */
int dt_module_add_buffer(dt_module *m, const char *name, dt_tensor *init);

/* Lookups by name or dotted path ("blocks.0.ln1", "blocks.0.qkv.weight"); NULL (and
 * DT_ENOTFOUND) when absent. Borrowed. dt_module_param packs the tree first when needed,
 * so its result is the packed view (valid until a repack or dt_module_free). */
dt_module *dt_module_child(dt_module *m, const char *path);
dt_tensor *dt_module_param(dt_module *m, const char *path);
dt_tensor *dt_module_buffer(dt_module *m, const char *path);
/* Direct children in registration order: count, and the i-th (name borrowed). */
size_t dt_module_num_children(const dt_module *m);
dt_module *dt_module_child_at(const dt_module *m, size_t i, const char **name);
/* "Linear", "Sequential", or the custom type name. Borrowed. */
const char *dt_module_type(const dt_module *m);
/* The ctx given to dt_module_new (NULL for built-ins' callers to ignore). */
void *dt_module_ctx(const dt_module *m);

/* Run m's forward on x (packing the tree first when needed). Result as forward_fn. */
dt_tensor *dt_module_forward(dt_module *m, dt_tensor *x);
/* model.train(on) / model.eval(): sets the mode of m and every descendant. */
void dt_module_train(dt_module *m, bool on);
bool dt_module_is_training(const dt_module *m);

/* Pack the tree m belongs to now (its root's buffers), instead of at first use.
 * DT_ENOMEM leaves the tree as it was. */
int dt_module_finalize(dt_module *m);

/* One parameter of the packed tree. Everything is borrowed from the module, valid
 * until a repack, dt_module_set_grad_storage (grad pointers) or dt_module_free. */
typedef struct {
    const char *name;        /* full name relative to the module asked ("1.weight") */
    dt_tensor *param;        /* view of the parameter buffer, requires grad */
    dt_tensor *grad;         /* view of the gradient buffer; param's .grad */
    float *data;             /* [numel] = dt_module_param_buffer(m) + offset */
    float *grad_data;        /* [numel] = dt_module_grad_buffer(m) + offset */
    int64_t offset;          /* elements from the start of m's parameter slice */
    int64_t numel;
    int ndim;
    const int64_t *shape;    /* [ndim] */
} dt_named_param;

/* m's parameters (its own and its descendants', named relative to m) in
 * named_parameters() order, n receiving the count. NULL with *n = 0 on failure (or when
 * there are none: then the last error is not set). */
const dt_named_param *dt_module_params(dt_module *m, size_t *n);
/* One buffer of the tree (e.g. for ddp.h's dt_ddp_new, whose dt_ddp_tensor has this
 * layout). Borrowed, as dt_named_param. */
typedef struct {
    const char *name;        /* full name relative to the module asked */
    dt_tensor *t;
} dt_named_buffer;
/* m's buffers in named_buffers() order; NULL with *n = 0 when there are none. */
const dt_named_buffer *dt_module_buffers(dt_module *m, size_t *n);
/* The same as optimizer slots (names and buffers borrowed, as above). */
const dt_param_slot *dt_module_slots(dt_module *m, size_t *n);
/* m's slice of the flat parameter / gradient buffer: pointer and element count
 * (*count may be NULL). NULL when m has no parameters or packing failed. */
float *dt_module_param_buffer(dt_module *m, int64_t *count);
float *dt_module_grad_buffer(dt_module *m, int64_t *count);
/* Total parameter elements of m's subtree (torch: sum(p.numel() for p in m.parameters())). */
int64_t dt_module_num_params(dt_module *m);
/* Zero m's slice of the gradient buffer (model.zero_grad(set_to_none=False)). */
void dt_module_zero_grad(dt_module *m);

/* Move the root's gradients into buf (borrowed: at least dt_module_num_params(m) floats,
 * valid, as long as the module uses it; e.g. a DDP bucket in shared memory): the current
 * gradient values are copied into buf and every parameter's .grad becomes a view of it.
 * NULL moves them back to the module's own buffer. Lists and slots obtained before then
 * point at the old gradients: fetch them again (and dt_optim_rebind). A repack (see
 * above) moves the gradients back to the module's own buffer. DT_EINVAL unless m is a root. */
int dt_module_set_grad_storage(dt_module *m, float *buf);

/* state_dict as safetensors: every parameter (F32) and buffer of m's subtree under its
 * full name, written atomically (dt_st_write). Loads in torch with
 * load_state_dict(strict=True). Errors as dt_st_write. */
int dt_module_save(dt_module *m, const char *path);
/* load_state_dict(strict=True) from a safetensors file (from dt_module_save, torch via
 * the safetensors package or bench/safetensors_min.py). The whole file is checked before
 * anything changes: DT_EMISMATCH (a key missing from the file, or a key the module does not
 * have), DT_ESHAPE (a shape differs), DT_EDTYPE (a dtype differs), DT_ECORRUPT (malformed
 * file), DT_ENOTFOUND (no file); the message names the key. The values are copied. */
int dt_module_load(dt_module *m, const char *path);

/* The same state as one part of a larger file (a snapshot): every parameter and buffer
 * under prefix + its full name added to l (data borrowed from the module until l is
 * written); and loading it back from an open file with dt_module_load's checks, looking
 * only at names under prefix (label names the file in messages). */
int dt_module_state_add(dt_module *m, dt_st_list *l, const char *prefix);
int dt_module_state_load(dt_module *m, const dt_st_file *f, const char *prefix, const char *label);

/* Free m and everything it owns (children, parameters, buffers, flat buffers, ctx).
 * NULL is a no-op. A module that has a parent is owned by it: passing one logs a warning
 * and does nothing. */
void dt_module_free(dt_module *m);

/* ------------------------------------------------------- built-in modules
 * PyTorch's default initialisations (TORCH_SEMANTICS.md), drawn from g (advanced): not
 * torch's random numbers, the same distributions. Each returns a new root module owned by
 * the caller, NULL + last error (DT_EINVAL for bad sizes, DT_ENOMEM). Input shapes as the
 * functional ops above. */
/* nn.Linear: weight (out, in), bias (out); both uniform in +-1/sqrt(in). */
dt_module *dt_nn_linear(int64_t in, int64_t out, bool bias, dt_rng *g);
/* nn.Conv2d(cin, cout, k, stride, padding): weight (cout, cin, k, k), bias (cout); both
 * uniform in +-1/sqrt(cin*k*k). Zero padding. */
dt_module *dt_nn_conv2d(int64_t cin, int64_t cout, int k, int stride, int pad, bool bias, dt_rng *g);
/* nn.MaxPool2d(k, stride): stride 0 means k (torch's default). */
dt_module *dt_nn_max_pool2d(int k, int stride);
dt_module *dt_nn_relu(void);
dt_module *dt_nn_gelu(dt_gelu_kind kind);
/* nn.Flatten(): dims 1..-1 into one. */
dt_module *dt_nn_flatten(void);
/* nn.LayerNorm(n, eps) over the last dim: weight ones (n), bias zeros (n). */
dt_module *dt_nn_layer_norm(int64_t n, double eps);
/* nn.Embedding(num, dim): weight (num, dim) ~ N(0, 1). Input: integer ids. */
dt_module *dt_nn_embedding(int64_t num, int64_t dim, dt_rng *g);
/* nn.Dropout(p): active in training mode only. The module keeps its own generator,
 * a copy of *g (NULL: seed 0, stream dt_rng_stream(DT_RNG_DROPOUT, 0)), advanced by
 * every mask it draws. */
dt_module *dt_nn_dropout(double p, const dt_rng *g);
/* nn.Sequential(children...): takes ownership of the n children (all of them, also on
 * failure; NULL entries make it fail), named "0", "1", ...; forward chains them. */
dt_module *dt_nn_sequential(int n, dt_module *const *children);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_NN_H */
