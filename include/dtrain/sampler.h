/* dtrain sampler: PyTorch's CPU random generator (MT19937), torch.randperm with it,
 * and DistributedSampler's index lists, reproduced exactly so that a dtrain job sees
 * the same data order as the torch job with the same seed, world size and epoch.
 * SequentialSampler, RandomSampler with a generator, and fixed index lists share the
 * dt_sampler handle. Index lists only: datasets and batching (the DataLoader, data.h)
 * are built on top. */
#ifndef DTRAIN_SAMPLER_H
#define DTRAIN_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ MT19937
 * The 32-bit Mersenne Twister, as torch.Generator().manual_seed(seed): the standard
 * init_genrand with seed & 0xffffffff. A plain value; copy it to fork a stream. */
typedef struct {
    uint32_t state[624];
    int next;             /* index of the next word of state to temper; 624: regenerate */
} dt_mt19937;

void dt_mt19937_seed(dt_mt19937 *g, uint64_t seed);
uint32_t dt_mt19937_next(dt_mt19937 *g);

/* torch.randint(low, high, (n,), generator=g) (int64) on the CPU: each value is
 * low + draw % (high - low), where draw is one next() when the range is below 2^32 and
 * (next() << 32 | next()) otherwise. DT_EINVAL when high <= low. */
int dt_randint(dt_mt19937 *g, int64_t low, int64_t high, int64_t n, int64_t *out);

/* torch.randperm(n, generator=g) on the CPU: out = 0..n-1, then for i = 0..n-2 swap
 * out[i] and out[i + next() % (n - i)]. Advances g by n - 1 draws (none for n <= 1).
 * out has room for n. */
void dt_randperm(dt_mt19937 *g, int64_t n, int64_t *out);

/* -------------------------------------------------- DistributedSampler */
typedef struct {
    int64_t num_replicas;  /* world size R >= 1 */
    int64_t rank;          /* 0 .. R-1 */
    bool shuffle;          /* randperm seeded with seed + epoch; otherwise 0..n-1 */
    int64_t seed;
    bool drop_last;        /* keep floor(n/R)*R indices; otherwise pad to ceil(n/R)*R */
    bool uneven;           /* neither pad nor drop: ranks get ceil or floor of n/R (not torch's) */
} dt_sampler_opts;
#define DT_SAMPLER_OPTS_INIT {.num_replicas = 1, .rank = 0, .shuffle = true, .seed = 0, .drop_last = false, .uneven = false}

/* Indices rank takes in epoch, exactly torch.utils.data.DistributedSampler's:
 * order = randperm(n) with seed + epoch (or 0..n-1); without drop_last it is padded
 * to ceil(n/R)*R by repeating its start (the whole list again as often as needed),
 * with drop_last cut to floor(n/R)*R; rank r takes positions r, r+R, r+2R, ...
 * With uneven, the order is neither padded nor cut. Writes dt_sampler_count() indices
 * into out. DT_EINVAL for n < 0, R < 1, rank outside 0..R-1, drop_last with uneven;
 * DT_ENOMEM. */
int dt_sampler_indices_for(int64_t n, const dt_sampler_opts *o, int64_t epoch, int64_t *out);
/* How many indices rank gets per epoch (torch's num_samples; for uneven, ceil or
 * floor of n/R); -1 with DT_EINVAL for the options dt_sampler_indices_for rejects. */
int64_t dt_sampler_count(int64_t n, const dt_sampler_opts *o);

/* A sampler over a dataset of n items: set_epoch, then read this epoch's indices.
 * One handle type for every kind below; the DataLoader (data.h) takes any of them.
 * Every constructor returns NULL + DT_EINVAL/DT_ENOMEM on failure; the caller owns
 * the result and frees it with dt_sampler_free. All start at epoch 0. */
typedef struct dt_sampler dt_sampler;
/* DistributedSampler (above). */
dt_sampler *dt_sampler_distributed(int64_t n, dt_sampler_opts o);
/* SequentialSampler: 0 .. n-1 in every epoch. */
dt_sampler *dt_sampler_sequential(int64_t n);
/* A fixed list of count indices (copied), the same in every epoch: e.g. the reference
 * GPT's sequential window starts, or a subset. */
dt_sampler *dt_sampler_from_list(const int64_t *indices, int64_t count);

/* RandomSampler(data, replacement, num_samples, generator=torch.Generator().manual_seed(seed)). */
typedef struct {
    bool replacement;      /* false: randperm(n) passes; true: randint(0, n) draws */
    int64_t num_samples;   /* indices per epoch; 0: n */
    int64_t seed;          /* the generator's seed (torch takes it mod 2^64, then its low 32 bits) */
    int64_t skip;          /* generator draws to discard before epoch 0: those another user of
                              the same generator took first (>= 0) */
} dt_random_sampler_opts;
#define DT_RANDOM_SAMPLER_OPTS_INIT {.replacement = false, .num_samples = 0, .seed = 0, .skip = 0}
/* torch seeds the generator once and it runs on from epoch to epoch, so epoch e is
 * torch's (e+1)-th pass over the sampler: without replacement, num_samples / n + 1
 * randperm(n)s, concatenated and cut to num_samples (torch draws the last one even
 * when nothing of it is used, so the draws count); with replacement, num_samples
 * values of torch.randint(0, n, generator=g) (the 32-at-a-time chunks torch draws
 * in make no difference). set_epoch(e) replays the e earlier passes' draws.
 * The reference GPT job's random windows are this sampler with replacement over the
 * dt_dataset_tokens of all len - T - 1 starts (see data.h). DT_EINVAL for n < 0,
 * num_samples < 0, skip < 0, or num_samples > 0 over an empty dataset. */
dt_sampler *dt_sampler_random(int64_t n, dt_random_sampler_opts o);

void dt_sampler_free(dt_sampler *s);       /* NULL is a no-op */
/* Recompute the order for epoch (as set_epoch; the same epoch gives the same order).
 * No effect on the order of sequential and list samplers. DT_EINVAL for a random
 * sampler's negative epoch. */
int dt_sampler_set_epoch(dt_sampler *s, int64_t epoch);
int64_t dt_sampler_epoch(const dt_sampler *s);
int64_t dt_sampler_len(const dt_sampler *s);
/* This epoch's indices, dt_sampler_len() of them. Borrowed: valid until the next
 * dt_sampler_set_epoch or dt_sampler_free. */
const int64_t *dt_sampler_indices(const dt_sampler *s);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_SAMPLER_H */
