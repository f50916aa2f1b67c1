/* MT19937 (torch's CPU generator), randperm and DistributedSampler index lists,
 * following torch 1.13 (aten randperm_cpu, torch/utils/data/distributed.py) exactly.
 * Produces indices only; it does not touch datasets or batches. */
#include <dtrain/sampler.h>
#include <dtrain/util.h>

#include <string.h>

#define MT_N 624
#define MT_M 397

void dt_mt19937_seed(dt_mt19937 *g, uint64_t seed)
{
    g->state[0] = (uint32_t)(seed & 0xffffffffu);
    for (int i = 1; i < MT_N; i++)
        g->state[i] = 1812433253u * (g->state[i - 1] ^ (g->state[i - 1] >> 30)) + (uint32_t)i;
    g->next = MT_N;
}

static void mt_twist(dt_mt19937 *g)
{
    uint32_t *s = g->state;
    for (int i = 0; i < MT_N; i++) {
        uint32_t y = (s[i] & 0x80000000u) | (s[(i + 1) % MT_N] & 0x7fffffffu);
        s[i] = s[(i + MT_M) % MT_N] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    g->next = 0;
}

uint32_t dt_mt19937_next(dt_mt19937 *g)
{
    if (g->next >= MT_N) mt_twist(g);
    uint32_t y = g->state[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

int dt_randint(dt_mt19937 *g, int64_t low, int64_t high, int64_t n, int64_t *out)
{
    if (high <= low)
        return dt_set_error(DT_EINVAL, "randint: high %lld must be above low %lld", (long long)high, (long long)low);
    uint64_t range = (uint64_t)high - (uint64_t)low;
    for (int64_t i = 0; i < n; i++) {
        uint64_t v;
        if (range >= (UINT64_C(1) << 32)) {
            uint64_t hi = dt_mt19937_next(g), lo = dt_mt19937_next(g);
            v = hi << 32 | lo;
        } else {
            v = dt_mt19937_next(g);
        }
        out[i] = (int64_t)((uint64_t)low + v % range);
    }
    return 0;
}

void dt_randperm(dt_mt19937 *g, int64_t n, int64_t *out)
{
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = 0; i < n - 1; i++) {
        int64_t z = (int64_t)((uint64_t)dt_mt19937_next(g) % (uint64_t)(n - i));
        int64_t t = out[i];
        out[i] = out[z + i];
        out[z + i] = t;
    }
}

static int check_opts(int64_t n, const dt_sampler_opts *o)
{
    if (!o) return dt_set_error(DT_EINVAL, "sampler: NULL options");
    if (n < 0) return dt_set_error(DT_EINVAL, "sampler: dataset size %lld < 0", (long long)n);
    if (o->num_replicas < 1) return dt_set_error(DT_EINVAL, "sampler: num_replicas %lld < 1", (long long)o->num_replicas);
    if (o->rank < 0 || o->rank >= o->num_replicas)
        return dt_set_error(DT_EINVAL, "sampler: invalid rank %lld, rank should be in the interval [0, %lld]",
                            (long long)o->rank, (long long)o->num_replicas - 1);
    if (o->uneven && o->drop_last) return dt_set_error(DT_EINVAL, "sampler: uneven and drop_last exclude each other");
    return 0;
}

int64_t dt_sampler_count(int64_t n, const dt_sampler_opts *o)
{
    if (check_opts(n, o) < 0) return -1;
    int64_t R = o->num_replicas;
    if (o->uneven) return n / R + (o->rank < n % R ? 1 : 0);
    if (o->drop_last) return n / R;
    return (n + R - 1) / R;
}

int dt_sampler_indices_for(int64_t n, const dt_sampler_opts *o, int64_t epoch, int64_t *out)
{
    DT_CHECK(check_opts(n, o));
    int64_t R = o->num_replicas, r = o->rank, count = dt_sampler_count(n, o);
    if (count == 0) return 0;
    int64_t *order = NULL;
    if (o->shuffle) {
        order = dt_alloc((size_t)n * sizeof *order, DT_MEM_DATA);
        if (!order) return dt_error_wrap(DT_ENOMEM, "sampler over %lld items", (long long)n);
        dt_mt19937 g;
        dt_mt19937_seed(&g, (uint64_t)o->seed + (uint64_t)epoch); /* torch wraps negative seeds mod 2^64 */
        dt_randperm(&g, n, order);
    }
    /* Position k of the padded (or cut) list is position k mod n of the order: padding
     * repeats the order from its start, as often as needed. */
    for (int64_t j = 0; j < count; j++) {
        int64_t k = r + j * R;
        int64_t pos = k % n;
        out[j] = order ? order[pos] : pos;
    }
    dt_free(order);
    return 0;
}

/* ------------------------------------------------------------ dt_sampler
 * One handle for every kind the DataLoader takes; each keeps this epoch's index list
 * (idx, count), recomputed by set_epoch. */
typedef enum { K_DISTRIBUTED, K_SEQUENTIAL, K_RANDOM, K_LIST } sampler_kind;

struct dt_sampler {
    sampler_kind kind;
    int64_t n;                 /* dataset size */
    dt_sampler_opts o;         /* K_DISTRIBUTED */
    dt_random_sampler_opts ro; /* K_RANDOM */
    int64_t epoch;
    int64_t count;
    int64_t *idx;              /* [count]; K_LIST: the caller's list, copied */
};

void dt_sampler_free(dt_sampler *s)
{
    if (!s) return;
    dt_free(s->idx);
    dt_free(s);
}

static dt_sampler *sampler_alloc(sampler_kind kind, int64_t n, int64_t count)
{
    dt_sampler *s = dt_calloc(1, sizeof *s, DT_MEM_DATA);
    if (s) s->idx = dt_alloc((size_t)(count ? count : 1) * sizeof *s->idx, DT_MEM_DATA);
    if (!s || !s->idx) {
        dt_sampler_free(s);
        dt_set_error(DT_ENOMEM, "creating a sampler of %lld indices", (long long)count);
        return NULL;
    }
    s->kind = kind;
    s->n = n;
    s->count = count;
    return s;
}

dt_sampler *dt_sampler_distributed(int64_t n, dt_sampler_opts o)
{
    if (check_opts(n, &o) < 0) return NULL;
    dt_sampler *s = sampler_alloc(K_DISTRIBUTED, n, dt_sampler_count(n, &o));
    if (!s) return NULL;
    s->o = o;
    if (dt_sampler_set_epoch(s, 0) < 0) {
        dt_error_wrap(dt_last_error_code(), "creating a sampler");
        dt_sampler_free(s);
        return NULL;
    }
    return s;
}

dt_sampler *dt_sampler_sequential(int64_t n)
{
    if (n < 0) { dt_set_error(DT_EINVAL, "sequential sampler: dataset size %lld < 0", (long long)n); return NULL; }
    dt_sampler *s = sampler_alloc(K_SEQUENTIAL, n, n);
    if (s)
        for (int64_t i = 0; i < n; i++) s->idx[i] = i;
    return s;
}

dt_sampler *dt_sampler_from_list(const int64_t *indices, int64_t count)
{
    if (count < 0 || (count > 0 && !indices)) {
        dt_set_error(DT_EINVAL, "list sampler: %lld indices at %p", (long long)count, (const void *)indices);
        return NULL;
    }
    dt_sampler *s = sampler_alloc(K_LIST, 0, count);
    if (s && count) memcpy(s->idx, indices, (size_t)count * sizeof *indices);
    return s;
}

/* Draws of torch's generator one epoch of a random sampler takes: randperm(n) takes
 * n - 1 (none for n <= 1) per permutation; randint(n) one per value below 2^32, two
 * above. */
static uint64_t random_epoch_draws(int64_t n, const dt_random_sampler_opts *o)
{
    int64_t ns = o->num_samples ? o->num_samples : n;
    if (o->replacement) return (uint64_t)ns * ((uint64_t)n >= (UINT64_C(1) << 32) ? 2 : 1);
    if (n <= 1) return 0;
    /* torch draws one more randperm for the (possibly empty) remainder */
    return (uint64_t)(ns / n + 1) * (uint64_t)(n - 1);
}

dt_sampler *dt_sampler_random(int64_t n, dt_random_sampler_opts o)
{
    if (n < 0 || o.num_samples < 0 || o.skip < 0 || (n == 0 && o.num_samples > 0)) {
        dt_set_error(DT_EINVAL, "random sampler: dataset size %lld, num_samples %lld, skip %lld", (long long)n,
                     (long long)o.num_samples, (long long)o.skip);
        return NULL;
    }
    dt_sampler *s = sampler_alloc(K_RANDOM, n, o.num_samples ? o.num_samples : n);
    if (!s) return NULL;
    s->ro = o;
    if (dt_sampler_set_epoch(s, 0) < 0) {
        dt_error_wrap(dt_last_error_code(), "creating a random sampler");
        dt_sampler_free(s);
        return NULL;
    }
    return s;
}

/* torch.utils.data.RandomSampler's __iter__ with generator g, once. */
static int random_fill(dt_sampler *s, dt_mt19937 *g)
{
    int64_t n = s->n, ns = s->count;
    if (ns == 0) return 0;
    if (s->ro.replacement) return dt_randint(g, 0, n, ns, s->idx);
    int64_t *perm = dt_alloc((size_t)n * sizeof *perm, DT_MEM_DATA);
    if (!perm) return dt_set_error(DT_ENOMEM, "random sampler over %lld items", (long long)n);
    for (int64_t at = 0; at <= ns; at += n) {  /* <=: the remainder's randperm, even when empty */
        dt_randperm(g, n, perm);
        int64_t take = ns - at < n ? ns - at : n;
        memcpy(s->idx + at, perm, (size_t)take * sizeof *perm);
    }
    dt_free(perm);
    return 0;
}

int dt_sampler_set_epoch(dt_sampler *s, int64_t epoch)
{
    if (!s) return dt_set_error(DT_EINVAL, "dt_sampler_set_epoch: NULL sampler");
    switch (s->kind) {
    case K_DISTRIBUTED:
        DT_CHECK(dt_sampler_indices_for(s->n, &s->o, epoch, s->idx));
        break;
    case K_RANDOM: {
        if (epoch < 0) return dt_set_error(DT_EINVAL, "random sampler: epoch %lld < 0", (long long)epoch);
        /* The generator is seeded once and runs on across epochs, as a RandomSampler
         * given a generator: epoch e is the (e+1)-th pass, so skip e passes' draws. */
        dt_mt19937 g;
        dt_mt19937_seed(&g, (uint64_t)s->ro.seed);
        uint64_t skip = (uint64_t)s->ro.skip + random_epoch_draws(s->n, &s->ro) * (uint64_t)epoch;
        for (uint64_t i = 0; i < skip; i++) dt_mt19937_next(&g);
        DT_CHECK(random_fill(s, &g));
        break;
    }
    case K_SEQUENTIAL:
    case K_LIST:
        break;
    }
    s->epoch = epoch;
    return 0;
}

int64_t dt_sampler_epoch(const dt_sampler *s) { return s ? s->epoch : 0; }
int64_t dt_sampler_len(const dt_sampler *s) { return s ? s->count : 0; }
const int64_t *dt_sampler_indices(const dt_sampler *s) { return s ? s->idx : NULL; }
