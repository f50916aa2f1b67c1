/* Elementwise kernels: out = f(x, y, s) over broadcast, strided operands, in f32 or
 * f64, for every op of DT__EW_OPS (forward formulas and their backward formulas).
 * Other dtypes are converted to the compute type (f32 for bf16/f16, f64 for integers),
 * computed and converted back. Does not record anything for autograd. */
#include "tensor/tensor_internal.h"

#include <math.h>

#include "tensor/vmath.h"

#define GELU_BETA 0.7978845608028654      /* sqrt(2 / pi) */
#define GELU_KAPPA 0.044715
#define GELU_INV_SQRT_2PI 0.3989422804014327

typedef struct {
    dt__ew_op op;
    double s;
} ew_ctx;

#define T float
#define SUF f32
#define F(name) name##f
#define V(name) dt__v##name##f
#include "tensor/k_ew_impl.h"
#undef T
#undef SUF
#undef F
#undef V

#define T double
#define SUF f64
#define F(name) name
#define V(name) V_##name
#define V_exp exp
#define V_erf erf
#define V_tanh tanh
#define V_sigmoid(x) ((T)1 / ((T)1 + exp(-(x))))
#define V_gelu(x) ((T)0.5 * (x) * ((T)1 + erf((x) * (T)M_SQRT1_2)))
#define V_gelu_grad(y) ((T)0.5 * ((T)1 + erf((y) * (T)M_SQRT1_2)) + (y) * (T)GELU_INV_SQRT_2PI * exp((T)-0.5 * (y) * (y)))
#include "tensor/k_ew_impl.h"
#undef T
#undef SUF
#undef F
#undef V
#undef V_exp
#undef V_erf
#undef V_tanh
#undef V_sigmoid
#undef V_gelu
#undef V_gelu_grad

static bool is_unary(dt__ew_op op)
{
    switch (op) {
    case DT__EW_NEG: case DT__EW_EXP: case DT__EW_LOG: case DT__EW_SQRT: case DT__EW_TANH:
    case DT__EW_SIGMOID: case DT__EW_RELU: case DT__EW_GELU: case DT__EW_GELU_TANH:
    case DT__EW_ADDS: case DT__EW_MULS: case DT__EW_DIVS: case DT__EW_RSUBS: case DT__EW_RDIVS: case DT__EW_POWS:
        return true;
    default:
        return false;
    }
}

static dt_dtype compute_type(dt_dtype t)
{
    return t == DT_F32 || t == DT_BF16 || t == DT_F16 ? DT_F32 : DT_F64;
}

/* Run op into out (f32 or f64, the same dtype as a and b). */
static int run(dt__ew_op op, dt_tensor *out, const dt_tensor *a, const dt_tensor *b, double s)
{
    dt__iter it;
    dt_tensor *ops[3] = {out, (dt_tensor *)a, (dt_tensor *)b};
    DT_CHECK(dt__iter_init(&it, 3, ops));
    ew_ctx c = {.op = op, .s = s};
    dt__iter_run(&it, out->dtype == DT_F32 ? ew_row_f32 : ew_row_f64, &c, true);
    return 0;
}

dt_tensor *dt__ew(dt__ew_op op, const dt_tensor *a, const dt_tensor *b, double s)
{
    if (is_unary(op)) b = a;
    if (!a || !b) { dt_set_error(DT_EINVAL, "elementwise op: NULL operand"); return NULL; }
    if (a->dtype != b->dtype) {
        dt_set_error(DT_EDTYPE, "elementwise op on %s and %s", dt_dtype_name((dt_dtype)a->dtype), dt_dtype_name((dt_dtype)b->dtype));
        return NULL;
    }
    int n;
    int64_t shape[DT_MAX_DIMS];
    if (dt__broadcast_shape(a->ndim, a->shape, b->ndim, b->shape, &n, shape) < 0) return NULL;
    dt_dtype dt = (dt_dtype)a->dtype, ct = compute_type(dt);
    if (dt != ct) {
        dt_tensor *a2 = dt__cast(a, ct), *b2 = b == a ? dt_tensor_retain(a2) : dt__cast(b, ct);
        dt_tensor *r = a2 && b2 ? dt__ew(op, a2, b2, s) : NULL;
        dt_tensor *out = r ? dt__cast(r, dt) : NULL;
        dt_tensor_release(a2);
        dt_tensor_release(b2);
        dt_tensor_release(r);
        return out;
    }
    dt_tensor *out = dt__empty(dt, n, shape);
    if (!out) return NULL;
    if (run(op, out, a, b, s) < 0) { dt_tensor_release(out); return NULL; }
    return out;
}

/* The f32 row of dt__gelu_f32_with_grad: p[0] the GELU, p[1] its derivative, p[2] x. */
DT__KERNEL static void gelu_both_row_f32(void *vctx, char **p, const int64_t *st, int64_t n)
{
    (void)vctx;
    float *o = (float *)p[0], *d = (float *)p[1];
    const float *a = (const float *)p[2];
    const int64_t so = st[0], sd = st[1], sa = st[2];
    if (so == 1 && sd == 1 && sa == 1)
        for (int64_t i = 0; i < n; i++) o[i] = dt__vgelu_bothf(a[i], &d[i]);
    else
        for (int64_t i = 0; i < n; i++) o[i * so] = dt__vgelu_bothf(a[i * sa], &d[i * sd]);
}

dt_tensor *dt__gelu_f32_with_grad(const dt_tensor *x, dt_tensor **grad)
{
    *grad = NULL;
    if (!x || x->dtype != DT_F32) {
        dt_set_error(DT_EINVAL, "gelu with grad: needs an f32 tensor");
        return NULL;
    }
    dt_tensor *out = dt__empty(DT_F32, x->ndim, x->shape), *d = dt__empty(DT_F32, x->ndim, x->shape);
    dt__iter it;
    dt_tensor *ops[3] = {out, d, (dt_tensor *)x};
    if (!out || !d || dt__iter_init(&it, 3, ops) < 0) {
        dt_tensor_release(out);
        dt_tensor_release(d);
        return NULL;
    }
    dt__iter_run(&it, gelu_both_row_f32, NULL, true);
    *grad = d;
    return out;
}

int dt__add_into(dt_tensor *dst, const dt_tensor *src)
{
    if (dst->dtype == src->dtype && (dst->dtype == DT_F32 || dst->dtype == DT_F64))
        return run(DT__EW_ADD, dst, dst, src, 0);
    dt_tensor *s2 = dt__cast(src, (dt_dtype)dst->dtype);
    dt_tensor *sum = s2 ? dt__ew(DT__EW_ADD, dst, s2, 0) : NULL;
    int rc = sum ? dt__copy(dst, sum) : dt_last_error_code();
    dt_tensor_release(s2);
    dt_tensor_release(sum);
    return rc;
}
