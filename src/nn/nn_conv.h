/* The conv2d kernels (k_conv.c) shared with their op (f_conv.c) and the tests: the
 * geometry of one convolution and the im2col + GEMM fast path. Its direct-loop
 * reference lives in tests/nn/test_nn_ops_kernels.c, which compares the two. Kernels
 * take contiguous f32 or f64 buffers of one dtype; the op makes the copies and casts. */
#ifndef DT_NN_CONV_H
#define DT_NN_CONV_H

#include <dtrain/tensor.h>

/* x (N, C, H, W), w (O, C, kh, kw), out (N, O, Ho, Wo); zero padding ph, pw. */
typedef struct {
    int64_t N, C, H, W;
    int64_t O, kh, kw;
    int64_t sh, sw, ph, pw;
    int64_t Ho, Wo;
} dt__conv_geom;

/* out <- conv(x, w) + b (b may be NULL). dtype DT_F32 or DT_F64. 0, or DT_ENOMEM for
 * the column buffer. */
int dt__conv2d_fwd(const dt__conv_geom *g, dt_dtype dtype, const void *x, const void *w, const void *b, void *out);
/* From gout (N, O, Ho, Wo): dx (N, C, H, W), dw (O, C, kh, kw), db (O), each
 * overwritten, each may be NULL (not wanted). x is needed for dw, w for dx. */
int dt__conv2d_bw(const dt__conv_geom *g, dt_dtype dtype, const void *x, const void *w, const void *gout,
                  void *dx, void *dw, void *db);

/* k_conv_shift.c: stride 1, f32, through dt__sgemm_rows. Whether it applies (f32, stride
 * 1, our GEMM available); whether its dx applies too (padding at most kernel - 1). */
bool dt__conv2d_shift_ok(const dt__conv_geom *g, dt_dtype dtype);
bool dt__conv2d_shift_dx_ok(const dt__conv_geom *g);
/* As dt__conv2d_fwd / dt__conv2d_bw (without db; dx only when shift_dx_ok), g->N >= 1. */
int dt__conv2d_fwd_shift(const dt__conv_geom *g, const float *x, const float *w, const float *b, float *out);
int dt__conv2d_bw_shift(const dt__conv_geom *g, const float *x, const float *w, const float *gout, float *dx,
                        float *dw);

/* f_pool.c's 2x2 stride-2 max pooling of `planes` (H, W) f32 planes into (H/2, W/2):
 * y and each maximum's plane offset in idx (first maximum; NaN wins). Backward writes
 * all of gx: gy at idx, 0 elsewhere; an idx of -1 passes nothing (a masked gradient). */
void dt__max22_f32(int64_t planes, int64_t H, int64_t W, const float *x, float *y, int32_t *idx);
void dt__maxb22_f32(int64_t planes, int64_t H, int64_t W, const float *gy, const int32_t *idx, float *gx);

/* k_conv_shift.c: max_pool2d(relu(conv2d(x, w, b)), 2, 2) when dt__conv2d_shift_ok and
 * dt__conv2d_shift_dx_ok, without the full-size activations: per image, the conv output
 * goes through bias and relu into a buffer in cache and is pooled there. y, idx (N, O,
 * Ho/2, Wo/2); idx is -1 where y <= 0 or NaN (relu passes no gradient there). Backward
 * from gy: dx, dw, db (each may be NULL), the same numbers as the three ops in turn. */
int dt__conv2d_relu_pool_fwd(const dt__conv_geom *g, const float *x, const float *w, const float *b, float *y,
                             int32_t *idx);
int dt__conv2d_relu_pool_bw(const dt__conv_geom *g, const float *x, const float *w, const float *gy,
                            const int32_t *idx, float *dx, float *dw, float *db);

#endif /* DT_NN_CONV_H */
