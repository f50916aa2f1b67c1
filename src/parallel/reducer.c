/* DDP's buckets: assigning parameters to buckets by size, launching a bucket's
 * all_reduce when its last gradient is ready (in bucket order, the same on every rank),
 * waiting for them at the end of backward, and the fp16/bf16 compression hooks.
 * Does not know modules or the forward protocol (ddp.c). */
#include "parallel/ddp_internal.h"

#include <stdio.h>
#include <string.h>

int dt__ddp_fail(dt_ddp *d, int code)
{
    if (d->err == 0) {
        d->err = code;
        /* keep the context only: dt__ddp_raise puts the code's text back in front */
        const char *m = dt_last_error(), *pre = dt_strerror(code);
        size_t n = strlen(pre);
        if (strncmp(m, pre, n) == 0 && m[n] == ':' && m[n + 1] == ' ') m += n + 2;
        snprintf(d->errmsg, sizeof d->errmsg, "%s", m);
    }
    return d->err;
}

static void *comm_alloc(dt_ddp *d, size_t bytes)
{
    if (d->gbuf_shared) {
        void *p = dt_pg_alloc(d->pg, bytes);
        if (p) return p;
    }
    return dt_alloc(bytes, DT_MEM_COMM);
}

static void comm_free(dt_ddp *d, void *p)
{
    if (!p) return;
    if (d->gbuf_shared) dt_pg_free(d->pg, p);   /* both came from the heap when it is shared */
    else dt_free(p);
}

int dt__ddp_raise(const dt_ddp *d)
{
    return dt_set_error(d->err, "%s", d->errmsg);
}

void dt__ddp_free_buckets(dt_ddp *d)
{
    for (int i = 0; i < d->nbk; i++) {
        dt__ddp_bucket *b = &d->b[i];
        if (b->work) {
            dt_work_wait(b->work, -1);
            dt_work_free(b->work);
        }
        comm_free(d, b->stage);
        comm_free(d, b->half);
        dt_free(b->params);
    }
    dt_free(d->b);
    d->b = NULL;
    d->nbk = 0;
}

/* torch's compute_bucket_assignment_by_size: walk the params in order, close the
 * bucket once its size reaches the cap (first bucket first_bucket_mb, then
 * bucket_cap_mb). */
int dt__ddp_build_buckets(dt_ddp *d, const int *order)
{
    dt__ddp_free_buckets(d);
    d->b = dt_calloc((size_t)(d->np ? d->np : 1), sizeof *d->b, DT_MEM_OTHER);
    if (!d->b) return dt_last_error_code();
    int64_t cap = (int64_t)(d->o.first_bucket_mb * 1024 * 1024);
    int64_t bytes = 0;
    int nb = 0;
    for (int k = 0; k < d->np; k++) {
        if (nb == 0 || bytes >= cap) {
            if (nb > 0) cap = (int64_t)(d->o.bucket_cap_mb * 1024 * 1024);
            d->b[nb].params = dt_alloc((size_t)d->np * sizeof(int), DT_MEM_OTHER);
            if (!d->b[nb].params) return dt_last_error_code();
            nb++;
            d->nbk = nb;
            bytes = 0;
        }
        dt__ddp_bucket *b = &d->b[nb - 1];
        int i = order[k];
        b->params[b->np++] = i;
        d->p[i].bucket = nb - 1;
        bytes += d->p[i].numel * (int64_t)sizeof(float);
    }
    d->nbk = nb;
    for (int j = 0; j < nb; j++) {
        dt__ddp_bucket *b = &d->b[j];
        b->lo = INT64_MAX;
        b->hi = 0;
        for (int k = 0; k < b->np; k++) {
            const dt__ddp_param *p = &d->p[b->params[k]];
            if (p->off < b->lo) b->lo = p->off;
            if (p->off + p->numel > b->hi) b->hi = p->off + p->numel;
        }
        if (b->np == 0) b->lo = 0;
        /* in place when no other bucket's param lies inside [lo, hi) */
        b->contiguous = true;
        for (int i = 0; i < d->np && b->contiguous; i++) {
            const dt__ddp_param *p = &d->p[i];
            if (p->bucket != j && p->numel > 0 && p->off < b->hi && p->off + p->numel > b->lo) b->contiguous = false;
        }
        size_t count = (size_t)(b->hi - b->lo);
        if (!b->contiguous && !(b->stage = comm_alloc(d, count * sizeof(float)))) return dt_last_error_code();
        if (d->o.comm_hook != DT_DDP_HOOK_NONE && !(b->half = comm_alloc(d, count * sizeof(uint16_t))))
            return dt_last_error_code();
        b->pending = b->np;
    }
    return 0;
}

/* Start bucket j's all_reduce: gather (stage) and compress as needed. */
static int launch(dt_ddp *d, dt__ddp_bucket *b)
{
    size_t count = (size_t)(b->hi - b->lo);
    float *src = d->gbuf + b->lo;
    if (!b->contiguous) {
        memset(b->stage, 0, count * sizeof(float));
        for (int k = 0; k < b->np; k++) {
            const dt__ddp_param *p = &d->p[b->params[k]];
            memcpy(b->stage + (p->off - b->lo), d->gbuf + p->off, (size_t)p->numel * sizeof(float));
        }
        src = b->stage;
    }
    void *buf = src;
    dt_dtype dt = DT_F32;
    if (d->o.comm_hook == DT_DDP_HOOK_FP16) {
        for (size_t i = 0; i < count; i++) b->half[i] = dt_f32_to_f16(src[i]);
        buf = b->half;
        dt = DT_F16;
    } else if (d->o.comm_hook == DT_DDP_HOOK_BF16) {
        for (size_t i = 0; i < count; i++) b->half[i] = dt_f32_to_bf16(src[i]);
        buf = b->half;
        dt = DT_BF16;
    }
    d->comm_bytes += (double)count * (double)dt_dtype_size(dt);
    b->launched = true;
    int rc = dt_pg_allreduce(d->pg, buf, buf, count, dt, DT_RED_AVG, NULL, &b->work);
    if (rc < 0) {
        b->work = NULL;
        return dt__ddp_fail(d, dt_error_wrap(rc, "DDP: all_reduce of bucket %d (%zu floats)", (int)(b - d->b), count));
    }
    return 0;
}

void dt__ddp_mark_ready(dt_ddp *d, int i)
{
    dt__ddp_param *p = &d->p[i];
    if (p->ready) {
        dt__ddp_fail(d, dt_set_error(DT_ESTATE, "DDP: parameter '%s' got its gradient twice in one backward "
                                     "(a parameter used by two backward passes before a step is not supported)",
                                     p->name));
        return;
    }
    p->ready = true;
    if (!d->rebuilt && d->order && d->norder < d->np) d->order[d->norder++] = i;
    dt__ddp_bucket *b = &d->b[p->bucket];
    if (--b->pending > 0) return;
    /* launch in bucket order: every rank issues the same all_reduces in the same order */
    while (d->next_launch < d->nbk && d->b[d->next_launch].pending == 0 && !d->err) {
        if (launch(d, &d->b[d->next_launch]) < 0) return;
        d->next_launch++;
    }
}

int dt__ddp_wait_buckets(dt_ddp *d)
{
    double t0 = dt_now_s();
    for (int j = 0; j < d->nbk; j++) {
        dt__ddp_bucket *b = &d->b[j];
        if (b->work) {
            int rc = dt_work_wait(b->work, -1);
            double s, e;
            if (rc == 0 && dt_work_times(b->work, &s, &e) == 0 && e >= s) {
                double before = e < t0 ? e : t0; /* the part that ran while backward did */
                d->comm_s += e - s;
                if (before > s) d->hidden_s += before - s;
            }
            dt_work_free(b->work);
            b->work = NULL;
            if (rc < 0) dt__ddp_fail(d, dt_error_wrap(rc, "DDP: bucket %d", j));
        }
        if (b->launched && !d->err) {
            size_t count = (size_t)(b->hi - b->lo);
            float *dst = b->contiguous ? d->gbuf + b->lo : b->stage;
            if (d->o.comm_hook == DT_DDP_HOOK_FP16)
                for (size_t i = 0; i < count; i++) dst[i] = dt_f16_to_f32(b->half[i]);
            else if (d->o.comm_hook == DT_DDP_HOOK_BF16)
                for (size_t i = 0; i < count; i++) dst[i] = dt_bf16_to_f32(b->half[i]);
            if (!b->contiguous)
                for (int k = 0; k < b->np; k++) {
                    const dt__ddp_param *p = &d->p[b->params[k]];
                    memcpy(d->gbuf + p->off, b->stage + (p->off - b->lo), (size_t)p->numel * sizeof(float));
                }
        }
        b->launched = false;
        b->pending = b->np;
    }
    d->next_launch = 0;
    d->wait_s += dt_now_s() - t0;
    return d->err;
}
