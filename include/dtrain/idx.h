/* dtrain IDX reader: the file format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/),
 * gzip'd or raw. Two zero bytes, a type code, the number of dimensions, each dimension as a
 * big-endian u32, then the elements, big-endian, row-major.
 * Reads whole files into memory; datasets, normalisation and batching are built on top. */
#ifndef DTRAIN_IDX_H
#define DTRAIN_IDX_H

#include <dtrain/dtype.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DT_IDX_MAX_DIMS 16

/* IDX element types, by their code in the file. */
typedef enum {
    DT_IDX_U8 = 0x08,
    DT_IDX_I8 = 0x09,
    DT_IDX_I16 = 0x0B,
    DT_IDX_I32 = 0x0C,
    DT_IDX_F32 = 0x0D,
    DT_IDX_F64 = 0x0E,
} dt_idx_type;

/* A loaded file. data holds numel elements of type in host byte order, owned by
 * the struct (DT_MEM_DATA bytes); release with dt_idx_free. */
typedef struct {
    dt_idx_type type;
    int ndim;                        /* 1 .. DT_IDX_MAX_DIMS */
    int64_t dims[DT_IDX_MAX_DIMS];   /* e.g. (60000, 28, 28) for train images */
    int64_t numel;
    size_t elem_size;                /* bytes per element */
    void *data;
} dt_idx;

/* Read path (gzip'd or not: zlib reads both). Checks the magic, type code and
 * dimension count, that the file holds exactly the elements its dimensions say
 * (no fewer: "truncated"; no more: "trailing bytes") and that a gzip stream is
 * intact. On success fills *out (overwriting it). Errors: DT_ENOTFOUND, DT_EIO,
 * DT_ECORRUPT (message: the path and what is wrong), DT_ENOMEM; *out is then
 * zeroed, owning nothing. */
int dt_idx_read(const char *path, dt_idx *out);

/* Only the header: the magic, type code and dimensions (reading the first bytes of a
 * gzip stream, not the whole file). Fills *out as dt_idx_read does, but with data
 * NULL; the elements are not checked (a truncated body is not noticed). Same errors. */
int dt_idx_read_header(const char *path, dt_idx *out);

/* Free the data; the struct is zeroed. NULL and zeroed structs are fine. */
void dt_idx_free(dt_idx *a);

/* Mean and standard deviation of the Fashion-MNIST training pixels (scaled to [0, 1]),
 * as the reference job normalises with. */
#define DT_FMNIST_MEAN 0.2860f
#define DT_FMNIST_STD 0.3530f

/* u8 pixels to f32 exactly as the reference job's numpy does it
 * ((x.astype(float32) / 255.0 - mean) / std, each step in f32):
 * out[i] = ((float)v / 255.0f - mean) / std. DT_EDTYPE unless a->type is U8. */
int dt_idx_normalize_u8(const dt_idx *a, float mean, float std, float *out);

/* Elements (u8, i8, i16 or i32) widened to int64, e.g. labels for cross_entropy.
 * DT_EDTYPE for f32/f64. */
int dt_idx_to_i64(const dt_idx *a, int64_t *out);

/* The dtrain dtype of an IDX type (U8, I32, F32, F64), or DT_EUNSUPPORTED (I8, I16). */
int dt_idx_dtype(dt_idx_type t, dt_dtype *out);

/* Bytes per element of an IDX type code; 0 for an unknown code. */
size_t dt_idx_type_size(int code);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_IDX_H */
