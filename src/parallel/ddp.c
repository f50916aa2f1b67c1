/* DDP: construction (the cross-rank check of names and shapes, the broadcast from
 * rank 0, the flat gradient buffer), the per-iteration protocol (pre_forward,
 * prepare_backward, the gradient-ready hooks, the finalize callback that ends each
 * backward), no_sync, the rebuild of buckets in ready order, and the stats.
 * The buckets themselves are reducer.c's. */
#include "parallel/ddp_internal.h"

#include <stdio.h>
#include <string.h>

static int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = dt_alloc(n, DT_MEM_OTHER);
    if (c) memcpy(c, s, n);
    return c;
}

/* "name:d0,d1;" for every tensor: what every rank must agree on. */
static char *signature(const dt_ddp_tensor *ts, int n, size_t *len)
{
    size_t cap = 64;
    for (int i = 0; i < n; i++) cap += strlen(ts[i].name) + 24 * (size_t)(dt_tensor_ndim(ts[i].t) + 1);
    char *s = dt_alloc(cap, DT_MEM_OTHER);
    if (!s) return NULL;
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        k += (size_t)snprintf(s + k, cap - k, "%s:", ts[i].name);
        for (int j = 0; j < dt_tensor_ndim(ts[i].t); j++)
            k += (size_t)snprintf(s + k, cap - k, "%s%lld", j ? "," : "", (long long)dt_tensor_shape(ts[i].t)[j]);
        k += (size_t)snprintf(s + k, cap - k, ";");
    }
    *len = k;
    return s;
}

/* The first entry where a's list differs from b's, as text. */
static void first_difference(const char *a, size_t alen, const char *b, size_t blen, char *out, size_t cap)
{
    size_t i = 0, start = 0;
    while (i < alen && i < blen && a[i] == b[i]) {
        if (a[i] == ';') start = i + 1;
        i++;
    }
    const char *ea = memchr(a + start, ';', alen - start), *eb = memchr(b + start, ';', blen > start ? blen - start : 0);
    int la = (int)(ea ? (size_t)(ea - a) - start : alen - start);
    int lb = (int)(eb ? (size_t)(eb - b) - start : (blen > start ? blen - start : 0));
    snprintf(out, cap, "rank 0 has '%.*s', this rank '%.*s'", lb, lb ? b + start : "(nothing more)", la,
             la ? a + start : "(nothing more)");
}

/* Every rank has the same names and shapes as rank 0. */
static int check_same(dt_pg *pg, const dt_ddp_tensor *ts, int n, const char *what)
{
    size_t len = 0;
    char *mine = signature(ts, n, &len);
    if (!mine) return dt_last_error_code();
    void *root = mine;
    size_t rlen = len;
    int me = dt_pg_rank(pg);
    int rc = dt_pg_broadcast_bytes(pg, &root, &rlen, 0, NULL);
    if (rc < 0) {
        dt_free(mine);
        return dt_error_wrap(rc, "DDP: comparing %s across ranks", what);
    }
    /* each rank compares itself with rank 0, then all learn whether anyone differs */
    int32_t bad = me != 0 && (rlen != len || memcmp(root, mine, len) != 0);
    char diff[400] = "";
    if (bad) first_difference(mine, len, root, rlen, diff, sizeof diff);
    if (me != 0) dt_free(root);
    dt_free(mine);
    int32_t any = bad ? me : -1;
    if ((rc = dt_pg_allreduce(pg, &any, &any, 1, DT_I32, DT_RED_MAX, NULL, NULL)) < 0)
        return dt_error_wrap(rc, "DDP: comparing %s across ranks", what);
    if (bad) return dt_set_error(DT_EMISMATCH, "DDP: rank %d's %s differ from rank 0's: %s", me, what, diff);
    if (any >= 0) return dt_set_error(DT_EMISMATCH, "DDP: rank %d's %s differ from rank 0's (see that rank's error)", (int)any, what);
    return 0;
}

static void on_grad_ready(dt_tensor *leaf, void *ctx);

static int finalize(void *ctx)
{
    dt_ddp *d = ctx;
    d->in_backward = false;
    if (!d->err) {
        char names[400];
        size_t k = 0;
        int missing = 0;
        names[0] = 0;
        for (int i = 0; i < d->np; i++)
            if (!d->p[i].ready) {
                if (k < sizeof names - 1)
                    k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", missing ? ", " : "", d->p[i].name);
                missing++;
            }
        if (missing)
            dt__ddp_fail(d, dt_set_error(DT_ESTATE, "DDP: %d parameter%s got no gradient in this backward (%s); they were "
                                         "not used to compute the loss: pass find_unused_parameters, or leave them out "
                                         "of the model", missing, missing == 1 ? "" : "s", names));
    }
    int rc = dt__ddp_wait_buckets(d);
    for (int i = 0; i < d->np; i++) d->p[i].ready = false;
    if (rc < 0) return dt__ddp_raise(d);
    d->syncs++;
    if (!d->rebuilt) {
        /* the ready order of this first backward, rank 0's for everyone; params that never
         * became ready (unused) go last in reverse registration order */
        int32_t *ord = dt_alloc((size_t)(d->np ? d->np : 1) * sizeof(int32_t), DT_MEM_OTHER);
        if (!ord) return dt__ddp_fail(d, dt_last_error_code());
        bool *seen = dt_calloc((size_t)(d->np ? d->np : 1), sizeof(bool), DT_MEM_OTHER);
        if (!seen) { dt_free(ord); return dt__ddp_fail(d, dt_last_error_code()); }
        int n = 0;
        for (int k = 0; k < d->norder; k++) if (!seen[d->order[k]]) { seen[d->order[k]] = true; ord[n++] = d->order[k]; }
        for (int i = d->np - 1; i >= 0; i--) if (!seen[i]) ord[n++] = i;
        dt_free(seen);
        rc = dt_pg_broadcast(d->pg, ord, (size_t)d->np, DT_I32, 0, NULL, NULL);
        int *order = (int *)ord;   /* int32_t and int are the same here */
        if (rc == 0) rc = dt__ddp_build_buckets(d, order);
        dt_free(ord);
        dt_free(d->order);
        d->order = NULL;
        d->rebuilt = true;
        if (rc < 0) return dt__ddp_fail(d, dt_error_wrap(rc, "DDP: rebuilding the buckets"));
    }
    return 0;
}

/* The first gradient of a backward queues finalize; find_unused's unused params are
 * then marked ready (so their buckets can go). */
static void on_grad_ready(dt_tensor *leaf, void *ctx)
{
    dt__ddp_param *p = ctx;
    dt_ddp *d = p->owner;
    (void)leaf;
    if (d->no_sync || d->err) return;
    if (!d->in_backward) {
        int rc = dt_backward_queue_callback(finalize, d);
        if (rc < 0) { dt__ddp_fail(d, rc); return; }
        d->in_backward = true;
        if (d->o.find_unused_parameters)
            for (int i = 0; i < d->np; i++)
                if (!d->p[i].used) dt__ddp_mark_ready(d, i);
    }
    dt__ddp_mark_ready(d, (int)(p - d->p));
}

static int validate(const dt_ddp_tensor *ps, int n, const dt_ddp_tensor *bs, int nb, const dt_ddp_opts *o)
{
    if (n < 0 || nb < 0 || (n && !ps) || (nb && !bs)) return dt_set_error(DT_EINVAL, "DDP: bad parameter or buffer list");
    if (!(o->bucket_cap_mb > 0) || !(o->first_bucket_mb > 0))
        return dt_set_error(DT_EINVAL, "DDP: bucket sizes must be positive (bucket_cap_mb %g, first_bucket_mb %g)",
                            o->bucket_cap_mb, o->first_bucket_mb);
    if ((unsigned)o->comm_hook > DT_DDP_HOOK_BF16) return dt_set_error(DT_EINVAL, "DDP: unknown comm hook %d", (int)o->comm_hook);
    for (int i = 0; i < n + nb; i++) {
        const dt_ddp_tensor *e = i < n ? &ps[i] : &bs[i - n];
        const char *kind = i < n ? "parameter" : "buffer";
        if (!e->name || !e->t) return dt_set_error(DT_EINVAL, "DDP: %s %d has no name or tensor", kind, i < n ? i : i - n);
        if (!dt_tensor_is_contiguous(e->t)) return dt_set_error(DT_EINVAL, "DDP: %s '%s' is not contiguous", kind, e->name);
        if (i < n && (dt_tensor_dtype(e->t) != DT_F32 || !dt_tensor_is_leaf(e->t)))
            return dt_set_error(DT_EINVAL, "DDP: parameter '%s' must be an f32 leaf", e->name);
        for (int j = 0; j < i; j++) {
            const dt_ddp_tensor *f = j < n ? &ps[j] : &bs[j - n];
            if (strcmp(f->name, e->name) == 0) return dt_set_error(DT_EINVAL, "DDP: the name '%s' appears twice", e->name);
        }
    }
    return 0;
}

/* mod: the module whose flat gradient buffer moves into DDP's (its layout kept:
 * module order, unpadded); NULL: DDP lays the gradients out itself (reverse order,
 * 64-byte aligned) and rebinds each parameter's .grad. */
dt_ddp *dt__ddp_create(dt_pg *pg, const dt_ddp_tensor *params, int n, const dt_ddp_tensor *buffers, int nb,
                       const dt_ddp_opts *opts, dt_module *mod)
{
    dt_ddp_opts o = DT_DDP_OPTS_INIT;
    if (opts) o = *opts;
    if (!pg) { dt_set_error(DT_EINVAL, "DDP: NULL group"); return NULL; }
    if (validate(params, n, buffers, nb, &o) < 0) return NULL;
    int rc = 0;
    if ((rc = check_same(pg, params, n, "parameter names and shapes")) < 0) return NULL;
    if ((rc = check_same(pg, buffers, nb, "buffer names and shapes")) < 0) return NULL;

    dt_ddp *d = dt_calloc(1, sizeof *d, DT_MEM_OTHER);
    if (!d) return NULL;
    d->pg = pg;
    d->o = o;
    d->world = dt_pg_size(pg);
    d->np = n;
    d->p = dt_calloc((size_t)(n ? n : 1), sizeof *d->p, DT_MEM_OTHER);
    d->buf = dt_calloc((size_t)(nb ? nb : 1), sizeof *d->buf, DT_MEM_OTHER);
    d->slots = dt_calloc((size_t)(n ? n : 1), sizeof *d->slots, DT_MEM_OTHER);
    d->order = dt_alloc((size_t)(n ? n : 1) * sizeof(int), DT_MEM_OTHER);
    if (!d->p || !d->buf || !d->slots || !d->order) goto fail;
    d->mod = mod;
    /* names first: with mod they live in its cache, which dt_module_set_grad_storage drops */
    for (int i = 0; i < n; i++)
        if (!(d->p[i].name = dup_str(params[i].name))) goto fail;
    for (int i = 0; i < nb; i++) {
        if (!(d->buf[i].name = dup_str(buffers[i].name))) goto fail;
        d->buf[i].t = dt_tensor_retain(buffers[i].t);
        d->nb = i + 1;
    }
    int64_t total = 0;
    const dt_named_param *mp = NULL;
    if (mod) {
        /* the module's layout: its flat buffer, named_parameters order */
        size_t mn = 0;
        mp = dt_module_params(mod, &mn);
        if ((int)mn != n) { dt_set_error(DT_EINVAL, "DDP: the module has %zu parameters, %d given", mn, n); goto fail; }
        for (int k = 0; k < n; k++) {
            d->p[k].owner = d;
            d->p[k].numel = mp[k].numel;
            d->p[k].off = mp[k].offset;
            if (mp[k].offset + mp[k].numel > total) total = mp[k].offset + mp[k].numel;
        }
    } else {
        /* reverse registration order, each param 64-byte aligned */
        for (int k = n - 1; k >= 0; k--) {
            dt__ddp_param *p = &d->p[k];
            p->owner = d;
            p->numel = dt_tensor_numel(params[k].t);
            p->off = total;
            total += pad16(p->numel);
        }
    }
    d->gnumel = total;
    size_t bytes = (size_t)(total ? total : 16) * sizeof(float);
    if (o.shared_buffers) {
        d->gbuf = dt_pg_alloc(pg, bytes);
        d->gbuf_shared = d->gbuf != NULL;
    }
    /* every rank must agree on shared or not: a collective reads peers in place only
     * when all buffers are in the heap */
    int32_t sh = d->gbuf_shared;
    if ((rc = dt_pg_allreduce(pg, &sh, &sh, 1, DT_I32, DT_RED_MIN, NULL, NULL)) < 0) goto fail;
    if (d->gbuf_shared && !sh) {
        dt_pg_free(pg, d->gbuf);
        d->gbuf = NULL;
        d->gbuf_shared = false;
    }
    if (!d->gbuf && !(d->gbuf = dt_alloc(bytes, DT_MEM_GRAD))) goto fail;
    memset(d->gbuf, 0, bytes);
    if (mod) {
        if ((rc = dt_module_set_grad_storage(mod, d->gbuf)) < 0) goto fail;
        d->mod_moved = true;
        size_t mn = 0;
        mp = dt_module_params(mod, &mn);   /* again: the grads moved */
        if (!mp && n) goto fail;
    }
    for (int i = 0; i < n; i++) {
        dt__ddp_param *p = &d->p[i];
        p->param = dt_tensor_retain(params[i].t);
        p->used = true;
        if (mod) {
            p->grad = dt_tensor_retain(mp[i].grad);
            if ((rc = dt_tensor_on_grad_ready(p->param, on_grad_ready, p)) < 0) goto fail;
            d->slots[i] = (dt_param_slot){.name = p->name, .data = mp[i].data, .grad = mp[i].grad_data, .numel = p->numel};
            continue;
        }
        int tok = dt_scope_begin();
        dt_tensor *g = dt_from_buffer(d->gbuf + p->off, DT_F32, dt_tensor_ndim(p->param), dt_tensor_shape(p->param));
        if (g) g = dt_keep(g);
        dt_scope_end(tok);
        if (!g) goto fail;
        p->grad = g;
        dt_tensor *old = dt_tensor_grad(p->param);
        if (old) {
            p->orig_grad = dt_tensor_retain(old);
            if ((rc = dt_tensor_copy_(g, old)) < 0) goto fail;
        }
        if ((rc = dt_tensor_set_grad_buffer(p->param, g)) < 0) goto fail;
        if ((rc = dt_tensor_on_grad_ready(p->param, on_grad_ready, p)) < 0) goto fail;
        d->slots[i] = (dt_param_slot){.name = p->name, .data = dt_tensor_data(p->param), .grad = d->gbuf + p->off,
                                      .numel = p->numel};
    }
    /* rank 0's values everywhere */
    for (int i = 0; i < n + nb; i++) {
        dt_tensor *t = i < n ? d->p[i].param : d->buf[i - n].t;
        if ((rc = dt_pg_broadcast(pg, dt_tensor_data(t), (size_t)dt_tensor_numel(t), dt_tensor_dtype(t), 0, NULL, NULL)) < 0) {
            dt_error_wrap(rc, "DDP: broadcasting '%s' from rank 0", i < n ? d->p[i].name : d->buf[i - n].name);
            goto fail;
        }
    }
    int *rev = dt_alloc((size_t)(n ? n : 1) * sizeof(int), DT_MEM_OTHER);
    if (!rev) goto fail;
    for (int k = 0; k < n; k++) rev[k] = n - 1 - k;
    rc = dt__ddp_build_buckets(d, rev);
    dt_free(rev);
    if (rc < 0) goto fail;
    return d;
fail:
    dt_error_wrap(dt_last_error_code(), "DDP(rank %d)", dt_pg_rank(pg));
    dt_ddp_free(d);
    return NULL;
}

void dt_ddp_free(dt_ddp *d)
{
    if (!d) return;
    dt__ddp_free_buckets(d);
    /* a module takes its gradients back into its own buffer (values kept) */
    if (d->mod_moved) dt_module_set_grad_storage(d->mod, NULL);
    for (int i = 0; i < d->np; i++) {
        dt__ddp_param *p = &d->p[i];
        if (p->param) {
            dt_tensor_clear_hooks(p->param);
            if (!d->mod && p->grad && dt_tensor_grad(p->param) == p->grad) {
                /* the gradient leaves DDP's buffer: back into its own memory, values kept */
                dt_tensor *own = p->orig_grad;
                if (!own) {
                    int tok = dt_scope_begin();
                    own = dt_empty_like(p->param);
                    if (own) own = dt_keep(own);
                    dt_scope_end(tok);
                } else {
                    dt_tensor_retain(own);
                }
                if (own && dt_tensor_copy_(own, p->grad) == 0) dt_tensor_set_grad_buffer(p->param, own);
                else dt_tensor_set_grad_buffer(p->param, NULL);
                dt_tensor_release(own);
            }
        }
        dt_tensor_release(p->orig_grad);
        dt_tensor_release(p->grad);
        dt_tensor_release(p->param);
        dt_free(p->name);
    }
    for (int i = 0; i < d->nb; i++) {
        dt_tensor_release(d->buf[i].t);
        dt_free((char *)d->buf[i].name);
    }
    if (d->gbuf_shared) dt_pg_free(d->pg, d->gbuf);
    else dt_free(d->gbuf);
    dt_free(d->p);
    dt_free(d->buf);
    dt_free(d->slots);
    dt_free(d->order);
    dt_free(d);
}

int dt_ddp_pre_forward(dt_ddp *d)
{
    if (!d) return dt_set_error(DT_EINVAL, "DDP: NULL handle");
    if (d->err) return dt__ddp_raise(d);
    if (d->join) {
        /* [active ranks, active ranks that synchronise this step]: what joined ranks shadow */
        int32_t v[2] = {1, d->no_sync ? 0 : 1};
        int rc = dt_pg_allreduce(d->pg, v, v, 2, DT_I32, DT_RED_SUM, NULL, NULL);
        if (rc < 0) return dt__ddp_fail(d, dt_error_wrap(rc, "DDP: counting the active ranks (join)"));
        if (v[1] != 0 && v[1] != v[0])
            return dt__ddp_fail(d, dt_set_error(DT_EMISMATCH, "DDP: %d of %d active ranks are in no_sync this step; "
                                                "with join, all or none must be", (int)(v[0] - v[1]), (int)v[0]));
    }
    if (d->o.broadcast_buffers)
        for (int i = 0; i < d->nb; i++) {
            dt_tensor *t = d->buf[i].t;
            int rc = dt_pg_broadcast(d->pg, dt_tensor_data(t), (size_t)dt_tensor_numel(t), dt_tensor_dtype(t), 0, NULL, NULL);
            if (rc < 0) return dt__ddp_fail(d, dt_error_wrap(rc, "DDP: broadcasting buffer '%s'", d->buf[i].name));
        }
    return 0;
}

static void mark_used(dt_tensor *leaf, void *ctx)
{
    dt_ddp *d = ctx;
    for (int i = 0; i < d->np; i++)
        if (d->p[i].param == leaf) { d->p[i].used = true; return; }
}

int dt_ddp_prepare_backward(dt_ddp *d, dt_tensor *out)
{
    if (!d) return dt_set_error(DT_EINVAL, "DDP: NULL handle");
    if (!d->o.find_unused_parameters) return 0;
    if (!out) return dt_set_error(DT_EINVAL, "DDP: prepare_backward with no output");
    for (int i = 0; i < d->np; i++) d->p[i].used = false;
    return dt_autograd_visit_leaves(out, mark_used, d);
}

void dt_ddp_set_no_sync(dt_ddp *d, bool on)
{
    if (d) d->no_sync = on;
}

const dt_param_slot *dt_ddp_slots(const dt_ddp *d, size_t *n)
{
    if (n) *n = d ? (size_t)d->np : 0;
    return d ? d->slots : NULL;
}

dt_ddp_stats dt_ddp_get_stats(const dt_ddp *d)
{
    dt_ddp_stats s = {0};
    if (!d) return s;
    s.syncs = d->syncs;
    s.buckets = d->nbk;
    s.rebuilt = d->rebuilt;
    s.shared = d->gbuf_shared;
    s.wait_s = d->wait_s;
    s.comm_s = d->comm_s;
    s.hidden_s = d->hidden_s;
    s.comm_bytes = d->comm_bytes;
    return s;
}

const int *dt_ddp_bucket(const dt_ddp *d, int i, int *n)
{
    if (!d || i < 0 || i >= d->nbk) {
        if (n) *n = 0;
        return NULL;
    }
    if (n) *n = d->b[i].np;
    return d->b[i].params;
}

dt_ddp *dt_ddp_new(dt_pg *pg, const dt_ddp_tensor *params, int n, const dt_ddp_tensor *buffers, int nb,
                   const dt_ddp_opts *opts)
{
    return dt__ddp_create(pg, params, n, buffers, nb, opts, NULL);
}
