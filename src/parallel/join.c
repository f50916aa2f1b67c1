/* DDP's join (uneven inputs): a rank out of batches shadows the active ranks' steps
 * with zero gradients until all have joined, then every rank takes the parameters
 * of the last one to join. The protocol per shadowed step mirrors an active rank's:
 * the active-count all_reduce of dt_ddp_pre_forward, the buffer broadcasts, then one
 * all_reduce per bucket in bucket order (when the step synchronises). */
#include "parallel/ddp_internal.h"

#include <string.h>

int dt_ddp_join_enable(dt_ddp *d, bool on)
{
    if (!d) return dt_set_error(DT_EINVAL, "DDP: NULL handle");
    d->join = on;
    return 0;
}

int dt_ddp_join(dt_ddp *d)
{
    if (!d) return dt_set_error(DT_EINVAL, "DDP: NULL handle");
    if (!d->join) return dt_set_error(DT_ESTATE, "DDP: join without dt_ddp_join_enable");
    if (d->err) return dt__ddp_raise(d);
    if (!d->rebuilt)
        return dt__ddp_fail(d, dt_set_error(DT_ESTATE, "DDP: join before this rank's first synchronised step "
                                            "(the buckets are not settled yet)"));
    size_t maxc = 1;
    for (int j = 0; j < d->nbk; j++)
        if ((size_t)(d->b[j].hi - d->b[j].lo) > maxc) maxc = (size_t)(d->b[j].hi - d->b[j].lo);
    dt_dtype dt = d->o.comm_hook == DT_DDP_HOOK_FP16 ? DT_F16 : d->o.comm_hook == DT_DDP_HOOK_BF16 ? DT_BF16 : DT_F32;
    size_t bytes = maxc * dt_dtype_size(dt);
    void *zero = d->gbuf_shared ? dt_pg_alloc(d->pg, bytes) : NULL;
    bool zero_shared = zero != NULL;
    if (!zero && !(zero = dt_alloc(bytes, DT_MEM_COMM))) return dt_last_error_code();
    int rc = 0;
    bool first = true, last_joiner = false;
    for (;;) {
        int32_t v[2] = {0, 0};
        if ((rc = dt_pg_allreduce(d->pg, v, v, 2, DT_I32, DT_RED_SUM, NULL, NULL)) < 0) break;
        if (first) last_joiner = v[0] == 0;
        first = false;
        if (v[0] == 0) break;
        if (d->o.broadcast_buffers)
            for (int i = 0; i < d->nb && rc == 0; i++)
                rc = dt_pg_broadcast(d->pg, dt_tensor_data(d->buf[i].t), (size_t)dt_tensor_numel(d->buf[i].t),
                                     dt_tensor_dtype(d->buf[i].t), 0, NULL, NULL);
        if (rc < 0 || v[1] == 0) continue;
        for (int j = 0; j < d->nbk && rc == 0; j++) {
            size_t count = (size_t)(d->b[j].hi - d->b[j].lo);
            memset(zero, 0, count * dt_dtype_size(dt));
            rc = dt_pg_allreduce(d->pg, zero, zero, count, dt, DT_RED_AVG, NULL, NULL);
        }
        if (rc < 0) break;
    }
    if (zero_shared) dt_pg_free(d->pg, zero);
    else dt_free(zero);
    if (rc < 0) return dt__ddp_fail(d, dt_error_wrap(rc, "DDP: join"));
    /* the last rank to join (the highest of those tied) holds the fully trained model */
    int32_t root = last_joiner ? dt_pg_rank(d->pg) : -1;
    if ((rc = dt_pg_allreduce(d->pg, &root, &root, 1, DT_I32, DT_RED_MAX, NULL, NULL)) < 0)
        return dt__ddp_fail(d, dt_error_wrap(rc, "DDP: join"));
    for (int i = 0; i < d->np && rc == 0; i++)
        rc = dt_pg_broadcast(d->pg, dt_tensor_data(d->p[i].param), (size_t)d->p[i].numel, DT_F32, root, NULL, NULL);
    for (int i = 0; i < d->nb && rc == 0; i++)
        rc = dt_pg_broadcast(d->pg, dt_tensor_data(d->buf[i].t), (size_t)dt_tensor_numel(d->buf[i].t),
                             dt_tensor_dtype(d->buf[i].t), root, NULL, NULL);
    if (rc < 0) return dt__ddp_fail(d, dt_error_wrap(rc, "DDP: join: taking rank %d's parameters", (int)root));
    return 0;
}
