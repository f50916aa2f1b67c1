/* dtrain CRC32C (Castagnoli, the iSCSI/ext4/gRPC checksum; polynomial 0x1EDC6F41,
 * reflected 0x82F63B78): a table-driven version and the SSE4.2 crc32 instruction,
 * chosen at run time; both give the same results. For checkpoints and wire frames. */
#ifndef DTRAIN_CRC32C_H
#define DTRAIN_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Extend crc (0 to start) by len bytes: dt_crc32c(dt_crc32c(0, a, n), b, m) equals
 * the CRC of a then b. The conditioning (initial ~0, final ~) is applied inside, as
 * zlib's crc32() does, so "123456789" gives 0xE3069283. */
uint32_t dt_crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations, for tests and benchmarks: the portable table-driven one
 * (slicing by 8) and the SSE4.2 one (call it only when dt_crc32c_hw_available()). */
uint32_t dt_crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t dt_crc32c_hw(uint32_t crc, const void *buf, size_t len);
/* True when this CPU has SSE4.2 (and dtrain was built for x86-64). */
int dt_crc32c_hw_available(void);

#ifdef __cplusplus
}
#endif
#endif /* DTRAIN_CRC32C_H */
