/* The hier backend (the scheme is in hier.h): its ops table, create (which
 * host each rank is on, then the components), destroy, abort, the ops that
 * run over the flat tcp component or a pass-through, and the group's failure
 * record. The hierarchical algorithms are in allreduce.c and gather.c. */
#define _GNU_SOURCE
#include "dist/backend/hier/hier.h"
#include "dist/dist_internal.h"
#include "dist/reduce.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ failure record */

static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER; /* guards every hier's fail_msg */

/* The stored record: code, rank, its group sequence number, message. */
typedef struct {
    int32_t code;
    uint32_t rank;
    uint64_t seq;
    char msg[DT__HIER_MSG_CAP];
} stored_fail;

int dt__hier_check(dt__hier *h)
{
    int code = atomic_load(&h->fail_code);
    if (!code) return 0;
    pthread_mutex_lock(&fail_mu);
    dt_set_error(code, "%s", h->fail_msg);
    pthread_mutex_unlock(&fail_mu);
    return code;
}

/* First failure wins (this process). */
static bool record(dt__hier *h, int code, const char *msg)
{
    pthread_mutex_lock(&fail_mu);
    bool won = atomic_load(&h->fail_code) == 0;
    if (won) {
        snprintf(h->fail_msg, sizeof h->fail_msg, "%s", msg);
        atomic_store(&h->fail_code, code);
    }
    pthread_mutex_unlock(&fail_mu);
    return won;
}

/* Offer our record to the store; adopt the one already there (another rank's). */
static void publish(dt__hier *h)
{
    stored_fail mine = {.code = atomic_load(&h->fail_code), .rank = (uint32_t)h->rank, .seq = h->seq};
    pthread_mutex_lock(&fail_mu);
    snprintf(mine.msg, sizeof mine.msg, "%s", h->fail_msg);
    pthread_mutex_unlock(&fail_mu);
    size_t len = offsetof(stored_fail, msg) + strlen(mine.msg);
    void *cur = NULL;
    size_t cur_len = 0;
    pthread_mutex_lock(&dt__store_mu);
    int rc = dt_store_compare_set(h->store, "hier/fail", NULL, 0, &mine, len, &cur, &cur_len);
    pthread_mutex_unlock(&dt__store_mu);
    if (rc < 0) {
        dt_clear_error();
        return;
    }
    stored_fail theirs = {0};
    if (cur && cur_len >= offsetof(stored_fail, msg) && cur_len < sizeof theirs &&
        !(cur_len == len && memcmp(cur, &mine, len) == 0)) {
        memcpy(&theirs, cur, cur_len);
        int code = theirs.code < 0 && theirs.code >= -64 ? theirs.code : DT_EPEER;
        pthread_mutex_lock(&fail_mu);
        snprintf(h->fail_msg, sizeof h->fail_msg, "%.700s (recorded by rank %u in its op #%llu)", theirs.msg,
                 (unsigned)theirs.rank, (unsigned long long)theirs.seq);
        atomic_store(&h->fail_code, code);
        pthread_mutex_unlock(&fail_mu);
    }
    dt_free(cur);
}

/* Whether a record is in the store yet (never blocks). */
static bool stored(dt__hier *h)
{
    static const char *const key[] = {"hier/fail"};
    bool exists = false;
    pthread_mutex_lock(&dt__store_mu);
    if (dt_store_check(h->store, key, 1, &exists) < 0) dt_clear_error();
    pthread_mutex_unlock(&dt__store_mu);
    return exists;
}

static void abort_parts(dt__hier *h)
{
    dt__hier_part *parts[] = {&h->flat, &h->local, &h->lead, &h->cross};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (parts[i]->ops) parts[i]->ops->abort(parts[i]->be);
}

/* in (a component's message) with its rank numbers as group ranks: every
 * "rank N" and the list after "ranks that did not take part: ". */
static void translate(const dt__hier_part *p, const char *in, char *out, size_t cap)
{
    static const char list[] = "ranks that did not take part: ";
    size_t len = 0;
    bool in_list = false;
    while (*in && len + 16 < cap) {
        const char *q = NULL;
        if (strncmp(in, list, sizeof list - 1) == 0) {
            memcpy(out + len, in, sizeof list - 1);
            len += sizeof list - 1;
            in += sizeof list - 1;
            in_list = true;
            q = in;
        } else if (strncmp(in, "rank ", 5) == 0 && in[5] >= '0' && in[5] <= '9') {
            memcpy(out + len, in, 5);
            len += 5;
            in += 5;
            q = in;
        } else if (in_list && in[0] == ',' && in[1] == ' ' && in[2] >= '0' && in[2] <= '9') {
            memcpy(out + len, in, 2);
            len += 2;
            in += 2;
            q = in;
        }
        if (q && *q >= '0' && *q <= '9') {
            char *end;
            long r = strtol(q, &end, 10);
            len += (size_t)snprintf(out + len, cap - len, "%ld", r >= 0 && r < p->size ? (long)p->ranks[r] : r);
            in = end;
            continue;
        }
        if (!q) {
            if (!(*in == ',' || (*in >= '0' && *in <= '9') || *in == ' ')) in_list = false;
            out[len++] = *in++;
        }
    }
    out[len] = '\0';
}

int dt__hier_fail(dt__hier *h, dt__hier_part *p, int code)
{
    if (atomic_load(&h->fail_code)) return dt__hier_check(h);
    char sub[400], msg[DT__HIER_MSG_CAP];
    snprintf(sub, sizeof sub, "%s", dt_last_error());
    /* 1. A component lost a peer and a rank on this host is gone: that is the
     * cause. (Not after an abort: the aborting rank may have failed and
     * exited since; its record is in the store.) */
    int gone = -1;
    for (int r = 0; code == DT_EPEER && r < h->size && gone < 0; r++)
        if (r != h->rank && h->host[r] == h->my_host && dt__pid_gone(h->pid[r])) gone = r;
    bool definite = gone >= 0;
    if (definite) {
        code = DT_EPEER;
        char tr[sizeof sub + 64];
        if (p && p->ranks) translate(p, sub, tr, sizeof tr);
        else snprintf(tr, sizeof tr, "%s", sub);
        snprintf(msg, sizeof msg,
                 "rank %d (pid %d, on the host of rank %d) exited while rank %d was in %s; ranks that did not take "
                 "part: %d [%s: %.300s]",
                 gone, (int)h->pid[gone], h->rank, h->rank, h->op, gone, p ? p->what : "hier", tr);
    } else if (p && p->ranks == NULL) {
        /* the flat component numbers ranks as the group: its message stands, unless it only passes on an abort */
        definite = code != DT_EABORTED;
        snprintf(msg, sizeof msg, "%s", sub);
    } else {
        char tr[sizeof sub + 64];
        const char *text = sub, *pre = dt_strerror(code);
        size_t pl = strlen(pre);
        if (strncmp(text, pre, pl) == 0 && text[pl] == ':' && text[pl + 1] == ' ') text += pl + 2; /* wrapped again above */
        if (p) translate(p, text, tr, sizeof tr);
        snprintf(msg, sizeof msg, "%.500s [in %s]", p ? tr : text, p ? p->what : "hier");
        definite = code == DT_EMISMATCH || (code == DT_ETIMEOUT && h->entry);
    }
    /* 2. A peer gone, an abort passed on, or a timeout waiting for a rank that
     * itself waited: give the rank that knows (a host mate of the dead one,
     * the one that aborted, the one whose peer never came) a moment to offer
     * its record. */
    if (!definite && (code == DT_EPEER || code == DT_EABORTED || code == DT_ETIMEOUT))
        for (int64_t until = dt_deadline_ns(1000); !stored(h) && dt_now_ns() < until;) usleep(10000);
    if (record(h, code, msg)) publish(h);
    abort_parts(h);
    return dt__hier_check(h);
}

/* ------------------------------------------------------------ components */

int dt__hier_sub(dt__hier *h, dt__hier_part *p, dt__coll c, bool entry)
{
    DT_CHECK(dt__hier_check(h));
    h->entry = entry;
    c.seq = ++p->seq;
    int rc = p->ops->coll[c.kind](p->be, &c);
    return rc < 0 ? dt__hier_fail(h, p, rc) : 0;
}

int dt__hier_sub_p2p(dt__hier *h, dt__hier_part *p, dt_p2p_kind kind, void *buf, size_t bytes, int peer,
                     int64_t deadline_ns)
{
    DT_CHECK(dt__hier_check(h));
    h->entry = false;
    dt__p2p m = {.kind = kind, .buf = buf, .bytes = bytes, .peer = peer, .tag = -7, .source = -1};
    dt__p2p *v[1] = {&m};
    int rc = 0;
    while (rc == 0 && !m.complete) rc = p->ops->p2p(p->be, v, 1, deadline_ns, NULL);
    return rc < 0 ? dt__hier_fail(h, p, rc) : 0;
}

void *dt__hier_tmp(dt__hier *h, size_t bytes)
{
    if (bytes <= h->tmp_bytes) return h->tmp;
    void *n = dt_realloc(h->tmp, bytes, DT_MEM_COMM);
    if (!n) {
        dt_set_error(DT_ENOMEM, "hier: %zu bytes of scratch", bytes);
        return NULL;
    }
    h->tmp = n;
    h->tmp_bytes = bytes;
    return n;
}

int dt__hier_layout_make(dt__hier *h, const size_t *counts, dt__hier_layout *l)
{
    size_t n = (size_t)h->size, m = (size_t)h->local.size, nh = (size_t)h->nhosts;
    size_t *hoff = dt_alloc((n + 2 * nh + m) * sizeof(size_t) + (m + nh) * sizeof(void *), DT_MEM_COMM);
    if (!hoff) return dt__hier_fail(h, NULL, DT_ENOMEM);
    size_t *hcount = hoff + n, *hstart = hcount + nh;
    *l = (dt__hier_layout){.hoff = hoff, .hcount = hcount, .hstart = hstart, .lcount = hstart + nh};
    l->lptr = (void **)(l->lcount + m);
    l->hptr = l->lptr + m;
    for (int k = 0; k < h->nhosts; k++) hcount[k] = 0;
    for (int j = 0; j < h->size; j++) hcount[h->host[j]] += counts[j];
    size_t total = 0;
    for (int k = 0; k < h->nhosts; k++) {
        hstart[k] = total;
        total += hcount[k];
    }
    for (int k = 0; k < h->nhosts; k++) hcount[k] = 0; /* now: filled so far */
    for (int j = 0; j < h->size; j++) {
        int k = h->host[j];
        hoff[j] = hstart[k] + hcount[k];
        hcount[k] += counts[j];
    }
    l->total = total;
    return 0;
}

bool dt__hier_in_layout(const dt__hier *h, const void *const *ptrs, const size_t *counts, const size_t *hoff, size_t esz,
                        char **base)
{
    *base = NULL;
    for (int j = 0; j < h->size; j++) {
        if (!counts[j]) continue;
        if (!*base) *base = (char *)ptrs[j] - hoff[j] * esz;
        if ((const char *)ptrs[j] != *base + hoff[j] * esz) return false;
    }
    return *base != NULL;
}

/* Make component p over ranks (group ranks, ascending; ranks NULL: every rank,
 * numbered as the group). A rank not listed leaves p->ops NULL. */
static int part_make(dt__hier *h, dt__hier_part *p, const dt__backend_ops *ops, const char *key, const int *ranks,
                     int n, const char *what, int64_t timeout_ms)
{
    p->what = what;
    p->size = n;
    p->rank = ranks ? -1 : h->rank;
    if (ranks) {
        p->ranks = dt_alloc((size_t)n * sizeof(int), DT_MEM_COMM);
        if (!p->ranks) return DT_ENOMEM;
        memcpy(p->ranks, ranks, (size_t)n * sizeof(int));
        for (int i = 0; i < n; i++)
            if (ranks[i] == h->rank) p->rank = i;
    }
    if (p->rank < 0) return 0;
    p->store = dt_store_prefix(h->store, key);
    if (!p->store) return dt_last_error_code();
    dt__backend_init in = {.store = p->store, .rank = p->rank, .size = n, .group_name = h->group,
                           .timeout_ms = timeout_ms};
    int rc = ops->create(&in, &p->be);
    if (rc < 0) return dt_error_wrap(rc, "hier: making its %s component (%d ranks)", what, n);
    p->ops = ops;
    return 0;
}

static void part_free(dt__hier_part *p)
{
    if (p->ops) p->ops->destroy(p->be);
    dt_store_release(p->store);
    dt_free(p->ranks);
    memset(p, 0, sizeof *p);
}

static void hier_destroy(void *state)
{
    dt__hier *h = state;
    if (!h) return;
    part_free(&h->solo);
    part_free(&h->flat);
    part_free(&h->local);
    part_free(&h->lead);
    part_free(&h->cross);
    dt_free(h->host);
    dt_free(h->leader);
    dt_free(h->pid);
    dt_free(h->tmp);
    dt_free(h);
}

/* Every rank's (pid, host identity) through the store: host indices by lowest rank. */
static int find_hosts(dt__hier *h)
{
    char me[480], key[64];
    int len = snprintf(me, sizeof me, "%d ", (int)getpid());
    dt__host_id(me + len, sizeof me - (size_t)len);
    snprintf(key, sizeof key, "hier/peer/%d", h->rank);
    DT_CHECK(dt_store_set(h->store, key, me, strlen(me)));
    char **ids = dt_calloc((size_t)h->size, sizeof *ids, DT_MEM_COMM);
    if (!ids) return DT_ENOMEM;
    int rc = 0;
    h->nhosts = 0;
    for (int r = 0; r < h->size && rc == 0; r++) {
        void *v = NULL;
        size_t vlen = 0;
        snprintf(key, sizeof key, "hier/peer/%d", r);
        rc = dt_store_get(h->store, key, &v, &vlen);
        if (rc < 0) {
            dt_error_wrap(rc, "hier: rank %d did not publish its host", r);
            break;
        }
        ids[r] = dt_alloc(vlen + 1, DT_MEM_COMM);
        if (!ids[r]) {
            dt_free(v);
            rc = DT_ENOMEM;
            break;
        }
        memcpy(ids[r], v, vlen);
        ids[r][vlen] = '\0';
        dt_free(v);
        h->pid[r] = (pid_t)strtol(ids[r], NULL, 10);
        const char *host = strchr(ids[r], ' ');
        host = host ? host + 1 : "";
        h->host[r] = -1;
        for (int q = 0; q < r && h->host[r] < 0; q++) {
            const char *qh = strchr(ids[q], ' ');
            if (qh && strcmp(qh + 1, host) == 0) h->host[r] = h->host[q];
        }
        if (h->host[r] < 0) h->leader[h->host[r] = h->nhosts++] = r;
    }
    for (int r = 0; r < h->size; r++) dt_free(ids[r]);
    dt_free(ids);
    if (rc == 0) h->my_host = h->host[h->rank];
    return rc;
}

/* The slice all_reduce's components (DTRAIN_HIER_ALLREDUCE=slice, equal
 * hosts): this rank's cross group, the local rank j of every host. */
static int make_cross(dt__hier *h, int nlocal, int64_t timeout_ms)
{
    const char *algo = dt_param_str(DT_PARAM_HIER_ALLREDUCE);
    if (strcmp(algo, "slice") != 0) {
        if (strcmp(algo, "leader") != 0) DT_LOGW(DIST, "DTRAIN_HIER_ALLREDUCE=%s: not leader or slice; using leader", algo);
        return 0;
    }
    for (int k = 0; k < h->nhosts; k++) {
        int m = 0;
        for (int r = 0; r < h->size; r++) m += h->host[r] == k;
        if (m != nlocal) {
            DT_LOGI(DIST, "group '%s': hosts with different numbers of ranks: all_reduce by leader, not slice", h->group);
            return 0;
        }
    }
    if (h->local.rank == 0) {
        h->slice = &h->lead;
        return 0;
    }
    /* ranks[k] = the group rank of host k's local rank j */
    int j = h->local.rank, *ranks = dt_calloc(2 * (size_t)h->nhosts, sizeof(int), DT_MEM_COMM);
    if (!ranks) return DT_ENOMEM;
    int *seen = ranks + h->nhosts; /* ranks of host k met so far */
    for (int r = 0; r < h->size; r++)
        if (seen[h->host[r]]++ == j) ranks[h->host[r]] = r;
    char key[48];
    snprintf(key, sizeof key, "hier/cross%d", j);
    int rc = part_make(h, &h->cross, &dt__backend_tcp, key, ranks, h->nhosts, "tcp among the hosts' slice ranks",
                       timeout_ms);
    dt_free(ranks);
    if (rc == 0) h->slice = &h->cross;
    return rc;
}

static int hier_create(const dt__backend_init *init, void **state)
{
    dt__hier *h = dt_calloc(1, sizeof *h, DT_MEM_COMM);
    if (!h) return DT_ENOMEM;
    h->rank = init->rank;
    h->size = init->size;
    h->store = init->store;
    h->op = "init";
    snprintf(h->group, sizeof h->group, "%s", init->group_name);
    int rc = 0, *ranks = NULL;
    h->host = dt_alloc((size_t)h->size * sizeof(int), DT_MEM_COMM);
    h->leader = dt_alloc((size_t)h->size * sizeof(int), DT_MEM_COMM);
    h->pid = dt_calloc((size_t)h->size, sizeof(pid_t), DT_MEM_COMM);
    ranks = dt_alloc((size_t)h->size * sizeof(int), DT_MEM_COMM);
    if (!h->host || !h->leader || !h->pid || !ranks) {
        rc = DT_ENOMEM;
        goto fail;
    }
    DT_CHECK_GOTO(find_hosts(h), rc, fail);
    int nlocal = 0;
    for (int r = 0; r < h->size; r++)
        if (h->host[r] == h->my_host) ranks[nlocal++] = r;
    if (h->nhosts == 1 || h->nhosts == h->size) {
        /* pass-through: ranks numbered as the group's */
        bool one = h->nhosts == 1;
        DT_CHECK_GOTO(part_make(h, &h->solo, one ? &dt__backend_shm : &dt__backend_tcp, "hier/solo", NULL, h->size,
                                one ? "shm" : "tcp", init->timeout_ms),
                      rc, fail);
        snprintf(h->desc, sizeof h->desc, "hier: %s only (%s)", one ? "shm" : "tcp",
                 one ? "every rank on one host" : "one rank per host");
    } else {
        char key[48];
        DT_CHECK_GOTO(part_make(h, &h->flat, &dt__backend_tcp, "hier/flat", NULL, h->size, "flat tcp", init->timeout_ms),
                      rc, fail);
        snprintf(key, sizeof key, "hier/local%d", h->leader[h->my_host]);
        DT_CHECK_GOTO(part_make(h, &h->local, &dt__backend_shm, key, ranks, nlocal, "shm on this host",
                                init->timeout_ms),
                      rc, fail);
        DT_CHECK_GOTO(part_make(h, &h->lead, &dt__backend_tcp, "hier/lead", h->leader, h->nhosts,
                                "tcp among host leaders", init->timeout_ms),
                      rc, fail);
        DT_CHECK_GOTO(make_cross(h, nlocal, init->timeout_ms), rc, fail);
        int len = snprintf(h->desc, sizeof h->desc, "hier: %d hosts (ranks per host:", h->nhosts);
        for (int k = 0; k < h->nhosts && len > 0 && (size_t)len + 12 < sizeof h->desc; k++) {
            int m = 0;
            for (int r = 0; r < h->size; r++) m += h->host[r] == k;
            len += snprintf(h->desc + len, sizeof h->desc - (size_t)len, " %d", m);
        }
        if (len > 0 && (size_t)len < sizeof h->desc)
            snprintf(h->desc + len, sizeof h->desc - (size_t)len,
                     "), shm within a host, tcp among leaders%s, flat tcp for the other ops",
                     h->slice ? ", all_reduce by slices" : "");
    }
    dt_free(ranks);
    DT_LOGI(DIST, "group '%s': %s", h->group, h->desc);
    *state = h;
    return 0;
fail:
    dt_free(ranks);
    hier_destroy(h);
    return rc;
}

static void hier_abort(void *state)
{
    dt__hier *h = state;
    if (h->solo.ops) {
        h->solo.ops->abort(h->solo.be);
        return;
    }
    char msg[128];
    snprintf(msg, sizeof msg, "rank %d aborted group '%s'", h->rank, h->group);
    if (record(h, DT_EABORTED, msg)) publish(h);
    abort_parts(h);
}

/* ------------------------------------------------------------ the ops */

/* An op over the flat component (the ops without a hierarchical algorithm). */
static int flat_coll(void *state, const dt__coll *c)
{
    return dt__hier_sub(state, &((dt__hier *)state)->flat, *c, true);
}

#define DT__HIER_OP(name, fn)                                                   \
    static int name(void *state, const dt__coll *c)                            \
    {                                                                          \
        dt__hier *h = state;                                                   \
        if (h->solo.ops) return h->solo.ops->coll[c->kind](h->solo.be, c);     \
        h->op = dt__op_name(c->kind);                                          \
        h->seq = c->seq;                                                       \
        return fn(h, c);                                                       \
    }
DT__HIER_OP(op_allreduce, dt__hier_allreduce)
DT__HIER_OP(op_allgather, dt__hier_allgather)
DT__HIER_OP(op_reduce_scatter, dt__hier_reduce_scatter)
DT__HIER_OP(op_broadcast, dt__hier_broadcast)
DT__HIER_OP(op_barrier, dt__hier_barrier)
DT__HIER_OP(op_flat, flat_coll)

static int op_p2p(void *state, dt__p2p *const *ops, int nops, int64_t deadline_ns, _Atomic int *kick)
{
    dt__hier *h = state;
    if (h->solo.ops) return h->solo.ops->p2p(h->solo.be, ops, nops, deadline_ns, kick);
    DT_CHECK(dt__hier_check(h));
    h->op = "send/recv";
    h->entry = true;
    int rc = h->flat.ops->p2p(h->flat.be, ops, nops, deadline_ns, kick);
    return rc < 0 ? dt__hier_fail(h, &h->flat, rc) : rc;
}

static void op_p2p_kick(void *state)
{
    dt__hier *h = state;
    dt__hier_part *p = h->solo.ops ? &h->solo : &h->flat;
    if (p->ops && p->ops->p2p_kick) p->ops->p2p_kick(p->be);
}

static void *op_alloc(void *state, size_t bytes)
{
    dt__hier *h = state;
    if (h->solo.ops && h->solo.ops->alloc) return h->solo.ops->alloc(h->solo.be, bytes);
    dt_set_error(DT_EUNSUPPORTED, "dt_pg_alloc: backend hier (%s) has no shared buffers", h->desc);
    return NULL;
}

static void op_free(void *state, void *p)
{
    dt__hier *h = state;
    if (h->solo.ops && h->solo.ops->free) h->solo.ops->free(h->solo.be, p);
}

static const char *op_describe(void *state) { return ((dt__hier *)state)->desc; }

const dt__backend_ops dt__backend_hier = {
    .name = "hier",
    .create = hier_create,
    .destroy = hier_destroy,
    .abort = hier_abort,
    .coll = {
        [DT__OP_ALLREDUCE] = op_allreduce,
        [DT__OP_BROADCAST] = op_broadcast,
        [DT__OP_REDUCE] = op_allreduce,
        [DT__OP_ALLGATHER] = op_allgather,
        [DT__OP_GATHER] = op_flat,
        [DT__OP_SCATTER] = op_flat,
        [DT__OP_REDUCE_SCATTER] = op_reduce_scatter,
        [DT__OP_ALLTOALL] = op_flat,
        [DT__OP_BARRIER] = op_barrier,
    },
    .p2p = op_p2p,
    .p2p_kick = op_p2p_kick,
    .alloc = op_alloc,
    .free = op_free,
    .describe = op_describe,
};
