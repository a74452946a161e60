// libFuzzer target: an OAuth token response (cfs_gcs_parse_token).
// sources: csrc/backends/gcs/auth.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/util/secret.c
// pkg: libcjson libcrypto
// args: -max_len=8192 -dict=tests/fuzz/json.dict
#include "backends/gcs/auth.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *token = (char *)"unset", err[128] = "";
    int64_t expires_in = -7;
    if (cfs_gcs_parse_token((const char *)data, size, &token, &expires_in, err, sizeof err) < 0) {
        FUZZ_ASSERT_MESSAGE(err);
        FUZZ_ASSERT(token == NULL);
        return 0;
    }
    FUZZ_ASSERT(token && token[0] && expires_in > 0);
    for (const char *p = token; *p; p++) /* it goes into an Authorization header */
        FUZZ_ASSERT((unsigned char)*p >= 0x21 && (unsigned char)*p <= 0x7E);
    free(token);
    return 0;
}
