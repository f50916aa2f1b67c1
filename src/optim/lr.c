/* Learning-rate schedules: the closed forms of torch's StepLR, CosineAnnealingLR,
 * LinearLR and SequentialLR(LinearLR warm-up, CosineAnnealingLR). torch steps most of
 * these recursively (lr_t from lr_{t-1}); the closed forms agree with that to
 * rounding in double (~1e-15 relative), which the tests check against torch itself. */
#include <dtrain/optim.h>
#include <dtrain/util.h>

#include <math.h>

dt_lr_sched dt_lr_step(double base_lr, int64_t step_size, double gamma)
{
    return (dt_lr_sched){.kind = DT_LR_STEP, .base_lr = base_lr, .step_size = step_size, .gamma = gamma};
}

dt_lr_sched dt_lr_cosine(double base_lr, int64_t t_max, double eta_min)
{
    return (dt_lr_sched){.kind = DT_LR_COSINE, .base_lr = base_lr, .t_max = t_max, .eta_min = eta_min};
}

dt_lr_sched dt_lr_linear(double base_lr, double start_factor, double end_factor, int64_t total_iters)
{
    return (dt_lr_sched){.kind = DT_LR_LINEAR, .base_lr = base_lr, .start_factor = start_factor,
                         .end_factor = end_factor, .total_iters = total_iters};
}

dt_lr_sched dt_lr_warmup_cosine(double base_lr, int64_t warmup, double start_factor, int64_t t_max, double eta_min)
{
    return (dt_lr_sched){.kind = DT_LR_WARMUP_COSINE, .base_lr = base_lr, .total_iters = warmup,
                         .start_factor = start_factor, .end_factor = 1.0, .t_max = t_max, .eta_min = eta_min};
}

static double cosine(double base, double eta_min, int64_t t, int64_t t_max)
{
    return eta_min + (base - eta_min) * (1 + cos(M_PI * (double)t / (double)t_max)) / 2;
}

static double linear(double base, double s, double e, int64_t t, int64_t total)
{
    if (total == 0) return base * e;
    return base * (s + (e - s) * (double)(t < total ? t : total) / (double)total);
}

int dt_lr_check(const dt_lr_sched *s)
{
    if (!s) return dt_set_error(DT_EINVAL, "LR schedule: NULL");
    switch (s->kind) {
    case DT_LR_CONSTANT: return 0;
    case DT_LR_STEP:
        if (s->step_size < 1) return dt_set_error(DT_EINVAL, "StepLR: step_size %lld < 1", (long long)s->step_size);
        return 0;
    case DT_LR_COSINE:
        if (s->t_max < 1) return dt_set_error(DT_EINVAL, "CosineAnnealingLR: T_max %lld < 1", (long long)s->t_max);
        return 0;
    case DT_LR_LINEAR:
    case DT_LR_WARMUP_COSINE:
        if (!(s->start_factor > 0 && s->start_factor <= 1))
            return dt_set_error(DT_EINVAL, "LinearLR: start_factor %g outside (0, 1]", s->start_factor);
        if (!(s->end_factor >= 0 && s->end_factor <= 1))
            return dt_set_error(DT_EINVAL, "LinearLR: end_factor %g outside [0, 1]", s->end_factor);
        if (s->total_iters < 0) return dt_set_error(DT_EINVAL, "LinearLR: total_iters %lld < 0", (long long)s->total_iters);
        if (s->kind == DT_LR_WARMUP_COSINE && s->t_max < 1)
            return dt_set_error(DT_EINVAL, "warm-up cosine: T_max %lld < 1", (long long)s->t_max);
        return 0;
    }
    return dt_set_error(DT_EINVAL, "LR schedule: unknown kind %d", (int)s->kind);
}

double dt_lr_at(const dt_lr_sched *s, int64_t epoch)
{
    if (dt_lr_check(s) < 0) return NAN;
    if (epoch < 0) epoch = 0;
    switch (s->kind) {
    case DT_LR_STEP: return s->base_lr * pow(s->gamma, (double)(epoch / s->step_size));
    case DT_LR_COSINE: return cosine(s->base_lr, s->eta_min, epoch, s->t_max);
    case DT_LR_LINEAR: return linear(s->base_lr, s->start_factor, s->end_factor, epoch, s->total_iters);
    case DT_LR_WARMUP_COSINE:
        if (epoch < s->total_iters) return linear(s->base_lr, s->start_factor, 1.0, epoch, s->total_iters);
        return cosine(s->base_lr, s->eta_min, epoch - s->total_iters, s->t_max);
    default: return s->base_lr;
    }
}
