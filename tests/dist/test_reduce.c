/* The vectorised f32 sum and average (dt__reduce_n, DT_RED_SUM and DT_RED_AVG)
 * against the plain rank-order loop (then / nin for the average): bit for bit,
 * 1-5 inputs, counts around the vector width and the block size, misaligned
 * views, and out aliasing each input. */
#include "dist/reduce.h"
#include "dt_test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static float val(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (float)((int)(*s >> 8) % 20001 - 10000) * 1.37e-3f; /* rounding differs with the order */
}

static void check_f32(dt_redop op)
{
    static const size_t counts[] = {0, 1, 7, 15, 16, 17, 33, 255, 511, 512, 513, 1024, 1031, 4099};
    enum { MAXN = 5, MAXC = 4099 + 3 };
    float *buf = malloc((MAXN + 2) * MAXC * sizeof(float)), *want = malloc(MAXC * sizeof(float));
    unsigned seed = 1;
    for (int nin = 1; nin <= MAXN; nin++)
        for (size_t ci = 0; ci < sizeof counts / sizeof counts[0]; ci++)
            for (int off = 0; off < 3; off += 2)          /* views 0 or 2 floats off alignment */
                for (int alias = -1; alias < nin; alias++) {  /* -1: out apart, else out == in[alias] */
                    size_t count = counts[ci];
                    const void *in[MAXN];
                    for (int k = 0; k < nin; k++) {
                        float *x = buf + (size_t)k * MAXC + off;
                        for (size_t i = 0; i < count; i++) x[i] = val(&seed);
                        in[k] = x;
                    }
                    dt__reduce_sum_f32_ref(want, in, nin, count);
                    if (op == DT_RED_AVG)
                        for (size_t i = 0; i < count; i++) want[i] /= (float)nin;
                    float *out = alias < 0 ? buf + (size_t)MAXN * MAXC + off : (float *)in[alias];
                    dt__reduce_n(out, in, nin, count, DT_F32, op, 1.0);
                    for (size_t i = 0; i < count; i++)
                        DT_ASSERT_MSG(memcmp(&out[i], &want[i], sizeof(float)) == 0,
                                      "%s nin %d count %zu off %d alias %d: out[%zu] = %.9g, want %.9g",
                                      dt_redop_name(op), nin, count, off, alias, i, out[i], want[i]);
                }
    free(buf);
    free(want);
}

static void t_sum_f32(void) { check_f32(DT_RED_SUM); }
static void t_avg_f32(void) { check_f32(DT_RED_AVG); }

int main(void)
{
    DT_RUN(t_sum_f32);
    DT_RUN(t_avg_f32);
    return DT_TEST_END();
}
