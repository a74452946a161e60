/* S3 XML documents (see s3_xml.h), parsed with expat. One small walker keeps the stack of
 * element names and the text of the current element; each document type is a pair of
 * start/end handlers over it. */
#include "backends/s3/xml.h"

#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 16
#define NAME_MAX_LEN 40
#define NS_SEP '\x01'

typedef struct walker walker;
struct walker {
    int depth;                              /* of the element being read (1 = root) */
    char names[MAX_DEPTH + 1][NAME_MAX_LEN]; /* names[d]: local name at depth d */
    cfs_buf text;                           /* character data since the last tag */
    int (*on_start)(walker *w);             /* names[depth] just opened */
    int (*on_end)(walker *w);               /* names[depth] about to close; text is its text */
    void *ctx;
    int failed;
    char err[160];
    int oom;
};

static void walker_fail(walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void walker_fail(walker *w, const char *fmt, ...)
{
    if (w->failed)
        return;
    w->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof w->err, fmt, ap);
    va_end(ap);
}

static const char *local_name(const char *name)
{
    const char *sep = strrchr(name, NS_SEP);
    return sep ? sep + 1 : name;
}

/* The name at depth d ("" beyond the tracked depth or for overlong names). */
static const char *at(const walker *w, int d)
{
    return (d >= 1 && d <= MAX_DEPTH && d <= w->depth) ? w->names[d] : "";
}

static int is(const walker *w, int d, const char *name)
{
    return strcmp(at(w, d), name) == 0;
}

static void XMLCALL on_start_el(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    (void)attrs;
    walker *w = ud;
    if (w->failed)
        return;
    w->depth++;
    if (w->depth <= MAX_DEPTH) {
        const char *ln = local_name(name);
        if (strlen(ln) < NAME_MAX_LEN)
            strcpy(w->names[w->depth], ln);
        else
            w->names[w->depth][0] = '\0';
    }
    cfs_buf_reset(&w->text);
    if (w->on_start && w->on_start(w) < 0 && !w->failed)
        walker_fail(w, "unexpected XML");
}

static void XMLCALL on_end_el(void *ud, const XML_Char *name)
{
    (void)name;
    walker *w = ud;
    if (w->failed)
        return;
    if (cfs_buf_terminate(&w->text) < 0) {
        w->oom = 1;
        walker_fail(w, "out of memory");
        return;
    }
    if (w->on_end && w->on_end(w) < 0 && !w->failed)
        walker_fail(w, "unexpected XML");
    cfs_buf_reset(&w->text);
    w->depth--;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    walker *w = ud;
    if (w->failed || len <= 0)
        return;
    if (cfs_buf_append(&w->text, s, (size_t)len) < 0) {
        w->oom = 1;
        walker_fail(w, "out of memory");
    }
}

/* Run the walker over a document. Returns 0 or -1 (w->err says why). */
static int walk(walker *w, const char *xml, size_t len)
{
    if (len > INT_MAX) {
        walker_fail(w, "XML document too large");
        return -1;
    }
    XML_Parser p = XML_ParserCreateNS(NULL, NS_SEP);
    if (!p) {
        w->oom = 1;
        walker_fail(w, "out of memory");
        return -1;
    }
    XML_SetUserData(p, w);
    XML_SetElementHandler(p, on_start_el, on_end_el);
    XML_SetCharacterDataHandler(p, on_text);
    if (XML_Parse(p, xml ? xml : "", (int)len, 1) != XML_STATUS_OK && !w->failed)
        walker_fail(w, "malformed XML (%s at line %lu)", XML_ErrorString(XML_GetErrorCode(p)),
                    (unsigned long)XML_GetCurrentLineNumber(p));
    XML_ParserFree(p);
    cfs_buf_free(&w->text);
    return w->failed ? -1 : 0;
}

static const char *text_of(const walker *w)
{
    return w->text.data ? w->text.data : "";
}

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

static int list_start(walker *w)
{
    list_ctx *c = w->ctx;
    if (w->depth == 1 && !is(w, 1, "ListBucketResult")) {
        walker_fail(w, "not a ListBucketResult (root element <%s>)", at(w, 1));
        return -1;
    }
    if (w->depth == 2 && (is(w, 2, "Contents") || is(w, 2, "CommonPrefixes"))) {
        cfs_buf_reset(&c->name);
        c->have_name = 0;
        c->size = -1;
    }
    return 0;
}

static int list_end(walker *w)
{
    list_ctx *c = w->ctx;
    cfs_s3_list_page *pg = c->page;
    const char *t = text_of(w);
    if (w->depth == 3 && ((is(w, 2, "Contents") && is(w, 3, "Key")) ||
                          (is(w, 2, "CommonPrefixes") && is(w, 3, "Prefix")))) {
        cfs_buf_reset(&c->name);
        if (cfs_buf_append(&c->name, t, w->text.len) < 0) {
            w->oom = 1;
            walker_fail(w, "out of memory");
            return -1;
        }
        c->have_name = 1;
    } else if (w->depth == 3 && is(w, 2, "Contents") && is(w, 3, "Size")) {
        if (parse_size(t, &c->size) < 0) {
            walker_fail(w, "bad <Size> in a listing: '%.40s'", t);
            return -1;
        }
    } else if (w->depth == 2 && (is(w, 2, "Contents") || is(w, 2, "CommonPrefixes"))) {
        int dir = is(w, 2, "CommonPrefixes");
        if (!c->have_name) {
            walker_fail(w, "listing entry without a %s", dir ? "<Prefix>" : "<Key>");
            return -1;
        }
        if (cfs_entries_add(&pg->entries, c->name.data ? c->name.data : "", c->name.len,
                            dir ? -1 : c->size, dir) < 0) {
            w->oom = 1;
            walker_fail(w, "out of memory");
            return -1;
        }
    } else if (w->depth == 2 && is(w, 2, "IsTruncated")) {
        pg->is_truncated = strcmp(t, "true") == 0;
    } else if (w->depth == 2 && is(w, 2, "NextContinuationToken")) {
        free(pg->next_token);
        pg->next_token = strdup(t);
        if (!pg->next_token) {
            w->oom = 1;
            walker_fail(w, "out of memory");
            return -1;
        }
    } else if (w->depth == 2 && is(w, 2, "EncodingType")) {
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
    walker w = { .on_start = list_start, .on_end = list_end, .ctx = &c };
    int rc = walk(&w, xml, len);
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

static int error_start(walker *w)
{
    if (w->depth == 1 && !is(w, 1, "Error"))
        return -1;
    return 0;
}

static int error_end(walker *w)
{
    cfs_s3_error *e = w->ctx;
    if (w->depth == 2 && is(w, 2, "Code"))
        copy_trunc(e->code, sizeof e->code, text_of(w));
    else if (w->depth == 2 && is(w, 2, "Message"))
        copy_trunc(e->message, sizeof e->message, text_of(w));
    return 0;
}

int cfs_s3_parse_error(const char *xml, size_t len, cfs_s3_error *out)
{
    memset(out, 0, sizeof *out);
    if (!xml || len == 0)
        return -1;
    walker w = { .on_start = error_start, .on_end = error_end, .ctx = out };
    if (walk(&w, xml, len) < 0) {
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
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
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

static int delete_start(walker *w)
{
    delete_ctx *c = w->ctx;
    if (w->depth == 1 && !is(w, 1, "DeleteResult")) {
        walker_fail(w, "not a DeleteResult (root element <%s>)", at(w, 1));
        return -1;
    }
    if (w->depth == 2 && is(w, 2, "Error")) {
        cfs_buf_reset(&c->key);
        c->code[0] = c->message[0] = '\0';
    }
    return 0;
}

static int delete_end(walker *w)
{
    delete_ctx *c = w->ctx;
    if (w->depth == 3 && is(w, 2, "Error")) {
        if (is(w, 3, "Key")) {
            cfs_buf_reset(&c->key);
            if (cfs_buf_append(&c->key, text_of(w), w->text.len) < 0 || cfs_buf_terminate(&c->key) < 0) {
                w->oom = 1;
                walker_fail(w, "out of memory");
                return -1;
            }
        } else if (is(w, 3, "Code")) {
            copy_trunc(c->code, sizeof c->code, text_of(w));
        } else if (is(w, 3, "Message")) {
            copy_trunc(c->message, sizeof c->message, text_of(w));
        }
    } else if (w->depth == 2 && is(w, 2, "Error")) {
        if (c->cb(c->ctx, c->key.data ? c->key.data : "", c->code, c->message) != 0) {
            walker_fail(w, "DeleteObjects error callback failed");
            return -1;
        }
    }
    return 0;
}

int cfs_s3_parse_delete_result(const char *xml, size_t len, cfs_s3_delete_error_cb cb, void *ctx,
                               char *err, size_t errlen)
{
    delete_ctx c = { .cb = cb, .ctx = ctx };
    walker w = { .on_start = delete_start, .on_end = delete_end, .ctx = &c };
    int rc = walk(&w, xml, len);
    cfs_buf_free(&c.key);
    if (rc < 0 && err && errlen)
        snprintf(err, errlen, "%s", w.err);
    return rc;
}

/* ------------------------------------------------------------- multipart upload */

typedef struct upload_ctx {
    char *upload_id;
} upload_ctx;

static int upload_start(walker *w)
{
    if (w->depth == 1 && !is(w, 1, "InitiateMultipartUploadResult")) {
        walker_fail(w, "not an InitiateMultipartUploadResult (root element <%s>)", at(w, 1));
        return -1;
    }
    return 0;
}

static int upload_end(walker *w)
{
    upload_ctx *c = w->ctx;
    if (w->depth == 2 && is(w, 2, "UploadId")) {
        free(c->upload_id);
        c->upload_id = strdup(text_of(w));
        if (!c->upload_id) {
            w->oom = 1;
            walker_fail(w, "out of memory");
            return -1;
        }
    }
    return 0;
}

int cfs_s3_parse_upload_id(const char *xml, size_t len, char **upload_id, char *err, size_t errlen)
{
    upload_ctx c = { NULL };
    walker w = { .on_start = upload_start, .on_end = upload_end, .ctx = &c };
    *upload_id = NULL;
    if (walk(&w, xml, len) < 0 || !c.upload_id || !*c.upload_id) {
        if (err && errlen)
            snprintf(err, errlen, "%s", w.failed ? w.err : "no UploadId in the answer");
        free(c.upload_id);
        return -1;
    }
    *upload_id = c.upload_id;
    return 0;
}

int cfs_s3_complete_body(cfs_buf *out, char *const *etags, size_t n)
{
    if (cfs_buf_append_str(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                                "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">") < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char num[80];
        snprintf(num, sizeof num, "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
        if (!etags[i] || cfs_buf_append_str(out, num) < 0 || xml_escape(out, etags[i]) < 0 ||
            cfs_buf_append_str(out, "</ETag></Part>") < 0)
            return -1;
    }
    return cfs_buf_append_str(out, "</CompleteMultipartUpload>");
}
