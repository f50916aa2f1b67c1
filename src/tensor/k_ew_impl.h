/* The elementwise row kernel, instantiated once per compute type by k_elementwise.c
 * (T = float or double, SUF = f32 or f64, F(name) = the libm function for T, V(name) =
 * the vectorisable one of tensor/vmath.h for f32, libm's for f64).
 * Each op is one expression in x (first operand), y (second; x again for unary ops)
 * and s (the scalar); four loops per op cover the stride patterns that matter. */
#define EW_LOOP(EXPR)                                                                    \
    if (so == 1 && sa == 1 && sb == 1) {                                                 \
        for (int64_t i = 0; i < n; i++) { T x = a[i], y = b[i]; (void)x; (void)y; o[i] = (EXPR); } \
    } else if (so == 1 && sa == 1 && sb == 0) {                                          \
        T y = b[0]; (void)y;                                                             \
        for (int64_t i = 0; i < n; i++) { T x = a[i]; (void)x; o[i] = (EXPR); }          \
    } else if (so == 1 && sa == 0 && sb == 1) {                                          \
        T x = a[0]; (void)x;                                                             \
        for (int64_t i = 0; i < n; i++) { T y = b[i]; (void)y; o[i] = (EXPR); }          \
    } else {                                                                             \
        for (int64_t i = 0; i < n; i++) { T x = a[i * sa], y = b[i * sb]; (void)x; (void)y; o[i * so] = (EXPR); } \
    }

DT__KERNEL static void DT__CAT(ew_row_, SUF)(void *vctx, char **p, const int64_t *st, int64_t n)
{
    const ew_ctx *c = vctx;
    T *o = (T *)p[0];
    const T *a = (const T *)p[1], *b = (const T *)p[2];
    const int64_t so = st[0], sa = st[1], sb = st[2];
    const T s = (T)c->s;
    (void)s;
    switch (c->op) {
    case DT__EW_ADD: EW_LOOP(x + y); break;
    case DT__EW_SUB: EW_LOOP(x - y); break;
    case DT__EW_MUL: EW_LOOP(x * y); break;
    case DT__EW_DIV: EW_LOOP(x / y); break;
    case DT__EW_POW: EW_LOOP(F(pow)(x, y)); break;
    case DT__EW_NEG: EW_LOOP(-x); break;
    case DT__EW_EXP: EW_LOOP(V(exp)(x)); break;
    case DT__EW_LOG: EW_LOOP(F(log)(x)); break;
    case DT__EW_SQRT: EW_LOOP(F(sqrt)(x)); break;
    case DT__EW_TANH: EW_LOOP(V(tanh)(x)); break;
    case DT__EW_SIGMOID: EW_LOOP(V(sigmoid)(x)); break;
    case DT__EW_RELU: EW_LOOP(x < 0 ? (T)0 : x); break;
    case DT__EW_GELU: EW_LOOP(V(gelu)(x)); break;
    case DT__EW_GELU_TANH:
        EW_LOOP((T)0.5 * x * ((T)1 + V(tanh)((T)GELU_BETA * (x + (T)GELU_KAPPA * x * x * x)))); break;
    case DT__EW_ADDS: EW_LOOP(x + s); break;
    case DT__EW_MULS: EW_LOOP(x * s); break;
    case DT__EW_DIVS: EW_LOOP(x / s); break;
    case DT__EW_RSUBS: EW_LOOP(s - x); break;
    case DT__EW_RDIVS: EW_LOOP(s / x); break;
    case DT__EW_POWS: EW_LOOP(F(pow)(x, s)); break;
    case DT__EW_MASKFILL: EW_LOOP(y != 0 ? s : x); break;
    case DT__EW_RELU_BW: EW_LOOP(y > 0 ? x : (T)0); break;
    case DT__EW_TANH_BW: EW_LOOP(x * ((T)1 - y * y)); break;
    case DT__EW_SIGMOID_BW: EW_LOOP(x * y * ((T)1 - y)); break;
    case DT__EW_GELU_BW:
        EW_LOOP(x * V(gelu_grad)(y)); break;
    case DT__EW_GELU_TANH_BW:
        EW_LOOP(x * ((T)0.5 * ((T)1 + V(tanh)((T)GELU_BETA * (y + (T)GELU_KAPPA * y * y * y)))
                     + (T)0.5 * y * ((T)1 - V(tanh)((T)GELU_BETA * (y + (T)GELU_KAPPA * y * y * y))
                                              * V(tanh)((T)GELU_BETA * (y + (T)GELU_KAPPA * y * y * y)))
                           * (T)GELU_BETA * ((T)1 + (T)3 * (T)GELU_KAPPA * y * y)));
        break;
    case DT__EW_POWS_BW: EW_LOOP(s == 0 ? (T)0 : x * s * F(pow)(y, s - (T)1)); break;
    case DT__EW_RDIVS_BW: EW_LOOP(-x * s / (y * y)); break;
    case DT__EW_SQRT_BW: EW_LOOP(x / ((T)2 * y)); break;
    default: break;
    }
}
#undef EW_LOOP
