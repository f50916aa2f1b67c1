/* Environment knobs: the table of include/dtrain/params.def, read and checked.
 * Does not cache: a knob is read where it is used, so tests can set it. */
#include <dtrain/util.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static const dt_param_info table[DT_PARAM_COUNT] = {
#define DT_PARAM(id, env, type, def, lo, hi, doc) [DT_PARAM_##id] = {env, DT_PARAM_##type, def, lo, hi, doc},
#include <dtrain/params.def>
#undef DT_PARAM
};

const dt_param_info *dt_param_get_info(dt_param_id id)
{
    return (unsigned)id < DT_PARAM_COUNT ? &table[id] : NULL;
}

int dt_param_int(dt_param_id id, int64_t *out)
{
    const dt_param_info *p = dt_param_get_info(id);
    if (!p || p->type != DT_PARAM_INT) return dt_set_error(DT_EINVAL, "parameter %d is not an integer knob", (int)id);
    const char *s = getenv(p->env);
    const char *src = (s && *s) ? s : p->def;
    char *end;
    errno = 0;
    long long v = strtoll(src, &end, 10);
    while (*end == ' ' || *end == '\t') end++;
    if (errno || end == src || *end != '\0')
        return dt_set_error(DT_EINVAL, "%s='%s' is not an integer", p->env, src);
    if (v < p->lo || v > p->hi)
        return dt_set_error(DT_EINVAL, "%s=%lld is outside %lld..%lld", p->env, v, (long long)p->lo, (long long)p->hi);
    *out = v;
    return 0;
}

const char *dt_param_str(dt_param_id id)
{
    const dt_param_info *p = dt_param_get_info(id);
    if (!p) return "";
    const char *s = getenv(p->env);
    return (s && *s) ? s : p->def;
}

void dt_param_markdown(void *file)
{
    FILE *f = file;
    fprintf(f, "# Environment variables\n\n"
               "Every knob dtrain reads, generated from `include/dtrain/params.def` by\n"
               "`build/bin/dtinfo --env-markdown` (a test keeps this page equal to it).\n"
               "An unset or empty variable takes the default. A value that is not valid\n"
               "(not an integer, out of range, an unknown name) is an error that names the\n"
               "variable and the value, never silently ignored.\n\n"
               "The launcher's own variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) are\n"
               "described in launcher.md.\n\n"
               "| variable | type | default | range | meaning |\n"
               "|---|---|---|---|---|\n");
    for (int i = 0; i < DT_PARAM_COUNT; i++) {
        const dt_param_info *p = &table[i];
        char range[64] = "";
        if (p->type == DT_PARAM_INT) {
            if (p->hi == INT64_MAX) snprintf(range, sizeof range, "≥ %lld", (long long)p->lo);
            else snprintf(range, sizeof range, "%lld – %lld", (long long)p->lo, (long long)p->hi);
        }
        fprintf(f, "| `%s` | %s | %s | %s | %s |\n", p->env, p->type == DT_PARAM_INT ? "integer" : "string",
                p->def[0] ? p->def : "(unset)", range, p->doc);
    }
}
