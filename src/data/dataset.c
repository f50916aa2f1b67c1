/* Datasets: the dt_dataset handle over an ops table, and the in-memory kinds
 * (TensorDataset, token windows). IDX files are in dataset_idx.c; batching and
 * threads in loader.c. Nothing here allocates per item. */
#include <dtrain/data.h>

#include <string.h>

struct dt_dataset {
    dt_dataset_ops ops;
    void *ctx;
    int64_t len;
    dt_sample_spec x, y;
};

size_t dt_sample_bytes(const dt_sample_spec *s)
{
    size_t b = dt_dtype_size(s->dtype);
    for (int d = 0; d < s->ndim; d++) b *= (size_t)s->shape[d];
    return b;
}

static int check_spec(const dt_sample_spec *s, const char *what)
{
    if (!s) return dt_set_error(DT_EINVAL, "dataset: NULL %s spec", what);
    if (!dt_dtype_size(s->dtype)) return dt_set_error(DT_EINVAL, "dataset: %s has an invalid dtype %d", what, (int)s->dtype);
    if (s->ndim < 0 || s->ndim > DT_MAX_DIMS - 1)
        return dt_set_error(DT_EINVAL, "dataset: %s has %d dims (0 .. %d: a batch adds one)", what, s->ndim, DT_MAX_DIMS - 1);
    for (int d = 0; d < s->ndim; d++)
        if (s->shape[d] < 0) return dt_set_error(DT_EINVAL, "dataset: %s dim %d is %lld", what, d, (long long)s->shape[d]);
    return 0;
}

dt_dataset *dt_dataset_new(const dt_dataset_ops *ops, void *ctx, int64_t len, const dt_sample_spec *x,
                           const dt_sample_spec *y)
{
    if (!ops || !ops->get) { dt_set_error(DT_EINVAL, "dt_dataset_new: no get()"); return NULL; }
    if (len < 0) { dt_set_error(DT_EINVAL, "dt_dataset_new: len %lld < 0", (long long)len); return NULL; }
    if (check_spec(x, "x") < 0 || check_spec(y, "y") < 0) return NULL;
    dt_dataset *ds = dt_calloc(1, sizeof *ds, DT_MEM_DATA);
    if (!ds) { dt_error_wrap(DT_ENOMEM, "creating a dataset"); return NULL; }
    ds->ops = *ops;
    if (!ds->ops.name) ds->ops.name = "dataset";
    ds->ctx = ctx;
    ds->len = len;
    ds->x = *x;
    ds->y = *y;
    return ds;
}

void dt_dataset_free(dt_dataset *ds)
{
    if (!ds) return;
    if (ds->ops.free) ds->ops.free(ds->ctx);
    dt_free(ds);
}

int64_t dt_dataset_len(const dt_dataset *ds) { return ds ? ds->len : 0; }
const dt_sample_spec *dt_dataset_x_spec(const dt_dataset *ds) { return ds ? &ds->x : NULL; }
const dt_sample_spec *dt_dataset_y_spec(const dt_dataset *ds) { return ds ? &ds->y : NULL; }

int dt_dataset_get(const dt_dataset *ds, int64_t i, void *x, void *y, dt_rng *rng)
{
    if (!ds || !x || !y) return dt_set_error(DT_EINVAL, "dt_dataset_get: NULL argument");
    if (i < 0 || i >= ds->len)
        return dt_set_error(DT_ERANGE, "%s dataset: item %lld outside 0 .. %lld", ds->ops.name, (long long)i,
                            (long long)ds->len - 1);
    dt_rng own;
    if (!rng) {
        own = dt_rng_make(0, dt_rng_stream(DT_RNG_DATA, 0));
        own.offset = (uint64_t)i << 32;
        rng = &own;
    }
    return ds->ops.get(ds->ctx, i, x, y, rng);
}

/* ------------------------------------------------------------- tensors */
typedef struct {
    dt_tensor *x, *y;          /* retained, when contiguous */
    void *xbuf, *ybuf;         /* else copies (DT_MEM_DATA) */
    const uint8_t *xp, *yp;    /* item 0 of each */
    size_t xb, yb;             /* bytes per item */
} tensors_ctx;

static int tensors_get(void *c, int64_t i, void *x, void *y, dt_rng *rng)
{
    tensors_ctx *t = c;
    memcpy(x, t->xp + (size_t)i * t->xb, t->xb);
    memcpy(y, t->yp + (size_t)i * t->yb, t->yb);
    return 0;
}

static void tensors_free(void *c)
{
    tensors_ctx *t = c;
    if (!t) return;
    dt_tensor_release(t->x);
    dt_tensor_release(t->y);
    dt_free(t->xbuf);
    dt_free(t->ybuf);
    dt_free(t);
}

/* Hold src's data: a reference when contiguous, else a contiguous copy. */
static int hold(dt_tensor *src, dt_tensor **ref, void **buf, const uint8_t **p)
{
    if (dt_tensor_is_contiguous(src)) {
        *ref = dt_tensor_retain(src);
        *p = dt_tensor_data(src);
        return 0;
    }
    size_t bytes = (size_t)dt_tensor_numel(src) * dt_dtype_size(dt_tensor_dtype(src));
    *buf = dt_alloc(bytes ? bytes : 1, DT_MEM_DATA);
    if (!*buf) return dt_error_wrap(DT_ENOMEM, "copying a tensor for a dataset");
    dt_tensor *view = dt_from_buffer(*buf, dt_tensor_dtype(src), dt_tensor_ndim(src), dt_tensor_shape(src));
    if (!view) return dt_last_error_code();
    int rc = dt_tensor_copy_(view, src);
    dt_tensor_discard(view);
    *p = *buf;
    return rc;
}

static void spec_of(const dt_tensor *t, dt_sample_spec *s)
{
    memset(s, 0, sizeof *s);
    s->dtype = dt_tensor_dtype(t);
    s->ndim = dt_tensor_ndim(t) - 1;
    for (int d = 0; d < s->ndim; d++) s->shape[d] = dt_tensor_shape(t)[d + 1];
}

dt_dataset *dt_dataset_tensors(dt_tensor *x, dt_tensor *y)
{
    static const dt_dataset_ops ops = {.name = "tensors", .get = tensors_get, .free = tensors_free};
    if (!x || !y || dt_tensor_ndim(x) < 1 || dt_tensor_ndim(y) < 1) {
        dt_set_error(DT_EINVAL, "dt_dataset_tensors: x and y must be tensors of at least one dim");
        return NULL;
    }
    int64_t n = dt_tensor_size(x, 0);
    if (dt_tensor_size(y, 0) != n) {
        dt_set_error(DT_ESHAPE, "dt_dataset_tensors: x has %lld items, y %lld", (long long)n, (long long)dt_tensor_size(y, 0));
        return NULL;
    }
    dt_sample_spec xs, ys;
    spec_of(x, &xs);
    spec_of(y, &ys);
    tensors_ctx *t = dt_calloc(1, sizeof *t, DT_MEM_DATA);
    if (!t) { dt_error_wrap(DT_ENOMEM, "creating a tensor dataset"); return NULL; }
    t->xb = dt_sample_bytes(&xs);
    t->yb = dt_sample_bytes(&ys);
    dt_dataset *ds = NULL;
    if (hold(x, &t->x, &t->xbuf, &t->xp) < 0 || hold(y, &t->y, &t->ybuf, &t->yp) < 0 ||
        !(ds = dt_dataset_new(&ops, t, n, &xs, &ys))) {
        tensors_free(t);
        return NULL;
    }
    return ds;
}

/* ------------------------------------------------------- token windows */
typedef struct {
    dt_token_span s;
    int64_t T;
    int64_t *starts;   /* [n], or NULL: start_i = i */
} tokens_ctx;

static int tokens_get(void *c, int64_t i, void *x, void *y, dt_rng *rng)
{
    tokens_ctx *t = c;
    return dt_tokens_window(t->s, t->starts ? t->starts[i] : i, t->T, x, y);
}

static void tokens_free(void *c)
{
    tokens_ctx *t = c;
    if (!t) return;
    dt_free(t->starts);
    dt_free(t);
}

dt_dataset *dt_dataset_tokens(dt_token_span s, int64_t T, const int64_t *starts, int64_t nstarts)
{
    static const dt_dataset_ops ops = {.name = "tokens", .get = tokens_get, .free = tokens_free};
    if (T < 1 || T > INT64_MAX / 8 || (starts && nstarts < 0) || (!starts && s.len <= T + 1)) {
        dt_set_error(DT_EINVAL, "dt_dataset_tokens: windows of %lld over %lld tokens (needs more than T + 1)", (long long)T,
                     (long long)s.len);
        return NULL;
    }
    int64_t n = starts ? nstarts : s.len - T - 1;
    for (int64_t i = 0; starts && i < n; i++)
        if (starts[i] < 0 || starts[i] + T + 1 > s.len) {
            dt_set_error(DT_ERANGE, "dt_dataset_tokens: start %lld (item %lld) of a window of %lld + 1 over %lld tokens",
                         (long long)starts[i], (long long)i, (long long)T, (long long)s.len);
            return NULL;
        }
    tokens_ctx *t = dt_calloc(1, sizeof *t, DT_MEM_DATA);
    if (!t) { dt_error_wrap(DT_ENOMEM, "creating a token dataset"); return NULL; }
    t->s = s;
    t->T = T;
    if (starts) {
        t->starts = dt_alloc((size_t)(n ? n : 1) * sizeof *starts, DT_MEM_DATA);
        if (!t->starts) { dt_error_wrap(DT_ENOMEM, "creating a token dataset"); tokens_free(t); return NULL; }
        if (n) memcpy(t->starts, starts, (size_t)n * sizeof *starts);
    }
    dt_sample_spec sp = {.dtype = DT_I64, .ndim = 1, .shape = {T}};
    dt_dataset *ds = dt_dataset_new(&ops, t, n, &sp, &sp);
    if (!ds) tokens_free(t);
    return ds;
}

dt_sampler *dt_sampler_tokens_seq(int64_t len, int64_t T, int64_t world, int64_t rank, int64_t B, int64_t batches)
{
    if (B < 1 || batches < 0 || batches > INT64_MAX / B) {
        dt_set_error(DT_EINVAL, "dt_sampler_tokens_seq: B %lld, batches %lld", (long long)B, (long long)batches);
        return NULL;
    }
    int64_t n = batches * B;
    int64_t *idx = dt_alloc((size_t)(n ? n : 1) * sizeof *idx, DT_MEM_DATA);
    if (!idx) { dt_error_wrap(DT_ENOMEM, "dt_sampler_tokens_seq"); return NULL; }
    dt_sampler *smp = NULL;
    for (int64_t k = 0; k < batches; k++)
        for (int64_t j = 0; j < B; j++)
            if ((idx[k * B + j] = dt_tokens_seq_start(len, k, world, rank, B, j, T)) < 0) goto out;
    smp = dt_sampler_from_list(idx, n);
out:
    dt_free(idx);
    return smp;
}
