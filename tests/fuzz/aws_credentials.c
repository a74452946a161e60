// libFuzzer target: an AWS credential document from IMDS or the container endpoint
// (cfs_aws_creds_parse), and its time format alone (cfs_aws_parse_time).
// sources: csrc/backends/s3/credentials.c csrc/util/secret.c csrc/util/keys.c csrc/core/buf.c
// pkg: libcjson libcrypto expat
// args: -max_len=8192 -dict=tests/fuzz/json.dict
#include "backends/s3/credentials.h"

#include "fuzz.h"

static int header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfs_aws_creds c;
    char err[200] = "";
    if (cfs_aws_creds_parse((const char *)data, size, &c, err, sizeof err) < 0) {
        FUZZ_ASSERT_MESSAGE(err);
        FUZZ_ASSERT(!c.access_key_id && !c.secret_access_key && !c.session_token && !c.expiration);
    } else {
        FUZZ_ASSERT(c.access_key_id && c.access_key_id[0] && c.secret_access_key &&
                    c.secret_access_key[0]);
        FUZZ_ASSERT(header_safe(c.access_key_id) && header_safe(c.secret_access_key));
        FUZZ_ASSERT(!c.session_token || header_safe(c.session_token));
        cfs_aws_creds_clear(&c);
    }
    char *s = fuzz_cstr(data, size);
    int64_t t;
    (void)cfs_aws_parse_time(s, &t);
    free(s);
    return 0;
}
