// libFuzzer target: the human part of a GCS or OAuth error body (cfs_gcs_error_message),
// into a roomy buffer and a tiny one.
// sources: csrc/backends/gcs/proto.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/core/op.c csrc/core/attrs.c
// pkg: libcjson libdeflate
// args: -max_len=16384 -dict=tests/fuzz/json.dict
#include "backends/gcs/proto.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[256], tiny[8];
    cfs_gcs_error_message((const char *)data, size, msg, sizeof msg);
    FUZZ_ASSERT(memchr(msg, '\0', sizeof msg));
    cfs_gcs_error_message((const char *)data, size, tiny, sizeof tiny);
    FUZZ_ASSERT(memchr(tiny, '\0', sizeof tiny));
    return 0;
}
