// libFuzzer target: key and prefix checks (cfs_key_check, cfs_prefix_check), and the
// URL encoding of an accepted key decoding back to it.
// sources: csrc/util/keys.c csrc/core/buf.c
// args: -max_len=4096
#include "util/keys.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *key = (const char *)data;
    char err[128] = "";
    int key_ok = cfs_key_check(key, size, err, sizeof err) == 0;
    if (!key_ok)
        FUZZ_ASSERT_MESSAGE(err);
    err[0] = '\0';
    int prefix_ok = cfs_prefix_check(key, size, err, sizeof err) == 0;
    if (!prefix_ok)
        FUZZ_ASSERT_MESSAGE(err);
    FUZZ_ASSERT(!key_ok || prefix_ok); /* every key is a prefix */
    if (key_ok) {
        FUZZ_ASSERT(size > 0 && key[0] != '/' && key[size - 1] != '/' && !memchr(key, '\0', size));
        for (int keep_slash = 0; keep_slash <= 1; keep_slash++) {
            cfs_buf enc = { 0 }, dec = { 0 };
            FUZZ_ASSERT(cfs_url_encode(&enc, key, size, keep_slash) == 0);
            FUZZ_ASSERT(cfs_url_decode(&dec, enc.data, enc.len, 0) == 0);
            FUZZ_ASSERT(dec.len == size && memcmp(dec.data, key, size) == 0);
            cfs_buf_free(&enc);
            cfs_buf_free(&dec);
        }
    }
    return 0;
}
