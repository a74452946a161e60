// libFuzzer target: the UploadId of an <InitiateMultipartUploadResult>
// (cfs_s3_parse_upload_id).
// sources: csrc/backends/s3/xml.c csrc/util/xml.c csrc/util/base64.c csrc/util/keys.c csrc/core/op.c csrc/core/attrs.c csrc/core/buf.c
// pkg: expat
// args: -max_len=16384 -dict=tests/fuzz/s3.dict
#include "backends/s3/xml.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *id = (char *)"unset", err[256] = "";
    if (cfs_s3_parse_upload_id((const char *)data, size, &id, err, sizeof err) < 0) {
        FUZZ_ASSERT_MESSAGE(err);
        FUZZ_ASSERT(id == NULL);
        return 0;
    }
    FUZZ_ASSERT(id && id[0]);
    free(id);
    return 0;
}
