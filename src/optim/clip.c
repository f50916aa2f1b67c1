/* Gradient clipping by global L2 norm, as torch.nn.utils.clip_grad_norm_ (norm_type 2):
 * each gradient's norm (accumulated in double, rounded to f32 as torch's f32 norm is),
 * the norm of those norms, coef = max_norm * (1 / (total + 1e-6)) clamped to 1 in f32,
 * every gradient multiplied by coef. */
#include <dtrain/optim.h>

#include <math.h>

double dt_clip_grad_norm(const dt_param_slot *slots, size_t n, double max_norm)
{
    double sumsq = 0;
    int any = 0;
    for (size_t i = 0; slots && i < n; i++) {
        const float *g = slots[i].grad;
        if (!g) continue;
        any = 1;
        double s = 0;
        for (int64_t k = 0; k < slots[i].numel; k++) s += (double)g[k] * g[k];
        float norm = (float)sqrt(s);
        sumsq += (double)norm * norm;
    }
    if (!any) return 0;
    float total = (float)sqrt(sumsq);
    float coef = (1.0f / (total + 1e-6f)) * (float)max_norm;
    if (coef > 1.0f) coef = 1.0f; /* NaN stays NaN, as torch.clamp */
    for (size_t i = 0; i < n; i++) {
        float *g = slots[i].grad;
        if (!g) continue;
        for (int64_t k = 0; k < slots[i].numel; k++) g[k] *= coef;
    }
    return total;
}
