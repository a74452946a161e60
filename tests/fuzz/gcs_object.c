// libFuzzer target: a GCS object resource, its size and crc32c (cfs_gcs_parse_object).
// sources: csrc/backends/gcs/proto.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/core/op.c csrc/core/attrs.c
// pkg: libcjson libdeflate
// args: -max_len=16384 -dict=tests/fuzz/json.dict
#include "backends/gcs/proto.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t sz = -7;
    cfs_goog_hash h;
    if (cfs_gcs_parse_object((const char *)data, size, &sz, &h) == 0)
        FUZZ_ASSERT(sz >= 0);
    return 0;
}
