/* dtrain checkpoint: snapshots that a restarted job resumes from.
 *
 * A snapshot is one safetensors file of named buffers (model, optimizer and
 * scheduler state, RNG streams, ...) plus a small JSON record beside it that
 * names the file, its size and a CRC32C per chunk. The record is written last:
 * its rename is the commit point, so a crash at any moment leaves either the
 * new snapshot whole or the previous one. Only the newest keep_last snapshots
 * are kept. On load, a snapshot that is truncated or fails its checksum is
 * reported and the previous one is used.
 *
 * This layer handles files and bytes; which buffers go into a snapshot (and
 * that only rank 0 writes) is decided above it (parallel/, the examples). */
#ifndef DTRAIN_CHECKPOINT_H
#define DTRAIN_CHECKPOINT_H

#include <dtrain/safetensors.h>
#include <dtrain/util.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dt_snapshot dt_snapshot;

typedef struct {
    int keep_last;          /* snapshots kept after a save (>= 1) */
    int64_t chunk_bytes;    /* bytes per CRC32C chunk */
} dt_snapshot_opts;

#define DT_SNAPSHOT_OPTS_INIT {.keep_last = 2, .chunk_bytes = 1 << 20}

/* Open the snapshot directory dir, creating it (and its parents) if needed, and
 * remove temporaries left by a save that crashed. opts may be NULL. Owned by
 * the caller: dt_snapshot_close. NULL + last error on failure. */
dt_snapshot *dt_snapshot_open(const char *dir, const dt_snapshot_opts *opts);
void dt_snapshot_close(dt_snapshot *s);

/* Save the buffers of one step (borrowed for the call). meta: string pairs
 * stored in the file's __metadata__ (epoch, sampler position, ...). After the
 * record is committed, older snapshots beyond keep_last are deleted.
 * Errors: DT_EINVAL (step < 0, bad entries), DT_ENOSPC (disk full: the previous
 * snapshots are untouched), DT_EIO, DT_ESYS, DT_ENOMEM. */
int dt_snapshot_save(dt_snapshot *s, int64_t step, const dt_st_entry *entries, size_t n,
                     const dt_st_meta *meta, size_t nmeta);

/* The same for entries and metadata gathered in a dt_st_list (model under "model.",
 * optimizer under "optim.", positions in the metadata, ...; see safetensors.h). */
int dt_snapshot_save_list(dt_snapshot *s, int64_t step, const dt_st_list *l);

/* Open the newest snapshot whose record parses and whose file has the recorded
 * size and checksums; every rejected one is logged with the reason (warn) and
 * skipped. *file is owned by the caller (dt_st_close); *step its step.
 * DT_ENOTFOUND when no snapshot verifies (the message lists what was rejected). */
int dt_snapshot_load_latest(dt_snapshot *s, dt_st_file **file, int64_t *step);

/* Steps that have a record in the directory, newest first (whether or not
 * they verify): up to cap of them in steps[], the total in *count. */
int dt_snapshot_list(dt_snapshot *s, int64_t *steps, int cap, int *count);

/* The paths of a step's files, written into buf (for tests and tools). */
int dt_snapshot_data_path(const dt_snapshot *s, int64_t step, char *buf, size_t cap);
int dt_snapshot_record_path(const dt_snapshot *s, int64_t step, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_CHECKPOINT_H */
