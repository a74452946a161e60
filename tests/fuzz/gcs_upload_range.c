// libFuzzer target: the Range header of a resumable upload's 308 answer
// (cfs_gcs_parse_upload_range).
// sources: csrc/backends/gcs/proto.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/core/op.c csrc/core/attrs.c
// pkg: libcjson libdeflate
// args: -max_len=256
#include "backends/gcs/proto.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *range = fuzz_cstr(data, size);
    int64_t held = -7;
    if (cfs_gcs_parse_upload_range(range, &held) == 0)
        FUZZ_ASSERT(held > 0);
    else
        FUZZ_ASSERT(held == 0);
    free(range);
    return 0;
}
