/* The IDX dataset: an image file and a label file (MNIST, Fashion-MNIST) as items of
 * (f32 image, i64 label), normalised per item through a 256-entry table. Loads both
 * files whole (idx.c), now or, when lazy, at the first get under a lock; it keeps the
 * u8 pixels, never an f32 copy of the whole set. */
#include <dtrain/data.h>

#include "data/data_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *images_path, *labels_path;
    dt_idx images, labels;     /* headers from the start; data once loaded */
    int64_t pixels;            /* per image */
    float lut[256];            /* u8 value -> x */
    /* lazy loading: loaded is set (release) once images/labels hold data, or
     * load_rc/load_msg hold the error every later get returns */
    bool lazy;
    atomic_int loaded;
    int load_rc;
    char load_msg[512];
    pthread_mutex_t mu;
} idx_ctx;

static void idx_free(void *c)
{
    idx_ctx *t = c;
    if (!t) return;
    dt_idx_free(&t->images);
    dt_idx_free(&t->labels);
    dt_free(t->images_path);
    dt_free(t->labels_path);
    pthread_mutex_destroy(&t->mu);
    dt_free(t);
}

/* The label types dt_idx_to_i64 takes. */
static bool label_type_ok(dt_idx_type ty)
{
    return ty == DT_IDX_U8 || ty == DT_IDX_I8 || ty == DT_IDX_I16 || ty == DT_IDX_I32;
}

static int check_pair(const idx_ctx *t)
{
    const dt_idx *im = &t->images, *lb = &t->labels;
    if (im->type != DT_IDX_U8)
        return dt_set_error(DT_EUNSUPPORTED, "IDX dataset: %s has element type 0x%02x; images must be u8 (0x08)",
                            t->images_path, (unsigned)im->type);
    if (!label_type_ok(lb->type))
        return dt_set_error(DT_EUNSUPPORTED, "IDX dataset: %s has element type 0x%02x; labels must be integers",
                            t->labels_path, (unsigned)lb->type);
    if (lb->ndim != 1)
        return dt_set_error(DT_ESHAPE, "IDX dataset: %s has %d dims; labels are one per image (1 dim)", t->labels_path,
                            lb->ndim);
    if (im->dims[0] != lb->dims[0])
        return dt_set_error(DT_ESHAPE, "IDX dataset: %lld images in %s but %lld labels in %s", (long long)im->dims[0],
                            t->images_path, (long long)lb->dims[0], t->labels_path);
    return 0;
}

/* Read one file whole and check it matches the header read at construction. */
static int load_one(const char *path, dt_idx *have)
{
    dt_idx full;
    DT_CHECK(dt_idx_read(path, &full));
    if (full.type != have->type || full.ndim != have->ndim ||
        memcmp(full.dims, have->dims, sizeof full.dims) != 0) {
        dt_idx_free(&full);
        return dt_set_error(DT_ECORRUPT, "%s changed since the dataset was opened (other type or dims)", path);
    }
    *have = full;
    return 0;
}

static int ensure_loaded(idx_ctx *t)
{
    if (atomic_load_explicit(&t->loaded, memory_order_acquire)) {
        if (t->load_rc < 0) return dt__data_reraise(t->load_rc, NULL, t->load_msg);
        return 0;
    }
    pthread_mutex_lock(&t->mu);
    if (!atomic_load_explicit(&t->loaded, memory_order_relaxed)) {
        int rc = load_one(t->images_path, &t->images);
        if (rc == 0) rc = load_one(t->labels_path, &t->labels);
        if (rc < 0) {
            t->load_rc = rc;
            snprintf(t->load_msg, sizeof t->load_msg, "%s", dt_last_error());
        }
        atomic_store_explicit(&t->loaded, 1, memory_order_release);
    }
    pthread_mutex_unlock(&t->mu);
    if (t->load_rc < 0) return dt__data_reraise(t->load_rc, NULL, t->load_msg);
    return 0;
}

static int idx_get(void *c, int64_t i, void *xv, void *yv, dt_rng *rng)
{
    idx_ctx *t = c;
    if (t->lazy) DT_CHECK(ensure_loaded(t));
    const uint8_t *px = (const uint8_t *)t->images.data + (size_t)i * (size_t)t->pixels;
    float *x = xv;
    for (int64_t p = 0; p < t->pixels; p++) x[p] = t->lut[px[p]];
    int64_t *y = yv;
    switch (t->labels.type) {
    case DT_IDX_U8: *y = ((const uint8_t *)t->labels.data)[i]; break;
    case DT_IDX_I8: *y = ((const int8_t *)t->labels.data)[i]; break;
    case DT_IDX_I16: *y = ((const int16_t *)t->labels.data)[i]; break;
    default: *y = ((const int32_t *)t->labels.data)[i]; break;
    }
    return 0;
}

dt_dataset *dt_dataset_idx(const char *images_path, const char *labels_path, const dt_idx_dataset_opts *o)
{
    static const dt_dataset_ops ops = {.name = "idx", .get = idx_get, .free = idx_free};
    dt_idx_dataset_opts def = DT_IDX_DATASET_OPTS_INIT;
    if (!o) o = &def;
    if (!images_path || !labels_path) { dt_set_error(DT_EINVAL, "dt_dataset_idx: NULL path"); return NULL; }
    if (!o->raw && !(o->std != 0.0f)) { dt_set_error(DT_EINVAL, "dt_dataset_idx: std %g", (double)o->std); return NULL; }
    if (o->x_ndim < 0 || o->x_ndim > DT_MAX_DIMS - 1) {
        dt_set_error(DT_EINVAL, "dt_dataset_idx: x_ndim %d", o->x_ndim);
        return NULL;
    }
    idx_ctx *t = dt_calloc(1, sizeof *t, DT_MEM_DATA);
    if (!t) { dt_error_wrap(DT_ENOMEM, "creating an IDX dataset"); return NULL; }
    pthread_mutex_init(&t->mu, NULL);
    t->lazy = o->lazy;
    t->images_path = dt_strdup(images_path);
    t->labels_path = dt_strdup(labels_path);
    dt_dataset *ds = NULL;
    if (!t->images_path || !t->labels_path) { dt_error_wrap(DT_ENOMEM, "creating an IDX dataset"); goto fail; }
    if (o->lazy) {
        if (dt_idx_read_header(images_path, &t->images) < 0 || dt_idx_read_header(labels_path, &t->labels) < 0) goto fail;
    } else {
        if (dt_idx_read(images_path, &t->images) < 0 || dt_idx_read(labels_path, &t->labels) < 0) goto fail;
        atomic_store(&t->loaded, 1);
    }
    if (check_pair(t) < 0) goto fail;
    t->pixels = t->images.dims[0] ? t->images.numel / t->images.dims[0] : 1;
    for (int d = 1; d < t->images.ndim && !t->images.dims[0]; d++) t->pixels *= t->images.dims[d];
    for (int v = 0; v < 256; v++) t->lut[v] = o->raw ? (float)v : ((float)v / 255.0f - o->mean) / o->std;

    dt_sample_spec xs = {.dtype = DT_F32}, ys = {.dtype = DT_I64, .ndim = 0};
    if (o->x_ndim > 0) {
        int64_t numel = 1;
        xs.ndim = o->x_ndim;
        for (int d = 0; d < o->x_ndim; d++) numel *= (xs.shape[d] = o->x_shape[d]);
        if (numel != t->pixels) {
            dt_set_error(DT_ESHAPE, "dt_dataset_idx: x_shape has %lld elements but an image of %s has %lld", (long long)numel,
                         images_path, (long long)t->pixels);
            goto fail;
        }
    } else {
        if (t->images.ndim - 1 > DT_MAX_DIMS - 1) {
            dt_set_error(DT_EUNSUPPORTED, "dt_dataset_idx: %s has %d dims", images_path, t->images.ndim);
            goto fail;
        }
        xs.ndim = t->images.ndim - 1;
        for (int d = 0; d < xs.ndim; d++) xs.shape[d] = t->images.dims[d + 1];
    }
    ds = dt_dataset_new(&ops, t, t->images.dims[0], &xs, &ys);
    if (ds) return ds;
fail:
    idx_free(t);
    return NULL;
}

dt_dataset *dt_dataset_fmnist(const char *dir, const char *split, bool lazy)
{
    if (!dir) dir = "/usr/share/datasets/fashion-mnist";
    if (!split) split = "train";
    char im[4096], lb[4096];
    snprintf(im, sizeof im, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lb, sizeof lb, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    dt_idx_dataset_opts o = DT_IDX_DATASET_OPTS_INIT;
    o.mean = DT_FMNIST_MEAN;
    o.std = DT_FMNIST_STD;
    o.x_ndim = 3;
    o.x_shape[0] = 1;
    o.x_shape[1] = 28;
    o.x_shape[2] = 28;
    o.lazy = lazy;
    return dt_dataset_idx(im, lb, &o);
}
