/* dtrun's options: one table gives each option's name, default and help, so
 * argv, the PET_* environment and --help cannot disagree. Names are matched
 * with '-' and '_' equal (--nproc-per-node is --nproc_per_node). Values are
 * resolved afterwards (nproc "auto", "MIN:MAX", the rdzv endpoint and conf).
 * Does not touch the network or the file system. */
#include "options.h"

#include <dtrain/util.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef enum { OPT_STR, OPT_FLAG } opt_kind;

typedef struct {
    const char *name;   /* underscore spelling, without "--" */
    char shortname;     /* 'r' for -r, 0 for none */
    opt_kind kind;
    const char *def;    /* default as text; NULL: none */
    const char *meta;
    const char *help;
} opt_spec;

#define OPTS(X)                                                                                  \
    X(nnodes, 0, OPT_STR, "1:1", "N|MIN:MAX", "Number of nodes, or the elastic range MIN:MAX.")   \
    X(nproc_per_node, 0, OPT_STR, "1", "N|cpu|gpu|auto", "Workers per node: a number, cpu (one per core), gpu (one per GPU), auto (gpu if any, else cpu).") \
    X(node_rank, 0, OPT_STR, "0", "K", "This node's rank (static rendezvous).")                 \
    X(master_addr, 0, OPT_STR, "127.0.0.1", "HOST", "Address of node 0, which hosts the store (static rendezvous).") \
    X(master_port, 0, OPT_STR, "29500", "PORT", "Port of the store on node 0 (static rendezvous).") \
    X(standalone, 0, OPT_FLAG, "0", NULL, "One node: a c10d rendezvous on a free local port with a random id (rdzv options ignored).") \
    X(rdzv_backend, 0, OPT_STR, "static", "static|c10d", "static: fixed node ranks via --node_rank; c10d: dynamic, ranks assigned on join.") \
    X(rdzv_endpoint, 0, OPT_STR, "", "HOST[:PORT]", "Store of the dynamic rendezvous (default port 29400); the agent on HOST hosts it.") \
    X(rdzv_id, 0, OPT_STR, "none", "ID", "Job id: agents with the same id form one job (alias --run_id).") \
    X(run_id, 0, OPT_STR, NULL, "ID", "Same as --rdzv_id.")                                     \
    X(rdzv_conf, 0, OPT_STR, "", "K=V,...", "join_timeout (600), last_call_timeout (30), close_timeout (30), heartbeat_timeout (15), is_host (from the endpoint); seconds.") \
    X(max_restarts, 0, OPT_STR, "0", "N", "Failure restarts of the worker group before the job fails.") \
    X(monitor_interval, 0, OPT_STR, "0.1", "SECONDS", "How often the agent checks the rendezvous (worker exits are seen at once).") \
    X(role, 0, OPT_STR, "default", "NAME", "Role of the workers (ROLE_NAME).")                  \
    X(log_dir, 0, OPT_STR, NULL, "DIR", "Write LOG_DIR/RUNID_XXXXXX/attempt_N/LOCAL_RANK/{stdout,stderr}.log and error.json.") \
    X(redirects, 'r', OPT_STR, "0", "STD", "Streams sent only to the log files: 0 none, 1 stdout, 2 stderr, 3 both; or per local rank \"0:1,1:2\".") \
    X(tee, 't', OPT_STR, "0", "STD", "Streams written to the log files and to the console (same syntax).") \
    X(local_ranks_filter, 0, OPT_STR, "", "LIST", "Local ranks whose output is shown on the console, e.g. \"0\" or \"0,2\" (default: all).") \
    X(local_addr, 0, OPT_STR, NULL, "ADDR", "Address other nodes reach this one at (default: the address routing to the store).") \
    X(worker_store, 0, OPT_STR, "auto", "agent|rank0|auto", "dtrun's own: workers use the agent's store (agent), or rank 0 hosts theirs on a free port (rank0, torch's c10d convention); auto: rank0 for c10d or a Python program, else agent.") \
    X(start_method, 0, OPT_STR, "spawn", "spawn|fork|forkserver", "Accepted for compatibility; dtrun always forks and executes the program.") \
    X(no_python, 0, OPT_FLAG, "0", NULL, "Accepted for compatibility; dtrun always runs PROGRAM itself (write `python3 script.py`).")

enum {
#define X(n, s, k, d, m, h) OPT_##n,
    OPTS(X)
#undef X
    OPT_COUNT
};

static const opt_spec specs[OPT_COUNT] = {
#define X(n, s, k, d, m, h) {#n, s, k, d, m, h},
    OPTS(X)
#undef X
};

void dtrun_usage(void *file)
{
    FILE *f = file;
    fprintf(f,
            "usage: dtrun [OPTIONS] PROGRAM [ARGS...]\n\n"
            "Runs PROGRAM once per local rank with torchrun's environment (RANK, LOCAL_RANK,\n"
            "WORLD_SIZE, MASTER_ADDR, MASTER_PORT, ...), prefixes each output line with the\n"
            "rank, restarts the group on failure and prints a summary when it gives up.\n"
            "Every option is spelt --a_b or --a-b, and is also read from PET_A_B.\n\n");
    for (int i = 0; i < OPT_COUNT; i++) {
        char head[96];
        const opt_spec *s = &specs[i];
        if (s->shortname)
            snprintf(head, sizeof head, "-%c, --%s%s%s", s->shortname, s->name, s->meta ? " " : "", s->meta ? s->meta : "");
        else
            snprintf(head, sizeof head, "--%s%s%s", s->name, s->meta ? " " : "", s->meta ? s->meta : "");
        fprintf(f, "  %-40s %s", head, s->help);
        if (s->def && s->kind == OPT_STR && s->def[0]) fprintf(f, " [%s]", s->def);
        fprintf(f, "\n");
    }
    fprintf(f,
            "  %-40s %s\n\n"
            "Worker environment: RANK LOCAL_RANK WORLD_SIZE LOCAL_WORLD_SIZE GROUP_RANK\n"
            "GROUP_WORLD_SIZE ROLE_RANK ROLE_WORLD_SIZE ROLE_NAME MASTER_ADDR MASTER_PORT\n"
            "TORCHELASTIC_RESTART_COUNT TORCHELASTIC_MAX_RESTARTS TORCHELASTIC_RUN_ID\n"
            "TORCHELASTIC_USE_AGENT_STORE TORCHELASTIC_ERROR_FILE, and OMP_NUM_THREADS and\n"
            "DTRAIN_NUM_THREADS (cores per local rank) when unset. DTRAIN_STOP_TIMEOUT: seconds\n"
            "between SIGTERM and SIGKILL when the agent stops workers. See docs/launcher.md.\n",
            "-h, --help", "Print this help and exit.");
}

/* "--nproc-per-node" and "nproc_per_node" name the same option. */
static int find_opt(const char *name, size_t n)
{
    for (int i = 0; i < OPT_COUNT; i++) {
        const char *s = specs[i].name;
        if (strlen(s) != n) continue;
        size_t j = 0;
        for (; j < n; j++) {
            char c = name[j] == '-' ? '_' : name[j];
            if (c != s[j]) break;
        }
        if (j == n) return i;
    }
    return -1;
}

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "dtrun: ");
    fprintf(stderr, fmt, a, b ? b : "");
    fprintf(stderr, "\n(dtrun --help lists the options)\n");
    return -1;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo)) return false;
    *out = v;
    return true;
}

int dtrun_parse_std(const char *s, unsigned char *out, int n, char *err, int errlen)
{
    long v;
    memset(out, 0, (size_t)n);
    if (!strchr(s, ':')) {
        if (!parse_long(s, 0, 3, &v)) { snprintf(err, (size_t)errlen, "'%s' is not 0, 1, 2, 3 or LOCAL_RANK:STD,...", s); return -1; }
        memset(out, (int)v, (size_t)n);
        return 0;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        long lr;
        if (!colon) { snprintf(err, (size_t)errlen, "'%s': '%s' is not LOCAL_RANK:STD", s, tok); return -1; }
        *colon = '\0';
        if (!parse_long(tok, 0, n - 1, &lr) || !parse_long(colon + 1, 0, 3, &v)) {
            snprintf(err, (size_t)errlen, "'%s': bad entry '%s:%s'", s, tok, colon + 1);
            return -1;
        }
        out[lr] = (unsigned char)v;
    }
    return 0;
}

/* GPUs the NVIDIA driver lists (no CUDA runtime needed to count them). */
static int count_gpus(void)
{
    DIR *d = opendir("/proc/driver/nvidia/gpus");
    int n = 0;
    if (!d) return 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static int resolve_nproc(const char *v, int *out)
{
    long n;
    if (parse_long(v, 1, DTRUN_MAX_LOCAL, &n)) { *out = (int)n; return 0; }
    if (strcmp(v, "cpu") == 0) { *out = dt_num_cpus(); return 0; }
    if (strcmp(v, "gpu") == 0) {
        *out = count_gpus();
        if (*out == 0) return fail("--nproc_per_node=gpu: no GPU found (/proc/driver/nvidia/gpus is empty or absent)%s%s", "", "");
        return 0;
    }
    if (strcmp(v, "auto") == 0) {
        *out = count_gpus();
        if (*out == 0) *out = dt_num_cpus();
        return 0;
    }
    return fail("--nproc_per_node: '%s' is not a number in 1..1024, cpu, gpu or auto%s", v, "");
}

static int resolve_rdzv_conf(const char *conf, dtrun_opts *o)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", conf);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) return fail("--rdzv_conf: '%s' is not KEY=VALUE%s", tok, "");
        *eq = '\0';
        const char *k = tok, *v = eq + 1;
        double *dst = strcmp(k, "join_timeout") == 0 ? &o->join_timeout_s
                    : strcmp(k, "last_call_timeout") == 0 ? &o->last_call_timeout_s
                    : strcmp(k, "close_timeout") == 0 ? &o->close_timeout_s
                    : strcmp(k, "heartbeat_timeout") == 0 ? &o->heartbeat_timeout_s : NULL;
        if (dst) {
            if (!parse_double(v, 0, dst) || *dst <= 0) return fail("--rdzv_conf: %s='%s' is not a positive number of seconds", k, v);
        } else if (strcmp(k, "is_host") == 0) {
            if (!strcmp(v, "1") || !strcasecmp(v, "true")) o->is_host = 1;
            else if (!strcmp(v, "0") || !strcasecmp(v, "false")) o->is_host = 0;
            else return fail("--rdzv_conf: is_host='%s' is not true or false%s", v, "");
        } else if (strcmp(k, "read_timeout") != 0 && strcmp(k, "timeout") != 0) {
            /* torch's read_timeout/timeout are accepted; every store call here has its own timeout */
            return fail("--rdzv_conf: unknown key '%s'%s", k, "");
        }
    }
    return 0;
}

static int resolve_endpoint(const char *ep, dtrun_opts *o)
{
    o->rdzv_host[0] = '\0';
    o->rdzv_port = 29400;
    if (!ep[0]) return 0;
    const char *colon = strrchr(ep, ':');
    size_t hl = strlen(ep);
    if (ep[0] == '[') {   /* [v6]:port */
        const char *close = strchr(ep, ']');
        if (!close) return fail("--rdzv_endpoint: '%s' has no closing ']'%s", ep, "");
        hl = (size_t)(close - ep - 1);
        snprintf(o->rdzv_host, sizeof o->rdzv_host, "%.*s", (int)hl, ep + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else if (colon) {
        hl = (size_t)(colon - ep);
        snprintf(o->rdzv_host, sizeof o->rdzv_host, "%.*s", (int)hl, ep);
    } else {
        snprintf(o->rdzv_host, sizeof o->rdzv_host, "%s", ep);
    }
    if (colon) {
        long p;
        if (!parse_long(colon + 1, 0, 65535, &p)) return fail("--rdzv_endpoint: '%s' has a bad port%s", ep, "");
        o->rdzv_port = (int)p;
    }
    return 0;
}

static const char *basename_of(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int dtrun_parse(int argc, char **argv, dtrun_opts *o)
{
    const char *val[OPT_COUNT];
    bool set[OPT_COUNT] = {0};
    int i = 0;

    for (int k = 0; k < OPT_COUNT; k++) val[k] = specs[k].def;
    /* the environment first, so the command line overrides it */
    for (int k = 0; k < OPT_COUNT; k++) {
        char env[96] = "PET_";
        for (size_t j = 0; specs[k].name[j]; j++) env[4 + j] = (char)toupper((unsigned char)specs[k].name[j]), env[5 + j] = '\0';
        const char *e = getenv(env);
        if (e && e[0]) { val[k] = e; set[k] = true; }
    }
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) { i++; break; }
        if (a[0] != '-' || a[1] == '\0') break;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { dtrun_usage(stdout); return 1; }
        int k = -1;
        const char *v = NULL;
        if (a[1] != '-') {
            for (int j = 0; j < OPT_COUNT; j++)
                if (specs[j].shortname && specs[j].shortname == a[1]) k = j;
            if (k < 0) return fail("unknown option '%s'%s", a, "");
            if (a[2]) v = a[2] == '=' ? a + 3 : a + 2;
        } else {
            const char *name = a + 2, *eq = strchr(name, '=');
            k = find_opt(name, eq ? (size_t)(eq - name) : strlen(name));
            if (k < 0) return fail("unknown option '%s'%s", a, "");
            if (eq) v = eq + 1;
        }
        if (specs[k].kind == OPT_FLAG) {
            if (v) return fail("option --%s takes no value (got '%s')", specs[k].name, v);
            v = "1";
        } else if (!v) {
            if (i + 1 >= argc) return fail("option --%s needs a value%s", specs[k].name, "");
            v = argv[++i];
        }
        val[k] = v;
        set[k] = true;
    }
    if (i >= argc) return fail("no PROGRAM given%s%s", "", "");
    o->argv = argv + i;
    o->argc = argc - i;

    long n;
    memset(o->redirects, 0, sizeof o->redirects);
    memset(o->tee, 0, sizeof o->tee);
    if (resolve_nproc(val[OPT_nproc_per_node], &o->nproc) < 0) return -1;
    if (o->nproc > DTRUN_MAX_LOCAL) {
        char n[16];
        snprintf(n, sizeof n, "%d", o->nproc);
        return fail("--nproc_per_node=%s resolves to %s workers; dtrun runs at most 1024 per node", val[OPT_nproc_per_node], n);
    }

    const char *nn = val[OPT_nnodes], *colon = strchr(nn, ':');
    if (colon) {
        char lo[32];
        snprintf(lo, sizeof lo, "%.*s", (int)(colon - nn), nn);
        long a, b;
        if (!parse_long(lo, 1, 1 << 20, &a) || !parse_long(colon + 1, 1, 1 << 20, &b) || a > b)
            return fail("--nnodes: '%s' is not N or MIN:MAX with 0 < MIN <= MAX%s", nn, "");
        o->min_nodes = (int)a, o->max_nodes = (int)b;
    } else {
        if (!parse_long(nn, 1, 1 << 20, &n)) return fail("--nnodes: '%s' is not N or MIN:MAX%s", nn, "");
        o->min_nodes = o->max_nodes = (int)n;
    }
    if (!parse_long(val[OPT_node_rank], 0, 1 << 20, &n)) return fail("--node_rank: '%s' is not a number >= 0%s", val[OPT_node_rank], "");
    o->node_rank = (int)n;
    const char *ma = val[OPT_master_addr];
    size_t mal = strlen(ma);
    if (mal > 2 && ma[0] == '[' && ma[mal - 1] == ']')   /* torch's IPv6 form [::1] */
        snprintf(o->master_addr, sizeof o->master_addr, "%.*s", (int)(mal - 2), ma + 1);
    else
        snprintf(o->master_addr, sizeof o->master_addr, "%s", ma);
    if (!parse_long(val[OPT_master_port], 0, 65535, &n)) return fail("--master_port: '%s' is not a port%s", val[OPT_master_port], "");
    o->master_port = (int)n;
    o->standalone = strcmp(val[OPT_standalone], "0") != 0;
    snprintf(o->rdzv_backend, sizeof o->rdzv_backend, "%s", val[OPT_rdzv_backend]);
    const char *id = set[OPT_run_id] && !set[OPT_rdzv_id] ? val[OPT_run_id] : val[OPT_rdzv_id];
    snprintf(o->rdzv_id, sizeof o->rdzv_id, "%s", id);
    o->join_timeout_s = 600, o->last_call_timeout_s = 30, o->close_timeout_s = 30, o->heartbeat_timeout_s = 15;
    o->is_host = -1;
    if (resolve_rdzv_conf(val[OPT_rdzv_conf], o) < 0) return -1;
    if (resolve_endpoint(val[OPT_rdzv_endpoint], o) < 0) return -1;
    if (o->standalone) {
        /* torchrun --standalone: a c10d rendezvous on this host, a free port, a random id */
        snprintf(o->rdzv_backend, sizeof o->rdzv_backend, "c10d");
        snprintf(o->rdzv_host, sizeof o->rdzv_host, "127.0.0.1");
        o->rdzv_port = 0;
        o->is_host = 1;
        o->min_nodes = o->max_nodes = 1;
        snprintf(o->rdzv_id, sizeof o->rdzv_id, "%08lx%04x", (unsigned long)dt_wall_ms() & 0xffffffffUL, (unsigned)getpid() & 0xffff);
    }
    if (strcmp(o->rdzv_backend, "static") == 0) {
        if (o->min_nodes != o->max_nodes) return fail("--nnodes=%s needs a dynamic rendezvous (--rdzv_backend=c10d)%s", nn, "");
        if (o->node_rank >= o->max_nodes) return fail("--node_rank=%s must be below --nnodes=%s", val[OPT_node_rank], nn);
        /* torch: the static rendezvous endpoint defaults to master_addr:master_port */
        if (!o->rdzv_host[0]) {
            snprintf(o->rdzv_host, sizeof o->rdzv_host, "%s", o->master_addr);
            o->rdzv_port = o->master_port;
        }
        if (o->is_host < 0) o->is_host = o->node_rank == 0;
    } else if (strcmp(o->rdzv_backend, "c10d") == 0) {
        if (!o->rdzv_host[0]) return fail("--rdzv_backend=c10d needs --rdzv_endpoint=HOST[:PORT]%s%s", "", "");
    } else {
        return fail("--rdzv_backend: '%s' is not static or c10d%s", o->rdzv_backend, "");
    }
    if (!parse_long(val[OPT_max_restarts], 0, 1 << 30, &n)) return fail("--max_restarts: '%s' is not a number >= 0%s", val[OPT_max_restarts], "");
    o->max_restarts = (int)n;
    if (!parse_double(val[OPT_monitor_interval], 0, &o->monitor_interval_s) || o->monitor_interval_s <= 0)
        return fail("--monitor_interval: '%s' is not a positive number of seconds%s", val[OPT_monitor_interval], "");
    snprintf(o->role, sizeof o->role, "%s", val[OPT_role]);
    snprintf(o->log_dir, sizeof o->log_dir, "%s", val[OPT_log_dir] ? val[OPT_log_dir] : "");
    char err[512];
    if (dtrun_parse_std(val[OPT_redirects], o->redirects, DTRUN_MAX_LOCAL, err, sizeof err) < 0) return fail("--redirects: %s%s", err, "");
    if (dtrun_parse_std(val[OPT_tee], o->tee, DTRUN_MAX_LOCAL, err, sizeof err) < 0) return fail("--tee: %s%s", err, "");
    o->any_redirect_or_tee = false;
    for (int k = 0; k < o->nproc; k++)
        if (o->redirects[k] | o->tee[k]) o->any_redirect_or_tee = true;
    const char *flt = val[OPT_local_ranks_filter];
    for (int k = 0; k < DTRUN_MAX_LOCAL; k++) o->show[k] = flt[0] == '\0';
    if (flt[0]) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", flt);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (!parse_long(tok, 0, o->nproc - 1, &n)) return fail("--local_ranks_filter: '%s' is not a local rank below nproc_per_node%s", tok, "");
            o->show[n] = true;
        }
    }
    snprintf(o->local_addr, sizeof o->local_addr, "%s", val[OPT_local_addr] ? val[OPT_local_addr] : "");
    const char *ws = val[OPT_worker_store];
    if (!strcmp(ws, "agent")) {
        /* a membership change restarts with the same TORCHELASTIC_RESTART_COUNT, so the
         * workers' key prefix /worker/attempt_N would meet the keys of the round before */
        if (strcmp(o->rdzv_backend, "c10d") == 0)
            return fail("--worker_store=agent needs --rdzv_backend=static (with c10d, rank 0 hosts the workers' store)%s%s", "", "");
        o->worker_store = DTRUN_STORE_AGENT;
    }
    else if (!strcmp(ws, "rank0")) o->worker_store = DTRUN_STORE_RANK0;
    else if (!strcmp(ws, "auto")) {
        /* torch's TCPStore does not speak dtrain's store protocol: a Python program
         * gets torch's own c10d convention (rank 0 hosts on a free port), as does a
         * dynamic rendezvous (torch 1.13 does the same there). */
        const char *b = basename_of(o->argv[0]);
        bool python = strncmp(b, "python", 6) == 0;
        o->worker_store = python || strcmp(o->rdzv_backend, "c10d") == 0 ? DTRUN_STORE_RANK0 : DTRUN_STORE_AGENT;
    } else {
        return fail("--worker_store: '%s' is not agent, rank0 or auto%s", ws, "");
    }
    const char *sm = val[OPT_start_method];
    if (strcmp(sm, "spawn") && strcmp(sm, "fork") && strcmp(sm, "forkserver"))
        return fail("--start_method: '%s' is not spawn, fork or forkserver%s", sm, "");
    return 0;
}
