/* dtrain token streams: token files (u8 or u16, memory-mapped), the fortunes corpus of
 * the reference GPT job, train/validation splits, and the job's sequential window rule.
 * Produces token windows (int64, as torch.long); worker threads and tokenisers are
 * not here. */
#ifndef DTRAIN_TOKENS_H
#define DTRAIN_TOKENS_H

#include <dtrain/sampler.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dt_tokens dt_tokens;

/* Map a file of tokens, width 1 (u8) or 2 (u16 little-endian, as numpy's uint16 .bin
 * files). NULL + DT_ENOTFOUND, DT_EINVAL (bad width), DT_ECORRUPT (a u16 file of odd
 * size), DT_ESYS/DT_EIO, DT_ENOMEM. Free with dt_tokens_free. */
dt_tokens *dt_tokens_open(const char *path, int width);

/* The corpus of the reference GPT job (bench/torch_gpt_ddp.py): the files of dir
 * (default /usr/share/games/fortunes when NULL) that are regular files (symlinks
 * followed), do not start with '.', and do not end in ".dat" or ".u8", sorted by
 * name, concatenated as bytes (width 1). NULL + DT_ENOTFOUND when dir is missing or
 * holds no such file, DT_EIO, DT_ENOMEM. */
dt_tokens *dt_tokens_fortunes(const char *dir);

void dt_tokens_free(dt_tokens *t);            /* NULL is a no-op */
int64_t dt_tokens_len(const dt_tokens *t);    /* number of tokens */
int dt_tokens_width(const dt_tokens *t);      /* 1 or 2 */
const void *dt_tokens_data(const dt_tokens *t); /* borrowed, len * width bytes */
uint32_t dt_tokens_at(const dt_tokens *t, int64_t i);

/* A borrowed range [begin, begin + len) of a token stream. */
typedef struct {
    const dt_tokens *src;
    int64_t begin, len;
} dt_token_span;

dt_token_span dt_tokens_all(const dt_tokens *t);
/* The reference job's split: n_val = len / val_div (10 there); train = data[:-n_val],
 * val = data[-n_val:] with Python's slicing, so n_val == 0 gives an empty train and
 * everything as val, as in the Python. */
void dt_tokens_split(const dt_tokens *t, int64_t val_div, dt_token_span *train, dt_token_span *val);

/* Start of window j of batch k of rank r in the sequential order:
 * (((k*world + r)*B + j) * T) mod (len - T - 1). -1 (and DT_EINVAL) when len <= T + 1
 * or an argument is out of range. */
int64_t dt_tokens_seq_start(int64_t len, int64_t k, int64_t world, int64_t rank, int64_t B, int64_t j, int64_t T);

/* x = s[start .. start+T), y = s[start+1 .. start+T+1), as int64 (T each).
 * DT_ERANGE when the window does not fit in s. */
int dt_tokens_window(dt_token_span s, int64_t start, int64_t T, int64_t *x, int64_t *y);

/* Batch k of rank r (B windows, x and y each B*T int64, row-major (B, T)) in the
 * sequential order over s. */
int dt_tokens_seq_batch(dt_token_span s, int64_t k, int64_t world, int64_t rank, int64_t B, int64_t T, int64_t *x,
                        int64_t *y);

/* The reference job's random order: starts = torch.randint(len - T - 1, (B,),
 * generator=g), then the B windows (x, y as in dt_tokens_seq_batch). The job seeds
 * one generator per rank with 1000 + 1000*seed + rank and draws from it for every
 * train batch, then for its 10 validation batches. DT_EINVAL when len <= T + 1. */
int dt_tokens_random_batch(dt_token_span s, dt_mt19937 *g, int64_t B, int64_t T, int64_t *x, int64_t *y);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_TOKENS_H */
