/* GCS backend: reading responses. gcs_finish maps each response to what the op does next:
 * the HTTP status to a cfs status (with the server's message), the x-goog-hash of a whole
 * GET (checked by gcs_verify on a worker thread; the engine decodes a content-encoded body),
 * the object resource of a PUT or HEAD, listing pages, rewrite (COPY) calls and the parts
 * of a batch of deletes. A token request's answer goes to finish_token and a 401 drops the
 * cached token (the token cache is in driver.c); a resumable session's answers are read
 * in resumable.c. */
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backends/gcs/gcs_internal.h"
#include "util/crc32c.h"

/* Check a whole object's bytes (op->data) against the server's x-goog-hash. Returns 1 if
 * they match (or the server gave none), 0 on a mismatch (op failed), -1 if the hash cannot
 * be computed (op failed). */
static int verify_download(cfs_op *op, const cfs_goog_hash *want)
{
    const cfs_goog_hash h = *want;
    const cfs_buf *body = &op->data;
    if (h.has_crc32c) {
        uint32_t got = cfs_crc32c(0, body->data, body->len);
        if (got != h.crc32c) {
            cfs_op_fail(op, CFS_ECHECKSUM,
                        "crc32c of the %zu bytes received is %08x, the server's is %08x", body->len,
                        got, h.crc32c);
            return 0;
        }
        return 1;
    }
    if (h.has_md5) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        if (EVP_Digest(body->data ? body->data : "", body->len, md, &md_len, EVP_md5(), NULL) != 1 ||
            md_len != 16) {
            cfs_op_fail(op, CFS_ENOMEM, "cannot compute an MD5");
            return -1;
        }
        if (memcmp(md, h.md5, 16) != 0) {
            cfs_op_fail(op, CFS_ECHECKSUM,
                        "md5 of the %zu bytes received differs from the server's", body->len);
            return 0;
        }
    }
    return 1;
}

void gcs_describe_failure(cfs_op *op, const cfs_response *resp)
{
    char detail[200];
    cfs_gcs_error_message(resp->body->data, resp->body->len, detail, sizeof detail);
    if (detail[0])
        snprintf(op->message, sizeof op->message, "HTTP %ld: %s", resp->status, detail);
}

static cfs_next finish_list(cfs_op *op, gcs_state *st, const char *root, const cfs_response *resp)
{
    char err[160];
    char *next = NULL;
    int oom = 0;
    if (cfs_gcs_parse_list(resp->body->data, resp->body->len, root, &op->entries, &next, &oom, err,
                           sizeof err) < 0) {
        cfs_op_fail(op, oom ? CFS_ENOMEM : CFS_EPROTOCOL, "%s", err);
        return CFS_NEXT_DONE;
    }
    free(st->page_token);
    st->page_token = next;
    if (next) {
        op->step++;
        return CFS_NEXT_AGAIN;
    }
    return CFS_NEXT_DONE;
}

/* The object resource that completes a session (or a simple upload): is it what we sent? */
int gcs_check_stored(cfs_op *op, const gcs_state *st, const cfs_response *resp)
{
    cfs_goog_hash h;
    int64_t size = -1;
    if (cfs_gcs_parse_object(resp->body->data, resp->body->len, &size, &h) == 0) {
        if ((h.has_crc32c && h.crc32c != st->crc) || (size >= 0 && (size_t)size != op->body_len)) {
            cfs_op_fail(op, CFS_ECHECKSUM,
                        "the server stored %lld bytes with crc32c %08x; "
                        "%zu bytes with crc32c %08x were sent",
                        (long long)size, h.crc32c, op->body_len, st->crc);
            return 0;
        }
    }
    return 1;
}

typedef struct batch_ctx {
    cfs_op *op;
    gcs_state *st;
    int last;               /* the op's last try: transient part failures are final */
    int retry;              /* some part failed transiently: send those keys again */
} batch_ctx;

static int is_transient_status(long code)
{
    return code == 408 || code == 429 || code >= 500;
}

static int batch_part(void *vctx, long id, long status, const char *body, size_t len)
{
    batch_ctx *c = vctx;
    cfs_op *op = c->op;
    if (id < 1 || (size_t)id > op->n_keys || !c->st->pending[id - 1])
        return 0; /* not a part we asked for (or answered twice): ignore it */
    size_t i = (size_t)id - 1;
    if ((status >= 200 && status < 300) || status == 404) { /* gone, or never there */
        c->st->pending[i] = 0;
        return 0;
    }
    if (is_transient_status(status) && !c->last) {
        c->retry = 1;
        return 0;
    }
    c->st->pending[i] = 0;
    char msg[200], detail[240];
    cfs_gcs_error_message(body, len, msg, sizeof msg);
    snprintf(detail, sizeof detail, "HTTP %ld: %s", status, msg[0] ? msg : "no message");
    cfs_status why = status == 401 || status == 403 ? CFS_EAUTH
                     : is_transient_status(status)  ? CFS_ETRANSIENT
                     : status == 412                ? CFS_EEXISTS
                                                    : CFS_EHTTP;
    return cfs_entries_add_failure(&op->entries, op->keys[i], why, detail) < 0 ? -2 : 0;
}

/* A batch of deletes answered: one HTTP status per part, matched by Content-ID. Parts that
 * failed transiently (or got no answer) are sent again after a backoff, the others are
 * done; what failed for good is in op->entries. */
static cfs_next finish_batch_delete(cfs_op *op, gcs_state *st, const cfs_response *resp)
{
    if (resp->status != 200) {
        cfs_next next = cfs_http_status_outcome(op, resp);
        if (op->status == CFS_OK) /* another 2xx: not a batch response */
            cfs_op_fail(op, CFS_EPROTOCOL, "batch request answered HTTP %ld", resp->status);
        else
            gcs_describe_failure(op, resp);
        return next;
    }
    batch_ctx c = { op, st, cfs_op_last_attempt(op), 0 };
    char err[160];
    int rc = cfs_gcs_parse_batch(resp->content_type, resp->body->data, resp->body->len, batch_part,
                                 &c, err, sizeof err);
    if (rc == -2) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory reading a batch response");
        return CFS_NEXT_DONE;
    }
    if (rc < 0) {
        cfs_op_fail(op, CFS_EPROTOCOL, "bad batch response: %s", err);
        return CFS_NEXT_DONE;
    }
    for (size_t i = 0; i < op->n_keys; i++) {
        if (!st->pending[i])
            continue;
        if (!c.last) { /* no answer for it, or a transient one: again */
            c.retry = 1;
            continue;
        }
        st->pending[i] = 0;
        if (cfs_entries_add_failure(&op->entries, op->keys[i], CFS_ETRANSIENT,
                                    "no answer for this key in the batch response") < 0) {
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
            return CFS_NEXT_DONE;
        }
    }
    if (c.retry) {
        cfs_op_fail(op, CFS_ETRANSIENT, "some deletes of the batch failed transiently");
        return CFS_NEXT_RETRY;
    }
    op->status = CFS_OK;
    return CFS_NEXT_DONE;
}

/* A rewrite answers {"done": true} or a rewriteToken to call again with. */
static cfs_next finish_rewrite(cfs_op *op, gcs_state *st, const cfs_response *resp)
{
    cJSON *root = cJSON_ParseWithLength(resp->body->data ? resp->body->data : "", resp->body->len);
    const cJSON *done = cJSON_GetObjectItemCaseSensitive(root, "done");
    const cJSON *token = cJSON_GetObjectItemCaseSensitive(root, "rewriteToken");
    cfs_next next = CFS_NEXT_DONE;
    if (!cJSON_IsBool(done)) {
        cfs_op_fail(op, CFS_EPROTOCOL, "rewrite response without \"done\"");
    } else if (!cJSON_IsTrue(done)) {
        free(st->rewrite_token);
        st->rewrite_token = cJSON_IsString(token) ? strdup(token->valuestring) : NULL;
        if (!st->rewrite_token) {
            cfs_op_fail(op, CFS_EPROTOCOL, "unfinished rewrite without a rewriteToken");
        } else {
            op->step++;
            next = CFS_NEXT_AGAIN;
        }
    }
    cJSON_Delete(root);
    return next;
}

cfs_next gcs_finish(cfs_backend *b, cfs_op *op, const cfs_response *resp)
{
    gcs_backend *g = (gcs_backend *)b;
    gcs_state *st = op->backend_state;
    if (st->auth_step)
        return finish_token(g, op, st, resp);

    if (resp->status == 401 && g->cred.kind >= CFS_GCS_CRED_SERVICE_ACCOUNT && !st->reauthed) {
        /* the token was revoked or expired early: drop it (if still current), fetch anew */
        cfs_cred_invalidate(&g->tokens, &st->ticket);
        st->reauthed = 1;
        st->rs_in_flight = 0; /* refused: the server kept nothing of it */
        op->step++;
        return CFS_NEXT_AGAIN;
    }
    if (gcs_is_resumable(g, op))
        return gcs_finish_resumable(op, st, resp);
    if (op->kind == CFS_OP_DELETE_MANY)
        return finish_batch_delete(op, st, resp);

    /* a whole object is checked as received, then decompressed: both on a worker thread */
    int whole = op->kind == CFS_OP_GET && resp->status == 200 && op->range.kind == CFS_RANGE_NONE;
    if (whole) {
        memset(&st->want, 0, sizeof st->want);
        if (resp->captured[GCS_GOOG_HASH] &&
            cfs_gcs_parse_hash(resp->captured[GCS_GOOG_HASH], &st->want) < 0) {
            cfs_op_fail(op, CFS_EPROTOCOL, "malformed x-goog-hash header");
            return CFS_NEXT_DONE;
        }
    }

    cfs_next next = cfs_http_status_outcome(op, resp);
    if (whole && op->status == CFS_OK && (st->want.has_crc32c || st->want.has_md5))
        return CFS_NEXT_VERIFY;
    if (op->status != CFS_OK) {
        gcs_describe_failure(op, resp);
        if (op->kind == CFS_OP_PUT && resp->status == 400 &&
            (strstr(op->message, "CRC32C") || strstr(op->message, "MD5"))) {
            /* the server computed another checksum than ours: bytes damaged on the way */
            op->status = CFS_ECHECKSUM;
            return CFS_NEXT_RETRY;
        }
        /* a listing's and an upload's only resource is the bucket: not a missing key */
        if ((op->kind == CFS_OP_LIST || op->kind == CFS_OP_PUT) && op->status == CFS_ENOTFOUND)
            op->status = CFS_ENOCONTAINER;
        if (op->status == CFS_EAUTH && g->cred.kind == CFS_GCS_CRED_ANON) {
            size_t n = strlen(op->message);
            snprintf(op->message + n, sizeof op->message - n,
                     " (anonymous request: no credentials)");
        }
        return next;
    }

    switch (op->kind) {
    case CFS_OP_HEAD: {
        cfs_goog_hash h;
        int64_t size = -1;
        if (cfs_gcs_parse_object(resp->body->data, resp->body->len, &size, &h) < 0) {
            cfs_op_fail(op, CFS_EPROTOCOL, "object resource without a size");
            return CFS_NEXT_DONE;
        }
        op->size = size;
        int a = cfs_gcs_parse_object_attrs(resp->body->data, resp->body->len, &op->attrs);
        if (a < 0) {
            cfs_op_fail(op, a == -2 ? CFS_ENOMEM : CFS_EPROTOCOL, "%s",
                        a == -2 ? "out of memory" : "malformed object resource attributes");
            return CFS_NEXT_DONE;
        }
        break;
    }
    case CFS_OP_PUT:
        if (!gcs_check_stored(op, st, resp))
            return CFS_NEXT_RETRY;
        break;
    case CFS_OP_LIST:
        return finish_list(op, st, g->root, resp);
    case CFS_OP_COPY:
        return finish_rewrite(op, st, resp);
    default:
        break;
    }
    return next;
}

cfs_next gcs_verify(cfs_backend *b, cfs_op *op)
{
    (void)b;
    gcs_state *st = op->backend_state;
    int ok = verify_download(op, &st->want);
    if (ok == 0)
        return CFS_NEXT_RETRY;
    return CFS_NEXT_DONE; /* a content-encoded body is decoded next by the engine */
}
