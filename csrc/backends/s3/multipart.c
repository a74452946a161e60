/* S3 multipart upload: a PUT at or above multipart_threshold goes up as
 * CreateMultipartUpload, then its parts as child ops of the PUT (multipart_concurrency at
 * once, each with its own retries), then CompleteMultipartUpload; after a failure, the
 * upload is aborted (AbortMultipartUpload) and the first failure is reported. The steps
 * are enum mpu_step (s3_internal.h); the part size is chosen when the op's state is made
 * (s3_state_of, driver.c).
 *
 * Checksums (unless checksum_algorithm is none): the upload is created with
 * x-amz-checksum-algorithm CRC32C and x-amz-checksum-type FULL_OBJECT; each part carries
 * its own x-amz-checksum-crc32c (computed with its MD5, s3_prepare), which the service
 * checks; the complete request lists each part's <ChecksumCRC32C> and carries the whole
 * object's CRC32C, combined from the parts' (no second pass over the body), which the
 * service checks against the parts it holds and keeps as the object's checksum: a GET of
 * the whole object is checked against it (response.c), as a multipart ETag cannot be.
 *
 * A COPY whose source (op->size, known from a listing) is at least multipart_copy_threshold
 * (5 GiB, S3's limit for CopyObject) goes the same way with UploadPartCopy parts: each part
 * a child COPY op naming its byte range of the source (x-amz-copy-source-range), its ETag
 * in the answer's body; no bytes pass through this process, and no checksum is asked for
 * (the source's bytes are never seen here; S3 copies them as they are). UploadPartCopy
 * copies bytes only: the COPY's first step is a HEAD of the source (MPU_HEAD_SOURCE), and
 * the upload is created with the source's attributes, so that the copy keeps them as a
 * CopyObject does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/s3/s3_internal.h"
#include "backends/s3/xml.h"
#include "util/crc32c.h"

/* ----------------------------------------------------------------- requests */

/* The PUT's (or COPY's) own requests of a multipart upload (see enum mpu_step). */
int s3_spec_multipart(s3_backend *s, cfs_op *op, s3_state *st, req_spec *r)
{
    int crc = s->checksum_crc32c && op->kind == CFS_OP_PUT;
    if (op->step == MPU_HEAD_SOURCE) { /* spec_target pointed it at the source */
        r->method = "HEAD";
        r->no_body = 1;
    } else if (op->step == MPU_INITIATE) {
        r->method = "POST";
        r->body = "";
        add_q(r, "uploads", "");
        if (s3_spec_put_attrs(op, r) < 0)
            return -1;
        if (crc) {
            add_h(r, "x-amz-checksum-algorithm", "CRC32C");
            add_h(r, "x-amz-checksum-type", "FULL_OBJECT");
        }
    } else if (op->step == MPU_COMPLETE) {
        if (!st->put_hashed) {
            const uint32_t *crcs = crc ? st->part_crc32c : NULL;
            if (cfs_s3_complete_body(&st->complete, st->etags, crcs, st->n_parts) < 0 ||
                s3_hash_body(s, st->complete.data, st->complete.len, st->md5_b64, st->sha256) < 0)
                return -1;
            if (crcs) {
                /* about 2 us a part, on the transfer thread: 10,000 parts, 20 ms once */
                uint32_t whole = 0;
                for (size_t i = 0; i < st->n_parts; i++) {
                    size_t off = i * st->part_size;
                    size_t len =
                        op->body_len - off < st->part_size ? op->body_len - off : st->part_size;
                    whole = cfs_crc32c_combine(whole, crcs[i], len);
                }
                st->crc32c = whole;
                s3_crc32c_b64(whole, st->crc32c_b64);
            }
            st->put_hashed = 1;
        }
        r->method = "POST";
        r->body = st->complete.data;
        r->body_len = st->complete.len;
        r->payload = st->sha256;
        add_q(r, "uploadId", st->upload_id);
        add_h(r, "Content-Type", "application/xml");
        add_h(r, "Content-MD5", st->md5_b64);
        if (crc) {
            add_h(r, "x-amz-checksum-crc32c", st->crc32c_b64);
            add_h(r, "x-amz-checksum-type", "FULL_OBJECT");
        }
        if (op->if_none_match)
            add_h(r, "If-None-Match", "*");
    } else if (op->step == MPU_ABORT) {
        r->method = "DELETE";
        add_q(r, "uploadId", st->upload_id);
    } else {
        return -1; /* MPU_PARTS: the parts are child ops; the PUT itself sends nothing */
    }
    return 0;
}

/* UploadPart: a child op holding one slice of its parent's body; UploadPartCopy: a child
 * COPY naming one range of the source. */
int s3_spec_part(s3_backend *s, s3_state *st, cfs_op *op, req_spec *r)
{
    if (op->kind == CFS_OP_COPY) {
        r->method = "PUT";
        r->body = "";
        snprintf(r->part_number, sizeof r->part_number, "%zu", st->part_number);
        add_q(r, "partNumber", r->part_number);
        add_q(r, "uploadId", st->upload->upload_id);
        if (!(r->scratch = s3_copy_source(s, op)))
            return -1;
        add_h(r, "x-amz-copy-source", r->scratch);
        snprintf(r->range, sizeof r->range, "bytes=%lld-%lld", (long long)op->range.start,
                 (long long)op->range.end - 1);
        add_h(r, "x-amz-copy-source-range", r->range);
        return 0;
    }
    r->method = "PUT";
    r->body_of = op;
    r->payload = st->sha256;
    snprintf(r->part_number, sizeof r->part_number, "%zu", st->part_number);
    add_q(r, "partNumber", r->part_number);
    add_q(r, "uploadId", st->upload->upload_id);
    add_h(r, "Content-MD5", st->md5_b64);
    s3_spec_put_checksum(s, st, r);
    return 0;
}

/* ------------------------------------------------------------------ answers */

/* A multipart upload failed for good: keep the first failure (op's own, unless one was
 * kept already) and abort the upload. */
static cfs_next mpu_abort(cfs_op *op, s3_state *m)
{
    if (!m->fail_status) {
        m->fail_status = op->status != CFS_OK ? op->status : CFS_EPROTOCOL;
        m->fail_http_status = op->http_status;
        m->fail_attempts = op->attempts;
        memcpy(m->fail_message, op->message, sizeof m->fail_message);
        if (op->where && !(m->fail_where = strdup(op->where)))
            m->fail_status = CFS_ENOMEM;
    }
    return cfs_op_next_step(op, MPU_ABORT);
}

/* Attach the next parts as child ops, up to multipart_concurrency in flight. On
 * out-of-memory the failure is kept and no more parts start. */
static void attach_parts(s3_backend *s, cfs_op *op, s3_state *m)
{
    int in_flight = cfs_op_children_running(op);
    for (cfs_op *c = op->children; c; c = c->next)
        in_flight++;
    size_t total = s3_multipart_len(op);
    while (!m->fail_status && in_flight < s->mpu_concurrency && m->parts_started < m->n_parts) {
        size_t off = m->parts_started * m->part_size;
        cfs_op *part = cfs_op_new(op->kind, op->backend, op->key, strlen(op->key));
        s3_state *ps = part ? calloc(1, sizeof *ps) : NULL;
        if (ps && op->kind == CFS_OP_COPY) {
            part->source_backend = op->source_backend;
            part->size = -1;
            part->range = (cfs_range){
                .kind = CFS_RANGE_BOUNDED,
                .start = (int64_t)off,
                .end = (int64_t)(off + (total - off < m->part_size ? total - off : m->part_size))
            };
            if (!(part->source = strdup(op->source))) {
                free(ps);
                ps = NULL;
            }
        }
        if (!ps) {
            cfs_op_free(part);
            m->fail_status = CFS_ENOMEM;
            snprintf(m->fail_message, sizeof m->fail_message, "out of memory starting part %zu",
                     m->parts_started + 1);
            return;
        }
        if (op->kind == CFS_OP_PUT)
            cfs_op_body_slice(part, op, off,
                              op->body_len - off < m->part_size ? op->body_len - off : m->part_size);
        ps->part_number = ++m->parts_started;
        ps->upload = m;
        part->backend_state = ps;
        part->free_backend_state = s3_state_free;
        part->next = op->children;
        op->children = part;
        in_flight++;
    }
}

/* A multipart COPY's HEAD of its source: keep what the source stores besides its bytes
 * (op->attrs: Content-Type, Cache-Control, Content-Disposition, Content-Encoding,
 * x-amz-meta-*, and x-amz-storage-class when S3 named one: a STANDARD object names none),
 * which CreateMultipartUpload sends, as CopyObject keeps them. A source whose size is not
 * the one listed changed since: its parts would copy the wrong bytes. */
static cfs_next source_headed(cfs_op *op, const cfs_response *resp)
{
    if (cfs_attrs_from_headers(op, resp, "x-amz-meta-") < 0)
        return CFS_NEXT_DONE;
    if (resp->content_length >= 0 && resp->content_length != op->size) {
        cfs_op_fail(op, CFS_EPROTOCOL,
                    "the source is %lld bytes where its listing said %lld (changed since)",
                    (long long)resp->content_length, (long long)op->size);
        return CFS_NEXT_DONE;
    }
    return cfs_op_next_step(op, MPU_INITIATE);
}

/* The PUT's (or COPY's) own requests of a multipart upload: the source's HEAD,
 * initiate, complete, abort. */
cfs_next s3_mpu_finish(s3_backend *s, cfs_op *op, const cfs_response *resp)
{
    s3_state *m = op->backend_state;
    if (op->step == MPU_ABORT) { /* the abort is done (or not): report the failure */
        op->status = m->fail_status;
        op->http_status = m->fail_http_status;
        op->attempts = m->fail_attempts;
        memcpy(op->message, m->fail_message, sizeof m->fail_message);
        if (m->fail_where && cfs_op_set_where(op, m->fail_where) < 0)
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return CFS_NEXT_DONE;
    }
    int ok = resp->status >= 200 && resp->status < 300;
    cfs_s3_error e;
    memset(&e, 0, sizeof e);
    /* CompleteMultipartUpload can answer 200 with an <Error> body */
    if (ok && op->step == MPU_COMPLETE && resp->body && resp->body->len &&
        cfs_s3_parse_error(resp->body->data, resp->body->len, &e) == 0 && e.code[0])
        ok = 0;
    if (!ok) {
        cfs_next next = s3_error(op, resp);
        if (op->status == CFS_OK) /* a 200 with an error body */
            cfs_op_fail(op, CFS_ETRANSIENT, "%s: %s (in a 200 answer)", e.code, e.message);
        if (resp->status >= 200 && resp->status < 300 && !strcmp(e.code, "InternalError"))
            next = CFS_NEXT_RETRY;
        if (op->step == MPU_INITIATE || op->step == MPU_HEAD_SOURCE)
            return next; /* nothing uploaded yet: nothing to abort */
        if (next == CFS_NEXT_RETRY && !cfs_op_last_attempt(op))
            return CFS_NEXT_RETRY;
        return mpu_abort(op, m);
    }
    if (op->step == MPU_COMPLETE)
        return CFS_NEXT_DONE;
    if (op->step == MPU_HEAD_SOURCE)
        return source_headed(op, resp);
    char err[200];
    if (cfs_s3_parse_upload_id(resp->body->data, resp->body->len, &m->upload_id, err, sizeof err) <
        0) {
        cfs_op_fail(op, CFS_EPROTOCOL, "bad CreateMultipartUpload answer: %s", err);
        return CFS_NEXT_DONE;
    }
    op->step = MPU_PARTS;
    attach_parts(s, op, m);
    return op->children ? CFS_NEXT_CHILDREN : mpu_abort(op, m);
}

/* UploadPart's answer, for the part's child op. */
cfs_next s3_part_finish(cfs_op *op, const cfs_response *resp)
{
    s3_state *st = op->backend_state;
    if (resp->status < 200 || resp->status >= 300)
        return s3_error(op, resp);
    if (op->kind == CFS_OP_COPY) { /* <CopyPartResult><ETag>, or an <Error> after the 200 */
        char err[200];
        cfs_s3_error e;
        const char *body = resp->body && resp->body->data ? resp->body->data : "";
        size_t len = resp->body ? resp->body->len : 0;
        if (len && cfs_s3_parse_error(body, len, &e) == 0 && e.code[0]) {
            cfs_op_fail(op, CFS_ETRANSIENT, "%s: %s (in a 200 answer)", e.code, e.message);
            return CFS_NEXT_RETRY;
        }
        free(st->part_etag);
        st->part_etag = NULL;
        if (cfs_s3_parse_copy_part_etag(body, len, &st->part_etag, err, sizeof err) < 0)
            cfs_op_fail(op, CFS_EPROTOCOL, "bad UploadPartCopy answer for part %zu: %s",
                        st->part_number, err);
        return CFS_NEXT_DONE;
    }
    if (!resp->etag) {
        cfs_op_fail(op, CFS_EPROTOCOL, "no ETag for part %zu", st->part_number);
        return CFS_NEXT_DONE;
    }
    free(st->part_etag);
    if (!(st->part_etag = strdup(resp->etag)))
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
    return CFS_NEXT_DONE;
}

/* A part is back: keep its ETag (or the first failure), start the next parts; once all
 * are back, complete the upload (or abort it). */
cfs_next s3_child_done(cfs_backend *b, cfs_op *op, cfs_op *part)
{
    s3_backend *s = (s3_backend *)b;
    s3_state *m = op->backend_state, *ps = part->backend_state;
    if (part->status == CFS_OK) {
        m->etags[ps->part_number - 1] = ps->part_etag;
        m->part_crc32c[ps->part_number - 1] = ps->crc32c;
        ps->part_etag = NULL;
        if (part->kind == CFS_OP_PUT) /* a copy's parts move no bytes through here */
            cfs_op_set_bytes_held(op, op->bytes_held + (int64_t)part->body_len);
    } else if (!m->fail_status) {
        m->fail_status = part->status;
        m->fail_http_status = part->http_status;
        m->fail_attempts = part->attempts;
        snprintf(m->fail_message, sizeof m->fail_message, "part %zu of %zu: %.200s",
                 ps->part_number, m->n_parts, part->message);
        m->fail_where = part->where; /* reported once the upload is aborted */
        part->where = NULL;
    }
    cfs_op_free(part);
    attach_parts(s, op, m);
    if (op->children || cfs_op_children_running(op))
        return CFS_NEXT_CHILDREN;
    return m->fail_status ? mpu_abort(op, m) : cfs_op_next_step(op, MPU_COMPLETE);
}
