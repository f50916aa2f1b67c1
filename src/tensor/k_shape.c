/* View geometry: new (shape, strides, offset) on the same storage for view, transpose,
 * permute, slice, expand, squeeze and unsqueeze, with torch's rule for when a view is
 * possible without a copy; and cat, which copies. Knows nothing of gradients (the
 * differentiable wrappers are in src/autograd/ops_view.c). */
#include "tensor/tensor_internal.h"

int dt__infer_shape(int64_t numel, int ndim, const int64_t *in, int64_t *out)
{
    if (ndim < 0 || ndim > DT_MAX_DIMS) return dt_set_error(DT_EINVAL, "view: %d dims", ndim);
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < ndim; d++) {
        if (in[d] == -1) {
            if (infer >= 0) return dt_set_error(DT_ESHAPE, "view: more than one -1 in the shape");
            infer = d;
        } else if (in[d] < 0) {
            return dt_set_error(DT_ESHAPE, "view: size %lld in dim %d", (long long)in[d], d);
        } else {
            known *= in[d];
        }
        out[d] = in[d];
    }
    if (infer >= 0) {
        if (known == 0 || numel % known) return dt_set_error(DT_ESHAPE, "view: cannot infer dim %d for %lld elements", infer, (long long)numel);
        out[infer] = numel / known;
        known = numel;
    }
    if (known != numel) return dt_set_error(DT_ESHAPE, "view: shape of %lld elements for a tensor of %lld", (long long)known, (long long)numel);
    return 0;
}

/* torch's computeStride: strides for the new shape, walking chunks of old dims that
 * are contiguous among themselves. False when the view needs a copy. */
static bool view_strides(const dt_tensor *a, int nd, const int64_t *shape, int64_t *st)
{
    if (a->numel <= 1 || a->ndim == 0) { dt__contig_strides(nd, shape, st); return true; }
    int view_d = nd - 1;
    int64_t chunk = a->strides[a->ndim - 1], tnumel = 1, vnumel = 1;
    for (int td = a->ndim - 1; td >= 0; td--) {
        tnumel *= a->shape[td];
        if (td == 0 || (a->shape[td - 1] != 1 && a->strides[td - 1] != tnumel * chunk)) {
            while (view_d >= 0 && (vnumel < tnumel || shape[view_d] == 1)) {
                st[view_d] = vnumel * chunk;
                vnumel *= shape[view_d];
                view_d--;
            }
            if (vnumel != tnumel) return false;
            if (td > 0) { chunk = a->strides[td - 1]; tnumel = 1; vnumel = 1; }
        }
    }
    return view_d == -1;
}

dt_tensor *dt__view(const dt_tensor *a, int ndim, const int64_t *shape)
{
    int64_t sh[DT_MAX_DIMS], st[DT_MAX_DIMS];
    if (dt__infer_shape(a->numel, ndim, shape, sh) < 0) return NULL;
    if (!view_strides(a, ndim, sh, st)) {
        dt_set_error(DT_ESHAPE, "view: the strides of this tensor cannot express the new shape without a copy (use reshape)");
        return NULL;
    }
    return dt__alias(a, ndim, sh, st, a->offset);
}

dt_tensor *dt__permute(const dt_tensor *a, const int *dims)
{
    int64_t sh[DT_MAX_DIMS], st[DT_MAX_DIMS];
    bool seen[DT_MAX_DIMS] = {false};
    for (int d = 0; d < a->ndim; d++) {
        int s = dt__wrap_dim(dims[d], a->ndim, "permute");
        if (s < 0) return NULL;
        if (seen[s]) { dt_set_error(DT_EINVAL, "permute: dim %d repeated", s); return NULL; }
        seen[s] = true;
        sh[d] = a->shape[s];
        st[d] = a->strides[s];
    }
    return dt__alias(a, a->ndim, sh, st, a->offset);
}

dt_tensor *dt__transpose(const dt_tensor *a, int d0, int d1)
{
    int x = dt__wrap_dim(d0, a->ndim, "transpose"), y = dt__wrap_dim(d1, a->ndim, "transpose");
    if (x < 0 || y < 0) return NULL;
    int perm[DT_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) perm[d] = d;
    if (a->ndim) { perm[x] = y; perm[y] = x; }
    return dt__permute(a, perm);
}

dt_tensor *dt__slice(const dt_tensor *a, int dim, int64_t start, int64_t len, int64_t step)
{
    int d = dt__wrap_dim(dim, a->ndim, "slice");
    if (d < 0) return NULL;
    if (a->ndim == 0) { dt_set_error(DT_EINVAL, "slice of a 0-dim tensor"); return NULL; }
    if (step < 1 || start < 0 || len < 0 || (len > 0 && start + (len - 1) * step >= a->shape[d])) {
        dt_set_error(DT_ERANGE, "slice: start %lld, length %lld, step %lld outside size %lld of dim %d",
                     (long long)start, (long long)len, (long long)step, (long long)a->shape[d], d);
        return NULL;
    }
    int64_t sh[DT_MAX_DIMS], st[DT_MAX_DIMS];
    memcpy(sh, a->shape, sizeof sh);
    memcpy(st, a->strides, sizeof st);
    sh[d] = len;
    st[d] = a->strides[d] * step;
    return dt__alias(a, a->ndim, sh, st, a->offset + (len ? start * a->strides[d] : 0));
}

dt_tensor *dt__expand(const dt_tensor *a, int ndim, const int64_t *shape)
{
    if (ndim < a->ndim || ndim > DT_MAX_DIMS) {
        dt_set_error(DT_ESHAPE, "expand: %d dims to %d", a->ndim, ndim);
        return NULL;
    }
    int64_t sh[DT_MAX_DIMS], st[DT_MAX_DIMS];
    int lead = ndim - a->ndim;
    for (int d = 0; d < ndim; d++) {
        int64_t want = shape[d];
        if (d < lead) {
            if (want < 0) { dt_set_error(DT_ESHAPE, "expand: -1 for a new leading dim %d", d); return NULL; }
            sh[d] = want; st[d] = 0;
            continue;
        }
        int64_t have = a->shape[d - lead];
        if (want == -1) want = have;
        if (want == have) { sh[d] = have; st[d] = a->strides[d - lead]; }
        else if (have == 1 && want >= 0) { sh[d] = want; st[d] = 0; }
        else { dt_set_error(DT_ESHAPE, "expand: size %lld cannot become %lld in dim %d", (long long)have, (long long)want, d); return NULL; }
    }
    return dt__alias(a, ndim, sh, st, a->offset);
}

dt_tensor *dt__squeeze(const dt_tensor *a, int dim)
{
    int d = dt__wrap_dim(dim, a->ndim, "squeeze");
    if (d < 0) return NULL;
    if (a->ndim == 0) return dt__alias(a, 0, NULL, NULL, a->offset);
    if (a->shape[d] != 1) { dt_set_error(DT_EINVAL, "squeeze: dim %d has size %lld, not 1", d, (long long)a->shape[d]); return NULL; }
    int64_t sh[DT_MAX_DIMS], st[DT_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < a->ndim; i++)
        if (i != d) { sh[n] = a->shape[i]; st[n] = a->strides[i]; n++; }
    return dt__alias(a, n, sh, st, a->offset);
}

dt_tensor *dt__unsqueeze(const dt_tensor *a, int dim)
{
    if (a->ndim >= DT_MAX_DIMS) { dt_set_error(DT_EINVAL, "unsqueeze: already %d dims", a->ndim); return NULL; }
    int d = dt__wrap_dim(dim, a->ndim + 1, "unsqueeze");
    if (d < 0) return NULL;
    int64_t sh[DT_MAX_DIMS], st[DT_MAX_DIMS];
    for (int i = 0, j = 0; i <= a->ndim; i++) {
        if (i == d) { sh[i] = 1; st[i] = d < a->ndim ? a->shape[d] * a->strides[d] : 1; continue; }
        sh[i] = a->shape[j]; st[i] = a->strides[j]; j++;
    }
    return dt__alias(a, a->ndim + 1, sh, st, a->offset);
}

dt_tensor *dt__cat(dt_tensor *const *ts, int n, int dim)
{
    if (n < 1 || !ts[0]) { dt_set_error(DT_EINVAL, "cat: no tensors"); return NULL; }
    const dt_tensor *f = ts[0];
    int d = dt__wrap_dim(dim, f->ndim, "cat");
    if (d < 0) return NULL;
    if (f->ndim == 0) { dt_set_error(DT_EINVAL, "cat: 0-dim tensors"); return NULL; }
    int64_t sh[DT_MAX_DIMS];
    memcpy(sh, f->shape, sizeof sh);
    sh[d] = 0;
    for (int i = 0; i < n; i++) {
        const dt_tensor *t = ts[i];
        if (!t) { dt_set_error(DT_EINVAL, "cat: tensor %d is NULL", i); return NULL; }
        if (t->dtype != f->dtype) { dt_set_error(DT_EDTYPE, "cat: tensor %d is %s, tensor 0 %s", i, dt_dtype_name((dt_dtype)t->dtype), dt_dtype_name((dt_dtype)f->dtype)); return NULL; }
        if (t->ndim != f->ndim) { dt_set_error(DT_ESHAPE, "cat: tensor %d has %d dims, tensor 0 %d", i, t->ndim, f->ndim); return NULL; }
        for (int k = 0; k < f->ndim; k++)
            if (k != d && t->shape[k] != f->shape[k]) {
                dt_set_error(DT_ESHAPE, "cat: tensor %d has size %lld in dim %d, tensor 0 %lld", i, (long long)t->shape[k], k, (long long)f->shape[k]);
                return NULL;
            }
        sh[d] += t->shape[d];
    }
    dt_tensor *out = dt__empty((dt_dtype)f->dtype, f->ndim, sh);
    if (!out) return NULL;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        dt_tensor *part = dt__slice(out, d, at, ts[i]->shape[d], 1);
        int rc = part ? dt__copy(part, ts[i]) : -1;
        dt_tensor_release(part);
        if (rc < 0) { dt_tensor_release(out); return NULL; }
        at += ts[i]->shape[d];
    }
    return out;
}
