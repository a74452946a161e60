// Test-only: the SigV4 signer over stdin/stdout, so Python tests can compare it with
// botocore without a test hook in the extension. Not a unit test itself (no test_ prefix).
// One JSON object per input line:
//   {"method", "path", "path_mode": "s3"|"encoded"|"normalize", "query": [[name, value]...]
//    (raw, decoded), "headers": [[name, value]...], "payload_hash", "content_sha256_header",
//    "time" (epoch seconds), "region", "service", "access_key_id", "secret_access_key",
//    "session_token", "expires"}
// One JSON object per output line: canonical_path, canonical_query, canonical_request,
// string_to_sign, signature, signed_headers, authorization, extra_headers, presigned_query,
// or {"error": message}.
// sources: csrc/backends/s3/sigv4.c csrc/core/buf.c
// pkg: libcrypto libcjson
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/s3/sigv4.h"

#define MAXP 64

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static size_t pairs(const cJSON *o, const char *name, cfs_sigv4_pair *out)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, name), *it;
    size_t n = 0;
    cJSON_ArrayForEach(it, arr)
    {
        if (n >= MAXP || cJSON_GetArraySize(it) != 2)
            break;
        const cJSON *k = cJSON_GetArrayItem(it, 0), *v = cJSON_GetArrayItem(it, 1);
        out[n].name = cJSON_IsString(k) ? k->valuestring : NULL;
        out[n].value = cJSON_IsString(v) ? v->valuestring : NULL;
        n++;
    }
    return n;
}

static void put(cJSON *o, const char *name, const char *value)
{
    if (value)
        cJSON_AddStringToObject(o, name, value);
    else
        cJSON_AddNullToObject(o, name);
}

static void handle(const char *line)
{
    cJSON *req = cJSON_Parse(line), *res = cJSON_CreateObject();
    if (!res)
        exit(2);
    if (!req) {
        put(res, "error", "bad JSON");
    } else {
        cfs_sigv4_pair query[MAXP], headers[MAXP];
        const char *mode = str(req, "path_mode");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "time");
        const cJSON *exp = cJSON_GetObjectItemCaseSensitive(req, "expires");
        cfs_sigv4_input in = {
            .method = str(req, "method"),
            .path = str(req, "path"),
            .path_mode = !mode || !strcmp(mode, "s3") ? CFS_SIGV4_PATH_S3
                         : !strcmp(mode, "encoded")   ? CFS_SIGV4_PATH_ENCODED
                                                      : CFS_SIGV4_PATH_NORMALIZE,
            .query = query,
            .n_query = pairs(req, "query", query),
            .headers = headers,
            .n_headers = pairs(req, "headers", headers),
            .payload_hash = str(req, "payload_hash"),
            .content_sha256_header =
                cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req, "content_sha256_header")),
            .time = cJSON_IsNumber(t) ? (int64_t)t->valuedouble : 0,
            .region = str(req, "region"),
            .service = str(req, "service"),
            .access_key_id = str(req, "access_key_id"),
            .secret_access_key = str(req, "secret_access_key"),
            .session_token = str(req, "session_token"),
            .expires = cJSON_IsNumber(exp) ? (long)exp->valuedouble : 0,
        };
        cfs_sigv4_output out;
        char err[256] = "";
        if (cfs_sigv4_sign(&in, &out, err, sizeof err) < 0) {
            put(res, "error", err);
        } else {
            put(res, "canonical_path", out.canonical_path);
            put(res, "canonical_query", out.canonical_query);
            put(res, "canonical_request", out.canonical_request);
            put(res, "string_to_sign", out.string_to_sign);
            put(res, "signature", out.signature);
            put(res, "signed_headers", out.signed_headers);
            put(res, "authorization", out.authorization);
            put(res, "presigned_query", out.presigned_query);
            cJSON *extra = cJSON_AddArrayToObject(res, "extra_headers");
            for (size_t i = 0; extra && i < out.n_extra_headers; i++)
                cJSON_AddItemToArray(extra, cJSON_CreateString(out.extra_headers[i]));
        }
        cfs_sigv4_output_free(&out);
    }
    char *s = cJSON_PrintUnformatted(res);
    if (!s)
        exit(2);
    printf("%s\n", s);
    fflush(stdout);
    cJSON_free(s);
    cJSON_Delete(res);
    cJSON_Delete(req);
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (line[n - 1] == '\n')
            line[n - 1] = '\0';
        if (*line)
            handle(line);
    }
    free(line);
    return 0;
}
