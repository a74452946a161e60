// libFuzzer target: an S3 <DeleteResult> (cfs_s3_parse_delete_result), as DeleteObjects
// answers in Quiet mode.
// sources: csrc/backends/s3/xml.c csrc/util/xml.c csrc/util/base64.c csrc/util/keys.c csrc/core/op.c csrc/core/attrs.c csrc/core/buf.c
// pkg: expat
// args: -max_len=65536 -dict=tests/fuzz/s3.dict
#include "backends/s3/xml.h"

#include "fuzz.h"

static int on_error(void *ctx, const char *key, const char *code, const char *message)
{
    FUZZ_ASSERT(key && code && message);
    FUZZ_ASSERT(strlen(code) < 64 && strlen(message) < 160);
    /* the driver stops at a key it cannot record: stop at the 100th to cover that path */
    return ++*(int *)ctx >= 100;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int n = 0;
    char err[256] = "";
    if (cfs_s3_parse_delete_result((const char *)data, size, on_error, &n, err, sizeof err) < 0)
        FUZZ_ASSERT_MESSAGE(err);
    else
        FUZZ_ASSERT(n < 100);
    return 0;
}
