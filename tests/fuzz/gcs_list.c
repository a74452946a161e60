// libFuzzer target: a GCS listing page (cfs_gcs_parse_list). Input: the store root to
// strip ("root/" or empty) on the first line, then the JSON page.
// sources: csrc/backends/gcs/proto.c csrc/util/base64.c csrc/util/keys.c csrc/core/buf.c csrc/core/op.c csrc/core/attrs.c
// pkg: libcjson libdeflate
// args: -max_len=65536 -dict=tests/fuzz/json.dict
#include "backends/gcs/proto.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_split in = fuzz_split_input(data, size);
    cfs_entries e = { 0 };
    char *next = (char *)"unset", err[160] = "";
    int oom = -1;
    int rc = cfs_gcs_parse_list(in.rest, in.rest_len, in.head, &e, &next, &oom, err, sizeof err);
    FUZZ_ASSERT(oom == 0);
    if (rc < 0) {
        FUZZ_ASSERT_MESSAGE(err);
        FUZZ_ASSERT(next == NULL);
    } else {
        FUZZ_ASSERT(next == NULL || next[0]);
        for (size_t i = 0; i < e.len; i++) {
            const char *n = e.items[i].name;
            FUZZ_ASSERT(n && n[0]);
            FUZZ_ASSERT(n[strlen(n) - 1] != '/');
            FUZZ_ASSERT(e.items[i].is_dir ? e.items[i].size == -1 : e.items[i].size >= -1);
        }
    }
    free(next);
    cfs_entries_free(&e);
    fuzz_split_free(&in);
    return 0;
}
