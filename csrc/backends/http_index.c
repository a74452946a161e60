/* nginx's JSON directory index (see http_index.h). */
#include "backends/http_index.h"

#include <cjson/cJSON.h>
#include <stdio.h>

#include "core/op.h"

static const char *skip_json_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

/* One element of the array: 0, fn's nonzero value, or -1 with err. */
static int index_entry(const cJSON *item, cfs_http_index_fn fn, void *ctx, char *err, size_t errlen)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(item, "type");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(item, "size");
    if (!cJSON_IsString(name) || !cJSON_IsString(type)) {
        snprintf(err, errlen, "directory index entry without name or type");
        return -1;
    }
    /* a size is a whole number of bytes below 2^53; any other number is no size (-1) */
    int64_t sz = cJSON_IsNumber(size) && size->valuedouble >= 0 && size->valuedouble < 9.0e15
                     ? (int64_t)size->valuedouble
                     : -1;
    const cJSON *mtime = cJSON_GetObjectItemCaseSensitive(item, "mtime");
    int64_t ms = -1;
    if (!cJSON_IsString(mtime) || cfs_parse_http_date(mtime->valuestring, &ms) < 0)
        ms = -1;
    return fn(ctx, name->valuestring, type->valuestring, sz, ms);
}

/* cJSON makes a node and strings for every value: a whole index of 100,000 entries is a
 * million allocations, freed together, and malloc then spent most of a listing merging
 * them. So the array is read one element at a time (cJSON parses each and says where it
 * ended): each element's few nodes are freed before the next is parsed, and reused. */
int cfs_http_index_parse(const char *body, size_t len, cfs_http_index_fn fn, void *ctx, char *err,
                         size_t errlen)
{
    const char *p = body ? body : "", *end = p + len;
    p = skip_json_space(p, end);
    if (p == end || *p != '[')
        goto not_array;
    p = skip_json_space(p + 1, end);
    if (p < end && *p == ']') {
        p++;
    } else {
        for (;;) {
            const char *item_end = NULL;
            cJSON *item = cJSON_ParseWithLengthOpts(p, (size_t)(end - p), &item_end, 0);
            if (!item)
                goto not_array;
            int rc = index_entry(item, fn, ctx, err, errlen);
            cJSON_Delete(item);
            if (rc)
                return rc;
            p = skip_json_space(item_end, end);
            if (p < end && *p == ',') {
                p = skip_json_space(p + 1, end);
                continue;
            }
            if (p < end && *p == ']') {
                p++;
                break;
            }
            goto not_array;
        }
    }
    if (skip_json_space(p, end) != end)
        goto not_array;
    return 0;
not_array:
    snprintf(err, errlen, "directory index is not a JSON array");
    return -1;
}
