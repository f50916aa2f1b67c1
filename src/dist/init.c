/* init_process_group: where this rank is (rank and world size from the
 * options, or RANK/WORLD_SIZE, or the MPI and Slurm launchers' variables),
 * the rendezvous store its init method names (env://, tcp://host:port,
 * file:///path, or the caller's), which ranks share this host (each rank
 * publishes a host identity: host name, boot id and pid namespace, so ranks
 * in different containers count as different hosts), and the backend that
 * fits ("auto": shm on one host, tcp when each rank has its own host, else
 * hier: shm inside hosts, tcp between them). The group itself is made by pg.c. */
#define _GNU_SOURCE
#include "dist/dist_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The first of names that is set: 1 and *out, 0 when none is, or DT_EINVAL. */
static int env_int(const char *const *names, int *out, const char **which)
{
    for (int i = 0; names[i]; i++) {
        const char *s = getenv(names[i]);
        if (!s || !*s) continue;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < 0 || v > 1 << 24)
            return dt_set_error(DT_EINVAL, "%s='%s' is not a rank or size", names[i], s);
        *out = (int)v;
        if (which) *which = names[i];
        return 1;
    }
    return 0;
}

static const char *const RANK_VARS[] = {"RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID", NULL};
static const char *const SIZE_VARS[] = {"WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS", NULL};
static const char *const LRANK_VARS[] = {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", NULL};
static const char *const LSIZE_VARS[] = {"LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", NULL};

/* "host:port" or "[v6]:port" into host (cap bytes) and *port. */
static int parse_hostport(const char *s, char *host, size_t cap, int *port, const char *what)
{
    const char *colon;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return dt_set_error(DT_EINVAL, "%s: bad address '%s'", what, s);
        if ((size_t)(close - s - 1) >= cap) return dt_set_error(DT_EINVAL, "%s: host too long", what);
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || colon == s) return dt_set_error(DT_EINVAL, "%s: '%s' is not host:port", what, s);
        if ((size_t)(colon - s) >= cap) return dt_set_error(DT_EINVAL, "%s: host too long", what);
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || p <= 0 || p > 65535) return dt_set_error(DT_EINVAL, "%s: bad port in '%s'", what, s);
    *port = (int)p;
    return 0;
}

static dt_store *tcp_store(const char *host, int port, int rank, int size, int64_t timeout_ms)
{
    const char *agent = getenv("TORCHELASTIC_USE_AGENT_STORE");
    bool launcher = agent && (strcmp(agent, "True") == 0 || strcmp(agent, "1") == 0 || strcmp(agent, "true") == 0);
    dt_store_opts so = DT_STORE_OPTS_INIT;
    so.timeout_ms = timeout_ms;
    so.num_workers = size;
    dt_store *s = dt_store_tcp(host, port, rank == 0 && !launcher, &so);
    if (!s || !launcher) return s;
    /* The agent's store outlives a restart: as torch does, each attempt works under
     * its own prefix, so a restarted group never sees the previous attempt's keys. */
    const char *attempt = getenv("TORCHELASTIC_RESTART_COUNT");
    char prefix[64];
    snprintf(prefix, sizeof prefix, "/worker/attempt_%s", attempt && *attempt ? attempt : "0");
    dt_store *p = dt_store_prefix(s, prefix);
    dt_store_release(s);
    return p;
}

static dt_store *make_store(const char *init_method, int rank, int size, int64_t timeout_ms, const dt_pg_opts *o)
{
    char host[256];
    int port = 0;
    if (!init_method) {
        if (!o->store) {
            dt_set_error(DT_EINVAL, "init_process_group: neither an init method nor a store");
            return NULL;
        }
        return dt_store_retain(o->store);
    }
    if (strcmp(init_method, "env://") == 0) {
        const char *a = getenv("MASTER_ADDR"), *p = getenv("MASTER_PORT");
        if (!a || !*a || !p || !*p) {
            dt_set_error(DT_EINVAL, "init_process_group(env://): MASTER_ADDR and MASTER_PORT must be set%s%s",
                         a && *a ? "" : " (MASTER_ADDR is not)", p && *p ? "" : " (MASTER_PORT is not)");
            return NULL;
        }
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || *end || v <= 0 || v > 65535) {
            dt_set_error(DT_EINVAL, "init_process_group(env://): MASTER_PORT='%s' is not a port", p);
            return NULL;
        }
        return tcp_store(a, (int)v, rank, size, timeout_ms);
    }
    if (strncmp(init_method, "tcp://", 6) == 0) {
        if (parse_hostport(init_method + 6, host, sizeof host, &port, "init_process_group(tcp://)") < 0) return NULL;
        return tcp_store(host, port, rank, size, timeout_ms);
    }
    if (strncmp(init_method, "file://", 7) == 0) {
        if (!init_method[7]) {
            dt_set_error(DT_EINVAL, "init_process_group: file:// needs a path (file:///tmp/x)");
            return NULL;
        }
        dt_store_opts so = DT_STORE_OPTS_INIT;
        so.timeout_ms = timeout_ms;
        return dt_store_file(init_method + 7, size, &so);
    }
    dt_set_error(DT_EINVAL, "init_process_group: unknown init method '%s' (env://, tcp://host:port, file:///path)",
                 init_method);
    return NULL;
}

void dt__host_id(char *buf, size_t cap)
{
    char name[256] = "?", boot[64] = "?", ns[64] = "?";
    gethostname(name, sizeof name - 1);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(boot, sizeof boot, f)) boot[0] = '\0';
        fclose(f);
        boot[strcspn(boot, "\n")] = '\0';
    }
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    ns[n > 0 ? n : 0] = '\0';
    snprintf(buf, cap, "%s/%s/%s", name, boot, ns);
}

/* Publish our host identity and read everyone's: local rank and size
 * (counted among equal identities), whether all ranks share this host, and
 * whether some host has more than one rank (*shared). */
static int exchange_hosts(dt_store *store, int rank, int size, int *lrank, int *lsize, bool *one_host, int *other,
                          bool *shared)
{
    char me[400], key[64];
    dt__host_id(me, sizeof me);
    snprintf(key, sizeof key, "init/host/%d", rank);
    DT_CHECK(dt_store_set(store, key, me, strlen(me)));
    *lrank = 0;
    *lsize = 0;
    *one_host = true;
    *shared = false;
    char **ids = dt_calloc((size_t)size, sizeof *ids, DT_MEM_COMM);
    if (!ids) return DT_ENOMEM;
    int rc = 0;
    for (int r = 0; r < size; r++) {
        void *v = NULL;
        size_t len = 0;
        snprintf(key, sizeof key, "init/host/%d", r);
        rc = dt_store_get(store, key, &v, &len);
        if (rc < 0) {
            dt_error_wrap(rc, "rank %d did not join the rendezvous", r);
            break;
        }
        bool same = len == strlen(me) && memcmp(v, me, len) == 0;
        ids[r] = dt_alloc(len + 1, DT_MEM_COMM);
        if (!ids[r]) {
            dt_free(v);
            rc = DT_ENOMEM;
            break;
        }
        memcpy(ids[r], v, len);
        ids[r][len] = '\0';
        dt_free(v);
        for (int q = 0; q < r && !*shared; q++) *shared = strcmp(ids[q], ids[r]) == 0;
        if (same) {
            if (r < rank) (*lrank)++;
            (*lsize)++;
        } else if (*one_host) {
            *one_host = false;
            *other = r;
        }
    }
    for (int r = 0; r < size; r++) dt_free(ids[r]);
    dt_free(ids);
    return rc;
}

dt_pg *dt_init_process_group(const char *backend, const char *init_method, const dt_pg_opts *opts)
{
    dt_pg_opts o = DT_PG_OPTS_INIT;
    if (opts) o = *opts;
    int rank = o.rank, size = o.world_size, rc;
    if (rank < 0 && (rc = env_int(RANK_VARS, &rank, NULL)) <= 0) {
        if (rc == 0) dt_set_error(DT_EINVAL, "init_process_group: no rank (opts.rank, RANK, OMPI_COMM_WORLD_RANK, PMI_RANK or SLURM_PROCID)");
        return NULL;
    }
    if (size < 0 && (rc = env_int(SIZE_VARS, &size, NULL)) <= 0) {
        if (rc == 0) dt_set_error(DT_EINVAL, "init_process_group: no world size (opts.world_size, WORLD_SIZE, OMPI_COMM_WORLD_SIZE, PMI_SIZE or SLURM_NTASKS)");
        return NULL;
    }
    if (size < 1 || rank >= size) {
        dt_set_error(DT_EINVAL, "init_process_group: rank %d outside a world of %d", rank, size);
        return NULL;
    }
    int64_t timeout = o.timeout_ms;
    if (timeout < 0) {
        int64_t s;
        if (dt_param_int(DT_PARAM_TIMEOUT, &s) < 0) return NULL;
        timeout = s * 1000;
    }
    if (!backend) backend = "auto";
    if (strcmp(backend, "auto") != 0 && strcmp(backend, "shm") != 0 && strcmp(backend, "tcp") != 0 &&
        strcmp(backend, "hier") != 0) {
        dt_set_error(DT_EINVAL, "init_process_group: unknown backend '%s' (auto, shm, tcp, hier)", backend);
        return NULL;
    }
    dt_log_set_rank(rank);
    dt_store *store = make_store(init_method, rank, size, timeout, &o);
    if (!store) {
        dt_error_wrap(dt_last_error_code(), "init_process_group(rank %d of %d)", rank, size);
        return NULL;
    }
    int lrank = 0, lsize = 1, other = -1;
    bool one_host = true, shared = false;
    pthread_mutex_lock(&dt__store_mu);
    rc = exchange_hosts(store, rank, size, &lrank, &lsize, &one_host, &other, &shared);
    pthread_mutex_unlock(&dt__store_mu);
    if (rc < 0) {
        dt_error_wrap(rc, "init_process_group(rank %d of %d)", rank, size);
        dt_store_release(store);
        return NULL;
    }
    int v;
    if (env_int(LRANK_VARS, &v, NULL) > 0) lrank = v;
    if (env_int(LSIZE_VARS, &v, NULL) > 0) lsize = v;
    dt_pg *pg = NULL;
    /* auto: shm when every rank shares this host, tcp when every rank has a
     * host of its own, else hier (shm within each host, tcp between them). */
    const char *chosen = strcmp(backend, "auto") != 0 ? backend : one_host ? "shm" : shared ? "hier" : "tcp";
    if (!one_host && strcmp(chosen, "shm") == 0) {
        dt_set_error(DT_EUNSUPPORTED, "init_process_group(shm): rank %d is on another host than rank %d; shm needs one "
                     "host (use tcp or auto)", other, rank);
    } else {
        int *ranks = dt_alloc((size_t)size * sizeof(int), DT_MEM_COMM);
        if (ranks) {
            for (int i = 0; i < size; i++) ranks[i] = i;
            pg = dt__pg_new(chosen, store, "g0", o.name ? o.name : "world", ranks, size, rank, timeout, lrank, lsize);
            dt_free(ranks);
        }
    }
    dt_store_release(store);
    return pg;
}
