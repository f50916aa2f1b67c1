/* The Fashion-MNIST job's two models (../shared/bench/torch_fmnist_ddp.py), built from
 * the built-in modules, shared by the nn_mod tests. */
#ifndef DT_TEST_NN_MODELS_H
#define DT_TEST_NN_MODELS_H

#include <dtrain/dtrain.h>

/* Flatten, Linear(784, 256), ReLU, Linear(256, 256), ReLU, Linear(256, 10). */
static inline dt_module *test_mlp(dt_rng *g, int64_t in, int64_t hidden, int64_t out)
{
    dt_module *l[] = {dt_nn_flatten(), dt_nn_linear(in, hidden, true, g), dt_nn_relu(),
                      dt_nn_linear(hidden, hidden, true, g), dt_nn_relu(), dt_nn_linear(hidden, out, true, g)};
    return dt_nn_sequential(6, l);
}

/* Conv(1,32,3,p1) ReLU Pool Conv(32,64,3,p1) ReLU Pool Flatten Linear(3136,128) ReLU Linear(128,10). */
static inline dt_module *test_cnn(dt_rng *g)
{
    dt_module *l[] = {dt_nn_conv2d(1, 32, 3, 1, 1, true, g), dt_nn_relu(), dt_nn_max_pool2d(2, 0),
                      dt_nn_conv2d(32, 64, 3, 1, 1, true, g), dt_nn_relu(), dt_nn_max_pool2d(2, 0),
                      dt_nn_flatten(), dt_nn_linear(64 * 7 * 7, 128, true, g), dt_nn_relu(),
                      dt_nn_linear(128, 10, true, g)};
    return dt_nn_sequential(10, l);
}

#endif
