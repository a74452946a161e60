/* Pieces every HTTP-speaking backend shares: request headers, Range, status outcomes. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/retry.h"
#include "util/secret.h"

int cfs_request_header(cfs_request *req, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line)
        return -1;
    /* a value holding CR or LF would end the header and start another: refuse it (values
     * from options are refused before, with an OptionError; this catches what a server
     * sent, such as a fetched token) */
    if (strpbrk(line, "\r\n"))
        return -1;
    struct curl_slist *l = curl_slist_append(req->headers, line);
    if (!l)
        return -1;
    req->headers = l;
    return 0;
}

void cfs_request_clear(cfs_request *req)
{
    free(req->url);
    for (struct curl_slist *l = req->headers; l; l = l->next) /* Authorization lines */
        cfs_secret_wipe(l->data, strlen(l->data));
    if (req->secret)
        cfs_secret_wipe(req->body_owned.data, req->body_owned.cap);
    curl_slist_free_all(req->headers);
    cfs_buf_free(&req->body_owned);
    memset(req, 0, sizeof *req);
}

void cfs_request_body_of(cfs_request *req, const cfs_op *op, size_t off, size_t len)
{
    req->body = op->body_file ? NULL : op->body ? op->body + off : "";
    req->body_len = len;
    req->body_file = op->body_file;
    req->body_offset = op->body_file ? op->body_offset + (int64_t)off : 0;
}

int cfs_request_range(cfs_request *req, const cfs_range *r)
{
    switch (r->kind) {
    case CFS_RANGE_NONE:
        return 0;
    case CFS_RANGE_BOUNDED:
        return cfs_request_header(req, "Range: bytes=%" PRId64 "-%" PRId64, r->start, r->end - 1);
    case CFS_RANGE_FROM:
        return cfs_request_header(req, "Range: bytes=%" PRId64 "-", r->start);
    case CFS_RANGE_SUFFIX:
        return cfs_request_header(req, "Range: bytes=-%" PRId64, r->length);
    }
    return -1;
}

/* A server that ignored Range sent the whole object with 200: cut the asked-for part. */
static void slice_whole_body(cfs_op *op, cfs_buf *body)
{
    int64_t size = (int64_t)body->len, start, end;
    if (cfs_range_resolve(&op->range, size, &start, &end) < 0)
        start = end = size;
    if (end > start)
        memmove(body->data, body->data + start, (size_t)(end - start));
    body->len = (size_t)(end - start);
    op->size = size;
}

cfs_next cfs_http_status_outcome(cfs_op *op, const cfs_response *resp)
{
    long s = resp->status;
    if (s >= 200 && s < 300) {
        op->status = CFS_OK;
        if (op->kind == CFS_OP_GET && s == 200 && op->range.kind != CFS_RANGE_NONE)
            slice_whole_body(op, resp->body);
        else if (op->kind == CFS_OP_HEAD || (op->kind == CFS_OP_GET && s == 200))
            op->size = resp->content_length >= 0
                           ? resp->content_length
                           : (op->kind == CFS_OP_GET ? (int64_t)resp->body->len : -1);
        return CFS_NEXT_DONE;
    }
    if (cfs_retry_status_is_transient(s)) {
        cfs_op_fail(op, CFS_ETRANSIENT, "HTTP %ld", s);
        return CFS_NEXT_RETRY;
    }
    switch (s) {
    case 404:
    case 410:
        cfs_op_fail(op, CFS_ENOTFOUND, "HTTP %ld", s);
        break;
    case 401:
    case 403:
        cfs_op_fail(op, CFS_EAUTH, "HTTP %ld", s);
        break;
    case 412:
        cfs_op_fail(op, CFS_EEXISTS, "HTTP %ld", s);
        break;
    case 416:
        cfs_op_fail(op, CFS_ERANGE, "HTTP %ld", s);
        break;
    default:
        cfs_op_fail(op, CFS_EHTTP, "HTTP %ld", s);
        break;
    }
    return CFS_NEXT_DONE;
}

/* A copy of libcurl's built-in CA file name (Debian: /etc/ssl/certs/ca-certificates.crt)
 * when that file can be read; else NULL, and libcurl's defaults apply as they are. */
static char *default_ca_file(void)
{
    char *copy = NULL;
#if LIBCURL_VERSION_NUM >= 0x075400 /* CURLINFO_CAINFO: 7.84.0 */
    CURL *probe = curl_easy_init();
    const char *path = NULL;
    if (probe && curl_easy_getinfo(probe, CURLINFO_CAINFO, &path) == CURLE_OK && path &&
        access(path, R_OK) == 0)
        copy = strdup(path);
    curl_easy_cleanup(probe);
#endif
    return copy;
}

int cfs_tls_take_options(cfs_tls *tls, cfs_options *opts, char *err, size_t errlen)
{
    tls->verify = 1;
    if (cfs_options_take_bool(opts, "verify", &tls->verify, err, errlen) < 0)
        return -1;
    const char *ca = cfs_options_take(opts, "ca_bundle");
    if (!ca) {
        tls->ca_bundle = tls->verify ? default_ca_file() : NULL;
        return 0;
    }
    if (!(tls->ca_bundle = strdup(ca))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int cfs_tls_configure(const cfs_tls *tls, CURL *easy)
{
    /* The CA file alone, never also libcurl's default CA directory: libcurl keeps the parsed
     * CA store for the next connection only when no directory is set, and Debian's libcurl
     * sets /etc/ssl/certs. With it, every new connection parsed the whole file again (18 ms
     * of CPU for the system bundle, 0.13 ms for a one-certificate file). */
    if (tls->ca_bundle && (curl_easy_setopt(easy, CURLOPT_CAINFO, tls->ca_bundle) != CURLE_OK ||
                           curl_easy_setopt(easy, CURLOPT_CAPATH, NULL) != CURLE_OK))
        return -1;
    if (!tls->verify && (curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L) != CURLE_OK ||
                         curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L) != CURLE_OK))
        return -1;
    return 0;
}

void cfs_tls_free(cfs_tls *tls)
{
    free(tls->ca_bundle);
    tls->ca_bundle = NULL;
}

cfs_next cfs_op_next_step(cfs_op *op, int step)
{
    op->step = step;
    op->attempts = 0;
    return CFS_NEXT_AGAIN;
}
