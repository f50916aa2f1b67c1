/* nn's conv2d, max/avg pooling and losses against PyTorch 1.13: nn_ref.py computes
 * each case in torch, in float32 and float64, and writes inputs, targets, loss weights,
 * outputs and input gradients with the call's arguments (c.p); here each case runs the
 * same call in dtrain, backward from sum(out * w), and both are compared. Skips (with
 * the reason printed) when torch is not installed. */
#include "dt_test.h"
#include "dt_python.h"

#include <unistd.h>

static dt_st_file *g_ref;

/* A reference tensor as a new tensor of its own dtype; NULL when absent. */
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
    DT_ASSERT_MSG(dt_tensor_ndim(got) == dt_tensor_ndim(want) &&
                  memcmp(dt_tensor_shape(got), dt_tensor_shape(want), (size_t)dt_tensor_ndim(got) * 8) == 0,
                  "%s: shape %s vs torch %s", what, dt_tensor_describe(got, a, sizeof a), dt_tensor_describe(want, b, sizeof b));
    DT_ASSERT_MSG(dt_tensor_dtype(got) == dt_tensor_dtype(want), "%s: dtype %s vs torch %s", what,
                  dt_dtype_name(dt_tensor_dtype(got)), dt_dtype_name(dt_tensor_dtype(want)));
    dt_tensor *g = dt_contiguous(dt_to_dtype(got, DT_F64)), *w = dt_contiguous(dt_to_dtype(want, DT_F64));
    const double *gp = dt_tensor_data_f64(g), *wp = dt_tensor_data_f64(w);
    double scale = 1, worst = 0;
    int64_t at = 0, n = dt_tensor_numel(g);
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(wp[i]));
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(gp[i] - wp[i]);
        if (!(d <= worst)) { worst = d; at = i; }
    }
    DT_ASSERT_MSG(worst <= tol * scale, "%s: element %lld is %.12g, torch %.12g (tol %g x %g)", what, (long long)at,
                  n ? gp[at] : 0.0, n ? wp[at] : 0.0, tol, scale);
}

/* The call c.p describes (see nn_ref.py). */
static dt_tensor *run_case(const int64_t *p, dt_tensor **in, int nin, dt_tensor *target)
{
    const int64_t *a = p + 1;
    dt_reduction red = (dt_reduction)p[7];
    switch (p[0]) {
    case 0: return dt_conv2d(in[0], in[1], nin > 2 ? in[2] : NULL, (int)a[0], (int)a[1], (int)a[2], (int)a[3]);
    case 1: return dt_max_pool2d(in[0], (int)a[0], (int)a[1], (int)a[2], (int)a[3], (int)a[4], (int)a[5]);
    case 2: return dt_avg_pool2d(in[0], (int)a[0], (int)a[1], (int)a[2], (int)a[3], (int)a[4], (int)a[5]);
    case 3: return dt_cross_entropy_ex(in[0], target, red, p[8]);
    case 4: return dt_nll_loss(in[0], target, red, p[8]);
    case 5: return dt_mse_loss(in[0], in[1], red);
    default: dt_set_error(DT_EINVAL, "unknown case kind %lld", (long long)p[0]); return NULL;
    }
}

static int g_ran[2];   /* cases run in f32, f64 */

static void one_case(const char *name)
{
    DT_SCOPE {
        char key[128];
        bool f64 = strstr(name, ".f64") != NULL;
        snprintf(key, sizeof key, "%s.p", name);
        dt_tensor *pt = ref(key);
        DT_ASSERT_MSG(pt && dt_tensor_dtype(pt) == DT_I64 && dt_tensor_numel(pt) == 9, "%s: bad parameters", name);
        int64_t p[9];
        DT_ASSERT_OK(dt_tensor_read(pt, p, 9));
        dt_tensor *in[3] = {NULL};
        int n = 0;
        for (; n < 3; n++) {
            snprintf(key, sizeof key, "%s.in.%d", name, n);
            if (!(in[n] = ref(key))) break;
            DT_ASSERT_MSG(dt_tensor_dtype(in[n]) == (f64 ? DT_F64 : DT_F32), "%s: dtype", key);
            DT_ASSERT_OK(dt_tensor_set_requires_grad(in[n], true));
        }
        DT_ASSERT_MSG(n > 0, "%s: no inputs in the reference file", name);
        snprintf(key, sizeof key, "%s.target", name);
        dt_tensor *target = p[0] == 3 || p[0] == 4 ? ref(key) : NULL;
        DT_ASSERT_MSG(target || (p[0] != 3 && p[0] != 4), "%s: no target", key);
        dt_tensor *y = run_case(p, in, n, target);
        DT_ASSERT_MSG(y, "%s: %s", name, dt_last_error());
        /* safetensors_min stores 0-dim arrays as shape [1] */
        dt_tensor *y1 = dt_tensor_ndim(y) == 0 ? dt_reshape(y, DT_SHAPE(1)) : y;
        double tol = f64 ? 1e-10 : 1e-5;
        snprintf(key, sizeof key, "%s.out", name);
        expect_close(key, y1, ref(key), tol);
        snprintf(key, sizeof key, "%s.w", name);
        DT_ASSERT_OK(dt_backward(dt_sum(dt_mul(y1, ref(key)), NULL, 0, false)));
        for (int i = 0; i < n; i++) {
            snprintf(key, sizeof key, "%s.grad.%d", name, i);
            expect_close(key, dt_tensor_grad(in[i]), ref(key), tol);
        }
        g_ran[f64]++;
    }
}

/* Every case of the file (each c.p entry), in f32 and f64. */
static void t_cases(void)
{
    if (!g_ref) return;
    for (size_t i = 0; i < dt_st_count(g_ref); i++) {
        const char *nm = dt_st_at(g_ref, i)->name;
        size_t len = strlen(nm);
        if (len < 3 || len > 90 || strcmp(nm + len - 2, ".p") != 0) continue;
        char name[96];
        memcpy(name, nm, len - 2);
        name[len - 2] = 0;
        one_case(name);
    }
    /* nn_ref.py has 27 cases; a case lost from the file should not pass unnoticed */
    DT_ASSERT_MSG(g_ran[0] == 27 && g_ran[1] == 27, "ran %d f32 and %d f64 cases, want 27 each", g_ran[0], g_ran[1]);
}

int main(void)
{
    char dir[] = "/tmp/dt_torch_nn_XXXXXX", path[128];
    if (dt_py_have_torch() && mkdtemp(dir)) {
        snprintf(path, sizeof path, "%s/ref.safetensors", dir);
        if (dt_py_sh(DT_PY " " DT_SRC_DIR "/tests/nn/nn_ref.py %s", path) == 0) g_ref = dt_st_open(path);
        if (!g_ref) fprintf(stderr, "FAIL: nn_ref.py did not produce %s\n", path);
    }
    DT_RUN(t_cases);
    if (dt_py_have_torch() && !g_ref) return 1;
    dt_st_close(g_ref);
    dt_py_sh("rm -rf %s", dir);
    return DT_TEST_END();
}
