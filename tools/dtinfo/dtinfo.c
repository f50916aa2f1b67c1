/* dtinfo: what this dtrain build is and how the environment configures it.
 *   dtinfo                 version, CPUs, every DTRAIN_* knob with its value
 *   dtinfo --env-markdown  the knob table as Markdown (docs/env.md is this output)
 * Exits 1 with the knob's name when a DTRAIN_* variable holds a bad value. */
#include <dtrain/dtrain.h>

#include <stdio.h>
#include <string.h>

static int show(void)
{
    int bad = 0;
    printf("dtrain %s\n", dt_version());
    printf("cpus online: %d\n", dt_num_cpus());
    printf("environment knobs (docs/env.md):\n");
    for (int i = 0; i < DT_PARAM_COUNT; i++) {
        const dt_param_info *p = dt_param_get_info((dt_param_id)i);
        if (p->type == DT_PARAM_INT) {
            int64_t v;
            if (dt_param_int((dt_param_id)i, &v) < 0) {
                printf("  %-22s ERROR: %s\n", p->env, dt_last_error());
                bad = 1;
            } else {
                printf("  %-22s %lld\n", p->env, (long long)v);
            }
        } else {
            const char *v = dt_param_str((dt_param_id)i);
            if (i == DT_PARAM_SECRET && v[0]) v = "(set, not shown)";
            printf("  %-22s %s\n", p->env, v[0] ? v : "(unset)");
        }
    }
    if (dt_log_reload() < 0) {
        printf("  logging: ERROR: %s\n", dt_last_error());
        bad = 1;
    }
    return bad;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--env-markdown") == 0) {
        dt_param_markdown(stdout);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "usage: dtinfo [--env-markdown]\n");
        return 2;
    }
    return show();
}
