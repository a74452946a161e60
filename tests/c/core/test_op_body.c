// Unit tests of a PUT's body in memory or in a file (csrc/core/op.c, request.c): reads at
// offsets, the pieces a scan hands out, slices for parts, a request's share of the body, and
// a file shorter than the body a clear failure.
// sources: csrc/core/op.c csrc/core/attrs.c csrc/core/request.c csrc/core/buf.c csrc/util/secret.c
// sources: csrc/core/retry.c csrc/core/options.c
// pkg: libcurl libcrypto libcjson
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "core/backend.h"

#define MIB (1u << 20)

typedef struct scan_seen {
    size_t pieces, bytes;
    unsigned long sum; /* the bytes, weighted by position: order matters */
} scan_seen;

static int see(void *ctx, const char *p, size_t n)
{
    scan_seen *s = ctx;
    for (size_t i = 0; i < n; i++)
        s->sum += (unsigned long)(unsigned char)p[i] * (s->bytes + i + 1);
    s->pieces++;
    s->bytes += n;
    return 0;
}

static int refuse(void *ctx, const char *p, size_t n)
{
    (void)ctx;
    (void)p;
    (void)n;
    return -1;
}

static unsigned long weighted(const char *p, size_t n)
{
    unsigned long sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (unsigned long)(unsigned char)p[i] * (i + 1);
    return sum;
}

int main(void)
{
    size_t n = 2 * MIB + 4097;
    char *data = malloc(n), *back = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7919 % 251);
    char path[] = "/tmp/cfs-test-op-body-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, "skip", 4) == 4 && write(fd, data, n) == (ssize_t)n, "temp file");
    unlink(path);

    /* in memory: one piece, reads at offsets */
    cfs_op *mem = cfs_op_new(CFS_OP_PUT, NULL, "k", 1);
    mem->body = data;
    mem->body_len = n;
    scan_seen s = { 0 };
    CHECK(cfs_op_body_scan(mem, see, &s) == 0 && s.pieces == 1 && s.bytes == n &&
              s.sum == weighted(data, n),
          "memory scan: %zu pieces", s.pieces);
    CHECK(cfs_op_body_read(mem, 100, back, 10) == 0 && memcmp(back, data + 100, 10) == 0, "read");

    /* in a file, 4 bytes in: pieces of 1 MiB, the same bytes in order */
    cfs_body_file file = { .fd = fd };
    cfs_op *op = cfs_op_new(CFS_OP_PUT, NULL, "k", 1);
    op->body_file = &file;
    op->body_offset = 4;
    op->body_len = n;
    memset(&s, 0, sizeof s);
    CHECK(cfs_op_body_scan(op, see, &s) == 0 && s.pieces == 3 && s.bytes == n &&
              s.sum == weighted(data, n),
          "file scan: %zu pieces, %zu bytes", s.pieces, s.bytes);
    memset(back, 0, n);
    CHECK(cfs_op_body_read(op, 0, back, n) == 0 && memcmp(back, data, n) == 0, "file read");

    /* a part: bytes [MIB, 2 MIB) of either, and a request's share of that */
    cfs_op *part = cfs_op_new(CFS_OP_PUT, NULL, "k", 1);
    cfs_op_body_slice(part, op, MIB, MIB);
    CHECK(part->body_file == &file && part->body_offset == 4 + MIB && part->body_len == MIB &&
              !part->body,
          "file slice");
    CHECK(cfs_op_body_read(part, 5, back, 3) == 0 && memcmp(back, data + MIB + 5, 3) == 0,
          "read in a slice");
    cfs_request req;
    memset(&req, 0, sizeof req);
    cfs_request_body_of(&req, part, 10, 20);
    CHECK(req.body_file == &file && req.body_offset == 4 + MIB + 10 && req.body_len == 20 &&
              !req.body,
          "request of a file slice");
    cfs_op_body_slice(part, mem, MIB, 7);
    CHECK(part->body == data + MIB && !part->body_file && part->body_len == 7, "memory slice");
    cfs_request_body_of(&req, part, 2, 5);
    CHECK(req.body == data + MIB + 2 && !req.body_file && req.body_len == 5, "memory request");
    cfs_op_free(part);

    /* empty: one empty piece */
    cfs_op *empty = cfs_op_new(CFS_OP_PUT, NULL, "k", 1);
    empty->body_file = &file;
    memset(&s, 0, sizeof s);
    CHECK(cfs_op_body_scan(empty, see, &s) == 0 && s.pieces == 1 && s.bytes == 0, "empty file");
    cfs_op_free(empty);

    /* the callback's -1 is out of memory */
    CHECK(cfs_op_body_scan(op, refuse, NULL) == -1 && op->status == CFS_ENOMEM, "refused");

    /* the file cut short: the scan and the read fail as I/O, naming why */
    CHECK(ftruncate(fd, 4 + MIB + 100) == 0, "truncate");
    op->status = CFS_OK;
    memset(&s, 0, sizeof s);
    CHECK(cfs_op_body_scan(op, see, &s) == -1 && op->status == CFS_EIO &&
              strstr(op->message, "shorter"),
          "short scan: %s", op->message);
    op->status = CFS_OK;
    CHECK(cfs_op_body_read(op, MIB, back, 200) == -1 && op->status == CFS_EIO, "short read");

    /* a descriptor that is not open */
    cfs_body_file closed = { .fd = -1 };
    op->body_file = &closed;
    op->status = CFS_OK;
    CHECK(cfs_op_body_read(op, 0, back, 1) == -1 && op->status == CFS_EIO &&
              strstr(op->message, "Bad file descriptor"),
          "bad fd: %s", op->message);

    cfs_op_free(op);
    cfs_op_free(mem);
    close(fd);
    free(data);
    free(back);
    printf("op_body: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
