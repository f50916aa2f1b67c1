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
 * all_reduce can also go by slices (DTRAIN_HIER_ALLREDUCE=slice, below);
 * docs/tcp.md says why leader is the default.
 *
 * reduce_scatter, with the blocks laid out host by host (dt__hier_layout_make):
 *   1. shm reduce of the whole input onto the leader (widened, op1);
 *   2. tcp reduce_scatter among the leaders: leader k gets host k's run (op2);
 *   3. the leader divides (AVG) and rounds (halves) its host's run;
 *   4. shm scatter of the run's blocks to the host's ranks.
 * The same order and roundings as all_reduce, so the blocks have the bits of
 * the matching slices of a hierarchical all_reduce. Between hosts each
 * element crosses once per host pair instead of once per rank pair. */
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

/* all_reduce by slices (DTRAIN_HIER_ALLREDUCE=slice): the elements are cut
 * into m slices, one per local rank (slice i: cnt[i] elements at off[i]);
 *   1. shm reduce_scatter: local rank j gets its host's reduction of slice j;
 *   2. tcp all_reduce of slice j among the local ranks j of every host (h->slice);
 *   3. AVG's division and the halves' rounding, on slice j;
 *   4. shm all_gather of the slices into every rank's recv.
 * Each element is reduced in the same order as by the leader algorithm (its
 * host's ranks in rank order, then the hosts in order), so the bits are the same. */
static int allreduce_slices(dt__hier *h, const dt__coll *c, bool wide, dt_dtype wt, dt_redop op1, dt_redop op2)
{
    int m = h->local.size, j = h->local.rank;
    size_t count = c->count, esz = dt_dtype_size(c->dtype), wsz = dt_dtype_size(wt), maxc = count / (size_t)m + 1;
    /* scratch: the widened input (wide only), then the reduced slice */
    char *t = dt__hier_tmp(h, (wide ? count * wsz : 0) + maxc * wsz + 64);
    size_t *cnt = dt_alloc((size_t)m * (sizeof(size_t) + 2 * sizeof(void *)), DT_MEM_COMM);
    if (!t || !cnt) {
        dt_free(cnt);
        return dt__hier_fail(h, NULL, DT_ENOMEM);
    }
    const void **sendv = (const void **)(cnt + m);
    void **recvv = (void **)(sendv + m);
    const char *in = c->send;
    char *slice = t + (wide ? count * wsz : 0);
    if (wide) {
        if (count) widen((float *)t, c->send, count, c->dtype);
        in = t;
    }
    size_t off = 0;
    for (int i = 0; i < m; i++) {
        cnt[i] = count / (size_t)m + ((size_t)i < count % (size_t)m);
        sendv[i] = in + off * wsz;
        recvv[i] = (char *)c->recv + off * esz;
        off += cnt[i];
    }
    dt__coll rs = {.kind = DT__OP_REDUCE_SCATTER, .dtype = wt, .redop = op1, .premul = c->premul, .recv = slice,
                   .sendv = (const void *const *)sendv, .recv_counts = cnt, .deadline_ns = c->deadline_ns};
    int rc = dt__hier_sub(h, &h->local, rs, true);
    dt__coll ar = {.kind = DT__OP_ALLREDUCE, .dtype = wt, .redop = op2, .premul = 1.0, .send = slice, .recv = slice,
                   .count = cnt[j], .deadline_ns = c->deadline_ns};
    if (rc == 0) rc = dt__hier_sub(h, h->slice, ar, false);
    if (rc == 0 && cnt[j]) {
        if (c->redop == DT_RED_AVG) divide(slice, cnt[j], wt, h->size);
        if (wide) narrow((uint16_t *)slice, (const float *)slice, cnt[j], c->dtype);
    }
    dt__coll ag = {.kind = DT__OP_ALLGATHER, .dtype = c->dtype, .send = slice, .recvv = (void *const *)recvv,
                   .recv_counts = cnt, .deadline_ns = c->deadline_ns};
    if (rc == 0) rc = dt__hier_sub(h, &h->local, ag, false);
    dt_free(cnt);
    return rc;
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
    if (!reduce && h->slice) return allreduce_slices(h, c, wide, wt, op1, op2);
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
    DT_CHECK(dt__hier_sub(h, &h->local, s, true));
    /* 2. between hosts: the leaders, in place */
    if (leader) {
        dt__coll t = {.kind = reduce ? DT__OP_REDUCE : DT__OP_ALLREDUCE, .dtype = wt, .redop = op2, .premul = 1.0,
                      .root = reduce ? root_host : 0, .send = acc, .recv = final_here ? acc : NULL, .count = count,
                      .deadline_ns = c->deadline_ns};
        DT_CHECK(dt__hier_sub(h, &h->lead, t, false));
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
        return dt__hier_sub(h, &h->local, b, false);
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

int dt__hier_reduce_scatter(dt__hier *h, const dt__coll *c)
{
    DT_CHECK(dt__hier_check(h));
    int n = h->size, m = h->local.size, nh = h->nhosts;
    bool leader = h->local.rank == 0, wide = c->dtype == DT_BF16 || c->dtype == DT_F16;
    dt_dtype wt = wide ? DT_F32 : c->dtype;
    size_t esz = dt_dtype_size(c->dtype), wsz = dt_dtype_size(wt);
    dt_redop op1 = c->redop == DT_RED_AVG ? DT_RED_SUM : c->redop;
    dt_redop op2 = c->redop == DT_RED_AVG || c->redop == DT_RED_PREMUL_SUM ? DT_RED_SUM : c->redop;
    dt__hier_layout l;
    DT_CHECK(dt__hier_layout_make(h, c->recv_counts, &l));
    size_t *hoff = l.hoff, *hcount = l.hcount, *hstart = l.hstart, *lcount = l.lcount, total = l.total;
    size_t mine = hcount[h->my_host];
    const void **lsend = (const void **)l.lptr, **hsend = (const void **)l.hptr;
    /* scratch: the input host by host in wt (unless it is so already), then on
     * the leader the host-level sums and its host's run */
    char *base;
    bool direct = !wide && dt__hier_in_layout(h, c->sendv, c->recv_counts, hoff, esz, &base);
    size_t in_bytes = direct ? 0 : total * wsz, acc_bytes = leader ? total * wsz : 0;
    char *t = dt__hier_tmp(h, in_bytes + acc_bytes + (leader ? mine * wsz : 0) + 64);
    if (!t) {
        dt_free(hoff);
        return dt__hier_fail(h, NULL, DT_ENOMEM);
    }
    const char *in = direct ? base : t;
    char *acc = leader ? t + in_bytes : NULL, *run = leader ? t + in_bytes + acc_bytes : NULL;
    if (!direct)
        for (int j = 0; j < n; j++) {
            size_t k = c->recv_counts[j];
            if (!k) continue;
            if (wide) widen((float *)(t + hoff[j] * wsz), c->sendv[j], k, c->dtype);
            else memcpy(t + hoff[j] * wsz, c->sendv[j], k * wsz);
        }
    /* 1. host level: the whole input onto the leader */
    dt__coll s = {.kind = DT__OP_REDUCE, .dtype = wt, .redop = op1, .premul = c->premul, .root = 0, .send = in,
                  .recv = acc, .count = total, .deadline_ns = c->deadline_ns};
    int rc = dt__hier_sub(h, &h->local, s, true);
    if (rc == 0 && leader) {
        /* 2. between hosts: each leader gets its host's run */
        for (int k = 0; k < nh; k++) hsend[k] = acc + hstart[k] * wsz;
        dt__coll r = {.kind = DT__OP_REDUCE_SCATTER, .dtype = wt, .redop = op2, .premul = 1.0, .recv = run,
                      .sendv = (const void *const *)hsend, .recv_counts = hcount, .deadline_ns = c->deadline_ns};
        rc = dt__hier_sub(h, &h->lead, r, false);
        /* 3. the one division of AVG, the one rounding of the halves */
        if (rc == 0 && mine) {
            if (c->redop == DT_RED_AVG) divide(run, mine, wt, n);
            if (wide) narrow((uint16_t *)run, (const float *)run, mine, c->dtype);
        }
    }
    /* 4. each rank of the host its block */
    for (int i = 0; i < m; i++) {
        int j = h->local.ranks[i];
        lcount[i] = c->recv_counts[j];
        lsend[i] = leader ? run + (hoff[j] - hstart[h->my_host]) * esz : NULL;
    }
    dt__coll sc = {.kind = DT__OP_SCATTER, .dtype = c->dtype, .root = 0, .sendv = (const void *const *)lsend,
                   .send_counts = lcount, .recv = c->recv, .deadline_ns = c->deadline_ns};
    if (rc == 0) rc = dt__hier_sub(h, &h->local, sc, false);
    dt_free(hoff);
    return rc;
}
