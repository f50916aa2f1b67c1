/* Modules against PyTorch 1.13 (/usr/bin/python3): state dicts saved here load into torch's
 * own nn.Sequential MLP and CNN of torch_fmnist_ddp.py with load_state_dict(strict=True),
 * through bench/safetensors_min.py and the safetensors package (from /usr/bin/python3, or a
 * venv in the build folder that this test makes with pip; skipped with the reason printed
 * when neither works); torch's forward on the loaded weights equals ours; models
 * initialised and saved by torch (both writers) load here and give torch's outputs; and the
 * GPT of torch_gpt_ddp.py, as custom Block/GPT modules (examples/gpt_model.h, the model of
 * examples/11_train_gpt.c), loads into torch's GPT
 * class with strict=True and gives torch's logits, loss and every parameter's gradient
 * (read from our flat gradient buffer).
 * Tolerance for forward outputs: |a - b| <= 1e-5 * max(1, |b|) (different GEMM orders). */
#include "dt_test.h"
#include "dt_python.h"
#include "nn_mod/models.h"
#include "gpt_model.h"   /* examples/: the GPT of examples/11_train_gpt.c */

#include <stdlib.h>
#include <unistd.h>

static char g_dir[64];
static char g_py[512] = DT_PY;

static const char *P(const char *name)
{
    static char p[8][200];
    static int k;
    char *s = p[k++ % 8];
    snprintf(s, 200, "%s/%s", g_dir, name);
    return s;
}

/* An interpreter with torch and the safetensors package, if one can be had. */
static void pick_python(void)
{
    if (dt_py_sh(DT_PY " -c 'import safetensors' >/dev/null 2>&1") == 0) return;
    /* One pip attempt per build folder: a failure leaves a marker, so an offline machine
     * does not wait for pip on every run (delete the marker to try again). */
    const char *venv = DT_BUILD_DIR "/py-safetensors", *marker = DT_BUILD_DIR "/py-safetensors.unavailable";
    if (dt_py_sh("%s/bin/python -c 'import torch, safetensors' >/dev/null 2>&1", venv) != 0 && access(marker, F_OK) != 0) {
        fprintf(stderr, "note: making %s with pip install safetensors\n", venv);
        if (dt_py_sh("rm -rf %s && " DT_PY " -m venv --system-site-packages %s >/dev/null 2>&1 && timeout 120 %s/bin/pip "
                     "install -q --timeout 15 --retries 1 safetensors >/dev/null 2>&1", venv, venv, venv) != 0)
            dt_py_sh("touch %s", marker);
    }
    if (dt_py_sh("%s/bin/python -c 'import torch, safetensors' >/dev/null 2>&1", venv) == 0)
        snprintf(g_py, sizeof g_py, "%s/bin/python", venv);
    else
        fprintf(stderr, "SKIP (part): the safetensors package is not importable by " DT_PY " and pip could not install it "
                        "(%s); only safetensors_min.py is compared\n", marker);
}

static void expect_close(dt_tensor *ours, const dt_st_tensor *ref, const char *what)
{
    DT_ASSERT_MSG(ours, "%s: %s", what, dt_last_error());
    DT_ASSERT_MSG(ref && ref->numel == dt_tensor_numel(ours), "%s: reference missing or of another size", what);
    const float *a = dt_tensor_data_f32(ours);
    float *b = malloc(ref->nbytes);
    memcpy(b, ref->data, ref->nbytes);
    double worst = 0;
    for (int64_t i = 0; i < ref->numel; i++) {
        double e = fabs((double)a[i] - b[i]) / fmax(1.0, fabs(b[i]));
        worst = e > worst ? e : worst;
    }
    free(b);
    fprintf(stderr, "  %s: max error %.3g\n", what, worst);
    DT_ASSERT_MSG(worst <= 1e-5, "%s: max error %g", what, worst);
}

/* Our forward (eval, no grad) of m on x as a kept tensor, or NULL (with the reason
 * printed) when an op it needs is not in this build. */
static dt_tensor *run(dt_module *m, dt_tensor *x)
{
    dt_tensor *y = NULL;
    dt_module_train(m, false);
    DT_SCOPE DT_NO_GRAD y = dt_keep(dt_module_forward(m, x));
    if (!y && dt_last_error_code() == DT_EUNSUPPORTED) fprintf(stderr, "SKIP (part): %s\n", dt_last_error());
    return y;
}

static void t_torch_interop(void)
{
    dt_rng g = dt_rng_make(3, dt_rng_stream(DT_RNG_INIT, 0));
    dt_module *ours[2] = {test_mlp(&g, 784, 256, 10), test_cnn(&g)};
    const char *names[2] = {"mlp", "cnn"};
    char path[64];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "ours_%s.safetensors", names[i]);
        DT_ASSERT_OK(dt_module_save(ours[i], P(path)));
    }
    dt_tensor *x = dt_randn(&g, DT_F32, DT_SHAPE(8, 1, 28, 28));
    dt_st_entry e = {"x", DT_F32, 4, dt_tensor_shape(x), dt_tensor_data(x)};
    DT_ASSERT_OK(dt_st_write(P("x.safetensors"), &e, 1, NULL, 0));
    int rc = dt_py_sh("%s " DT_SRC_DIR "/tests/nn_mod/nn_ref.py " DT_SHARED_BENCH " %s", g_py, g_dir);
    DT_ASSERT_MSG(rc == 0, "nn_ref.py failed (%d): torch's strict load_state_dict refused our file", rc);
    dt_st_file *out = dt_st_open(P("out.safetensors"));
    DT_ASSERT_MSG(out, "%s", dt_last_error());
    for (int i = 0; i < 2; i++) {
        char what[64];
        dt_tensor *y = run(ours[i], x);
        snprintf(what, sizeof what, "torch forward of our %s", names[i]);
        if (y) expect_close(y, dt_st_find(out, names[i]), what);
        dt_tensor_release(y);
        /* torch's init, written by safetensors_min and by the package: loads here, same values. */
        dt_rng h = dt_rng_make(99, 1);
        dt_module *t = i == 0 ? test_mlp(&h, 784, 256, 10) : test_cnn(&h);
        snprintf(path, sizeof path, "torch_%s.safetensors", names[i]);
        DT_ASSERT_OK(dt_module_load(t, P(path)));
        dt_st_file *tf = dt_st_open(P(path));
        size_t n;
        const dt_named_param *p = dt_module_params(t, &n);
        for (size_t k = 0; k < n; k++) {
            const dt_st_tensor *s = dt_st_find(tf, p[k].name);
            DT_ASSERT_MSG(s && memcmp(s->data, p[k].data, s->nbytes) == 0, "%s differs after loading", p[k].name);
        }
        dt_st_close(tf);
        snprintf(path, sizeof path, "torch_pkg_%s.safetensors", names[i]);
        if (access(P(path), R_OK) == 0) {
            dt_module *t2 = i == 0 ? test_mlp(&h, 784, 256, 10) : test_cnn(&h);
            DT_ASSERT_OK(dt_module_load(t2, P(path)));
            int64_t cnt;
            DT_ASSERT(memcmp(dt_module_param_buffer(t2, &cnt), dt_module_param_buffer(t, NULL), (size_t)cnt * 4) == 0);
            dt_module_free(t2);
        }
        y = run(t, x);
        snprintf(what, sizeof what, "our forward of torch's %s", names[i]);
        if (y) expect_close(y, dt_st_find(out, i == 0 ? "torch_mlp" : "torch_cnn"), what);
        dt_tensor_release(y);
        dt_module_free(t);
    }
    dt_st_close(out);
    dt_tensor_release(x);
    dt_module_free(ours[0]);
    dt_module_free(ours[1]);
}

static void t_gpt_custom_modules(void)
{
    gpt_config c = {.layers = 2, .heads = 2, .embd = 16, .block_size = 8};
    dt_rng g = dt_rng_make(5, dt_rng_stream(DT_RNG_INIT, 0));
    dt_module *m = gpt_new(&c, &g);
    DT_ASSERT_MSG(m, "%s", dt_last_error());
    size_t n;
    const dt_named_param *p = dt_module_params(m, &n);
    DT_ASSERT_MSG(p, "%s", dt_last_error());
    DT_ASSERT_EQ(n, 2 + 12 * c.layers + 3);
    DT_ASSERT_OK(dt_module_save(m, P("gpt.safetensors")));
    dt_tensor *x = dt_rand_int(&g, 0, 256, DT_I64, DT_SHAPE(3, c.block_size)), *y = dt_rand_int(&g, 0, 256, DT_I64, DT_SHAPE(3, c.block_size));
    dt_st_entry e[2] = {{"x", DT_I64, 2, dt_tensor_shape(x), dt_tensor_data(x)}, {"y", DT_I64, 2, dt_tensor_shape(y), dt_tensor_data(y)}};
    DT_ASSERT_OK(dt_st_write(P("gpt_io.safetensors"), e, 2, NULL, 0));
    int rc = dt_py_sh(DT_PY " " DT_SRC_DIR "/tests/nn_mod/gpt_ref.py " DT_SHARED_BENCH " %s %lld %lld %lld %lld", g_dir,
                      (long long)c.layers, (long long)c.heads, (long long)c.embd, (long long)c.block_size);
    DT_ASSERT_MSG(rc == 0, "gpt_ref.py failed (%d): torch's strict load_state_dict refused our GPT", rc);
    dt_st_file *out = dt_st_open(P("gpt_out.safetensors"));
    DT_ASSERT_MSG(out, "%s", dt_last_error());
    dt_tensor *logits = NULL, *loss = NULL;
    DT_SCOPE {
        logits = dt_keep(dt_module_forward(m, x));
        DT_ASSERT_MSG(logits, "%s", dt_last_error());
        loss = dt_keep(dt_reshape(dt_cross_entropy(dt_view(logits, DT_SHAPE(-1, 256)), dt_view(y, DT_SHAPE(-1))), DT_SHAPE(1)));
        DT_ASSERT_OK(dt_backward(loss));
    }
    expect_close(logits, dt_st_find(out, "logits"), "GPT logits");
    expect_close(loss, dt_st_find(out, "loss"), "GPT loss");
    for (size_t i = 0; i < n; i++) {
        char key[128];
        snprintf(key, sizeof key, "grad.%s", p[i].name);
        expect_close(p[i].grad, dt_st_find(out, key), key);
    }
    dt_tensor_release(logits);
    dt_tensor_release(loss);
    dt_tensor_release(x);
    dt_tensor_release(y);
    dt_st_close(out);
    dt_module_free(m);
}

int main(void)
{
    if (!dt_py_have_torch()) return 0;
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_nn_torch_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    pick_python();
    DT_RUN(t_torch_interop);
    DT_RUN(t_gpt_custom_modules);
    dt_py_sh("rm -rf %s", g_dir);
    return DT_TEST_END();
}
