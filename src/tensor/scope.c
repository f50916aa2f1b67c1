/* Scopes: the rule for temporaries. Each thread has a stack of up to 64 open scopes;
 * each scope is a list of the references it holds. A tensor records which scope
 * holds its creation reference and where (scope_depth, scope_slot), so dt_keep and
 * an early free find it in O(1). Does not retain anything itself: it only takes over
 * references the creating functions hand it. */
#include "tensor/tensor_internal.h"

#define MAX_DEPTH 64

typedef struct {
    dt_tensor **items;   /* [cap]; NULL entries are references moved out */
    int32_t n, cap;
} scope;

static _Thread_local scope tl_scopes[MAX_DEPTH + 1];   /* [1..depth] are open */
static _Thread_local int tl_depth;

int dt_scope_depth(void) { return tl_depth; }

int dt_scope_begin(void)
{
    if (tl_depth >= MAX_DEPTH) return dt_set_error(DT_ERANGE, "dt_scope_begin: more than %d nested scopes", MAX_DEPTH);
    tl_depth++;
    tl_scopes[tl_depth].n = 0;
    return tl_depth;
}

void dt_scope_end(int token)
{
    if (token < 1 || token > tl_depth) return;
    while (tl_depth >= token) {
        scope *s = &tl_scopes[tl_depth];
        tl_depth--;
        /* Newest first: results are released before the inputs they were made from. */
        for (int32_t i = s->n - 1; i >= 0; i--) {
            dt_tensor *t = s->items[i];
            if (!t) continue;
            s->items[i] = NULL;
            t->scope_depth = 0;
            dt_tensor_release(t);
        }
        dt_free(s->items);
        s->items = NULL;
        s->n = s->cap = 0;
    }
}

static int push(int depth, dt_tensor *t)
{
    scope *s = &tl_scopes[depth];
    if (s->n == s->cap) {
        int32_t cap = s->cap ? s->cap * 2 : 64;
        dt_tensor **items = dt_realloc(s->items, (size_t)cap * sizeof *items, DT_MEM_OTHER);
        if (!items) return DT_ENOMEM;
        s->items = items;
        s->cap = cap;
    }
    t->scope_depth = depth;
    t->scope_slot = s->n;
    s->items[s->n++] = t;
    return 0;
}

dt_tensor *dt__adopt(dt_tensor *t)
{
    if (!t || tl_depth == 0) return t;
    if (push(tl_depth, t) < 0) {
        dt_tensor_release(t);
        return NULL;
    }
    return t;
}

void dt__scope_forget(dt_tensor *t)
{
    int d = t->scope_depth;
    if (d >= 1 && d <= tl_depth && t->scope_slot < tl_scopes[d].n && tl_scopes[d].items[t->scope_slot] == t)
        tl_scopes[d].items[t->scope_slot] = NULL;
    t->scope_depth = 0;
}

dt_tensor *dt_keep(dt_tensor *t)
{
    if (!t || !t->scope_depth) return t;
    int d = t->scope_depth;
    dt__scope_forget(t);
    if (d > 1 && d - 1 <= tl_depth && push(d - 1, t) < 0) {
        /* The enclosing scope cannot grow: the caller gets the reference (a leak at
         * worst, never a dangling pointer). */
        dt_log(DT_LOG_ERROR, DT_SUB_TENSOR, "dt_keep: out of memory moving a tensor to the enclosing scope; it is now the caller's");
    }
    return t;
}

void dt_tensor_discard(dt_tensor *t)
{
    if (!t) return;
    if (t->scope_depth) dt__scope_forget(t);
    dt_tensor_release(t);
}
