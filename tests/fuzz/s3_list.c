// libFuzzer target: an S3 ListObjectsV2 page (cfs_s3_parse_list), and the URL decoding of
// its names when it says <EncodingType>url</EncodingType>.
// sources: csrc/backends/s3/xml.c csrc/util/xml.c csrc/util/base64.c csrc/util/keys.c csrc/core/op.c csrc/core/attrs.c csrc/core/buf.c
// pkg: expat
// args: -max_len=65536 -dict=tests/fuzz/s3.dict
#include "backends/s3/xml.h"
#include "util/keys.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cfs_s3_list_page page;
    char err[256] = "";
    if (cfs_s3_parse_list((const char *)data, size, &page, err, sizeof err) < 0) {
        FUZZ_ASSERT_MESSAGE(err);
        FUZZ_ASSERT(page.entries.len == 0 && page.entries.items == NULL && page.next_token == NULL);
        return 0;
    }
    FUZZ_ASSERT(!page.is_truncated || (page.next_token && page.next_token[0]));
    for (size_t i = 0; i < page.entries.len; i++) {
        const cfs_entry *e = &page.entries.items[i];
        FUZZ_ASSERT(e->name != NULL);
        FUZZ_ASSERT(e->is_dir ? e->size == -1 : e->size >= -1);
        if (page.url_encoded) {
            cfs_buf b = { 0 };
            size_t n = strlen(e->name);
            if (cfs_url_decode(&b, e->name, n, 1) == 0)
                FUZZ_ASSERT(b.len <= n);
            cfs_buf_free(&b);
        }
    }
    cfs_s3_list_page_free(&page);
    return 0;
}
