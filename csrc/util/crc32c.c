/* CRC32C: the SSE4.2 instruction where the CPU has it (checked at run time), slicing-by-8
 * tables elsewhere. The tables are computed from the polynomial at first use rather than
 * listed as constants (16 KiB of numbers nobody checks by eye); pthread_once makes the
 * first use safe from any thread, and afterwards they are only read. */
#include "util/crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define CFS_CRC32C_X86 1
#endif

#define POLY 0x82F63B78u /* Castagnoli, bit-reflected */
#define LONG_BLOCK 8192  /* the stream lengths of the hardware path (crc32c_sse42) */
#define SHORT_BLOCK 256

/* slice[0][i] is the CRC register of byte i; slice[k][i] = (slice[k-1][i] >> 8) ^
 * slice[0][slice[k-1][i] & 0xFF] (byte i followed by k zero bytes). zeros_long[k][v] and
 * zeros_short[k][v]: the register v << 8k advanced over LONG_BLOCK and SHORT_BLOCK zero
 * bytes (only the 64-bit hardware path joins streams with them). */
static struct crc32c_tables {
    uint32_t slice[8][256];
#ifdef __x86_64__
    uint32_t zeros_long[4][256];
    uint32_t zeros_short[4][256];
#endif
} tables;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

#ifdef __x86_64__
/* The register `c` advanced over `n` zero bytes, a byte at a time. */
static uint32_t advance_zeros(uint32_t c, size_t n)
{
    while (n--)
        c = (c >> 8) ^ tables.slice[0][c & 0xFF];
    return c;
}

/* Advancing over zeros is linear in the register: an entry is the XOR of its advanced
 * single bits, so only 32 registers are advanced the slow way, the rest is XORs. */
static void make_zeros_table(uint32_t t[4][256], size_t n)
{
    for (int k = 0; k < 4; k++) {
        t[k][0] = 0;
        for (int b = 0; b < 8; b++) {
            uint32_t bit = 1u << b, col = advance_zeros(bit << (8 * k), n);
            for (uint32_t v = 0; v < bit; v++)
                t[k][bit | v] = t[k][v] ^ col;
        }
    }
}
#endif

static void make_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int b = 0; b < 8; b++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        tables.slice[0][i] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int i = 0; i < 256; i++) {
            uint32_t c = tables.slice[k - 1][i];
            tables.slice[k][i] = (c >> 8) ^ tables.slice[0][c & 0xFF];
        }
#ifdef __x86_64__
    make_zeros_table(tables.zeros_long, LONG_BLOCK);
    make_zeros_table(tables.zeros_short, SHORT_BLOCK);
#endif
}

/* The tables, computed by the first caller (the others wait for it). */
static const struct crc32c_tables *get_tables(void)
{
    pthread_once(&tables_once, make_tables);
    return &tables;
}

static inline uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t cfs_crc32c_portable(uint32_t crc, const void *data, size_t len)
{
    const uint32_t (*t)[256] = get_tables()->slice;
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (len >= 8) {
        uint32_t lo = load_le32(p) ^ c, hi = load_le32(p + 4);
        c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
            t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = (c >> 8) ^ t[0][(c ^ *p++) & 0xFF];
    return ~c;
}

#ifdef CFS_CRC32C_X86
/* The instruction has a latency of 3 cycles and a throughput of 1: three independent
 * streams over adjacent blocks keep it busy, and their CRCs are joined by advancing one
 * over the next block's length of zeros (table lookups: zeros_long, zeros_short) and XORing
 * (CRC is linear). This is the method of Mark Adler's crc32c.c (zlib licence), and
 * Intel's "Fast CRC computation for iSCSI polynomial using CRC32 instruction". */
static inline uint32_t shift_crc(const uint32_t zeros[4][256], uint32_t crc)
{
    return zeros[0][crc & 0xFF] ^ zeros[1][(crc >> 8) & 0xFF] ^ zeros[2][(crc >> 16) & 0xFF] ^
           zeros[3][crc >> 24];
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

#ifdef __x86_64__
/* While 3 blocks remain: three interleaved streams of `block` bytes, joined by shifting
 * the first two over the blocks that follow them (`shift`: that block size's table). */
__attribute__((target("sse4.2"))) static inline uint64_t
crc32c_three_streams(uint64_t c0, const unsigned char **pp, size_t *len, size_t block,
                     const uint32_t shift[4][256])
{
    const unsigned char *p = *pp;
    while (*len >= 3 * block) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + block;
        do {
            c0 = _mm_crc32_u64(c0, load64(p));
            c1 = _mm_crc32_u64(c1, load64(p + block));
            c2 = _mm_crc32_u64(c2, load64(p + 2 * block));
            p += 8;
        } while (p < end);
        c0 = shift_crc(shift, (uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift_crc(shift, (uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * block;
        *len -= 3 * block;
    }
    *pp = p;
    return c0;
}
#endif

__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *data,
                                                               size_t len)
{
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (len > 0 && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8(c, *p++);
        len--;
    }
#ifdef __x86_64__
    const struct crc32c_tables *t = get_tables();
    uint64_t c0 = c;
    c0 = crc32c_three_streams(c0, &p, &len, LONG_BLOCK, t->zeros_long);
    c0 = crc32c_three_streams(c0, &p, &len, SHORT_BLOCK, t->zeros_short);
    while (len >= 8) {
        c0 = _mm_crc32_u64(c0, load64(p));
        p += 8;
        len -= 8;
    }
    c = (uint32_t)c0;
#endif
    while (len >= 4) {
        uint32_t v;
        memcpy(&v, p, 4);
        c = _mm_crc32_u32(c, v);
        p += 4;
        len -= 4;
    }
    while (len--)
        c = _mm_crc32_u8(c, *p++);
    return ~c;
}
#endif

int cfs_crc32c_hardware(void)
{
#ifdef CFS_CRC32C_X86
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    return 0;
#endif
}

uint32_t cfs_crc32c(uint32_t crc, const void *data, size_t len)
{
    if (len == 0)
        return crc;
#ifdef CFS_CRC32C_X86
    if (__builtin_cpu_supports("sse4.2"))
        return crc32c_sse42(crc, data, len);
#endif
    return cfs_crc32c_portable(crc, data, len);
}

/* Polynomials over GF(2) modulo the CRC polynomial, bit-reflected as the register is (x^0
 * in bit 31): a * b mod P. */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
    uint32_t p = 0;
    for (uint32_t m = 1u << 31; m; m >>= 1) {
        if (a & m)
            p ^= b;
        b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
    }
    return p;
}

uint32_t cfs_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
    /* Appending len_b bytes multiplies a's register by x^(8 len_b) mod P; the register
     * conditioning (~ before and after) cancels out, as in zlib's crc32_combine. */
    uint32_t shift = 1u << 31; /* x^0 */
    uint32_t square = 1u << 23; /* x^8: one byte */
    for (uint64_t n = len_b; n; n >>= 1) {
        if (n & 1)
            shift = multmodp(square, shift);
        square = multmodp(square, square);
    }
    return multmodp(shift, crc_a) ^ crc_b;
}
