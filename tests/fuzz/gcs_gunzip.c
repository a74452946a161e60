// libFuzzer target: a gzip body (cfs_gcs_gunzip). Its output is bounded by the input:
// deflate expands at most 1032 to 1, so a 16 KiB input (-max_len) makes at most ~17 MB.
// sources: csrc/backends/gcs/proto.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/core/op.c
// pkg: libcjson libdeflate
// args: -max_len=16384
#include "backends/gcs/proto.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfs_buf out = { 0 };
    int rc = cfs_gcs_gunzip(data, size, &out);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    if (rc == 0)
        FUZZ_ASSERT(out.len <= size * 1032);
    cfs_buf_free(&out);
    return 0;
}
