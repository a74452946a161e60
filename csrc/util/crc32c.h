/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum GCS keeps for every
 * object. Pure; uses the SSE4.2 crc32 instruction when the CPU has it, a slicing-by-8
 * table otherwise. Thread-safe: the tables are computed once, by the first call
 * (pthread_once), and only read after. */
#ifndef CFS_CRC32C_H
#define CFS_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/* Extend `crc` (0 to start) over `len` bytes: cfs_crc32c(cfs_crc32c(0, a, n), b, m) is the
 * CRC of a followed by b. "123456789" gives 0xE3069283. */
uint32_t cfs_crc32c(uint32_t crc, const void *data, size_t len);

/* The CRC of a followed by b, from crc_a (of a) and crc_b (of b, len_b bytes) alone, in
 * O(log len_b): the parts of an S3 multipart upload give the whole object's CRC. */
uint32_t cfs_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* The table implementation alone (for tests comparing the two). */
uint32_t cfs_crc32c_portable(uint32_t crc, const void *data, size_t len);

/* 1 if cfs_crc32c uses the CPU instruction. */
int cfs_crc32c_hardware(void);

#endif
