/* dtrain optim: SGD, Adam and AdamW with PyTorch's exact update rules, learning-rate
 * schedules (StepLR, CosineAnnealingLR, LinearLR, linear warm-up then cosine), gradient
 * clipping by global L2 norm, and optimizer state saved as safetensors.
 *
 * Optimizers work on parameter slots: named, contiguous f32 buffers of a parameter and
 * its gradient. They know nothing of tensors, modules or ranks; the nn layer hands its
 * parameters in as slots and DDP/FSDP hand in the (sharded) flat views they own. */
#ifndef DTRAIN_OPTIM_H
#define DTRAIN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <dtrain/safetensors.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One parameter. Borrowed: data and grad must stay valid while the optimizer uses
 * them (dt_optim_rebind points it at new buffers). A NULL grad means "no gradient
 * this step" and the slot is skipped, as torch skips parameters whose .grad is None. */
typedef struct {
    const char *name;   /* unique; names the state in saved files ("0.weight") */
    float *data;        /* [numel] */
    float *grad;        /* [numel] or NULL */
    int64_t numel;
} dt_param_slot;

/* torch.optim.SGD. */
typedef struct {
    double lr;
    double momentum;      /* 0: no momentum buffer */
    double dampening;
    double weight_decay;  /* L2 penalty added to the gradient */
    bool nesterov;        /* needs momentum > 0 and dampening == 0 */
    bool maximize;
} dt_sgd_opts;
#define DT_SGD_OPTS_INIT {.lr = 1e-3, .momentum = 0, .dampening = 0, .weight_decay = 0, .nesterov = false, .maximize = false}

/* torch.optim.Adam / AdamW. */
typedef struct {
    double lr;
    double beta1, beta2;
    double eps;
    double weight_decay;  /* Adam: L2 added to the gradient; AdamW: decoupled decay */
    bool maximize;
} dt_adam_opts;
#define DT_ADAM_OPTS_INIT {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0, .maximize = false}
#define DT_ADAMW_OPTS_INIT {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01, .maximize = false}

typedef enum { DT_OPTIM_SGD, DT_OPTIM_ADAM, DT_OPTIM_ADAMW } dt_optim_kind;

typedef struct dt_optim dt_optim;

/* Constructors. The slots array is copied (names too); the buffers are borrowed.
 * Optimizer state (momentum buffers, Adam moments) lives in one flat block counted
 * as DT_MEM_OPTIM. NULL + DT_EINVAL for bad options (negative lr, betas outside
 * [0, 1), nesterov without momentum or with dampening, ...) or slots (NULL or
 * duplicate names, negative numel, NULL data), DT_ENOMEM. Free with dt_optim_free. */
dt_optim *dt_optim_sgd(const dt_param_slot *slots, size_t n, dt_sgd_opts o);
dt_optim *dt_optim_adam(const dt_param_slot *slots, size_t n, dt_adam_opts o);
dt_optim *dt_optim_adamw(const dt_param_slot *slots, size_t n, dt_adam_opts o);
void dt_optim_free(dt_optim *opt);  /* NULL is a no-op */

/* One update of every slot that has a gradient (torch's optimizer.step()). */
int dt_optim_step(dt_optim *opt);
/* Set every gradient to 0 (torch's zero_grad(set_to_none=False)). */
void dt_optim_zero_grad(dt_optim *opt);

/* The learning rate used by the next step (for schedulers: set it before each step). */
void dt_optim_set_lr(dt_optim *opt, double lr);
double dt_optim_get_lr(const dt_optim *opt);
dt_optim_kind dt_optim_get_kind(const dt_optim *opt);
/* Steps taken (the largest per-slot step count). */
int64_t dt_optim_steps(const dt_optim *opt);

/* Point the optimizer at new buffers for the same parameters: n, every name and
 * numel must match the construction's (DT_EMISMATCH otherwise; nothing changes). */
int dt_optim_rebind(dt_optim *opt, const dt_param_slot *slots, size_t n);

/* Save the state as safetensors (written atomically, see dt_st_write):
 *   state.<name>.step             I64 scalar, steps this slot has taken
 *   state.<name>.momentum_buffer  F32 [numel] (SGD with momentum, once it exists)
 *   state.<name>.exp_avg          F32 [numel] (Adam/AdamW)
 *   state.<name>.exp_avg_sq       F32 [numel] (Adam/AdamW)
 * and the hyperparameters (torch's param_groups) in __metadata__: "optimizer"
 * ("sgd", "adam", "adamw"), "lr", "momentum", ... as decimal text that reads back exactly. */
int dt_optim_save(const dt_optim *opt, const char *path);

/* Load a saved state into an optimizer of the same kind over parameters of the same
 * names and sizes, restoring the hyperparameters too (as torch's load_state_dict).
 * Everything is checked before anything changes: DT_EMISMATCH (other kind, state
 * for a parameter this optimizer lacks), DT_ESHAPE (a size differs), DT_ECORRUPT
 * (a malformed file or missing entries), plus the errors of dt_st_open. */
int dt_optim_load(dt_optim *opt, const char *path);

/* The same state as parts of a larger file (a snapshot): entries named
 * prefix + "state.<name>.<what>" and metadata keys prefix + "lr", ... added to l
 * (the step counts and buffers stay borrowed from the optimizer until l is written);
 * and loading from such a file, looking only at names and keys with that prefix,
 * with dt_optim_load's checks (label names the file in messages). */
int dt_optim_state_add(const dt_optim *opt, dt_st_list *l, const char *prefix);
int dt_optim_state_load(dt_optim *opt, const dt_st_file *f, const char *prefix, const char *label);

/* Scale the gradients so that their total L2 norm (over all slots with a gradient)
 * is at most max_norm, as torch.nn.utils.clip_grad_norm_: coef = max_norm /
 * (total + 1e-6), applied when below 1. Returns the total norm before clipping
 * (NaN or inf when a gradient is not finite; the gradients are then scaled by
 * NaN/0 as torch does). */
double dt_clip_grad_norm(const dt_param_slot *slots, size_t n, double max_norm);

/* ----------------------------------------------------------- LR schedules
 * Closed forms of torch's schedulers, as a function of the number of scheduler
 * steps taken (epoch = 0 before the first scheduler.step()). Set the optimizer's
 * lr from them: dt_optim_set_lr(opt, dt_lr_at(&sched, epoch)). */
typedef enum {
    DT_LR_CONSTANT,       /* base_lr */
    DT_LR_STEP,           /* StepLR: base_lr * gamma^floor(epoch / step_size) */
    DT_LR_COSINE,         /* CosineAnnealingLR: eta_min + (base_lr - eta_min)(1 + cos(pi epoch / t_max)) / 2 */
    DT_LR_LINEAR,         /* LinearLR: base_lr * (start + (end - start) min(epoch, total_iters) / total_iters) */
    DT_LR_WARMUP_COSINE,  /* SequentialLR([LinearLR(start, 1, warmup), CosineAnnealingLR(t_max, eta_min)], [warmup]) */
} dt_lr_kind;

typedef struct {
    dt_lr_kind kind;
    double base_lr;
    int64_t step_size;            /* STEP */
    double gamma;                 /* STEP */
    int64_t t_max;                /* COSINE, WARMUP_COSINE (the cosine part's length) */
    double eta_min;               /* COSINE, WARMUP_COSINE */
    double start_factor;          /* LINEAR, WARMUP_COSINE */
    double end_factor;            /* LINEAR */
    int64_t total_iters;          /* LINEAR; WARMUP_COSINE: the warm-up length */
} dt_lr_sched;

dt_lr_sched dt_lr_step(double base_lr, int64_t step_size, double gamma);
dt_lr_sched dt_lr_cosine(double base_lr, int64_t t_max, double eta_min);
dt_lr_sched dt_lr_linear(double base_lr, double start_factor, double end_factor, int64_t total_iters);
dt_lr_sched dt_lr_warmup_cosine(double base_lr, int64_t warmup, double start_factor, int64_t t_max, double eta_min);
/* DT_EINVAL when the parameters make no schedule (step_size or t_max < 1,
 * factors outside torch's ranges, negative total_iters); 0 otherwise. */
int dt_lr_check(const dt_lr_sched *s);
/* The learning rate after `epoch` scheduler steps (epoch < 0 is taken as 0);
 * NaN when dt_lr_check fails. */
double dt_lr_at(const dt_lr_sched *s, int64_t epoch);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_OPTIM_H */
