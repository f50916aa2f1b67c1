/* DTRAIN_DEBUG=DETAIL: before each collective every rank publishes its
 * fingerprint (sequence number, op, dtype, count or a hash of the count
 * lists, reduction, root) in the store under detail/<seq>/<rank>, reads every
 * other rank's, and fails with DT_EMISMATCH naming the first rank that
 * differs and how, so a mismatched call is reported instead of hanging or
 * corrupting memory. The last rank to read a sequence number's keys deletes
 * them. Works the same over any backend; costs store round trips, so it is a
 * debugging mode (the shm backend's own header check is always on). */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    uint64_t seq;
    uint32_t kind, dtype, redop;
    int32_t root;
    uint64_t count;
} fingerprint;

static uint64_t counts_fp(const size_t *counts, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; counts && i < n; i++) h = (h ^ (uint64_t)counts[i]) * 1099511628211ull;
    return h;
}

static void make(const dt_pg *pg, const dt__coll *c, fingerprint *f)
{
    memset(f, 0, sizeof *f);
    f->seq = c->seq;
    f->kind = (uint32_t)c->kind;
    f->dtype = (uint32_t)c->dtype;
    bool red = c->kind == DT__OP_ALLREDUCE || c->kind == DT__OP_REDUCE || c->kind == DT__OP_REDUCE_SCATTER;
    f->redop = red ? (uint32_t)c->redop : 0;
    bool rooted = c->kind == DT__OP_BROADCAST || c->kind == DT__OP_REDUCE || c->kind == DT__OP_GATHER ||
                  c->kind == DT__OP_SCATTER;
    f->root = rooted ? c->root : -1;
    switch (c->kind) {
    case DT__OP_ALLREDUCE: case DT__OP_BROADCAST: case DT__OP_REDUCE: f->count = c->count; break;
    case DT__OP_ALLGATHER: case DT__OP_GATHER: case DT__OP_REDUCE_SCATTER:
        f->count = counts_fp(c->recv_counts, pg->size);
        break;
    case DT__OP_SCATTER: f->count = counts_fp(c->send_counts, pg->size); break;
    default: f->count = 0; break;
    }
}

static void describe(const fingerprint *f, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s #%llu (%s", f->kind < DT__OP_COUNT ? dt__op_name((dt__op_kind)f->kind) : "?",
                     (unsigned long long)f->seq, dt_dtype_name((dt_dtype)f->dtype));
    if (n < 0 || (size_t)n >= cap) return;
    if (f->kind <= DT__OP_REDUCE) n += snprintf(buf + n, cap - (size_t)n, ", count %llu", (unsigned long long)f->count);
    else if (f->count) n += snprintf(buf + n, cap - (size_t)n, ", counts hash %08llx", (unsigned long long)(f->count & 0xffffffffu));
    bool red = f->kind == DT__OP_ALLREDUCE || f->kind == DT__OP_REDUCE || f->kind == DT__OP_REDUCE_SCATTER;
    if ((size_t)n < cap && red) n += snprintf(buf + n, cap - (size_t)n, ", %s", dt_redop_name((dt_redop)f->redop));
    if ((size_t)n < cap && f->root >= 0) n += snprintf(buf + n, cap - (size_t)n, ", root %d", f->root);
    if ((size_t)n < cap) snprintf(buf + n, cap - (size_t)n, ")");
}

static int check_locked(dt_pg *pg, const dt__coll *c)
{
    fingerprint mine, theirs;
    make(pg, c, &mine);
    char key[96];
    snprintf(key, sizeof key, "detail/%llu/%d", (unsigned long long)c->seq, pg->rank);
    DT_CHECK(dt_store_set(pg->store, key, &mine, sizeof mine));
    int64_t saved = dt_store_timeout(pg->store);
    int rc = 0;
    for (int j = 0; j < pg->size && rc == 0; j++) {
        if (j == pg->rank) continue;
        snprintf(key, sizeof key, "detail/%llu/%d", (unsigned long long)c->seq, j);
        void *v = NULL;
        size_t len = 0;
        int64_t left = dt_ms_left(c->deadline_ns);
        dt_store_set_timeout(pg->store, left < 0 ? saved : left);
        rc = dt_store_get(pg->store, key, &v, &len);
        if (rc < 0) {
            rc = dt_error_wrap(rc, "DTRAIN_DEBUG=DETAIL: rank %d did not reach %s #%llu; ranks that did not take part: %d", j,
                               dt__op_name(c->kind), (unsigned long long)c->seq, j);
            break;
        }
        if (len != sizeof theirs) {
            dt_free(v);
            rc = dt_set_error(DT_ECORRUPT, "DTRAIN_DEBUG=DETAIL: rank %d's fingerprint has %zu bytes", j, len);
            break;
        }
        memcpy(&theirs, v, sizeof theirs);
        dt_free(v);
        if (memcmp(&theirs, &mine, sizeof mine) != 0) {
            char a[200], b[200];
            describe(&theirs, a, sizeof a);
            describe(&mine, b, sizeof b);
            char what[64] = "";
            if (theirs.seq != mine.seq) strcat(what, ", sequence number");
            if (theirs.kind != mine.kind) strcat(what, ", op");
            else {
                if (theirs.dtype != mine.dtype) strcat(what, ", dtype");
                if (theirs.count != mine.count) strcat(what, ", count");
                if (theirs.redop != mine.redop) strcat(what, ", reduction");
                if (theirs.root != mine.root) strcat(what, ", root");
            }
            rc = dt_set_error(DT_EMISMATCH, "DTRAIN_DEBUG=DETAIL: rank %d called %s while rank %d called %s (%s differ%s)",
                              j, a, pg->rank, b, what[0] ? what + 2 : "arguments", what[0] && !strchr(what + 2, ',') ? "s" : "");
        }
    }
    dt_store_set_timeout(pg->store, saved);
    if (rc < 0) return rc;
    char ckey[96];
    snprintf(ckey, sizeof ckey, "detail/%llu/read", (unsigned long long)c->seq);
    int64_t readers = 0;
    DT_CHECK(dt_store_add(pg->store, ckey, 1, &readers));
    if (readers == pg->size) {
        for (int j = 0; j < pg->size; j++) {
            snprintf(key, sizeof key, "detail/%llu/%d", (unsigned long long)c->seq, j);
            dt_store_delete(pg->store, key, NULL);
        }
        dt_store_delete(pg->store, ckey, NULL);
    }
    return 0;
}

int dt__detail_check(dt_pg *pg, const dt__coll *c)
{
    if (pg->size == 1) return 0;
    pthread_mutex_lock(&dt__store_mu);
    int rc = check_locked(pg, c);
    pthread_mutex_unlock(&dt__store_mu);
    return rc;
}
