/* dtrain util: errors, logging, environment knobs, the allocator, time, a thread pool.
 *
 * The bottom layer; everything else calls it and it calls nothing of dtrain's.
 * It does not know about ranks beyond a number to print in log lines. */
#ifndef DTRAIN_UTIL_H
#define DTRAIN_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors
 * Every function that can fail returns int: 0 for success, a negative DT_E*
 * code otherwise. Constructors return NULL. Either way the failing call sets a
 * thread-local message with context, read by dt_last_error().
 * The one table below gives the codes, their names and dt_strerror(). */
#define DT_ERROR_MAP(X)                                                        \
    X(INVAL,       -1,  "invalid argument")                                    \
    X(NOMEM,       -2,  "out of memory")                                       \
    X(IO,          -3,  "I/O error")                                           \
    X(TIMEOUT,     -4,  "timed out")                                           \
    X(PEER,        -5,  "peer failed or disconnected")                         \
    X(ABORTED,     -6,  "aborted")                                             \
    X(MISMATCH,    -7,  "mismatch between ranks")                              \
    X(NOTFOUND,    -8,  "not found")                                           \
    X(EXISTS,      -9,  "already exists")                                      \
    X(PROTO,       -10, "protocol error")                                      \
    X(AUTH,        -11, "authentication failed")                               \
    X(CORRUPT,     -12, "corrupt or malformed data")                           \
    X(UNSUPPORTED, -13, "not supported")                                       \
    X(NOTMEMBER,   -14, "not a member of the group")                           \
    X(STATE,       -15, "object is in a failed or wrong state")                \
    X(RANGE,       -16, "value out of range")                                  \
    X(NOSPC,       -17, "no space left on device")                             \
    X(SYS,         -18, "system call failed")                                  \
    X(SHAPE,       -19, "shape mismatch")                                      \
    X(DTYPE,       -20, "dtype mismatch")                                      \
    X(CLOSED,      -21, "closed")                                              \
    X(INTERNAL,    -22, "internal error")

enum {
    DT_OK = 0,
#define DT__ERR_ENUM(name, code, msg) DT_E##name = (code),
    DT_ERROR_MAP(DT__ERR_ENUM)
#undef DT__ERR_ENUM
};

/* Static text for a code ("invalid argument"); "unknown error" for others. */
const char *dt_strerror(int code);
/* The code's name ("DT_EINVAL"). */
const char *dt_errname(int code);
/* This thread's last error message, with context; "" when none. Borrowed:
 * valid until this thread's next failing dtrain call. */
const char *dt_last_error(void);
/* The code of this thread's last error (0 when none). */
int dt_last_error_code(void);
/* Forget this thread's last error. */
void dt_clear_error(void);

/* Set the last error and return code (for the library and for programs built
 * on it). The message reads "<strerror>: <formatted context>". */
int dt_set_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, with errno's text appended ("...: Connection refused"). */
int dt_set_error_errno(int code, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prepend context to the current last error, keeping its code; returns it. */
int dt_error_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The error file. Under a launcher (dtrun, torchrun) TORCHELASTIC_ERROR_FILE
 * names a file for the worker's error, which the launcher prints in its
 * failure summary. The first failing dtrain call in a process where it is set
 * registers an atexit handler that writes the exiting thread's last error (or
 * else the process's most recent one) there, in torch's JSON format:
 *   {"message": {"message": "...", "extraInfo": {"py_callstack": "...", "timestamp": "<s>"}}}
 * A launcher reads the file only when the worker failed, so an error the
 * program recovered from is never reported for a run that succeeded. A
 * program may record its own message instead: dt_error_file_record() writes
 * at once and the exit handler then leaves the file alone.
 * Returns 0 (also when the variable is unset), DT_EIO when the file cannot be written. */
int dt_error_file_record(const char *message);

/* Propagate a failure: DT_CHECK returns it; DT_CHECK_GOTO stores it and jumps
 * to the function's one cleanup label. */
#define DT_CHECK(call)                                                         \
    do { int dt__rc = (call); if (dt__rc < 0) return dt__rc; } while (0)
#define DT_CHECK_GOTO(call, rc, label)                                         \
    do { (rc) = (call); if ((rc) < 0) goto label; } while (0)

/* ----------------------------------------------------------------- logging
 * DTRAIN_LOG = error|warn|info|debug|trace (default warn).
 * DTRAIN_LOG_SUBSYS = all, or a comma list of subsystem names (default all).
 * Lines go to stderr in one write each: "[dtrain r3 WARN dist] message". */
typedef enum { DT_LOG_ERROR = 0, DT_LOG_WARN, DT_LOG_INFO, DT_LOG_DEBUG, DT_LOG_TRACE } dt_log_level;

#define DT_SUBSYS_MAP(X)                                                       \
    X(UTIL, "util") X(TENSOR, "tensor") X(AUTOGRAD, "autograd") X(NN, "nn")    \
    X(OPTIM, "optim") X(DATA, "data") X(DIST, "dist") X(STORE, "store")        \
    X(SHM, "shm") X(TCP, "tcp") X(PARALLEL, "parallel") X(CKPT, "ckpt")        \
    X(RPC, "rpc") X(LAUNCH, "launch") X(APP, "app")

typedef enum {
#define DT__SUB_ENUM(name, str) DT_SUB_##name,
    DT_SUBSYS_MAP(DT__SUB_ENUM)
#undef DT__SUB_ENUM
    DT_SUB_COUNT
} dt_subsys;

/* True when a message of this level and subsystem would be printed. */
bool dt_log_enabled(dt_log_level lvl, dt_subsys sub);
void dt_log(dt_log_level lvl, dt_subsys sub, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void dt_vlog(dt_log_level lvl, dt_subsys sub, const char *fmt, va_list ap);
/* The rank printed in each line; -1 (the default, or RANK from the
 * environment when set) prints none. */
void dt_log_set_rank(int rank);
/* Re-read DTRAIN_LOG and DTRAIN_LOG_SUBSYS (they are read once, at first use).
 * Returns DT_EINVAL for an unknown level or subsystem name, keeping the old setting. */
int dt_log_reload(void);
/* Parse a level name ("warn"); DT_EINVAL when unknown. */
int dt_log_parse_level(const char *s, dt_log_level *out);

#define DT_LOGE(sub, ...) dt_log(DT_LOG_ERROR, DT_SUB_##sub, __VA_ARGS__)
#define DT_LOGW(sub, ...) dt_log(DT_LOG_WARN, DT_SUB_##sub, __VA_ARGS__)
#define DT_LOGI(sub, ...) dt_log(DT_LOG_INFO, DT_SUB_##sub, __VA_ARGS__)
#define DT_LOGD(sub, ...) do { if (dt_log_enabled(DT_LOG_DEBUG, DT_SUB_##sub)) dt_log(DT_LOG_DEBUG, DT_SUB_##sub, __VA_ARGS__); } while (0)
#define DT_LOGT(sub, ...) do { if (dt_log_enabled(DT_LOG_TRACE, DT_SUB_##sub)) dt_log(DT_LOG_TRACE, DT_SUB_##sub, __VA_ARGS__); } while (0)

/* ---------------------------------------------------------- env knobs
 * Every DTRAIN_* variable is declared once, in src/util/params.def, with its
 * type, default, bounds and documentation; docs/env.md is checked against
 * that table by a test (`dtinfo --env-markdown` prints it). */
typedef enum {
#define DT_PARAM(id, env, type, def, lo, hi, doc) DT_PARAM_##id,
#include <dtrain/params.def>
#undef DT_PARAM
    DT_PARAM_COUNT
} dt_param_id;

typedef enum { DT_PARAM_INT, DT_PARAM_STR } dt_param_type;

typedef struct {
    const char *env;      /* "DTRAIN_TIMEOUT" */
    dt_param_type type;
    const char *def;      /* default, as text ("1800"; "" for none) */
    int64_t lo, hi;       /* bounds for DT_PARAM_INT */
    const char *doc;
} dt_param_info;

const dt_param_info *dt_param_get_info(dt_param_id id);

/* The value of an integer knob: the default when unset or empty.
 * DT_EINVAL (message naming the variable and its value) when it is not an
 * integer or lies outside its bounds. */
int dt_param_int(dt_param_id id, int64_t *out);
/* The value of a string knob (borrowed from the environment, or the default). */
const char *dt_param_str(dt_param_id id);
/* Print the table as Markdown (docs/env.md is exactly this output). */
void dt_param_markdown(void *file /* FILE* */);

/* ----------------------------------------------------------- allocator
 * All memory the library owns goes through these, counted per category.
 * Blocks are 64-byte aligned. dt_free(NULL) is a no-op. */
typedef enum {
    DT_MEM_OTHER = 0, DT_MEM_PARAM, DT_MEM_GRAD, DT_MEM_OPTIM, DT_MEM_ACT,
    DT_MEM_COMM, DT_MEM_DATA, DT_MEM_COUNT
} dt_mem_cat;

/* Returns NULL and sets DT_ENOMEM on failure (or when the test mode says so). */
void *dt_alloc(size_t bytes, dt_mem_cat cat);
void *dt_calloc(size_t n, size_t size, dt_mem_cat cat);
/* Like realloc: NULL p allocates; on failure the old block stays valid. */
void *dt_realloc(void *p, size_t bytes, dt_mem_cat cat);
void dt_free(void *p);
char *dt_strdup(const char *s);
/* Size the caller asked for when p was allocated. */
size_t dt_alloc_size(const void *p);

typedef struct {
    int64_t current[DT_MEM_COUNT], peak[DT_MEM_COUNT];
    int64_t total_current, total_peak;
    int64_t allocs, frees;   /* counts of successful allocations and frees */
} dt_mem_stats;

void dt_mem_get_stats(dt_mem_stats *out);
/* Reset peaks to the current values. */
void dt_mem_reset_peak(void);
const char *dt_mem_cat_name(dt_mem_cat cat);
/* Test mode: the n-th allocation from now (1 = the next) fails, and only it;
 * 0 turns the mode off. DTRAIN_ALLOC_FAIL_AT sets it at start-up. */
void dt_alloc_fail_at(int64_t n);
/* Allocations made since the last dt_alloc_fail_at() call (to size a sweep). */
int64_t dt_alloc_count_since_arm(void);

/* ---------------------------------------------------------------- files
 * Durable writes: what checkpoints, snapshots and weight files go through. */

/* Write len bytes, retrying short writes and EINTR. ENOSPC/EDQUOT give
 * DT_ENOSPC, other failures DT_EIO; label names the file in the message. */
int dt_write_all(int fd, const void *buf, size_t len, const char *label);

/* Fills the temporary file fd; returns 0 or a DT_E* code (with the last error set). */
typedef int (*dt_file_writer)(int fd, void *ctx);

/* Write path atomically: writer fills a temporary file in path's directory,
 * which is fsync'd, renamed over path, and the directory fsync'd. On any
 * failure the temporary is removed and a previous file at path stays whole.
 * Errors: the writer's, DT_ENOSPC (disk or quota full), DT_EIO, DT_ESYS. */
int dt_file_write_atomic(const char *path, dt_file_writer writer, void *ctx);

/* fsync the directory holding path (after a rename or an unlink in it). */
int dt_fsync_parent_dir(const char *path);

/* ---------------------------------------------------------------- time */
int64_t dt_now_ns(void);        /* monotonic */
double dt_now_s(void);          /* monotonic, seconds */
int64_t dt_wall_ms(void);       /* wall clock, ms since the epoch */
void dt_sleep_ms(int64_t ms);
/* Absolute monotonic deadline timeout_ms from now; timeout_ms < 0 = never. */
int64_t dt_deadline_ns(int64_t timeout_ms);
/* Milliseconds left until deadline (0 when passed; -1 for "never"). */
int64_t dt_ms_left(int64_t deadline_ns);

/* --------------------------------------------------------- thread pool
 * A fixed set of worker threads. parallel_for splits [0, n) into contiguous
 * ranges, one per thread, the calling thread taking part; submit queues
 * independent tasks. A pool of 1 thread runs everything on the caller. */
typedef struct dt_threadpool dt_threadpool;
typedef void (*dt_range_fn)(void *arg, int64_t begin, int64_t end, int tid);
typedef void (*dt_task_fn)(void *arg);

/* Owned by the caller; free with dt_threadpool_free. NULL + last error on failure. */
dt_threadpool *dt_threadpool_new(int nthreads);
void dt_threadpool_free(dt_threadpool *pool);
int dt_threadpool_size(const dt_threadpool *pool);
/* Runs fn over [0, n) in at most size() chunks of at least grain items each
 * and returns when all are done. Not reentrant from inside fn. */
void dt_threadpool_parallel_for(dt_threadpool *pool, int64_t n, int64_t grain, dt_range_fn fn, void *arg);
/* Queue a task; it runs on a worker (or inline for a 1-thread pool). */
int dt_threadpool_submit(dt_threadpool *pool, dt_task_fn fn, void *arg);
/* Wait for every submitted task to finish. */
void dt_threadpool_wait(dt_threadpool *pool);

/* Number of online CPUs. */
int dt_num_cpus(void);

/* Library version, "MAJOR.MINOR.PATCH". */
const char *dt_version(void);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_UTIL_H */
