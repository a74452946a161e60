// Unit tests of the streaming transcoder (csrc/util/transcode.c): every pair of encodings
// round trips through memory and a file, across 1 MiB pieces; gzip in several members;
// cut, damaged and trailing input; the decoded-size limit; a reader that fails; a write
// that fails. Decoding is checked with the whole-buffer codecs (codec.c).
// sources: csrc/util/transcode.c csrc/util/codec.c csrc/core/buf.c
// pkg: libdeflate libbrotlienc libbrotlidec libzstd zlib
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "util/codec.h"
#include "util/transcode.h"

typedef struct input {
    const char *data;
    size_t len;
    int fail_at; /* fail the read that starts at this piece (-1: never) */
    int reads;
} input;

static int read_input(void *ctx, size_t off, char *dst, size_t n)
{
    input *in = ctx;
    if (in->fail_at >= 0 && in->reads++ == in->fail_at)
        return -1;
    if (off > in->len || n > in->len - off)
        return -1;
    memcpy(dst, in->data + off, n);
    return 0;
}

/* 3 MiB + 5 of text that compresses, with some noise in it */
static char *make_plain(size_t *len)
{
    *len = (3u << 20) + 5;
    char *p = malloc(*len);
    if (!p)
        abort();
    uint32_t x = 12345;
    for (size_t i = 0; i < *len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (i % 97) < 80 ? "abcdefgh row\n"[i % 13] : (char)(x >> 24);
    }
    return p;
}

static int transcode_mem(const cfs_buf *in, cfs_codec from, cfs_codec to, size_t limit, cfs_buf *out)
{
    input src = { in->data, in->len, -1, 0 };
    cfs_transcode_out o = { .fd = -1, .mem = out };
    size_t decoded;
    return cfs_transcode(read_input, &src, in->len, from, &o, to, CFS_CODEC_LEVEL_DEFAULT, limit,
                         &decoded);
}

static void test_every_pair(const char *plain, size_t len)
{
    cfs_codec codecs[] = { CFS_CODEC_NONE, CFS_CODEC_GZIP, CFS_CODEC_BR, CFS_CODEC_ZSTD };
    for (int a = 0; a < 4; a++) {
        cfs_buf given = { 0 };
        if (codecs[a] == CFS_CODEC_NONE)
            CHECK(cfs_buf_append(&given, plain, len) == 0, "copy");
        else
            CHECK(cfs_encode(codecs[a], 1, plain, len, &given) == CFS_CODEC_OK, "encode %d", a);
        for (int b = 0; b < 4; b++) {
            cfs_buf out = { 0 }, back = { 0 };
            int rc = transcode_mem(&given, codecs[a], codecs[b], SIZE_MAX, &out);
            CHECK(rc == CFS_CODEC_OK, "%d -> %d: %s", a, b, cfs_codec_strerror(rc));
            if (codecs[b] == CFS_CODEC_NONE)
                CHECK(cfs_buf_append(&back, out.data, out.len) == 0, "copy");
            else
                CHECK(cfs_decode(codecs[b], out.data, out.len, SIZE_MAX, &back) == CFS_CODEC_OK,
                      "%d -> %d decodes", a, b);
            CHECK(back.len == len && memcmp(back.data, plain, len) == 0, "%d -> %d round trip", a,
                  b);
            if (codecs[b] != CFS_CODEC_NONE)
                CHECK(out.len < len / 2, "%d -> %d compresses: %zu", a, b, out.len);
            cfs_buf_free(&out);
            cfs_buf_free(&back);
        }
        cfs_buf_free(&given);
    }
}

static void test_to_a_file(const char *plain, size_t len)
{
    int fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);
    CHECK(fd >= 0, "O_TMPFILE: %s", strerror(errno));
    input src = { plain, len, -1, 0 };
    cfs_transcode_out o = { .fd = fd };
    size_t decoded;
    int rc = cfs_transcode(read_input, &src, len, CFS_CODEC_NONE, &o, CFS_CODEC_ZSTD, 3, SIZE_MAX,
                           &decoded);
    CHECK(rc == CFS_CODEC_OK && decoded == len, "to a file: %s", cfs_codec_strerror(rc));
    cfs_buf stored = { 0 }, back = { 0 };
    CHECK(cfs_buf_reserve(&stored, o.written) == 0, "reserve");
    CHECK(pread(fd, stored.data, o.written, 0) == (ssize_t)o.written, "read back");
    stored.len = o.written;
    CHECK(cfs_decode(CFS_CODEC_ZSTD, stored.data, stored.len, SIZE_MAX, &back) == CFS_CODEC_OK &&
              back.len == len && memcmp(back.data, plain, len) == 0,
          "the file decodes to the input");
    close(fd);
    /* a write that fails: the error is EIO with the write's errno */
    src.reads = 0;
    cfs_transcode_out bad = { .fd = 12345 }; /* not open */
    rc = cfs_transcode(read_input, &src, len, CFS_CODEC_NONE, &bad, CFS_CODEC_GZIP, 6, SIZE_MAX,
                       &decoded);
    CHECK(rc == CFS_CODEC_EIO && bad.io_errno == EBADF, "a write that fails: %d %d", rc,
          bad.io_errno);
    cfs_buf_free(&stored);
    cfs_buf_free(&back);
}

static void test_bad_input(const char *plain, size_t len)
{
    cfs_buf gz = { 0 }, out = { 0 };
    CHECK(cfs_encode(CFS_CODEC_GZIP, 6, plain, len, &gz) == CFS_CODEC_OK, "gzip");
    /* two members, as bgzip writes */
    cfs_buf two = { 0 };
    CHECK(cfs_encode(CFS_CODEC_GZIP, 1, plain, len / 2, &two) == 0 &&
              cfs_encode(CFS_CODEC_GZIP, 1, plain + len / 2, len - len / 2, &two) == 0,
          "two members");
    CHECK(transcode_mem(&two, CFS_CODEC_GZIP, CFS_CODEC_NONE, SIZE_MAX, &out) == CFS_CODEC_OK &&
              out.len == len && memcmp(out.data, plain, len) == 0,
          "two members decode whole");
    cfs_buf_reset(&out);
    cfs_buf cut = { 0 };
    CHECK(cfs_buf_append(&cut, gz.data, gz.len - 3) == 0, "cut");
    CHECK(transcode_mem(&cut, CFS_CODEC_GZIP, CFS_CODEC_ZSTD, SIZE_MAX, &out) == CFS_CODEC_EDATA,
          "cut gzip");
    cfs_buf_reset(&out);
    CHECK(cfs_buf_append(&gz, "trailing", 8) == 0, "trailing");
    CHECK(transcode_mem(&gz, CFS_CODEC_GZIP, CFS_CODEC_ZSTD, SIZE_MAX, &out) == CFS_CODEC_EDATA,
          "bytes after the member");
    cfs_buf_reset(&out);
    static const char garbage[] = "\x1f\x8b\x08\x00garbage-not-deflate-at-all";
    cfs_buf g = { 0 };
    CHECK(cfs_buf_append(&g, garbage, sizeof garbage - 1) == 0, "garbage");
    CHECK(transcode_mem(&g, CFS_CODEC_GZIP, CFS_CODEC_NONE, SIZE_MAX, &out) == CFS_CODEC_EDATA,
          "damaged gzip");
    cfs_buf_reset(&out);
    CHECK(transcode_mem(&g, CFS_CODEC_ZSTD, CFS_CODEC_NONE, SIZE_MAX, &out) == CFS_CODEC_EDATA,
          "not zstd");
    cfs_buf_reset(&out);
    CHECK(transcode_mem(&g, CFS_CODEC_BR, CFS_CODEC_NONE, SIZE_MAX, &out) == CFS_CODEC_EDATA,
          "not brotli");
    cfs_buf_reset(&out);
    /* a bomb: the limit holds whatever the data says */
    cfs_buf zeros = { 0 }, bomb = { 0 };
    CHECK(cfs_buf_reserve(&zeros, 8u << 20) == 0, "zeros");
    memset(zeros.data, 0, 8u << 20);
    zeros.len = 8u << 20;
    CHECK(cfs_encode(CFS_CODEC_ZSTD, 3, zeros.data, zeros.len, &bomb) == 0, "bomb");
    CHECK(transcode_mem(&bomb, CFS_CODEC_ZSTD, CFS_CODEC_GZIP, 1u << 20, &out) == CFS_CODEC_ELIMIT,
          "over the decoded limit");
    cfs_buf_reset(&out);
    /* empty input is empty in any encoding */
    cfs_buf empty = { 0 };
    CHECK(transcode_mem(&empty, CFS_CODEC_GZIP, CFS_CODEC_NONE, SIZE_MAX, &out) == CFS_CODEC_OK &&
              out.len == 0,
          "empty");
    /* a reader that fails on its second piece */
    input src = { plain, len, 1, 0 };
    cfs_transcode_out o = { .fd = -1, .mem = &out };
    size_t decoded;
    CHECK(cfs_transcode(read_input, &src, len, CFS_CODEC_NONE, &o, CFS_CODEC_BR, 5, SIZE_MAX,
                        &decoded) == CFS_CODEC_EIO,
          "a reader that fails");
    CHECK(cfs_transcode(read_input, &src, len, CFS_CODEC_NONE, &o, CFS_CODEC_ZSTD, 99, SIZE_MAX,
                        &decoded) == CFS_CODEC_EINVAL,
          "a bad level");
    cfs_buf_free(&gz);
    cfs_buf_free(&two);
    cfs_buf_free(&cut);
    cfs_buf_free(&g);
    cfs_buf_free(&zeros);
    cfs_buf_free(&bomb);
    cfs_buf_free(&out);
}

int main(void)
{
    size_t len;
    char *plain = make_plain(&len);
    test_every_pair(plain, len);
    test_to_a_file(plain, len);
    test_bad_input(plain, len);
    free(plain);
    printf("%d checks, %d failures\n", checks, failures);
    return failures != 0;
}
