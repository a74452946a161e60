// Unit tests of CRC32C (csrc/util/crc32c.c): known vectors, chaining, and the hardware path
// against the table path on every length and alignment.
// sources: csrc/util/crc32c.c
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/crc32c.h"

#include "check.h"

static void both(const void *data, size_t len, uint32_t want, const char *what)
{
    uint32_t a = cfs_crc32c(0, data, len), b = cfs_crc32c_portable(0, data, len);
    CHECK(a == want, "%s: cfs_crc32c = %08X, want %08X", what, a, want);
    CHECK(b == want, "%s: portable = %08X, want %08X", what, b, want);
}

int main(void)
{
    unsigned char buf[64];

    /* RFC 3720 (iSCSI) B.4 and the common check value */
    both("123456789", 9, 0xE3069283u, "123456789");
    both("", 0, 0x00000000u, "empty");
    both("a", 1, 0xC1D04330u, "a");
    memset(buf, 0, 32);
    both(buf, 32, 0x8A9136AAu, "32 zeros");
    memset(buf, 0xFF, 32);
    both(buf, 32, 0x62A8AB43u, "32 0xFF");
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)i;
    both(buf, 32, 0x46DD794Eu, "0..31");
    for (int i = 0; i < 32; i++)
        buf[i] = (unsigned char)(31 - i);
    both(buf, 32, 0x113FDB5Cu, "31..0");
    /* GCS documents the CRC32C of "hello world" as base64 "yZRlqg==" = 0xC99465AA */
    both("hello world", 11, 0xC99465AAu, "hello world");

    /* chaining over any split equals one pass */
    const char *s = "The quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = cfs_crc32c(0, s, n);
    CHECK(whole == 0x22620404u, "fox = %08X", whole);
    for (size_t cut = 0; cut <= n; cut++) {
        uint32_t c = cfs_crc32c(cfs_crc32c(0, s, cut), s + cut, n - cut);
        uint32_t p = cfs_crc32c_portable(cfs_crc32c_portable(0, s, cut), s + cut, n - cut);
        CHECK(c == whole && p == whole, "split at %zu: %08X / %08X", cut, c, p);
    }

    /* every length 0..300 at every alignment 0..15: hardware == table */
    size_t big = 4096 + 64;
    unsigned char *data = malloc(big);
    if (!data) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    unsigned int x = 12345;
    for (size_t i = 0; i < big; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (unsigned char)(x >> 16);
    }
    int mismatches = 0;
    for (size_t off = 0; off < 16; off++)
        for (size_t len = 0; len <= 300; len++)
            if (cfs_crc32c(0, data + off, len) != cfs_crc32c_portable(0, data + off, len))
                mismatches++;
    CHECK(mismatches == 0, "%d length/alignment mismatches between hardware and table", mismatches);
    CHECK(cfs_crc32c(0, data, 4096) == cfs_crc32c_portable(0, data, 4096), "4096 bytes");
    free(data);

    /* the three-stream paths (blocks of 3 x 256 and 3 x 8192 bytes) and their edges */
    big = 3 * 8192 * 3 + 4096;
    data = malloc(big);
    if (!data) {
        fprintf(stderr, "out of memory\n");
        return 2;
    }
    for (size_t i = 0; i < big; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (unsigned char)(x >> 16);
    }
    static const size_t lens[] = { 767, 768, 769, 1536, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 1,
                                   3 * 8192 + 768, 2 * 3 * 8192 + 5, 3 * 8192 * 3 };
    mismatches = 0;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (size_t off = 0; off < 9; off++)
            if (cfs_crc32c(0, data + off, lens[i]) != cfs_crc32c_portable(0, data + off, lens[i]))
                mismatches++;
    for (int r = 0; r < 200; r++) {
        x = x * 1103515245u + 12345u;
        size_t off = (x >> 8) % 64, len = (x >> 12) % (big - 64);
        if (cfs_crc32c(0, data + off, len) != cfs_crc32c_portable(0, data + off, len))
            mismatches++;
    }
    CHECK(mismatches == 0, "%d mismatches on long inputs", mismatches);
    free(data);

    printf("crc32c: hardware=%d, %d checks, %d failures\n", cfs_crc32c_hardware(), checks, failures);
    return failures ? 1 : 0;
}
