// libFuzzer target: the x-goog-hash header (cfs_gcs_parse_hash).
// sources: csrc/backends/gcs/proto.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/core/op.c csrc/core/attrs.c
// pkg: libcjson libdeflate
// args: -max_len=1024
#include "backends/gcs/proto.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *header = fuzz_cstr(data, size);
    cfs_goog_hash h;
    if (cfs_gcs_parse_hash(header, &h) == 0)
        FUZZ_ASSERT(h.has_crc32c == 0 || h.has_crc32c == 1);
    free(header);
    return 0;
}
