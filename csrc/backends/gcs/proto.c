/* Google Cloud Storage JSON API: URLs, hashes, listing/object/error JSON, multipart bodies. */
#include "backends/gcs/proto.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/base64.h"
#include "util/keys.h"

static int append_enc(cfs_buf *u, const char *s, size_t len)
{
    return cfs_url_encode(u, s, len, 0);
}

static char *finish_url(cfs_buf *u, int ok)
{
    if (!ok || cfs_buf_terminate(u) < 0) {
        cfs_buf_free(u);
        return NULL;
    }
    return cfs_buf_steal(u, NULL);
}

char *cfs_gcs_object_url(const char *endpoint, const char *bucket, const char *name,
                         size_t name_len, const char *query)
{
    cfs_buf u = { 0 };
    int ok = cfs_buf_append_str(&u, endpoint) == 0 &&
             cfs_buf_append_str(&u, "/storage/v1/b/") == 0 &&
             append_enc(&u, bucket, strlen(bucket)) == 0 && cfs_buf_append_str(&u, "/o/") == 0 &&
             append_enc(&u, name, name_len) == 0;
    if (ok && query && *query)
        ok = cfs_buf_append(&u, "?", 1) == 0 && cfs_buf_append_str(&u, query) == 0;
    return finish_url(&u, ok);
}

char *cfs_gcs_list_url(const char *endpoint, const char *bucket, const char *prefix, int recursive,
                       const char *page_token, int max_results)
{
    cfs_buf u = { 0 };
    char tail[64];
    snprintf(tail, sizeof tail, "&maxResults=%d", max_results);
    int ok =
        cfs_buf_append_str(&u, endpoint) == 0 && cfs_buf_append_str(&u, "/storage/v1/b/") == 0 &&
        append_enc(&u, bucket, strlen(bucket)) == 0 && cfs_buf_append_str(&u, "/o?prefix=") == 0 &&
        append_enc(&u, prefix, strlen(prefix)) == 0;
    if (ok && !recursive)
        ok = cfs_buf_append_str(&u, "&delimiter=%2F") == 0;
    if (ok && page_token)
        ok = cfs_buf_append_str(&u, "&pageToken=") == 0 &&
             append_enc(&u, page_token, strlen(page_token)) == 0;
    if (ok)
        ok = cfs_buf_append_str(&u, tail) == 0;
    return finish_url(&u, ok);
}

char *cfs_gcs_upload_url(const char *endpoint, const char *bucket, int if_generation_match_zero)
{
    cfs_buf u = { 0 };
    int ok = cfs_buf_append_str(&u, endpoint) == 0 &&
             cfs_buf_append_str(&u, "/upload/storage/v1/b/") == 0 &&
             append_enc(&u, bucket, strlen(bucket)) == 0 &&
             cfs_buf_append_str(&u, "/o?uploadType=multipart") == 0;
    if (ok && if_generation_match_zero)
        ok = cfs_buf_append_str(&u, "&ifGenerationMatch=0") == 0;
    return finish_url(&u, ok);
}

int cfs_gcs_parse_hash(const char *header, cfs_goog_hash *out)
{
    memset(out, 0, sizeof *out);
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (eq) {
            size_t nlen = (size_t)(eq - p);
            const char *v = eq + 1;
            size_t vlen = (size_t)(end - v);
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            unsigned char raw[32];
            if (nlen == 6 && strncmp(p, "crc32c", 6) == 0) {
                if (cfs_base64_decode(v, vlen, raw, sizeof raw) != 4)
                    return -1;
                out->crc32c = (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 |
                              (uint32_t)raw[2] << 8 | raw[3];
                out->has_crc32c = 1;
            } else if (nlen == 3 && strncmp(p, "md5", 3) == 0) {
                if (cfs_base64_decode(v, vlen, raw, sizeof raw) != 16)
                    return -1;
                memcpy(out->md5, raw, 16);
                out->has_md5 = 1;
            }
        }
        p = end;
    }
    return 0;
}

/* A JSON number or decimal string as int64; -1 if neither. */
static int json_int64(const cJSON *v, int64_t *out)
{
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9.0e15) {
        *out = (int64_t)v->valuedouble;
        return 0;
    }
    if (cJSON_IsString(v) && v->valuestring[0] >= '0' && v->valuestring[0] <= '9') {
        char *end;
        errno = 0;
        long long n = strtoll(v->valuestring, &end, 10);
        if (errno || *end || n < 0)
            return -1;
        *out = n;
        return 0;
    }
    return -1;
}

int cfs_gcs_parse_list(const char *body, size_t len, const char *strip, cfs_entries *out,
                       char **next_page_token, int *oom, char *err, size_t errlen)
{
    *next_page_token = NULL;
    *oom = 0;
    size_t strip_len = strlen(strip);
    cJSON *root = cJSON_ParseWithLength(body ? body : "", len);
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "listing is not a JSON object");
        cJSON_Delete(root);
        return -1;
    }
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
    const cJSON *prefixes = cJSON_GetObjectItemCaseSensitive(root, "prefixes");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(root, "nextPageToken");
    if ((items && !cJSON_IsArray(items)) || (prefixes && !cJSON_IsArray(prefixes)) ||
        (token && !cJSON_IsString(token) && !cJSON_IsNull(token))) {
        snprintf(err, errlen, "listing has malformed items, prefixes or nextPageToken");
        goto fail;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(it, "size");
        if (!cJSON_IsString(name)) {
            snprintf(err, errlen, "listing item without a name");
            goto fail;
        }
        const char *n = name->valuestring;
        size_t nl = strlen(n);
        if (nl < strip_len || memcmp(n, strip, strip_len) != 0) {
            snprintf(err, errlen, "listing item outside the prefix asked for");
            goto fail;
        }
        if (nl == strip_len || n[nl - 1] == '/')
            continue; /* the root itself, or a folder placeholder object */
        int64_t sz = -1;
        if (size && json_int64(size, &sz) < 0) {
            snprintf(err, errlen, "listing item with a malformed size");
            goto fail;
        }
        const cJSON *updated = cJSON_GetObjectItemCaseSensitive(it, "updated");
        const cJSON *etag = cJSON_GetObjectItemCaseSensitive(it, "etag");
        int64_t mtime = -1;
        if (cJSON_IsString(updated) && cfs_parse_rfc3339(updated->valuestring, &mtime) < 0)
            mtime = -1; /* a detail: not worth failing the listing */
        const char *et =
            cJSON_IsString(etag) && strlen(etag->valuestring) < 128 ? etag->valuestring : NULL;
        if (cfs_entries_add(out, n + strip_len, nl - strip_len, sz, 0) < 0 ||
            cfs_entries_set_info(out, mtime, et, et ? strlen(et) : 0) < 0)
            goto nomem;
    }
    cJSON_ArrayForEach(it, prefixes)
    {
        if (!cJSON_IsString(it)) {
            snprintf(err, errlen, "listing prefix is not a string");
            goto fail;
        }
        const char *n = it->valuestring;
        size_t nl = strlen(n);
        if (nl < strip_len || memcmp(n, strip, strip_len) != 0) {
            snprintf(err, errlen, "listing prefix outside the prefix asked for");
            goto fail;
        }
        while (nl > strip_len && n[nl - 1] == '/')
            nl--;
        if (nl == strip_len)
            continue;
        if (cfs_entries_add(out, n + strip_len, nl - strip_len, -1, 1) < 0)
            goto nomem;
    }
    if (cJSON_IsString(token) && token->valuestring[0]) {
        *next_page_token = strdup(token->valuestring);
        if (!*next_page_token)
            goto nomem;
    }
    cJSON_Delete(root);
    return 0;
nomem:
    *oom = 1;
    snprintf(err, errlen, "out of memory reading a listing");
fail:
    cJSON_Delete(root);
    return -1;
}

int cfs_gcs_parse_object(const char *body, size_t len, int64_t *size, cfs_goog_hash *hash)
{
    memset(hash, 0, sizeof *hash);
    cJSON *root = cJSON_ParseWithLength(body ? body : "", len);
    int rc = -1;
    if (!cJSON_IsObject(root))
        goto out;
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(root, "size");
    if (!sz || json_int64(sz, size) < 0)
        goto out;
    const cJSON *crc = cJSON_GetObjectItemCaseSensitive(root, "crc32c");
    if (cJSON_IsString(crc)) {
        unsigned char raw[8];
        if (cfs_base64_decode(crc->valuestring, strlen(crc->valuestring), raw, sizeof raw) != 4)
            goto out;
        hash->crc32c =
            (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 | (uint32_t)raw[2] << 8 | raw[3];
        hash->has_crc32c = 1;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int cfs_gcs_parse_object_attrs(const char *body, size_t len, cfs_object_attrs *a)
{
    cfs_object_attrs_free(a);
    cJSON *root = cJSON_ParseWithLength(body ? body : "", len);
    int rc = -1;
    if (!cJSON_IsObject(root))
        goto out;
    static const struct {
        const char *json;
        size_t off;
    } fields[] = {
        { "etag", offsetof(cfs_object_attrs, etag) },
        { "contentType", offsetof(cfs_object_attrs, content_type) },
        { "contentEncoding", offsetof(cfs_object_attrs, content_encoding) },
        { "cacheControl", offsetof(cfs_object_attrs, cache_control) },
        { "contentDisposition", offsetof(cfs_object_attrs, content_disposition) },
        { "storageClass", offsetof(cfs_object_attrs, storage_class) },
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, fields[i].json);
        if (v && !cJSON_IsString(v) && !cJSON_IsNull(v))
            goto out;
        char **dst = (char **)((char *)a + fields[i].off);
        if (cJSON_IsString(v) && cfs_attr_set(dst, v->valuestring, strlen(v->valuestring)) < 0) {
            rc = -2;
            goto out;
        }
    }
    const cJSON *updated = cJSON_GetObjectItemCaseSensitive(root, "updated");
    int64_t ms;
    if (cJSON_IsString(updated) && cfs_parse_rfc3339(updated->valuestring, &ms) == 0)
        a->last_modified_ms = ms;
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata"), *it;
    if (meta && !cJSON_IsObject(meta) && !cJSON_IsNull(meta))
        goto out;
    cJSON_ArrayForEach(it, meta)
    {
        if (!it->string || (!cJSON_IsString(it) && !cJSON_IsNull(it)))
            goto out;
        if (a->n_metadata >= CFS_META_MAX)
            goto out;
        const char *v = cJSON_IsString(it) ? it->valuestring : "";
        if (cfs_object_attrs_add_meta(a, it->string, strlen(it->string), v, strlen(v)) < 0) {
            rc = -2;
            goto out;
        }
    }
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc < 0)
        cfs_object_attrs_free(a);
    return rc;
}

/* Copy at most n-1 bytes of printable text, collapsing whitespace runs. */
static void copy_text(char *out, size_t n, const char *s, size_t len)
{
    size_t o = 0;
    int space = 0;
    for (size_t i = 0; i < len && o + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            space = o > 0;
            continue;
        }
        if (c < 0x20 || c == 0x7F)
            continue;
        if (space && o + 2 < n)
            out[o++] = ' ';
        space = 0;
        out[o++] = (char)c;
    }
    out[o] = '\0';
}

void cfs_gcs_error_message(const char *body, size_t len, char *out, size_t n)
{
    if (n == 0)
        return;
    out[0] = '\0';
    if (!body || len == 0)
        return;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (cJSON_IsObject(root)) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
        const cJSON *msg = cJSON_IsObject(e) ? cJSON_GetObjectItemCaseSensitive(e, "message") : NULL;
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(root, "error_description");
        if (cJSON_IsString(msg))
            copy_text(out, n, msg->valuestring, strlen(msg->valuestring));
        else if (cJSON_IsString(e) && cJSON_IsString(desc))
            snprintf(out, n, "%s: %s", e->valuestring, desc->valuestring);
        else if (cJSON_IsString(e))
            copy_text(out, n, e->valuestring, strlen(e->valuestring));
        cJSON_Delete(root);
        if (out[0])
            return;
    } else {
        cJSON_Delete(root);
    }
    copy_text(out, n, body, len < 200 ? len : 200);
}

/* {"name": ..., "crc32c": ..., "contentType": ...} as a fresh string (cJSON_free), or NULL. */
/* What an upload stores besides the bytes (cfs_object_attrs) into its JSON metadata. */
static int attrs_json(cJSON *meta, const cfs_object_attrs *a)
{
    const char *ct = a && a->content_type ? a->content_type : "application/octet-stream";
    if (!cJSON_AddStringToObject(meta, "contentType", ct))
        return -1;
    if (!a)
        return 0;
    if ((a->content_encoding &&
         !cJSON_AddStringToObject(meta, "contentEncoding", a->content_encoding)) ||
        (a->cache_control && !cJSON_AddStringToObject(meta, "cacheControl", a->cache_control)) ||
        (a->content_disposition &&
         !cJSON_AddStringToObject(meta, "contentDisposition", a->content_disposition)) ||
        (a->storage_class && !cJSON_AddStringToObject(meta, "storageClass", a->storage_class)))
        return -1;
    if (a->n_metadata == 0)
        return 0;
    cJSON *m = cJSON_AddObjectToObject(meta, "metadata");
    if (!m)
        return -1;
    for (size_t i = 0; i < a->n_metadata; i++)
        if (!cJSON_AddStringToObject(m, a->metadata[i].name, a->metadata[i].value))
            return -1;
    return 0;
}

static char *metadata_json(const char *name, size_t name_len, uint32_t crc32c,
                           const cfs_object_attrs *attrs)
{
    unsigned char be[4] = { (unsigned char)(crc32c >> 24), (unsigned char)(crc32c >> 16),
                            (unsigned char)(crc32c >> 8), (unsigned char)crc32c };
    cfs_buf crc = { 0 };
    char *json = NULL, *name_copy = NULL;
    cJSON *meta = cJSON_CreateObject();
    if (!meta || cfs_base64_encode(&crc, be, 4, 0) < 0)
        goto out;
    if (!(name_copy = strndup(name, name_len)))
        goto out;
    if (!cJSON_AddStringToObject(meta, "name", name_copy) ||
        !cJSON_AddStringToObject(meta, "crc32c", crc.data) || attrs_json(meta, attrs) < 0)
        goto out;
    json = cJSON_PrintUnformatted(meta);
out:
    cJSON_Delete(meta);
    free(name_copy);
    cfs_buf_free(&crc);
    return json;
}

int cfs_gcs_multipart_body(cfs_buf *out, char boundary[64], const char *name, size_t name_len,
                           const void *data, size_t len, uint32_t crc32c,
                           const cfs_object_attrs *attrs)
{
    /* a boundary absent from the data: "--cfs<hex>" never found after at most a few tries */
    uint64_t salt = 0x9E3779B97F4A7C15ull ^ crc32c ^ ((uint64_t)len << 32);
    for (int tries = 0;; tries++) {
        snprintf(boundary, 64, "cfs-%016" PRIx64 "-%08" PRIx32, salt, crc32c);
        size_t blen = strlen(boundary);
        if (!data || len < blen || !memmem(data, len, boundary, blen))
            break;
        salt = salt * 6364136223846793005ull + 1442695040888963407ull + (uint64_t)tries;
    }
    int rc = -1;
    char *json = metadata_json(name, name_len, crc32c, attrs);
    if (!json)
        goto out;
    if (len > (size_t)-1 - 4096 - strlen(json) || cfs_buf_reserve(out, len + strlen(json) + 512) < 0)
        goto out;
    if (cfs_buf_append_str(out, "--") < 0 || cfs_buf_append_str(out, boundary) < 0 ||
        cfs_buf_append_str(out, "\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n") < 0 ||
        cfs_buf_append_str(out, json) < 0 || cfs_buf_append_str(out, "\r\n--") < 0 ||
        cfs_buf_append_str(out, boundary) < 0 || cfs_buf_append_str(out, "\r\nContent-Type: ") < 0 ||
        cfs_buf_append_str(out, attrs && attrs->content_type ? attrs->content_type
                                                             : "application/octet-stream") < 0 ||
        cfs_buf_append_str(out, "\r\n\r\n") < 0 || (len && cfs_buf_append(out, data, len) < 0) ||
        cfs_buf_append_str(out, "\r\n--") < 0 || cfs_buf_append_str(out, boundary) < 0 ||
        cfs_buf_append_str(out, "--\r\n") < 0)
        goto out;
    rc = 0;
out:
    cJSON_free(json);
    return rc;
}

char *cfs_gcs_resumable_url(const char *endpoint, const char *bucket, const char *name,
                            size_t name_len, int if_generation_match_zero)
{
    cfs_buf u = { 0 };
    int ok = cfs_buf_append_str(&u, endpoint) == 0 &&
             cfs_buf_append_str(&u, "/upload/storage/v1/b/") == 0 &&
             append_enc(&u, bucket, strlen(bucket)) == 0 &&
             cfs_buf_append_str(&u, "/o?uploadType=resumable&name=") == 0 &&
             append_enc(&u, name, name_len) == 0;
    if (ok && if_generation_match_zero)
        ok = cfs_buf_append_str(&u, "&ifGenerationMatch=0") == 0;
    return finish_url(&u, ok);
}

int cfs_gcs_upload_metadata(cfs_buf *out, const char *name, size_t name_len, uint32_t crc32c,
                            const cfs_object_attrs *attrs)
{
    char *json = metadata_json(name, name_len, crc32c, attrs);
    int rc = json && cfs_buf_append_str(out, json) == 0 ? 0 : -1;
    cJSON_free(json);
    return rc;
}

int cfs_gcs_parse_upload_range(const char *range, int64_t *persisted)
{
    *persisted = 0;
    if (!range)
        return 0;
    while (*range == ' ' || *range == '\t')
        range++;
    if (strncmp(range, "bytes=0-", 8) != 0)
        return -1;
    const char *p = range + 8;
    if (*p < '0' || *p > '9')
        return -1;
    char *end;
    errno = 0;
    long long last = strtoll(p, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (errno || *end || last < 0 || last == LLONG_MAX)
        return -1;
    *persisted = (int64_t)last + 1;
    return 0;
}

void cfs_gcs_content_range(char *out, size_t n, uint64_t offset, uint64_t len, uint64_t total)
{
    if (len == 0)
        snprintf(out, n, "bytes */%" PRIu64, total);
    else
        snprintf(out, n, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, offset, offset + len - 1, total);
}

int cfs_gcs_batch_delete_body(cfs_buf *out, const char *bucket, const char *const *names,
                              const size_t *lens, const size_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char head[160];
        snprintf(head, sizeof head,
                 "--" CFS_GCS_BATCH_BOUNDARY "\r\nContent-Type: application/http\r\n"
                 "Content-ID: <%zu>\r\n\r\nDELETE ",
                 ids[i]);
        char *path = cfs_gcs_object_url("", bucket, names[i], lens[i], NULL);
        int ok = path && cfs_buf_append_str(out, head) == 0 && cfs_buf_append_str(out, path) == 0 &&
                 cfs_buf_append_str(out, " HTTP/1.1\r\n\r\n\r\n") == 0;
        free(path);
        if (!ok)
            return -1;
    }
    return cfs_buf_append_str(out, "--" CFS_GCS_BATCH_BOUNDARY "--\r\n");
}

/* The boundary parameter of a multipart Content-Type, into out. Returns 0 or -1. */
static int content_type_boundary(const char *ct, char *out, size_t n)
{
    const char *p = ct ? strcasestr(ct, "boundary=") : NULL;
    if (!p)
        return -1;
    p += 9;
    size_t len;
    if (*p == '"') {
        p++;
        const char *q = strchr(p, '"');
        if (!q)
            return -1;
        len = (size_t)(q - p);
    } else {
        len = strcspn(p, "; \t\r\n");
    }
    if (len == 0 || len >= n)
        return -1;
    memcpy(out, p, len);
    out[len] = '\0';
    return 0;
}

/* The end of the line at p (before CRLF or LF) and the start of the next one. */
static const char *line_end(const char *p, const char *end, const char **next)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    *next = nl ? nl + 1 : end;
    if (e > p && e[-1] == '\r')
        e--;
    return e;
}

int cfs_gcs_parse_batch(const char *content_type, const char *body, size_t len,
                        int (*part)(void *ctx, long id, long status, const char *body, size_t len),
                        void *ctx, char *err, size_t errlen)
{
    char boundary[128], delim[132];
    if (content_type_boundary(content_type, boundary, sizeof boundary) < 0) {
        snprintf(err, errlen, "batch response without a multipart boundary");
        return -1;
    }
    snprintf(delim, sizeof delim, "--%s", boundary);
    size_t dlen = strlen(delim);
    const char *end = body ? body + len : NULL;
    const char *p = body ? memmem(body, len, delim, dlen) : NULL;
    int parts = 0;
    while (p) {
        p += dlen;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            break; /* the closing delimiter */
        const char *next_delim = memmem(p, (size_t)(end - p), delim, dlen);
        const char *stop = next_delim ? next_delim : end;
        const char *q, *e;
        line_end(p, stop, &q); /* the rest of the delimiter line */
        /* the part's headers */
        long id = -1;
        for (;;) {
            if (q >= stop) {
                snprintf(err, errlen, "batch response part without a body");
                return -1;
            }
            const char *nq;
            e = line_end(q, stop, &nq);
            if (e == q) {
                q = nq;
                break;
            }
            if ((size_t)(e - q) > 11 && strncasecmp(q, "content-id:", 11) == 0) {
                const char *v = q + 11;
                while (v < e && (*v == ' ' || *v == '\t' || *v == '<'))
                    v++;
                if ((size_t)(e - v) > 9 && strncmp(v, "response-", 9) == 0)
                    v += 9;
                long n = 0;
                const char *d = v;
                while (d < e && *d >= '0' && *d <= '9' && n < 100000000)
                    n = n * 10 + (*d++ - '0');
                if (d > v && (d == e || *d == '>'))
                    id = n;
            }
            q = nq;
        }
        /* the inner response: status line, headers, blank line, body */
        const char *nq;
        e = line_end(q, stop, &nq);
        long status = 0;
        if ((size_t)(e - q) < 12 || strncmp(q, "HTTP/", 5) != 0) {
            snprintf(err, errlen, "batch response part without a status line");
            return -1;
        }
        const char *sp = memchr(q, ' ', (size_t)(e - q));
        if (!sp || e - sp < 4 || sp[1] < '1' || sp[1] > '5' || sp[2] < '0' || sp[2] > '9' ||
            sp[3] < '0' || sp[3] > '9') {
            snprintf(err, errlen, "batch response part with a malformed status line");
            return -1;
        }
        status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
        q = nq;
        while (q < stop) { /* the inner headers, up to a blank line */
            e = line_end(q, stop, &nq);
            int blank = e == q;
            q = nq;
            if (blank)
                break;
        }
        size_t blen = (size_t)(stop - q);
        if (blen >= 2 && q[blen - 2] == '\r' && q[blen - 1] == '\n')
            blen -= 2; /* the line break before the next delimiter belongs to it */
        else if (blen >= 1 && q[blen - 1] == '\n')
            blen -= 1;
        parts++;
        if (id >= 0) {
            int rc = part(ctx, id, status, q, blen);
            if (rc)
                return rc;
        }
        p = next_delim;
    }
    if (!parts) {
        snprintf(err, errlen, "batch response without parts");
        return -1;
    }
    return 0;
}
