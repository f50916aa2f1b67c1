/* The error model: the DT_E* table's text, and the thread-local last error.
 * Does not log: whoever decides an error is final logs it. */
#include <dtrain/util.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define DT__ERRMSG_CAP 1024

void dt__error_file_note(int code, const char *msg);   /* errfile.c */

/* Messages longer than the buffer are cut on purpose. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

static _Thread_local int tl_code;
static _Thread_local char tl_msg[DT__ERRMSG_CAP];

const char *dt_strerror(int code)
{
    switch (code) {
    case 0: return "success";
#define DT__ERR_CASE(name, c, msg) case c: return msg;
    DT_ERROR_MAP(DT__ERR_CASE)
#undef DT__ERR_CASE
    default: return "unknown error";
    }
}

const char *dt_errname(int code)
{
    switch (code) {
    case 0: return "DT_OK";
#define DT__ERR_NAME(name, c, msg) case c: return "DT_E" #name;
    DT_ERROR_MAP(DT__ERR_NAME)
#undef DT__ERR_NAME
    default: return "DT_E?";
    }
}

const char *dt_last_error(void) { return tl_msg; }
int dt_last_error_code(void) { return tl_code; }
void dt_clear_error(void) { tl_code = 0; tl_msg[0] = '\0'; }

static int set_v(int code, int err, const char *fmt, va_list ap)
{
    char ctx[DT__ERRMSG_CAP];
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    tl_code = code;
    if (err)
        snprintf(tl_msg, sizeof tl_msg, "%s: %s: %s", dt_strerror(code), ctx, strerror(err));
    else
        snprintf(tl_msg, sizeof tl_msg, "%s: %s", dt_strerror(code), ctx);
    dt__error_file_note(code, tl_msg);
    return code;
}

int dt_set_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_v(code, 0, fmt, ap);
    va_end(ap);
    return code;
}

int dt_set_error_errno(int code, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_v(code, err, fmt, ap);
    va_end(ap);
    return code;
}

int dt_error_wrap(int code, const char *fmt, ...)
{
    char ctx[DT__ERRMSG_CAP], old[DT__ERRMSG_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    if (tl_code == 0 || tl_msg[0] == '\0')
        return dt_set_error(code, "%s", ctx);
    memcpy(old, tl_msg, sizeof old);
    snprintf(tl_msg, sizeof tl_msg, "%s: %s", ctx, old);
    tl_code = code;
    dt__error_file_note(code, tl_msg);
    return code;
}

const char *dt_version(void) { return DTRAIN_VERSION_STRING; }
