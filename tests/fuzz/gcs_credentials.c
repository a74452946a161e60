// libFuzzer target: a Google credentials file, service_account or authorized_user
// (cfs_gcs_credentials_parse).
// sources: csrc/backends/gcs/auth.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/util/secret.c
// pkg: libcjson libcrypto
// args: -max_len=16384 -dict=tests/fuzz/json.dict
#include "backends/gcs/auth.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfs_gcs_credentials c;
    char err[256] = "";
    if (cfs_gcs_credentials_parse((const char *)data, size, NULL, &c, err, sizeof err) < 0) {
        FUZZ_ASSERT_MESSAGE(err);
        FUZZ_ASSERT(c.kind == CFS_GCS_CRED_ANON && !c.token_uri && !c.pkey && !c.client_secret);
        return 0;
    }
    FUZZ_ASSERT(c.token_uri);
    if (c.kind == CFS_GCS_CRED_SERVICE_ACCOUNT)
        FUZZ_ASSERT(c.client_email && c.pkey);
    else
        FUZZ_ASSERT(c.kind == CFS_GCS_CRED_AUTHORIZED_USER && c.client_id && c.client_secret &&
                    c.refresh_token);
    cfs_gcs_credentials_clear(&c);
    return 0;
}
