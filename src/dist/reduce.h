/* Reduction kernels shared by every backend: combine n input buffers
 * elementwise into one, in input order, so every rank computing the same
 * reduction gets the same bits. Does not move data between ranks. */
#ifndef DTRAIN_DIST_REDUCE_H
#define DTRAIN_DIST_REDUCE_H

#include <dtrain/dist.h>

/* DT_EINVAL (with a message) when op does not apply to dtype: bitwise ops
 * need integers, AVG and PREMUL_SUM floating types. */
int dt__redop_check(dt_dtype dtype, dt_redop op);

/* out[i] = in[0][i] (op) in[1][i] (op) ... in[nin-1][i] for i < count.
 * AVG divides the sum by nin; PREMUL_SUM sums premul * in[k][i]. bf16 and f16
 * accumulate in f32 and round once. out may be one of the inputs (the same
 * elements), not a shifted view of one. op must have passed dt__redop_check. */
void dt__reduce_n(void *out, const void *const *in, int nin, size_t count, dt_dtype dtype,
                  dt_redop op, double premul);

/* The plain loop the vectorised f32 sum is compared with in the tests. */
void dt__reduce_sum_f32_ref(float *out, const void *const *in, int nin, size_t count);

#endif /* DTRAIN_DIST_REDUCE_H */
