/* Datasets and the DataLoader: batch order against torch's DataLoader with
 * DistributedSampler, RandomSampler and the default sampler (tests/data/loader_ref.py);
 * identical bytes for any worker count; the last short batch and drop_last; resuming
 * mid-epoch; errors from a dataset (a bad IDX file, a failing get) reaching
 * dt_loader_next; freeing while workers prefetch; batches inside scopes; token
 * windows equal to the reference GPT's rules. */
#include "dt_test.h"
#include "dt_python.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define FMNIST "/usr/share/datasets/fashion-mnist"

static char g_dir[256];
static dt_st_file *g_ref;

static int64_t parse_i(const char **s)
{
    int neg = **s == 'm';
    if (neg) (*s)++;
    char *end;
    long long v = strtoll(*s, &end, 10);
    *s = *end == '.' ? end + 1 : end;
    return neg ? -v : v;
}

/* x = y = arange(n) (int64, shape (n)): a batch's values are its items. */
static dt_dataset *arange_ds(int64_t n)
{
    dt_tensor *x = dt_arange(DT_I64, 0, (double)n, 1);
    dt_dataset *ds = dt_dataset_tensors(x, x);
    dt_tensor_release(x);
    return ds;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ vs torch */
static void t_order_vs_torch(void)
{
    if (!g_ref) return;
    static int64_t got[4096], sizes[4096];
    int cases = 0;
    for (size_t ti = 0; ti < dt_st_count(g_ref); ti++) {
        const dt_st_tensor *items = dt_st_at(g_ref, ti);
        size_t L = strlen(items->name);
        if (L < 6 || strcmp(items->name + L - 6, ".items") != 0) continue;
        char base[200], sname[220];
        snprintf(base, sizeof base, "%.*s", (int)(L - 6), items->name);
        snprintf(sname, sizeof sname, "%s.sizes", base);
        const dt_st_tensor *st = dt_st_find(g_ref, sname);
        DT_ASSERT_MSG(st, "no %s", sname);
        const char *s = strchr(base, '.') + 1;
        dt_sampler *smp = NULL;
        dt_loader_opts o = DT_LOADER_OPTS_INIT;
        o.num_workers = (int[]){0, 1, 3}[cases % 3];
        o.prefetch_factor = 1 + cases % 2;
        int64_t n, epoch = 0;
        if (!strncmp(base, "dl.", 3)) {
            n = parse_i(&s);
            dt_sampler_opts so = DT_SAMPLER_OPTS_INIT;
            so.num_replicas = parse_i(&s);
            so.rank = parse_i(&s);
            o.batch_size = parse_i(&s);
            o.drop_last = parse_i(&s);
            so.drop_last = parse_i(&s);
            so.shuffle = parse_i(&s);
            so.seed = parse_i(&s);
            epoch = parse_i(&s);
            smp = dt_sampler_distributed(n, so);
        } else if (!strncmp(base, "rs.", 3)) {
            n = parse_i(&s);
            o.batch_size = parse_i(&s);
            dt_random_sampler_opts ro = DT_RANDOM_SAMPLER_OPTS_INIT;
            ro.replacement = parse_i(&s);
            ro.num_samples = parse_i(&s);
            ro.seed = parse_i(&s);
            epoch = parse_i(&s);
            smp = dt_sampler_random(n, ro);
        } else {
            n = parse_i(&s);
            o.batch_size = parse_i(&s);
            o.drop_last = parse_i(&s);
        }
        DT_ASSERT_MSG(smp || !strncmp(base, "seq.", 4), "%s: %s", base, dt_last_error());
        dt_dataset *ds = arange_ds(n);
        dt_loader *ld = dt_loader_new(ds, smp, &o);
        DT_ASSERT_MSG(ld, "%s", dt_last_error());
        if (smp) DT_ASSERT_OK(dt_loader_set_epoch(ld, epoch));
        int64_t nb = 0, at = 0, rc;
        dt_batch b;
        while ((rc = dt_loader_next(ld, &b)) > 0) {
            DT_ASSERT(nb < 4096 && at + b.size <= 4096);
            DT_ASSERT_EQ(b.index, nb);
            DT_ASSERT_EQ(b.epoch, epoch);
            DT_ASSERT_EQ(dt_tensor_ndim(b.x), 1);
            DT_ASSERT_EQ(dt_tensor_size(b.x, 0), b.size);
            const int64_t *xv = dt_tensor_data(b.x);
            for (int64_t j = 0; j < b.size; j++) {
                DT_ASSERT_EQ(b.indices[j], xv[j]);
                got[at + j] = xv[j];
            }
            sizes[nb++] = b.size;
            at += b.size;
        }
        DT_ASSERT_MSG(rc == 0, "%s: %s", base, dt_last_error());
        DT_ASSERT_MSG(nb == st->numel && at == items->numel, "%s: %lld batches of %lld items, torch %lld of %lld", base,
                      (long long)nb, (long long)at, (long long)st->numel, (long long)items->numel);
        DT_ASSERT_EQ(dt_loader_len(ld), nb);
        for (int64_t j = 0; j < nb; j++) DT_ASSERT_EQ(sizes[j], ((const int64_t *)st->data)[j]);
        for (int64_t j = 0; j < at; j++)
            DT_ASSERT_MSG(got[j] == ((const int64_t *)items->data)[j], "%s: item %lld is %lld, torch %lld", base,
                          (long long)j, (long long)got[j], (long long)((const int64_t *)items->data)[j]);
        dt_loader_state ls = dt_loader_get_state(ld);
        DT_ASSERT_EQ(ls.epoch, epoch);
        DT_ASSERT_EQ(ls.batch, nb);
        dt_loader_free(ld);
        dt_dataset_free(ds);
        dt_sampler_free(smp);
        cases++;
    }
    DT_ASSERT(cases > 3000);
    fprintf(stderr, "     %d loader orders equal torch's\n", cases);
}

/* ------------------------------------------------------ worker counts */
/* A dataset that augments: x = 16 raw u32 of its own stream, y = the item. */
static int aug_get(void *ctx, int64_t i, void *x, void *y, dt_rng *rng)
{
    int *worker_seen = ctx;
    int w = dt_loader_worker_id();
    if (worker_seen && w >= -1 && w < 8) __atomic_store_n(&worker_seen[w + 1], 1, __ATOMIC_RELAXED);
    dt_rng *wr = dt_loader_worker_rng();
    if ((wr != NULL) != (w >= 0)) return dt_set_error(DT_EINTERNAL, "worker rng on the wrong thread");
    if (wr) {   /* per-worker streams differ by worker and advance */
        uint64_t off = wr->offset;
        uint32_t v;
        dt_rng_u32(wr, &v, 1);
        if (wr->offset != off + 1 || (wr->stream >> 40) != (uint64_t)w + 1)
            return dt_set_error(DT_EINTERNAL, "worker %d rng stream %llx", w, (unsigned long long)wr->stream);
    }
    dt_rng_u32(rng, x, 16);
    *(int64_t *)y = i;
    return 0;
}

static dt_dataset *aug_ds(int64_t n, int *worker_seen)
{
    static const dt_dataset_ops ops = {.name = "aug", .get = aug_get};
    dt_sample_spec xs = {.dtype = DT_I32, .ndim = 2, .shape = {4, 4}}, ys = {.dtype = DT_I64};
    return dt_dataset_new(&ops, worker_seen, n, &xs, &ys);
}

/* crc of every batch's x and y bytes, and the count; -1 on error */
static int64_t pass_crcs(dt_loader *ld, uint32_t *crc, int64_t max)
{
    dt_batch b;
    int64_t nb = 0;
    int rc;
    while ((rc = dt_loader_next(ld, &b)) > 0) {
        if (nb >= max) return -1;
        size_t xb = (size_t)dt_tensor_numel(b.x) * dt_dtype_size(dt_tensor_dtype(b.x));
        size_t yb = (size_t)dt_tensor_numel(b.y) * dt_dtype_size(dt_tensor_dtype(b.y));
        crc[nb++] = dt_crc32c(dt_crc32c(0, dt_tensor_data(b.x), xb), dt_tensor_data(b.y), yb);
    }
    return rc < 0 ? -1 : nb;
}

static void t_workers_same_bytes_aug(void)
{
    static uint32_t ref[300], got[300];
    int seen[9];
    int64_t nref = -1;
    dt_sampler_opts so = DT_SAMPLER_OPTS_INIT;
    so.num_replicas = 3;
    so.rank = 2;
    so.seed = 4;
    dt_sampler *smp = dt_sampler_distributed(1001, so);
    for (int w = 0; w <= 4; w++) {
        for (int pf = 1; pf <= 3; pf += 2) {
            memset(seen, 0, sizeof seen);
            dt_dataset *ds = aug_ds(1001, seen);
            dt_loader_opts o = DT_LOADER_OPTS_INIT;
            o.batch_size = 10;
            o.num_workers = w;
            o.prefetch_factor = pf;
            o.seed = 77;
            dt_loader *ld = dt_loader_new(ds, smp, &o);
            DT_ASSERT(ld);
            for (int ep = 0; ep < 2; ep++) {
                DT_ASSERT_OK(dt_loader_set_epoch(ld, ep));
                int64_t nb = pass_crcs(ld, ep ? got + 150 : got, 150);
                DT_ASSERT_EQ(nb, 34); /* 334 items: 33 full, one of 4 */
                if (nref < 0) nref = nb;
            }
            if (w == 0 && pf == 1) memcpy(ref, got, sizeof ref);
            for (int k = 0; k < 34; k++) {
                DT_ASSERT_MSG(got[k] == ref[k], "workers %d: epoch 0 batch %d differs", w, k);
                DT_ASSERT_MSG(got[150 + k] == ref[150 + k], "workers %d: epoch 1 batch %d differs", w, k);
                DT_ASSERT(got[k] != got[150 + k]); /* other epoch, other order and other streams */
            }
            /* the get() calls ran on the workers, numbered 0 .. w-1, or on this thread */
            if (w == 0) DT_ASSERT(seen[0] && !seen[1]);
            else {
                DT_ASSERT(!seen[0]);
                for (int i = w + 1; i < 9; i++) DT_ASSERT(!seen[i]);
            }
            dt_loader_free(ld);
            dt_dataset_free(ds);
        }
    }
    /* another seed, other bytes */
    dt_dataset *ds = aug_ds(1001, NULL);
    dt_loader_opts o = DT_LOADER_OPTS_INIT;
    o.batch_size = 10;
    o.seed = 78;
    dt_loader *ld = dt_loader_new(ds, smp, &o);
    DT_ASSERT_OK(dt_loader_set_epoch(ld, 0));
    DT_ASSERT_EQ(pass_crcs(ld, got, 150), 34);
    DT_ASSERT(got[0] != ref[0]);
    dt_loader_free(ld);
    dt_dataset_free(ds);
    dt_sampler_free(smp);
    DT_ASSERT_EQ(dt_loader_worker_id(), -1);
}

static void t_fmnist_workers(void)
{
    if (access(FMNIST "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        fprintf(stderr, "SKIP: " FMNIST " missing (apt-get install dataset-fashion-mnist)\n");
        return;
    }
    dt_dataset *ds = dt_dataset_fmnist(NULL, "train", false);
    DT_ASSERT_MSG(ds, "%s", dt_last_error());
    DT_ASSERT_EQ(dt_dataset_len(ds), 60000);
    const dt_sample_spec *xs = dt_dataset_x_spec(ds);
    DT_ASSERT_EQ(xs->ndim, 3);
    DT_ASSERT_EQ(xs->shape[0], 1);
    DT_ASSERT_EQ(xs->shape[2], 28);
    /* against the reader and dt_idx_normalize_u8 directly */
    dt_idx im, lb;
    DT_ASSERT_OK(dt_idx_read(FMNIST "/train-images-idx3-ubyte.gz", &im));
    DT_ASSERT_OK(dt_idx_read(FMNIST "/train-labels-idx1-ubyte.gz", &lb));
    float *norm = malloc(sizeof(float) * 784 * 60000);
    DT_ASSERT_OK(dt_idx_normalize_u8(&im, DT_FMNIST_MEAN, DT_FMNIST_STD, norm));

    static uint32_t ref[400], got[400];
    dt_sampler_opts so = DT_SAMPLER_OPTS_INIT;
    so.num_replicas = 3;
    so.rank = 1;
    dt_sampler *smp = dt_sampler_distributed(60000, so);
    for (int w = 0; w <= 3; w += (w ? 2 : 1)) {   /* 0, 1, 3 */
        dt_loader_opts o = DT_LOADER_OPTS_INIT;
        o.batch_size = 64;
        o.num_workers = w;
        dt_loader *ld = dt_loader_new(ds, smp, &o);
        DT_ASSERT_OK(dt_loader_set_epoch(ld, 1));
        DT_ASSERT_EQ(dt_loader_len(ld), 313); /* 20000 = 312 * 64 + 32 */
        dt_batch b;
        int64_t nb = 0;
        int rc;
        while ((rc = dt_loader_next(ld, &b)) > 0) {
            DT_ASSERT(nb < 400);
            DT_ASSERT_EQ(dt_tensor_ndim(b.x), 4);
            DT_ASSERT_EQ(dt_tensor_dtype(b.x), DT_F32);
            DT_ASSERT_EQ(dt_tensor_dtype(b.y), DT_I64);
            DT_ASSERT_EQ(dt_tensor_size(b.x, 0), b.size);
            DT_ASSERT_EQ(b.size, nb == 312 ? 32 : 64);
            const float *x = dt_tensor_data(b.x);
            const int64_t *y = dt_tensor_data(b.y);
            if (w == 0 && (nb == 0 || nb == 312))
                for (int64_t j = 0; j < b.size; j++) {
                    DT_ASSERT(memcmp(x + j * 784, norm + b.indices[j] * 784, 784 * sizeof(float)) == 0);
                    DT_ASSERT_EQ(y[j], ((const uint8_t *)lb.data)[b.indices[j]]);
                }
            got[nb++] = dt_crc32c(dt_crc32c(0, x, (size_t)b.size * 784 * 4), y, (size_t)b.size * 8);
        }
        DT_ASSERT_OK(rc);
        DT_ASSERT_EQ(nb, 313);
        if (w == 0) memcpy(ref, got, sizeof ref);
        for (int k = 0; k < 313; k++) DT_ASSERT_MSG(got[k] == ref[k], "workers %d: batch %d differs", w, k);
        dt_loader_free(ld);
    }
    free(norm);
    dt_idx_free(&im);
    dt_idx_free(&lb);
    dt_sampler_free(smp);
    dt_dataset_free(ds);
}

/* ------------------------------------------ short batch, drop_last, shapes */
static void t_last_batch_and_drop_last(void)
{
    dt_tensor *x = dt_arange(DT_F32, 0, 30, 1);
    dt_tensor *x3 = dt_reshape(x, DT_SHAPE(10, 3));
    dt_tensor *y = dt_arange(DT_I64, 100, 110, 1);
    dt_dataset *ds = dt_dataset_tensors(x3, y);
    dt_tensor_release(x);
    dt_tensor_release(x3);
    dt_tensor_release(y);
    DT_ASSERT(ds);
    DT_ASSERT_EQ(dt_dataset_x_spec(ds)->ndim, 1);
    for (int drop = 0; drop <= 1; drop++)
        for (int w = 0; w <= 2; w++) {
            dt_loader_opts o = DT_LOADER_OPTS_INIT;
            o.batch_size = 4;
            o.drop_last = drop;
            o.num_workers = w;
            dt_loader *ld = dt_loader_new(ds, NULL, &o);
            DT_ASSERT_EQ(dt_loader_len(ld), drop ? 2 : 3);
            for (int pass = 0; pass < 2; pass++) { /* a second pass begins after the end */
                dt_batch b;
                int64_t nb = 0;
                while (dt_loader_next(ld, &b) > 0) {
                    int64_t want = nb < 2 ? 4 : 2;
                    DT_ASSERT_EQ(b.size, want);
                    DT_ASSERT_EQ(dt_tensor_size(b.x, 0), want);
                    DT_ASSERT_EQ(dt_tensor_size(b.x, 1), 3);
                    DT_ASSERT_EQ(dt_tensor_size(b.y, 0), want);
                    DT_ASSERT(dt_tensor_is_contiguous(b.x));
                    const float *xv = dt_tensor_data(b.x);
                    const int64_t *yv = dt_tensor_data(b.y);
                    for (int64_t j = 0; j < want; j++) {
                        DT_ASSERT_EQ(yv[j], 100 + nb * 4 + j);
                        for (int c = 0; c < 3; c++) DT_ASSERT_EQ(xv[j * 3 + c], (nb * 4 + j) * 3 + c);
                    }
                    nb++;
                }
                DT_ASSERT_EQ(nb, drop ? 2 : 3);
            }
            dt_loader_free(ld);
        }
    dt_dataset_free(ds);

    /* an empty dataset: no batches; batch larger than the dataset: one short batch */
    dt_dataset *e = arange_ds(0);
    dt_loader *ld = dt_loader_new(e, NULL, NULL);
    dt_batch b;
    DT_ASSERT_EQ(dt_loader_len(ld), 0);
    DT_ASSERT_EQ(dt_loader_next(ld, &b), 0);
    dt_loader_free(ld);
    dt_dataset_free(e);
    e = arange_ds(5);
    dt_loader_opts o = DT_LOADER_OPTS_INIT;
    o.batch_size = 64;
    o.num_workers = 2;
    ld = dt_loader_new(e, NULL, &o);
    DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
    DT_ASSERT_EQ(b.size, 5);
    DT_ASSERT_EQ(dt_loader_next(ld, &b), 0);
    dt_loader_free(ld);
    o.drop_last = true;
    ld = dt_loader_new(e, NULL, &o);
    DT_ASSERT_EQ(dt_loader_next(ld, &b), 0);
    dt_loader_free(ld);
    dt_dataset_free(e);
}

/* A non-contiguous x is copied; a contiguous one is shared. */
static void t_tensor_dataset(void)
{
    dt_tensor *base = dt_arange(DT_F32, 0, 12, 1);
    dt_tensor *m = dt_reshape(base, DT_SHAPE(3, 4));
    dt_tensor *mt = dt_transpose(m, 0, 1);   /* (4, 3), strided */
    dt_tensor *y = dt_arange(DT_I64, 0, 4, 1);
    DT_ASSERT(!dt_tensor_is_contiguous(mt));
    dt_dataset *ds = dt_dataset_tensors(mt, y);
    DT_ASSERT_MSG(ds, "%s", dt_last_error());
    DT_ASSERT_EQ(dt_dataset_len(ds), 4);
    float xv[3];
    int64_t yv;
    DT_ASSERT_OK(dt_dataset_get(ds, 1, xv, &yv, NULL));
    DT_ASSERT_EQ(xv[0], 1);
    DT_ASSERT_EQ(xv[1], 5);
    DT_ASSERT_EQ(xv[2], 9);
    DT_ASSERT_EQ(yv, 1);
    DT_ASSERT_ERR(dt_dataset_get(ds, 4, xv, &yv, NULL), DT_ERANGE);
    DT_ASSERT_CONTAINS(dt_last_error(), "tensors dataset: item 4 outside 0 .. 3");
    DT_ASSERT_ERR(dt_dataset_get(ds, -1, xv, &yv, NULL), DT_ERANGE);
    dt_dataset_free(ds);
    /* different N */
    DT_ASSERT(!dt_dataset_tensors(m, y));
    DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
    /* retained: the caller's release does not end the data */
    ds = dt_dataset_tensors(mt, mt);
    dt_tensor_release(base);
    dt_tensor_release(m);
    dt_tensor_release(mt);
    dt_tensor_release(y);
    float a[3], c[3];
    DT_ASSERT_OK(dt_dataset_get(ds, 3, a, c, NULL));
    DT_ASSERT_EQ(a[2], 11);
    dt_dataset_free(ds);
}

/* ---------------------------------------------------------- resume */
static void t_resume_mid_epoch(void)
{
    dt_dataset *ds = arange_ds(203);
    dt_sampler_opts so = DT_SAMPLER_OPTS_INIT;
    so.num_replicas = 2;
    so.rank = 1;
    so.seed = 9;
    dt_sampler *smp = dt_sampler_distributed(203, so);
    dt_loader_opts o = DT_LOADER_OPTS_INIT;
    o.batch_size = 7;   /* 102 items: 14 full batches, one of 4 */
    static int64_t full[3][120];
    dt_loader *ld = dt_loader_new(ds, smp, &o);
    dt_loader_state st0 = dt_loader_get_state(ld);
    DT_ASSERT_EQ(st0.epoch, 0);
    DT_ASSERT_EQ(st0.batch, 0);
    for (int ep = 0; ep < 3; ep++) {
        DT_ASSERT_OK(dt_loader_set_epoch(ld, ep));
        dt_batch b;
        int64_t at = 0;
        while (dt_loader_next(ld, &b) > 0)
            for (int64_t j = 0; j < b.size; j++) full[ep][at++] = b.indices[j];
        DT_ASSERT_EQ(at, 102);
    }
    dt_loader_free(ld);
    int64_t len = 15;
    for (int w = 0; w <= 3; w += 3)
        for (int ki = 0; ki < 5; ki++) {
            int64_t k0 = (int64_t[]){0, 1, 5, len - 1, len}[ki];
            /* a run that stops after k0 batches of epoch 1 and saves its state ... */
            o.num_workers = w;
            ld = dt_loader_new(ds, smp, &o);
            DT_ASSERT_OK(dt_loader_set_epoch(ld, 1));
            dt_batch b;
            for (int64_t k = 0; k < k0; k++) DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
            dt_loader_state st = dt_loader_get_state(ld);
            DT_ASSERT_EQ(st.epoch, 1);
            DT_ASSERT_EQ(st.batch, k0);
            dt_loader_free(ld);   /* mid-epoch, workers prefetching */
            /* ... and the resumed one sees exactly the rest, then the next epoch whole */
            dt_sampler_set_epoch(smp, 0);   /* a fresh process: the sampler starts anywhere */
            ld = dt_loader_new(ds, smp, &o);
            DT_ASSERT_OK(dt_loader_seek(ld, st.epoch, st.batch));
            int64_t at = k0 < len ? k0 * 7 : 102;
            int64_t k = k0;
            while (dt_loader_next(ld, &b) > 0) {
                DT_ASSERT_EQ(b.index, k++);
                for (int64_t j = 0; j < b.size; j++) DT_ASSERT_EQ(b.indices[j], full[1][at++]);
            }
            DT_ASSERT_EQ(at, 102);
            DT_ASSERT_OK(dt_loader_set_epoch(ld, 2));
            at = 0;
            while (dt_loader_next(ld, &b) > 0)
                for (int64_t j = 0; j < b.size; j++) DT_ASSERT_EQ(b.indices[j], full[2][at++]);
            DT_ASSERT_EQ(at, 102);
            /* seeking mid-pass, while workers are ahead, and backwards */
            DT_ASSERT_OK(dt_loader_set_epoch(ld, 0));
            DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
            DT_ASSERT_OK(dt_loader_seek(ld, 2, 3));
            DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
            DT_ASSERT_EQ(b.index, 3);
            DT_ASSERT_EQ(b.epoch, 2);
            DT_ASSERT_EQ(b.indices[0], full[2][21]);
            DT_ASSERT_ERR(dt_loader_seek(ld, 2, 16), DT_ERANGE);
            DT_ASSERT_ERR(dt_loader_seek(ld, 2, -1), DT_ERANGE);
            dt_loader_free(ld);
        }
    dt_sampler_free(smp);
    dt_dataset_free(ds);
}

/* The loader's position through a snapshot's metadata, as a restarted job does it. */
static void t_resume_via_snapshot(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/snap", g_dir);
    dt_dataset *ds = aug_ds(500, NULL);
    dt_sampler_opts so = DT_SAMPLER_OPTS_INIT;
    so.num_replicas = 3;
    so.rank = 0;
    dt_loader_opts o = DT_LOADER_OPTS_INIT;
    o.batch_size = 16;   /* 167 items: 11 batches, the last of 7 */
    o.num_workers = 2;
    o.seed = 5;
    static uint32_t whole[20], rest[20];
    dt_sampler *smp = dt_sampler_distributed(500, so);
    dt_loader *ld = dt_loader_new(ds, smp, &o);
    DT_ASSERT_OK(dt_loader_set_epoch(ld, 3));
    DT_ASSERT_EQ(pass_crcs(ld, whole, 20), 11);
    /* the first run: 6 batches of epoch 3, then a snapshot */
    DT_ASSERT_OK(dt_loader_set_epoch(ld, 3));
    dt_batch b;
    for (int k = 0; k < 6; k++) DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
    dt_loader_state st = dt_loader_get_state(ld);
    char e[32], k[32];
    snprintf(e, sizeof e, "%lld", (long long)st.epoch);
    snprintf(k, sizeof k, "%lld", (long long)st.batch);
    dt_st_meta meta[2] = {{"loader.epoch", e}, {"loader.batch", k}};
    float wv = 1.5f;
    dt_st_entry ent = {.name = "w", .dtype = DT_F32, .ndim = 1, .shape = (const int64_t[]){1}, .data = &wv};
    dt_snapshot *sn = dt_snapshot_open(dir, NULL);
    DT_ASSERT_MSG(sn, "%s", dt_last_error());
    DT_ASSERT_OK(dt_snapshot_save(sn, 6, &ent, 1, meta, 2));
    dt_snapshot_close(sn);
    dt_loader_free(ld);
    dt_sampler_free(smp);
    /* the restarted one */
    smp = dt_sampler_distributed(500, so);
    ld = dt_loader_new(ds, smp, &o);
    sn = dt_snapshot_open(dir, NULL);
    dt_st_file *f;
    int64_t step;
    DT_ASSERT_OK(dt_snapshot_load_latest(sn, &f, &step));
    DT_ASSERT_EQ(step, 6);
    DT_ASSERT_OK(dt_loader_seek(ld, atoll(dt_st_meta_get(f, "loader.epoch")), atoll(dt_st_meta_get(f, "loader.batch"))));
    dt_st_close(f);
    dt_snapshot_close(sn);
    DT_ASSERT_EQ(pass_crcs(ld, rest, 20), 5);
    for (int j = 0; j < 5; j++) DT_ASSERT_EQ(rest[j], whole[6 + j]);
    dt_loader_free(ld);
    dt_sampler_free(smp);
    dt_dataset_free(ds);
}

/* ------------------------------------------------------------- errors */
static int fail_get(void *ctx, int64_t i, void *x, void *y, dt_rng *rng)
{
    if (i == 37) return dt_set_error(DT_EIO, "disk on fire at %lld", (long long)i);
    *(int64_t *)x = i;
    *(int64_t *)y = i;
    return 0;
}

static void t_get_error_reaches_next(void)
{
    static const dt_dataset_ops ops = {.name = "failing", .get = fail_get};
    dt_sample_spec sp = {.dtype = DT_I64};
    dt_dataset *ds = dt_dataset_new(&ops, NULL, 100, &sp, &sp);
    for (int w = 0; w <= 3; w++) {
        dt_loader_opts o = DT_LOADER_OPTS_INIT;
        o.batch_size = 8;
        o.num_workers = w;
        dt_loader *ld = dt_loader_new(ds, NULL, &o);
        dt_batch b;
        for (int k = 0; k < 4; k++) DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
        for (int again = 0; again < 2; again++) {
            DT_ASSERT_ERR(dt_loader_next(ld, &b), DT_EIO);
            DT_ASSERT_CONTAINS(dt_last_error(), "disk on fire at 37");
            DT_ASSERT_CONTAINS(dt_last_error(), "batch 4, row 5 (dataset item 37)");
            DT_ASSERT_STREQ(dt_last_error(), "loader: epoch 0, batch 4, row 5 (dataset item 37): I/O error: disk on fire at 37");
            DT_ASSERT(b.x == NULL);
        }
        dt_loader_state st = dt_loader_get_state(ld);
        DT_ASSERT_EQ(st.batch, 4);
        /* skipping past the bad batch works */
        DT_ASSERT_OK(dt_loader_seek(ld, 0, 5));
        int n = 0;
        while (dt_loader_next(ld, &b) > 0) n++;
        DT_ASSERT_EQ(n, 8);
        dt_loader_free(ld);
    }
    dt_dataset_free(ds);
}

/* A small IDX pair written here: 50 images of 2x3 u8, labels i32. */
static void write_idx(const char *path, int type, int nd, const uint32_t *dims, const void *data, size_t bytes,
                      size_t cut)
{
    uint8_t hdr[4 + 4 * 4] = {0, 0, (uint8_t)type, (uint8_t)nd};
    for (int d = 0; d < nd; d++)
        for (int k = 0; k < 4; k++) hdr[4 + 4 * d + k] = (uint8_t)(dims[d] >> (24 - 8 * k));
    gzFile g = gzopen(path, "wb");
    gzwrite(g, hdr, 4 + 4 * nd);
    if (bytes > cut) gzwrite(g, data, (unsigned)(bytes - cut));
    gzclose(g);
}

static void t_idx_dataset(void)
{
    char im[300], lb[300], bad[300], cut[300];
    snprintf(im, sizeof im, "%s/im.gz", g_dir);
    snprintf(lb, sizeof lb, "%s/lb.gz", g_dir);
    snprintf(bad, sizeof bad, "%s/bad.gz", g_dir);
    snprintf(cut, sizeof cut, "%s/cut.gz", g_dir);
    uint8_t px[50 * 6];
    uint8_t lbe[50 * 4];   /* big-endian i32 */
    for (int i = 0; i < 300; i++) px[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 50; i++) {
        int32_t v = i % 10 - (i == 3) * 1000;
        for (int k = 0; k < 4; k++) lbe[4 * i + k] = (uint8_t)((uint32_t)v >> (24 - 8 * k));
    }
    write_idx(im, 0x08, 3, (uint32_t[]){50, 2, 3}, px, sizeof px, 0);
    write_idx(lb, 0x0C, 1, (uint32_t[]){50}, lbe, sizeof lbe, 0);
    write_idx(bad, 0x08, 3, (uint32_t[]){50, 2, 3}, px, sizeof px, 7);   /* truncated data */
    write_idx(cut, 0x08, 3, (uint32_t[]){49, 2, 3}, px, sizeof px, 6);   /* 49 images */

    dt_idx_dataset_opts o = DT_IDX_DATASET_OPTS_INIT;
    o.mean = 0.5f;
    o.std = 0.25f;
    o.x_ndim = 3;
    o.x_shape[0] = 1;
    o.x_shape[1] = 2;
    o.x_shape[2] = 3;
    for (int lazy = 0; lazy <= 1; lazy++) {
        o.lazy = lazy;
        dt_dataset *ds = dt_dataset_idx(im, lb, &o);
        DT_ASSERT_MSG(ds, "%s", dt_last_error());
        DT_ASSERT_EQ(dt_dataset_len(ds), 50);
        DT_ASSERT_EQ(dt_dataset_x_spec(ds)->ndim, 3);
        DT_ASSERT_EQ(dt_dataset_y_spec(ds)->ndim, 0);
        dt_loader_opts lo = DT_LOADER_OPTS_INIT;
        lo.batch_size = 16;
        lo.num_workers = 2 * lazy;
        dt_loader *ld = dt_loader_new(ds, NULL, &lo);
        dt_batch b;
        int64_t seen = 0;
        while (dt_loader_next(ld, &b) > 0) {
            DT_ASSERT_EQ(dt_tensor_ndim(b.x), 4);
            const float *x = dt_tensor_data(b.x);
            const int64_t *y = dt_tensor_data(b.y);
            for (int64_t j = 0; j < b.size; j++, seen++) {
                for (int p = 0; p < 6; p++) {
                    float want = ((float)px[seen * 6 + p] / 255.0f - 0.5f) / 0.25f;
                    DT_ASSERT(x[j * 6 + p] == want);
                }
                DT_ASSERT_EQ(y[j], seen % 10 - (seen == 3) * 1000);
            }
        }
        DT_ASSERT_EQ(seen, 50);
        dt_loader_free(ld);
        dt_dataset_free(ds);
    }
    /* raw values, the file's own shape */
    dt_idx_dataset_opts r = DT_IDX_DATASET_OPTS_INIT;
    r.raw = true;
    dt_dataset *ds = dt_dataset_idx(im, lb, &r);
    DT_ASSERT(ds);
    DT_ASSERT_EQ(dt_dataset_x_spec(ds)->ndim, 2);
    float x6[6];
    int64_t y1;
    DT_ASSERT_OK(dt_dataset_get(ds, 2, x6, &y1, NULL));
    DT_ASSERT_EQ(x6[5], px[17]);
    dt_dataset_free(ds);

    /* bad files: now, or from next when lazy */
    DT_ASSERT(!dt_dataset_idx(bad, lb, NULL));
    DT_ASSERT_EQ(dt_last_error_code(), DT_ECORRUPT);
    DT_ASSERT_CONTAINS(dt_last_error(), "truncated");
    DT_ASSERT(!dt_dataset_idx(cut, lb, NULL));
    DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
    DT_ASSERT_CONTAINS(dt_last_error(), "49 images");
    o.lazy = false;
    o.x_shape[2] = 4;
    DT_ASSERT(!dt_dataset_idx(im, lb, &o));
    DT_ASSERT_EQ(dt_last_error_code(), DT_ESHAPE);
    DT_ASSERT(!dt_dataset_idx(lb, lb, NULL));   /* i32 "images" */
    DT_ASSERT_EQ(dt_last_error_code(), DT_EUNSUPPORTED);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/nope.gz", g_dir);
    DT_ASSERT(!dt_dataset_idx(missing, lb, NULL));
    DT_ASSERT_EQ(dt_last_error_code(), DT_ENOTFOUND);
    for (int w = 0; w <= 3; w += 3) {
        dt_idx_dataset_opts lz = DT_IDX_DATASET_OPTS_INIT;
        lz.lazy = true;
        ds = dt_dataset_idx(bad, lb, &lz);
        DT_ASSERT_MSG(ds, "lazy: only the header is read now: %s", dt_last_error());
        dt_loader_opts lo = DT_LOADER_OPTS_INIT;
        lo.batch_size = 8;
        lo.num_workers = w;
        dt_loader *ld = dt_loader_new(ds, NULL, &lo);
        dt_batch b;
        DT_ASSERT_ERR(dt_loader_next(ld, &b), DT_ECORRUPT);
        DT_ASSERT_CONTAINS(dt_last_error(), "batch 0, row 0 (dataset item 0)");
        DT_ASSERT_CONTAINS(dt_last_error(), "truncated");
        DT_ASSERT_CONTAINS(dt_last_error(), "bad.gz");
        DT_ASSERT_MSG(strstr(dt_last_error(), "malformed data: corrupt") == NULL, "%s", dt_last_error());
        if (w == 3) fprintf(stderr, "     e.g. %s\n", dt_last_error());
        DT_ASSERT_ERR(dt_loader_next(ld, &b), DT_ECORRUPT);
        DT_ASSERT_ERR(dt_loader_set_epoch(ld, 1) == 0 ? dt_loader_next(ld, &b) : -99, DT_ECORRUPT);
        dt_loader_free(ld);
        dt_dataset_free(ds);
    }
}

/* ------------------------------------------------- free while prefetching */
static int slow_get(void *ctx, int64_t i, void *x, void *y, dt_rng *rng)
{
    long us = ctx ? *(long *)ctx : 2000;
    sleep_us(us);
    memset(x, (int)(i & 0xff), 64);
    *(int64_t *)y = i;
    return 0;
}

static void t_free_while_prefetching(void)
{
    static const dt_dataset_ops ops = {.name = "slow", .get = slow_get};
    dt_sample_spec xs = {.dtype = DT_U8, .ndim = 1, .shape = {64}}, ys = {.dtype = DT_I64};
    dt_mem_stats m0, m1;
    dt_mem_get_stats(&m0);
    dt_dataset *ds = dt_dataset_new(&ops, NULL, 1000, &xs, &ys);
    double t0 = dt_now_s();
    for (int round = 0; round < 4; round++) {
        dt_loader_opts o = DT_LOADER_OPTS_INIT;
        o.batch_size = 4;
        o.num_workers = 3;
        dt_loader *ld = dt_loader_new(ds, NULL, &o);
        dt_batch b;
        if (round == 1) DT_ASSERT_OK(dt_loader_set_epoch(ld, 0));          /* started, none taken */
        if (round >= 2) DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
        if (round == 3) { DT_ASSERT_OK(dt_loader_seek(ld, 0, 100)); sleep_us(3000); }
        dt_loader_free(ld);   /* round 0: workers idle; else mid-batch */
    }
    /* a batch retained past the loader's end stays whole */
    dt_loader_opts o = DT_LOADER_OPTS_INIT;
    o.batch_size = 4;
    o.num_workers = 2;
    dt_loader *ld = dt_loader_new(ds, NULL, &o);
    dt_batch b;
    DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
    DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
    dt_tensor *keep = dt_tensor_retain(b.x);
    dt_loader_free(ld);
    DT_ASSERT_EQ(((const uint8_t *)dt_tensor_data(keep))[64 * 3], 7);
    dt_tensor_release(keep);
    dt_dataset_free(ds);
    DT_ASSERT(dt_now_s() - t0 < 10);
    dt_mem_get_stats(&m1);
    DT_ASSERT_EQ(m1.current[DT_MEM_DATA], m0.current[DT_MEM_DATA]);
}

static void t_timeout(void)
{
    static const dt_dataset_ops ops = {.name = "slow", .get = slow_get};
    dt_sample_spec xs = {.dtype = DT_U8, .ndim = 1, .shape = {64}}, ys = {.dtype = DT_I64};
    long us = 100000;
    dt_dataset *ds = dt_dataset_new(&ops, &us, 10, &xs, &ys);
    dt_loader_opts o = DT_LOADER_OPTS_INIT;
    o.batch_size = 2;   /* 200 ms a batch */
    o.num_workers = 1;
    o.timeout_ms = 30;
    dt_loader *ld = dt_loader_new(ds, NULL, &o);
    dt_batch b;
    DT_ASSERT_ERR(dt_loader_next(ld, &b), DT_ETIMEOUT);
    DT_ASSERT_CONTAINS(dt_last_error(), "batch 0 of epoch 0 not built within 30 ms");
    int rc, tries = 0;
    while ((rc = dt_loader_next(ld, &b)) == DT_ETIMEOUT) tries++;
    DT_ASSERT_EQ(rc, 1);
    DT_ASSERT_EQ(b.index, 0);
    DT_ASSERT(tries >= 1 && tries < 100);
    dt_loader_free(ld);
    dt_dataset_free(ds);
}

/* ------------------------------------------------------------- scopes */
static void t_batches_and_scopes(void)
{
    dt_dataset *ds = aug_ds(40, NULL);
    for (int w = 0; w <= 1; w++) {
        dt_loader_opts o = DT_LOADER_OPTS_INIT;
        o.batch_size = 8;
        o.num_workers = w;
        dt_loader *ld = dt_loader_new(ds, NULL, &o);
        dt_batch b;
        /* next inside a scope: the batch outlives the scope, until the next call */
        DT_SCOPE {
            DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
            dt_tensor *f = dt_zeros(DT_F32, DT_SHAPE(8));
            dt_tensor_copy_(f, b.y);   /* a step's use of it */
        }
        DT_ASSERT_EQ(((const int64_t *)dt_tensor_data(b.y))[7], 7);
        /* nested scopes */
        DT_SCOPE {
            DT_SCOPE {
                DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
            }
        }
        DT_ASSERT_EQ(((const int64_t *)dt_tensor_data(b.y))[0], 8);
        /* the usual loop: next outside, the step inside */
        while (dt_loader_next(ld, &b) > 0) {
            DT_SCOPE {
                dt_tensor *f = dt_zeros(DT_F32, DT_SHAPE(8, 4, 4));
                DT_ASSERT_OK(dt_tensor_copy_(f, b.x));
            }
        }
        dt_loader_free(ld);
    }
    dt_dataset_free(ds);
}

/* ------------------------------------------------------------ tokens */
static void t_token_windows(void)
{
    char p[300];
    snprintf(p, sizeof p, "%s/tok.u16", g_dir);
    FILE *f = fopen(p, "wb");
    for (int i = 0; i < 5000; i++) {
        uint16_t v = (uint16_t)(i * 131 + 7);
        fwrite(&v, 2, 1, f);   /* little-endian host */
    }
    fclose(f);
    dt_tokens *t = dt_tokens_open(p, 2);
    DT_ASSERT_MSG(t, "%s", dt_last_error());
    dt_token_span train, val;
    dt_tokens_split(t, 10, &train, &val);
    const int64_t T = 16, B = 5, steps = 7, seed = 2, rank = 1, world = 3;
    dt_dataset *ds = dt_dataset_tokens(train, T, NULL, 0);
    DT_ASSERT_MSG(ds, "%s", dt_last_error());
    DT_ASSERT_EQ(dt_dataset_len(ds), train.len - T - 1);
    dt_dataset *vds = dt_dataset_tokens(val, T, NULL, 0);
    /* random: as the job's generator, batch after batch, then its validation batches */
    dt_random_sampler_opts ro = DT_RANDOM_SAMPLER_OPTS_INIT;
    ro.replacement = true;
    ro.num_samples = steps * B;
    ro.seed = 1000 + 1000 * seed + rank;
    dt_sampler *rs = dt_sampler_random(train.len - T - 1, ro);
    ro.num_samples = 10 * B;
    ro.skip = steps * B;
    dt_sampler *vrs = dt_sampler_random(val.len - T - 1, ro);
    dt_sampler *ss = dt_sampler_tokens_seq(train.len, T, world, rank, B, steps);
    DT_ASSERT(rs && vrs && ss);
    dt_mt19937 g;
    dt_mt19937_seed(&g, (uint64_t)(1000 + 1000 * seed + rank));
    static int64_t x[5 * 16], y[5 * 16];
    for (int w = 0; w <= 2; w += 2) {
        dt_loader_opts o = DT_LOADER_OPTS_INIT;
        o.batch_size = B;
        o.num_workers = w;
        dt_loader *lr = dt_loader_new(ds, rs, &o), *lv = dt_loader_new(vds, vrs, &o), *lq = dt_loader_new(ds, ss, &o);
        dt_mt19937 gw = g;
        dt_batch b;
        for (int64_t k = 0; k < steps; k++) {
            DT_ASSERT_EQ(dt_loader_next(lr, &b), 1);
            DT_ASSERT_EQ(dt_tensor_ndim(b.x), 2);
            DT_ASSERT_EQ(dt_tensor_size(b.x, 1), T);
            DT_ASSERT_OK(dt_tokens_random_batch(train, &gw, B, T, x, y));
            DT_ASSERT(memcmp(dt_tensor_data(b.x), x, sizeof x) == 0);
            DT_ASSERT(memcmp(dt_tensor_data(b.y), y, sizeof y) == 0);
            DT_ASSERT_EQ(dt_loader_next(lq, &b), 1);
            DT_ASSERT_OK(dt_tokens_seq_batch(train, k, world, rank, B, T, x, y));
            DT_ASSERT(memcmp(dt_tensor_data(b.x), x, sizeof x) == 0);
            DT_ASSERT(memcmp(dt_tensor_data(b.y), y, sizeof y) == 0);
        }
        DT_ASSERT_EQ(dt_loader_next(lr, &b), 0);
        DT_ASSERT_EQ(dt_loader_next(lq, &b), 0);
        for (int k = 0; k < 10; k++) {
            DT_ASSERT_EQ(dt_loader_next(lv, &b), 1);
            DT_ASSERT_OK(dt_tokens_random_batch(val, &gw, B, T, x, y));
            DT_ASSERT(memcmp(dt_tensor_data(b.x), x, sizeof x) == 0);
        }
        dt_loader_free(lr);
        dt_loader_free(lv);
        dt_loader_free(lq);
    }
    /* explicit starts */
    int64_t starts[3] = {0, 100, train.len - T - 1};
    dt_dataset *es = dt_dataset_tokens(train, T, starts, 3);
    DT_ASSERT(es);
    DT_ASSERT_OK(dt_dataset_get(es, 2, x, y, NULL));
    DT_ASSERT_EQ(y[T - 1], dt_tokens_at(t, train.len - 1));
    dt_dataset_free(es);
    starts[1] = train.len - T;
    DT_ASSERT(!dt_dataset_tokens(train, T, starts, 3));
    DT_ASSERT_EQ(dt_last_error_code(), DT_ERANGE);
    dt_sampler_free(rs);
    dt_sampler_free(vrs);
    dt_sampler_free(ss);
    dt_dataset_free(ds);
    dt_dataset_free(vds);
    dt_tokens_free(t);
}

/* Every allocation of a pass failing in turn: next says DT_ENOMEM (or the pass works),
 * nothing crashes, hangs or leaks. */
static void t_alloc_failures(void)
{
    dt_dataset *ds = aug_ds(50, NULL);
    dt_sampler *smp = dt_sampler_random(50, (dt_random_sampler_opts)DT_RANDOM_SAMPLER_OPTS_INIT);
    dt_mem_stats m0, m1;
    dt_mem_get_stats(&m0);
    for (int w = 0; w <= 2; w += 2) {
        dt_loader_opts o = DT_LOADER_OPTS_INIT;
        o.batch_size = 8;
        o.num_workers = w;
        int64_t total = -1, failures = 0;
        for (int64_t n = 1; total < 0 || n <= total + 1; n++) {
            dt_loader *ld = NULL;
            dt_alloc_fail_at(n);
            ld = dt_loader_new(ds, smp, &o);
            int rc = 0, got = 0;
            if (ld) {
                rc = dt_loader_set_epoch(ld, 1);
                dt_batch b;
                for (int k = 0; rc == 0 && k < 20; k++) {
                    rc = dt_loader_next(ld, &b);
                    if (rc == 1) got++, rc = 0;
                    else if (rc == 0) break;
                }
            }
            int64_t used = dt_alloc_count_since_arm();
            dt_alloc_fail_at(0);
            if (!ld || rc < 0) {
                DT_ASSERT_MSG(dt_last_error_code() == DT_ENOMEM || rc == DT_ENOMEM, "fail at %lld: rc %d, %s", (long long)n,
                              rc, dt_last_error());
                failures++;
            } else if (total < 0 && got == 7) {
                total = used;   /* nothing failed: the pass takes this many */
            }
            dt_loader_free(ld);
            if (n > 10000) break;
        }
        DT_ASSERT(total > 0 && failures > 0);
    }
    dt_mem_get_stats(&m1);
    DT_ASSERT_EQ(m1.current[DT_MEM_DATA], m0.current[DT_MEM_DATA]);
    dt_sampler_free(smp);
    dt_dataset_free(ds);
}

static void t_invalid(void)
{
    dt_dataset *ds = arange_ds(10);
    dt_loader_opts o = DT_LOADER_OPTS_INIT;
    o.batch_size = 0;
    DT_ASSERT(!dt_loader_new(ds, NULL, &o));
    DT_ASSERT_EQ(dt_last_error_code(), DT_EINVAL);
    o = (dt_loader_opts)DT_LOADER_OPTS_INIT;
    o.num_workers = -1;
    DT_ASSERT(!dt_loader_new(ds, NULL, &o));
    o = (dt_loader_opts)DT_LOADER_OPTS_INIT;
    o.prefetch_factor = 0;
    DT_ASSERT(!dt_loader_new(ds, NULL, &o));
    DT_ASSERT(!dt_loader_new(NULL, NULL, NULL));
    dt_batch b;
    DT_ASSERT_ERR(dt_loader_next(NULL, &b), DT_EINVAL);
    dt_loader_free(NULL);
    dt_dataset_free(NULL);
    static const dt_dataset_ops none = {.name = "none"};
    dt_sample_spec sp = {.dtype = DT_I64};
    DT_ASSERT(!dt_dataset_new(&none, NULL, 1, &sp, &sp));
    DT_ASSERT(!dt_sampler_random(0, (dt_random_sampler_opts){.num_samples = 3}));
    /* a sampler whose indices the dataset does not have */
    dt_sampler *big = dt_sampler_sequential(12);
    o = (dt_loader_opts)DT_LOADER_OPTS_INIT;
    o.batch_size = 4;
    o.num_workers = 1;
    dt_loader *ld = dt_loader_new(ds, big, &o);
    DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
    DT_ASSERT_EQ(dt_loader_next(ld, &b), 1);
    DT_ASSERT_ERR(dt_loader_next(ld, &b), DT_ERANGE);
    DT_ASSERT_CONTAINS(dt_last_error(), "item 10 outside 0 .. 9");
    dt_loader_free(ld);
    dt_sampler_free(big);
    dt_dataset_free(ds);
}

static void t_random_sampler_rules(void)
{
    /* without torch: epoch e continues the generator after e passes */
    dt_random_sampler_opts ro = DT_RANDOM_SAMPLER_OPTS_INIT;
    ro.seed = 3;
    dt_sampler *s = dt_sampler_random(100, ro);
    int64_t p[3][100], spare[100];
    dt_mt19937 g;
    dt_mt19937_seed(&g, 3);
    for (int e = 0; e < 3; e++) {
        dt_randperm(&g, 100, p[e]);
        dt_randperm(&g, 100, spare);   /* torch's randperm for the empty remainder */
    }
    for (int e = 2; e >= 0; e--) {
        DT_ASSERT_OK(dt_sampler_set_epoch(s, e));
        DT_ASSERT_EQ(dt_sampler_len(s), 100);
        DT_ASSERT(memcmp(dt_sampler_indices(s), p[e], sizeof p[e]) == 0);
    }
    dt_sampler_free(s);
    int64_t list[4] = {3, 1, 4, 1};
    s = dt_sampler_from_list(list, 4);
    DT_ASSERT_OK(dt_sampler_set_epoch(s, 5));
    DT_ASSERT(memcmp(dt_sampler_indices(s), list, sizeof list) == 0);
    dt_sampler_free(s);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/dt_loader_XXXXXX");
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    dt_mem_stats m0, m1;
    dt_mem_get_stats(&m0);
    if (dt_py_have_torch()) {
        char ref[300];
        snprintf(ref, sizeof ref, "%s/loader_ref.safetensors", g_dir);
        if (dt_py_sh(DT_PY " " DT_SRC_DIR "/tests/data/loader_ref.py %s", ref) != 0) {
            fprintf(stderr, "FAIL: tests/data/loader_ref.py did not run\n");
            return 1;
        }
        g_ref = dt_st_open(ref);
        if (!g_ref) { fprintf(stderr, "FAIL: %s\n", dt_last_error()); return 1; }
    }
    DT_RUN(t_order_vs_torch);
    DT_RUN(t_random_sampler_rules);
    DT_RUN(t_workers_same_bytes_aug);
    DT_RUN(t_fmnist_workers);
    DT_RUN(t_last_batch_and_drop_last);
    DT_RUN(t_tensor_dataset);
    DT_RUN(t_resume_mid_epoch);
    DT_RUN(t_resume_via_snapshot);
    DT_RUN(t_get_error_reaches_next);
    DT_RUN(t_idx_dataset);
    DT_RUN(t_free_while_prefetching);
    DT_RUN(t_timeout);
    DT_RUN(t_batches_and_scopes);
    DT_RUN(t_token_windows);
    DT_RUN(t_alloc_failures);
    DT_RUN(t_invalid);
    dt_st_close(g_ref);
    dt_mem_get_stats(&m1);
    if (!dt__test_failures && m1.current[DT_MEM_DATA] != m0.current[DT_MEM_DATA]) {
        fprintf(stderr, "FAIL: %lld bytes of DT_MEM_DATA leaked\n", (long long)(m1.current[DT_MEM_DATA] - m0.current[DT_MEM_DATA]));
        dt__test_failures++;
    }
    dt_py_sh("rm -rf %s", g_dir);
    return DT_TEST_END();
}
