// libFuzzer target: URL decoding (cfs_url_decode) of what a server sends, S3 listing names
// with encoding-type=url ('+' a space) and plain; what decodes encodes and decodes back.
// sources: csrc/util/keys.c csrc/core/buf.c
// args: -max_len=4096
#include "util/keys.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int plus_is_space = 0; plus_is_space <= 1; plus_is_space++) {
        cfs_buf dec = { 0 };
        if (cfs_url_decode(&dec, (const char *)data, size, plus_is_space) == 0) {
            FUZZ_ASSERT(dec.len <= size && dec.data && dec.data[dec.len] == '\0');
            cfs_buf enc = { 0 }, again = { 0 };
            FUZZ_ASSERT(cfs_url_encode(&enc, dec.data, dec.len, 1) == 0);
            FUZZ_ASSERT(cfs_url_decode(&again, enc.data, enc.len, plus_is_space) == 0);
            FUZZ_ASSERT(again.len == dec.len && memcmp(again.data, dec.data, dec.len) == 0);
            cfs_buf_free(&enc);
            cfs_buf_free(&again);
        }
        cfs_buf_free(&dec);
    }
    return 0;
}
