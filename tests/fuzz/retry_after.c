// libFuzzer target: a Retry-After header value, delta-seconds or an HTTP date
// (cfs_retry_after_parse).
// sources: csrc/core/retry.c
// args: -max_len=256
#include <math.h>

#include "core/retry.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *value = fuzz_cstr(data, size);
    double s = cfs_retry_after_parse(value, 1700000000);
    FUZZ_ASSERT(s == -1 || (s >= 0 && isfinite(s)));
    free(value);
    return 0;
}
