/* S3 XML documents (see xml.h): each document type read is a pair of start/end handlers
 * over the generic expat walker (util/xml.h); the request bodies are written here. */
#include "backends/s3/xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/base64.h"
#include "util/xml.h"

static void copy_trunc(char *dst, size_t n, const char *src)
{
    size_t l = strlen(src);
    if (l >= n)
        l = n - 1;
    memcpy(dst, src, l);
    dst[l] = '\0';
}

/* ------------------------------------------------------------------ ListObjectsV2 */

typedef struct list_ctx {
    cfs_s3_list_page *page;
    cfs_buf name;           /* current <Key> or <Prefix> */
    int have_name;
    int64_t size;
    int64_t mtime_ms;       /* <LastModified>, -1 if absent or unreadable */
    char etag[128];         /* <ETag>, "" if absent (a longer one is not kept) */
} list_ctx;

static int parse_size(const char *s, int64_t *out)
{
    if (!*s)
        return -1;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    *out = v;
    return 0;
}

static int list_start(cfs_xml_walker *w)
{
    list_ctx *c = w->ctx;
    if (w->depth == 1 && !cfs_xml_is(w, 1, "ListBucketResult")) {
        cfs_xml_fail(w, "not a ListBucketResult (root element <%s>)", cfs_xml_name(w, 1));
        return -1;
    }
    if (w->depth == 2 && (cfs_xml_is(w, 2, "Contents") || cfs_xml_is(w, 2, "CommonPrefixes"))) {
        cfs_buf_reset(&c->name);
        c->have_name = 0;
        c->size = -1;
        c->mtime_ms = -1;
        c->etag[0] = '\0';
    }
    return 0;
}

static int list_end(cfs_xml_walker *w)
{
    list_ctx *c = w->ctx;
    cfs_s3_list_page *pg = c->page;
    const char *t = cfs_xml_text(w);
    if (w->depth == 3 && ((cfs_xml_is(w, 2, "Contents") && cfs_xml_is(w, 3, "Key")) ||
                          (cfs_xml_is(w, 2, "CommonPrefixes") && cfs_xml_is(w, 3, "Prefix")))) {
        cfs_buf_reset(&c->name);
        if (cfs_buf_append(&c->name, t, w->text.len) < 0) {
            cfs_xml_fail_oom(w);
            return -1;
        }
        c->have_name = 1;
    } else if (w->depth == 3 && cfs_xml_is(w, 2, "Contents") && cfs_xml_is(w, 3, "Size")) {
        if (parse_size(t, &c->size) < 0) {
            cfs_xml_fail(w, "bad <Size> in a listing: '%.40s'", t);
            return -1;
        }
    } else if (w->depth == 3 && cfs_xml_is(w, 2, "Contents") && cfs_xml_is(w, 3, "LastModified")) {
        int64_t ms;
        c->mtime_ms = cfs_parse_rfc3339(t, &ms) == 0 ? ms : -1; /* a detail: not worth failing */
    } else if (w->depth == 3 && cfs_xml_is(w, 2, "Contents") && cfs_xml_is(w, 3, "ETag")) {
        if (strlen(t) < sizeof c->etag)
            copy_trunc(c->etag, sizeof c->etag, t);
    } else if (w->depth == 2 &&
               (cfs_xml_is(w, 2, "Contents") || cfs_xml_is(w, 2, "CommonPrefixes"))) {
        int dir = cfs_xml_is(w, 2, "CommonPrefixes");
        if (!c->have_name) {
            cfs_xml_fail(w, "listing entry without a %s", dir ? "<Prefix>" : "<Key>");
            return -1;
        }
        if (cfs_entries_add(&pg->entries, c->name.data ? c->name.data : "", c->name.len,
                            dir ? -1 : c->size, dir) < 0 ||
            (!dir && cfs_entries_set_info(&pg->entries, c->mtime_ms, c->etag[0] ? c->etag : NULL,
                                          strlen(c->etag)) < 0)) {
            cfs_xml_fail_oom(w);
            return -1;
        }
    } else if (w->depth == 2 && cfs_xml_is(w, 2, "IsTruncated")) {
        pg->is_truncated = strcmp(t, "true") == 0;
    } else if (w->depth == 2 && cfs_xml_is(w, 2, "NextContinuationToken")) {
        free(pg->next_token);
        pg->next_token = strdup(t);
        if (!pg->next_token) {
            cfs_xml_fail_oom(w);
            return -1;
        }
    } else if (w->depth == 2 && cfs_xml_is(w, 2, "EncodingType")) {
        pg->url_encoded = strcmp(t, "url") == 0;
    }
    return 0;
}

void cfs_s3_list_page_free(cfs_s3_list_page *page)
{
    if (!page)
        return;
    cfs_entries_free(&page->entries);
    free(page->next_token);
    memset(page, 0, sizeof *page);
}

int cfs_s3_parse_list(const char *xml, size_t len, cfs_s3_list_page *page, char *err, size_t errlen)
{
    memset(page, 0, sizeof *page);
    list_ctx c = { .page = page };
    cfs_xml_walker w = { .on_start = list_start, .on_end = list_end, .ctx = &c };
    int rc = cfs_xml_walk(&w, xml, len);
    cfs_buf_free(&c.name);
    if (rc < 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s", w.err);
        cfs_s3_list_page_free(page);
        return -1;
    }
    if (page->is_truncated && (!page->next_token || !*page->next_token)) {
        if (err && errlen)
            snprintf(err, errlen, "truncated listing without a NextContinuationToken");
        cfs_s3_list_page_free(page);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ errors */

static int error_start(cfs_xml_walker *w)
{
    if (w->depth == 1 && !cfs_xml_is(w, 1, "Error"))
        return -1;
    return 0;
}

static int error_end(cfs_xml_walker *w)
{
    cfs_s3_error *e = w->ctx;
    if (w->depth == 2 && cfs_xml_is(w, 2, "Code"))
        copy_trunc(e->code, sizeof e->code, cfs_xml_text(w));
    else if (w->depth == 2 && cfs_xml_is(w, 2, "Message"))
        copy_trunc(e->message, sizeof e->message, cfs_xml_text(w));
    return 0;
}

int cfs_s3_parse_error(const char *xml, size_t len, cfs_s3_error *out)
{
    memset(out, 0, sizeof *out);
    if (!xml || len == 0)
        return -1;
    cfs_xml_walker w = { .on_start = error_start, .on_end = error_end, .ctx = out };
    if (cfs_xml_walk(&w, xml, len) < 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- DeleteObjects */

static int xml_escape(cfs_buf *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *rep = NULL;
        char num[8];
        switch (*p) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        case '\t':
        case '\n':
        case '\r':
            snprintf(num, sizeof num, "&#%d;", *p);
            rep = num;
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                return -1; /* not representable in XML 1.0 */
        }
        if (rep ? cfs_buf_append_str(out, rep) < 0 : cfs_buf_append(out, p, 1) < 0)
            return -1;
    }
    return 0;
}

int cfs_s3_delete_body(cfs_buf *out, const char *const *keys, size_t n)
{
    if (cfs_buf_append_str(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                                "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                                "<Quiet>true</Quiet>") < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (cfs_buf_append_str(out, "<Object><Key>") < 0 || xml_escape(out, keys[i]) < 0 ||
            cfs_buf_append_str(out, "</Key></Object>") < 0)
            return -1;
    }
    return cfs_buf_append_str(out, "</Delete>");
}

typedef struct delete_ctx {
    cfs_s3_delete_error_cb cb;
    void *ctx;
    cfs_buf key;
    char code[64];
    char message[160];
} delete_ctx;

static int delete_start(cfs_xml_walker *w)
{
    delete_ctx *c = w->ctx;
    if (w->depth == 1 && !cfs_xml_is(w, 1, "DeleteResult")) {
        cfs_xml_fail(w, "not a DeleteResult (root element <%s>)", cfs_xml_name(w, 1));
        return -1;
    }
    if (w->depth == 2 && cfs_xml_is(w, 2, "Error")) {
        cfs_buf_reset(&c->key);
        c->code[0] = c->message[0] = '\0';
    }
    return 0;
}

static int delete_end(cfs_xml_walker *w)
{
    delete_ctx *c = w->ctx;
    if (w->depth == 3 && cfs_xml_is(w, 2, "Error")) {
        if (cfs_xml_is(w, 3, "Key")) {
            cfs_buf_reset(&c->key);
            if (cfs_buf_append(&c->key, cfs_xml_text(w), w->text.len) < 0 ||
                cfs_buf_terminate(&c->key) < 0) {
                cfs_xml_fail_oom(w);
                return -1;
            }
        } else if (cfs_xml_is(w, 3, "Code")) {
            copy_trunc(c->code, sizeof c->code, cfs_xml_text(w));
        } else if (cfs_xml_is(w, 3, "Message")) {
            copy_trunc(c->message, sizeof c->message, cfs_xml_text(w));
        }
    } else if (w->depth == 2 && cfs_xml_is(w, 2, "Error")) {
        if (c->cb(c->ctx, c->key.data ? c->key.data : "", c->code, c->message) != 0) {
            cfs_xml_fail(w, "DeleteObjects error callback failed");
            return -1;
        }
    }
    return 0;
}

int cfs_s3_parse_delete_result(const char *xml, size_t len, cfs_s3_delete_error_cb cb, void *ctx,
                               char *err, size_t errlen)
{
    delete_ctx c = { .cb = cb, .ctx = ctx };
    cfs_xml_walker w = { .on_start = delete_start, .on_end = delete_end, .ctx = &c };
    int rc = cfs_xml_walk(&w, xml, len);
    cfs_buf_free(&c.key);
    if (rc < 0 && err && errlen)
        snprintf(err, errlen, "%s", w.err);
    return rc;
}

/* ------------------------------------------------------------- multipart upload */

typedef struct upload_ctx {
    char *upload_id;
} upload_ctx;

static int upload_start(cfs_xml_walker *w)
{
    if (w->depth == 1 && !cfs_xml_is(w, 1, "InitiateMultipartUploadResult")) {
        cfs_xml_fail(w, "not an InitiateMultipartUploadResult (root element <%s>)",
                     cfs_xml_name(w, 1));
        return -1;
    }
    return 0;
}

static int upload_end(cfs_xml_walker *w)
{
    upload_ctx *c = w->ctx;
    if (w->depth == 2 && cfs_xml_is(w, 2, "UploadId")) {
        free(c->upload_id);
        c->upload_id = strdup(cfs_xml_text(w));
        if (!c->upload_id) {
            cfs_xml_fail_oom(w);
            return -1;
        }
    }
    return 0;
}

int cfs_s3_parse_upload_id(const char *xml, size_t len, char **upload_id, char *err, size_t errlen)
{
    upload_ctx c = { NULL };
    cfs_xml_walker w = { .on_start = upload_start, .on_end = upload_end, .ctx = &c };
    *upload_id = NULL;
    if (cfs_xml_walk(&w, xml, len) < 0 || !c.upload_id || !*c.upload_id) {
        if (err && errlen)
            snprintf(err, errlen, "%s", w.failed ? w.err : "no UploadId in the answer");
        free(c.upload_id);
        return -1;
    }
    *upload_id = c.upload_id;
    return 0;
}

/* UploadPartCopy's <CopyPartResult><ETag>: the same walker, another element. */
static int copy_part_start(cfs_xml_walker *w)
{
    if (w->depth == 1 && !cfs_xml_is(w, 1, "CopyPartResult")) {
        cfs_xml_fail(w, "not a CopyPartResult (root element <%s>)", cfs_xml_name(w, 1));
        return -1;
    }
    return 0;
}

static int copy_part_end(cfs_xml_walker *w)
{
    upload_ctx *c = w->ctx;
    if (w->depth == 2 && cfs_xml_is(w, 2, "ETag")) {
        free(c->upload_id);
        c->upload_id = strdup(cfs_xml_text(w));
        if (!c->upload_id) {
            cfs_xml_fail_oom(w);
            return -1;
        }
    }
    return 0;
}

int cfs_s3_parse_copy_part_etag(const char *xml, size_t len, char **etag, char *err, size_t errlen)
{
    upload_ctx c = { NULL };
    cfs_xml_walker w = { .on_start = copy_part_start, .on_end = copy_part_end, .ctx = &c };
    *etag = NULL;
    if (cfs_xml_walk(&w, xml, len) < 0 || !c.upload_id || !*c.upload_id) {
        if (err && errlen)
            snprintf(err, errlen, "%s", w.failed ? w.err : "no ETag in the answer");
        free(c.upload_id);
        return -1;
    }
    *etag = c.upload_id;
    return 0;
}

int cfs_s3_complete_body(cfs_buf *out, char *const *etags, const uint32_t *crc32c, size_t n)
{
    if (cfs_buf_append_str(
            out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                 "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">") < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char num[80];
        snprintf(num, sizeof num, "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
        if (!etags[i] || cfs_buf_append_str(out, num) < 0 || xml_escape(out, etags[i]) < 0 ||
            cfs_buf_append_str(out, "</ETag>") < 0)
            return -1;
        if (crc32c) {
            const unsigned char be[4] = { (unsigned char)(crc32c[i] >> 24),
                                          (unsigned char)(crc32c[i] >> 16),
                                          (unsigned char)(crc32c[i] >> 8),
                                          (unsigned char)crc32c[i] };
            if (cfs_buf_append_str(out, "<ChecksumCRC32C>") < 0 ||
                cfs_base64_encode(out, be, sizeof be, 0) < 0 ||
                cfs_buf_append_str(out, "</ChecksumCRC32C>") < 0)
                return -1;
        }
        if (cfs_buf_append_str(out, "</Part>") < 0)
            return -1;
    }
    return cfs_buf_append_str(out, "</CompleteMultipartUpload>");
}
