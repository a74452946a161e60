/* S3 requests (build): an op at its step becomes a request spec (method, path, query,
 * headers, body), which is signed with SigV4 (or sent anonymously) and handed to the
 * engine. PUT bodies are hashed here for Content-MD5, the payload hash and S3's additional
 * checksum (x-amz-checksum-crc32c, unless checksum_algorithm is none): inline when small,
 * else on a worker thread (s3_prepare). Whole-object GETs ask for the object's checksum
 * (x-amz-checksum-mode: ENABLED), which response.c checks the body against. The
 * credential sub-requests are built by driver.c, the multipart steps by multipart.c. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/s3/s3_internal.h"
#include "backends/s3/xml.h"
#include "util/crc32c.h"

/* PUT bodies this large are hashed on a worker thread (MD5 runs at about 700 MB/s: 90 us
 * for this much, which the transfer thread can afford inline) */
#define HASH_INLINE_MAX (64 * 1024)

void s3_crc32c_b64(uint32_t crc, char out[CRC32C_B64_LEN + 1])
{
    const unsigned char be[4] = { (unsigned char)(crc >> 24), (unsigned char)(crc >> 16),
                                  (unsigned char)(crc >> 8), (unsigned char)crc };
    EVP_EncodeBlock((unsigned char *)out, be, sizeof be); /* 8 characters and a NUL */
}

int s3_md5(const void *data, size_t n, unsigned char out[MD5_LEN])
{
    unsigned int len = 0;
    return EVP_Digest(data, n, out, &len, EVP_md5(), NULL) == 1 && len == MD5_LEN ? 0 : -1;
}

int s3_hash_body(s3_backend *s, const char *body, size_t n, char md5_b64[MD5_B64_LEN + 1],
                 char sha256[CFS_SHA256_HEX_LEN + 1])
{
    unsigned char md5[MD5_LEN];
    if (s3_md5(body ? body : "", n, md5) < 0 ||
        EVP_EncodeBlock((unsigned char *)md5_b64, md5, MD5_LEN) != MD5_B64_LEN)
        return -1;
    if (!s->sign_payload) {
        snprintf(sha256, CFS_SHA256_HEX_LEN + 1, "%s", CFS_SIGV4_UNSIGNED_PAYLOAD);
        return 0;
    }
    return cfs_sha256_hex(body ? body : "", n, sha256);
}

/* Append the query pairs to a URL in the AWS encoding (for unsigned requests). */
static int append_query(cfs_buf *u, const cfs_sigv4_pair *q, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (cfs_buf_append(u, i ? "&" : "?", 1) < 0 ||
            cfs_aws_uri_encode(u, q[i].name, strlen(q[i].name), 0) < 0 ||
            cfs_buf_append(u, "=", 1) < 0 ||
            cfs_aws_uri_encode(u, q[i].value, strlen(q[i].value), 0) < 0)
            return -1;
    }
    return 0;
}

/* Sign the spec (unless anonymous) and fill the engine's request. 0, or -1 after
 * cfs_op_fail(). */
static int emit_request(s3_backend *s, cfs_op *op, cfs_request *req, req_spec *r,
                        const creds_view *cv)
{
    cfs_buf u = { 0 };
    cfs_sigv4_output sig;
    memset(&sig, 0, sizeof sig);
    req->method = r->method;
    if (r->body_of) {
        cfs_request_body_of(req, r->body_of, 0, r->body_of->body_len);
    } else {
        req->body = r->body;
        req->body_len = r->body_len;
    }
    req->no_body = r->no_body;
    if (s->requester_pays)
        add_h(r, "x-amz-request-payer", "requester");
    if (cfs_buf_terminate(&r->path) < 0 ||
        cfs_buf_append_str(&u, r->origin ? r->origin : s->origin) < 0)
        goto oom;
    if (s->anon) {
        if (cfs_aws_uri_encode(&u, r->path.data, r->path.len, 1) < 0 ||
            append_query(&u, r->query, r->nq) < 0)
            goto oom;
    } else {
        char err[160] = "";
        cfs_sigv4_input in = {
            .method = r->method,
            .path = r->path.data,
            .path_mode = CFS_SIGV4_PATH_S3,
            .query = r->query,
            .n_query = r->nq,
            .headers = r->headers,
            .n_headers = r->nh,
            .payload_hash = r->payload ? r->payload : CFS_SIGV4_EMPTY_SHA256,
            .content_sha256_header = 1,
            .time = cv->now,
            .region = s->region,
            .service = "s3",
            .access_key_id = cv->access_key_id,
            .session_token = cv->session_token,
            .signing_key = cv->key,
        };
        if (cfs_sigv4_sign(&in, &sig, err, sizeof err) < 0) {
            cfs_op_fail(op, CFS_EINVALID, "cannot sign the request: %s", err);
            goto fail;
        }
        if (cfs_buf_append_str(&u, sig.canonical_path) < 0 ||
            (sig.canonical_query[0] &&
             (cfs_buf_append(&u, "?", 1) < 0 || cfs_buf_append_str(&u, sig.canonical_query) < 0)))
            goto oom;
    }
    if (cfs_buf_terminate(&u) < 0)
        goto oom;
    req->url = cfs_buf_steal(&u, NULL);
    if (cfs_op_set_where(op, req->url) < 0)
        goto oom;
    for (size_t i = 0; i < r->nh; i++)
        if (add_header_line(req, r->headers[i].name, r->headers[i].value) < 0)
            goto oom;
    if (!s->anon) {
        for (size_t i = 0; i < sig.n_extra_headers; i++) {
            struct curl_slist *l = curl_slist_append(req->headers, sig.extra_headers[i]);
            if (!l)
                goto oom;
            req->headers = l;
        }
        if (add_header_line(req, "Authorization", sig.authorization) < 0)
            goto oom;
    }
    cfs_sigv4_output_free(&sig);
    return 0;
oom:
    cfs_op_fail(op, CFS_ENOMEM, "out of memory building a request");
fail:
    cfs_sigv4_output_free(&sig);
    cfs_buf_free(&u);
    return -1;
}

/* x-amz-copy-source: "/bucket/key", the key URL-encoded; the source's bucket and root
 * when it is in another store. */
char *s3_copy_source(const s3_backend *s, const cfs_op *op)
{
    if (op->source_backend)
        s = (const s3_backend *)op->source_backend; /* s3_can_copy_from said it is one */
    cfs_buf v = { 0 };
    char *key = cfs_asprintf("%s%s", s->prefix, op->source);
    int rc = key ? 0 : -1;
    if (rc == 0)
        rc = cfs_buf_append(&v, "/", 1) < 0 || cfs_buf_append_str(&v, s->bucket) < 0 ||
                     cfs_buf_append(&v, "/", 1) < 0 ||
                     cfs_aws_uri_encode(&v, key, strlen(key), 1) < 0 || cfs_buf_terminate(&v) < 0
                 ? -1
                 : 0;
    free(key);
    if (rc < 0) {
        cfs_buf_free(&v);
        return NULL;
    }
    return cfs_buf_steal(&v, NULL);
}

/* The DeleteObjects document for op->keys (full object keys: the store's prefix added). */
static int delete_document(s3_backend *s, const cfs_op *op, cfs_buf *out)
{
    char **full = calloc(op->n_keys, sizeof *full);
    int rc = full ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < op->n_keys; i++)
        if (!(full[i] = cfs_asprintf("%s%s", s->prefix, op->keys[i])))
            rc = -1;
    if (rc == 0)
        rc = cfs_s3_delete_body(out, (const char *const *)full, op->n_keys);
    for (size_t i = 0; full && i < op->n_keys; i++)
        free(full[i]);
    free(full);
    return rc;
}

/* One pass over a PUT body for its hashes (cfs_op_body_scan): a body in a file is read
 * once, in pieces. */
typedef struct body_hashes {
    EVP_MD_CTX *md5;
    EVP_MD_CTX *sha256; /* NULL: the payload is not signed */
    int crc;            /* take the CRC32C too */
    uint32_t crc32c;
} body_hashes;

static int hash_piece(void *ctx, const char *p, size_t n)
{
    body_hashes *h = ctx;
    if (EVP_DigestUpdate(h->md5, p, n) != 1 || (h->sha256 && EVP_DigestUpdate(h->sha256, p, n) != 1))
        return -1;
    if (h->crc)
        h->crc32c = cfs_crc32c(h->crc32c, p, n);
    return 0;
}

/* The digests of a finished pass, into st (Content-MD5, the payload hash, the CRC32C).
 * Returns 0 or -1. */
static int hashes_done(s3_backend *s, body_hashes *h, s3_state *st)
{
    unsigned char md5[MD5_LEN], sha[CFS_SHA256_LEN];
    unsigned int md5_len = 0, sha_len = 0;
    if (EVP_DigestFinal_ex(h->md5, md5, &md5_len) != 1 || md5_len != MD5_LEN ||
        EVP_EncodeBlock((unsigned char *)st->md5_b64, md5, MD5_LEN) != MD5_B64_LEN)
        return -1;
    if (h->sha256) {
        if (EVP_DigestFinal_ex(h->sha256, sha, &sha_len) != 1 || sha_len != CFS_SHA256_LEN)
            return -1;
        cfs_sha256_to_hex(sha, st->sha256);
    } else {
        snprintf(st->sha256, sizeof st->sha256, "%s", CFS_SIGV4_UNSIGNED_PAYLOAD);
    }
    if (s->checksum_crc32c) {
        st->crc32c = h->crc32c;
        s3_crc32c_b64(st->crc32c, st->crc32c_b64);
    }
    return 0;
}

/* Hash a PUT body (a single PUT or one part; in memory or in a file) for Content-MD5, the
 * payload hash and its x-amz-checksum-crc32c. 64 MiB here: CRC32C 10 ms (the CPU
 * instruction, 6.8 GB/s) next to 175 ms for the MD5 and 75 ms for the SHA-256. */
int s3_prepare(cfs_backend *b, cfs_op *op)
{
    s3_backend *s = (s3_backend *)b;
    s3_state *st = s3_state_of(s, op);
    body_hashes h = { .md5 = EVP_MD_CTX_new(),
                      .sha256 = s->sign_payload ? EVP_MD_CTX_new() : NULL,
                      .crc = s->checksum_crc32c };
    int rc = -1;
    if (!st || !h.md5 || (s->sign_payload && !h.sha256) ||
        EVP_DigestInit_ex(h.md5, EVP_md5(), NULL) != 1 ||
        (h.sha256 && EVP_DigestInit_ex(h.sha256, EVP_sha256(), NULL) != 1)) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory hashing the body");
    } else if (cfs_op_body_scan(op, hash_piece, &h) == 0) { /* else failed: a file unread */
        if (hashes_done(s, &h, st) < 0) {
            cfs_op_fail(op, CFS_ENOMEM, "out of memory hashing the body");
        } else {
            st->put_hashed = 1;
            rc = 0;
        }
    }
    EVP_MD_CTX_free(h.md5);
    EVP_MD_CTX_free(h.sha256);
    return rc;
}

/* The x-amz-checksum-crc32c of a PUT or a part, with the header that names its algorithm
 * (what the AWS SDKs send along: moto keeps the checksum only with it). */
void s3_spec_put_checksum(s3_backend *s, const s3_state *st, req_spec *r)
{
    if (!s->checksum_crc32c)
        return;
    add_h(r, "x-amz-checksum-crc32c", st->crc32c_b64);
    add_h(r, "x-amz-sdk-checksum-algorithm", "CRC32C");
}

int s3_spec_put_attrs(const cfs_op *op, req_spec *r)
{
    const cfs_object_attrs *a = &op->attrs;
    add_h(r, "Content-Type", a->content_type ? a->content_type : "application/octet-stream");
    if (a->content_encoding)
        add_h(r, "Content-Encoding", a->content_encoding);
    if (a->cache_control)
        add_h(r, "Cache-Control", a->cache_control);
    if (a->content_disposition)
        add_h(r, "Content-Disposition", a->content_disposition);
    if (a->storage_class)
        add_h(r, "x-amz-storage-class", a->storage_class);
    for (size_t i = 0; i < a->n_metadata && i < CFS_META_MAX; i++) {
        if (!(r->meta_names[i] = cfs_asprintf("x-amz-meta-%s", a->metadata[i].name)))
            return -1;
        add_h(r, r->meta_names[i], a->metadata[i].value);
    }
    return 0;
}

/* Where the request goes: the Host header and the raw path, "/bucket/root/key" or
 * "/root/key"; the bucket itself for LIST and DELETE_MANY; a multipart COPY's source (in
 * its own store: another bucket's host when virtual-hosted) for its HEAD. */
static int spec_target(s3_backend *s, cfs_op *op, req_spec *r)
{
    const char *key = op->key;
    if (op->kind == CFS_OP_COPY && op->step == MPU_HEAD_SOURCE && s3_is_multipart(s, op)) {
        if (op->source_backend) /* same service, region and keys: s3_can_copy_from */
            s = (s3_backend *)op->source_backend;
        key = op->source;
        r->origin = s->origin;
    }
    add_h(r, "Host", s->host);
    if (cfs_buf_append_str(&r->path, s->path_base) < 0)
        return -1;
    if (op->kind == CFS_OP_LIST || op->kind == CFS_OP_DELETE_MANY) {
        if (r->path.len > 1)
            r->path.len--; /* path-style bucket requests are "/bucket", not "/bucket/" */
    } else if (cfs_buf_append_str(&r->path, s->prefix) < 0 ||
               cfs_buf_append_str(&r->path, key) < 0) {
        return -1;
    }
    return 0;
}

static void spec_get(s3_backend *s, cfs_op *op, req_spec *r)
{
    r->method = "GET";
    /* The object's additional checksum comes back only when asked for, and only for a
     * whole object: S3 has no checksum of a range. */
    if (op->range.kind == CFS_RANGE_NONE && s->verify_checksum)
        add_h(r, "x-amz-checksum-mode", "ENABLED");
    if (op->range.kind != CFS_RANGE_NONE) {
        const cfs_range *g = &op->range;
        if (g->kind == CFS_RANGE_BOUNDED)
            snprintf(r->range, sizeof r->range, "bytes=%lld-%lld", (long long)g->start,
                     (long long)g->end - 1);
        else if (g->kind == CFS_RANGE_FROM)
            snprintf(r->range, sizeof r->range, "bytes=%lld-", (long long)g->start);
        else
            snprintf(r->range, sizeof r->range, "bytes=-%lld", (long long)g->length);
        add_h(r, "Range", r->range);
    }
}

/* A PUT in one request (the body hashed already), a part, or a multipart PUT's own step. */
static int spec_put(s3_backend *s, cfs_op *op, s3_state *st, req_spec *r)
{
    if (s3_is_part(op))
        return s3_spec_part(s, st, op, r);
    if (s3_is_multipart(s, op))
        return s3_spec_multipart(s, op, st, r);
    r->method = "PUT";
    r->body_of = op;
    r->payload = st->sha256;
    if (s3_spec_put_attrs(op, r) < 0)
        return -1;
    add_h(r, "Content-MD5", st->md5_b64);
    s3_spec_put_checksum(s, st, r);
    if (op->if_none_match)
        add_h(r, "If-None-Match", "*");
    return 0;
}

/* ListObjectsV2: one page, from st->list_token on. */
static int spec_list(s3_backend *s, cfs_op *op, s3_state *st, req_spec *r)
{
    if (!(r->scratch = cfs_asprintf("%s%s", s->prefix, op->key)))
        return -1;
    r->method = "GET";
    add_q(r, "list-type", "2");
    add_q(r, "prefix", r->scratch);
    add_q(r, "encoding-type", "url");
    if (!op->recursive)
        add_q(r, "delimiter", "/");
    if (st->list_token)
        add_q(r, "continuation-token", st->list_token);
    return 0;
}

/* DeleteObjects: the document is built and hashed once, kept for retries. */
static int spec_delete_many(s3_backend *s, cfs_op *op, s3_state *st, req_spec *r)
{
    if (!st->put_hashed) {
        if (delete_document(s, op, &st->delete_body) < 0 ||
            s3_hash_body(s, st->delete_body.data, st->delete_body.len, st->md5_b64, st->sha256) < 0)
            return -1;
        st->put_hashed = 1;
    }
    r->method = "POST";
    add_q(r, "delete", "");
    r->body = st->delete_body.data;
    r->body_len = st->delete_body.len;
    r->payload = st->sha256;
    add_h(r, "Content-Type", "application/xml");
    add_h(r, "Content-MD5", st->md5_b64); /* DeleteObjects requires it */
    return 0;
}

/* The method, query, headers and body of the op's request at its step. 0, or -1 (out of
 * memory). */
static int spec_op(s3_backend *s, cfs_op *op, s3_state *st, req_spec *r)
{
    switch (op->kind) {
    case CFS_OP_GET:
        spec_get(s, op, r);
        return 0;
    case CFS_OP_HEAD:
        r->method = "HEAD";
        r->no_body = 1;
        return 0;
    case CFS_OP_PUT:
        return spec_put(s, op, st, r);
    case CFS_OP_DELETE:
        /* S3 answers 204 for a missing key too: look first, so a missing key is reported,
         * unless the caller ignores missing keys */
        r->method = s3_looks_before_delete(op) ? "HEAD" : "DELETE";
        r->no_body = s3_looks_before_delete(op);
        return 0;
    case CFS_OP_LIST:
        return spec_list(s, op, st, r);
    case CFS_OP_RMDIR:
        return 0; /* handled by s3_build */
    case CFS_OP_COPY:
        if (s3_is_part(op))
            return s3_spec_part(s, st, op, r);
        if (s3_is_multipart(s, op))
            return s3_spec_multipart(s, op, st, r);
        r->method = "PUT";
        if (!(r->scratch = s3_copy_source(s, op)))
            return -1;
        add_h(r, "x-amz-copy-source", r->scratch);
        return 0;
    case CFS_OP_DELETE_MANY:
        return spec_delete_many(s, op, st, r);
    }
    return 0;
}

int s3_build(cfs_backend *b, cfs_op *op, cfs_request *req)
{
    s3_backend *s = (s3_backend *)b;
    if (op->kind == CFS_OP_RMDIR) {
        op->status = CFS_OK; /* a flat namespace has no directories to remove */
        return 1;
    }
    s3_state *st = s3_state_of(s, op);
    if (!st) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return -1;
    }
    if (op->kind == CFS_OP_PUT && !st->put_hashed && !s3_is_multipart(s, op)) { /* a PUT or a part */
        if (op->body_len > HASH_INLINE_MAX || op->body_file) /* off the transfer thread */
            return CFS_BUILD_PREPARE;
        if (s3_prepare(b, op) < 0)
            return -1;
    }
    creds_view cv;
    memset(&cv, 0, sizeof cv);
    int d = s->anon ? CFS_CRED_USE : creds_step(s, op, st, req, &cv);
    if (d != CFS_CRED_USE) {
        creds_view_clear(&cv);
        return cfs_cred_build_answer(d);
    }

    req_spec r;
    memset(&r, 0, sizeof r);
    int rc;
    if (spec_target(s, op, &r) < 0 || spec_op(s, op, st, &r) < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory building a request");
        rc = -1;
    } else {
        rc = emit_request(s, op, req, &r, &cv);
    }
    cfs_buf_free(&r.path);
    free(r.scratch);
    for (size_t i = 0; i < CFS_META_MAX; i++)
        free(r.meta_names[i]);
    creds_view_clear(&cv);
    return rc;
}
