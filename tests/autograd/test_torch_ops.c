/* Forward results and gradients of the ops against PyTorch 1.13: ops_ref.py computes
 * each case in torch and writes inputs, loss weights, outputs and input gradients; here
 * each case's closure runs the same op in dtrain, backward from sum(out * w), and both
 * are compared. Skips (with the reason printed) when torch is not installed. */
#include "dt_test.h"
#include "dt_python.h"

#include <unistd.h>

static dt_st_file *g_ref;

typedef dt_tensor *(*case_fn)(dt_tensor **in);

static dt_tensor *c_add(dt_tensor **in) { return dt_add(in[0], in[1]); }
static dt_tensor *c_sub(dt_tensor **in) { return dt_sub(in[0], in[1]); }
static dt_tensor *c_mul(dt_tensor **in) { return dt_mul(in[0], in[1]); }
static dt_tensor *c_div(dt_tensor **in) { return dt_div(in[0], in[1]); }
static dt_tensor *c_pow(dt_tensor **in) { return dt_pow(in[0], in[1]); }
static dt_tensor *c_scalars(dt_tensor **in) { return dt_add_scalar(dt_div_scalar(dt_mul_scalar(dt_rsub_scalar(in[0], 2.5), 3), 1.5), 0.25); }
static dt_tensor *c_rdiv_pow(dt_tensor **in) { return dt_add(dt_rdiv_scalar(in[0], 2), dt_pow_scalar(in[0], 1.5)); }
static dt_tensor *c_exp(dt_tensor **in) { return dt_exp(in[0]); }
static dt_tensor *c_log(dt_tensor **in) { return dt_ln(in[0]); }
static dt_tensor *c_sqrt(dt_tensor **in) { return dt_sqrt(in[0]); }
static dt_tensor *c_tanh(dt_tensor **in) { return dt_tanh(in[0]); }
static dt_tensor *c_sigmoid(dt_tensor **in) { return dt_sigmoid(in[0]); }
static dt_tensor *c_relu(dt_tensor **in) { return dt_relu(in[0]); }
static dt_tensor *c_gelu(dt_tensor **in) { return dt_gelu(in[0], DT_GELU_ERF); }
static dt_tensor *c_gelu_tanh(dt_tensor **in) { return dt_gelu(in[0], DT_GELU_TANH); }
static dt_tensor *c_sum_dim1_keep(dt_tensor **in) { return dt_sum(in[0], (int[]){1}, 1, true); }
/* safetensors_min stores 0-dim arrays as shape [1] (numpy.ascontiguousarray): compare that. */
static dt_tensor *c_sum_all(dt_tensor **in) { return dt_reshape(dt_sum(in[0], NULL, 0, false), DT_SHAPE(1)); }
static dt_tensor *c_mean_dims02(dt_tensor **in) { return dt_mean(in[0], (int[]){0, 2}, 2, false); }
static dt_tensor *c_max_dim1(dt_tensor **in) { return dt_max(in[0], 1, false); }
static dt_tensor *c_softmax_last(dt_tensor **in) { return dt_softmax(in[0], -1); }
static dt_tensor *c_log_softmax_dim0(dt_tensor **in) { return dt_log_softmax(in[0], 0); }
static dt_tensor *c_matmul(dt_tensor **in) { return dt_matmul(in[0], in[1]); }
static dt_tensor *c_matmul_t(dt_tensor **in) { return dt_matmul(dt_transpose(in[0], 0, 1), dt_transpose(in[1], 0, 1)); }
static dt_tensor *c_linear(dt_tensor **in) { return dt_linear(in[0], in[1], in[2]); }
static dt_tensor *c_masked_softmax(dt_tensor **in) { return dt_softmax(dt_masked_fill(in[0], dt_causal_mask(6), -INFINITY), -1); }
static dt_tensor *c_gelu_bf16(dt_tensor **in) { return dt_gelu(in[0], DT_GELU_ERF); }

static dt_tensor *c_cat_views(dt_tensor **in)
{
    dt_tensor *a = in[0], *b = in[1];
    dt_tensor *parts[3] = {dt_reshape(dt_transpose(a, 1, 2), DT_SHAPE(2, 2, 6)), dt_reshape(b, DT_SHAPE(2, 1, 6)),
                           dt_reshape(dt_slice(a, 2, 0, 4, 3), DT_SHAPE(2, 1, 6))};
    return dt_cat(parts, 3, 1);
}

/* The GPT job's attention: linear to qkv, split, heads, causal softmax, projection. */
static dt_tensor *c_attention(dt_tensor **in)
{
    dt_tensor *x = in[0];
    int64_t B = dt_tensor_size(x, 0), T = dt_tensor_size(x, 1), C = dt_tensor_size(x, 2), H = 2;
    dt_tensor *qkv[3];
    if (dt_split(dt_linear(x, in[1], NULL), C, 2, qkv, 3) != 3) return NULL;
    for (int i = 0; i < 3; i++) qkv[i] = dt_transpose(dt_view(qkv[i], DT_SHAPE(B, T, H, C / H)), 1, 2);
    dt_tensor *att = dt_div_scalar(dt_matmul(qkv[0], dt_transpose(qkv[1], -2, -1)), sqrt((double)(C / H)));
    att = dt_softmax(dt_masked_fill(att, dt_causal_mask(T), -INFINITY), -1);
    return dt_linear(dt_reshape(dt_transpose(dt_matmul(att, qkv[2]), 1, 2), DT_SHAPE(B, T, C)), in[2], NULL);
}

static const struct {
    const char *name;
    case_fn fn;
    double tol;   /* relative to the largest |value| of the tensor compared */
} CASES[] = {
    {"add_bcast", c_add, 1e-6}, {"sub_bcast", c_sub, 1e-6}, {"mul_bcast", c_mul, 1e-6}, {"div", c_div, 1e-6},
    {"pow", c_pow, 1e-5}, {"scalars", c_scalars, 1e-6}, {"rdiv_pow", c_rdiv_pow, 1e-6}, {"exp", c_exp, 1e-6},
    {"log", c_log, 1e-6}, {"sqrt", c_sqrt, 1e-6}, {"tanh", c_tanh, 1e-6}, {"sigmoid", c_sigmoid, 1e-6},
    {"relu", c_relu, 0}, {"gelu", c_gelu, 1e-6}, {"gelu_tanh", c_gelu_tanh, 1e-6},
    {"sum_dim1_keep", c_sum_dim1_keep, 1e-6}, {"sum_all", c_sum_all, 1e-6}, {"mean_dims02", c_mean_dims02, 1e-6},
    {"max_dim1", c_max_dim1, 0}, {"softmax_last", c_softmax_last, 1e-6}, {"log_softmax_dim0", c_log_softmax_dim0, 1e-6},
    {"matmul", c_matmul, 1e-6}, {"matmul_t", c_matmul_t, 1e-6}, {"matmul_batched", c_matmul, 1e-6},
    {"matmul_vec", c_matmul, 1e-6}, {"linear", c_linear, 1e-6}, {"masked_softmax", c_masked_softmax, 1e-6},
    {"cat_views", c_cat_views, 0}, {"attention", c_attention, 1e-5},
    {"matmul_bf16", c_matmul, 1e-2}, {"gelu_bf16", c_gelu_bf16, 1e-2},
};

/* A reference tensor as a new f32 tensor (or bf16 when asked); NULL when absent. */
static dt_tensor *ref(const char *key, dt_dtype as)
{
    const dt_st_tensor *t = dt_st_find(g_ref, key);
    if (!t) return NULL;
    dt_tensor *out = dt_empty(t->dtype, t->ndim, t->shape);
    if (!out || dt_tensor_write(out, t->data, t->numel) < 0) return NULL;
    return as == t->dtype ? out : dt_to_dtype(out, as);
}

/* max |got - want| <= tol * max(1, max |want|), element by element in f64. */
static void expect_close(const char *what, dt_tensor *got, dt_tensor *want, double tol)
{
    DT_ASSERT_MSG(got && want, "%s: missing (%s)", what, dt_last_error());
    char a[96], b[96];
    DT_ASSERT_MSG(dt_tensor_ndim(got) == dt_tensor_ndim(want) &&
                  memcmp(dt_tensor_shape(got), dt_tensor_shape(want), (size_t)dt_tensor_ndim(got) * 8) == 0,
                  "%s: shape %s vs torch %s", what, dt_tensor_describe(got, a, sizeof a), dt_tensor_describe(want, b, sizeof b));
    dt_tensor *g = dt_contiguous(dt_to_dtype(got, DT_F64)), *w = dt_contiguous(dt_to_dtype(want, DT_F64));
    const double *gp = dt_tensor_data_f64(g), *wp = dt_tensor_data_f64(w);
    double scale = 1, worst = 0;
    int64_t at = 0, n = dt_tensor_numel(g);
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(wp[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(gp[i] - wp[i]);
        if (!(d <= worst)) { worst = d; at = i; }
    }
    DT_ASSERT_MSG(worst <= tol * scale, "%s: element %lld is %.9g, torch %.9g (tol %g x %g)", what, (long long)at, gp[at], wp[at], tol, scale);
}

static void t_cases(void)
{
    if (!g_ref) return;
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        DT_SCOPE {
            const char *name = CASES[c].name;
            dt_dtype dt = strstr(name, "_bf16") ? DT_BF16 : DT_F32;
            dt_tensor *in[4] = {NULL};
            char key[96];
            int n = 0;
            for (; n < 4; n++) {
                snprintf(key, sizeof key, "%s.in.%d", name, n);
                if (!(in[n] = ref(key, dt))) break;
                DT_ASSERT_OK(dt_tensor_set_requires_grad(in[n], true));
            }
            DT_ASSERT_MSG(n > 0, "%s: no inputs in the reference file", name);
            dt_tensor *y = CASES[c].fn(in);
            snprintf(key, sizeof key, "%s.out", name);
            expect_close(key, y, ref(key, dt), CASES[c].tol);
            snprintf(key, sizeof key, "%s.w", name);
            DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(y, ref(key, dt)), NULL, 0, false)));
            for (int i = 0; i < n; i++) {
                snprintf(key, sizeof key, "%s.grad.%d", name, i);
                expect_close(key, dt_tensor_grad(in[i]), ref(key, dt), CASES[c].tol);
            }
        }
    }
}

static void t_argmax(void)
{
    if (!g_ref) return;
    DT_SCOPE {
        dt_tensor *x = ref("argmax.in.0", DT_F32), *want = ref("argmax.out", DT_I64);
        dt_tensor *got = dt_argmax(x, 1, false);
        DT_ASSERT(got && dt_tensor_dtype(got) == DT_I64);
        expect_close("argmax", got, want, 0);
    }
}

int main(void)
{
    char dir[] = "/tmp/dt_torch_ops_XXXXXX", path[128];
    if (dt_py_have_torch() && mkdtemp(dir)) {
        snprintf(path, sizeof path, "%s/ref.safetensors", dir);
        if (dt_py_sh(DT_PY " " DT_SRC_DIR "/tests/autograd/ops_ref.py %s", path) == 0) g_ref = dt_st_open(path);
        if (!g_ref) fprintf(stderr, "FAIL: ops_ref.py did not produce %s\n", path);
    }
    DT_RUN(t_cases);
    DT_RUN(t_argmax);
    if (dt_py_have_torch() && !g_ref) return 1;
    dt_st_close(g_ref);
    dt_py_sh("rm -rf %s", dir);
    return DT_TEST_END();
}
