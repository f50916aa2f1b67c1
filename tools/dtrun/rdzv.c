/* The rendezvous protocol over the store (see rdzv.h for the keys). Every
 * wait polls with a deadline, so a lost peer or store shows as a timeout with
 * the round and the key, never as a hang. */
#define _GNU_SOURCE
#include "rdzv.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STORE_TIMEOUT_MS 60000

static int64_t ms(double s) { return (int64_t)(s * 1000.0); }

static int store_fail(const char *what)
{
    fprintf(stderr, "dtrun: rendezvous store: %s: %s\n", what, dt_last_error());
    return -1;
}

/* 1 and the value when key exists, 0 when not, -1 on a store error. */
static int try_get(dtrun_rdzv *r, const char *key, char *buf, size_t cap)
{
    bool have;
    const char *keys[1] = {key};
    if (dt_store_check(r->kv, keys, 1, &have) < 0) return store_fail(key);
    if (!have) return 0;
    void *v;
    size_t n;
    if (dt_store_get(r->kv, key, &v, &n) < 0) return store_fail(key);
    if (n >= cap) n = cap - 1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    dt_free(v);
    return 1;
}

/* Set key to val unless it exists; *won tells whether this call set it. */
static int set_once(dtrun_rdzv *r, const char *key, const char *val, bool *won)
{
    void *cur = NULL;
    size_t n = 0;
    if (dt_store_compare_set(r->kv, key, "", 0, val, strlen(val), &cur, &n) < 0) return store_fail(key);
    if (won) *won = n == strlen(val) && memcmp(cur, val, n) == 0;
    dt_free(cur);
    return 0;
}

static int read_round(dtrun_rdzv *r, int *round)
{
    void *cur = NULL;
    size_t n = 0;
    if (dt_store_compare_set(r->kv, "round", "", 0, "0", 1, &cur, &n) < 0) return store_fail("round");
    char buf[32];
    snprintf(buf, sizeof buf, "%.*s", (int)(n < 31 ? n : 31), (char *)cur);
    dt_free(cur);
    *round = atoi(buf);
    return 0;
}

static int add(dtrun_rdzv *r, const char *key, int64_t d, int64_t *out)
{
    return dt_store_add(r->kv, key, d, out) < 0 ? store_fail(key) : 0;
}

/* ------------------------------------------------------------- addresses */

static bool is_loopback_name(const char *h)
{
    return !strcmp(h, "localhost") || !strncmp(h, "127.", 4) || !strcmp(h, "::1");
}

/* Whether host names an address of this machine (binding to it works). */
static bool is_local_address(const char *host)
{
    if (is_loopback_name(host)) return true;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return false;
    bool local = false;
    for (struct addrinfo *a = res; a && !local; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        struct sockaddr_storage ss;
        memcpy(&ss, a->ai_addr, a->ai_addrlen);
        if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = 0;
        else if (ss.ss_family == AF_INET6) ((struct sockaddr_in6 *)&ss)->sin6_port = 0;
        local = bind(fd, (struct sockaddr *)&ss, a->ai_addrlen) == 0;
        close(fd);
    }
    freeaddrinfo(res);
    return local;
}

/* The local address packets to host:port leave from (a UDP connect sends nothing). */
static void route_address(const char *host, int port, char *out, size_t cap)
{
    snprintf(out, cap, "127.0.0.1");
    if (is_loopback_name(host)) return;
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port ? port : 9);
    if (getaddrinfo(host, ps, &hints, &res) != 0) return;
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
        else inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap);
    }
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
}

/* A port nobody listens on now (rank 0's own store binds it soon after). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t l = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &l) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* ------------------------------------------------------------------ open */

int dtrun_rdzv_open(dtrun_rdzv *r, const dtrun_opts *o)
{
    memset(r, 0, sizeof *r);
    r->o = o;
    r->round = -1;
    dt_store_opts so = DT_STORE_OPTS_INIT;
    so.timeout_ms = ms(o->join_timeout_s) > STORE_TIMEOUT_MS ? ms(o->join_timeout_s) : STORE_TIMEOUT_MS;
    bool host = o->is_host == 1 || (o->is_host < 0 && is_local_address(o->rdzv_host));
    if (host) {
        r->tcp = dt_store_tcp(o->rdzv_host, o->rdzv_port, true, &so);
        if (r->tcp) r->hosting = true;
        else if (o->is_host == 1) {
            fprintf(stderr, "dtrun: cannot host the rendezvous store on %s:%d: %s\n", o->rdzv_host, o->rdzv_port, dt_last_error());
            return -1;
        }
        /* else: another agent on this host hosts it; join as a client */
    }
    if (!r->tcp) r->tcp = dt_store_tcp(o->rdzv_host, o->rdzv_port, false, &so);
    if (!r->tcp) {
        fprintf(stderr, "dtrun: cannot reach the rendezvous store at %s:%d: %s\n", o->rdzv_host, o->rdzv_port, dt_last_error());
        return -1;
    }
    snprintf(r->store_host, sizeof r->store_host, "%s", o->rdzv_host);
    r->store_port = dt_store_port(r->tcp);
    char prefix[192];
    snprintf(prefix, sizeof prefix, "dtrun/%s", o->rdzv_id);
    r->kv = dt_store_prefix(r->tcp, prefix);
    if (!r->kv) return store_fail("prefix");
    if (o->local_addr[0]) snprintf(r->addr, sizeof r->addr, "%s", o->local_addr);
    else route_address(o->rdzv_host, r->store_port, r->addr, sizeof r->addr);
    return 0;
}

void dtrun_rdzv_close(dtrun_rdzv *r)
{
    dt_store_release(r->kv);
    dt_store_release(r->tcp);
    free(r->hb_value);
    free(r->hb_changed_ns);
    r->kv = r->tcp = NULL;
    r->hb_value = r->hb_changed_ns = NULL;
}

static int all_present(dtrun_rdzv *r, const char *what, bool *all);
static bool poll_wait(const dtrun_rdzv *r, int64_t deadline_ns, int *step_ms);

/* This node leaves round r->round; the store's host waits, up to
 * close_timeout, until every node of the round left (the others still read
 * the store until they saw the round's outcome). */
static int leave(dtrun_rdzv *r)
{
    char key[64];
    bool all;
    snprintf(key, sizeof key, "r%d/left/%d", r->round, r->group_rank);
    if (dt_store_set(r->kv, key, "1", 1) < 0) return store_fail(key);
    if (!r->hosting) return 0;
    int64_t deadline = dt_deadline_ns(ms(r->o->close_timeout_s));
    int step = 1;
    do {
        if (all_present(r, "left", &all) < 0) return -1;
    } while (!all && poll_wait(r, deadline, &step));
    return 0;
}

/* ------------------------------------------------------------------ join */

static const char *why_name[] = {"start", "failure", "membership", "stop"};

static int read_why(dtrun_rdzv *r, int round)
{
    char key[64], buf[64];
    r->why = DTRUN_WHY_START;
    r->restarts = 0;
    if (round == 0) return 0;
    snprintf(key, sizeof key, "r%d/why", round);
    int rc = try_get(r, key, buf, sizeof buf);
    if (rc < 0) return -1;
    if (rc == 0) return 0;   /* the bump and its reason are written in that order: cannot happen */
    char name[32] = "";
    sscanf(buf, "%d %31s", &r->restarts, name);
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, why_name[i])) r->why = (dtrun_why)i;
    return 0;
}

/* Sleep for the next poll; false when the deadline passed. */
static bool poll_wait(const dtrun_rdzv *r, int64_t deadline_ns, int *step_ms)
{
    if (dt_ms_left(deadline_ns) == 0 || (r->interrupted && *r->interrupted)) return false;
    dt_sleep_ms(*step_ms);
    if (*step_ms < 20) (*step_ms)++;
    return true;
}

static int join_round(dtrun_rdzv *r, int round, bool *retry)
{
    const dtrun_opts *o = r->o;
    bool dynamic = strcmp(o->rdzv_backend, "c10d") == 0;
    char key[96], val[512];
    int64_t idx, n;
    *retry = false;

    snprintf(val, sizeof val, "%d %s", o->nproc, r->addr);
    if (!dynamic) {
        idx = o->node_rank;
        snprintf(key, sizeof key, "r%d/node/%lld", round, (long long)idx);
        if (dt_store_set(r->kv, key, val, strlen(val)) < 0) return store_fail(key);
        snprintf(key, sizeof key, "r%d/joined", round);
        if (add(r, key, 1, &n) < 0) return -1;
    } else {
        snprintf(key, sizeof key, "r%d/joined", round);
        if (add(r, key, 1, &n) < 0) return -1;
        idx = n - 1;
        snprintf(key, sizeof key, "r%d/node/%lld", round, (long long)idx);
        if (dt_store_set(r->kv, key, val, strlen(val)) < 0) return store_fail(key);
    }

    /* wait for the round to close */
    int64_t deadline = dt_deadline_ns(ms(o->join_timeout_s)), min_seen_ns = 0;
    int step = 1, closed = -1;
    char ckey[64], jkey[64];
    snprintf(ckey, sizeof ckey, "r%d/closed", round);
    snprintf(jkey, sizeof jkey, "r%d/joined", round);
    for (;;) {
        int rc = try_get(r, ckey, val, sizeof val);
        if (rc < 0) return -1;
        if (rc == 1) { closed = atoi(val); break; }
        if (add(r, jkey, 0, &n) < 0) return -1;
        if (n >= o->max_nodes) {
            snprintf(val, sizeof val, "%d", o->max_nodes);
            if (set_once(r, ckey, val, NULL) < 0) return -1;
            continue;
        }
        if (dynamic && n >= o->min_nodes) {
            if (!min_seen_ns) min_seen_ns = dt_now_ns();
            if (dt_now_ns() - min_seen_ns >= ms(o->last_call_timeout_s) * 1000000) {
                snprintf(val, sizeof val, "%lld", (long long)n);
                if (set_once(r, ckey, val, NULL) < 0) return -1;
                continue;
            }
        }
        int now_round;
        if (read_round(r, &now_round) < 0) return -1;
        if (now_round != round) { *retry = true; return 0; }
        if (!poll_wait(r, deadline, &step)) {
            if (r->interrupted && *r->interrupted) return -1;
            fprintf(stderr, "dtrun: rendezvous round %d timed out after %.0f s with %lld of %d..%d nodes (join_timeout)\n",
                    round, o->join_timeout_s, (long long)n, o->min_nodes, o->max_nodes);
            return -1;
        }
    }
    if (idx >= closed) {
        /* too late for this round: wait for the next one (the running nodes see us waiting) */
        fprintf(stderr, "dtrun: round %d is full or closed; waiting to join the next one\n", round);
        for (;;) {
            int now_round;
            if (read_round(r, &now_round) < 0) return -1;
            if (now_round != round) { *retry = true; return 0; }
            if (r->interrupted && *r->interrupted) return -1;
            dt_sleep_ms(ms(o->monitor_interval_s));
        }
    }

    /* the participants: nodes 0..closed-1 */
    r->round = round;
    r->group_rank = (int)idx;
    r->group_world = closed;
    r->rank_base = r->world_size = 0;
    char first_addr[256] = "";
    for (int i = 0; i < closed; i++) {
        snprintf(key, sizeof key, "r%d/node/%d", round, i);
        const char *keys[1] = {key};
        if (dt_store_wait(r->kv, keys, 1, ms(o->join_timeout_s)) < 0) return store_fail(key);
        void *v;
        size_t len;
        if (dt_store_get(r->kv, key, &v, &len) < 0) return store_fail(key);
        snprintf(val, sizeof val, "%.*s", (int)(len < sizeof val - 1 ? len : sizeof val - 1), (char *)v);
        dt_free(v);
        int np = 0;
        char a[256] = "";
        sscanf(val, "%d %255s", &np, a);
        if (i == 0) snprintf(first_addr, sizeof first_addr, "%s", a);
        if (i < idx) r->rank_base += np;
        r->world_size += np;
    }

    /* the workers' store */
    r->agent_store = o->worker_store == DTRUN_STORE_AGENT;
    if (r->agent_store) {
        snprintf(r->master_addr, sizeof r->master_addr, "%s", r->store_host);
        r->master_port = r->store_port;
    } else {
        snprintf(key, sizeof key, "r%d/master", round);
        if (idx == 0) {
            int port = free_port();
            if (port < 0) { fprintf(stderr, "dtrun: no free port for rank 0's store\n"); return -1; }
            snprintf(val, sizeof val, "%s %d", closed == 1 && is_loopback_name(r->store_host) ? "127.0.0.1" : first_addr, port);
            if (dt_store_set(r->kv, key, val, strlen(val)) < 0) return store_fail(key);
        }
        const char *keys[1] = {key};
        if (dt_store_wait(r->kv, keys, 1, ms(o->join_timeout_s)) < 0) return store_fail(key);
        if (try_get(r, key, val, sizeof val) != 1) return -1;
        if (sscanf(val, "%255s %d", r->master_addr, &r->master_port) != 2) return -1;
    }

    free(r->hb_value);
    free(r->hb_changed_ns);
    r->hb_value = calloc((size_t)closed, sizeof *r->hb_value);
    r->hb_changed_ns = calloc((size_t)closed, sizeof *r->hb_changed_ns);
    if (!r->hb_value || !r->hb_changed_ns) return -1;
    int64_t now = dt_now_ns();
    for (int i = 0; i < closed; i++) r->hb_value[i] = -1, r->hb_changed_ns[i] = now;
    r->next_hb_ns = 0;
    return 0;
}

int dtrun_rdzv_join(dtrun_rdzv *r, dtrun_failure *stop, bool *have_stop)
{
    *have_stop = false;
    for (;;) {
        int round;
        bool retry;
        if (read_round(r, &round) < 0) return -1;
        if (read_why(r, round) < 0) return -1;
        if (r->why == DTRUN_WHY_STOP) {
            char key[64], buf[12288];
            snprintf(key, sizeof key, "r%d/failure", round - 1);
            if (try_get(r, key, buf, sizeof buf) == 1 && dtrun_failure_decode(stop, buf, strlen(buf)) == 0) *have_stop = true;
            /* the nodes of the failed round leave; the store's host waits for them to have read it */
            if (r->round == round - 1 && r->group_world > 0) {
                r->round = round - 1;
                (void)leave(r);
            }
            r->round = round;
            return 1;
        }
        if (join_round(r, round, &retry) < 0) return -1;
        if (!retry) return 0;
    }
}

/* ----------------------------------------------------------------- check */

int dtrun_rdzv_check(dtrun_rdzv *r)
{
    const dtrun_opts *o = r->o;
    int now_round;
    if (read_round(r, &now_round) < 0) return -1;
    if (now_round != r->round) return 1;
    if (r->group_world == 1 && o->max_nodes == 1) return 0;   /* one node: nothing else to watch */

    char key[64];
    int64_t v, now = dt_now_ns();
    snprintf(key, sizeof key, "r%d/hb/%d", r->round, r->group_rank);
    if (add(r, key, 1, &v) < 0) return -1;
    for (int i = 0; i < r->group_world; i++) {
        if (i == r->group_rank) continue;
        snprintf(key, sizeof key, "r%d/done/%d", r->round, i);
        const char *keys[1] = {key};
        bool done;
        if (dt_store_check(r->kv, keys, 1, &done) < 0) return store_fail(key);
        snprintf(key, sizeof key, "r%d/hb/%d", r->round, i);
        if (add(r, key, 0, &v) < 0) return -1;
        if (v != r->hb_value[i] || done) {
            r->hb_value[i] = v;
            r->hb_changed_ns[i] = now;
        } else if (now - r->hb_changed_ns[i] > ms(o->heartbeat_timeout_s) * 1000000) {
            fprintf(stderr, "dtrun: node %d of round %d sent no heartbeat for %.0f s: it is gone; %s\n", i, r->round,
                    o->heartbeat_timeout_s, strcmp(o->rdzv_backend, "c10d") == 0 ? "re-forming the job without it" : "the job fails over");
            dtrun_failure f;
            memset(&f, 0, sizeof f);
            f.wall_ms = dt_wall_ms();
            f.rank = f.local_rank = -1;
            f.exitcode = -9;
            snprintf(f.host, sizeof f.host, "node %d", i);
            snprintf(f.message, sizeof f.message, "the agent of node %d stopped sending heartbeats (killed or cut off)", i);
            if (dtrun_rdzv_end(r, strcmp(o->rdzv_backend, "c10d") == 0 ? DTRUN_WHY_MEMBERSHIP : DTRUN_WHY_FAILURE, &f) < 0) return -1;
            return 1;
        }
    }
    if (strcmp(o->rdzv_backend, "c10d") == 0 && r->group_world < o->max_nodes) {
        int64_t joined;
        snprintf(key, sizeof key, "r%d/joined", r->round);
        if (add(r, key, 0, &joined) < 0) return -1;
        if (joined > r->group_world) {
            fprintf(stderr, "dtrun: %lld node(s) waiting to join: re-forming the job with them\n", (long long)(joined - r->group_world));
            if (dtrun_rdzv_end(r, DTRUN_WHY_MEMBERSHIP, NULL) < 0) return -1;
            return 1;
        }
    }
    return 0;
}

int dtrun_rdzv_end(dtrun_rdzv *r, dtrun_why why, const dtrun_failure *f)
{
    char key[64], val[12288];
    if (f) {
        snprintf(key, sizeof key, "r%d/failure", r->round);
        if (dtrun_failure_encode(f, val, sizeof val) < 0 || set_once(r, key, val, NULL) < 0) return -1;
    }
    int restarts = r->restarts + (why == DTRUN_WHY_FAILURE);
    if (why == DTRUN_WHY_FAILURE && restarts > r->o->max_restarts) why = DTRUN_WHY_STOP;
    snprintf(key, sizeof key, "r%d/why", r->round + 1);
    snprintf(val, sizeof val, "%d %s", restarts, why_name[why]);
    if (set_once(r, key, val, NULL) < 0) return -1;
    char cur[32], next[32];
    snprintf(cur, sizeof cur, "%d", r->round);
    snprintf(next, sizeof next, "%d", r->round + 1);
    void *got = NULL;
    size_t n = 0;
    if (dt_store_compare_set(r->kv, "round", cur, strlen(cur), next, strlen(next), &got, &n) < 0) return store_fail("round");
    dt_free(got);
    return 0;
}

/* ------------------------------------------------------------------ done */

int dtrun_rdzv_mark_done(dtrun_rdzv *r)
{
    char key[64];
    snprintf(key, sizeof key, "r%d/done/%d", r->round, r->group_rank);
    return dt_store_set(r->kv, key, "1", 1) < 0 ? store_fail(key) : 0;
}

static int all_present(dtrun_rdzv *r, const char *what, bool *all)
{
    *all = true;
    for (int i = 0; i < r->group_world && *all; i++) {
        char key[64];
        snprintf(key, sizeof key, "r%d/%s/%d", r->round, what, i);
        const char *keys[1] = {key};
        if (dt_store_check(r->kv, keys, 1, all) < 0) return store_fail(key);
    }
    return 0;
}

int dtrun_rdzv_finished(dtrun_rdzv *r)
{
    bool all;
    if (all_present(r, "done", &all) < 0) return -1;
    if (!all) return 0;
    return leave(r) < 0 ? -1 : 1;
}
