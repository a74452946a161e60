// libFuzzer target: nginx's JSON directory index (cfs_http_index_parse).
// sources: csrc/backends/http_index.c csrc/core/attrs.c csrc/core/op.c csrc/core/buf.c
// pkg: libcjson
// args: -max_len=65536 -dict=tests/fuzz/json.dict
#include "backends/http_index.h"

#include "fuzz.h"

static int on_entry(void *ctx, const char *name, const char *type, int64_t size, int64_t mtime_ms)
{
    FUZZ_ASSERT(name && type && size >= -1 && mtime_ms >= -1);
    return ++*(int *)ctx >= 1000; /* a callback's stop is handed back */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int n = 0;
    char err[96] = "";
    int rc = cfs_http_index_parse((const char *)data, size, on_entry, &n, err, sizeof err);
    if (rc < 0)
        FUZZ_ASSERT_MESSAGE(err);
    FUZZ_ASSERT(rc == -1 || rc == 0 || (rc == 1 && n == 1000));
    return 0;
}
