/* The differentiable elementwise ops: binary with broadcasting (add, sub, mul, div,
 * pow), their scalar forms, and the unary functions. Forward is one tensor-layer
 * kernel call; backward reduces broadcast gradients with sum_to. */
#include "autograd/ag_internal.h"

/* A backward-formula kernel, adopted into the backward's scope. */
static dt_tensor *ew(dt__ew_op op, dt_tensor *x, dt_tensor *y, double s) { return dt__adopt(dt__ew(op, x, y, s)); }

static dt_tensor *to_input(dt_node *n, int i, dt_tensor *g)
{
    return dt_sum_to(g, dt_node_input_ndim(n, i), dt_node_input_shape(n, i));
}

static dt_tensor *binary(dt__ew_op op, const char *name, dt_backward_fn bw, dt_tensor *a, dt_tensor *b, unsigned save)
{
    if (!a || !b) { dt__null_arg(name); return NULL; }
    dt_tensor *in[2] = {a, b};
    return dt__record(dt__ew(op, a, b, 0), in, 2, &(dt__rec){.name = name, .fn = bw, .save_in = save});
}

static int add_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    if (dt_node_needs_input_grad(n, 0) && !(gi[0] = to_input(n, 0, g))) return dt_last_error_code();
    if (dt_node_needs_input_grad(n, 1) && !(gi[1] = to_input(n, 1, g))) return dt_last_error_code();
    return 0;
}

static int sub_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    if (dt_node_needs_input_grad(n, 0) && !(gi[0] = to_input(n, 0, g))) return dt_last_error_code();
    if (dt_node_needs_input_grad(n, 1) && !(gi[1] = to_input(n, 1, ew(DT__EW_NEG, g, NULL, 0)))) return dt_last_error_code();
    return 0;
}

static int mul_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt_tensor *a = dt_node_saved(n, 0), *b = dt_node_saved(n, 1);
    if (dt_node_needs_input_grad(n, 0) && !(gi[0] = to_input(n, 0, ew(DT__EW_MUL, g, b, 0)))) return dt_last_error_code();
    if (dt_node_needs_input_grad(n, 1) && !(gi[1] = to_input(n, 1, ew(DT__EW_MUL, g, a, 0)))) return dt_last_error_code();
    return 0;
}

static int div_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt_tensor *a = dt_node_saved(n, 0), *b = dt_node_saved(n, 1);
    if (dt_node_needs_input_grad(n, 0) && !(gi[0] = to_input(n, 0, ew(DT__EW_DIV, g, b, 0)))) return dt_last_error_code();
    if (dt_node_needs_input_grad(n, 1)) {
        /* d(a/b)/db = -a / b^2 */
        dt_tensor *t = ew(DT__EW_DIV, ew(DT__EW_MUL, g, a, 0), ew(DT__EW_MUL, b, b, 0), 0);
        if (!(gi[1] = to_input(n, 1, ew(DT__EW_NEG, t, NULL, 0)))) return dt_last_error_code();
    }
    return 0;
}

static int pow_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt_tensor *a = dt_node_saved(n, 0), *b = dt_node_saved(n, 1), *out = dt_node_saved(n, 2);
    if (dt_node_needs_input_grad(n, 0)) {
        /* b a^(b-1) */
        dt_tensor *t = ew(DT__EW_MUL, b, ew(DT__EW_POW, a, ew(DT__EW_ADDS, b, NULL, -1), 0), 0);
        if (!(gi[0] = to_input(n, 0, ew(DT__EW_MUL, g, t, 0)))) return dt_last_error_code();
    }
    if (dt_node_needs_input_grad(n, 1)) {
        /* a^b log a */
        dt_tensor *t = ew(DT__EW_MUL, out, ew(DT__EW_LOG, a, NULL, 0), 0);
        if (!(gi[1] = to_input(n, 1, ew(DT__EW_MUL, g, t, 0)))) return dt_last_error_code();
    }
    return 0;
}

dt_tensor *dt_add(dt_tensor *a, dt_tensor *b) { return binary(DT__EW_ADD, "add", add_bw, a, b, 0); }
dt_tensor *dt_sub(dt_tensor *a, dt_tensor *b) { return binary(DT__EW_SUB, "sub", sub_bw, a, b, 0); }
dt_tensor *dt_mul(dt_tensor *a, dt_tensor *b) { return binary(DT__EW_MUL, "mul", mul_bw, a, b, 3); }
dt_tensor *dt_div(dt_tensor *a, dt_tensor *b) { return binary(DT__EW_DIV, "div", div_bw, a, b, 3); }

dt_tensor *dt_pow(dt_tensor *a, dt_tensor *b)
{
    if (!a || !b) { dt__null_arg("pow"); return NULL; }
    dt_tensor *in[2] = {a, b};
    return dt__record(dt__ew(DT__EW_POW, a, b, 0), in, 2, &(dt__rec){.name = "pow", .fn = pow_bw, .save_in = 3, .save_out = true});
}

/* ------------------------------------------------------------------ unary
 * Each backward is one formula kernel of (grad, saved 0, scalar). */
static int unary_bw(dt_node *n, dt_tensor *g, dt_tensor **gi)
{
    dt__ew_op op = (dt__ew_op)dt_node_i64(n)[0];
    double s = dt_node_f64(n)[0];
    dt_tensor *saved = dt_node_saved(n, 0);
    gi[0] = op == DT__EW_COUNT ? g : ew(op, g, saved ? saved : g, s);
    return gi[0] ? 0 : dt_last_error_code();
}

/* op forward; bw_op its backward formula (DT__EW_COUNT: the identity); save: 0 none,
 * 1 the input, 2 the output. */
static dt_tensor *unary(dt__ew_op op, const char *name, dt_tensor *a, double s, dt__ew_op bw_op, double bw_s, int save)
{
    if (!a) { dt__null_arg(name); return NULL; }
    return dt__record(dt__ew(op, a, NULL, s), &a, 1,
                      &(dt__rec){.name = name, .fn = unary_bw, .save_in = save == 1, .save_out = save == 2, .f = {bw_s}, .i = {bw_op}});
}

dt_tensor *dt_neg(dt_tensor *a) { return unary(DT__EW_NEG, "neg", a, 0, DT__EW_MULS, -1, 0); }
dt_tensor *dt_exp(dt_tensor *a) { return unary(DT__EW_EXP, "exp", a, 0, DT__EW_MUL, 0, 2); }
dt_tensor *dt_ln(dt_tensor *a) { return unary(DT__EW_LOG, "log", a, 0, DT__EW_DIV, 0, 1); }
dt_tensor *dt_sqrt(dt_tensor *a) { return unary(DT__EW_SQRT, "sqrt", a, 0, DT__EW_SQRT_BW, 0, 2); }
dt_tensor *dt_tanh(dt_tensor *a) { return unary(DT__EW_TANH, "tanh", a, 0, DT__EW_TANH_BW, 0, 2); }
dt_tensor *dt_sigmoid(dt_tensor *a) { return unary(DT__EW_SIGMOID, "sigmoid", a, 0, DT__EW_SIGMOID_BW, 0, 2); }
dt_tensor *dt_relu(dt_tensor *a) { return unary(DT__EW_RELU, "relu", a, 0, DT__EW_RELU_BW, 0, 2); }

/* The exact form in f32 computes its derivative with the forward, which shares Phi(x)
 * with it, and keeps that instead of the input: backward is then one multiply where it
 * would recompute Phi (the same bits), and the input is not held for backward. */
dt_tensor *dt_gelu(dt_tensor *a, dt_gelu_kind kind)
{
    if (kind == DT_GELU_TANH) return unary(DT__EW_GELU_TANH, "gelu", a, 0, DT__EW_GELU_TANH_BW, 0, 1);
    if (!a || a->dtype != DT_F32 || !dt_needs_grad(&a, 1)) return unary(DT__EW_GELU, "gelu", a, 0, DT__EW_GELU_BW, 0, 1);
    dt_tensor *d = NULL, *out = dt__gelu_f32_with_grad(a, &d);
    out = dt__record(out, &a, 1, &(dt__rec){.name = "gelu", .fn = unary_bw, .save_extra = d, .i = {DT__EW_MUL}});
    dt_tensor_release(d);
    return out;
}

dt_tensor *dt_add_scalar(dt_tensor *a, double s) { return unary(DT__EW_ADDS, "add_scalar", a, s, DT__EW_COUNT, 0, 0); }
dt_tensor *dt_mul_scalar(dt_tensor *a, double s) { return unary(DT__EW_MULS, "mul_scalar", a, s, DT__EW_MULS, s, 0); }
dt_tensor *dt_div_scalar(dt_tensor *a, double s) { return unary(DT__EW_DIVS, "div_scalar", a, s, DT__EW_DIVS, s, 0); }
dt_tensor *dt_rsub_scalar(dt_tensor *a, double s) { return unary(DT__EW_RSUBS, "rsub_scalar", a, s, DT__EW_MULS, -1, 0); }
dt_tensor *dt_rdiv_scalar(dt_tensor *a, double s) { return unary(DT__EW_RDIVS, "rdiv_scalar", a, s, DT__EW_RDIVS_BW, s, 1); }
dt_tensor *dt_pow_scalar(dt_tensor *a, double p) { return unary(DT__EW_POWS, "pow_scalar", a, p, DT__EW_POWS_BW, p, 1); }
