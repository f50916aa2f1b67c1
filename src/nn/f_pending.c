/* TEMPORARY: stand-ins for functional ops that branches nnops and gptops implement, so
 * that the module layer links before they are merged. Each entry is deleted when the
 * real one arrives (a duplicate definition at link time says which). */
#include <dtrain/nn.h>

#include <stdlib.h>

#define PENDING(name)                                                            \
    do {                                                                         \
        dt_set_error(DT_EUNSUPPORTED, "%s: not implemented in this build yet", name); \
        return NULL;                                                             \
    } while (0)

dt_tensor *dt_conv2d(dt_tensor *x, dt_tensor *w, dt_tensor *b, int sh, int sw, int ph, int pw)
{
    (void)x, (void)w, (void)b, (void)sh, (void)sw, (void)ph, (void)pw;
    PENDING("dt_conv2d");
}

dt_tensor *dt_max_pool2d(dt_tensor *x, int kh, int kw, int sh, int sw, int ph, int pw)
{
    (void)x, (void)kh, (void)kw, (void)sh, (void)sw, (void)ph, (void)pw;
    PENDING("dt_max_pool2d");
}

dt_tensor *dt_layer_norm(dt_tensor *x, int nnorm, dt_tensor *w, dt_tensor *b, double eps)
{
    (void)x, (void)nnorm, (void)w, (void)b, (void)eps;
    PENDING("dt_layer_norm");
}

dt_tensor *dt_embedding(dt_tensor *weight, dt_tensor *idx)
{
    (void)weight, (void)idx;
    PENDING("dt_embedding");
}

dt_tensor *dt_dropout(dt_tensor *x, double p, bool training, dt_rng *g)
{
    (void)x, (void)p, (void)training, (void)g;
    PENDING("dt_dropout");
}

/* Unfused: -mean(sum(log_softmax(logits) * onehot(target), 1)). */
dt_tensor *dt_cross_entropy(dt_tensor *logits, dt_tensor *target)
{
    if (!logits || !target) PENDING("dt_cross_entropy (NULL input)");
    int64_t n = dt_tensor_size(logits, 0), c = dt_tensor_size(logits, 1);
    dt_tensor *oh = dt_zeros(DT_F32, DT_SHAPE(n, c));
    if (!oh) return NULL;
    float *o = dt_tensor_data_f32(oh);
    const int64_t *t = dt_tensor_data(target);
    for (int64_t i = 0; i < n; i++) o[i * c + t[i]] = 1.0f;
    dt_tensor *picked = dt_sum(dt_mul(dt_log_softmax(logits, 1), oh), NULL, 0, false);
    return dt_mul_scalar(picked, -1.0 / (double)n);
}
