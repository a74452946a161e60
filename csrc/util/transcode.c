/* Streaming transcoding (transcode.h): a source decodes each 1 MiB piece read into a
 * buffer of its own, every buffer it fills goes to the sink, which encodes it and writes
 * what comes out. Three buffers of PIECE bytes and the codecs' own state, whatever the
 * body's size. */
#include "util/transcode.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#define PIECE ((size_t)1 << 20)

/* ---------- the sink: encode, write ---------- */

typedef struct sink {
    cfs_codec codec;
    z_stream z;
    int z_live;
    BrotliEncoderState *br;
    ZSTD_CCtx *zs;
    unsigned char *buf; /* PIECE bytes of encoded output */
    cfs_transcode_out *out;
} sink;

static int sink_write(sink *s, const unsigned char *p, size_t n)
{
    cfs_transcode_out *o = s->out;
    if (n == 0)
        return CFS_CODEC_OK;
    if (o->mem) {
        if (cfs_buf_append(o->mem, (const char *)p, n) < 0)
            return CFS_CODEC_ENOMEM;
        o->written += n;
        return CFS_CODEC_OK;
    }
    while (n > 0) {
        ssize_t w = pwrite(o->fd, p, n, (off_t)o->written);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            o->io_errno = w < 0 ? errno : EIO;
            return CFS_CODEC_EIO;
        }
        p += w;
        n -= (size_t)w;
        o->written += (size_t)w;
    }
    return CFS_CODEC_OK;
}

static int sink_open(sink *s, cfs_codec to, int level)
{
    s->codec = to;
    switch (to) {
    case CFS_CODEC_NONE:
        return CFS_CODEC_OK;
    case CFS_CODEC_GZIP: /* windowBits 15 + 16: a gzip member */
        if (deflateInit2(&s->z, level > 9 ? 9 : level, Z_DEFLATED, 15 + 16, 8,
                         Z_DEFAULT_STRATEGY) != Z_OK)
            return CFS_CODEC_ENOMEM;
        s->z_live = 1;
        break;
    case CFS_CODEC_BR:
        if (!(s->br = BrotliEncoderCreateInstance(NULL, NULL, NULL)) ||
            !BrotliEncoderSetParameter(s->br, BROTLI_PARAM_QUALITY, (uint32_t)level))
            return CFS_CODEC_ENOMEM;
        break;
    case CFS_CODEC_ZSTD:
        if (!(s->zs = ZSTD_createCCtx()))
            return CFS_CODEC_ENOMEM;
        if (ZSTD_isError(ZSTD_CCtx_setParameter(s->zs, ZSTD_c_compressionLevel, level)))
            return CFS_CODEC_EINVAL;
        break;
    default:
        return CFS_CODEC_EINVAL;
    }
    return (s->buf = malloc(PIECE)) ? CFS_CODEC_OK : CFS_CODEC_ENOMEM;
}

static void sink_close(sink *s)
{
    if (s->z_live)
        deflateEnd(&s->z);
    if (s->br)
        BrotliEncoderDestroyInstance(s->br);
    ZSTD_freeCCtx(s->zs);
    free(s->buf);
}

/* Encode n bytes at p (last: and end the stream) and write what comes out. */
static int sink_put(sink *s, const unsigned char *p, size_t n, int last)
{
    int rc = CFS_CODEC_OK;
    switch (s->codec) {
    case CFS_CODEC_NONE:
        return sink_write(s, p, n);
    case CFS_CODEC_GZIP: {
        s->z.next_in = (Bytef *)(uintptr_t)p; /* zlib does not write its input */
        s->z.avail_in = (uInt)n;              /* n <= PIECE */
        for (;;) {
            s->z.next_out = s->buf;
            s->z.avail_out = (uInt)PIECE;
            int z = deflate(&s->z, last ? Z_FINISH : Z_NO_FLUSH);
            if (z == Z_STREAM_ERROR)
                return CFS_CODEC_EINVAL;
            if ((rc = sink_write(s, s->buf, PIECE - s->z.avail_out)) != CFS_CODEC_OK)
                return rc;
            if (last ? z == Z_STREAM_END : s->z.avail_in == 0 && s->z.avail_out != 0)
                return CFS_CODEC_OK;
        }
    }
    case CFS_CODEC_BR: {
        size_t avail_in = n;
        const uint8_t *next_in = p;
        for (;;) {
            size_t avail_out = PIECE;
            uint8_t *next_out = s->buf;
            if (!BrotliEncoderCompressStream(
                    s->br, last ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_PROCESS, &avail_in,
                    &next_in, &avail_out, &next_out, NULL))
                return CFS_CODEC_ENOMEM;
            if ((rc = sink_write(s, s->buf, PIECE - avail_out)) != CFS_CODEC_OK)
                return rc;
            if (avail_in == 0 && !BrotliEncoderHasMoreOutput(s->br) &&
                (!last || BrotliEncoderIsFinished(s->br)))
                return CFS_CODEC_OK;
        }
    }
    case CFS_CODEC_ZSTD: {
        ZSTD_inBuffer in = { p, n, 0 };
        for (;;) {
            ZSTD_outBuffer o = { s->buf, PIECE, 0 };
            size_t left = ZSTD_compressStream2(s->zs, &o, &in, last ? ZSTD_e_end : ZSTD_e_continue);
            if (ZSTD_isError(left))
                return ZSTD_getErrorCode(left) == ZSTD_error_memory_allocation ? CFS_CODEC_ENOMEM
                                                                               : CFS_CODEC_EINVAL;
            if ((rc = sink_write(s, s->buf, o.pos)) != CFS_CODEC_OK)
                return rc;
            if (last ? left == 0 : in.pos == in.size)
                return CFS_CODEC_OK;
        }
    }
    default:
        return CFS_CODEC_EINVAL;
    }
}

/* ---------- the source: decode ---------- */

typedef struct source {
    cfs_codec codec;
    z_stream z;
    int z_live;
    int z_ended; /* a gzip member ended: more input starts another one */
    BrotliDecoderState *br;
    ZSTD_DCtx *zs;
    size_t zs_left; /* ZSTD_decompressStream's last hint: 0 at the end of a frame */
    unsigned char *buf; /* PIECE bytes of decoded output */
    size_t decoded, max_decoded;
} source;

static int source_open(source *d, cfs_codec from, size_t max_decoded)
{
    d->codec = from;
    d->max_decoded = max_decoded;
    switch (from) {
    case CFS_CODEC_NONE:
        return CFS_CODEC_OK;
    case CFS_CODEC_GZIP:
        if (inflateInit2(&d->z, 15 + 16) != Z_OK) /* gzip only: no zlib or raw deflate */
            return CFS_CODEC_ENOMEM;
        d->z_live = 1;
        break;
    case CFS_CODEC_BR:
        if (!(d->br = BrotliDecoderCreateInstance(NULL, NULL, NULL)))
            return CFS_CODEC_ENOMEM;
        break;
    case CFS_CODEC_ZSTD:
        if (!(d->zs = ZSTD_createDCtx()))
            return CFS_CODEC_ENOMEM;
        break;
    default:
        return CFS_CODEC_EINVAL;
    }
    return (d->buf = malloc(PIECE)) ? CFS_CODEC_OK : CFS_CODEC_ENOMEM;
}

static void source_close(source *d)
{
    if (d->z_live)
        inflateEnd(&d->z);
    if (d->br)
        BrotliDecoderDestroyInstance(d->br);
    ZSTD_freeDCtx(d->zs);
    free(d->buf);
}

/* n decoded bytes in d->buf: counted against the limit, then encoded. */
static int source_emit(source *d, sink *s, size_t n)
{
    if (n > d->max_decoded - d->decoded)
        return CFS_CODEC_ELIMIT;
    d->decoded += n;
    return n ? sink_put(s, d->buf, n, 0) : CFS_CODEC_OK;
}

/* Decode n bytes at p, handing everything decoded to the sink. */
static int source_feed(source *d, sink *s, const unsigned char *p, size_t n)
{
    int rc;
    switch (d->codec) {
    case CFS_CODEC_NONE:
        if (n > d->max_decoded - d->decoded)
            return CFS_CODEC_ELIMIT;
        d->decoded += n;
        return sink_put(s, p, n, 0);
    case CFS_CODEC_GZIP:
        d->z.next_in = (Bytef *)(uintptr_t)p;
        d->z.avail_in = (uInt)n;
        for (;;) {
            if (d->z_ended && d->z.avail_in > 0) { /* gzip allows members one after another */
                if (inflateReset(&d->z) != Z_OK)
                    return CFS_CODEC_EDATA;
                d->z_ended = 0;
            }
            d->z.next_out = d->buf;
            d->z.avail_out = (uInt)PIECE;
            int z = inflate(&d->z, Z_NO_FLUSH);
            if (z == Z_MEM_ERROR)
                return CFS_CODEC_ENOMEM;
            if (z != Z_OK && z != Z_STREAM_END && z != Z_BUF_ERROR)
                return CFS_CODEC_EDATA;
            if ((rc = source_emit(d, s, PIECE - d->z.avail_out)) != CFS_CODEC_OK)
                return rc;
            if (z == Z_STREAM_END)
                d->z_ended = 1;
            if (d->z.avail_out != 0 && d->z.avail_in == 0)
                return CFS_CODEC_OK; /* all input taken, all output flushed */
            if (z == Z_BUF_ERROR && d->z.avail_out != 0)
                return CFS_CODEC_EDATA; /* input and room, and no progress */
        }
    case CFS_CODEC_BR: {
        size_t avail_in = n;
        const uint8_t *next_in = p;
        for (;;) {
            size_t avail_out = PIECE;
            uint8_t *next_out = d->buf;
            BrotliDecoderResult r = BrotliDecoderDecompressStream(d->br, &avail_in, &next_in,
                                                                  &avail_out, &next_out, NULL);
            if (r == BROTLI_DECODER_RESULT_ERROR)
                return CFS_CODEC_EDATA;
            if ((rc = source_emit(d, s, PIECE - avail_out)) != CFS_CODEC_OK)
                return rc;
            if (r == BROTLI_DECODER_RESULT_SUCCESS)
                return avail_in ? CFS_CODEC_EDATA : CFS_CODEC_OK; /* bytes after the end */
            if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT)
                return CFS_CODEC_OK;
        }
    }
    case CFS_CODEC_ZSTD: {
        ZSTD_inBuffer in = { p, n, 0 };
        for (;;) {
            ZSTD_outBuffer o = { d->buf, PIECE, 0 };
            size_t left = ZSTD_decompressStream(d->zs, &o, &in);
            if (ZSTD_isError(left))
                return ZSTD_getErrorCode(left) == ZSTD_error_memory_allocation ? CFS_CODEC_ENOMEM
                                                                               : CFS_CODEC_EDATA;
            d->zs_left = left;
            if ((rc = source_emit(d, s, o.pos)) != CFS_CODEC_OK)
                return rc;
            if (in.pos == in.size && o.pos < o.size)
                return CFS_CODEC_OK; /* all input taken, all output flushed */
        }
    }
    default:
        return CFS_CODEC_EINVAL;
    }
}

/* Whether the input ended where the encoding does (not in the middle of a member or frame). */
static int source_complete(const source *d, size_t len)
{
    switch (d->codec) {
    case CFS_CODEC_GZIP:
        return len == 0 || d->z_ended;
    case CFS_CODEC_BR:
        return len == 0 || BrotliDecoderIsFinished(d->br);
    case CFS_CODEC_ZSTD:
        return len == 0 || d->zs_left == 0;
    default:
        return 1;
    }
}

int cfs_transcode(cfs_transcode_read read, void *ctx, size_t len, cfs_codec from,
                  cfs_transcode_out *out, cfs_codec to, int level, size_t max_decoded,
                  size_t *decoded)
{
    *decoded = 0;
    if (to != CFS_CODEC_NONE && !cfs_codec_level_ok(to, level))
        return CFS_CODEC_EINVAL;
    source d = { 0 };
    sink s = { 0 };
    s.out = out;
    char *in = malloc(PIECE);
    int rc = !in ? CFS_CODEC_ENOMEM : source_open(&d, from, max_decoded);
    if (rc == CFS_CODEC_OK)
        rc = sink_open(&s, to, cfs_codec_level_resolve(to, level));
    for (size_t off = 0; rc == CFS_CODEC_OK && off < len; off += PIECE) {
        size_t n = len - off < PIECE ? len - off : PIECE;
        if (read(ctx, off, in, n) < 0)
            rc = CFS_CODEC_EIO;
        else
            rc = source_feed(&d, &s, (const unsigned char *)in, n);
    }
    if (rc == CFS_CODEC_OK && !source_complete(&d, len))
        rc = CFS_CODEC_EDATA; /* truncated */
    if (rc == CFS_CODEC_OK)
        rc = sink_put(&s, NULL, 0, 1);
    *decoded = d.decoded;
    sink_close(&s);
    source_close(&d);
    free(in);
    return rc;
}
