/* Content coding in the engine, the same for every backend (engine_internal.h): a PUT's
 * body is encoded on a worker thread before its first request (remote ops go there from
 * build_request, local ones encode just before execute(); a body in a file, or one given
 * encoded to be stored in another encoding, as a stream: util/transcode.h), and a GET's
 * body is decoded on a worker thread after the backend verified its checksum
 * (cfs_engine_complete hands it over). A range of an encoded object cannot be decoded by
 * itself: a remote GET that gets one back is sent again for the whole object, and the
 * range is cut from the decoded bytes (local backends read the whole stored object at
 * once: op->whole_stored). */
#include "core/engine_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/codec.h"
#include "util/transcode.h"

int cfs_coding_needs_encode(const cfs_op *op)
{
    return op->kind == CFS_OP_PUT && !op->coded &&
           (op->encode != CFS_CODEC_NONE || op->body_codec != CFS_CODEC_NONE);
}

/* Set the encoding the body now has: its Content-Encoding (none: no header). */
static int set_body_encoding(cfs_op *op, cfs_codec c)
{
    char *name = NULL;
    if (c != CFS_CODEC_NONE && !(name = strdup(cfs_codec_name(c)))) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return -1;
    }
    free(op->attrs.content_encoding);
    op->attrs.content_encoding = name;
    return 0;
}

static int read_body(void *op, size_t off, char *dst, size_t n)
{
    return cfs_op_body_read(op, off, dst, n);
}

/* An unnamed temporary file in dir for an encoded body; -1 with errno. A filesystem
 * without O_TMPFILE gets a named one, removed at once. */
static int open_spool(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/cloudfiles-encode-XXXXXX", dir) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0)
        unlink(path);
    return fd;
}

/* A body in a file, or one encoded already (a raw value to store in another encoding):
 * decoded and encoded as a stream, into a temporary file (a file's) or op->encoded. */
static int encode_streamed(cfs_op *op)
{
    cfs_codec from = (cfs_codec)op->body_codec, to = (cfs_codec)op->encode;
    const char *dir = op->spool_dir ? op->spool_dir : "/tmp";
    cfs_transcode_out out = { .fd = -1 };
    if (!op->body_file) {
        out.mem = &op->encoded;
    } else if ((out.fd = open_spool(dir)) < 0) {
        cfs_op_fail(op, CFS_EIO, "cannot make a temporary file in %.100s to encode the value: %s",
                    dir, strerror(errno));
        return -1;
    }
    long long limit = op->limiter ? op->limiter->cfg.max_decoded_size : (2LL << 30);
    size_t decoded;
    int rc = cfs_transcode(read_body, op, op->body_len, from, &out, to, op->encode_level,
                           from == CFS_CODEC_NONE ? SIZE_MAX : (size_t)limit, &decoded);
    int as_it_is = rc == CFS_CODEC_OK && from == CFS_CODEC_NONE && !op->encode_always &&
                   out.written >= op->body_len; /* it does not shrink */
    if (rc != CFS_CODEC_OK || as_it_is) {
        if (out.fd >= 0)
            close(out.fd);
        cfs_buf_free(&op->encoded);
        if (as_it_is)
            return 0;
        if (rc == CFS_CODEC_EIO && out.io_errno)
            cfs_op_fail(op, CFS_EIO,
                        "cannot write the encoded value to a temporary file in "
                        "%.100s: %s",
                        dir, strerror(out.io_errno));
        else if (rc == CFS_CODEC_EIO)
            ; /* cfs_op_body_read said why */
        else if (rc == CFS_CODEC_ELIMIT)
            cfs_op_fail(op, CFS_EINVALID,
                        "the %s-encoded value decodes to more than max_decoded_size (%lld bytes)",
                        cfs_codec_name(from), limit);
        else if (rc == CFS_CODEC_ENOMEM)
            cfs_op_fail(op, CFS_ENOMEM, "out of memory encoding the value");
        else if (rc == CFS_CODEC_EDATA)
            cfs_op_fail(op, CFS_EINVALID,
                        "the value is not valid %s data (given as raw, "
                        "%s-encoded): %s",
                        cfs_codec_name(from), cfs_codec_name(from), cfs_codec_strerror(rc));
        else
            cfs_op_fail(op, CFS_EINVALID, "cannot %s-encode the value: %s",
                        cfs_codec_name(to) ? cfs_codec_name(to) : "identity",
                        cfs_codec_strerror(rc));
        return -1;
    }
    if (set_body_encoding(op, to) < 0) {
        if (out.fd >= 0)
            close(out.fd);
        return -1;
    }
    if (out.fd >= 0) {
        op->spool.fd = out.fd;
        op->body_file = &op->spool;
        op->body = NULL;
    } else {
        op->body = op->encoded.data;
        op->body_file = NULL;
    }
    op->body_len = out.written;
    op->body_offset = 0;
    return 0;
}

int cfs_coding_encode(cfs_op *op)
{
    op->coded = 1;
    cfs_codec c = (cfs_codec)op->encode;
    cfs_buf_reset(&op->encoded);
    if (op->body_codec == op->encode) /* a raw value asked to be stored as it is encoded */
        return set_body_encoding(op, c);
    if (op->body_file || op->body_codec != CFS_CODEC_NONE)
        return encode_streamed(op);
    int rc = cfs_encode(c, op->encode_level, op->body, op->body_len, &op->encoded);
    if (rc != CFS_CODEC_OK) {
        cfs_op_fail(op, rc == CFS_CODEC_ENOMEM ? CFS_ENOMEM : CFS_EINVALID,
                    "cannot %s-encode the value: %s", cfs_codec_name(c), cfs_codec_strerror(rc));
        return -1;
    }
    if (!op->encode_always && op->encoded.len >= op->body_len) {
        cfs_buf_free(&op->encoded); /* it does not shrink: stored as it is */
        return 0;
    }
    if (set_body_encoding(op, c) < 0)
        return -1;
    op->body = op->encoded.data;
    op->body_len = op->encoded.len;
    return 0;
}

/* The encoding a finished GET's body has, as the op says; 0 with *c NONE for identity. */
static int body_codec(const cfs_op *op, cfs_codec *c)
{
    return cfs_codec_parse(op->attrs.content_encoding, c);
}

/* op->refetched_whole: where a remote ranged GET of an encoded object is. */
enum { RANGE_ASKED = 0, RANGE_PROBE = 1, RANGE_WHOLE = 2, RANGE_SETTLED = 3 };

int cfs_coding_needs_decode(const cfs_op *op)
{
    if (op->kind != CFS_OP_GET || op->status != CFS_OK || op->raw || op->coded || op->parent)
        return 0;
    if (op->refetched_whole == RANGE_WHOLE)
        return 1; /* decoded (if still encoded) and cut to the range asked */
    cfs_codec c;
    return body_codec(op, &c) < 0 || c != CFS_CODEC_NONE;
}

/* A remote ranged GET: the server ranges the stored bytes. A range of an encoded object
 * (the response says its Content-Encoding) is read again whole, decoded and cut. A 416
 * may be a range past the end of the stored bytes but not of the decoded ones: the first
 * byte is asked for to learn the encoding (a 416 of a plain object costs that request). */
int cfs_coding_refetch_whole(cfs_op *op)
{
    if (op->kind != CFS_OP_GET || op->raw || op->whole_stored)
        return 0;
    cfs_codec c;
    int encoded = op->attrs.content_encoding && !(body_codec(op, &c) == 0 && c == CFS_CODEC_NONE);
    switch (op->refetched_whole) {
    case RANGE_ASKED:
        if (op->range.kind == CFS_RANGE_NONE)
            return 0;
        if (op->status == CFS_OK && encoded) {
            op->asked = op->range;
            op->range = (cfs_range){ .kind = CFS_RANGE_NONE };
            op->refetched_whole = RANGE_WHOLE;
        } else if (op->status == CFS_ERANGE) {
            op->asked = op->range;
            op->range = (cfs_range){ .kind = CFS_RANGE_BOUNDED, .start = 0, .end = 1 };
            op->refetched_whole = RANGE_PROBE;
            op->status = CFS_OK;
            op->message[0] = '\0';
        } else {
            return 0;
        }
        break;
    case RANGE_PROBE:
        if (op->status == CFS_OK && encoded) {
            op->range = (cfs_range){ .kind = CFS_RANGE_NONE };
            op->refetched_whole = RANGE_WHOLE;
            break;
        }
        op->range = op->asked;
        op->refetched_whole = RANGE_SETTLED;
        if (op->status == CFS_OK || op->status == CFS_ERANGE) {
            cfs_buf_reset(&op->data);
            cfs_op_fail(op, CFS_ERANGE, "range starts past the end");
        }
        return 0;
    default:
        return 0;
    }
    cfs_buf_reset(&op->data);
    return 1;
}

void cfs_coding_decode(cfs_op *op)
{
    op->coded = 1;
    cfs_codec c;
    int rc = body_codec(op, &c);
    if (rc == 0 && c == CFS_CODEC_NONE) { /* read whole for a range, found plain */
        int64_t start, end;
        if (cfs_range_resolve(&op->asked, (int64_t)op->data.len, &start, &end) < 0) {
            cfs_buf_reset(&op->data);
            cfs_op_fail(op, CFS_ERANGE, "range starts past the end");
            return;
        }
        op->size = (int64_t)op->data.len;
        if (start > 0)
            memmove(op->data.data, op->data.data + start, (size_t)(end - start));
        op->data.len = (size_t)(end - start);
        return;
    }
    if (rc < 0) {
        cfs_op_fail(op, CFS_EPROTOCOL,
                    "stored with Content-Encoding '%.60s', which this package does not decode "
                    "(read it with raw=True)",
                    op->attrs.content_encoding);
        return;
    }
    cfs_range want = op->range;
    if (op->refetched_whole == RANGE_WHOLE)
        want = op->asked;
    else if (!op->whole_stored)
        want.kind = CFS_RANGE_NONE; /* the whole object came */
    long long limit = op->limiter ? op->limiter->cfg.max_decoded_size : (2LL << 30);
    cfs_buf plain = { 0 };
    rc = cfs_decode(c, op->data.data, op->data.len, (size_t)limit, &plain);
    if (rc != CFS_CODEC_OK) {
        cfs_buf_free(&plain);
        if (rc == CFS_CODEC_ENOMEM)
            cfs_op_fail(op, CFS_ENOMEM, "out of memory decoding the %s-encoded object",
                        cfs_codec_name(c));
        else if (rc == CFS_CODEC_ELIMIT)
            cfs_op_fail(op, CFS_EPROTOCOL,
                        "the %s-encoded object decodes to more than "
                        "max_decoded_size (%lld bytes)",
                        cfs_codec_name(c), limit);
        else
            cfs_op_fail(op, CFS_ECHECKSUM, "the %s-encoded object does not decode: %s",
                        cfs_codec_name(c), cfs_codec_strerror(rc));
        return;
    }
    int64_t start = 0, end = (int64_t)plain.len;
    if (want.kind != CFS_RANGE_NONE &&
        cfs_range_resolve(&want, (int64_t)plain.len, &start, &end) < 0) {
        cfs_buf_free(&plain);
        cfs_op_fail(op, CFS_ERANGE, "range starts past the end (%zu bytes decoded)", plain.len);
        return;
    }
    op->size = (int64_t)plain.len;
    if (start == 0 && end == (int64_t)plain.len) {
        cfs_buf_free(&op->data);
        op->data = plain;
        return;
    }
    cfs_buf_reset(&op->data);
    if (end > start && cfs_buf_append(&op->data, plain.data + start, (size_t)(end - start)) < 0)
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
    cfs_buf_free(&plain);
}
