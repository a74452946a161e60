// libFuzzer target: the content decoders (cfs_decode: gzip, br, zstd). The first byte picks
// the codec, the rest is the body. The output is bounded by a 64 MiB limit and the room
// taken never comes from a size the data claims (gzip ISIZE, zstd frame content size).
// sources: csrc/util/codec.c csrc/core/buf.c
// pkg: libdeflate libbrotlienc libbrotlidec libzstd
// args: -max_len=16384
#include "util/codec.h"

#include "fuzz.h"

#define LIMIT ((size_t)64 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const cfs_codec codecs[] = { CFS_CODEC_GZIP, CFS_CODEC_BR, CFS_CODEC_ZSTD };
    cfs_codec c = codecs[data[0] % 3];
    cfs_buf out = { 0 };
    int rc = cfs_decode(c, data + 1, size - 1, LIMIT, &out);
    FUZZ_ASSERT(rc == CFS_CODEC_OK || rc == CFS_CODEC_EDATA || rc == CFS_CODEC_ELIMIT);
    FUZZ_ASSERT(out.len <= LIMIT);
    if (rc == CFS_CODEC_OK && out.len > 0 && out.len < 65536) {
        /* what decodes, encodes and decodes back to itself */
        cfs_buf enc = { 0 }, back = { 0 };
        FUZZ_ASSERT(cfs_encode(c, 1, out.data, out.len, &enc) == CFS_CODEC_OK);
        FUZZ_ASSERT(cfs_decode(c, enc.data, enc.len, LIMIT, &back) == CFS_CODEC_OK);
        FUZZ_ASSERT(back.len == out.len && memcmp(back.data, out.data, out.len) == 0);
        cfs_buf_free(&enc);
        cfs_buf_free(&back);
    }
    cfs_buf_free(&out);
    return 0;
}
