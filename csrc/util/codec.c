/* Content codecs (codec.h): libdeflate for gzip, brotli, zstd. The compressor contexts are
 * kept per thread (the engine's worker threads run them all day) and freed when the thread
 * ends; nothing else is kept between calls. */
#include "util/codec.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <libdeflate.h>
#include <zstd.h>
#include <zstd_errors.h>

/* ---------- names and levels ---------- */

int cfs_codec_parse(const char *name, cfs_codec *out)
{
    *out = CFS_CODEC_NONE;
    if (!name)
        return 0;
    while (*name == ' ' || *name == '\t')
        name++;
    size_t n = strlen(name);
    while (n > 0 && (name[n - 1] == ' ' || name[n - 1] == '\t'))
        n--;
#define IS(s) (n == sizeof(s) - 1 && strncasecmp(name, s, n) == 0)
    /* aws-chunked is a transfer framing S3 removes on upload; some S3-compatible servers
     * keep it in the stored header: the bytes are plain */
    if (n == 0 || IS("identity") || IS("aws-chunked"))
        return 0;
    if (IS("gzip") || IS("x-gzip"))
        *out = CFS_CODEC_GZIP;
    else if (IS("br"))
        *out = CFS_CODEC_BR;
    else if (IS("zstd"))
        *out = CFS_CODEC_ZSTD;
    else
        return -1;
#undef IS
    return 0;
}

const char *cfs_codec_name(cfs_codec c)
{
    switch (c) {
    case CFS_CODEC_GZIP:
        return "gzip";
    case CFS_CODEC_BR:
        return "br";
    case CFS_CODEC_ZSTD:
        return "zstd";
    default:
        return NULL;
    }
}

const char *cfs_codec_suffix(cfs_codec c)
{
    switch (c) {
    case CFS_CODEC_GZIP:
        return ".gz";
    case CFS_CODEC_BR:
        return ".br";
    case CFS_CODEC_ZSTD:
        return ".zstd";
    default:
        return "";
    }
}

static void level_bounds(cfs_codec c, int *lo, int *hi, int *def)
{
    switch (c) {
    case CFS_CODEC_GZIP:
        *lo = 0;
        *hi = 12;
        *def = 6;
        break;
    case CFS_CODEC_BR:
        *lo = BROTLI_MIN_QUALITY;
        *hi = BROTLI_MAX_QUALITY;
        *def = BROTLI_DEFAULT_QUALITY;
        break;
    case CFS_CODEC_ZSTD:
        *lo = ZSTD_minCLevel();
        *hi = ZSTD_maxCLevel();
        *def = ZSTD_CLEVEL_DEFAULT;
        break;
    default:
        *lo = *hi = *def = 0;
        break;
    }
}

int cfs_codec_level_ok(cfs_codec c, int level)
{
    if (level == CFS_CODEC_LEVEL_DEFAULT)
        return 1;
    int lo, hi, def;
    level_bounds(c, &lo, &hi, &def);
    return level >= lo && level <= hi;
}

int cfs_codec_level_resolve(cfs_codec c, int level)
{
    int lo, hi, def;
    level_bounds(c, &lo, &hi, &def);
    return level == CFS_CODEC_LEVEL_DEFAULT ? def : level;
}

void cfs_codec_level_range(cfs_codec c, char *out, size_t n)
{
    int lo, hi, def;
    level_bounds(c, &lo, &hi, &def);
    snprintf(out, n, "%d to %d", lo, hi);
}

const char *cfs_codec_strerror(int rc)
{
    switch (rc) {
    case CFS_CODEC_OK:
        return "ok";
    case CFS_CODEC_EDATA:
        return "damaged or truncated data";
    case CFS_CODEC_ENOMEM:
        return "out of memory";
    case CFS_CODEC_ELIMIT:
        return "decoded size over the limit";
    case CFS_CODEC_EIO:
        return "I/O error";
    default:
        return "invalid codec or level";
    }
}

/* ---------- per-thread contexts ---------- */

typedef struct thread_ctx {
    struct libdeflate_compressor *gz;
    int gz_level;
    struct libdeflate_decompressor *gunz;
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
} thread_ctx;

static pthread_key_t g_ctx_key;
static pthread_once_t g_ctx_once = PTHREAD_ONCE_INIT;
static int g_ctx_key_ok;

static void ctx_free(void *p)
{
    thread_ctx *t = p;
    if (!t)
        return;
    if (t->gz)
        libdeflate_free_compressor(t->gz);
    if (t->gunz)
        libdeflate_free_decompressor(t->gunz);
    ZSTD_freeCCtx(t->zc);
    ZSTD_freeDCtx(t->zd);
    free(t);
}

static void ctx_key_init(void)
{
    g_ctx_key_ok = pthread_key_create(&g_ctx_key, ctx_free) == 0;
}

/* This thread's contexts, or NULL if out of memory (then the caller makes its own).
 * *owned is set when the caller must free what it gets (no thread key). */
static thread_ctx *ctx_get(int *owned)
{
    pthread_once(&g_ctx_once, ctx_key_init);
    *owned = 0;
    thread_ctx *t = g_ctx_key_ok ? pthread_getspecific(g_ctx_key) : NULL;
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (!g_ctx_key_ok || pthread_setspecific(g_ctx_key, t) != 0)
        *owned = 1;
    return t;
}

static void ctx_put(thread_ctx *t, int owned)
{
    if (owned)
        ctx_free(t);
}

/* ---------- encoding ---------- */

static int encode_gzip(thread_ctx *t, int level, const void *in, size_t len, cfs_buf *out)
{
    if (!t->gz || t->gz_level != level) {
        if (t->gz)
            libdeflate_free_compressor(t->gz);
        t->gz = libdeflate_alloc_compressor(level);
        t->gz_level = level;
        if (!t->gz)
            return CFS_CODEC_ENOMEM;
    }
    size_t bound = libdeflate_gzip_compress_bound(t->gz, len);
    if (cfs_buf_reserve(out, bound) < 0)
        return CFS_CODEC_ENOMEM;
    size_t n = libdeflate_gzip_compress(t->gz, in, len, out->data + out->len, bound);
    if (n == 0)
        return CFS_CODEC_EDATA; /* cannot happen with the bound's room */
    out->len += n;
    return CFS_CODEC_OK;
}

static int encode_br(int level, const void *in, size_t len, cfs_buf *out)
{
    size_t bound = BrotliEncoderMaxCompressedSize(len);
    if (bound == 0) /* too large for the one-shot bound: over 2^30-ish only */
        return CFS_CODEC_EINVAL;
    if (cfs_buf_reserve(out, bound) < 0)
        return CFS_CODEC_ENOMEM;
    size_t n = bound;
    if (!BrotliEncoderCompress(level, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, len, in, &n,
                               (uint8_t *)out->data + out->len))
        return CFS_CODEC_ENOMEM;
    out->len += n;
    return CFS_CODEC_OK;
}

static int encode_zstd(thread_ctx *t, int level, const void *in, size_t len, cfs_buf *out)
{
    if (!t->zc && !(t->zc = ZSTD_createCCtx()))
        return CFS_CODEC_ENOMEM;
    size_t bound = ZSTD_compressBound(len);
    if (ZSTD_isError(bound))
        return CFS_CODEC_EINVAL;
    if (cfs_buf_reserve(out, bound) < 0)
        return CFS_CODEC_ENOMEM;
    size_t n = ZSTD_compressCCtx(t->zc, out->data + out->len, bound, in, len, level);
    if (ZSTD_isError(n))
        return ZSTD_getErrorCode(n) == ZSTD_error_memory_allocation ? CFS_CODEC_ENOMEM
                                                                    : CFS_CODEC_EINVAL;
    out->len += n;
    return CFS_CODEC_OK;
}

int cfs_encode(cfs_codec c, int level, const void *in, size_t len, cfs_buf *out)
{
    if (c == CFS_CODEC_NONE || !cfs_codec_level_ok(c, level))
        return CFS_CODEC_EINVAL;
    level = cfs_codec_level_resolve(c, level);
    if (c == CFS_CODEC_BR)
        return encode_br(level, in, len, out);
    int owned;
    thread_ctx *t = ctx_get(&owned);
    if (!t)
        return CFS_CODEC_ENOMEM;
    int rc = c == CFS_CODEC_GZIP ? encode_gzip(t, level, in, len, out)
                                 : encode_zstd(t, level, in, len, out);
    ctx_put(t, owned);
    return rc;
}

/* ---------- decoding ---------- */

/* The first room to give a decoder that was told (by the data itself) `claimed` bytes
 * would come out of `len` in: believed only up to what the codec can honestly make of
 * that input (deflate: 1032 to 1) and the caller's limit. */
static size_t first_room(size_t claimed, size_t len, size_t ratio, size_t max_out)
{
    size_t plausible = len <= SIZE_MAX / ratio ? len * ratio : SIZE_MAX;
    size_t room = claimed ? claimed : len * 4;
    if (room > plausible)
        room = plausible;
    if (room > max_out)
        room = max_out;
    if (room < 4096)
        room = 4096 < max_out ? 4096 : max_out;
    return room;
}

static int decode_gzip(thread_ctx *t, const unsigned char *p, size_t len, size_t max_out,
                       cfs_buf *out)
{
    if (!t->gunz && !(t->gunz = libdeflate_alloc_decompressor()))
        return CFS_CODEC_ENOMEM;
    size_t start = out->len;
    while (len > 0) {
        if (len < 18) /* header 10 + empty deflate 2 + trailer 8, at the least */
            return CFS_CODEC_EDATA;
        size_t have = out->len - start, left = max_out - have;
        /* ISIZE, the member's size mod 2^32: a first guess only, the sender's word */
        size_t isize = (size_t)p[len - 4] | (size_t)p[len - 3] << 8 | (size_t)p[len - 2] << 16 |
                       (size_t)p[len - 1] << 24;
        size_t room = first_room(isize + 1, len, 1032, left);
        for (;;) {
            if (cfs_buf_reserve(out, room ? room : 1) < 0)
                return CFS_CODEC_ENOMEM;
            size_t in_used = 0, produced = 0;
            enum libdeflate_result r = libdeflate_gzip_decompress_ex(
                t->gunz, p, len, out->data + out->len, room, &in_used, &produced);
            if (r == LIBDEFLATE_SUCCESS) {
                out->len += produced;
                p += in_used;
                len -= in_used;
                break;
            }
            if (r != LIBDEFLATE_INSUFFICIENT_SPACE)
                return CFS_CODEC_EDATA;
            if (room >= left)
                return CFS_CODEC_ELIMIT;
            room = room > left / 2 ? left : room * 2;
        }
    }
    return CFS_CODEC_OK;
}

/* Make room for more output as a streaming decoder fills it: doubling, up to max_out
 * decoded in all (start: where this call's output began). */
static int grow_out(cfs_buf *out, size_t start, size_t max_out)
{
    size_t have = out->len - start;
    if (have >= max_out)
        return CFS_CODEC_ELIMIT;
    size_t more = have < 65536 ? 65536 : have;
    if (more > max_out - have)
        more = max_out - have;
    return cfs_buf_reserve(out, more) < 0 ? CFS_CODEC_ENOMEM : CFS_CODEC_OK;
}

static int decode_br(const uint8_t *p, size_t len, size_t max_out, cfs_buf *out)
{
    BrotliDecoderState *d = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    if (!d)
        return CFS_CODEC_ENOMEM;
    size_t start = out->len, avail_in = len;
    const uint8_t *next_in = p;
    int rc = CFS_CODEC_OK;
    for (;;) {
        if (out->cap - out->len == 0 && (rc = grow_out(out, start, max_out)) != CFS_CODEC_OK)
            break;
        size_t cap_left = out->cap - out->len, limit_left = max_out - (out->len - start);
        size_t avail_out = cap_left < limit_left ? cap_left : limit_left;
        if (avail_out == 0) {
            rc = CFS_CODEC_ELIMIT;
            break;
        }
        uint8_t *next_out = (uint8_t *)out->data + out->len;
        size_t before = avail_out;
        BrotliDecoderResult r =
            BrotliDecoderDecompressStream(d, &avail_in, &next_in, &avail_out, &next_out, NULL);
        out->len += before - avail_out;
        if (r == BROTLI_DECODER_RESULT_SUCCESS) {
            if (avail_in != 0)
                rc = CFS_CODEC_EDATA; /* bytes after the stream */
            break;
        }
        if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT) {
            if ((rc = grow_out(out, start, max_out)) != CFS_CODEC_OK)
                break;
            continue;
        }
        rc = CFS_CODEC_EDATA; /* an error, or NEEDS_MORE_INPUT: truncated */
        break;
    }
    BrotliDecoderDestroyInstance(d);
    return rc;
}

static int decode_zstd(thread_ctx *t, const void *p, size_t len, size_t max_out, cfs_buf *out)
{
    if (!t->zd && !(t->zd = ZSTD_createDCtx()))
        return CFS_CODEC_ENOMEM;
    ZSTD_DCtx_reset(t->zd, ZSTD_reset_session_only);
    /* zstd's window may be up to 2^27 by default: a frame asking for more is refused */
    if (len == 0)
        return CFS_CODEC_EDATA;
    unsigned long long claimed = ZSTD_getFrameContentSize(p, len);
    size_t start = out->len;
    size_t hint = (claimed == ZSTD_CONTENTSIZE_UNKNOWN || claimed == ZSTD_CONTENTSIZE_ERROR ||
                   claimed > SIZE_MAX - 1)
                      ? 0
                      : (size_t)claimed + 1;
    if (cfs_buf_reserve(out, first_room(hint, len, 1032, max_out)) < 0)
        return CFS_CODEC_ENOMEM;
    ZSTD_inBuffer in = { p, len, 0 };
    size_t last = 1;
    while (in.pos < in.size || last != 0) {
        if (out->cap == out->len) {
            int rc = grow_out(out, start, max_out);
            if (rc != CFS_CODEC_OK)
                return rc;
        }
        size_t cap_left = out->cap - out->len, limit_left = max_out - (out->len - start);
        size_t room = cap_left < limit_left ? cap_left : limit_left;
        if (room == 0)
            return CFS_CODEC_ELIMIT;
        ZSTD_outBuffer o = { out->data + out->len, room, 0 };
        last = ZSTD_decompressStream(t->zd, &o, &in);
        out->len += o.pos;
        if (ZSTD_isError(last))
            return ZSTD_getErrorCode(last) == ZSTD_error_memory_allocation ? CFS_CODEC_ENOMEM
                                                                           : CFS_CODEC_EDATA;
        if (last != 0 && in.pos == in.size && o.pos < room)
            return CFS_CODEC_EDATA; /* everything flushed and it wants more input: truncated */
    }
    return CFS_CODEC_OK;
}

int cfs_decode(cfs_codec c, const void *in, size_t len, size_t max_out, cfs_buf *out)
{
    if (len == 0 && c != CFS_CODEC_NONE)
        return CFS_CODEC_OK; /* an empty body is empty in any encoding */
    if (c == CFS_CODEC_BR)
        return decode_br(in, len, max_out, out);
    if (c != CFS_CODEC_GZIP && c != CFS_CODEC_ZSTD)
        return CFS_CODEC_EINVAL;
    int owned;
    thread_ctx *t = ctx_get(&owned);
    if (!t)
        return CFS_CODEC_ENOMEM;
    int rc = c == CFS_CODEC_GZIP ? decode_gzip(t, in, len, max_out, out)
                                 : decode_zstd(t, in, len, max_out, out);
    ctx_put(t, owned);
    return rc;
}
