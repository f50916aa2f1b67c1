/* Optimizer state to and from safetensors: per-slot step counts and buffers under
 * torch's state names, hyperparameters in __metadata__ as "%.17g" text (exact for
 * doubles). Loading checks the whole file against the optimizer before it changes
 * anything, so a bad file leaves the optimizer as it was. */
#include "optim/optim_internal.h"

#include <dtrain/safetensors.h>
#include <dtrain/util.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NMETA_MAX 10

static const char *const BUF_NAMES[2][2] = {{"momentum_buffer", NULL}, {"exp_avg", "exp_avg_sq"}};

static const char *bufname(const dt_optim *o, int k) { return BUF_NAMES[o->kind == DT_OPTIM_SGD ? 0 : 1][k]; }

/* "state.<name>.<what>" in a fresh dt_alloc'd string. */
static char *key_of(const char *name, const char *what)
{
    size_t n = strlen(name) + strlen(what) + 8;
    char *k = dt_alloc(n, DT_MEM_OTHER);
    if (k) snprintf(k, n, "state.%s.%s", name, what);
    return k;
}

typedef struct { char key[24]; char val[40]; } meta_kv;

static int hyper_to_meta(const dt_optim *o, meta_kv *kv)
{
    int n = 0;
#define PUT(k, fmt, v) (snprintf(kv[n].key, sizeof kv[n].key, "%s", k), snprintf(kv[n].val, sizeof kv[n].val, fmt, v), n++)
    PUT("optimizer", "%s", dt__optim_kind_name(o->kind));
    if (o->kind == DT_OPTIM_SGD) {
        PUT("lr", "%.17g", o->sgd.lr);
        PUT("momentum", "%.17g", o->sgd.momentum);
        PUT("dampening", "%.17g", o->sgd.dampening);
        PUT("weight_decay", "%.17g", o->sgd.weight_decay);
        PUT("nesterov", "%s", o->sgd.nesterov ? "true" : "false");
        PUT("maximize", "%s", o->sgd.maximize ? "true" : "false");
    } else {
        PUT("lr", "%.17g", o->adam.lr);
        PUT("beta1", "%.17g", o->adam.beta1);
        PUT("beta2", "%.17g", o->adam.beta2);
        PUT("eps", "%.17g", o->adam.eps);
        PUT("weight_decay", "%.17g", o->adam.weight_decay);
        PUT("maximize", "%s", o->adam.maximize ? "true" : "false");
    }
#undef PUT
    return n;
}

int dt_optim_state_add(const dt_optim *o, dt_st_list *l, const char *prefix)
{
    if (!o || !l) return dt_set_error(DT_EINVAL, "dt_optim_state_add: NULL argument");
    static const int64_t zero_dims[1] = {0};
    for (size_t i = 0; i < o->n; i++) {
        const dt__oslot *s = &o->slots[i];
        if (s->step == 0) continue; /* no state yet, as in torch */
        char *k = key_of(s->name, "step");
        if (!k) return dt_last_error_code();
        int rc = dt_st_list_add(l, prefix, k, DT_I64, 0, zero_dims, &s->step);
        dt_free(k);
        if (rc < 0) return rc;
        for (int b = 0; b < o->nstate; b++) {
            if (o->kind == DT_OPTIM_SGD && !s->has_buf) continue;
            if (!(k = key_of(s->name, bufname(o, b)))) return dt_last_error_code();
            rc = dt_st_list_add(l, prefix, k, DT_F32, 1, &s->numel, b == 0 ? s->s0 : s->s1);
            dt_free(k);
            if (rc < 0) return rc;
        }
    }
    meta_kv kv[NMETA_MAX];
    int nm = hyper_to_meta(o, kv);
    for (int i = 0; i < nm; i++) {
        int rc = dt_st_list_meta(l, prefix, kv[i].key, kv[i].val);
        if (rc < 0) return rc;
    }
    return 0;
}

int dt_optim_save(const dt_optim *o, const char *path)
{
    if (!o || !path) return dt_set_error(DT_EINVAL, "dt_optim_save: NULL argument");
    dt_st_list *l = dt_st_list_new();
    int rc = l ? dt_optim_state_add(o, l, NULL) : dt_last_error_code();
    if (rc == 0) rc = dt_st_list_write(l, path);
    dt_st_list_free(l);
    if (rc < 0) dt_error_wrap(rc, "saving optimizer state to %s", path);
    return rc;
}

/* The metadata value of prefix + key. */
static const char *meta_get(const dt_st_file *f, const char *prefix, const char *key)
{
    char k[96];
    snprintf(k, sizeof k, "%s%s", prefix, key);
    return dt_st_meta_get(f, k);
}

static int meta_double(const dt_st_file *f, const char *path, const char *prefix, const char *key, double *out)
{
    const char *v = meta_get(f, prefix, key);
    if (!v) return dt_set_error(DT_ECORRUPT, "%s: optimizer state has no '%s' in its metadata", path, key);
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno == ERANGE)
        return dt_set_error(DT_ECORRUPT, "%s: metadata '%s' = '%s' is not a number", path, key, v);
    *out = d;
    return 0;
}

static int meta_bool(const dt_st_file *f, const char *path, const char *prefix, const char *key, bool *out)
{
    const char *v = meta_get(f, prefix, key);
    if (v && strcmp(v, "true") == 0) { *out = true; return 0; }
    if (v && strcmp(v, "false") == 0) { *out = false; return 0; }
    return dt_set_error(DT_ECORRUPT, "%s: metadata '%s' is %s%s%s, expected true or false", path, key, v ? "'" : "",
                        v ? v : "missing", v ? "'" : "");
}

/* The slot a state entry "state.<name>.<what>" belongs to, and which buffer
 * (-1 = step, 0/1 = s0/s1); DT_EMISMATCH or DT_ECORRUPT when it fits nothing. */
static int classify(const dt_optim *o, const char *path, const char *key, size_t *slot, int *which)
{
    if (strncmp(key, "state.", 6) != 0) return dt_set_error(DT_ECORRUPT, "%s: unexpected tensor '%s' in optimizer state", path, key);
    const char *rest = key + 6;
    for (size_t i = 0; i < o->n; i++) {
        size_t ln = strlen(o->slots[i].name);
        if (strncmp(rest, o->slots[i].name, ln) != 0 || rest[ln] != '.') continue;
        const char *what = rest + ln + 1;
        if (strcmp(what, "step") == 0) { *slot = i; *which = -1; return 0; }
        for (int k = 0; k < o->nstate; k++)
            if (strcmp(what, bufname(o, k)) == 0) { *slot = i; *which = k; return 0; }
    }
    return dt_set_error(DT_EMISMATCH, "%s: '%s' is state this %s optimizer over these parameters does not have", path, key,
                        dt__optim_kind_name(o->kind));
}

/* Does the entry belong to the optimizer's part of the file? Then *rest is its name
 * without the prefix. */
static bool mine(const char *name, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0) return false;
    *rest = name + n;
    return true;
}

int dt_optim_state_load(dt_optim *o, const dt_st_file *f, const char *prefix, const char *path)
{
    if (!o || !f) return dt_set_error(DT_EINVAL, "dt_optim_state_load: NULL argument");
    if (!prefix) prefix = "";
    if (!path) path = "optimizer state";
    int rc = 0;
    const char *kind = meta_get(f, prefix, "optimizer");
    if (!kind) return dt_set_error(DT_ECORRUPT, "%s: no '%soptimizer' in the metadata: not an optimizer state file", path, prefix);
    if (strcmp(kind, dt__optim_kind_name(o->kind)) != 0) {
        return dt_set_error(DT_EMISMATCH, "%s holds %s state; this optimizer is %s", path, kind, dt__optim_kind_name(o->kind));
    }
    /* hyperparameters */
    dt_sgd_opts so = o->sgd;
    dt_adam_opts ao = o->adam;
    if (o->kind == DT_OPTIM_SGD) {
        DT_CHECK_GOTO(meta_double(f, path, prefix, "lr", &so.lr), rc, out);
        DT_CHECK_GOTO(meta_double(f, path, prefix, "momentum", &so.momentum), rc, out);
        DT_CHECK_GOTO(meta_double(f, path, prefix, "dampening", &so.dampening), rc, out);
        DT_CHECK_GOTO(meta_double(f, path, prefix, "weight_decay", &so.weight_decay), rc, out);
        DT_CHECK_GOTO(meta_bool(f, path, prefix, "nesterov", &so.nesterov), rc, out);
        DT_CHECK_GOTO(meta_bool(f, path, prefix, "maximize", &so.maximize), rc, out);
        if (dt__optim_check_sgd(&so) < 0) { rc = dt_error_wrap(DT_ECORRUPT, "%s", path); goto out; }
        if ((so.momentum != 0) != (o->nstate == 1)) {
            rc = dt_set_error(DT_EMISMATCH, "%s: momentum %g in the file, %g in this optimizer (one has a momentum buffer, the other not)",
                              path, so.momentum, o->sgd.momentum);
            goto out;
        }
    } else {
        DT_CHECK_GOTO(meta_double(f, path, prefix, "lr", &ao.lr), rc, out);
        DT_CHECK_GOTO(meta_double(f, path, prefix, "beta1", &ao.beta1), rc, out);
        DT_CHECK_GOTO(meta_double(f, path, prefix, "beta2", &ao.beta2), rc, out);
        DT_CHECK_GOTO(meta_double(f, path, prefix, "eps", &ao.eps), rc, out);
        DT_CHECK_GOTO(meta_double(f, path, prefix, "weight_decay", &ao.weight_decay), rc, out);
        DT_CHECK_GOTO(meta_bool(f, path, prefix, "maximize", &ao.maximize), rc, out);
        if (dt__optim_check_adam(&ao, dt__optim_kind_name(o->kind)) < 0) { rc = dt_error_wrap(DT_ECORRUPT, "%s", path); goto out; }
    }
    /* pass 1: every entry belongs to a slot, with the right dtype and size; every
     * slot with a step has all its buffers (SGD's momentum buffer may be absent
     * only when the optimizer has none) and no buffers without a step */
    size_t nt = dt_st_count(f);
    for (size_t i = 0; i < nt; i++) {
        const dt_st_tensor *t = dt_st_at(f, i);
        size_t s;
        int which;
        const char *name;
        if (!mine(t->name, prefix, &name)) continue;
        DT_CHECK_GOTO(classify(o, path, name, &s, &which), rc, out);
        if (which < 0) {
            int64_t st;
            if (t->dtype != DT_I64 || t->ndim != 0) { rc = dt_set_error(DT_ECORRUPT, "%s: '%s' is not an I64 scalar", path, t->name); goto out; }
            memcpy(&st, t->data, 8);
            if (st < 1) { rc = dt_set_error(DT_ECORRUPT, "%s: '%s' = %lld is not a step count", path, t->name, (long long)st); goto out; }
        } else if (t->dtype != DT_F32 || t->ndim != 1 || t->shape[0] != o->slots[s].numel) {
            rc = dt_set_error(DT_ESHAPE, "%s: '%s' is %s of %lld elements, parameter '%s' has %lld f32", path, t->name,
                              dt_dtype_name(t->dtype), (long long)t->numel, o->slots[s].name, (long long)o->slots[s].numel);
            goto out;
        }
    }
    for (size_t i = 0; i < o->n; i++) {
        char *k = key_of(o->slots[i].name, "step"), full[512];
        if (!k) { rc = dt_error_wrap(DT_ENOMEM, "loading optimizer state"); goto out; }
        snprintf(full, sizeof full, "%s%s", prefix, k);
        int has_step = dt_st_find(f, full) != NULL;
        dt_free(k);
        for (int b = 0; b < o->nstate; b++) {
            k = key_of(o->slots[i].name, bufname(o, b));
            if (!k) { rc = dt_error_wrap(DT_ENOMEM, "loading optimizer state"); goto out; }
            snprintf(full, sizeof full, "%s%s", prefix, k);
            int has = dt_st_find(f, full) != NULL;
            dt_free(k);
            if (has && !has_step) {
                rc = dt_set_error(DT_ECORRUPT, "%s: parameter '%s' has a %s but no step", path, o->slots[i].name, bufname(o, b));
                goto out;
            }
            if (!has && has_step && o->kind != DT_OPTIM_SGD) {
                rc = dt_set_error(DT_ECORRUPT, "%s: parameter '%s' has a step but no %s", path, o->slots[i].name, bufname(o, b));
                goto out;
            }
        }
    }
    /* pass 2: nothing can fail now; forget the old state, take the file's */
    if (o->kind == DT_OPTIM_SGD) o->sgd = so;
    else o->adam = ao;
    for (size_t i = 0; i < o->n; i++) {
        dt__oslot *s = &o->slots[i];
        s->step = 0;
        s->has_buf = false;
        if (o->nstate >= 1 && s->numel) memset(s->s0, 0, (size_t)s->numel * sizeof(float));
        if (o->nstate >= 2 && s->numel) memset(s->s1, 0, (size_t)s->numel * sizeof(float));
    }
    for (size_t i = 0; i < nt; i++) {
        const dt_st_tensor *t = dt_st_at(f, i);
        size_t s;
        int which;
        const char *name;
        if (!mine(t->name, prefix, &name)) continue;
        classify(o, path, name, &s, &which);
        if (which < 0) memcpy(&o->slots[s].step, t->data, 8);
        else {
            if (t->nbytes) memcpy(which == 0 ? o->slots[s].s0 : o->slots[s].s1, t->data, (size_t)t->nbytes);
            if (o->kind == DT_OPTIM_SGD) o->slots[s].has_buf = true;
        }
    }
    dt_clear_error();
out:
    return rc;
}

int dt_optim_load(dt_optim *o, const char *path)
{
    if (!o || !path) return dt_set_error(DT_EINVAL, "dt_optim_load: NULL argument");
    dt_st_file *f = dt_st_open(path);
    if (!f) return dt_error_wrap(dt_last_error_code(), "loading optimizer state");
    int rc = dt_optim_state_load(o, f, "", path);
    dt_st_close(f);
    return rc;
}
