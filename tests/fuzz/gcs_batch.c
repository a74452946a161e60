// libFuzzer target: a GCS batch (multipart/mixed) response (cfs_gcs_parse_batch). Input:
// the Content-Type header (with its boundary) on the first line, then the body.
// sources: csrc/backends/gcs/proto.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/core/op.c csrc/core/attrs.c
// pkg: libcjson libdeflate
// args: -max_len=32768 -dict=tests/fuzz/batch.dict
#include "backends/gcs/proto.h"

#include "fuzz.h"

typedef struct seen {
    const char *body;
    size_t len;
    int parts;
} seen;

static int on_part(void *ctx, long id, long status, const char *body, size_t len)
{
    seen *s = ctx;
    FUZZ_ASSERT(id >= 0 && status >= 100 && status <= 599);
    FUZZ_ASSERT(body >= s->body && len <= s->len && body - s->body <= (ptrdiff_t)(s->len - len));
    return ++s->parts >= 200 ? 3 : 0; /* a callback's stop is handed back */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_split in = fuzz_split_input(data, size);
    seen s = { in.rest, in.rest_len, 0 };
    char err[160] = "";
    int rc = cfs_gcs_parse_batch(in.head, in.rest, in.rest_len, on_part, &s, err, sizeof err);
    if (rc < 0)
        FUZZ_ASSERT_MESSAGE(err);
    FUZZ_ASSERT(rc == -1 || rc == 0 || (rc == 3 && s.parts == 200));
    fuzz_split_free(&in);
    return 0;
}
