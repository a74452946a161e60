/* Content codecs: gzip (libdeflate), br (brotli) and zstd, whole bodies in memory. Pure
 * functions with no state of their own: the engine runs them on its worker threads (PUT
 * bodies before the request, GET bodies after their checksum is verified). Decoders never
 * trust a size the data claims (gzip's ISIZE, zstd's frame content size): the output
 * grows as bytes are produced, up to a limit the caller gives. */
#ifndef CFS_CODEC_H
#define CFS_CODEC_H
#include <stddef.h>

#include "core/buf.h"

typedef enum cfs_codec {
    CFS_CODEC_NONE = 0,  /* identity */
    CFS_CODEC_GZIP,
    CFS_CODEC_BR,
    CFS_CODEC_ZSTD,
} cfs_codec;

/* The codec a Content-Encoding (or compress= value) names: NULL, "", "identity" (and
 * "aws-chunked", an upload framing some S3 servers keep in the header) are
 * CFS_CODEC_NONE; "gzip", "x-gzip", "br", "zstd" (any case, surrounding blanks ignored).
 * Returns 0, or -1 for a name this package does not decode. */
int cfs_codec_parse(const char *name, cfs_codec *out);
/* The Content-Encoding value for a codec: "gzip", "br", "zstd"; NULL for CFS_CODEC_NONE. */
const char *cfs_codec_name(cfs_codec c);
/* The file suffix CloudFiles uses for it on local stores: ".gz", ".br", ".zstd"; "" for none. */
const char *cfs_codec_suffix(cfs_codec c);
/* Levels as each library defines them: gzip 0..12 (libdeflate; 6 default), br 0..11
 * (brotli quality; 11 default), zstd ZSTD_minCLevel()..ZSTD_maxCLevel() (3 default).
 * CFS_CODEC_LEVEL_DEFAULT picks the default. */
#define CFS_CODEC_LEVEL_DEFAULT (-1000000)
int cfs_codec_level_ok(cfs_codec c, int level);
/* The level itself, or the codec's default for CFS_CODEC_LEVEL_DEFAULT. */
int cfs_codec_level_resolve(cfs_codec c, int level);
/* "the range" of valid levels for error messages, e.g. "0 to 12". */
void cfs_codec_level_range(cfs_codec c, char *out, size_t n);

/* Results of cfs_encode / cfs_decode. */
enum {
    CFS_CODEC_OK = 0,
    CFS_CODEC_EDATA = -1, /* not valid data for the codec (truncated, damaged, trailing bytes) */
    CFS_CODEC_ENOMEM = -2,
    CFS_CODEC_ELIMIT = -3, /* decoding would exceed max_out */
    CFS_CODEC_EINVAL = -4, /* bad level or codec */
    CFS_CODEC_EIO = -5,    /* transcode.h: the input could not be read or the output written */
};

/* Encode `in` and append it to out (left as it was on failure beyond its length). */
int cfs_encode(cfs_codec c, int level, const void *in, size_t len, cfs_buf *out);
/* Decode `in` and append it to out, at most max_out bytes. gzip accepts several
 * concatenated members, zstd several frames. */
int cfs_decode(cfs_codec c, const void *in, size_t len, size_t max_out, cfs_buf *out);
/* A short message for a result code. */
const char *cfs_codec_strerror(int rc);

#endif
