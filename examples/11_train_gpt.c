/* 11_train_gpt: the transformer job of ../shared/bench/torch_gpt_ddp.py in C, one process
 * (world 1, rank 0) for now: the same byte-level GPT (gpt_model.h, torch's parameter names),
 * corpus (the fortunes files, last 10% validation), both data orders (the random one draws
 * torch.randint from torch's generator with the job's seed), AdamW, flags and RESULT line,
 * so that from the same --init file it follows torch step for step. Rank and world are kept
 * as variables for the DDP version.
 *
 * Launch:  build/bin/train_gpt --steps 200 [--init a.safetensors --save b.safetensors]
 *   reference: ../shared/bench/launch_torch.sh 1 ../shared/bench/torch_gpt_ddp.py --steps 200
 *
 * Flags (torch's defaults): --steps N (200) --batch-size N (16, per rank) --block-size N (128)
 * --layers N (4) --heads N (4) --embd N (128) --lr X (1e-3) --weight-decay X (0.01) --seed N (0)
 * --init PATH --save PATH --data-order random|sequential (random)
 * --data DIR (/usr/share/games/fortunes, Debian's fortunes) --threads N (1).
 * Not here: dropout, learning-rate schedules, gradient clipping, sampling text. */
#include "gpt_model.h"

#include <dtrain/dtrain.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *init, *save, *data, *order;
    int threads;
    int64_t steps, batch, block, layers, heads, embd, seed;
    double lr, wd;
} args;

static int usage(const char *why)
{
    fprintf(stderr, "train_gpt: %s\nusage: train_gpt [--steps N] [--batch-size N] [--block-size N] [--layers N]\n"
                    "  [--heads N] [--embd N] [--lr X] [--weight-decay X] [--seed N] [--init PATH] [--save PATH]\n"
                    "  [--data-order random|sequential] [--data DIR] [--threads N]\n", why);
    return 2;
}

static int parse(int argc, char **argv, args *a)
{
    *a = (args){.data = "/usr/share/games/fortunes", .order = "random", .threads = 1, .steps = 200, .batch = 16,
                .block = 128, .layers = 4, .heads = 4, .embd = 128, .lr = 1e-3, .wd = 0.01};
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strncmp(f, "--", 2) != 0) return usage("unexpected argument");
        if (!v) return usage("a flag without its value");
        i++;
        char *end = NULL;
        if (strcmp(f, "--init") == 0) a->init = v;
        else if (strcmp(f, "--save") == 0) a->save = v;
        else if (strcmp(f, "--data") == 0) a->data = v;
        else if (strcmp(f, "--data-order") == 0) a->order = v;
        else if (strcmp(f, "--threads") == 0) a->threads = (int)strtol(v, &end, 10);
        else if (strcmp(f, "--steps") == 0) a->steps = strtoll(v, &end, 10);
        else if (strcmp(f, "--batch-size") == 0) a->batch = strtoll(v, &end, 10);
        else if (strcmp(f, "--block-size") == 0) a->block = strtoll(v, &end, 10);
        else if (strcmp(f, "--layers") == 0) a->layers = strtoll(v, &end, 10);
        else if (strcmp(f, "--heads") == 0) a->heads = strtoll(v, &end, 10);
        else if (strcmp(f, "--embd") == 0) a->embd = strtoll(v, &end, 10);
        else if (strcmp(f, "--seed") == 0) a->seed = strtoll(v, &end, 10);
        else if (strcmp(f, "--lr") == 0) a->lr = strtod(v, &end);
        else if (strcmp(f, "--weight-decay") == 0) a->wd = strtod(v, &end);
        else return usage("unknown flag");
        if (end && *end) return usage("a value that is not a number");
    }
    if (strcmp(a->order, "random") && strcmp(a->order, "sequential")) return usage("--data-order is random or sequential");
    if (a->steps < 0 || a->batch < 1 || a->block < 1 || a->layers < 0 || a->heads < 1 || a->embd < 1 || a->threads < 1)
        return usage("sizes must be positive");
    if (a->embd % a->heads) return usage("--heads must divide --embd");
    return 0;
}

/* The job's batch k of rank r from s: x and y (B, T) of byte ids, in the chosen order. The
 * random order draws from g, one generator per rank for the whole run (train batches, then
 * the validation batches), as the reference's batch() does. */
typedef struct {
    bool random;
    dt_mt19937 g;
    int64_t world, rank, B, T;
} batcher;

static int next_batch(batcher *bt, dt_token_span s, int64_t k, int64_t *x, int64_t *y)
{
    if (bt->random) return dt_tokens_random_batch(s, &bt->g, bt->B, bt->T, x, y);
    return dt_tokens_seq_batch(s, k, bt->world, bt->rank, bt->B, bt->T, x, y);
}

/* F.cross_entropy(model(x).view(-1, 256), y.view(-1)) on the batch in x, y: a new reference
 * owned by the innermost scope, or NULL + last error. */
static dt_tensor *loss_of(dt_module *model, int64_t *x, int64_t *y, int64_t B, int64_t T)
{
    dt_tensor *xt = dt_from_buffer(x, DT_I64, DT_SHAPE(B, T)), *yt = dt_from_buffer(y, DT_I64, DT_SHAPE(B * T));
    return dt_cross_entropy(dt_view(dt_module_forward(model, xt), DT_SHAPE(-1, 256)), yt);
}

int main(int argc, char **argv)
{
    args a;
    if (parse(argc, argv, &a)) return 2;
    const int64_t world = 1, rank = 0;
    const int64_t B = a.batch, T = a.block;
    dt_tokens *data = NULL;
    dt_module *model = NULL;
    dt_optim *opt = NULL;
    int64_t *xb = NULL, *yb = NULL;
    int rc = 0;
    DT_CHECK_GOTO(dt_tensor_set_num_threads(a.threads), rc, fail);

    if (!(data = dt_tokens_fortunes(a.data))) goto fail;
    dt_token_span train, val;
    dt_tokens_split(data, 10, &train, &val);
    if (train.len <= T + 1 || val.len <= T + 1) {
        dt_set_error(DT_EINVAL, "%s: %lld train and %lld validation bytes, too few for --block-size %lld", a.data,
                     (long long)train.len, (long long)val.len, (long long)T);
        goto fail;
    }

    gpt_config cfg = {.layers = a.layers, .heads = a.heads, .embd = a.embd, .block_size = T};
    dt_rng g = dt_rng_make((uint64_t)a.seed, dt_rng_stream(DT_RNG_INIT, 0));
    if (!(model = gpt_new(&cfg, &g))) goto fail;
    if (a.init) DT_CHECK_GOTO(dt_module_load(model, a.init), rc, fail);
    int64_t nparam = dt_module_num_params(model);
    size_t ns;
    const dt_param_slot *slots = dt_module_slots(model, &ns);
    if (!slots) goto fail;
    dt_adam_opts o = DT_ADAMW_OPTS_INIT;
    o.lr = a.lr, o.weight_decay = a.wd;
    if (!(opt = dt_optim_adamw(slots, ns, o))) goto fail;

    batcher bt = {.random = strcmp(a.order, "random") == 0, .world = world, .rank = rank, .B = B, .T = T};
    dt_mt19937_seed(&bt.g, (uint64_t)(1000 + a.seed * 1000 + rank));
    xb = dt_alloc((size_t)(B * T) * sizeof(int64_t), DT_MEM_DATA);
    yb = dt_alloc((size_t)(B * T) * sizeof(int64_t), DT_MEM_DATA);
    if (!xb || !yb) goto fail;

    /* (world 1: the reference's barrier before the clock starts is a no-op) */
    double last_loss = NAN, t0 = dt_now_s();
    dt_module_train(model, true);
    for (int64_t it = 0; it < a.steps; it++) {
        DT_CHECK_GOTO(next_batch(&bt, train, it, xb, yb), rc, fail);
        DT_SCOPE {
            dt_tensor *loss = loss_of(model, xb, yb, B, T);
            dt_optim_zero_grad(opt);
            rc = loss ? dt_backward(loss) : dt_last_error_code();
            if (rc == 0) rc = dt_optim_step(opt);
            if (rc == 0) last_loss = dt_tensor_item(loss);
        }
        if (rc < 0) goto fail;
    }
    double dt = dt_now_s() - t0;

    /* Validation: mean of 10 batch losses, eval mode, no grad; batch k = 0..9 of val (the
     * random order continues the same generator). */
    dt_module_train(model, false);
    double vl = 0;
    for (int64_t k = 0; k < 10; k++) {
        DT_CHECK_GOTO(next_batch(&bt, val, k, xb, yb), rc, fail);
        DT_SCOPE DT_NO_GRAD {
            dt_tensor *loss = loss_of(model, xb, yb, B, T);
            if (loss) vl += dt_tensor_item(loss);
            else rc = dt_last_error_code();
        }
        if (rc < 0) goto fail;
    }
    vl /= 10;
    if (rank == 0) {
        if (a.save) DT_CHECK_GOTO(dt_module_save(model, a.save), rc, fail);
        printf("RESULT gpt params=%lld world=%lld bs=%lld steps=%lld tokens_per_s=%.0f loss=%.6f val_loss=%.4f\n",
               (long long)nparam, (long long)world, (long long)B, (long long)a.steps,
               dt > 0 ? (double)(a.steps * B * T * world) / dt : 0.0, last_loss, vl);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "train_gpt: %s\n", dt_last_error());
    rc = 1;
done:
    dt_free(xb), dt_free(yb);
    dt_optim_free(opt);
    dt_module_free(model);
    dt_tokens_free(data);
    return rc;
}
