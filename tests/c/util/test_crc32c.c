// Unit tests of CRC32C (csrc/util/crc32c.c): the tables computed at first use (from
// several threads at once, every entry against a bitwise CRC), known vectors at every
// alignment, chaining, the hardware path against the table path on every length and
// alignment, and combining the CRCs of two pieces without their bytes.
// sources: csrc/util/crc32c.c
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/crc32c.h"

#include "check.h"

/* The definition, a bit at a time: no table, so it checks the computed ones. */
static uint32_t bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
    uint32_t c = ~crc;
    while (len--) {
        c ^= *p++;
        for (int b = 0; b < 8; b++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

/* n bytes of a fixed pseudo-random sequence (the caller frees them). */
static unsigned char *pseudo_random(size_t n, unsigned int seed)
{
    unsigned char *data = malloc(n);
    if (!data) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        data[i] = (unsigned char)(seed >> 16);
    }
    return data;
}

/* The first use of the tables, from several threads at once: each gets the right CRC. */
#define FIRST_USERS 4
static pthread_barrier_t first_use;

static void *first_user(void *arg)
{
    pthread_barrier_wait(&first_use);
    uint32_t *out = arg;
    out[0] = cfs_crc32c_portable(0, "123456789", 9);
    out[1] = cfs_crc32c(0, "123456789", 9);
    return NULL;
}

static void check_first_use(void)
{
    pthread_t th[FIRST_USERS];
    uint32_t got[FIRST_USERS][2];
    if (pthread_barrier_init(&first_use, NULL, FIRST_USERS) != 0) {
        fprintf(stderr, "cannot make a barrier\n");
        exit(2);
    }
    for (int i = 0; i < FIRST_USERS; i++) {
        if (pthread_create(&th[i], NULL, first_user, got[i]) != 0) {
            /* the started threads wait at the barrier for this one: no clean way on */
            fprintf(stderr, "cannot start a thread\n");
            exit(2);
        }
    }
    for (int i = 0; i < FIRST_USERS; i++) {
        pthread_join(th[i], NULL);
        CHECK(got[i][0] == 0xE3069283u && got[i][1] == 0xE3069283u,
              "thread %d at first use: %08X / %08X", i, got[i][0], got[i][1]);
    }
    pthread_barrier_destroy(&first_use);
}

/* RFC 3720 (iSCSI) B.4, "123456789", and a value GCS documents, each at every alignment
 * 0..15 (the hardware path aligns to 8 bytes first: its blocks start at another byte of the
 * vector each time). */
static void check_known_vectors(void)
{
    static const unsigned char read_pdu[48] = {
        0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    unsigned char zeros[32], ones[32], up[32], down[32];
    memset(zeros, 0, sizeof zeros);
    memset(ones, 0xFF, sizeof ones);
    for (int i = 0; i < 32; i++) {
        up[i] = (unsigned char)i;
        down[i] = (unsigned char)(31 - i);
    }
    const struct {
        const char *what;
        const void *data;
        size_t len;
        uint32_t want;
    } v[] = {
        { "empty", "", 0, 0x00000000u },
        { "a", "a", 1, 0xC1D04330u },
        { "123456789", "123456789", 9, 0xE3069283u },
        { "hello world (GCS documents yZRlqg==)", "hello world", 11, 0xC99465AAu },
        { "RFC 3720 32 zeros", zeros, 32, 0x8A9136AAu },
        { "RFC 3720 32 0xFF", ones, 32, 0x62A8AB43u },
        { "RFC 3720 0..31", up, 32, 0x46DD794Eu },
        { "RFC 3720 31..0", down, 32, 0x113FDB5Cu },
        { "RFC 3720 SCSI Read (10) PDU", read_pdu, 48, 0xD9963A56u },
    };
    unsigned char buf[64];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        const void *data = v[i].data;
        CHECK(bitwise(0, data, v[i].len) == v[i].want, "%s: bitwise reference", v[i].what);
        for (size_t off = 0; off < 16; off++) {
            memcpy(buf + off, data, v[i].len);
            uint32_t a = cfs_crc32c(0, buf + off, v[i].len);
            uint32_t b = cfs_crc32c_portable(0, buf + off, v[i].len);
            CHECK(a == v[i].want && b == v[i].want, "%s at offset %zu: %08X / %08X, want %08X",
                  v[i].what, off, a, b, v[i].want);
        }
    }
}

/* Every entry of the 8 slicing tables: in the first 8-byte block, table 7-j is indexed by
 * byte j XOR the initial register (0xFF for j < 4, 0 after), so a run of byte v (every v)
 * reads each table at v or v ^ 0xFF; lengths 1..24 also take every tail. */
static void check_every_slice_entry(void)
{
    unsigned char run[24];
    int bad = 0;
    for (int v = 0; v < 256; v++) {
        memset(run, v, sizeof run);
        for (size_t len = 1; len <= sizeof run; len++) {
            uint32_t want = bitwise(0, run, len);
            if (cfs_crc32c_portable(0, run, len) != want || cfs_crc32c(0, run, len) != want)
                bad++;
        }
    }
    CHECK(bad == 0, "%d runs of one byte value differ from the bitwise CRC", bad);
}

/* The hardware path joins three streams through the zeros tables once 3 x 256 (short) and
 * 3 x 8192 (long) bytes remain: lengths either side of those, at several alignments,
 * against the bitwise CRC; then many starting registers through each join, so that every
 * entry of both tables is read (2 reads a table a call, 4096 calls: a given entry is missed
 * with odds of e^-32), against the table path. */
static void check_stream_joins(void)
{
    size_t big = 2 * 3 * 8192 + 3 * 256 + 64;
    unsigned char *data = pseudo_random(big, 777);
    unsigned int x = 777;
    static const size_t lens[] = { 3 * 256 - 1,
                                   3 * 256,
                                   3 * 256 + 1,
                                   2 * 3 * 256 + 7,
                                   3 * 8192 - 1,
                                   3 * 8192,
                                   3 * 8192 + 3 * 256 + 9,
                                   2 * 3 * 8192 + 3 * 256 };
    int bad = 0;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (size_t off = 0; off < 9; off++) {
            uint32_t want = bitwise(0, data + off, lens[i]);
            if (cfs_crc32c(0, data + off, lens[i]) != want ||
                cfs_crc32c_portable(0, data + off, lens[i]) != want)
                bad++;
        }
    CHECK(bad == 0, "%d long lengths/alignments differ from the bitwise CRC", bad);

    bad = 0;
    static const size_t joins[] = { 3 * 256, 3 * 8192 };
    for (size_t j = 0; j < 2; j++)
        for (int r = 0; r < 4096; r++) {
            x = x * 1103515245u + 12345u;
            uint32_t start = x ^ (x << 16);
            if (cfs_crc32c(start, data, joins[j]) != cfs_crc32c_portable(start, data, joins[j]))
                bad++;
        }
    CHECK(bad == 0, "%d starting registers through the joins differ from the table path", bad);
    free(data);
}

/* cfs_crc32c_combine: the CRC of a and b from theirs alone, for every split of a buffer
 * (empty pieces included), a chain of unequal pieces as an S3 multipart upload has, and a
 * length of 5 GiB (the largest S3 part; its zeros checked by chaining in 1 MiB steps). */
static void check_combine(void)
{
    size_t n = 3 * 8192 + 777;
    unsigned char *data = pseudo_random(n, 4242);
    uint32_t whole = cfs_crc32c(0, data, n);
    int bad = 0;
    for (size_t cut = 0; cut <= n; cut += cut < 300 ? 1 : 97)
        if (cfs_crc32c_combine(cfs_crc32c(0, data, cut), cfs_crc32c(0, data + cut, n - cut),
                               n - cut) != whole)
            bad++;
    CHECK(bad == 0, "%d splits combine to another CRC", bad);
    uint32_t chained = 0;
    for (size_t off = 0, piece = 1; off < n; off += piece, piece = piece * 3 + 1) {
        size_t len = piece < n - off ? piece : n - off;
        chained = cfs_crc32c_combine(chained, cfs_crc32c(0, data + off, len), len);
    }
    CHECK(chained == whole, "chained pieces: %08X, want %08X", chained, whole);
    CHECK(cfs_crc32c_combine(whole, 0, 0) == whole, "combining an empty piece");
    free(data);

    unsigned char *zeros = calloc(1, 1 << 20);
    if (!zeros) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    uint32_t a = cfs_crc32c(0, "123456789", 9), z = 0, az = a;
    for (int i = 0; i < 5 * 1024; i++) {
        z = cfs_crc32c(z, zeros, 1 << 20);
        az = cfs_crc32c(az, zeros, 1 << 20);
    }
    uint64_t five_gib = (uint64_t)5 << 30;
    CHECK(cfs_crc32c_combine(a, z, five_gib) == az, "5 GiB of zeros: %08X, want %08X",
          cfs_crc32c_combine(a, z, five_gib), az);
    free(zeros);
}

int main(void)
{
    check_first_use(); /* before any other call: the tables are not made yet */
    check_known_vectors();
    check_every_slice_entry();
    check_stream_joins();
    check_combine();

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
    static const size_t lens[] = { 767,
                                   768,
                                   769,
                                   1536,
                                   3 * 8192 - 1,
                                   3 * 8192,
                                   3 * 8192 + 1,
                                   3 * 8192 + 768,
                                   2 * 3 * 8192 + 5,
                                   3 * 8192 * 3 };
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
