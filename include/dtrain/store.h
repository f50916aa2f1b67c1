/* dtrain stores: the rendezvous key-value stores process groups and the launcher
 * meet through (torch.distributed Store: TCPStore, FileStore, HashStore, PrefixStore).
 *
 * Keys are strings, values are byte strings. Every blocking call has a timeout
 * (the store's own, set at creation) and a timeout error names the keys waited for.
 * A store is used by one thread at a time unless its constructor says otherwise. */
#ifndef DTRAIN_STORE_H
#define DTRAIN_STORE_H

#include <dtrain/util.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dt_store dt_store;

typedef struct {
    int64_t timeout_ms;     /* every blocking call; < 0: DTRAIN_TIMEOUT (default 30 min) */
    int num_workers;        /* tcp server: world size it expects (informational, may be 0) */
    bool wait_for_workers;  /* tcp server: creation waits until num_workers clients joined */
    const char *secret;     /* tcp: shared secret for the HMAC challenge; NULL: DTRAIN_SECRET */
} dt_store_opts;

#define DT_STORE_OPTS_INIT {.timeout_ms = -1, .num_workers = 0, .wait_for_workers = false, .secret = NULL}

/* TCP store. is_server: host the server in this process (a background thread)
 * listening on host:port (port 0 picks a free one; dt_store_port tells which)
 * and connect to it as a client. Otherwise connect to host:port, retrying with
 * backoff and jitter until the timeout. Returns NULL + last error on failure. */
dt_store *dt_store_tcp(const char *host, int port, bool is_server, const dt_store_opts *opts);
/* The port a tcp store's server listens on (or connects to); -1 for other kinds. */
int dt_store_port(const dt_store *s);

/* A store in a file shared by processes (file:// init). world_size: the number
 * of processes that will use it; the last one to release it deletes the file,
 * and a stale file from an earlier run is detected and does not hang a new one. */
dt_store *dt_store_file(const char *path, int world_size, const dt_store_opts *opts);

/* An in-process store (threads of one process). Safe to share between threads. */
dt_store *dt_store_hash(const dt_store_opts *opts);

/* A view of base with every key prefixed by "prefix/". Retains base. */
dt_store *dt_store_prefix(dt_store *base, const char *prefix);

/* Reference counting: _retain returns s; _release frees at zero (NULL ok). */
dt_store *dt_store_retain(dt_store *s);
void dt_store_release(dt_store *s);

int dt_store_set(dt_store *s, const char *key, const void *val, size_t len);
/* Blocks until key exists or the timeout. *val is allocated with dt_alloc and
 * owned by the caller (dt_free); *len is its length. */
int dt_store_get(dt_store *s, const char *key, void **val, size_t *len);
/* Atomically adds delta to the integer stored at key (created as 0) and
 * stores the new value in *out (out may be NULL). */
int dt_store_add(dt_store *s, const char *key, int64_t delta, int64_t *out);
/* If key's current value equals expected (or the key is absent and expected_len
 * is 0), set it to desired. *cur (dt_alloc'd, caller frees) receives the value
 * after the operation, like torch's compare_set. cur/cur_len may be NULL. */
int dt_store_compare_set(dt_store *s, const char *key, const void *expected, size_t expected_len,
                         const void *desired, size_t desired_len, void **cur, size_t *cur_len);
/* Blocks until every key exists. timeout_ms < 0: the store's timeout. */
int dt_store_wait(dt_store *s, const char *const *keys, int nkeys, int64_t timeout_ms);
/* *exists = whether every key exists now (never blocks). */
int dt_store_check(dt_store *s, const char *const *keys, int nkeys, bool *exists);
/* *deleted = whether the key existed. */
int dt_store_delete(dt_store *s, const char *key, bool *deleted);
int dt_store_num_keys(dt_store *s, int64_t *out);
void dt_store_set_timeout(dt_store *s, int64_t timeout_ms);
int64_t dt_store_timeout(const dt_store *s);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_STORE_H */
