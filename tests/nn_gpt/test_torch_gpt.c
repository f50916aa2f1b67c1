/* layer_norm, embedding and attention against PyTorch 1.13, in f32 and f64: gpt_ref.py
 * computes each case in torch (attention unfused, as the reference GPT does) and writes
 * inputs, loss weights, outputs and input gradients; here each case's closure runs the
 * same computation with dtrain's fused ops (dt_sdpa for the attention), backward from
 * sum(out * w), and both are compared. Skips (with the reason printed) when torch is
 * not installed. */
#include "dt_test.h"
#include "dt_python.h"

#include <unistd.h>

static dt_st_file *g_ref;

typedef dt_tensor *(*case_fn)(dt_tensor **in);

static dt_tensor *c_layer_norm(dt_tensor **in) { return dt_layer_norm(in[0], 1, in[1], in[2], 1e-5); }
static dt_tensor *c_layer_norm_2d(dt_tensor **in) { return dt_layer_norm(in[0], 2, NULL, NULL, 1e-5); }
static dt_tensor *c_embedding(dt_tensor **in) { return dt_embedding(in[0], in[1]); }

static dt_tensor *c_embedding_tok_pos(dt_tensor **in)
{
    int64_t T = dt_tensor_size(in[2], 1);
    return dt_add(dt_embedding(in[0], in[2]), dt_embedding(in[1], dt_arange(DT_I64, 0, (double)T, 1)));
}

static dt_tensor *c_sdpa_causal(dt_tensor **in) { return dt_sdpa(in[0], in[1], in[2], true, 0); }
static dt_tensor *c_sdpa_cross(dt_tensor **in) { return dt_sdpa(in[0], in[1], in[2], false, 0.3); }

/* The GPT block's attention: linear to qkv, split, heads as views, fused causal sdpa,
 * heads merged, projection. */
static dt_tensor *c_gpt_attention(dt_tensor **in)
{
    dt_tensor *x = in[0];
    int64_t B = dt_tensor_size(x, 0), T = dt_tensor_size(x, 1), C = dt_tensor_size(x, 2), H = 4;
    dt_tensor *qkv[3];
    if (dt_split(dt_linear(x, in[1], in[2]), C, 2, qkv, 3) != 3) return NULL;
    for (int i = 0; i < 3; i++) qkv[i] = dt_transpose(dt_view(qkv[i], DT_SHAPE(B, T, H, C / H)), 1, 2);
    dt_tensor *y = dt_sdpa(qkv[0], qkv[1], qkv[2], true, 0);
    return dt_linear(dt_reshape(dt_transpose(y, 1, 2), DT_SHAPE(B, T, C)), in[3], NULL);
}

static const struct {
    const char *name;
    case_fn fn;
    double tol32;   /* relative to max(1, the largest |value| of the tensor compared) */
} CASES[] = {
    {"layer_norm", c_layer_norm, 2e-6},
    {"layer_norm_2d_noaffine", c_layer_norm_2d, 2e-6},
    {"layer_norm_gpt", c_layer_norm, 2e-6},
    {"embedding", c_embedding, 0},
    {"embedding_tok_pos", c_embedding_tok_pos, 1e-7},
    {"sdpa_causal", c_sdpa_causal, 1e-6},
    {"sdpa_causal_t128", c_sdpa_causal, 1e-6},
    {"sdpa_cross", c_sdpa_cross, 1e-6},
    {"gpt_attention", c_gpt_attention, 2e-6},
};

/* A reference tensor as a new tensor of its stored dtype; NULL when absent. */
static dt_tensor *ref(const char *key)
{
    const dt_st_tensor *t = dt_st_find(g_ref, key);
    if (!t) return NULL;
    dt_tensor *out = dt_empty(t->dtype, t->ndim, t->shape);
    if (!out || dt_tensor_write(out, t->data, t->numel) < 0) return NULL;
    return out;
}

/* max |got - want| <= tol * max(1, max |want|), element by element in f64. */
static void expect_close(const char *what, dt_tensor *got, dt_tensor *want, double tol)
{
    DT_ASSERT_MSG(got && want, "%s: missing (%s)", what, dt_last_error());
    char a[96], b[96];
    DT_ASSERT_MSG(dt_tensor_dtype(got) == dt_tensor_dtype(want), "%s: dtype %s vs torch %s", what,
                  dt_dtype_name(dt_tensor_dtype(got)), dt_dtype_name(dt_tensor_dtype(want)));
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
    DT_ASSERT_MSG(worst <= tol * scale, "%s: element %lld is %.12g, torch %.12g (tol %g x %g)", what, (long long)at, gp[at], wp[at], tol, scale);
}

static void t_cases(void)
{
    if (!g_ref) return;
    for (int f64 = 0; f64 < 2; f64++)
        for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
            DT_SCOPE {
                char name[96], key[128];
                snprintf(name, sizeof name, "%s_%s", CASES[c].name, f64 ? "f64" : "f32");
                double tol = f64 ? 1e-12 : CASES[c].tol32;
                dt_tensor *in[4] = {NULL};
                int n = 0;
                for (; n < 4; n++) {
                    snprintf(key, sizeof key, "%s.in.%d", name, n);
                    if (!(in[n] = ref(key))) break;
                    if (dt_dtype_is_float(dt_tensor_dtype(in[n]))) DT_ASSERT_OK(dt_tensor_set_requires_grad(in[n], true));
                }
                DT_ASSERT_MSG(n > 0, "%s: no inputs in the reference file", name);
                dt_tensor *y = CASES[c].fn(in);
                snprintf(key, sizeof key, "%s.out", name);
                expect_close(key, y, ref(key), tol);
                snprintf(key, sizeof key, "%s.w", name);
                DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(y, ref(key)), NULL, 0, false)));
                for (int i = 0; i < n; i++) {
                    if (!dt_dtype_is_float(dt_tensor_dtype(in[i]))) continue;
                    snprintf(key, sizeof key, "%s.grad.%d", name, i);
                    expect_close(key, dt_tensor_grad(in[i]), ref(key), tol);
                }
            }
        }
}

int main(void)
{
    char dir[] = "/tmp/dt_torch_gpt_XXXXXX", path[128];
    if (dt_py_have_torch() && mkdtemp(dir)) {
        snprintf(path, sizeof path, "%s/ref.safetensors", dir);
        if (dt_py_sh(DT_PY " " DT_SRC_DIR "/tests/nn_gpt/gpt_ref.py %s", path) == 0) g_ref = dt_st_open(path);
        if (!g_ref) fprintf(stderr, "FAIL: gpt_ref.py did not produce %s\n", path);
    }
    DT_RUN(t_cases);
    if (dt_py_have_torch() && !g_ref) return 1;
    dt_st_close(g_ref);
    if (dt_py_have_torch()) dt_py_sh("rm -rf %s", dir);
    return DT_TEST_END();
}
