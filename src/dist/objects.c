/* Collectives built from the others: byte-string broadcast and all_gather
 * (lengths first, then the bytes), and monitored_barrier, which goes through
 * the store so rank 0 can name exactly the ranks that did not arrive. */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <string.h>

int dt_pg_broadcast_bytes(dt_pg *pg, void **data, size_t *len, int root, const dt_op_opts *o)
{
    DT_CHECK(dt__pg_usable(pg, "broadcast_bytes"));
    if (!data || !len) return dt_set_error(DT_EINVAL, "broadcast_bytes: NULL data or len");
    int64_t n = pg->rank == root ? (int64_t)*len : 0;
    DT_CHECK(dt_pg_broadcast(pg, &n, 1, DT_I64, root, o, NULL));
    if (pg->rank == root) return dt_pg_broadcast(pg, *data, (size_t)n, DT_U8, root, o, NULL);
    void *buf = dt_alloc(n ? (size_t)n : 1, DT_MEM_COMM);
    if (!buf) return DT_ENOMEM;
    int rc = dt_pg_broadcast(pg, buf, (size_t)n, DT_U8, root, o, NULL);
    if (rc < 0) {
        dt_free(buf);
        return rc;
    }
    *data = buf;
    *len = (size_t)n;
    return 0;
}

int dt_pg_allgather_bytes(dt_pg *pg, const void *data, size_t len, dt_bytes **out, const dt_op_opts *o)
{
    DT_CHECK(dt__pg_usable(pg, "allgather_bytes"));
    if (!out || (len && !data)) return dt_set_error(DT_EINVAL, "allgather_bytes: NULL out or data");
    int n = pg->size;
    int64_t mine = (int64_t)len;
    int64_t *lens = dt_alloc((size_t)n * sizeof *lens, DT_MEM_COMM);
    size_t *counts = dt_alloc((size_t)n * sizeof *counts, DT_MEM_COMM);
    dt_bytes *res = NULL;
    int rc = DT_ENOMEM;
    if (!lens || !counts) goto done;
    DT_CHECK_GOTO(dt_pg_allgather(pg, &mine, lens, 1, DT_I64, o, NULL), rc, done);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        counts[i] = (size_t)lens[i];
        total += counts[i];
    }
    res = dt_alloc((size_t)n * sizeof *res + total + 1, DT_MEM_COMM);
    if (!res) {
        rc = DT_ENOMEM;
        goto done;
    }
    char *bytes = (char *)(res + n);
    DT_CHECK_GOTO(dt_pg_allgatherv(pg, data, len, bytes, counts, DT_U8, o, NULL), rc, done);
    for (int i = 0; i < n; i++) {
        res[i].data = bytes;
        res[i].len = counts[i];
        bytes += counts[i];
    }
    *out = res;
    res = NULL;
    rc = 0;
done:
    dt_free(res);
    dt_free(lens);
    dt_free(counts);
    return rc;
}

static int monitored_locked(dt_pg *pg, uint64_t seq, int64_t timeout_ms, bool wait_all)
{
    char key[96], done[96], msg[DT__MSG_CAP] = "";
    snprintf(done, sizeof done, "mb/%llu/done", (unsigned long long)seq);
    int64_t saved = dt_store_timeout(pg->store);
    int rc = 0;
    if (pg->rank != 0) {
        snprintf(key, sizeof key, "mb/%llu/%d", (unsigned long long)seq, pg->rank);
        DT_CHECK(dt_store_set(pg->store, key, "1", 1));
        /* rank 0 answers within its own timeout; allow it that and a margin */
        dt_store_set_timeout(pg->store, timeout_ms + 5000);
        void *v = NULL;
        size_t len = 0;
        rc = dt_store_get(pg->store, done, &v, &len);
        dt_store_set_timeout(pg->store, saved);
        if (rc < 0) return dt_error_wrap(rc, "monitored_barrier on group '%s': no verdict from rank 0", pg->name);
        if (len) snprintf(msg, sizeof msg, "%.*s", (int)len, (char *)v);
        dt_free(v);
        int64_t readers = 0;
        if (dt_store_add(pg->store, "mb/read", 1, &readers) == 0 && readers % (pg->size - 1) == 0)
            dt_store_delete(pg->store, done, NULL);
        if (msg[0]) return dt_set_error(DT_ETIMEOUT, "monitored_barrier on group '%s': %s", pg->name, msg);
        return 0;
    }
    int64_t deadline = dt_deadline_ns(timeout_ms);
    size_t n = 0;
    for (int r = 1; r < pg->size; r++) {
        snprintf(key, sizeof key, "mb/%llu/%d", (unsigned long long)seq, r);
        const char *keys[1] = {key};
        int64_t left = dt_ms_left(deadline);
        if (dt_store_wait(pg->store, keys, 1, left < 0 ? saved : left) < 0) {
            if (!n) n = (size_t)snprintf(msg, sizeof msg, "rank 0 timed out after %lld ms; ranks that did not arrive: ", (long long)timeout_ms);
            if (n < sizeof msg) n += (size_t)snprintf(msg + n, sizeof msg - n, "%s%d", msg[n - 2] == ':' ? "" : ", ", r);
            if (!wait_all) break;
            continue;
        }
        dt_store_delete(pg->store, key, NULL);
    }
    DT_CHECK(dt_store_set(pg->store, done, msg, strlen(msg)));
    if (msg[0]) return dt_set_error(DT_ETIMEOUT, "monitored_barrier on group '%s': %s", pg->name, msg);
    return 0;
}

int dt_pg_monitored_barrier(dt_pg *pg, int64_t timeout_ms, bool wait_all_ranks)
{
    DT_CHECK(dt__pg_usable(pg, "monitored_barrier"));
    if (timeout_ms < 0) timeout_ms = pg->timeout_ms;
    uint64_t seq = dt__pg_take_seq(pg);
    if (pg->size == 1) return 0;
    pthread_mutex_lock(&dt__store_mu);
    int rc = monitored_locked(pg, seq, timeout_ms, wait_all_ranks);
    pthread_mutex_unlock(&dt__store_mu);
    return rc;
}
