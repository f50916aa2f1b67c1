/* The built-in modules over the functional ops: Linear, Conv2d, MaxPool2d, ReLU, GELU,
 * Flatten, LayerNorm, Embedding, Dropout, Sequential, with torch's default inits
 * (TORCH_SEMANTICS.md "Layers"). Each is a dt_module with a small ctx for its
 * hyperparameters and a forward that calls one op with its own parameters.
 * The ops themselves live in autograd (linear, relu, gelu, flatten) and nn f_*.c. */
#include "nn/module_internal.h"

#include <math.h>
#include <stdio.h>

typedef struct {
    int64_t i[4];
    double f[2];
    dt_rng rng;
} layer_ctx;

static void free_ctx(void *p) { dt_free(p); }

/* A built-in with a zeroed ctx (owned by the module). */
static dt_module *builtin(const char *type, dt_module_forward_fn fwd, layer_ctx **ctx)
{
    layer_ctx *c = dt_calloc(1, sizeof *c, DT_MEM_OTHER);
    if (!c) return NULL;
    dt_module *m = dt_module_new(type, fwd, c, free_ctx);
    if (!m) {
        dt_free(c);
        return NULL;
    }
    *ctx = c;
    return m;
}

/* Adds a parameter of the given shape: N(0, 1) from g when normal, else uniform in
 * +-bound from g when g is given, else the constant value. */
static int add_init(dt_module *m, const char *name, int ndim, const int64_t *shape, dt_rng *g, double bound, double value,
                    bool normal)
{
    int rc = 0;
    int tok = dt_scope_begin();
    dt_tensor *t = dt_empty(DT_F32, ndim, shape);
    if (!t) rc = dt_last_error_code();
    else if (normal) rc = dt_tensor_normal_(t, g, 0.0, 1.0);
    else if (g) rc = dt_tensor_uniform_(t, g, -bound, bound);
    else rc = dt_tensor_fill(t, value);
    if (rc == 0) rc = dt_module_add_param(m, name, t);
    dt_scope_end(tok);
    return rc;
}

static dt_module *fail(dt_module *m)
{
    dt_module_free(m);
    return NULL;
}

/* The module's own parameter i (packed; forward runs after packing). */
static inline dt_tensor *P(dt_module *m, size_t i) { return i < m->nparams ? m->params[i].t : NULL; }

/* ------------------------------------------------------------------ Linear */
static dt_tensor *linear_fwd(dt_module *m, dt_tensor *x, void *ctx)
{
    layer_ctx *c = ctx;
    return dt_linear(x, P(m, 0), c->i[2] ? P(m, 1) : NULL);
}

/* Owned by the caller. */
dt_module *dt_nn_linear(int64_t in, int64_t out, bool bias, dt_rng *g)
{
    if (in < 1 || out < 1 || !g) {
        dt_set_error(DT_EINVAL, "dt_nn_linear(%lld, %lld): sizes must be >= 1 and g given", (long long)in, (long long)out);
        return NULL;
    }
    layer_ctx *c;
    dt_module *m = builtin("Linear", linear_fwd, &c);
    if (!m) return NULL;
    c->i[0] = in, c->i[1] = out, c->i[2] = bias;
    double bound = 1.0 / sqrt((double)in);
    if (add_init(m, "weight", DT_SHAPE(out, in), g, bound, 0, false) < 0) return fail(m);
    if (bias && add_init(m, "bias", DT_SHAPE(out), g, bound, 0, false) < 0) return fail(m);
    return m;
}

/* ------------------------------------------------------------------ Conv2d */
static dt_tensor *conv2d_fwd(dt_module *m, dt_tensor *x, void *ctx)
{
    layer_ctx *c = ctx;
    int s = (int)c->i[1], p = (int)c->i[2];
    return dt_conv2d(x, P(m, 0), c->i[3] ? P(m, 1) : NULL, s, s, p, p);
}

dt_module *dt_nn_conv2d(int64_t cin, int64_t cout, int k, int stride, int pad, bool bias, dt_rng *g)
{
    if (cin < 1 || cout < 1 || k < 1 || stride < 1 || pad < 0 || !g) {
        dt_set_error(DT_EINVAL, "dt_nn_conv2d(%lld, %lld, k=%d, stride=%d, pad=%d): bad arguments", (long long)cin,
                     (long long)cout, k, stride, pad);
        return NULL;
    }
    layer_ctx *c;
    dt_module *m = builtin("Conv2d", conv2d_fwd, &c);
    if (!m) return NULL;
    c->i[0] = k, c->i[1] = stride, c->i[2] = pad, c->i[3] = bias;
    double bound = 1.0 / sqrt((double)(cin * k * k));
    if (add_init(m, "weight", DT_SHAPE(cout, cin, k, k), g, bound, 0, false) < 0) return fail(m);
    if (bias && add_init(m, "bias", DT_SHAPE(cout), g, bound, 0, false) < 0) return fail(m);
    return m;
}

/* --------------------------------------------------------------- MaxPool2d */
static dt_tensor *max_pool_fwd(dt_module *m, dt_tensor *x, void *ctx)
{
    (void)m;
    layer_ctx *c = ctx;
    int k = (int)c->i[0], s = (int)c->i[1];
    return dt_max_pool2d(x, k, k, s, s, 0, 0);
}

dt_module *dt_nn_max_pool2d(int k, int stride)
{
    if (k < 1 || stride < 0) {
        dt_set_error(DT_EINVAL, "dt_nn_max_pool2d(%d, %d): bad arguments", k, stride);
        return NULL;
    }
    layer_ctx *c;
    dt_module *m = builtin("MaxPool2d", max_pool_fwd, &c);
    if (m) c->i[0] = k, c->i[1] = stride ? stride : k;
    return m;
}

/* ------------------------------------------------- ReLU, GELU, Flatten */
static dt_tensor *relu_fwd(dt_module *m, dt_tensor *x, void *ctx)
{
    (void)m, (void)ctx;
    return dt_relu(x);
}

dt_module *dt_nn_relu(void) { return dt_module_new("ReLU", relu_fwd, NULL, NULL); }

static dt_tensor *gelu_fwd(dt_module *m, dt_tensor *x, void *ctx)
{
    (void)m;
    return dt_gelu(x, (dt_gelu_kind)((layer_ctx *)ctx)->i[0]);
}

dt_module *dt_nn_gelu(dt_gelu_kind kind)
{
    if (kind != DT_GELU_ERF && kind != DT_GELU_TANH) {
        dt_set_error(DT_EINVAL, "dt_nn_gelu: unknown kind %d", (int)kind);
        return NULL;
    }
    layer_ctx *c;
    dt_module *m = builtin("GELU", gelu_fwd, &c);
    if (m) c->i[0] = kind;
    return m;
}

static dt_tensor *flatten_fwd(dt_module *m, dt_tensor *x, void *ctx)
{
    (void)m, (void)ctx;
    return dt_flatten(x, 1, -1);
}

dt_module *dt_nn_flatten(void) { return dt_module_new("Flatten", flatten_fwd, NULL, NULL); }

/* --------------------------------------------------------------- Sequential */
/* Children i, i+1, i+2 are the built-in Conv2d (stride 1), ReLU and MaxPool2d(2, 2):
 * they run as the one op dt_conv2d_relu_max_pool2d (same values and gradients, without
 * the full-size intermediates; it composes the three itself where it cannot fuse). */
static bool conv_relu_pool_at(const dt_module *m, size_t i)
{
    if (i + 2 >= m->nchildren) return false;
    const dt_module *c = m->children[i].m, *r = m->children[i + 1].m, *p = m->children[i + 2].m;
    if (c->forward != conv2d_fwd || r->forward != relu_fwd || p->forward != max_pool_fwd) return false;
    const layer_ctx *cc = c->ctx, *pc = p->ctx;
    return cc->i[1] == 1 && pc->i[0] == 2 && pc->i[1] == 2;
}

static dt_tensor *sequential_fwd(dt_module *m, dt_tensor *x, void *ctx)
{
    (void)ctx;
    if (m->nchildren == 0) return dt_reshape(x, dt_tensor_ndim(x), dt_tensor_shape(x));  /* torch returns the input */
    for (size_t i = 0; i < m->nchildren && x; i++) {
        if (conv_relu_pool_at(m, i) && dt__module_ensure_packed(m->children[i].m) == 0) {
            dt_module *c = m->children[i].m;
            const layer_ctx *cc = c->ctx;
            int pad = (int)cc->i[2];
            x = dt_conv2d_relu_max_pool2d(x, P(c, 0), cc->i[3] ? P(c, 1) : NULL, pad, pad);
            i += 2;
            continue;
        }
        x = dt_module_forward(m->children[i].m, x);
    }
    return x;
}

/* Takes ownership of every child, also on failure. */
dt_module *dt_nn_sequential(int n, dt_module *const *children)
{
    dt_module *m = n >= 0 ? dt_module_new("Sequential", sequential_fwd, NULL, NULL) : NULL;
    int rc = m ? 0 : (n < 0 ? dt_set_error(DT_EINVAL, "dt_nn_sequential: n = %d", n) : DT_ENOMEM);
    for (int i = 0; i < n; i++) {
        if (rc < 0) {
            if (children[i] && !children[i]->parent) dt_module_free(children[i]);
            continue;
        }
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        rc = dt_module_add_child(m, name, children[i]);   /* frees children[i] on failure */
    }
    if (rc < 0) {
        if (rc != DT_ENOMEM || dt_last_error_code()) dt_error_wrap(rc, "dt_nn_sequential");
        return fail(m);
    }
    return m;
}

/* ------------------------------------------------------- LayerNorm, Embedding, Dropout */
static dt_tensor *layer_norm_fwd(dt_module *m, dt_tensor *x, void *ctx)
{
    return dt_layer_norm(x, 1, P(m, 0), P(m, 1), ((layer_ctx *)ctx)->f[0]);
}

dt_module *dt_nn_layer_norm(int64_t n, double eps)
{
    if (n < 1 || !(eps >= 0)) {
        dt_set_error(DT_EINVAL, "dt_nn_layer_norm(%lld, eps=%g): bad arguments", (long long)n, eps);
        return NULL;
    }
    layer_ctx *c;
    dt_module *m = builtin("LayerNorm", layer_norm_fwd, &c);
    if (!m) return NULL;
    c->i[0] = n, c->f[0] = eps;
    if (add_init(m, "weight", DT_SHAPE(n), NULL, 0, 1.0, false) < 0) return fail(m);
    if (add_init(m, "bias", DT_SHAPE(n), NULL, 0, 0.0, false) < 0) return fail(m);
    return m;
}

static dt_tensor *embedding_fwd(dt_module *m, dt_tensor *x, void *ctx)
{
    (void)ctx;
    return dt_embedding(P(m, 0), x);
}

dt_module *dt_nn_embedding(int64_t num, int64_t dim, dt_rng *g)
{
    if (num < 1 || dim < 1 || !g) {
        dt_set_error(DT_EINVAL, "dt_nn_embedding(%lld, %lld): sizes must be >= 1 and g given", (long long)num, (long long)dim);
        return NULL;
    }
    layer_ctx *c;
    dt_module *m = builtin("Embedding", embedding_fwd, &c);
    if (!m) return NULL;
    c->i[0] = num, c->i[1] = dim;
    if (add_init(m, "weight", DT_SHAPE(num, dim), g, 0, 0, true) < 0) return fail(m);
    return m;
}

static dt_tensor *dropout_fwd(dt_module *m, dt_tensor *x, void *ctx)
{
    layer_ctx *c = ctx;
    return dt_dropout(x, c->f[0], m->training, &c->rng);
}

dt_module *dt_nn_dropout(double p, const dt_rng *g)
{
    if (!(p >= 0 && p <= 1)) {
        dt_set_error(DT_EINVAL, "dt_nn_dropout: p = %g outside [0, 1]", p);
        return NULL;
    }
    layer_ctx *c;
    dt_module *m = builtin("Dropout", dropout_fwd, &c);
    if (!m) return NULL;
    c->f[0] = p;
    c->rng = g ? *g : dt_rng_make(0, dt_rng_stream(DT_RNG_DROPOUT, 0));
    return m;
}
