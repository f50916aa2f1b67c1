/* The DataLoader: cuts the sampler's index list into batches, collates fixed-shape
 * samples straight into fresh batch tensors, and with num_workers > 0 builds batches
 * ahead on worker threads. Not here: the datasets (dataset*.c), the orders (sampler.c).
 *
 * A pass is one run over an epoch's index list (idx, copied from the sampler when the
 * pass begins). Batch k holds positions k*B .. k*B + size - 1 of it. The consumer
 * hands batches out in order: next_k is the next to hand out.
 *
 * Workers share one claim counter: a worker takes the lowest batch not yet claimed,
 * as long as it lies below next_k + depth (depth = num_workers * prefetch_factor), so
 * at most depth batches are built or waiting. Batch k lands in slot k % depth; since
 * the claimed batches are distinct and lie within depth of next_k, no two share a
 * slot. The bytes of batch k depend only on (idx, k, seed, epoch), never on which
 * worker built it, so any worker count gives the same batches.
 *
 * A pass ends early (set_epoch, seek, free) by bumping gen: a worker that sees gen
 * change stops at its next sample and drops what it built; the caller waits until no
 * worker is mid-batch (inflight == 0) before touching idx or the slots. Everything
 * but gen and quit is read and written under mu. */
#include <dtrain/data.h>

#include "data/data_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_WORKERS 256
#define MSG_LEN 1024
#define CTX_LEN 160
#define CANCELLED 1   /* build()'s result when the pass ended under it (not an error) */

enum { SLOT_EMPTY = 0, SLOT_READY };

typedef struct {
    int state;
    int64_t k;
    dt_tensor *x, *y;
    int rc;
    char ctx[CTX_LEN];           /* an error's place ("loader: epoch 0, batch 4, ...") */
    char msg[MSG_LEN];           /* and its message, as dt_last_error() gave it */
} slot;

struct dt_loader {
    dt_dataset *ds;
    dt_sampler *smp;
    bool own_smp;
    dt_loader_opts o;
    size_t xbytes, ybytes;       /* per sample */

    /* the pass */
    int64_t *idx;                /* [count]: the epoch's index list */
    int64_t count, idx_cap;
    int64_t epoch, nbatches;
    bool begun;                  /* a pass has begun once */
    bool active;                 /* a pass has begun and not yet ended */
    int64_t next_k;              /* next batch to hand out */
    int sticky_rc;               /* a get() error, returned until the next pass */
    char sticky_ctx[CTX_LEN], sticky_msg[MSG_LEN];
    dt_tensor *cur_x, *cur_y;    /* the batch handed out last */

    /* workers */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;      /* workers: a batch may be claimed, or quit */
    pthread_cond_t ready_cv;     /* consumer: a slot became ready */
    pthread_cond_t idle_cv;      /* ending a pass: inflight reached 0 */
    pthread_t *threads;
    struct worker { dt_loader *ld; int id; } *wargs;   /* [num_workers] */
    int nthreads;                /* started (joined by free) */
    int depth;
    slot *slots;                 /* [depth] */
    bool serving;                /* workers may claim in this pass */
    int64_t claim;               /* next batch to claim */
    int inflight;                /* workers building a batch */
    atomic_uint_fast64_t gen;    /* bumped when a pass ends early */
    atomic_int quit;
};

static _Thread_local int tl_worker_id = -1;
static _Thread_local dt_rng tl_worker_rng;

int dt_loader_worker_id(void) { return tl_worker_id; }
dt_rng *dt_loader_worker_rng(void) { return tl_worker_id >= 0 ? &tl_worker_rng : NULL; }

/* The per-worker stream: purpose DT_RNG_DATA with the worker (+ 1) in bits 8.. of the
 * purpose word, so it meets neither the per-sample streams (purpose DT_RNG_DATA) nor
 * the other purposes. */
static dt_rng worker_rng(uint64_t seed, int64_t epoch, int worker)
{
    uint64_t purpose = (uint64_t)DT_RNG_DATA | (uint64_t)(worker + 1) << 8;
    return dt_rng_make(seed, purpose << 32 | (uint32_t)epoch);
}

static int64_t batch_rows(const dt_loader *ld, int64_t k)
{
    int64_t B = ld->o.batch_size, left = ld->count - k * B;
    return left < B ? left : B;
}

/* (b, spec...) */
static dt_tensor *batch_tensor(const dt_sample_spec *s, int64_t b)
{
    int64_t shape[DT_MAX_DIMS];
    shape[0] = b;
    for (int d = 0; d < s->ndim; d++) shape[d + 1] = s->shape[d];
    return dt_empty(s->dtype, s->ndim + 1, shape);
}

/* Build batch k of the pass into fresh tensors. Samples draw from their own stream:
 * key seed, stream (DT_RNG_DATA, epoch), offset position << 32, where position is the
 * sample's place in the epoch's list (each sample has 2^32 blocks of room).
 * gen_seen: the pass's gen; a change stops the build with CANCELLED (nothing to
 * report). On error, ctx says which batch, row and item and msg what went wrong. */
static int build(dt_loader *ld, int64_t k, uint64_t gen_seen, dt_tensor **xo, dt_tensor **yo, char *ctx, char *msg)
{
    const dt_sample_spec *xs = dt_dataset_x_spec(ld->ds), *ys = dt_dataset_y_spec(ld->ds);
    int64_t b = batch_rows(ld, k), at = k * ld->o.batch_size;
    int rc = 0;
    dt_mem_cat prev = dt_tensor_set_mem_cat(DT_MEM_DATA);
    dt_tensor *x = batch_tensor(xs, b), *y = batch_tensor(ys, b);
    dt_tensor_set_mem_cat(prev);
    /* On the training thread a scope may be open: the loader, not the scope, owns these. */
    for (int d = dt_scope_depth(); d > 0; d--) {
        dt_keep(x);
        dt_keep(y);
    }
    if (!x || !y) {
        rc = DT_ENOMEM;
        snprintf(ctx, CTX_LEN, "loader: epoch %lld, batch %lld", (long long)ld->epoch, (long long)k);
        snprintf(msg, MSG_LEN, "%s", dt_last_error());
        goto fail;
    }
    uint8_t *xp = dt_tensor_data(x), *yp = dt_tensor_data(y);
    dt_rng rng0 = dt_rng_make(ld->o.seed, dt_rng_stream(DT_RNG_DATA, (uint32_t)ld->epoch));
    for (int64_t j = 0; j < b; j++) {
        if (atomic_load(&ld->gen) != gen_seen || atomic_load(&ld->quit)) { rc = CANCELLED; goto fail; }
        int64_t item = ld->idx[at + j];
        dt_rng rng = rng0;
        rng.offset = (uint64_t)(at + j) << 32;
        dt_clear_error();
        rc = dt_dataset_get(ld->ds, item, xp + (size_t)j * ld->xbytes, yp + (size_t)j * ld->ybytes, &rng);
        if (rc < 0) {
            snprintf(ctx, CTX_LEN, "loader: epoch %lld, batch %lld, row %lld (dataset item %lld)", (long long)ld->epoch,
                     (long long)k, (long long)j, (long long)item);
            snprintf(msg, MSG_LEN, "%s", dt_last_error());
            goto fail;
        }
    }
    *xo = x;
    *yo = y;
    return 0;
fail:
    dt_tensor_release(x);
    dt_tensor_release(y);
    *xo = *yo = NULL;
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    dt_loader *ld = w->ld;
    tl_worker_id = w->id;
    uint64_t rng_gen = UINT64_MAX;   /* the pass tl_worker_rng was started for */
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        if (atomic_load(&ld->quit)) break;
        if (!(ld->serving && ld->claim < ld->nbatches && ld->claim < ld->next_k + ld->depth)) {
            pthread_cond_wait(&ld->work_cv, &ld->mu);
            continue;
        }
        int64_t k = ld->claim++;
        uint64_t g = atomic_load(&ld->gen);
        if (g != rng_gen) {   /* every pass has its own gen (begin_pass bumps it) */
            tl_worker_rng = worker_rng(ld->o.seed, ld->epoch, w->id);
            rng_gen = g;
        }
        ld->inflight++;
        pthread_mutex_unlock(&ld->mu);

        dt_tensor *x, *y;
        char ctx[CTX_LEN], msg[MSG_LEN];
        ctx[0] = msg[0] = 0;
        int rc = build(ld, k, g, &x, &y, ctx, msg);

        pthread_mutex_lock(&ld->mu);
        ld->inflight--;
        if (rc != CANCELLED && atomic_load(&ld->gen) == g && !atomic_load(&ld->quit)) {
            slot *s = &ld->slots[k % ld->depth];
            s->state = SLOT_READY;
            s->k = k;
            s->x = x;
            s->y = y;
            s->rc = rc;
            memcpy(s->ctx, ctx, CTX_LEN);
            memcpy(s->msg, msg, MSG_LEN);
            x = y = NULL;
            /* after an error, build nothing more of this pass: the consumer stops there */
            if (rc < 0) ld->serving = false;
            pthread_cond_broadcast(&ld->ready_cv);
        }
        if (ld->inflight == 0) pthread_cond_broadcast(&ld->idle_cv);
        if (x || y) {
            pthread_mutex_unlock(&ld->mu);
            dt_tensor_release(x);
            dt_tensor_release(y);
            pthread_mutex_lock(&ld->mu);
        }
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

static void release_current(dt_loader *ld)
{
    dt_tensor_release(ld->cur_x);
    dt_tensor_release(ld->cur_y);
    ld->cur_x = ld->cur_y = NULL;
}

/* End the workers' part in the pass: no more claims, builds in progress abandoned and
 * waited for, prefetched batches dropped. */
static void stop_pass(dt_loader *ld)
{
    if (!ld->o.num_workers) return;
    pthread_mutex_lock(&ld->mu);
    ld->serving = false;
    atomic_fetch_add(&ld->gen, 1);
    while (ld->inflight > 0) pthread_cond_wait(&ld->idle_cv, &ld->mu);
    for (int i = 0; i < ld->depth; i++) {
        slot *s = &ld->slots[i];
        dt_tensor_release(s->x);
        dt_tensor_release(s->y);
        memset(s, 0, sizeof *s);
    }
    pthread_mutex_unlock(&ld->mu);
}

/* Begin a pass over the sampler's current list at batch start_k. */
static int begin_pass(dt_loader *ld, int64_t start_k)
{
    stop_pass(ld);
    release_current(ld);
    int64_t n = dt_sampler_len(ld->smp);
    if (n > ld->idx_cap) {
        int64_t *p = dt_realloc(ld->idx, (size_t)n * sizeof *p, DT_MEM_DATA);
        if (!p) {
            ld->active = false;
            return dt_error_wrap(DT_ENOMEM, "loader: the index list of %lld items", (long long)n);
        }
        ld->idx = p;
        ld->idx_cap = n;
    }
    if (n) memcpy(ld->idx, dt_sampler_indices(ld->smp), (size_t)n * sizeof *ld->idx);
    /* The workers are idle (stop_pass); they read the pass under mu once serving. */
    if (ld->o.num_workers) pthread_mutex_lock(&ld->mu);
    ld->count = n;
    ld->epoch = dt_sampler_epoch(ld->smp);
    ld->nbatches = dt_loader_len(ld);
    ld->next_k = ld->claim = start_k;
    ld->sticky_rc = 0;
    ld->active = ld->begun = true;
    if (ld->o.num_workers) {
        ld->serving = true;
        pthread_cond_broadcast(&ld->work_cv);
        pthread_mutex_unlock(&ld->mu);
    }
    return 0;
}

int64_t dt_loader_len(const dt_loader *ld)
{
    if (!ld) return 0;
    int64_t n = dt_sampler_len(ld->smp), B = ld->o.batch_size;
    return ld->o.drop_last ? n / B : (n + B - 1) / B;
}

dt_loader_state dt_loader_get_state(const dt_loader *ld)
{
    dt_loader_state st = {0, 0};
    if (!ld) return st;
    if (!ld->begun) {
        st.epoch = dt_sampler_epoch(ld->smp);
        return st;
    }
    st.epoch = ld->epoch;
    st.batch = ld->active ? ld->next_k : ld->nbatches;
    return st;
}

int dt_loader_set_epoch(dt_loader *ld, int64_t epoch)
{
    if (!ld) return dt_set_error(DT_EINVAL, "dt_loader_set_epoch: NULL loader");
    stop_pass(ld);
    release_current(ld);
    ld->active = false;   /* should the sampler fail, the next call begins a pass afresh */
    DT_CHECK(dt_sampler_set_epoch(ld->smp, epoch));
    return begin_pass(ld, 0);
}

int dt_loader_seek(dt_loader *ld, int64_t epoch, int64_t batch)
{
    if (!ld) return dt_set_error(DT_EINVAL, "dt_loader_seek: NULL loader");
    int64_t len = dt_loader_len(ld);
    if (batch < 0 || batch > len)
        return dt_set_error(DT_ERANGE, "dt_loader_seek: batch %lld outside 0 .. %lld", (long long)batch, (long long)len);
    stop_pass(ld);
    release_current(ld);
    ld->active = false;
    DT_CHECK(dt_sampler_set_epoch(ld->smp, epoch));
    return begin_pass(ld, batch);
}

static void fill_batch(dt_loader *ld, dt_batch *b, int64_t k)
{
    b->x = ld->cur_x;
    b->y = ld->cur_y;
    b->size = batch_rows(ld, k);
    b->index = k;
    b->epoch = ld->epoch;
    b->indices = ld->idx + k * ld->o.batch_size;
}

/* Wait for slot k % depth to hold batch k; take it. */
static int take(dt_loader *ld, int64_t k, int *rc_out, char *ctx, char *msg)
{
    pthread_mutex_lock(&ld->mu);
    slot *s = &ld->slots[k % ld->depth];
    struct timespec dl;
    if (ld->o.timeout_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += ld->o.timeout_ms / 1000;
        dl.tv_nsec += (ld->o.timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) { dl.tv_sec++; dl.tv_nsec -= 1000000000L; }
    }
    while (!(s->state == SLOT_READY && s->k == k)) {
        if (ld->o.timeout_ms > 0) {
            if (pthread_cond_timedwait(&ld->ready_cv, &ld->mu, &dl) == ETIMEDOUT &&
                !(s->state == SLOT_READY && s->k == k)) {
                pthread_mutex_unlock(&ld->mu);
                return dt_set_error(DT_ETIMEOUT, "loader: batch %lld of epoch %lld not built within %lld ms", (long long)k,
                                    (long long)ld->epoch, (long long)ld->o.timeout_ms);
            }
        } else {
            pthread_cond_wait(&ld->ready_cv, &ld->mu);
        }
    }
    ld->cur_x = s->x;
    ld->cur_y = s->y;
    *rc_out = s->rc;
    memcpy(ctx, s->ctx, CTX_LEN);
    memcpy(msg, s->msg, MSG_LEN);
    memset(s, 0, sizeof *s);
    if (*rc_out == 0) {
        ld->next_k = k + 1;
        pthread_cond_broadcast(&ld->work_cv);   /* room for one more claim */
    }
    pthread_mutex_unlock(&ld->mu);
    return 0;
}

int dt_loader_next(dt_loader *ld, dt_batch *b)
{
    if (!ld || !b) return dt_set_error(DT_EINVAL, "dt_loader_next: NULL argument");
    memset(b, 0, sizeof *b);
    release_current(ld);
    if (ld->active && ld->sticky_rc < 0) return dt__data_reraise(ld->sticky_rc, ld->sticky_ctx, ld->sticky_msg);
    if (!ld->active) DT_CHECK(begin_pass(ld, 0));
    int64_t k = ld->next_k;
    if (k >= ld->nbatches) {
        stop_pass(ld);
        ld->active = false;
        return 0;
    }
    int rc = 0;
    char ctx[CTX_LEN], msg[MSG_LEN];
    ctx[0] = msg[0] = 0;
    if (ld->o.num_workers == 0) {
        rc = build(ld, k, atomic_load(&ld->gen), &ld->cur_x, &ld->cur_y, ctx, msg);
        if (rc == 0) ld->next_k = k + 1;
    } else {
        DT_CHECK(take(ld, k, &rc, ctx, msg));
    }
    if (rc < 0) {
        ld->sticky_rc = rc;
        memcpy(ld->sticky_ctx, ctx, CTX_LEN);
        memcpy(ld->sticky_msg, msg, MSG_LEN);
        return dt__data_reraise(rc, ctx, msg);
    }
    fill_batch(ld, b, k);
    return 1;
}

void dt_loader_free(dt_loader *ld)
{
    if (!ld) return;
    if (ld->threads) {
        pthread_mutex_lock(&ld->mu);
        atomic_store(&ld->quit, 1);
        atomic_fetch_add(&ld->gen, 1);
        ld->serving = false;
        pthread_cond_broadcast(&ld->work_cv);
        int n = ld->nthreads;
        pthread_mutex_unlock(&ld->mu);
        for (int i = 0; i < n; i++) pthread_join(ld->threads[i], NULL);
    }
    for (int i = 0; ld->slots && i < ld->depth; i++) {
        dt_tensor_release(ld->slots[i].x);
        dt_tensor_release(ld->slots[i].y);
    }
    release_current(ld);
    pthread_cond_destroy(&ld->work_cv);
    pthread_cond_destroy(&ld->ready_cv);
    pthread_cond_destroy(&ld->idle_cv);
    pthread_mutex_destroy(&ld->mu);
    if (ld->own_smp) dt_sampler_free(ld->smp);
    dt_free(ld->slots);
    dt_free(ld->threads);
    dt_free(ld->wargs);
    dt_free(ld->idx);
    dt_free(ld);
}

dt_loader *dt_loader_new(dt_dataset *ds, dt_sampler *smp, const dt_loader_opts *o)
{
    dt_loader_opts def = DT_LOADER_OPTS_INIT;
    if (!o) o = &def;
    if (!ds) { dt_set_error(DT_EINVAL, "dt_loader_new: NULL dataset"); return NULL; }
    if (o->batch_size < 1 || o->num_workers < 0 || o->num_workers > MAX_WORKERS || o->prefetch_factor < 1 ||
        o->timeout_ms < 0) {
        dt_set_error(DT_EINVAL, "dt_loader_new: batch_size %lld (>= 1), num_workers %d (0 .. %d), prefetch_factor %d (>= 1), "
                     "timeout_ms %lld (>= 0)", (long long)o->batch_size, o->num_workers, MAX_WORKERS, o->prefetch_factor,
                     (long long)o->timeout_ms);
        return NULL;
    }
    dt_loader *ld = dt_calloc(1, sizeof *ld, DT_MEM_DATA);
    if (!ld) { dt_error_wrap(DT_ENOMEM, "creating a loader"); return NULL; }
    ld->ds = ds;
    ld->o = *o;
    ld->xbytes = dt_sample_bytes(dt_dataset_x_spec(ds));
    ld->ybytes = dt_sample_bytes(dt_dataset_y_spec(ds));
    pthread_mutex_init(&ld->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ld->ready_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&ld->work_cv, NULL);
    pthread_cond_init(&ld->idle_cv, NULL);
    ld->smp = smp;
    if (!smp) {
        if (!(ld->smp = dt_sampler_sequential(dt_dataset_len(ds)))) goto fail;
        ld->own_smp = true;
    }
    if (o->num_workers > 0) {
        ld->depth = o->num_workers * o->prefetch_factor;
        ld->slots = dt_calloc((size_t)ld->depth, sizeof *ld->slots, DT_MEM_DATA);
        ld->threads = dt_calloc((size_t)o->num_workers, sizeof *ld->threads, DT_MEM_DATA);
        ld->wargs = dt_calloc((size_t)o->num_workers, sizeof *ld->wargs, DT_MEM_DATA);
        if (!ld->slots || !ld->threads || !ld->wargs) { dt_error_wrap(DT_ENOMEM, "creating a loader"); goto fail; }
        for (int i = 0; i < o->num_workers; i++) {
            ld->wargs[i].ld = ld;
            ld->wargs[i].id = i;
            int err = pthread_create(&ld->threads[i], NULL, worker_main, &ld->wargs[i]);
            if (err) {
                dt_set_error_errno(DT_ESYS, err, "loader: starting worker thread %d of %d", i, o->num_workers);
                goto fail;
            }
            ld->nthreads = i + 1;
        }
    }
    return ld;
fail:
    dt_loader_free(ld);
    return NULL;
}
