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
 * for a stride < 1 or a negative padding. im2col + GEMM (docs/nn.md). */
dt_tensor *dt_conv2d(dt_tensor *x, dt_tensor *w, dt_tensor *b, int stride_h, int stride_w,
                     int pad_h, int pad_w);

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

/* =================================================================== modules */
/* (declared below by the modules part) */

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_NN_H */
