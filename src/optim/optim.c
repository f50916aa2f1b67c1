/* SGD, Adam and AdamW over parameter slots, with torch 1.13's single-tensor update
 * rules operation for operation in f32 (so results agree to the last bit or two):
 * every Python scalar (lr, betas, 1 - beta, ...) is computed in double and rounded
 * to float where torch hands it to a kernel, and each kernel keeps torch's order
 * of operations (addcmul: self + v*t1*t2, addcdiv: self + v*t1/t2).
 * State save/load is optim_state.c; schedules lr.c; clipping clip.c. */
#include "optim/optim_internal.h"

#include <dtrain/util.h>

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* The update loops are flat, branch-free per element and written to vectorise:
 * GCC is asked for -O3 and no errno from sqrtf (the argument is never negative). */
#if defined(__GNUC__) && !defined(__clang__)
#define DT__VEC __attribute__((optimize("O3", "no-math-errno")))
#else
#define DT__VEC
#endif

const char *dt__optim_kind_name(dt_optim_kind k)
{
    return k == DT_OPTIM_SGD ? "sgd" : k == DT_OPTIM_ADAM ? "adam" : k == DT_OPTIM_ADAMW ? "adamw" : "?";
}

int dt__optim_check_sgd(const dt_sgd_opts *o)
{
    if (!(o->lr >= 0)) return dt_set_error(DT_EINVAL, "SGD: invalid learning rate %g", o->lr);
    if (!(o->momentum >= 0)) return dt_set_error(DT_EINVAL, "SGD: invalid momentum %g", o->momentum);
    if (!(o->weight_decay >= 0)) return dt_set_error(DT_EINVAL, "SGD: invalid weight_decay %g", o->weight_decay);
    if (!isfinite(o->dampening)) return dt_set_error(DT_EINVAL, "SGD: invalid dampening %g", o->dampening);
    if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
        return dt_set_error(DT_EINVAL, "SGD: nesterov momentum requires a momentum and zero dampening");
    return 0;
}

int dt__optim_check_adam(const dt_adam_opts *o, const char *what)
{
    if (!(o->lr >= 0)) return dt_set_error(DT_EINVAL, "%s: invalid learning rate %g", what, o->lr);
    if (!(o->eps >= 0)) return dt_set_error(DT_EINVAL, "%s: invalid epsilon %g", what, o->eps);
    if (!(o->beta1 >= 0 && o->beta1 < 1)) return dt_set_error(DT_EINVAL, "%s: invalid beta1 %g", what, o->beta1);
    if (!(o->beta2 >= 0 && o->beta2 < 1)) return dt_set_error(DT_EINVAL, "%s: invalid beta2 %g", what, o->beta2);
    if (!(o->weight_decay >= 0)) return dt_set_error(DT_EINVAL, "%s: invalid weight_decay %g", what, o->weight_decay);
    return 0;
}

void dt_optim_free(dt_optim *opt)
{
    if (!opt) return;
    for (size_t i = 0; opt->slots && i < opt->n; i++) dt_free(opt->slots[i].name);
    dt_free(opt->slots);
    dt_free(opt->state);
    dt_free(opt);
}

static int check_slots(const dt_param_slot *s, size_t n)
{
    if (n && !s) return dt_set_error(DT_EINVAL, "optimizer: NULL slots with n = %zu", n);
    for (size_t i = 0; i < n; i++) {
        if (!s[i].name || !s[i].name[0]) return dt_set_error(DT_EINVAL, "optimizer: slot %zu has no name", i);
        if (s[i].numel < 0) return dt_set_error(DT_EINVAL, "optimizer: slot '%s' has numel %lld", s[i].name, (long long)s[i].numel);
        if (s[i].numel && !s[i].data) return dt_set_error(DT_EINVAL, "optimizer: slot '%s' has NULL data", s[i].name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(s[i].name, s[j].name) == 0)
                return dt_set_error(DT_EINVAL, "optimizer: parameter name '%s' appears twice", s[i].name);
    }
    return 0;
}

static dt_optim *optim_new(dt_optim_kind kind, const dt_param_slot *s, size_t n, int nstate)
{
    if (check_slots(s, n) < 0) return NULL;
    dt_optim *o = dt_calloc(1, sizeof *o, DT_MEM_OPTIM);
    if (!o) goto nomem;
    o->kind = kind;
    o->n = n;
    o->nstate = nstate;
    o->slots = dt_calloc(n ? n : 1, sizeof *o->slots, DT_MEM_OPTIM);
    if (!o->slots) goto nomem;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        o->slots[i].name = dt_strdup(s[i].name);
        if (!o->slots[i].name) goto nomem;
        o->slots[i].data = s[i].data;
        o->slots[i].grad = s[i].grad;
        o->slots[i].numel = s[i].numel;
        total += s[i].numel;
    }
    if (nstate) {
        size_t nfloat = (size_t)total * (size_t)nstate;
        o->state = dt_calloc(nfloat ? nfloat : 1, sizeof(float), DT_MEM_OPTIM);
        if (!o->state) goto nomem;
        float *p = o->state;
        for (size_t i = 0; i < n; i++) {
            o->slots[i].s0 = p;
            p += o->slots[i].numel;
            if (nstate > 1) {
                o->slots[i].s1 = p;
                p += o->slots[i].numel;
            }
        }
    }
    return o;
nomem:
    dt_error_wrap(DT_ENOMEM, "creating a %s optimizer over %zu parameters", dt__optim_kind_name(kind), n);
    dt_optim_free(o);
    return NULL;
}

dt_optim *dt_optim_sgd(const dt_param_slot *slots, size_t n, dt_sgd_opts o)
{
    if (dt__optim_check_sgd(&o) < 0) return NULL;
    dt_optim *opt = optim_new(DT_OPTIM_SGD, slots, n, o.momentum != 0 ? 1 : 0);
    if (opt) opt->sgd = o;
    return opt;
}

dt_optim *dt_optim_adam(const dt_param_slot *slots, size_t n, dt_adam_opts o)
{
    if (dt__optim_check_adam(&o, "Adam") < 0) return NULL;
    dt_optim *opt = optim_new(DT_OPTIM_ADAM, slots, n, 2);
    if (opt) opt->adam = o;
    return opt;
}

dt_optim *dt_optim_adamw(const dt_param_slot *slots, size_t n, dt_adam_opts o)
{
    if (dt__optim_check_adam(&o, "AdamW") < 0) return NULL;
    dt_optim *opt = optim_new(DT_OPTIM_ADAMW, slots, n, 2);
    if (opt) opt->adam = o;
    return opt;
}

int dt_optim_rebind(dt_optim *opt, const dt_param_slot *s, size_t n)
{
    if (!opt) return dt_set_error(DT_EINVAL, "dt_optim_rebind: NULL optimizer");
    DT_CHECK(check_slots(s, n));
    if (n != opt->n) return dt_set_error(DT_EMISMATCH, "dt_optim_rebind: %zu slots, the optimizer has %zu", n, opt->n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].name, opt->slots[i].name) != 0 || s[i].numel != opt->slots[i].numel)
            return dt_set_error(DT_EMISMATCH, "dt_optim_rebind: slot %zu is '%s' (%lld elements), expected '%s' (%lld)", i,
                                s[i].name, (long long)s[i].numel, opt->slots[i].name, (long long)opt->slots[i].numel);
    for (size_t i = 0; i < n; i++) {
        opt->slots[i].data = s[i].data;
        opt->slots[i].grad = s[i].grad;
    }
    return 0;
}

void dt_optim_set_lr(dt_optim *opt, double lr)
{
    if (!opt) return;
    if (opt->kind == DT_OPTIM_SGD) opt->sgd.lr = lr;
    else opt->adam.lr = lr;
}

double dt_optim_get_lr(const dt_optim *opt)
{
    return !opt ? 0 : opt->kind == DT_OPTIM_SGD ? opt->sgd.lr : opt->adam.lr;
}

dt_optim_kind dt_optim_get_kind(const dt_optim *opt) { return opt->kind; }

int64_t dt_optim_steps(const dt_optim *opt)
{
    int64_t m = 0;
    for (size_t i = 0; opt && i < opt->n; i++)
        if (opt->slots[i].step > m) m = opt->slots[i].step;
    return m;
}

void dt_optim_zero_grad(dt_optim *opt)
{
    for (size_t i = 0; opt && i < opt->n; i++)
        if (opt->slots[i].grad && opt->slots[i].numel) memset(opt->slots[i].grad, 0, (size_t)opt->slots[i].numel * sizeof(float));
}

/* ------------------------------------------------------------- kernels
 * p, g: the slot's parameter and gradient; buf/m/v its state; n elements.
 * Scalars arrive already rounded to float, as torch passes them to its kernels.
 * torch's CPU kernels (built for AVX2 with FMA) fuse a + alpha*b into one fma,
 * also in addcmul (self + (v*t1)*t2); the loops below use fmaf at the same places,
 * so the results agree bit for bit. Each loop is compiled twice: for CPUs with
 * FMA (fmaf is then one instruction and the loop vectorises) and without (fmaf
 * from libm: the same results, slower); dt_optim_step picks one at run time. */

/* SGD: d = g (+ wd p); buf = d on the first step else m buf + (1 - damp) d;
 * d = d + m buf (nesterov) or buf; p = p - lr d. */
#define SGD_BODY                                                                        \
    for (int64_t i = 0; i < n; i++) {                                                   \
        float d = sign * g[i];                                                          \
        if (wd != 0) d = fmaf(wd, p[i], d);                                             \
        if (has_mom) {                                                                  \
            float b = first ? d : fmaf(one_minus_damp, d, buf[i] * mom);                \
            buf[i] = b;                                                                 \
            d = nesterov ? fmaf(mom, b, d) : b;                                         \
        }                                                                               \
        p[i] = fmaf(neg_lr, d, p[i]);                                                   \
    }

/* Adam/AdamW: g (+ wd p for Adam); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
 * denom = sqrt(v) / sqrt(1 - b2^t) + eps; p = p - (lr / (1 - b1^t)) m / denom.
 * AdamW first scales p by 1 - lr wd. */
#define ADAM_BODY                                                                       \
    for (int64_t i = 0; i < n; i++) {                                                   \
        float pi = p[i] * decay;                                                        \
        float gi = sign * g[i];                                                         \
        if (wd != 0) gi = fmaf(wd, pi, gi);                                             \
        float mi = fmaf(omb1, gi, m[i] * b1);                                           \
        float vi = fmaf(omb2 * gi, gi, v[i] * b2);                                      \
        float denom = sqrtf(vi) / bc2s + eps;                                           \
        m[i] = mi;                                                                      \
        v[i] = vi;                                                                      \
        p[i] = pi + neg_step * mi / denom;                                              \
    }

#define SGD_ARGS float *restrict p, const float *restrict g, float *restrict buf, int64_t n, float sign, float wd, \
                 int has_mom, float mom, float one_minus_damp, float neg_lr, int first, int nesterov
#define ADAM_ARGS float *restrict p, const float *restrict g, float *restrict m, float *restrict v, int64_t n, float sign, \
                  float wd, float decay, float b1, float omb1, float b2, float omb2, float bc2s, float eps, float neg_step

DT__VEC static void sgd_generic(SGD_ARGS) { SGD_BODY }
DT__VEC static void adam_generic(ADAM_ARGS) { ADAM_BODY }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define DT__HAVE_FMA_PATH 1
DT__VEC __attribute__((target("avx2,fma"))) static void sgd_fma(SGD_ARGS) { SGD_BODY }
/* GCC will not vectorise sqrtf (it may set errno), so this one is written with
 * AVX intrinsics; each lane does exactly the scalar body's operations. */
__attribute__((target("avx2,fma"))) static void adam_fma(ADAM_ARGS)
{
    const __m256 vdecay = _mm256_set1_ps(decay), vsign = _mm256_set1_ps(sign), vwd = _mm256_set1_ps(wd);
    const __m256 vb1 = _mm256_set1_ps(b1), vomb1 = _mm256_set1_ps(omb1), vb2 = _mm256_set1_ps(b2);
    const __m256 vomb2 = _mm256_set1_ps(omb2), vbc2s = _mm256_set1_ps(bc2s), veps = _mm256_set1_ps(eps);
    const __m256 vstep = _mm256_set1_ps(neg_step);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 pi = _mm256_mul_ps(_mm256_loadu_ps(p + i), vdecay);
        __m256 gi = _mm256_mul_ps(vsign, _mm256_loadu_ps(g + i));
        if (wd != 0) gi = _mm256_fmadd_ps(vwd, pi, gi);
        __m256 mi = _mm256_fmadd_ps(vomb1, gi, _mm256_mul_ps(_mm256_loadu_ps(m + i), vb1));
        __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(vomb2, gi), gi, _mm256_mul_ps(_mm256_loadu_ps(v + i), vb2));
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vbc2s), veps);
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(p + i, _mm256_add_ps(pi, _mm256_div_ps(_mm256_mul_ps(vstep, mi), denom)));
    }
    p += i, g += i, m += i, v += i, n -= i;
    ADAM_BODY
}
#else
#define sgd_fma sgd_generic
#define adam_fma adam_generic
#endif

static int g_force_generic;
void dt__optim_force_generic(int on) { g_force_generic = on; }

static int use_fma(void)
{
#ifdef DT__HAVE_FMA_PATH
    static _Atomic int known = -1; /* threads that race here all store the same value */
    if (g_force_generic) return 0;
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        __builtin_cpu_init();
        k = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k;
#else
    return 0;
#endif
}

int dt_optim_step(dt_optim *opt)
{
    if (!opt) return dt_set_error(DT_EINVAL, "dt_optim_step: NULL optimizer");
    for (size_t i = 0; i < opt->n; i++) {
        dt__oslot *s = &opt->slots[i];
        if (!s->grad) continue;
        s->step++;
        if (opt->kind == DT_OPTIM_SGD) {
            const dt_sgd_opts *o = &opt->sgd;
            float sign = o->maximize ? -1.0f : 1.0f;
            int mom = o->momentum != 0;
            (use_fma() ? sgd_fma : sgd_generic)(s->data, s->grad, s->s0, s->numel, sign, (float)o->weight_decay, mom,
                                                (float)o->momentum, (float)(1 - o->dampening), (float)-o->lr,
                                                !s->has_buf, o->nesterov);
            if (mom) s->has_buf = true;
        } else {
            const dt_adam_opts *o = &opt->adam;
            double t = (double)s->step;
            double bc1 = 1 - pow(o->beta1, t), bc2 = 1 - pow(o->beta2, t);
            double step_size = o->lr / bc1;
            int w = opt->kind == DT_OPTIM_ADAMW;
            /* torch's AdamW: param.mul_(1 - lr * wd) (a no-op when wd == 0, as here) */
            float decay = w ? (float)(1 - o->lr * o->weight_decay) : 1.0f;
            (use_fma() ? adam_fma : adam_generic)(s->data, s->grad, s->s0, s->s1, s->numel, o->maximize ? -1.0f : 1.0f,
                                                  w ? 0.0f : (float)o->weight_decay, decay, (float)o->beta1,
                                                  (float)(1 - o->beta1), (float)o->beta2, (float)(1 - o->beta2),
                                                  (float)sqrt(bc2), (float)o->eps, (float)-step_size);
        }
    }
    return 0;
}
