/* Shared by the data layer's files: re-raising an error message recorded on another
 * thread (a loader worker, a lazy dataset's loader) on the calling thread. */
#ifndef DTRAIN_DATA_INTERNAL_H
#define DTRAIN_DATA_INTERNAL_H

#include <dtrain/util.h>
#include <string.h>

/* Make (rc, "<ctx>: <msg>") this thread's last error, msg being a dt_last_error() text
 * from elsewhere (which starts with dt_strerror(rc) itself; that prefix is not doubled).
 * ctx may be NULL or "". Returns rc. */
static inline int dt__data_reraise(int rc, const char *ctx, const char *msg)
{
    const char *pre = dt_strerror(rc);
    size_t pl = strlen(pre);
    if (!strncmp(msg, pre, pl) && msg[pl] == ':' && msg[pl + 1] == ' ') msg += pl + 2;
    if (!*msg) msg = pre;
    if (!ctx || !*ctx) return dt_set_error(rc, "%s", msg);
    dt_set_error(rc, "%s", msg);
    return dt_error_wrap(rc, "%s", ctx);
}

#endif /* DTRAIN_DATA_INTERNAL_H */
