/* 10_train_fmnist: the Fashion-MNIST job of ../shared/bench/torch_fmnist_ddp.py in C, one
 * process (world 1) for now: the same models (mlp, cnn, with torch's parameter names), flags,
 * data order (DistributedSampler with torch's generator), optimizers and output lines, so
 * that from the same --init file it follows torch step for step.
 *
 * Launch:  build/bin/train_fmnist --model cnn --epochs 1 [--init a.safetensors --save b.safetensors]
 *   reference: ../shared/bench/launch_torch.sh 1 ../shared/bench/torch_fmnist_ddp.py --model cnn --epochs 1
 *
 * Flags (torch's defaults): --model mlp|cnn (cnn) --epochs N (1) --steps N (0: all epochs)
 * --batch-size N (64) --lr X (0.05) --momentum X (0.9) --weight-decay X (0)
 * --optimizer sgd|adamw (sgd) --seed N (0) --no-shuffle --init PATH --save PATH
 * --data DIR (/usr/share/datasets/fashion-mnist) --threads N (1). */
#include <dtrain/dtrain.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#endif

typedef struct {
    const char *model, *optimizer, *init, *save, *data;
    int epochs, threads;
    int64_t steps, batch, seed;
    double lr, momentum, wd;
    bool no_shuffle;
} args;

static int usage(const char *why)
{
    fprintf(stderr, "train_fmnist: %s\nusage: train_fmnist [--model mlp|cnn] [--epochs N] [--steps N] [--batch-size N] [--lr X]\n"
                    "  [--momentum X] [--weight-decay X] [--optimizer sgd|adamw] [--seed N] [--no-shuffle]\n"
                    "  [--init PATH] [--save PATH] [--data DIR] [--threads N]\n", why);
    return 2;
}

static int parse(int argc, char **argv, args *a)
{
    *a = (args){.model = "cnn", .optimizer = "sgd", .data = "/usr/share/datasets/fashion-mnist", .epochs = 1, .threads = 1,
                .batch = 64, .lr = 0.05, .momentum = 0.9};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(f, "--no-shuffle") == 0) { a->no_shuffle = true; continue; }
        if (strncmp(f, "--", 2) != 0) return usage("unexpected argument");
        if (!v) return usage("a flag without its value");
        i++;
        char *end = NULL;
        if (strcmp(f, "--model") == 0) a->model = v;
        else if (strcmp(f, "--optimizer") == 0) a->optimizer = v;
        else if (strcmp(f, "--init") == 0) a->init = v;
        else if (strcmp(f, "--save") == 0) a->save = v;
        else if (strcmp(f, "--data") == 0) a->data = v;
        else if (strcmp(f, "--epochs") == 0) a->epochs = (int)strtol(v, &end, 10);
        else if (strcmp(f, "--threads") == 0) a->threads = (int)strtol(v, &end, 10);
        else if (strcmp(f, "--steps") == 0) a->steps = strtoll(v, &end, 10);
        else if (strcmp(f, "--batch-size") == 0) a->batch = strtoll(v, &end, 10);
        else if (strcmp(f, "--seed") == 0) a->seed = strtoll(v, &end, 10);
        else if (strcmp(f, "--lr") == 0) a->lr = strtod(v, &end);
        else if (strcmp(f, "--momentum") == 0) a->momentum = strtod(v, &end);
        else if (strcmp(f, "--weight-decay") == 0) a->wd = strtod(v, &end);
        else return usage("unknown flag");
        if (end && *end) return usage("a value that is not a number");
    }
    if (strcmp(a->model, "mlp") && strcmp(a->model, "cnn")) return usage("--model is mlp or cnn");
    if (strcmp(a->optimizer, "sgd") && strcmp(a->optimizer, "adamw")) return usage("--optimizer is sgd or adamw");
    if (a->batch < 1 || a->epochs < 0 || a->steps < 0 || a->threads < 1) return usage("sizes must be positive");
    return 0;
}

/* nn.Sequential(Flatten, Linear(784,256), ReLU, Linear(256,256), ReLU, Linear(256,10)):
 * parameters 1.* 3.* 5.* */
static dt_module *make_mlp(dt_rng *g)
{
    dt_module *l[] = {dt_nn_flatten(), dt_nn_linear(784, 256, true, g), dt_nn_relu(),
                      dt_nn_linear(256, 256, true, g), dt_nn_relu(), dt_nn_linear(256, 10, true, g)};
    return dt_nn_sequential(6, l);
}

/* Conv(1,32,3,p1) ReLU MaxPool(2) Conv(32,64,3,p1) ReLU MaxPool(2) Flatten Linear(3136,128)
 * ReLU Linear(128,10): parameters 0.* 3.* (conv) 7.* 9.* (linear) */
static dt_module *make_cnn(dt_rng *g)
{
    dt_module *l[] = {dt_nn_conv2d(1, 32, 3, 1, 1, true, g), dt_nn_relu(), dt_nn_max_pool2d(2, 0),
                      dt_nn_conv2d(32, 64, 3, 1, 1, true, g), dt_nn_relu(), dt_nn_max_pool2d(2, 0),
                      dt_nn_flatten(), dt_nn_linear(64 * 7 * 7, 128, true, g), dt_nn_relu(),
                      dt_nn_linear(128, 10, true, g)};
    return dt_nn_sequential(10, l);
}

/* One split: n images (n, 1, 28, 28) normalised as the reference does, labels as i64. */
typedef struct {
    int64_t n;
    float *x;     /* [n * 784] */
    int64_t *y;   /* [n] */
} split;

static int load_split(const char *dir, const char *name, split *s)
{
    char p[1024];
    dt_idx img = {0}, lab = {0};
    int rc;
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte.gz", dir, name);
    DT_CHECK_GOTO(dt_idx_read(p, &img), rc, done);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte.gz", dir, name);
    DT_CHECK_GOTO(dt_idx_read(p, &lab), rc, done);
    if (img.ndim != 3 || img.dims[1] != 28 || img.dims[2] != 28 || lab.ndim != 1 || lab.dims[0] != img.dims[0]) {
        rc = dt_set_error(DT_ECORRUPT, "%s/%s: not Fashion-MNIST's shapes", dir, name);
        goto done;
    }
    s->n = img.dims[0];
    s->x = dt_alloc((size_t)img.numel * sizeof(float), DT_MEM_DATA);
    s->y = dt_alloc((size_t)s->n * sizeof(int64_t), DT_MEM_DATA);
    if (!s->x || !s->y) { rc = DT_ENOMEM; goto done; }
    DT_CHECK_GOTO(dt_idx_normalize_u8(&img, DT_FMNIST_MEAN, DT_FMNIST_STD, s->x), rc, done);
    DT_CHECK_GOTO(dt_idx_to_i64(&lab, s->y), rc, done);
done:
    dt_idx_free(&img);
    dt_idx_free(&lab);
    return rc;
}

/* Test accuracy in eval mode without grad, in chunks of 1000 (torch runs all 10000 at
 * once; per-sample results are the same). */
static double accuracy(dt_module *m, const split *t)
{
    int64_t correct = 0;
    dt_module_train(m, false);
    for (int64_t b = 0; b < t->n; b += 1000) {
        int64_t nb = t->n - b < 1000 ? t->n - b : 1000;
        DT_SCOPE DT_NO_GRAD {
            dt_tensor *x = dt_from_buffer(t->x + b * 784, DT_F32, DT_SHAPE(nb, 1, 28, 28));
            dt_tensor *pred = dt_argmax(dt_module_forward(m, x), 1, false);
            const int64_t *p = pred ? dt_tensor_data(pred) : NULL;
            for (int64_t i = 0; p && i < nb; i++) correct += p[i] == t->y[b + i];
            if (!p) correct = -t->n * 10;
        }
    }
    return correct < 0 ? -1 : (double)correct / (double)t->n;
}

int main(int argc, char **argv)
{
    args a;
    if (parse(argc, argv, &a)) return 2;
    split tr = {0}, te = {0};
    dt_module *model = NULL;
    dt_optim *opt = NULL;
    dt_sampler *smp = NULL;
    float *xb = NULL;
    int64_t *yb = NULL;
    int rc = 0;
    DT_CHECK_GOTO(dt_tensor_set_num_threads(a.threads), rc, fail);
    dt_rng g = dt_rng_make((uint64_t)a.seed, dt_rng_stream(DT_RNG_INIT, 0));
    model = strcmp(a.model, "mlp") == 0 ? make_mlp(&g) : make_cnn(&g);
    if (!model) goto fail;
    if (a.init) DT_CHECK_GOTO(dt_module_load(model, a.init), rc, fail);
    size_t ns;
    const dt_param_slot *slots = dt_module_slots(model, &ns);
    if (!slots) goto fail;
    if (strcmp(a.optimizer, "sgd") == 0) {
        dt_sgd_opts o = DT_SGD_OPTS_INIT;
        o.lr = a.lr, o.momentum = a.momentum, o.weight_decay = a.wd;
        opt = dt_optim_sgd(slots, ns, o);
    } else {
        dt_adam_opts o = DT_ADAMW_OPTS_INIT;
        o.lr = a.lr, o.weight_decay = a.wd;
        opt = dt_optim_adamw(slots, ns, o);
    }
    if (!opt) goto fail;
    DT_CHECK_GOTO(load_split(a.data, "train", &tr), rc, fail);
    DT_CHECK_GOTO(load_split(a.data, "t10k", &te), rc, fail);
    dt_sampler_opts so = DT_SAMPLER_OPTS_INIT;
    so.shuffle = !a.no_shuffle, so.seed = a.seed;
    if (!(smp = dt_sampler_distributed(tr.n, so))) goto fail;

    /* One batch: x (B, 1, 28, 28) and y (B) gathered in the sampler's order. */
    xb = dt_alloc((size_t)a.batch * 784 * sizeof(float), DT_MEM_DATA);
    yb = dt_alloc((size_t)a.batch * sizeof(int64_t), DT_MEM_DATA);
    if (!xb || !yb) goto fail;
    double tot_t = 0, last_loss = 0;
    int64_t tot_s = 0, step = 0;
    for (int ep = 0; ep < a.epochs; ep++) {
        DT_CHECK_GOTO(dt_sampler_set_epoch(smp, ep), rc, fail);
        const int64_t *idx = dt_sampler_indices(smp);
        int64_t len = dt_sampler_len(smp), seen = 0;
        dt_module_train(model, true);
        double t0 = dt_now_s();
        for (int64_t b = 0; b < len; b += a.batch) {
            int64_t nb = len - b < a.batch ? len - b : a.batch;
            for (int64_t i = 0; i < nb; i++) {
                memcpy(xb + i * 784, tr.x + idx[b + i] * 784, 784 * sizeof(float));
                yb[i] = tr.y[idx[b + i]];
            }
            DT_SCOPE {
                dt_tensor *x = dt_from_buffer(xb, DT_F32, DT_SHAPE(nb, 1, 28, 28));
                dt_tensor *y = dt_from_buffer(yb, DT_I64, DT_SHAPE(nb));
                dt_optim_zero_grad(opt);
                dt_tensor *loss = dt_cross_entropy(dt_module_forward(model, x), y);
                rc = loss ? dt_backward(loss) : dt_last_error_code();
                if (rc == 0) rc = dt_optim_step(opt);
                if (rc == 0) last_loss = dt_tensor_item(loss);
            }
            if (rc < 0) goto fail;
            seen += nb;
            step++;
            if (a.steps && step >= a.steps) break;
        }
        double dt = dt_now_s() - t0;
        tot_t += dt, tot_s += seen;
        printf("epoch %d: %.0f samples/s (global), last loss %.4f\n", ep, (double)seen / dt, last_loss);
        fflush(stdout);
        if (a.steps && step >= a.steps) break;
    }
    double acc = accuracy(model, &te);
    if (acc < 0) goto fail;
    if (a.save) DT_CHECK_GOTO(dt_module_save(model, a.save), rc, fail);
    printf("RESULT model=%s world=1 bs=%lld steps=%lld samples_per_s=%.0f loss=%.6f test_acc=%.4f\n", a.model,
           (long long)a.batch, (long long)step, tot_t > 0 ? (double)tot_s / tot_t : 0.0, last_loss, acc);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "train_fmnist: %s\n", dt_last_error());
    rc = 1;
done:
    dt_free(xb), dt_free(yb);
    dt_free(tr.x), dt_free(tr.y), dt_free(te.x), dt_free(te.y);
    dt_sampler_free(smp);
    dt_optim_free(opt);
    dt_module_free(model);
    return rc;
}
