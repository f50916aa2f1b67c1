/* dtrain data: datasets (an ops table over fixed-shape samples: in-memory tensors, IDX
 * image/label files, token windows) and the DataLoader, which cuts a sampler's
 * indices (sampler.h) into batches and collates them into contiguous tensors, with
 * worker threads that prefetch while the training thread computes.
 *
 * Determinism: batch k of an epoch is the same bytes for any num_workers, because
 * the order comes from the sampler alone and the random stream a dataset may draw
 * from is the sample's own (derived from the loader seed, the epoch and the sample's
 * position in the epoch), never a worker's.
 *
 * Not here: variable-size samples and custom collate functions, iterable (streaming)
 * datasets, worker processes, pinned or device memory. docs/data.md has the tour. */
#ifndef DTRAIN_DATA_H
#define DTRAIN_DATA_H

#include <dtrain/idx.h>
#include <dtrain/sampler.h>
#include <dtrain/tensor.h>
#include <dtrain/tokens.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================== datasets
 * A dataset is len items; item i is a pair (x, y) of fixed shape and dtype, written
 * by get() into buffers the caller provides (in a loader: the rows of the batch
 * tensors, so collation copies nothing). */

/* The shape and dtype of one sample's x or y (a batch adds a leading dim). */
typedef struct {
    dt_dtype dtype;
    int ndim;                        /* 0 .. DT_MAX_DIMS - 1 */
    int64_t shape[DT_MAX_DIMS];
} dt_sample_spec;

/* Bytes of one sample of spec s (dtype size times the product of the shape). */
size_t dt_sample_bytes(const dt_sample_spec *s);

typedef struct {
    const char *name;    /* for messages: "tensors", "idx", "tokens", ... */
    /* Write item i (0 <= i < len, checked before the call) into x and y, each of its
     * spec's bytes. Loader workers call it concurrently for different items, so it
     * must be thread-safe. rng is this sample's own stream, for random augmentation
     * (never NULL). Returns 0, or a DT_E* code with dt_set_error's message. */
    int (*get)(void *ctx, int64_t i, void *x, void *y, dt_rng *rng);
    /* Release ctx; called by dt_dataset_free. May be NULL. */
    void (*free)(void *ctx);
} dt_dataset_ops;

typedef struct dt_dataset dt_dataset;

/* A dataset of len items over ops (copied) and ctx. On success the dataset owns ctx
 * (ops->free runs at dt_dataset_free); on failure (NULL + DT_EINVAL for a NULL get,
 * len < 0 or a bad spec, DT_ENOMEM) ctx is still the caller's. Free with
 * dt_dataset_free. */
dt_dataset *dt_dataset_new(const dt_dataset_ops *ops, void *ctx, int64_t len, const dt_sample_spec *x,
                           const dt_sample_spec *y);
void dt_dataset_free(dt_dataset *ds);   /* NULL is a no-op */
int64_t dt_dataset_len(const dt_dataset *ds);
/* Borrowed: valid while ds lives. */
const dt_sample_spec *dt_dataset_x_spec(const dt_dataset *ds);
const dt_sample_spec *dt_dataset_y_spec(const dt_dataset *ds);
/* Item i into x and y (dt_sample_bytes of each spec). rng NULL: the stream a loader
 * with seed 0 gives the sample at position i of epoch 0. DT_ERANGE for i outside
 * 0 .. len-1 (message: the dataset's name, i and len); else get()'s result. */
int dt_dataset_get(const dt_dataset *ds, int64_t i, void *x, void *y, dt_rng *rng);

/* TensorDataset(x, y): item i is x[i] and y[i]. x is (N, ...) and y (N, ...) (y
 * usually (N)), any dtypes, the same N. Contiguous tensors are retained (the dataset
 * holds a reference to each, so the caller may release or scope them, and later
 * writes to their data show in the samples; a tensor over the caller's memory, from
 * dt_from_buffer, needs that memory to outlive the dataset); others are copied at
 * construction.
 * NULL + DT_EINVAL (NULL, 0-dim), DT_ESHAPE (different N), DT_ENOMEM. */
dt_dataset *dt_dataset_tensors(dt_tensor *x, dt_tensor *y);

/* IDX image/label pairs (MNIST, Fashion-MNIST; gzip'd or raw): x is image i as f32,
 * y its label as i64 (shape ()). Images must be u8; labels u8, i8, i16 or i32. */
typedef struct {
    float mean, std;     /* x = ((float)v / 255 - mean) / std, each step in f32, exactly as the
                            reference's numpy and dt_idx_normalize_u8; (0, 1): v / 255 */
    bool raw;            /* x = (float)v, no scaling (mean and std unused) */
    int x_ndim;          /* > 0: the sample shape is x_shape (same numel as one image, e.g.
                            (1, 28, 28) as the reference reshapes); 0: the file's (28, 28) */
    int64_t x_shape[DT_MAX_DIMS];
    bool lazy;           /* read only the headers now and the data at the first get (in a
                            worker): a fast start, and a bad file's error comes from
                            dt_loader_next instead of here */
} dt_idx_dataset_opts;
#define DT_IDX_DATASET_OPTS_INIT {.mean = 0.0f, .std = 1.0f, .raw = false, .x_ndim = 0, .x_shape = {0}, .lazy = false}
/* Reads both files (their headers only when lazy). o NULL: the defaults. NULL + the
 * dt_idx_read errors (DT_ENOTFOUND, DT_ECORRUPT, ...), DT_EUNSUPPORTED for image or
 * label types it does not take, DT_ESHAPE for counts that differ or an x_shape of
 * another numel, DT_ENOMEM. A lazy dataset whose data turns out bad (truncated,
 * trailing bytes, other dims than the header said) fails every get with that error. */
dt_dataset *dt_dataset_idx(const char *images_path, const char *labels_path, const dt_idx_dataset_opts *o);
/* The reference Fashion-MNIST job's data: dir/<split>-images-idx3-ubyte.gz and
 * -labels-idx1-ubyte.gz (dir NULL: /usr/share/datasets/fashion-mnist; split "train"
 * or "t10k"), x (1, 28, 28) normalised with DT_FMNIST_MEAN / DT_FMNIST_STD. */
dt_dataset *dt_dataset_fmnist(const char *dir, const char *split, bool lazy);

/* Windows of T tokens over s: item i is x = s[start_i .. start_i + T) and
 * y = s[start_i + 1 .. start_i + T + 1), both int64 of shape (T). starts NULL:
 * start_i = i for i in 0 .. len - T - 2, the len - T - 1 starts the reference GPT
 * draws from (its randint(len - T - 1) and its sequential rule mod len - T - 1);
 * otherwise the nstarts given starts (copied), each checked to fit. The tokens are
 * borrowed: they must outlive the dataset. NULL + DT_EINVAL (T < 1, len <= T + 1
 * without starts), DT_ERANGE (a start whose window does not fit), DT_ENOMEM.
 *
 * The reference's two orders, batch size B, rank r of R, steps batches:
 *   random:     dt_sampler_random(len - T - 1, {.replacement = true, .num_samples = steps * B,
 *                                 .seed = 1000 + 1000 * seed + r})
 *               over dt_dataset_tokens(train, T, NULL, 0) gives batch k equal to the k-th
 *               dt_tokens_random_batch (torch.randint with the job's generator); its 10
 *               validation batches continue that generator: .skip = steps * B, over val.
 *   sequential: dt_sampler_tokens_seq below, over the same dataset. */
dt_dataset *dt_dataset_tokens(dt_token_span s, int64_t T, const int64_t *starts, int64_t nstarts);

/* The reference's sequential order as a list sampler over dt_dataset_tokens(s, T,
 * NULL, 0) with len = s.len: position k*B + j is dt_tokens_seq_start(len, k, world,
 * rank, B, j, T), for k < batches. NULL + DT_EINVAL, DT_ENOMEM. */
dt_sampler *dt_sampler_tokens_seq(int64_t len, int64_t T, int64_t world, int64_t rank, int64_t B, int64_t batches);

/* ================================================================ loader */
typedef struct {
    int64_t batch_size;   /* >= 1 */
    bool drop_last;       /* drop the last batch when it is short (the loader's drop_last,
                             not the DistributedSampler's) */
    int num_workers;      /* 0: each batch is built inside dt_loader_next on the calling
                             thread; n: n threads build batches ahead */
    int prefetch_factor;  /* batches ahead per worker (>= 1; torch's default 2) */
    uint64_t seed;        /* key of the per-sample random streams (add the rank to make
                             ranks differ) */
    int64_t timeout_ms;   /* > 0: dt_loader_next gives DT_ETIMEOUT when a worker's batch
                             takes longer; 0: wait as long as it takes */
} dt_loader_opts;
#define DT_LOADER_OPTS_INIT {.batch_size = 1, .drop_last = false, .num_workers = 0, .prefetch_factor = 2, .seed = 0, .timeout_ms = 0}

/* One batch. x is (size, x spec...) and y (size, y spec...), contiguous, on the CPU.
 * Borrowed from the loader: valid until the next dt_loader_next, dt_loader_set_epoch,
 * dt_loader_seek or dt_loader_free on it. They belong to no scope, so they may be used
 * inside (and across) DT_SCOPE steps; dt_tensor_retain one to keep it longer (each
 * batch has its own storage: the loader never reuses a batch's memory), then release
 * it. */
typedef struct {
    dt_tensor *x, *y;
    int64_t size;             /* rows: batch_size, fewer for a last short batch */
    int64_t index;            /* k: the batch's number in its epoch, from 0 */
    int64_t epoch;
    const int64_t *indices;   /* [size]: the dataset items of its rows; valid as x */
} dt_batch;

/* Where a loader stands, for snapshots: the epoch and how many of its batches have
 * been handed out. dt_loader_seek(ld, st.epoch, st.batch) continues from there. */
typedef struct {
    int64_t epoch;
    int64_t batch;
} dt_loader_state;

typedef struct dt_loader dt_loader;

/* A loader over ds in the order of smp; both are borrowed and must outlive the
 * loader (smp NULL: a sequential sampler the loader owns). o NULL: the defaults.
 * Worker threads start here and sleep until the first pass begins. The sampler's
 * index list is copied when a pass begins, so changing the sampler mid-pass changes
 * nothing until the next one. NULL + DT_EINVAL (batch_size < 1, num_workers < 0 or
 * > 256, prefetch_factor < 1, timeout_ms < 0), DT_ENOMEM, DT_ESYS (threads). */
dt_loader *dt_loader_new(dt_dataset *ds, dt_sampler *smp, const dt_loader_opts *o);
/* Stops the workers (those mid-batch stop at their next sample) and frees everything,
 * including batches prefetched or handed out and not retained. NULL is a no-op. */
void dt_loader_free(dt_loader *ld);

/* Start epoch: sets the sampler's epoch (dt_sampler_set_epoch) and begins a pass at
 * batch 0; workers start building at once. Returns the sampler's error, if any. */
int dt_loader_set_epoch(dt_loader *ld, int64_t epoch);
/* Resume: the sampler's epoch is set to epoch and the pass begins at batch (0 ..
 * dt_loader_len), so the next dt_loader_next gives exactly batch `batch` and the rest
 * follow, as in the uninterrupted run. DT_ERANGE for batch outside 0 .. len. */
int dt_loader_seek(dt_loader *ld, int64_t epoch, int64_t batch);
/* The next batch of the pass into *b: 1. At the end of the pass, 0 (and the pass is
 * over: a further call begins a new one at batch 0 of the sampler's current epoch, the
 * same order again unless the epoch changed; torch's RandomSampler would move on, so
 * with one call dt_loader_set_epoch for each epoch). A first call with no pass begun begins one
 * the same way. Errors (< 0, message naming the epoch, batch, row and dataset item):
 * the dataset's get() error, wherever it ran, DT_ENOMEM, DT_ETIMEOUT (the batch may
 * still come: calling again waits again); a get() error sticks, returned again by
 * every call until dt_loader_set_epoch or dt_loader_seek. */
int dt_loader_next(dt_loader *ld, dt_batch *b);
/* Batches per epoch: ceil(count / batch_size), or floor with drop_last, where count
 * is dt_sampler_len of the sampler. */
int64_t dt_loader_len(const dt_loader *ld);
/* The position: the epoch of the current (or last) pass and the batches handed out
 * in it (dt_loader_len after its end). Before any pass: (the sampler's epoch, 0). */
dt_loader_state dt_loader_get_state(const dt_loader *ld);
/* On a loader worker thread, its number (0 .. num_workers-1), as torch's
 * get_worker_info().id; -1 on any other thread. */
int dt_loader_worker_id(void);
/* On a loader worker thread, its own stream, as torch's per-worker seeds: Philox with
 * key seed and a stream of (epoch, worker id), started afresh at each pass, advanced by
 * whoever draws from it. NULL on any other thread. What a dataset draws from it depends
 * on the worker count and on which worker built which batch, so batches are then no
 * longer the same bytes for any num_workers: prefer get()'s per-sample rng. */
dt_rng *dt_loader_worker_rng(void);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_DATA_H */
