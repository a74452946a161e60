/* S3 answers (finish): HTTP statuses and S3 error codes become op statuses; a GET's body
 * is checked on a worker thread (s3_verify); ListObjectsV2 pages become entries;
 * DeleteObjects and CopyObject report failures inside a 200. The answers of credential
 * fetches (driver.c) and of multipart steps (multipart.c) are handed on to them.
 *
 * What a GET is checked against (a mismatch is retried, then a ChecksumError):
 * - a whole object (200 to a GET without Range): its x-amz-checksum-crc32c when the
 *   service gives one of type FULL_OBJECT (asked for with x-amz-checksum-mode: ENABLED,
 *   verify_checksum), whatever the ETag; this covers multipart objects uploaded with
 *   FULL_OBJECT checksums. Otherwise an ETag of 32 hex digits, taken for the body's MD5
 *   (verify_etag): what S3 gives an object put in one request (unless encrypted with
 *   SSE-KMS or SSE-C). A COMPOSITE checksum ("xxx-N", a checksum of the parts' checksums)
 *   and a multipart ETag ("md5-N") cannot be checked against a body and are not: such an
 *   object is read unchecked, as is one with neither, or with a checksum of another
 *   algorithm (CRC64NVME, CRC32, SHA-1, SHA-256: not read here) and no MD5 ETag.
 * - a range (206): nothing. S3 keeps no checksum of an arbitrary range and sends none; the
 *   ETag is the whole object's. Only TCP's and TLS's own checks apply. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backends/s3/s3_internal.h"
#include "backends/s3/xml.h"
#include "util/base64.h"
#include "util/crc32c.h"
#include "util/keys.h"

static int code_is(const char *code, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(code, *list))
            return 1;
    return 0;
}

static const char *const RETRY_CODES[] = {
    "SlowDown",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeout",
    "OperationAborted",
    "RequestTimeTooSkewed",
    "ThrottlingException",
    "Throttling",
    "TooManyRequests",
    NULL,
};
static const char *const AUTH_CODES[] = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "InvalidSecurity",
    "AllAccessDisabled",
    "AccountProblem",
    "MissingSecurityHeader",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
    "Unauthorized",
    NULL,
};

/* A non-2xx answer: status from the S3 error code if the body has one, else from HTTP. */
cfs_next s3_error(cfs_op *op, const cfs_response *resp)
{
    cfs_s3_error e;
    int have = resp->body && resp->body->len &&
               cfs_s3_parse_error(resp->body->data, resp->body->len, &e) == 0 && e.code[0];
    cfs_next next = cfs_http_status_outcome(op, resp);
    if (!have)
        return next;
    cfs_status st = op->status;
    if (code_is(e.code, RETRY_CODES)) {
        st = CFS_ETRANSIENT;
        next = CFS_NEXT_RETRY;
    } else if (code_is(e.code, AUTH_CODES)) {
        st = CFS_EAUTH;
        next = CFS_NEXT_DONE;
    } else if (!strcmp(e.code, "NoSuchKey")) {
        st = CFS_ENOTFOUND;
    } else if (!strcmp(e.code, "NoSuchBucket")) {
        st = CFS_ENOCONTAINER; /* not a missing key: the store itself is missing */
    } else if (!strcmp(e.code, "PreconditionFailed")) {
        st = CFS_EEXISTS;
    } else if (!strcmp(e.code, "InvalidRange")) {
        st = CFS_ERANGE;
    }
    cfs_op_fail(op, st, "%s: %s (HTTP %ld)", e.code, e.message[0] ? e.message : "no message",
                resp->status);
    return next;
}

/* A quoted ETag that is a plain MD5 ("hex32"), lowercased into out; 0 if not one. */
static int etag_md5(const char *etag, char out[33])
{
    if (!etag)
        return 0;
    if (!strncmp(etag, "W/", 2))
        return 0;
    size_t n = strlen(etag);
    if (n == 34 && etag[0] == '"' && etag[33] == '"') {
        etag++;
        n = 32;
    }
    if (n != 32)
        return 0;
    for (size_t i = 0; i < 32; i++) {
        char c = etag[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c + 32);
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
        out[i] = c;
    }
    out[32] = '\0';
    return 1;
}

/* The whole object's CRC32C from x-amz-checksum-crc32c; 0 if there is none of type
 * FULL_OBJECT. A COMPOSITE checksum (a CRC of the parts' CRCs, shown as "xxx-N" by GET) says
 * nothing a whole body can be checked against: skipped, as is a malformed value. A single
 * PUT's checksum is a full-object one, whether or not the service names its type. */
static int full_object_crc32c(const cfs_response *resp, uint32_t *crc)
{
    const char *v = resp->captured[S3_CAPTURE_CRC32C];
    const char *type = resp->captured[S3_CAPTURE_CHECKSUM_TYPE];
    unsigned char raw[4];
    if (!v || (type && strcasecmp(type, "FULL_OBJECT") != 0) ||
        cfs_base64_decode(v, strlen(v), raw, 4) != 4)
        return 0;
    *crc = (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 | (uint32_t)raw[2] << 8 | raw[3];
    return 1;
}

/* A whole-object GET: choose the one hash the body is checked against on a worker thread,
 * the service's checksum before a plain-MD5 ETag (see the top of this file). */
static cfs_next plan_check(s3_backend *s, cfs_op *op, const cfs_response *resp)
{
    uint32_t crc = 0;
    char md5[33];
    int check = S3_CHECK_NONE;
    if (op->range.kind != CFS_RANGE_NONE || resp->status != 200)
        return CFS_NEXT_DONE;
    if (s->verify_checksum && full_object_crc32c(resp, &crc))
        check = S3_CHECK_CRC32C;
    else if (s->verify_etag && etag_md5(resp->etag, md5))
        check = S3_CHECK_MD5;
    if (check == S3_CHECK_NONE)
        return CFS_NEXT_DONE;
    s3_state *st = s3_state_of(s, op);
    if (!st) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return CFS_NEXT_DONE;
    }
    st->check = check;
    st->want_crc32c = crc;
    if (check == S3_CHECK_MD5)
        memcpy(st->etag_md5, md5, sizeof md5);
    return CFS_NEXT_VERIFY;
}

cfs_next s3_verify(cfs_backend *b, cfs_op *op)
{
    (void)b;
    const s3_state *st = op->backend_state;
    const char *body = op->data.data ? op->data.data : "";
    if (st->check == S3_CHECK_CRC32C) {
        uint32_t crc = cfs_crc32c(0, body, op->data.len);
        if (crc != st->want_crc32c) {
            char got[CRC32C_B64_LEN + 1], want[CRC32C_B64_LEN + 1];
            s3_crc32c_b64(crc, got);
            s3_crc32c_b64(st->want_crc32c, want);
            cfs_op_fail(op, CFS_ECHECKSUM,
                        "body CRC32C %s does not match x-amz-checksum-crc32c %s (%zu bytes)", got,
                        want, op->data.len);
            return CFS_NEXT_RETRY;
        }
        return CFS_NEXT_DONE;
    }
    const char *want = st->etag_md5;
    unsigned char md5[MD5_LEN];
    char got[33];
    if (s3_md5(body, op->data.len, md5) < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "cannot compute an MD5");
        return CFS_NEXT_DONE;
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < MD5_LEN; i++) {
        got[2 * i] = hex[md5[i] >> 4];
        got[2 * i + 1] = hex[md5[i] & 15];
    }
    got[32] = '\0';
    if (strcmp(got, want) != 0) {
        cfs_op_fail(op, CFS_ECHECKSUM, "body MD5 %s does not match ETag %s (%zu bytes)", got, want,
                    op->data.len);
        return CFS_NEXT_RETRY;
    }
    return CFS_NEXT_DONE;
}

static cfs_next list_page(s3_backend *s, cfs_op *op, const cfs_response *resp)
{
    s3_state *st = op->backend_state;
    cfs_s3_list_page page;
    char err[200];
    if (cfs_s3_parse_list(resp->body->data, resp->body->len, &page, err, sizeof err) < 0) {
        cfs_op_fail(op, CFS_EPROTOCOL, "bad ListObjectsV2 response: %s", err);
        return CFS_NEXT_DONE;
    }
    size_t plen = strlen(s->prefix);
    cfs_buf name = { 0 };
    for (size_t i = 0; i < page.entries.len; i++) {
        const cfs_entry *e = &page.entries.items[i];
        cfs_buf_reset(&name);
        int rc = page.url_encoded ? cfs_url_decode(&name, e->name, strlen(e->name), 1)
                                  : cfs_buf_append_str(&name, e->name);
        if (rc < 0) {
            cfs_op_fail(op, CFS_EPROTOCOL, "bad URL encoding in a listed key");
            goto done;
        }
        if (name.len < plen || memcmp(name.data, s->prefix, plen) != 0)
            continue; /* outside the root: not ours */
        const char *rel = name.data + plen;
        size_t rlen = name.len - plen;
        if (e->is_dir && rlen && rel[rlen - 1] == '/')
            rlen--;
        char kerr[64];
        if (cfs_key_check(rel, rlen, kerr, sizeof kerr) < 0)
            continue; /* directory markers ("a/"), keys this store cannot name */
        if (cfs_entries_add(&op->entries, rel, rlen, e->size, e->is_dir) < 0 ||
            cfs_entries_set_info(&op->entries, e->mtime_ms, e->etag,
                                 e->etag ? strlen(e->etag) : 0) < 0) {
            cfs_op_fail(op, CFS_ENOMEM, "out of memory listing");
            goto done;
        }
    }
    if (page.is_truncated) {
        free(st->list_token);
        st->list_token = page.next_token;
        page.next_token = NULL;
        cfs_buf_free(&name);
        cfs_s3_list_page_free(&page);
        return cfs_op_next_step(op, op->step + 1);
    }
done:
    cfs_buf_free(&name);
    cfs_s3_list_page_free(&page);
    return CFS_NEXT_DONE;
}

typedef struct delete_errors {
    cfs_op *op;
    size_t prefix_len;
} delete_errors;

static int note_delete_error(void *ctx, const char *key, const char *code, const char *message)
{
    cfs_op *op = ((delete_errors *)ctx)->op;
    size_t plen = ((delete_errors *)ctx)->prefix_len;
    char detail[sizeof op->message];
    snprintf(detail, sizeof detail, "%s: %s", code[0] ? code : "error",
             message[0] ? message : "no message");
    cfs_status st = code_is(code, AUTH_CODES)    ? CFS_EAUTH
                    : code_is(code, RETRY_CODES) ? CFS_ETRANSIENT
                                                 : CFS_EHTTP;
    /* the server names full object keys: report them as the store's keys */
    const char *rel = strlen(key) >= plen ? key + plen : key;
    return cfs_entries_add_failure(&op->entries, rel, st, detail);
}

/* DeleteObjects answers 200 with the keys it could not delete (quiet mode). */
static cfs_next delete_result(s3_backend *s, cfs_op *op, const cfs_response *resp)
{
    char err[200];
    delete_errors ctx = { op, strlen(s->prefix) };
    cfs_entries_free(&op->entries);
    if (cfs_s3_parse_delete_result(resp->body->data ? resp->body->data : "", resp->body->len,
                                   note_delete_error, &ctx, err, sizeof err) < 0)
        cfs_op_fail(op, CFS_EPROTOCOL, "bad DeleteObjects response: %s", err);
    return CFS_NEXT_DONE;
}

/* CopyObject can fail after its 200 has been sent: the body is then an <Error>. */
static cfs_next copy_result(cfs_op *op, const cfs_response *resp)
{
    cfs_s3_error e;
    if (!resp->body->len || cfs_s3_parse_error(resp->body->data, resp->body->len, &e) < 0 ||
        !e.code[0])
        return CFS_NEXT_DONE;
    cfs_status st = code_is(e.code, RETRY_CODES)  ? CFS_ETRANSIENT
                    : code_is(e.code, AUTH_CODES) ? CFS_EAUTH
                                                  : CFS_EHTTP;
    cfs_op_fail(op, st, "%s: %s (in a 200 answer)", e.code, e.message[0] ? e.message : "no message");
    return st == CFS_ETRANSIENT ? CFS_NEXT_RETRY : CFS_NEXT_DONE;
}

cfs_next s3_finish(cfs_backend *b, cfs_op *op, const cfs_response *resp)
{
    s3_backend *s = (s3_backend *)b;
    s3_state *st = op->backend_state;
    if (st && st->cred_step)
        return finish_cred(s, op, st, resp);
    if (s3_is_part(op))
        return s3_part_finish(op, resp);
    if (s3_is_multipart(s, op))
        return s3_mpu_finish(s, op, resp);
    if (resp->status < 200 || resp->status >= 300)
        return s3_error(op, resp);
    cfs_next next = cfs_http_status_outcome(op, resp);
    if (next != CFS_NEXT_DONE || op->status != CFS_OK)
        return next;
    switch (op->kind) {
    case CFS_OP_GET:
        return plan_check(s, op, resp);
    case CFS_OP_DELETE:
        if (s3_looks_before_delete(op))
            return cfs_op_next_step(op, 1); /* it exists: now delete it */
        return CFS_NEXT_DONE;
    case CFS_OP_HEAD:
        if (cfs_attrs_from_headers(op, resp, "x-amz-meta-") == 0 && !op->attrs.storage_class &&
            cfs_attr_set(&op->attrs.storage_class, "STANDARD", 8) < 0) /* S3 names all others */
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return CFS_NEXT_DONE;
    case CFS_OP_LIST:
        return list_page(s, op, resp);
    case CFS_OP_DELETE_MANY:
        return delete_result(s, op, resp);
    case CFS_OP_COPY:
        return copy_result(op, resp);
    default:
        return CFS_NEXT_DONE;
    }
}
