/* GCS backend: building requests. gcs_build turns the next step of an op into one JSON API
 * request, in steps: the token step (a token request first when the op needs a token; the
 * token cache is in driver.c), then the op's own request, by kind of op (the requests of
 * a resumable upload session are in resumable.c). */
#include <stdlib.h>
#include <string.h>

#include "backends/gcs/gcs_internal.h"
#include "util/crc32c.h"
#include "util/keys.h"

#define LIST_PAGE_SIZE 1000
#define MAX_NAME_BYTES 1024

static void state_free(void *p)
{
    gcs_state *s = p;
    cfs_cred_release(&s->ticket);
    free(s->page_token);
    free(s->rewrite_token);
    free(s->session);
    free(s->pending);
    free(s);
}

/* The op's state, made by its first build and freed with the op (every retry, page and
 * chunk builds from it). NULL if out of memory. */
static gcs_state *state_of(cfs_op *op)
{
    if (!op->backend_state) {
        gcs_state *s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        op->backend_state = s;
        op->free_backend_state = state_free;
    }
    return op->backend_state;
}

/* Fail the op for want of memory. Returns CFS_BUILD_FAILED. */
static int no_memory(cfs_op *op)
{
    cfs_op_fail(op, CFS_ENOMEM, "out of memory building a request");
    return CFS_BUILD_FAILED;
}

/* Send req to `url` (taken; NULL when it could not be made) with `method`, and name the
 * URL in the op's messages (op->where). Returns 0 or -1 (out of memory). */
static int set_target(cfs_op *op, cfs_request *req, const char *method, char *url)
{
    req->method = method;
    req->url = url;
    return url && cfs_op_set_where(op, url) == 0 ? 0 : -1;
}

/* ---------- the op's own request ---------- */

/* build_get, build_put, build_copy: the request of their kind of op on the object `name`
 * (the store root and the key). Each returns 0, or -1 if out of memory. */

static int build_get(const gcs_backend *g, cfs_op *op, cfs_request *req, const char *name,
                     size_t name_len)
{
    if (set_target(op, req, "GET",
                   cfs_gcs_object_url(g->endpoint, g->bucket, name, name_len, "alt=media")) < 0 ||
        cfs_request_range(req, &op->range) < 0)
        return -1;
    /* An object stored gzip-encoded comes as stored (its x-goog-hash is of those bytes),
     * never transcoded by the server: checked, then decoded by the engine (a range of one
     * is read whole by the engine and cut after decoding: core/coding.c). libcurl does
     * not decode it (no CURLOPT_ACCEPT_ENCODING). */
    if (cfs_request_header(req, "Accept-Encoding: gzip") < 0)
        return -1;
    return 0;
}

/* PUT: one multipart upload (metadata with the body's crc32c, then the body), or the next
 * request of a resumable session for a large body (*may_auth: 0 when it goes off the
 * endpoint). */
static int build_put(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req, const char *name,
                     size_t name_len, int *may_auth)
{
    if (gcs_is_resumable(g, op))
        return gcs_build_resumable(g, op, st, req, name, name_len, may_auth);
    char boundary[64];
    char *url = cfs_gcs_upload_url(g->endpoint, g->bucket, op->if_none_match);
    if (set_target(op, req, "POST", url) < 0 ||
        cfs_gcs_multipart_body(&req->body_owned, boundary, name, name_len, op->body, op->body_len,
                               st->crc, &op->attrs) < 0 ||
        cfs_request_header(req, "Content-Type: multipart/related; boundary=%s", boundary) < 0)
        return -1;
    req->body = req->body_owned.data;
    req->body_len = req->body_owned.len;
    return 0;
}

/* {endpoint}/storage/v1/b/SB/o/SOURCE/rewriteTo/b/B/o/DEST[?rewriteToken=T]: the source in
 * `src` (this store, or another of the same endpoint: gcs_can_copy_from). */
static char *rewrite_url(const gcs_backend *g, const gcs_backend *src, const char *source,
                         const char *dest, size_t dest_len, const char *token)
{
    char *src_name = cfs_asprintf("%s%s", src->root, source);
    char *src_url =
        src_name ? cfs_gcs_object_url(g->endpoint, src->bucket, src_name, strlen(src_name), NULL)
                 : NULL;
    cfs_buf u = { 0 };
    int rc = src_url ? 0 : -1;
    if (rc == 0)
        rc = cfs_buf_append_str(&u, src_url) < 0 || cfs_buf_append_str(&u, "/rewriteTo/b/") < 0 ||
                     cfs_url_encode(&u, g->bucket, strlen(g->bucket), 0) < 0 ||
                     cfs_buf_append_str(&u, "/o/") < 0 || cfs_url_encode(&u, dest, dest_len, 0) < 0
                 ? -1
                 : 0;
    if (rc == 0 && token)
        rc = cfs_buf_append_str(&u, "?rewriteToken=") < 0 ||
                     cfs_url_encode(&u, token, strlen(token), 0) < 0
                 ? -1
                 : 0;
    if (rc == 0)
        rc = cfs_buf_terminate(&u);
    free(src_name);
    free(src_url);
    if (rc < 0) {
        cfs_buf_free(&u);
        return NULL;
    }
    return cfs_buf_steal(&u, NULL);
}

/* COPY: a rewrite; the server copies, in as many calls as it needs (rewriteToken). */
static int build_copy(const gcs_backend *g, cfs_op *op, const gcs_state *st, cfs_request *req,
                      const char *name, size_t name_len)
{
    const gcs_backend *src = op->source_backend ? (const gcs_backend *)op->source_backend : g;
    char *url = rewrite_url(g, src, op->source, name, name_len, st->rewrite_token);
    if (set_target(op, req, "POST", url) < 0 ||
        cfs_request_header(req, "Content-Type: application/json") < 0)
        return -1;
    req->body = "{}";
    req->body_len = 2;
    return 0;
}

/* The op's own request on its key, for every kind but DELETE_MANY and RMDIR. Sets
 * *may_auth (0: the request must not carry the token). Returns CFS_BUILD_SEND or
 * CFS_BUILD_FAILED. */
static int build_object_request(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req,
                                int *may_auth)
{
    size_t name_len = strlen(g->root) + strlen(op->key);
    char *name = cfs_asprintf("%s%s", g->root, op->key);
    if (!name)
        return no_memory(op);
    if (op->kind != CFS_OP_LIST && (name_len > MAX_NAME_BYTES || strpbrk(name, "\r\n"))) {
        free(name);
        cfs_op_fail(op, CFS_EBADKEY, "GCS object names are at most %d bytes, without CR or LF",
                    MAX_NAME_BYTES);
        return CFS_BUILD_FAILED;
    }
    int rc = -1;
    switch (op->kind) {
    case CFS_OP_GET:
        rc = build_get(g, op, req, name, name_len);
        break;
    case CFS_OP_HEAD: /* the object resource: JSON with its size and attributes */
        rc = set_target(op, req, "GET",
                        cfs_gcs_object_url(g->endpoint, g->bucket, name, name_len, NULL));
        break;
    case CFS_OP_PUT:
        rc = build_put(g, op, st, req, name, name_len, may_auth);
        break;
    case CFS_OP_DELETE:
        rc = set_target(op, req, "DELETE",
                        cfs_gcs_object_url(g->endpoint, g->bucket, name, name_len, NULL));
        break;
    case CFS_OP_LIST: /* one page of the names under `name`, from st->page_token on */
        rc = set_target(op, req, "GET",
                        cfs_gcs_list_url(g->endpoint, g->bucket, name, op->recursive,
                                         st->page_token, LIST_PAGE_SIZE));
        break;
    case CFS_OP_COPY:
        rc = build_copy(g, op, st, req, name, name_len);
        break;
    case CFS_OP_RMDIR:
    case CFS_OP_DELETE_MANY: /* gcs_build's own (no object name) */
        break;
    }
    free(name);
    return rc < 0 ? no_memory(op) : CFS_BUILD_SEND;
}

/* A batch request deleting the keys of a DELETE_MANY op still pending (part i+1 for key
 * i). Returns CFS_BUILD_SEND, CFS_BUILD_DONE (nothing left), or CFS_BUILD_FAILED. */
static int build_batch_delete(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req)
{
    if (!st->pending) {
        if (!(st->pending = malloc(op->n_keys ? op->n_keys : 1)))
            return no_memory(op);
        memset(st->pending, 1, op->n_keys);
    }
    size_t n = 0, rlen = strlen(g->root);
    char **names = calloc(op->n_keys ? op->n_keys : 1, sizeof *names);
    size_t *lens = calloc(op->n_keys ? op->n_keys : 1, sizeof *lens);
    size_t *ids = calloc(op->n_keys ? op->n_keys : 1, sizeof *ids);
    int rc = -1;
    if (!names || !lens || !ids)
        goto out;
    for (size_t i = 0; i < op->n_keys; i++) {
        if (!st->pending[i])
            continue;
        if (!(names[n] = cfs_asprintf("%s%s", g->root, op->keys[i])))
            goto out;
        lens[n] = rlen + strlen(op->keys[i]);
        ids[n] = i + 1;
        n++;
    }
    if (n == 0) {
        op->status = CFS_OK;
        rc = CFS_BUILD_DONE;
        goto out;
    }
    if (set_target(op, req, "POST", cfs_asprintf("%s/batch/storage/v1", g->endpoint)) < 0 ||
        cfs_gcs_batch_delete_body(&req->body_owned, g->bucket, (const char *const *)names, lens,
                                  ids, n) < 0 ||
        cfs_request_header(req, "Content-Type: multipart/mixed; boundary=\"" CFS_GCS_BATCH_BOUNDARY
                                "\"") < 0)
        goto out;
    req->body = req->body_owned.data;
    req->body_len = req->body_owned.len;
    rc = CFS_BUILD_SEND;
out:
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    free(lens);
    free(ids);
    return rc < 0 ? no_memory(op) : rc;
}

static int crc_piece(void *ctx, const char *p, size_t n)
{
    uint32_t *crc = ctx;
    *crc = cfs_crc32c(*crc, p, n);
    return 0;
}

/* A PUT body's crc32c, once per op: every retry and chunk checks against it. Returns 0, or
 * -1 after cfs_op_fail() (its file cannot be read). */
static int body_crc(cfs_op *op, gcs_state *st)
{
    uint32_t crc = 0;
    if (cfs_op_body_scan(op, crc_piece, &crc) < 0)
        return -1;
    st->crc = crc;
    st->have_crc = 1;
    return 0;
}

/* A body in a file is read for its crc32c on a worker thread, not the transfer thread. */
int gcs_prepare(cfs_backend *b, cfs_op *op)
{
    (void)b;
    gcs_state *st = state_of(op);
    if (!st) {
        no_memory(op);
        return -1;
    }
    return body_crc(op, st);
}

int gcs_build(cfs_backend *b, cfs_op *op, cfs_request *req)
{
    gcs_backend *g = (gcs_backend *)b;
    if (op->kind == CFS_OP_RMDIR) {
        /* a flat namespace has no directories to remove: complete at once, no request */
        op->status = CFS_OK;
        return CFS_BUILD_DONE;
    }
    gcs_state *st = state_of(op);
    if (!st)
        return no_memory(op);
    if (op->kind == CFS_OP_PUT && !st->have_crc) {
        if (op->body_file)
            return CFS_BUILD_PREPARE;
        if (body_crc(op, st) < 0)
            return CFS_BUILD_FAILED;
    }
    char *token = NULL;
    /* first the token step: a token to carry, or its request built, or wait for it */
    int t = token_step(g, op, st, req, &token);
    int rc = t == CFS_CRED_USE ? CFS_BUILD_SEND : cfs_cred_build_answer(t);
    if (t == CFS_CRED_USE) {
        int may_auth = 1;
        rc = op->kind == CFS_OP_DELETE_MANY ? build_batch_delete(g, op, st, req)
                                            : build_object_request(g, op, st, req, &may_auth);
        if (rc == CFS_BUILD_SEND && token && may_auth && add_bearer(req, token) < 0)
            rc = no_memory(op);
    }
    cfs_secret_free(token);
    return rc;
}
