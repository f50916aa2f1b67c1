/* The one allocator: 64-byte aligned blocks with a 64-byte header that records
 * the size and category, byte accounting (current and peak, per category), and
 * a test mode that fails the N-th allocation.
 * Does not pool or cache: malloc underneath is fast enough for what goes here
 * (tensors keep their own storage free lists if they need them). */
#include <dtrain/util.h>

#include <stdatomic.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#define DT__ALIGN 64
#define DT__MAGIC 0x64747261u  /* "dtra" */
#define DT__FREED 0xdeadbeefu

typedef struct {
    uint32_t magic;
    uint32_t cat;
    size_t size;
    char pad[DT__ALIGN - sizeof(uint32_t) * 2 - sizeof(size_t)];
} block_hdr;
_Static_assert(sizeof(block_hdr) == DT__ALIGN, "header keeps the payload aligned");

static atomic_llong g_cur[DT_MEM_COUNT], g_peak[DT_MEM_COUNT];
static atomic_llong g_total, g_total_peak, g_allocs, g_frees;
static atomic_llong g_fail_at;       /* fail when g_since reaches it; 0 = off */
static atomic_llong g_since;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static const char *const cat_names[DT_MEM_COUNT] = {
    "other", "param", "grad", "optim", "act", "comm", "data"};

const char *dt_mem_cat_name(dt_mem_cat cat)
{
    return (unsigned)cat < DT_MEM_COUNT ? cat_names[cat] : "?";
}

static void init_once(void)
{
    int64_t n = 0;
    if (dt_param_int(DT_PARAM_ALLOC_FAIL_AT, &n) == 0 && n > 0) {
        atomic_store(&g_since, 0);
        atomic_store(&g_fail_at, n);
    }
    /* Each step frees and re-allocates the same large activation blocks. glibc serves
     * blocks above 128 KiB..32 MiB (its dynamic threshold) with mmap and trims the
     * heap on free, so every step page-faulted them in again: 40% of the CNN's CPU
     * time was the kernel's. Keep them on the heap instead. */
    int64_t keep = 0;
    if (dt_param_int(DT_PARAM_ALLOC_KEEP_MB, &keep) == 0 && keep > 0) {
#if defined(__GLIBC__)
        mallopt(M_MMAP_THRESHOLD, (int)(keep << 20));
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
    }
    dt_clear_error();
}

static void peak_max(atomic_llong *peak, long long v)
{
    long long p = atomic_load(peak);
    while (v > p && !atomic_compare_exchange_weak(peak, &p, v)) {}
}

static void account(dt_mem_cat cat, long long delta)
{
    long long c = atomic_fetch_add(&g_cur[cat], delta) + delta;
    long long t = atomic_fetch_add(&g_total, delta) + delta;
    if (delta > 0) { peak_max(&g_peak[cat], c); peak_max(&g_total_peak, t); }
}

static bool should_fail(void)
{
    long long at = atomic_load(&g_fail_at);
    long long n = atomic_fetch_add(&g_since, 1) + 1;
    return at > 0 && n == at;
}

void *dt_alloc(size_t bytes, dt_mem_cat cat)
{
    pthread_once(&g_once, init_once);
    if ((unsigned)cat >= DT_MEM_COUNT) cat = DT_MEM_OTHER;
    if (should_fail()) {
        dt_set_error(DT_ENOMEM, "allocation of %zu bytes (%s) failed by DTRAIN_ALLOC_FAIL_AT test mode", bytes, cat_names[cat]);
        return NULL;
    }
    if (bytes > SIZE_MAX - DT__ALIGN) {
        dt_set_error(DT_ENOMEM, "allocation of %zu bytes is too large", bytes);
        return NULL;
    }
    void *raw = NULL;
    if (posix_memalign(&raw, DT__ALIGN, bytes + DT__ALIGN) != 0) {
        dt_set_error(DT_ENOMEM, "allocation of %zu bytes (%s) failed", bytes, cat_names[cat]);
        return NULL;
    }
    block_hdr *h = raw;
    h->magic = DT__MAGIC;
    h->cat = (uint32_t)cat;
    h->size = bytes;
    account(cat, (long long)bytes);
    atomic_fetch_add(&g_allocs, 1);
    return (char *)raw + DT__ALIGN;
}

void *dt_calloc(size_t n, size_t size, dt_mem_cat cat)
{
    if (size && n > SIZE_MAX / size) {
        dt_set_error(DT_ENOMEM, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = dt_alloc(n * size, cat);
    if (p) memset(p, 0, n * size);
    return p;
}

static block_hdr *hdr_of(const void *p)
{
    block_hdr *h = (block_hdr *)((char *)p - DT__ALIGN);
    if (h->magic != DT__MAGIC) {
        /* A pointer we did not allocate, or a double free: a bug in the caller
         * that memory safety cannot survive. */
        dt_log(DT_LOG_ERROR, DT_SUB_UTIL, "dt_free/dt_realloc of a pointer not from dt_alloc (or freed twice): %p", p);
        abort();
    }
    return h;
}

size_t dt_alloc_size(const void *p) { return p ? hdr_of(p)->size : 0; }

void dt_free(void *p)
{
    if (!p) return;
    block_hdr *h = hdr_of(p);
    account((dt_mem_cat)h->cat, -(long long)h->size);
    atomic_fetch_add(&g_frees, 1);
    h->magic = DT__FREED;
    free(h);
}

void *dt_realloc(void *p, size_t bytes, dt_mem_cat cat)
{
    if (!p) return dt_alloc(bytes, cat);
    size_t old = hdr_of(p)->size;
    void *q = dt_alloc(bytes, cat);
    if (!q) return NULL;
    memcpy(q, p, old < bytes ? old : bytes);
    dt_free(p);
    return q;
}

char *dt_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = dt_alloc(n, DT_MEM_OTHER);
    if (d) memcpy(d, s, n);
    return d;
}

void dt_mem_get_stats(dt_mem_stats *out)
{
    for (int i = 0; i < DT_MEM_COUNT; i++) {
        out->current[i] = atomic_load(&g_cur[i]);
        out->peak[i] = atomic_load(&g_peak[i]);
    }
    out->total_current = atomic_load(&g_total);
    out->total_peak = atomic_load(&g_total_peak);
    out->allocs = atomic_load(&g_allocs);
    out->frees = atomic_load(&g_frees);
}

void dt_mem_reset_peak(void)
{
    for (int i = 0; i < DT_MEM_COUNT; i++) atomic_store(&g_peak[i], atomic_load(&g_cur[i]));
    atomic_store(&g_total_peak, atomic_load(&g_total));
}

void dt_alloc_fail_at(int64_t n)
{
    pthread_once(&g_once, init_once);
    atomic_store(&g_fail_at, 0);
    atomic_store(&g_since, 0);
    atomic_store(&g_fail_at, n > 0 ? n : 0);
}

int64_t dt_alloc_count_since_arm(void) { return atomic_load(&g_since); }
