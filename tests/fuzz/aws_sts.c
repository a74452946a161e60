// libFuzzer target: STS's AssumeRoleWithWebIdentity answer (cfs_aws_sts_parse), the XML a
// token exchange gets back.
// sources: csrc/backends/s3/credentials.c csrc/util/secret.c csrc/util/keys.c csrc/core/buf.c
// pkg: libcjson libcrypto expat
// args: -max_len=8192 -dict=tests/fuzz/s3.dict
#include "backends/s3/credentials.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfs_aws_creds c;
    char err[200] = "";
    if (cfs_aws_sts_parse((const char *)data, size, &c, err, sizeof err) < 0) {
        FUZZ_ASSERT_MESSAGE(err);
    } else {
        FUZZ_ASSERT(c.access_key_id && c.access_key_id[0] && c.secret_access_key &&
                    c.secret_access_key[0]);
        FUZZ_ASSERT(!strpbrk(c.access_key_id, "\r\n") && !strpbrk(c.secret_access_key, "\r\n"));
        FUZZ_ASSERT(!c.session_token || !strpbrk(c.session_token, "\r\n"));
        cfs_aws_creds_clear(&c);
    }
    return 0;
}
