/* Streaming transcoding: a body of any size decoded from one encoding and encoded with
 * another (either may be none) a piece at a time, so memory stays a few MiB whatever the
 * size. The engine uses it for a PUT whose body is a file (encoded into a temporary file,
 * never read whole) and for a raw value stored in another encoding (coding.c). gzip goes
 * through zlib here (libdeflate has no streaming interface): levels above zlib's 9 are 9.
 * Decoders trust no size the data claims; the decoded bytes are bounded by the caller. */
#ifndef CFS_TRANSCODE_H
#define CFS_TRANSCODE_H
#include <stddef.h>

#include "core/buf.h"
#include "util/codec.h"

/* Where the input comes from: read(ctx, off, dst, n) fills dst with n bytes at off, and
 * returns 0, or -1 (the reader has recorded why). */
typedef int (*cfs_transcode_read)(void *ctx, size_t off, char *dst, size_t n);

/* Where the output goes: appended to `mem` if it is not NULL, else written to `fd` from
 * offset 0 (io_errno: the errno of a failed write). */
typedef struct cfs_transcode_out {
    int fd;
    cfs_buf *mem;
    size_t written;
    int io_errno;
} cfs_transcode_out;

/* Read `len` bytes through `read`, decode them from `from`, encode them with `to` at
 * `level` (CFS_CODEC_LEVEL_DEFAULT: the codec's default) into `out`; at most max_decoded
 * bytes decoded. CFS_CODEC_OK, or a CFS_CODEC_* error: EIO if the reader failed or a write
 * did (out->io_errno set), EDATA for input that does not decode (truncated, damaged,
 * trailing bytes), ELIMIT, ENOMEM, EINVAL. *decoded: the decoded bytes seen. */
int cfs_transcode(cfs_transcode_read read, void *ctx, size_t len, cfs_codec from,
                  cfs_transcode_out *out, cfs_codec to, int level, size_t max_decoded,
                  size_t *decoded);

#endif
