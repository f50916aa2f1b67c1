/* Process groups: making one (the members' backend, or a non-member handle),
 * subgroups, the queries, abort, the shared-buffer allocator, destroy.
 * Rendezvous and init methods are in init.c, running ops in work.c. */
#include "dist/dist_internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

dt_pg *dt__pg_new(const char *backend, dt_store *base, const char *key, const char *name, const int *world_ranks,
                  int nranks, int world_rank, int64_t timeout_ms, int local_rank, int local_size)
{
    dt_pg *pg = dt_calloc(1, sizeof *pg, DT_MEM_COMM);
    if (!pg) return NULL;
    snprintf(pg->key, sizeof pg->key, "%s", key);
    snprintf(pg->name, sizeof pg->name, "%s", name);
    pg->world_rank = world_rank;
    pg->nranks = nranks;
    pg->timeout_ms = timeout_ms;
    pg->local_rank = local_rank;
    pg->local_size = local_size;
    pg->rank = pg->size = -1;
    pg->detail = strcasecmp(dt_param_str(DT_PARAM_DEBUG), "DETAIL") == 0;
    dt__pg_exec_init(pg);
    pg->world_ranks = dt_alloc((size_t)nranks * sizeof(int), DT_MEM_COMM);
    if (!pg->world_ranks) goto fail;
    memcpy(pg->world_ranks, world_ranks, (size_t)nranks * sizeof(int));
    for (int i = 0; i < nranks; i++)
        if (world_ranks[i] == world_rank) pg->rank = i;
    pg->member = pg->rank >= 0;
    pg->base = dt_store_retain(base);
    pg->store = dt_store_prefix(base, key);
    if (!pg->store) goto fail;
    if (!pg->member) return pg;
    pg->size = nranks;
    pg->ops = dt__backend_find(backend);
    if (!pg->ops) {
        dt_set_error(DT_EINVAL, "unknown backend '%s'", backend);
        goto fail;
    }
    dt__backend_init init = {.store = pg->store, .rank = pg->rank, .size = pg->size, .group_name = pg->name,
                             .timeout_ms = timeout_ms};
    pthread_mutex_lock(&dt__store_mu);
    int rc = pg->ops->create(&init, &pg->be);
    pthread_mutex_unlock(&dt__store_mu);
    if (rc < 0) {
        pg->ops = NULL;
        dt_error_wrap(rc, "group '%s' (rank %d of %d, backend %s)", pg->name, pg->rank, pg->size, backend);
        goto fail;
    }
    return pg;
fail:
    dt_destroy_process_group(pg);
    return NULL;
}

void dt_destroy_process_group(dt_pg *pg)
{
    if (!pg) return;
    int code = dt_last_error_code();
    char msg[DT__MSG_CAP];
    snprintf(msg, sizeof msg, "%s", dt_last_error());
    dt__pg_stop(pg);
    if (pg->ops) pg->ops->destroy(pg->be);
    dt_store_release(pg->store);
    dt_store_release(pg->base);
    dt_free(pg->world_ranks);
    dt_free(pg);
    if (code) dt_set_error(code, "%s", msg); /* keep a failed constructor's message */
}

dt_pg *dt_new_group(dt_pg *pg, const int *ranks, int nranks, const dt_pg_opts *opts)
{
    if (!pg || !ranks || nranks <= 0) {
        dt_set_error(DT_EINVAL, "dt_new_group: %s", !pg ? "NULL parent group" : "empty rank list");
        return NULL;
    }
    if (!pg->member) {
        dt_set_error(DT_ENOTMEMBER, "dt_new_group: world rank %d is not a member of the parent group '%s'",
                     pg->world_rank, pg->name);
        return NULL;
    }
    for (int i = 0; i < nranks; i++) {
        if (dt_pg_group_rank(pg, ranks[i]) < 0) {
            dt_set_error(DT_EINVAL, "dt_new_group: world rank %d (entry %d) is not in group '%s'", ranks[i], i, pg->name);
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (ranks[j] == ranks[i]) {
                dt_set_error(DT_EINVAL, "dt_new_group: world rank %d listed twice", ranks[i]);
                return NULL;
            }
    }
    int child = ++pg->children;
    char key[sizeof pg->key], name[sizeof pg->name];
    int kl = snprintf(key, sizeof key, "%.40s.%d", pg->key, child);
    if (kl < 0 || (size_t)kl >= sizeof key - 8) {
        dt_set_error(DT_EINVAL, "dt_new_group: subgroups nested too deeply (%s)", pg->key);
        return NULL;
    }
    if (opts && opts->name) snprintf(name, sizeof name, "%.60s", opts->name);
    else snprintf(name, sizeof name, "group%.50s", key + 2);
    int64_t timeout = opts && opts->timeout_ms >= 0 ? opts->timeout_ms : pg->timeout_ms;
    return dt__pg_new(pg->ops->name, pg->base, key, name, ranks, nranks, pg->world_rank, timeout, pg->local_rank,
                      pg->local_size);
}

int dt_pg_rank(const dt_pg *pg) { return pg && pg->member ? pg->rank : -1; }
int dt_pg_size(const dt_pg *pg) { return pg && pg->member ? pg->size : -1; }
int dt_pg_local_rank(const dt_pg *pg) { return pg ? pg->local_rank : -1; }
int dt_pg_local_size(const dt_pg *pg) { return pg ? pg->local_size : -1; }
bool dt_pg_is_member(const dt_pg *pg) { return pg && pg->member; }
const char *dt_pg_backend(const dt_pg *pg) { return pg && pg->ops ? pg->ops->name : "none"; }
const char *dt_pg_backend_desc(const dt_pg *pg)
{
    if (!pg || !pg->ops) return "none";
    return pg->ops->describe ? pg->ops->describe(pg->be) : pg->ops->name;
}
const char *dt_pg_name(const dt_pg *pg) { return pg ? pg->name : "?"; }
dt_store *dt_pg_store(const dt_pg *pg) { return pg ? pg->store : NULL; }

int dt_pg_world_rank(const dt_pg *pg, int group_rank)
{
    if (!pg || group_rank < 0 || group_rank >= pg->nranks)
        return dt_set_error(DT_ERANGE, "group rank %d is outside group '%s' (%d ranks)", group_rank,
                            pg ? pg->name : "?", pg ? pg->nranks : 0);
    return pg->world_ranks[group_rank];
}

int dt_pg_group_rank(const dt_pg *pg, int world_rank)
{
    for (int i = 0; pg && i < pg->nranks; i++)
        if (pg->world_ranks[i] == world_rank) return i;
    return dt_set_error(DT_ENOTMEMBER, "world rank %d is not in group '%s'", world_rank, pg ? pg->name : "?");
}

void dt_pg_set_timeout(dt_pg *pg, int64_t timeout_ms)
{
    if (!pg) return;
    if (timeout_ms < 0) {
        int64_t s = 1800;
        dt_param_int(DT_PARAM_TIMEOUT, &s);
        timeout_ms = s * 1000;
    }
    pg->timeout_ms = timeout_ms;
}

int dt_pg_error(const dt_pg *pg)
{
    if (!pg) return DT_EINVAL;
    int code = atomic_load(&pg->failed);
    if (code) dt__reraise(code, pg->fail_msg);
    return code;
}

void dt_pg_abort(dt_pg *pg)
{
    if (!pg || !pg->member) return;
    char msg[128];
    snprintf(msg, sizeof msg, "aborted by dt_pg_abort on rank %d", pg->rank);
    dt__pg_set_failed(pg, DT_EABORTED, msg);
    if (pg->ops) pg->ops->abort(pg->be);
}

void *dt_pg_alloc(dt_pg *pg, size_t bytes)
{
    if (dt__pg_usable(pg, "dt_pg_alloc") < 0) return NULL;
    if (!pg->ops->alloc) {
        dt_set_error(DT_EUNSUPPORTED, "dt_pg_alloc: backend %s has no shared buffers", pg->ops->name);
        return NULL;
    }
    return pg->ops->alloc(pg->be, bytes);
}

void dt_pg_free(dt_pg *pg, void *p)
{
    if (p && pg && pg->ops && pg->ops->free) pg->ops->free(pg->be, p);
}
