/* GCS backend: building requests. gcs_build turns the next step of an op into one JSON API
 * request: a token request first when the op needs a token (the token cache is in
 * driver.c), else the op's own request (the requests of a resumable upload session are
 * in resumable.c). */
#include <stdlib.h>
#include <string.h>

#include "backends/gcs/gcs_internal.h"
#include "util/crc32c.h"
#include "util/keys.h"

#define LIST_PAGE_SIZE 1000
#define MAX_TOKEN_FETCHES 4        /* per op: an endpoint that never gives a usable token */
#define MAX_NAME_BYTES 1024

static void state_free(void *p)
{
    gcs_state *s = p;
    free(s->page_token);
    free(s->rewrite_token);
    free(s->session);
    free(s->pending);
    free(s);
}

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

/* A batch request deleting the keys of a DELETE_MANY op still pending (part i+1 for key
 * i). Returns CFS_BUILD_SEND, CFS_BUILD_DONE (nothing left), or -1 (out of memory). */
static int build_batch_delete(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req)
{
    if (!st->pending) {
        if (!(st->pending = malloc(op->n_keys ? op->n_keys : 1)))
            return -1;
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
    req->method = "POST";
    if (!(req->url = cfs_asprintf("%s/batch/storage/v1", g->endpoint)) ||
        cfs_op_set_where(op, req->url) < 0 ||
        cfs_gcs_batch_delete_body(&req->body_owned, g->bucket, (const char *const *)names, lens,
                                  ids, n) < 0 ||
        cfs_request_header(req, "Content-Type: multipart/mixed; boundary=\"" CFS_GCS_BATCH_BOUNDARY "\"") < 0)
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
    return rc;
}

/* {endpoint}/storage/v1/b/B/o/SOURCE/rewriteTo/b/B/o/DEST[?rewriteToken=T] */
static char *rewrite_url(const gcs_backend *g, const char *source, const char *dest,
                         size_t dest_len, const char *token)
{
    char *src_name = cfs_asprintf("%s%s", g->root, source);
    char *src_url = src_name ? cfs_gcs_object_url(g->endpoint, g->bucket, src_name, strlen(src_name), NULL) : NULL;
    cfs_buf u = { 0 };
    int rc = src_url ? 0 : -1;
    if (rc == 0)
        rc = cfs_buf_append_str(&u, src_url) < 0 || cfs_buf_append_str(&u, "/rewriteTo/b/") < 0 ||
                     cfs_url_encode(&u, g->bucket, strlen(g->bucket), 0) < 0 ||
                     cfs_buf_append_str(&u, "/o/") < 0 || cfs_url_encode(&u, dest, dest_len, 0) < 0 ? -1 : 0;
    if (rc == 0 && token)
        rc = cfs_buf_append_str(&u, "?rewriteToken=") < 0 || cfs_url_encode(&u, token, strlen(token), 0) < 0 ? -1 : 0;
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

int gcs_build(cfs_backend *b, cfs_op *op, cfs_request *req)
{
    gcs_backend *g = (gcs_backend *)b;
    if (op->kind == CFS_OP_RMDIR) {
        /* a flat namespace has no directories to remove: complete at once, no request */
        op->status = CFS_OK;
        return 1;
    }
    gcs_state *st = state_of(op);
    char *token = NULL, *name = NULL;
    if (!st)
        goto oom;
    int t = token_decide(g, st, &token);
    if (t < 0)
        goto oom;
    if (t == TOKEN_WAIT)
        return CFS_BUILD_WAIT;
    st->auth_step = t == TOKEN_FETCH;
    if (st->auth_step) {
        if (st->fetches >= MAX_TOKEN_FETCHES) {
            release_claim(g);
            cfs_op_fail(op, CFS_EAUTH, "no usable access token after %d tokens", st->fetches);
            return CFS_BUILD_FAILED;
        }
        int rc = build_token_request(g, op, req);
        if (rc != CFS_BUILD_SEND)
            release_claim(g);
        return rc;
    }

    if (op->kind == CFS_OP_DELETE_MANY) {
        int rc = build_batch_delete(g, op, st, req);
        if (rc < 0)
            goto oom;
        if (rc == CFS_BUILD_SEND && token && add_bearer(req, token) < 0)
            goto oom;
        cfs_secret_free(token);
        return rc;
    }
    size_t name_len = strlen(g->root) + strlen(op->key);
    if (!(name = cfs_asprintf("%s%s", g->root, op->key)))
        goto oom;
    if (op->kind != CFS_OP_LIST) {
        if (name_len > MAX_NAME_BYTES || strpbrk(name, "\r\n")) {
            free(token);
            free(name);
            cfs_op_fail(op, CFS_EINVALID, "GCS object names are at most %d bytes, without CR or LF",
                        MAX_NAME_BYTES);
            return -1;
        }
    }
    switch (op->kind) {
    case CFS_OP_GET:
        req->method = "GET";
        req->url = cfs_gcs_object_url(g->endpoint, g->bucket, name, name_len, "alt=media");
        if (!req->url || cfs_request_range(req, &op->range) < 0)
            goto oom;
        /* An object stored gzip-encoded comes as stored (its x-goog-hash is of those bytes),
         * not decompressed by the server: checked, then decompressed here. A range of such
         * an object is served decompressed, whole, and is not checked. */
        if (op->range.kind == CFS_RANGE_NONE && cfs_request_header(req, "Accept-Encoding: gzip") < 0)
            goto oom;
        break;
    case CFS_OP_HEAD:
        req->method = "GET"; /* the object resource: JSON with its size */
        req->url = cfs_gcs_object_url(g->endpoint, g->bucket, name, name_len, "fields=size");
        if (!req->url)
            goto oom;
        break;
    case CFS_OP_PUT: {
        if (!st->have_crc) {
            st->crc = cfs_crc32c(0, op->body, op->body_len);
            st->have_crc = 1;
        }
        if (gcs_is_resumable(g, op)) {
            int may_auth = 1;
            if (gcs_build_resumable(g, op, st, req, name, name_len, &may_auth) < 0)
                goto oom;
            if (token && may_auth && add_bearer(req, token) < 0)
                goto oom;
            cfs_secret_free(token);
            free(name);
            return CFS_BUILD_SEND;
        }
        req->method = "POST";
        req->url = cfs_gcs_upload_url(g->endpoint, g->bucket, op->if_none_match);
        if (!req->url)
            goto oom;
        char boundary[64];
        if (cfs_gcs_multipart_body(&req->body_owned, boundary, name, name_len, op->body,
                                   op->body_len, st->crc) < 0 ||
            cfs_request_header(req, "Content-Type: multipart/related; boundary=%s", boundary) < 0)
            goto oom;
        req->body = req->body_owned.data;
        req->body_len = req->body_owned.len;
        break;
    }
    case CFS_OP_DELETE:
        req->method = "DELETE";
        req->url = cfs_gcs_object_url(g->endpoint, g->bucket, name, name_len, NULL);
        if (!req->url)
            goto oom;
        break;
    case CFS_OP_LIST:
        req->method = "GET";
        req->url = cfs_gcs_list_url(g->endpoint, g->bucket, name, op->recursive, st->page_token,
                                    LIST_PAGE_SIZE);
        if (!req->url)
            goto oom;
        break;
    case CFS_OP_COPY:
        /* rewrite: the server copies, in as many calls as it needs (rewriteToken) */
        req->method = "POST";
        req->url = rewrite_url(g, op->source, name, name_len, st->rewrite_token);
        if (!req->url || cfs_request_header(req, "Content-Type: application/json") < 0)
            goto oom;
        req->body = "{}";
        req->body_len = 2;
        break;
    case CFS_OP_RMDIR:
    case CFS_OP_DELETE_MANY: /* built above */
        break;
    }
    if (cfs_op_set_where(op, req->url) < 0)
        goto oom;
    if (token && add_bearer(req, token) < 0)
        goto oom;
    cfs_secret_free(token);
    free(name);
    return 0;
oom:
    cfs_secret_free(token);
    free(name);
    cfs_op_fail(op, CFS_ENOMEM, "out of memory building a request");
    return -1;
}
