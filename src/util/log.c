/* Logging: a level and a subsystem mask read from DTRAIN_LOG / DTRAIN_LOG_SUBSYS,
 * each line written to stderr with one write() so ranks never interleave mid-line.
 * Does not buffer, rotate or write files: the launcher captures stderr. */
#include <dtrain/util.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <pthread.h>

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};
static const char *const level_tags[] = {"ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
static const char *const subsys_names[] = {
#define DT__SUB_NAME(name, str) str,
    DT_SUBSYS_MAP(DT__SUB_NAME)
#undef DT__SUB_NAME
};

static atomic_int g_level = DT_LOG_WARN;
static atomic_uint g_mask = ~0u;
static atomic_int g_rank = -1;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

int dt_log_parse_level(const char *s, dt_log_level *out)
{
    for (int i = 0; i <= DT_LOG_TRACE; i++)
        if (strcasecmp(s, level_names[i]) == 0) { *out = (dt_log_level)i; return 0; }
    return dt_set_error(DT_EINVAL, "log level '%s' is not one of error, warn, info, debug, trace", s);
}

static int parse_mask(const char *s, unsigned *out)
{
    if (s[0] == '\0' || strcasecmp(s, "all") == 0) { *out = ~0u; return 0; }
    unsigned m = 0;
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = 0;
        for (int i = 0; i < DT_SUB_COUNT; i++)
            if (strlen(subsys_names[i]) == n && strncasecmp(p, subsys_names[i], n) == 0) { m |= 1u << i; found = 1; }
        if (!found && n > 0)
            return dt_set_error(DT_EINVAL, "DTRAIN_LOG_SUBSYS: unknown subsystem '%.*s'", (int)n, p);
        p += n;
        if (*p == ',') p++;
    }
    *out = m;
    return 0;
}

int dt_log_reload(void)
{
    dt_log_level lvl;
    unsigned mask;
    const char *ls = dt_param_str(DT_PARAM_LOG);
    const char *ms = dt_param_str(DT_PARAM_LOG_SUBSYS);
    int rc = dt_log_parse_level(ls, &lvl);
    if (rc < 0) return dt_error_wrap(rc, "DTRAIN_LOG");
    DT_CHECK(parse_mask(ms, &mask));
    atomic_store(&g_level, (int)lvl);
    atomic_store(&g_mask, mask);
    return 0;
}

static void init_once(void)
{
    const char *r = getenv("RANK");
    if (r && *r) {
        char *end;
        long v = strtol(r, &end, 10);
        if (*end == '\0' && v >= 0) atomic_store(&g_rank, (int)v);
    }
    if (dt_log_reload() < 0) {
        /* A bad DTRAIN_LOG must not silence errors: keep the defaults, say so. */
        char line[1200];
        int n = snprintf(line, sizeof line, "[dtrain WARN util] ignoring bad logging setting: %s\n", dt_last_error());
        if (n > 0) { ssize_t w = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1); (void)w; }
        dt_clear_error();
    }
}

void dt_log_set_rank(int rank)
{
    pthread_once(&g_once, init_once);
    atomic_store(&g_rank, rank);
}

bool dt_log_enabled(dt_log_level lvl, dt_subsys sub)
{
    pthread_once(&g_once, init_once);
    return (int)lvl <= atomic_load(&g_level) && (atomic_load(&g_mask) & (1u << sub));
}

void dt_vlog(dt_log_level lvl, dt_subsys sub, const char *fmt, va_list ap)
{
    if (!dt_log_enabled(lvl, sub)) return;
    char line[2048];
    int rank = atomic_load(&g_rank);
    int n = rank >= 0
        ? snprintf(line, sizeof line, "[dtrain r%d %s %s] ", rank, level_tags[lvl], subsys_names[sub])
        : snprintf(line, sizeof line, "[dtrain %s %s] ", level_tags[lvl], subsys_names[sub]);
    if (n < 0) return;
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (m < 0) return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2) len = sizeof line - 2;
    if (line[len - 1] != '\n') line[len++] = '\n';
    const char *p = line;
    while (len > 0) {
        ssize_t w = write(2, p, len);
        if (w <= 0) break;
        p += w;
        len -= (size_t)w;
    }
}

void dt_log(dt_log_level lvl, dt_subsys sub, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dt_vlog(lvl, sub, fmt, ap);
    va_end(ap);
}
