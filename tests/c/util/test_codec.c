// Unit tests of the content codecs (csrc/util/codec.c): names, levels, round trips of
// every codec at several levels and sizes, concatenated gzip members and zstd frames,
// damaged and truncated data, trailing bytes, and decoders that take no size from the
// data's own header (gzip ISIZE, zstd frame content size): the output limit holds.
// sources: csrc/util/codec.c csrc/core/buf.c
// pkg: libdeflate libbrotlienc libbrotlidec libzstd
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/codec.h"
#include "check.h"

#define BIG ((size_t)1 << 30)

static int gunzip(const void *in, size_t len, cfs_buf *out)
{
    int rc = cfs_decode(CFS_CODEC_GZIP, in, len, BIG, out);
    return rc == CFS_CODEC_OK ? 0 : rc == CFS_CODEC_ENOMEM ? -2 : -1;
}

static void test_gunzip(void)
{
    /* printf 'hello hello hello hello' | gzip -cn (and twice: two members) */
    static const unsigned char gz[] = {
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9,
        0xc9, 0x57, 0xc8, 0x40, 0x27, 0x01, 0xe3, 0x51, 0x3d, 0x8d, 0x17, 0x00, 0x00, 0x00,
    };
    cfs_buf out = { 0 };
    CHECK(gunzip(gz, sizeof gz, &out) == 0 && out.len == 23 &&
              memcmp(out.data, "hello hello hello hello", 23) == 0,
          "one member");
    cfs_buf_reset(&out);
    unsigned char two[2 * sizeof gz];
    memcpy(two, gz, sizeof gz);
    memcpy(two + sizeof gz, gz, sizeof gz);
    CHECK(gunzip(two, sizeof two, &out) == 0 && out.len == 46, "two members: %zu", out.len);
    cfs_buf_reset(&out);
    unsigned char bad[sizeof gz];
    memcpy(bad, gz, sizeof gz);
    bad[12] ^= 0x55;
    CHECK(gunzip(bad, sizeof bad, &out) == -1, "damaged");
    cfs_buf_reset(&out);
    memcpy(bad, gz, sizeof gz);
    bad[sizeof gz - 4] = 0; /* a wrong ISIZE: the room guess is wrong, the data is not */
    CHECK(gunzip(bad, sizeof bad, &out) == -1, "ISIZE mismatch is an error");
    cfs_buf_reset(&out);
    CHECK(gunzip(gz, 10, &out) == -1, "truncated");
    /* ISIZE is the sender's word: a member claiming 4 GiB gets no more room than deflate
     * could make of its bytes (1032 to 1); it took a 4 GiB block, faulted in (fuzzing) */
    cfs_buf_free(&out);
    memcpy(bad, gz, sizeof gz);
    memset(bad + sizeof gz - 4, 0xff, 4);
    CHECK(gunzip(bad, sizeof bad, &out) == -1 && out.cap <= sizeof bad * 1032,
          "ISIZE 4 GiB: room %zu", out.cap);
    cfs_buf_free(&out);
    static const unsigned char fuzz_oom[] = {
        /* tests/fuzz/corpus/codec_decode/oom-isize-4gib */
        0x1f, 0x8b, 0x08, 0x00, 0x20, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0xff, 0xff,
        0xff, 0xff, 0x48, 0xcd, 0xc9, 0xc9, 0x57, 0xc8, 0x1f, 0x8b, 0x08, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x02, 0x03, 0x40, 0x27, 0x01, 0xe3, 0x51, 0x3d, 0x8d, 0x17,
        0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x3f, 0x00, 0xff, 0xff, 0xff, 0xff,
    };
    CHECK(gunzip(fuzz_oom, sizeof fuzz_oom, &out) == -1 && out.cap <= sizeof fuzz_oom * 1032,
          "fuzz oom input: room %zu", out.cap);
    cfs_buf_reset(&out);
    CHECK(gunzip("", 0, &out) == 0 && out.len == 0, "empty");
    cfs_buf_free(&out);
}


static void test_names(void)
{
    cfs_codec c;
    CHECK(cfs_codec_parse(NULL, &c) == 0 && c == CFS_CODEC_NONE, "NULL");
    CHECK(cfs_codec_parse("identity", &c) == 0 && c == CFS_CODEC_NONE, "identity");
    CHECK(cfs_codec_parse("aws-chunked", &c) == 0 && c == CFS_CODEC_NONE, "aws-chunked");
    CHECK(cfs_codec_parse(" GZip ", &c) == 0 && c == CFS_CODEC_GZIP, "gzip");
    CHECK(cfs_codec_parse("x-gzip", &c) == 0 && c == CFS_CODEC_GZIP, "x-gzip");
    CHECK(cfs_codec_parse("br", &c) == 0 && c == CFS_CODEC_BR, "br");
    CHECK(cfs_codec_parse("zstd", &c) == 0 && c == CFS_CODEC_ZSTD, "zstd");
    CHECK(cfs_codec_parse("compress", &c) == -1, "unknown");
    CHECK(cfs_codec_parse("gzip, br", &c) == -1, "stacked encodings are not decoded");
    CHECK(!strcmp(cfs_codec_suffix(CFS_CODEC_ZSTD), ".zstd") &&
              !strcmp(cfs_codec_suffix(CFS_CODEC_GZIP), ".gz"),
          "suffixes");
    CHECK(cfs_codec_level_ok(CFS_CODEC_GZIP, 12) && !cfs_codec_level_ok(CFS_CODEC_GZIP, 13),
          "gzip levels");
    CHECK(cfs_codec_level_ok(CFS_CODEC_BR, 0) && !cfs_codec_level_ok(CFS_CODEC_BR, 12), "br levels");
    CHECK(cfs_codec_level_ok(CFS_CODEC_ZSTD, 19) && !cfs_codec_level_ok(CFS_CODEC_ZSTD, 99),
          "zstd levels");
}

static void test_round_trips(void)
{
    static const cfs_codec codecs[] = { CFS_CODEC_GZIP, CFS_CODEC_BR, CFS_CODEC_ZSTD };
    static const size_t sizes[] = { 0, 1, 100, 65536, 3 << 20 };
    static const int levels[] = { CFS_CODEC_LEVEL_DEFAULT, 1, 0 };
    unsigned char *src = malloc(3 << 20);
    if (!src)
        abort();
    uint32_t x = 12345;
    for (size_t i = 0; i < (3u << 20); i++) { /* compressible: few distinct bytes */
        x = x * 1103515245u + 12345u;
        src[i] = "abcdefgh"[(x >> 16) & 7];
    }
    for (size_t ci = 0; ci < 3; ci++)
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
            for (size_t li = 0; li < 3; li++) {
                cfs_codec c = codecs[ci];
                int level = levels[li];
                if (c == CFS_CODEC_BR && level == CFS_CODEC_LEVEL_DEFAULT && sizes[si] > 65536)
                    level = 5; /* quality 11 on 3 MiB takes seconds */
                cfs_buf enc = { 0 }, dec = { 0 };
                int rc = cfs_encode(c, level, src, sizes[si], &enc);
                CHECK(rc == CFS_CODEC_OK, "encode %s %zu: %d", cfs_codec_name(c), sizes[si], rc);
                rc = cfs_decode(c, enc.data, enc.len, BIG, &dec);
                CHECK(rc == CFS_CODEC_OK && dec.len == sizes[si] &&
                          (sizes[si] == 0 || !memcmp(dec.data, src, sizes[si])),
                      "round trip %s level %d size %zu: rc %d len %zu", cfs_codec_name(c), level,
                      sizes[si], rc, dec.len);
                if (sizes[si] == 65536) {
                    CHECK(level == 0 || enc.len < sizes[si] * 3 / 4, "%s shrinks: %zu",
                          cfs_codec_name(c), enc.len);
                    cfs_buf_reset(&dec);
                    CHECK(cfs_decode(c, enc.data, enc.len, sizes[si] - 1, &dec) == CFS_CODEC_ELIMIT,
                          "%s limit one short", cfs_codec_name(c));
                    CHECK(dec.cap <= sizes[si] + 65536, "%s room within the limit: %zu",
                          cfs_codec_name(c), dec.cap);
                    cfs_buf_reset(&dec);
                    CHECK(cfs_decode(c, enc.data, enc.len - 1, BIG, &dec) == CFS_CODEC_EDATA,
                          "%s truncated", cfs_codec_name(c));
                    cfs_buf_reset(&dec);
                    if (c != CFS_CODEC_GZIP) { /* gzip: a trailing byte is a member too short */
                        char *more = malloc(enc.len + 1);
                        memcpy(more, enc.data, enc.len);
                        more[enc.len] = 'x';
                        CHECK(cfs_decode(c, more, enc.len + 1, BIG, &dec) == CFS_CODEC_EDATA,
                              "%s trailing byte", cfs_codec_name(c));
                        free(more);
                        cfs_buf_reset(&dec);
                    }
                    char *twice = malloc(2 * enc.len);
                    memcpy(twice, enc.data, enc.len);
                    memcpy(twice + enc.len, enc.data, enc.len);
                    rc = cfs_decode(c, twice, 2 * enc.len, BIG, &dec);
                    if (c == CFS_CODEC_BR)
                        CHECK(rc == CFS_CODEC_EDATA, "br: one stream only");
                    else
                        CHECK(rc == CFS_CODEC_OK && dec.len == 2 * sizes[si],
                              "%s two members/frames", cfs_codec_name(c));
                    free(twice);
                }
                cfs_buf_free(&enc);
                cfs_buf_free(&dec);
            }
    free(src);
}

static void test_zstd_claimed_size(void)
{
    /* a frame whose header claims 2^40 bytes gets no room from that claim */
    cfs_buf enc = { 0 }, dec = { 0 };
    CHECK(cfs_encode(CFS_CODEC_ZSTD, 3, "hello", 5, &enc) == 0, "encode");
    /* frame header: magic(4) FHD(1) ...: rewrite it to say 8-byte content size 2^40 */
    unsigned char hostile[64] = { 0x28, 0xb5, 0x2f, 0xfd, 0xe0 /* FCS 8 bytes, single segment */ };
    memset(hostile + 5, 0, 8);
    hostile[5 + 5] = 1; /* 2^40 */
    memcpy(hostile + 13, "\x01\x00\x00", 3); /* a raw block header of 0 bytes, last */
    int rc = cfs_decode(CFS_CODEC_ZSTD, hostile, 16, BIG, &dec);
    CHECK(rc != CFS_CODEC_OK && dec.cap <= 16 * 1032 + 65536, "claimed 2^40: rc %d room %zu", rc,
          dec.cap);
    cfs_buf_free(&enc);
    cfs_buf_free(&dec);
}

int main(void)
{
    test_names();
    test_gunzip();
    test_round_trips();
    test_zstd_claimed_size();
    printf("%d checks, %d failures\n", checks, failures);
    return failures != 0;
}
