/* 10_train_fmnist: the Fashion-MNIST job of ../shared/bench/torch_fmnist_ddp.py in C: the same
 * models (mlp, cnn, with torch's parameter names), flags, data order (DistributedSampler with
 * torch's generator), optimizers, DDP and output lines, so that from the same --init file it
 * follows torch step for step, on one process or many.
 *
 * Launch:  build/bin/train_fmnist --model cnn --epochs 1 [--init a.safetensors --save b.safetensors]
 *          build/bin/dtrun --standalone --nproc_per_node=2 build/bin/train_fmnist --model cnn --epochs 2 \
 *              --snapshot /tmp/fmnist-snap
 *   reference: ../shared/bench/launch_torch.sh 2 ../shared/bench/torch_fmnist_ddp.py --model cnn --epochs 1
 *
 * Under a launcher (RANK and WORLD_SIZE set) it joins the process group by env:// and wraps
 * the model in DDP; alone it runs as world 1. With --snapshot DIR rank 0 saves model,
 * optimizer and position there every --snapshot-every steps (default: each epoch's end)
 * and every rank resumes from the newest good snapshot at start, so a job restarted by
 * `dtrun --max_restarts` ends with the weights of a run never stopped.
 *
 * Flags (torch's defaults): --model mlp|cnn (cnn) --epochs N (1) --steps N (0: all epochs)
 * --batch-size N (64) --lr X (0.05) --momentum X (0.9) --weight-decay X (0)
 * --optimizer sgd|adamw (sgd) --seed N (0) --no-shuffle --init PATH --save PATH
 * --data DIR (/usr/share/datasets/fashion-mnist) --threads N (1) --snapshot DIR
 * --snapshot-every N (0: each epoch's end) --backend auto|shm|tcp (auto). */
#include <dtrain/dtrain.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *model, *optimizer, *init, *save, *data, *snapshot, *backend;
    int epochs, threads;
    int64_t steps, batch, seed, snapshot_every;
    double lr, momentum, wd;
    bool no_shuffle;
} args;

static int usage(const char *why)
{
    fprintf(stderr, "train_fmnist: %s\nusage: train_fmnist [--model mlp|cnn] [--epochs N] [--steps N] [--batch-size N] [--lr X]\n"
                    "  [--momentum X] [--weight-decay X] [--optimizer sgd|adamw] [--seed N] [--no-shuffle]\n"
                    "  [--init PATH] [--save PATH] [--data DIR] [--threads N] [--snapshot DIR] [--snapshot-every N]\n"
                    "  [--backend auto|shm|tcp]\n", why);
    return 2;
}

static int parse(int argc, char **argv, args *a)
{
    *a = (args){.model = "cnn", .optimizer = "sgd", .data = "/usr/share/datasets/fashion-mnist", .backend = "auto",
                .epochs = 1, .threads = 1,
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
        else if (strcmp(f, "--snapshot") == 0) a->snapshot = v;
        else if (strcmp(f, "--backend") == 0) a->backend = v;
        else if (strcmp(f, "--snapshot-every") == 0) a->snapshot_every = strtoll(v, &end, 10);
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
    if (a->batch < 1 || a->epochs < 0 || a->steps < 0 || a->threads < 1 || a->snapshot_every < 0)
        return usage("sizes must be positive");
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

/* The training position a snapshot records (besides model and optimizer state). */
typedef struct {
    int64_t epoch;   /* the epoch to run next ... */
    int64_t batch;   /* ... from this batch index */
    int64_t step;    /* optimizer steps taken */
} position;

static int save_snapshot(dt_snapshot *snap, dt_module *model, dt_optim *opt, const args *a, position p, int world)
{
    dt_st_list *l = dt_st_list_new();
    if (!l) return dt_last_error_code();
    int rc = dt_module_state_add(model, l, "model.");
    if (rc == 0) rc = dt_optim_state_add(opt, l, "optim.");
    char v[3][32];
    snprintf(v[0], sizeof v[0], "%lld", (long long)p.epoch);
    snprintf(v[1], sizeof v[1], "%lld", (long long)p.batch);
    snprintf(v[2], sizeof v[2], "%d", world);
    if (rc == 0) rc = dt_st_list_meta(l, NULL, "epoch", v[0]);
    if (rc == 0) rc = dt_st_list_meta(l, NULL, "batch", v[1]);
    if (rc == 0) rc = dt_st_list_meta(l, NULL, "world_size", v[2]);
    if (rc == 0) rc = dt_st_list_meta(l, NULL, "model", a->model);
    if (rc == 0) rc = dt_snapshot_save_list(snap, p.step, l);
    dt_st_list_free(l);
    return rc;
}

static int meta_i64(const dt_st_file *f, const char *key, int64_t *out)
{
    const char *v = dt_st_meta_get(f, key);
    char *end = NULL;
    if (v) *out = strtoll(v, &end, 10);
    if (!v || !*v || *end) return dt_set_error(DT_ECORRUPT, "snapshot: metadata '%s' missing or not a number", key);
    return 0;
}

/* Resume from the newest good snapshot; *found false when there is none. */
static int load_snapshot(dt_snapshot *snap, dt_module *model, dt_optim *opt, const args *a, int world, position *p,
                         bool *found)
{
    dt_st_file *f = NULL;
    int64_t step = 0;
    *found = false;
    int rc = dt_snapshot_load_latest(snap, &f, &step);
    if (rc == DT_ENOTFOUND) { dt_clear_error(); return 0; }
    if (rc < 0) return rc;
    int64_t w = 0;
    const char *m = dt_st_meta_get(f, "model");
    if (!m || strcmp(m, a->model) != 0) {
        rc = dt_set_error(DT_EMISMATCH, "snapshot of step %lld holds model %s, this run trains %s (use another --snapshot)",
                          (long long)step, m ? m : "?", a->model);
        goto out;
    }
    DT_CHECK_GOTO(meta_i64(f, "world_size", &w), rc, out);
    if (w != world) {
        /* the data order depends on the world size: continuing would not be the same run */
        rc = dt_set_error(DT_EMISMATCH, "snapshot of step %lld was taken with %lld ranks, this run has %d", (long long)step,
                          (long long)w, world);
        goto out;
    }
    DT_CHECK_GOTO(meta_i64(f, "epoch", &p->epoch), rc, out);
    DT_CHECK_GOTO(meta_i64(f, "batch", &p->batch), rc, out);
    DT_CHECK_GOTO(dt_module_state_load(model, f, "model.", "snapshot"), rc, out);
    DT_CHECK_GOTO(dt_optim_state_load(opt, f, "optim.", "snapshot"), rc, out);
    p->step = step;
    *found = true;
out:
    dt_st_close(f);
    return rc;
}

/* Rank 0's progress: a bar redrawn in place on a terminal, a plain line every
 * `every` steps otherwise. */
static void progress(bool tty, int ep, int64_t b, int64_t nbatches, double loss, double sps, double eta)
{
    if (tty) {
        int w = 30, done = nbatches ? (int)(w * b / nbatches) : w;
        printf("\repoch %d [%.*s%*s] %lld/%lld loss %.4f %.0f samples/s ETA %.0fs ", ep, done,
               "##############################", w - done, "", (long long)b, (long long)nbatches, loss, sps, eta);
    } else {
        printf("epoch %d step %lld/%lld loss %.4f %.0f samples/s ETA %.0fs\n", ep, (long long)b, (long long)nbatches, loss,
               sps, eta);
    }
    fflush(stdout);
}

static bool env_set(const char *n)
{
    const char *v = getenv(n);
    return v && *v;
}

int main(int argc, char **argv)
{
    args a;
    if (parse(argc, argv, &a)) return 2;
    split tr = {0}, te = {0};
    dt_module *model = NULL;
    dt_optim *opt = NULL;
    dt_sampler *smp = NULL;
    dt_pg *pg = NULL;
    dt_ddp *ddp = NULL;
    dt_snapshot *snap = NULL;
    float *xb = NULL;
    int64_t *yb = NULL;
    int rc = 0, rank = 0, world = 1;
    DT_CHECK_GOTO(dt_tensor_set_num_threads(a.threads), rc, fail);
    if (env_set("RANK") && env_set("WORLD_SIZE")) {
        if (!(pg = dt_init_process_group(a.backend, "env://", NULL))) goto fail;
        rank = dt_pg_rank(pg), world = dt_pg_size(pg);
    }
    dt_rng g = dt_rng_make((uint64_t)a.seed, dt_rng_stream(DT_RNG_INIT, 0));
    model = strcmp(a.model, "mlp") == 0 ? make_mlp(&g) : make_cnn(&g);
    if (!model) goto fail;
    if (a.init) DT_CHECK_GOTO(dt_module_load(model, a.init), rc, fail);
    if (pg && !(ddp = dt_ddp_wrap(model, pg, NULL))) goto fail;   /* rank 0's weights everywhere */
    size_t ns;
    const dt_param_slot *slots = dt_module_slots(model, &ns);   /* after the wrap: DDP's gradients */
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
    position pos = {0, 0, 0};
    if (a.snapshot) {
        if (!(snap = dt_snapshot_open(a.snapshot, NULL))) goto fail;
        bool found = false;
        DT_CHECK_GOTO(load_snapshot(snap, model, opt, &a, world, &pos, &found), rc, fail);
        if (rank == 0) {
            if (found)
                printf("resuming from the snapshot of step %lld in %s (epoch %lld, batch %lld)\n", (long long)pos.step,
                       a.snapshot, (long long)pos.epoch, (long long)pos.batch);
            else
                printf("no snapshot in %s: starting fresh\n", a.snapshot);
            fflush(stdout);
        }
    }
    DT_CHECK_GOTO(load_split(a.data, "train", &tr), rc, fail);
    DT_CHECK_GOTO(load_split(a.data, "t10k", &te), rc, fail);
    dt_sampler_opts so = DT_SAMPLER_OPTS_INIT;
    so.shuffle = !a.no_shuffle, so.seed = a.seed, so.num_replicas = world, so.rank = rank;
    if (!(smp = dt_sampler_distributed(tr.n, so))) goto fail;

    /* One batch: x (B, 1, 28, 28) and y (B) gathered in the sampler's order. */
    xb = dt_alloc((size_t)a.batch * 784 * sizeof(float), DT_MEM_DATA);
    yb = dt_alloc((size_t)a.batch * sizeof(int64_t), DT_MEM_DATA);
    if (!xb || !yb) goto fail;
    bool tty = rank == 0 && isatty(STDOUT_FILENO);
    double tot_t = 0, last_loss = 0;
    int64_t tot_s = 0, step = pos.step;
    for (int ep = (int)pos.epoch; ep < a.epochs; ep++) {
        DT_CHECK_GOTO(dt_sampler_set_epoch(smp, ep), rc, fail);
        const int64_t *idx = dt_sampler_indices(smp);
        int64_t len = dt_sampler_len(smp), seen = 0, nbatches = (len + a.batch - 1) / a.batch;
        int64_t first = ep == pos.epoch ? pos.batch : 0, every = nbatches / 10 > 0 ? nbatches / 10 : 1;
        dt_module_train(model, true);
        if (pg) DT_CHECK_GOTO(dt_pg_barrier(pg, NULL, NULL), rc, fail);
        dt_ddp_stats st0 = {0};
        if (ddp) st0 = dt_ddp_get_stats(ddp);
        double t0 = dt_now_s();
        for (int64_t bi = first; bi < nbatches; bi++) {
            int64_t b = bi * a.batch, nb = len - b < a.batch ? len - b : a.batch;
            for (int64_t i = 0; i < nb; i++) {
                memcpy(xb + i * 784, tr.x + idx[b + i] * 784, 784 * sizeof(float));
                yb[i] = tr.y[idx[b + i]];
            }
            DT_SCOPE {
                dt_tensor *x = dt_from_buffer(xb, DT_F32, DT_SHAPE(nb, 1, 28, 28));
                dt_tensor *y = dt_from_buffer(yb, DT_I64, DT_SHAPE(nb));
                dt_optim_zero_grad(opt);
                dt_tensor *out = ddp ? dt_ddp_forward(ddp, x) : dt_module_forward(model, x);
                dt_tensor *loss = dt_cross_entropy(out, y);
                rc = loss ? dt_backward(loss) : dt_last_error_code();
                if (rc == 0) rc = dt_optim_step(opt);
                if (rc == 0) last_loss = dt_tensor_item(loss);
            }
            if (rc < 0) goto fail;
            seen += nb;
            step++;
            bool last = bi + 1 == nbatches || (a.steps && step >= a.steps);
            if (snap && rank == 0 && ((a.snapshot_every && step % a.snapshot_every == 0) || last)) {
                position p = {ep, bi + 1, step};
                if (bi + 1 == nbatches) p.epoch = ep + 1, p.batch = 0;
                DT_CHECK_GOTO(save_snapshot(snap, model, opt, &a, p, world), rc, fail);
            }
            if (rank == 0 && ((bi + 1 - first) % every == 0 || tty) && !last) {
                double el = dt_now_s() - t0, sps = (double)seen * world / (el > 0 ? el : 1e-9);
                progress(tty, ep, bi + 1, nbatches, last_loss, sps, (double)(nbatches - bi - 1) * a.batch * world / sps);
            }
            if (a.steps && step >= a.steps) break;
        }
        if (pg) DT_CHECK_GOTO(dt_pg_barrier(pg, NULL, NULL), rc, fail);
        dt_ddp_stats st1 = {0};
        if (ddp) st1 = dt_ddp_get_stats(ddp);
        double dt = dt_now_s() - t0, wait = st1.wait_s - st0.wait_s;
        double comm = st1.comm_s - st0.comm_s, hidden = st1.hidden_s - st0.hidden_s;
        tot_t += dt, tot_s += seen * world;
        if (rank == 0) {
            if (tty) printf("\n");
            double acc = a.epochs > 1 ? accuracy(model, &te) : -2;
            printf("epoch %d: %.0f samples/s (global), last loss %.4f", ep, (double)seen * world / dt, last_loss);
            if (acc >= 0) printf(", test acc %.4f", acc);
            if (ddp)
                printf(", waiting on communication %.1f%% of step time (all_reduce running %.1f%% of step time, "
                       "%.0f%% of that hidden behind backward)", 100 * wait / (dt > 0 ? dt : 1),
                       100 * comm / (dt > 0 ? dt : 1), 100 * hidden / (comm > 0 ? comm : 1));
            printf("\n");
            fflush(stdout);
        }
        if (a.steps && step >= a.steps) break;
    }
    if (rank == 0) {
        double acc = accuracy(model, &te);
        if (acc < 0) goto fail;
        if (a.save) DT_CHECK_GOTO(dt_module_save(model, a.save), rc, fail);
        printf("RESULT model=%s world=%d bs=%lld steps=%lld samples_per_s=%.0f loss=%.6f test_acc=%.4f\n", a.model, world,
               (long long)a.batch, (long long)step, tot_t > 0 ? (double)tot_s / tot_t : 0.0, last_loss, acc);
    }
    if (pg) DT_CHECK_GOTO(dt_pg_barrier(pg, NULL, NULL), rc, fail);
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
    dt_ddp_free(ddp);
    dt_snapshot_close(snap);
    dt_module_free(model);
    dt_destroy_process_group(pg);
    return rc;
}
