/* all_reduce and reduce across hosts (hier.h): every host reduces its ranks'
 * inputs onto its leader over shm, the leaders reduce their hosts' partial
 * results over tcp (all_reduce: all of them receive it; reduce: the leader of
 * root's host), and then
 *   all_reduce  each leader broadcasts the result over shm to its host;
 *   reduce      a root that is not its host's leader gets it from the leader
 *               (one shm message).
 * Levels and their reductions (op1 on a host, op2 between hosts):
 *   SUM, PRODUCT, MIN, MAX, BAND, BOR, BXOR   op at both levels
 *   AVG          SUM, SUM; the leader divides by the group size once, at the end
 *   PREMUL_SUM   PREMUL_SUM (each input scaled once), then SUM
 * bf16/f16 are widened to f32 in a scratch buffer on every rank, reduced in
 * f32 at both levels and rounded once by the leader before the broadcast,
 * so they round once, as on one backend.
 * Why a reduce to one leader and not a reduce-scatter inside the host with
 * one inter-host all_reduce per local slice: see docs/tcp.md (the leader's
 * link carries the same bytes either way; the slices would need one tcp
 * group per local rank and equal ranks per host). */
#include "dist/backend/hier/hier.h"

#include <string.h>

/* x (count f32 or f64) /= n, as the reduction kernels do for AVG */
static void divide(void *x, size_t count, dt_dtype wt, int n)
{
    if (wt == DT_F64) {
        double *d = x, div = (double)n;
        for (size_t i = 0; i < count; i++) d[i] /= div;
    } else {
        float *f = x, div = (float)n;
        for (size_t i = 0; i < count; i++) f[i] /= div;
    }
}

static void widen(float *out, const uint16_t *in, size_t count, dt_dtype dtype)
{
    if (dtype == DT_BF16)
        for (size_t i = 0; i < count; i++) out[i] = dt_bf16_to_f32(in[i]);
    else
        for (size_t i = 0; i < count; i++) out[i] = dt_f16_to_f32(in[i]);
}

/* out may be the same memory as in: element i is read before out[i] (at half
 * the offset) is written. */
static void narrow(uint16_t *out, const float *in, size_t count, dt_dtype dtype)
{
    if (dtype == DT_BF16)
        for (size_t i = 0; i < count; i++) {
            float v = in[i];
            out[i] = dt_f32_to_bf16(v);
        }
    else
        for (size_t i = 0; i < count; i++) {
            float v = in[i];
            out[i] = dt_f32_to_f16(v);
        }
}

int dt__hier_allreduce(dt__hier *h, const dt__coll *c)
{
    DT_CHECK(dt__hier_check(h));
    bool reduce = c->kind == DT__OP_REDUCE, leader = h->local.rank == 0;
    bool wide = c->dtype == DT_BF16 || c->dtype == DT_F16;
    dt_dtype wt = wide ? DT_F32 : c->dtype;
    size_t count = c->count, esz = dt_dtype_size(c->dtype);
    dt_redop op1 = c->redop == DT_RED_AVG ? DT_RED_SUM : c->redop;
    dt_redop op2 = c->redop == DT_RED_AVG || c->redop == DT_RED_PREMUL_SUM ? DT_RED_SUM : c->redop;
    int root_host = reduce ? h->host[c->root] : -1;
    bool final_here = leader && (!reduce || root_host == h->my_host); /* this leader ends with the result */
    /* in: this rank's input (in wt); acc: the leader's partial, then the result */
    const void *in = c->send;
    void *acc = NULL;
    if (wide) {
        float *t = dt__hier_tmp(h, count * sizeof(float));
        if (!t && count) return dt__hier_fail(h, NULL, DT_ENOMEM);
        if (count) widen(t, c->send, count, c->dtype);
        in = t;
        acc = leader ? t : NULL;
    } else if (leader) {
        if (!reduce || c->root == h->rank) acc = c->recv;
        else if (!(acc = dt__hier_tmp(h, count * esz)) && count) return dt__hier_fail(h, NULL, DT_ENOMEM);
    }
    /* 1. host level: onto the leader */
    dt__coll s = {.kind = DT__OP_REDUCE, .dtype = wt, .redop = op1, .premul = c->premul, .root = 0, .send = in,
                  .recv = acc, .count = count, .deadline_ns = c->deadline_ns};
    DT_CHECK(dt__hier_sub(h, &h->local, s));
    /* 2. between hosts: the leaders, in place */
    if (leader) {
        dt__coll t = {.kind = reduce ? DT__OP_REDUCE : DT__OP_ALLREDUCE, .dtype = wt, .redop = op2, .premul = 1.0,
                      .root = reduce ? root_host : 0, .send = acc, .recv = final_here ? acc : NULL, .count = count,
                      .deadline_ns = c->deadline_ns};
        DT_CHECK(dt__hier_sub(h, &h->lead, t));
    }
    /* 3. the leader finishes the result: the one division of AVG, the one rounding of the halves */
    void *out = acc;
    if (final_here && count) {
        if (c->redop == DT_RED_AVG) divide(acc, count, wt, h->size);
        if (wide) {
            out = reduce && c->root != h->rank ? acc : c->recv;
            narrow(out, acc, count, c->dtype);
        }
    }
    /* 4. to the ranks of the host that need it */
    if (!reduce) {
        dt__coll b = {.kind = DT__OP_BROADCAST, .dtype = c->dtype, .root = 0, .recv = c->recv, .count = count,
                      .deadline_ns = c->deadline_ns};
        return dt__hier_sub(h, &h->local, b);
    }
    if (root_host != h->my_host || h->leader[h->my_host] == c->root) return 0;
    if (leader) {
        int root_local = -1;
        for (int i = 0; i < h->local.size; i++)
            if (h->local.ranks[i] == c->root) root_local = i;
        return dt__hier_sub_p2p(h, &h->local, DT_P2P_SEND, out, count * esz, root_local, c->deadline_ns);
    }
    if (h->rank == c->root) return dt__hier_sub_p2p(h, &h->local, DT_P2P_RECV, c->recv, count * esz, 0, c->deadline_ns);
    return 0;
}
