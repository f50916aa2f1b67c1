/* CRC32C: the RFC 3720 (iSCSI) vectors, incremental use, and the table-driven and
 * SSE4.2 paths against each other and a bit-at-a-time reference. */
#include "dt_test.h"

static uint32_t bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void vectors(crc_fn f)
{
    uint8_t b[32];
    memset(b, 0, 32);
    DT_ASSERT_EQ(f(0, b, 32), 0x8A9136AAu);
    memset(b, 0xff, 32);
    DT_ASSERT_EQ(f(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
    DT_ASSERT_EQ(f(0, b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
    DT_ASSERT_EQ(f(0, b, 32), 0x113FDB5Cu);
    DT_ASSERT_EQ(f(0, "123456789", 9), 0xE3069283u);
    DT_ASSERT_EQ(f(0, "", 0), 0);
    DT_ASSERT_EQ(f(0, "a", 1), 0xC1D04330u);
}

static void t_vectors_dispatch(void) { vectors(dt_crc32c); }
static void t_vectors_sw(void) { vectors(dt_crc32c_sw); }
static void t_vectors_hw(void)
{
    if (!dt_crc32c_hw_available()) { fprintf(stderr, "SKIP t_vectors_hw: this CPU has no SSE4.2\n"); return; }
    vectors(dt_crc32c_hw);
}

/* Every length 0..600 at every alignment 0..7, whole and split in two, all paths equal. */
static void t_paths_agree(void)
{
    static uint8_t buf[4096];
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof buf; i++) { s = s * 1103515245u + 12345u; buf[i] = (uint8_t)(s >> 16); }
    int hw = dt_crc32c_hw_available();
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n <= 600; n++) {
            const uint8_t *p = buf + off;
            uint32_t ref = bitwise(p, n);
            DT_ASSERT_EQ(dt_crc32c_sw(0, p, n), ref);
            if (hw) DT_ASSERT_EQ(dt_crc32c_hw(0, p, n), ref);
            DT_ASSERT_EQ(dt_crc32c(0, p, n), ref);
            size_t cut = n / 3;
            DT_ASSERT_EQ(dt_crc32c_sw(dt_crc32c_sw(0, p, cut), p + cut, n - cut), ref);
            if (hw) DT_ASSERT_EQ(dt_crc32c_hw(dt_crc32c_hw(0, p, cut), p + cut, n - cut), ref);
        }
    DT_ASSERT_EQ(dt_crc32c_sw(0, buf, sizeof buf), bitwise(buf, sizeof buf));
    if (hw) DT_ASSERT_EQ(dt_crc32c_hw(0, buf, sizeof buf), dt_crc32c_sw(0, buf, sizeof buf));
}

int main(void)
{
    DT_RUN(t_vectors_dispatch);
    DT_RUN(t_vectors_sw);
    DT_RUN(t_vectors_hw);
    DT_RUN(t_paths_agree);
    return DT_TEST_END();
}
