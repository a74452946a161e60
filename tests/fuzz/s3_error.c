// libFuzzer target: an S3 <Error> body (cfs_s3_parse_error).
// sources: csrc/backends/s3/xml.c csrc/util/xml.c csrc/util/base64.c csrc/util/keys.c csrc/core/op.c csrc/core/attrs.c csrc/core/buf.c
// pkg: expat
// args: -max_len=16384 -dict=tests/fuzz/s3.dict
#include "backends/s3/xml.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfs_s3_error e;
    int rc = cfs_s3_parse_error((const char *)data, size, &e);
    FUZZ_ASSERT(memchr(e.code, '\0', sizeof e.code) && memchr(e.message, '\0', sizeof e.message));
    if (rc < 0)
        FUZZ_ASSERT(e.code[0] == '\0' && e.message[0] == '\0');
    return 0;
}
