/* all_gather, broadcast and barrier across hosts (hier.h). The other
 * gathering ops (gather, scatter, all_to_all) run over the flat tcp
 * component (hier.c).
 *
 * all_gather, with the blocks laid out host by host (dt__hier_layout_make) in H:
 * the caller's output where it is one buffer already in that order (ranks of
 * a host consecutive, as a launcher numbers them), else a scratch;
 *   1. shm gather of the host's blocks onto its leader, into H;
 *   2. tcp all_gather among the leaders, host k's run of H from leader k;
 *   3. shm broadcast of H from the leader;
 *   4. where H is a scratch, every rank copies the blocks out into its output.
 * Between hosts each block crosses once per host instead of once per rank
 * (the flat all_gather sends every block to every rank).
 *
 * broadcast from root on host R:
 *   on R, if root is not R's leader: shm broadcast from root (the leader has it);
 *   every leader: tcp broadcast from R's leader;
 *   on the other hosts, and on R when root is its leader: shm broadcast from
 *   the leader.
 * Each host's shm component runs exactly one broadcast, the leaders one tcp one.
 *
 * barrier: shm barrier (everyone on the host arrived), tcp barrier among the
 * leaders (every host did), shm barrier (tell the host). */
#include "dist/backend/hier/hier.h"

#include <string.h>

int dt__hier_allgather(dt__hier *h, const dt__coll *c)
{
    DT_CHECK(dt__hier_check(h));
    int n = h->size, m = h->local.size, nh = h->nhosts;
    size_t esz = dt_dtype_size(c->dtype);
    dt__hier_layout l;
    DT_CHECK(dt__hier_layout_make(h, c->recv_counts, &l));
    size_t *hoff = l.hoff, *hcount = l.hcount, *hstart = l.hstart, *lcount = l.lcount, total = l.total;
    void **lrecv = l.lptr, **hrecv = l.hptr;
    char *buf;
    bool direct = dt__hier_in_layout(h, (const void *const *)c->recvv, c->recv_counts, hoff, esz, &buf);
    if (!direct && !(buf = dt__hier_tmp(h, total * esz + 1))) {
        dt_free(hoff);
        return dt__hier_fail(h, NULL, DT_ENOMEM);
    }
    for (int i = 0; i < m; i++) {
        int j = h->local.ranks[i];
        lcount[i] = c->recv_counts[j];
        lrecv[i] = buf + hoff[j] * esz;
    }
    for (int k = 0; k < nh; k++) hrecv[k] = buf + hstart[k] * esz;
    /* 1. this host's blocks onto the leader */
    dt__coll g = {.kind = DT__OP_GATHER, .dtype = c->dtype, .root = 0, .send = c->send, .recvv = (void *const *)lrecv,
                  .recv_counts = lcount, .deadline_ns = c->deadline_ns};
    int rc = dt__hier_sub(h, &h->local, g, true);
    /* 2. the hosts' runs among the leaders, ours in place */
    if (rc == 0 && h->local.rank == 0) {
        dt__coll a = {.kind = DT__OP_ALLGATHER, .dtype = c->dtype, .send = hrecv[h->my_host],
                      .recvv = (void *const *)hrecv, .recv_counts = hcount, .deadline_ns = c->deadline_ns};
        rc = dt__hier_sub(h, &h->lead, a, false);
    }
    /* 3. everything to the host */
    dt__coll b = {.kind = DT__OP_BROADCAST, .dtype = c->dtype, .root = 0, .recv = buf, .count = total,
                  .deadline_ns = c->deadline_ns};
    if (rc == 0) rc = dt__hier_sub(h, &h->local, b, false);
    /* 4. out of the scratch */
    if (rc == 0 && !direct)
        for (int j = 0; j < n; j++)
            if (c->recv_counts[j]) memcpy(c->recvv[j], buf + hoff[j] * esz, c->recv_counts[j] * esz);
    dt_free(hoff);
    return rc;
}

int dt__hier_broadcast(dt__hier *h, const dt__coll *c)
{
    DT_CHECK(dt__hier_check(h));
    bool leader = h->local.rank == 0;
    int root_host = h->host[c->root];
    bool root_leads = h->leader[root_host] == c->root;
    dt__coll s = {.kind = DT__OP_BROADCAST, .dtype = c->dtype, .root = 0, .recv = c->recv, .count = c->count,
                  .deadline_ns = c->deadline_ns};
    if (root_host == h->my_host && !root_leads) {
        for (int i = 0; i < h->local.size; i++)
            if (h->local.ranks[i] == c->root) s.root = i;
        DT_CHECK(dt__hier_sub(h, &h->local, s, true));
    }
    if (leader) {
        dt__coll t = s;
        t.root = root_host;
        DT_CHECK(dt__hier_sub(h, &h->lead, t, root_leads)); /* every leader's first when root leads */
    }
    if (root_host == h->my_host && !root_leads) return 0;
    s.root = 0;
    return dt__hier_sub(h, &h->local, s, false);
}

int dt__hier_barrier(dt__hier *h, const dt__coll *c)
{
    DT_CHECK(dt__hier_check(h));
    dt__coll b = {.kind = DT__OP_BARRIER, .dtype = DT_U8, .deadline_ns = c->deadline_ns};
    DT_CHECK(dt__hier_sub(h, &h->local, b, true));
    if (h->local.rank == 0) DT_CHECK(dt__hier_sub(h, &h->lead, b, false));
    return dt__hier_sub(h, &h->local, b, false);
}
