/* dtrain safetensors: read and write the safetensors file format on raw buffers.
 *
 * The format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON header
 *   {"__metadata__":{"k":"v"},"name":{"dtype":"F32","shape":[2,3],"data_offsets":[b,e]},...}
 * padded with spaces, then the data section; [b, e) are offsets into the data section,
 * which the tensors cover exactly (no gaps, no overlap, nothing after the last).
 *
 * This layer knows buffers (pointer, dtype, shape), not tensors: the tensor, nn and
 * checkpoint layers build state dicts on top of it. */
#ifndef DTRAIN_SAFETENSORS_H
#define DTRAIN_SAFETENSORS_H

#include <dtrain/dtype.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DT_ST_MAX_DIMS 16                  /* most dimensions a tensor may have */
#define DT_ST_MAX_HEADER 100000000ull      /* largest header accepted (as the reference reader) */

/* ------------------------------------------------------------------ writing */

/* One tensor to write. Everything is borrowed for the duration of the call. */
typedef struct {
    const char *name;       /* unique, not empty, not "__metadata__" */
    dt_dtype dtype;
    int ndim;               /* 0 (a scalar) .. DT_ST_MAX_DIMS */
    const int64_t *shape;   /* [ndim], each >= 0 */
    const void *data;       /* numel * dt_dtype_size(dtype) contiguous bytes (may be NULL when 0) */
} dt_st_entry;

/* One __metadata__ pair (string to string). */
typedef struct {
    const char *key;
    const char *value;
} dt_st_meta;

/* Write a safetensors file at path. Layout: the tensors with 8-byte elements first,
 * then 4, 2 and 1, each group in the order given, so every tensor's data is aligned
 * to its element size (the header is padded to 8); the JSON lists them in that order
 * after __metadata__ (present when nmeta > 0). The bytes go to a
 * temporary file in the same directory, which is fsync'd, renamed over path, and
 * the directory fsync'd; on any failure the temporary is removed and a previous
 * file at path is left whole.
 * Errors: DT_EINVAL (bad entry: message names it), DT_ENOSPC (disk or quota
 * full), DT_EIO (other write/sync failure), DT_ESYS (open/rename), DT_ENOMEM. */
int dt_st_write(const char *path, const dt_st_entry *entries, size_t n,
                const dt_st_meta *meta, size_t nmeta);

/* The same bytes written to an open file descriptor (no temporary, no rename,
 * no fsync); what dt_st_write does underneath. */
int dt_st_write_fd(int fd, const char *label, const dt_st_entry *entries, size_t n,
                   const dt_st_meta *meta, size_t nmeta);

/* A growing list of entries and metadata with names owned by the list (data stays
 * borrowed): how several parts (model, optimizer, sampler, ...) build one file. */
typedef struct dt_st_list dt_st_list;
/* NULL + DT_ENOMEM on failure. Free with dt_st_list_free (NULL ok). */
dt_st_list *dt_st_list_new(void);
void dt_st_list_free(dt_st_list *l);
/* name is prefix + name (prefix may be NULL); both copied. data borrowed until the
 * list is written. DT_EINVAL for a name already in the list. */
int dt_st_list_add(dt_st_list *l, const char *prefix, const char *name, dt_dtype dtype, int ndim,
                   const int64_t *shape, const void *data);
/* A __metadata__ pair, key = prefix + key; both copied. A key already present is
 * replaced. */
int dt_st_list_meta(dt_st_list *l, const char *prefix, const char *key, const char *value);
/* Borrowed arrays, valid until the next add or the free. */
const dt_st_entry *dt_st_list_entries(const dt_st_list *l, size_t *n);
const dt_st_meta *dt_st_list_metas(const dt_st_list *l, size_t *n);
/* dt_st_write of the list. */
int dt_st_list_write(const dt_st_list *l, const char *path);

/* ------------------------------------------------------------------ reading */

typedef struct dt_st_file dt_st_file;

/* One tensor of an open file. All pointers are borrowed from the dt_st_file and
 * valid until dt_st_close. data points into the file's bytes and is only as
 * aligned as the file makes it: files from dt_st_write (and the safetensors
 * package) align each tensor to its element size; others may not, so use memcpy
 * or dt_st_read_into for files from elsewhere. */
typedef struct {
    const char *name;
    dt_dtype dtype;
    int ndim;
    int64_t shape[DT_ST_MAX_DIMS];
    int64_t numel;
    uint64_t nbytes;
    uint64_t offset;        /* of the first byte, from the start of the file */
    const void *data;
} dt_st_tensor;

/* Open and validate a file (memory-mapped, read-only). Checks: the header length
 * lies within the file and under DT_ST_MAX_HEADER; the header is one JSON object
 * (after which only spaces); every entry has a known dtype, a shape whose size
 * times the dtype size equals its data_offsets span, offsets inside the data
 * section; together the entries cover the data section exactly, without overlap,
 * gap or trailing bytes; no name appears twice; __metadata__ maps strings to strings.
 * Returns NULL with DT_ECORRUPT ("<path>: <what is wrong>"), DT_EUNSUPPORTED (a
 * valid safetensors dtype dtrain does not have, e.g. BOOL), DT_ENOTFOUND (no such
 * file), DT_EIO/DT_ESYS or DT_ENOMEM. Close with dt_st_close. */
dt_st_file *dt_st_open(const char *path);

/* The same over bytes in memory (borrowed: they must outlive the handle); label
 * names them in error messages. */
dt_st_file *dt_st_open_mem(const void *buf, size_t len, const char *label);

/* Unmap and free; NULL is a no-op. */
void dt_st_close(dt_st_file *f);

/* Number of tensors (__metadata__ not counted). */
size_t dt_st_count(const dt_st_file *f);

/* The i-th tensor in file order (ascending data offset); NULL when i >= count. */
const dt_st_tensor *dt_st_at(const dt_st_file *f, size_t i);

/* The tensor of that name, or NULL with DT_ENOTFOUND set. O(log n). */
const dt_st_tensor *dt_st_find(const dt_st_file *f, const char *name);

/* Copy a tensor's bytes into dst after checking it has exactly this dtype
 * (DT_EDTYPE) and shape (DT_ESHAPE); DT_ENOTFOUND when absent. */
int dt_st_read_into(const dt_st_file *f, const char *name, dt_dtype dtype, int ndim,
                    const int64_t *shape, void *dst);

/* __metadata__: number of pairs, the i-th pair (in header order), or the value
 * of a key (NULL when absent). Borrowed, valid until dt_st_close. */
size_t dt_st_meta_count(const dt_st_file *f);
int dt_st_meta_at(const dt_st_file *f, size_t i, const char **key, const char **value);
const char *dt_st_meta_get(const dt_st_file *f, const char *key);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_SAFETENSORS_H */
