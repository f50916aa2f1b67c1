/* broadcast and barrier across hosts (hier.h). The other gathering ops
 * (all_gather, gather, scatter, all_to_all) and reduce_scatter run over the
 * flat tcp component (hier.c).
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
