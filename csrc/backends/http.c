/* http:// and https://: plain web servers. GET/HEAD/PUT/DELETE on base URL + encoded key;
 * listing from directory indexes in nginx's `autoindex_format json`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/http_index.h"
#include "core/backend.h"
#include "util/keys.h"
#include "util/secret.h"

extern const cfs_backend_ops cfs_http_backend;

typedef struct http_backend {
    cfs_backend base;
    char *url;          /* scheme://host[:port]/path, no credentials, no trailing '/' */
    cfs_tls tls;
    char *bearer_token;
    char *userpwd;      /* "user:password" for basic auth */
} http_backend;

/* Directories still to read for one LIST op. */
typedef struct list_state {
    char **dirs;        /* relative to the root, "" or ending in '/' */
    size_t len, cap;
    char *current;      /* the directory being read */
} list_state;

static void list_state_free(void *p)
{
    list_state *s = p;
    for (size_t i = 0; i < s->len; i++)
        free(s->dirs[i]);
    free(s->dirs);
    free(s->current);
    free(s);
}

static int list_state_push(list_state *s, const char *dir, size_t len)
{
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **p = realloc(s->dirs, cap * sizeof *p);
        if (!p)
            return -1;
        s->dirs = p;
        s->cap = cap;
    }
    char *copy = strndup(dir, len);
    if (!copy)
        return -1;
    s->dirs[s->len++] = copy;
    return 0;
}

static void http_close(cfs_backend *b)
{
    http_backend *h = (http_backend *)b;
    if (!h)
        return;
    free(h->url);
    cfs_tls_free(&h->tls);
    cfs_secret_free(h->bearer_token);
    cfs_secret_free(h->userpwd);
    free(h);
}

static cfs_backend *http_open(const char *url, cfs_options *opts, char *err, size_t errlen)
{
    http_backend *h = calloc(1, sizeof h[0]);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->base.ops = &cfs_http_backend;

    /* Credentials in the URL (user:pass@host) become basic auth and leave the URL. */
    const char *scheme_end = strstr(url, "://") + 3;
    const char *host = scheme_end, *slash = strchr(scheme_end, '/');
    const char *at =
        memchr(scheme_end, '@', slash ? (size_t)(slash - scheme_end) : strlen(scheme_end));
    cfs_buf u = { 0 };
    if (cfs_buf_append(&u, url, (size_t)(scheme_end - url)) < 0)
        goto oom;
    if (at) {
        h->userpwd = strndup(scheme_end, (size_t)(at - scheme_end));
        if (!h->userpwd)
            goto oom;
        host = at + 1;
    }
    if (cfs_buf_append_str(&u, host) < 0)
        goto oom;
    while (u.len > (size_t)(scheme_end - url) && u.data[u.len - 1] == '/')
        u.len--;
    if (cfs_buf_terminate(&u) < 0)
        goto oom;
    h->url = cfs_buf_steal(&u, NULL);
    if (strlen(h->url) == (size_t)(scheme_end - url)) {
        snprintf(err, errlen, "URL has no host: %s", h->url);
        http_close(&h->base);
        return NULL;
    }

    const char *v;
    if (cfs_tls_take_options(&h->tls, opts, err, errlen) < 0)
        goto fail;
    if ((v = cfs_options_take(opts, "bearer_token")) && !(h->bearer_token = strdup(v)))
        goto oom_h;
    const char *user = cfs_options_take(opts, "username");
    const char *pass = cfs_options_take(opts, "password");
    if (user || pass) {
        size_t n = strlen(user ? user : "") + strlen(pass ? pass : "") + 2;
        cfs_secret_free(h->userpwd);
        h->userpwd = malloc(n);
        if (!h->userpwd)
            goto oom_h;
        snprintf(h->userpwd, n, "%s:%s", user ? user : "", pass ? pass : "");
    }
    return &h->base;

oom:
    cfs_buf_free(&u);
oom_h:
    snprintf(err, errlen, "out of memory");
fail:
    http_close(&h->base);
    return NULL;
}

/* base + '/' + encoded path */
static char *object_url(http_backend *h, const char *path)
{
    cfs_buf u = { 0 };
    if (cfs_buf_append_str(&u, h->url) < 0 || cfs_buf_append(&u, "/", 1) < 0 ||
        cfs_url_encode(&u, path, strlen(path), 1) < 0) {
        cfs_buf_free(&u);
        return NULL;
    }
    return cfs_buf_steal(&u, NULL);
}

static int next_list_dir(cfs_op *op)
{
    list_state *s = op->backend_state;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        op->backend_state = s;
        op->free_backend_state = list_state_free;
        /* the directory holding the prefix: "a/b" lists "a/" and filters on "b" */
        const char *last = strrchr(op->key, '/');
        size_t dir_len = last ? (size_t)(last - op->key) + 1 : 0;
        if (list_state_push(s, op->key, dir_len) < 0)
            return -1;
    }
    free(s->current);
    s->current = s->dirs[--s->len];
    return 0;
}

static int http_build(cfs_backend *b, cfs_op *op, cfs_request *req)
{
    http_backend *h = (http_backend *)b;
    const char *path = op->key;
    switch (op->kind) {
    case CFS_OP_GET:
        req->method = "GET";
        break;
    case CFS_OP_HEAD:
        req->method = "HEAD";
        req->no_body = 1;
        break;
    case CFS_OP_PUT:
        req->method = "PUT";
        cfs_request_body_of(req, op, 0, op->body_len);
        break;
    case CFS_OP_DELETE:
        req->method = "DELETE";
        break;
    case CFS_OP_RMDIR:
        /* WebDAV deletes a collection with what is left in it: nothing, by now */
        req->method = "DELETE";
        break;
    case CFS_OP_LIST:
        req->method = "GET";
        if (!op->backend_state && next_list_dir(op) < 0)
            goto oom;
        path = ((list_state *)op->backend_state)->current;
        break;
    case CFS_OP_DELETE_MANY: /* delete_many_max is 0: never submitted here */
        cfs_op_fail(op, CFS_EINVALID, "no multi-key delete");
        return -1;
    case CFS_OP_COPY: /* a plain server has no copy: read the source, then write it */
        if (op->step == 0) {
            req->method = "GET";
            path = op->source;
        } else {
            req->method = "PUT";
            req->body = op->data.data ? op->data.data : "";
            req->body_len = op->data.len;
        }
        break;
    }
    req->url = object_url(h, path);
    if (!req->url || cfs_op_set_where(op, req->url) < 0)
        goto oom;
    if (op->kind == CFS_OP_GET && cfs_request_range(req, &op->range) < 0)
        goto oom;
    if (op->kind == CFS_OP_PUT || (op->kind == CFS_OP_COPY && op->step == 1)) {
        const char *ct = op->kind == CFS_OP_PUT && op->attrs.content_type
                             ? op->attrs.content_type
                             : "application/octet-stream";
        if (cfs_request_header(req, "Content-Type: %s", ct) < 0)
            goto oom;
        if (op->if_none_match && cfs_request_header(req, "If-None-Match: *") < 0)
            goto oom;
        if (op->kind == CFS_OP_PUT && op->attrs.content_encoding &&
            cfs_request_header(req, "Content-Encoding: %s", op->attrs.content_encoding) < 0)
            goto oom;
    }
    if (op->kind == CFS_OP_LIST && cfs_request_header(req, "Accept: application/json") < 0)
        goto oom;
    if (h->bearer_token && cfs_request_header(req, "Authorization: Bearer %s", h->bearer_token) < 0)
        goto oom;
    return 0;
oom:
    cfs_op_fail(op, CFS_ENOMEM, "out of memory building a request");
    return -1;
}

/* After one directory of a LIST: read the next one, or finish. */
static cfs_next next_dir_or_done(cfs_op *op)
{
    list_state *s = op->backend_state;
    if (op->status != CFS_OK || s->len == 0)
        return CFS_NEXT_DONE;
    op->step++;
    if (next_list_dir(op) < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return CFS_NEXT_DONE;
    }
    return CFS_NEXT_AGAIN;
}

/* What index_entry needs while one directory's index is read. */
typedef struct index_ctx {
    cfs_op *op;
    const char *want;   /* the part of the prefix inside the directory */
    size_t want_len;
    cfs_buf path;       /* scratch */
} index_ctx;

/* One entry of an index: its file, or its directory to descend into. 0, or 1 with op
 * failed (out of memory). */
static int index_entry(void *ctx, const char *n, const char *type, int64_t size, int64_t mtime_ms)
{
    index_ctx *ic = ctx;
    cfs_op *op = ic->op;
    list_state *s = op->backend_state;
    const char *dir = s->current;
    const char *want = ic->want;
    size_t want_len = ic->want_len;
    cfs_buf *path = &ic->path;
    size_t n_len = strlen(n);
    if (strncmp(n, want, n_len < want_len ? n_len : want_len) != 0 || n_len < want_len)
        return 0;
    int is_dir = strcmp(type, "directory") == 0;
    cfs_buf_reset(path);
    if (cfs_buf_append_str(path, dir) < 0 || cfs_buf_append(path, n, n_len) < 0)
        goto oom;
    if (is_dir && op->recursive) {
        if (cfs_buf_append(path, "/", 1) < 0 || list_state_push(s, path->data, path->len) < 0)
            goto oom;
    } else if (is_dir || strcmp(type, "file") == 0) {
        if (cfs_entries_add(&op->entries, path->data, path->len, is_dir ? -1 : size, is_dir) < 0 ||
            (!is_dir && cfs_entries_set_info(&op->entries, mtime_ms, NULL, 0) < 0))
            goto oom;
    }
    return 0;
oom:
    cfs_op_fail(op, CFS_ENOMEM, "out of memory reading a directory index");
    return 1;
}

/* Read one nginx JSON index (http_index.c), then the next directory or finish. */
static cfs_next parse_index(cfs_op *op, const cfs_buf *body)
{
    list_state *s = op->backend_state;
    size_t dir_len = strlen(s->current);
    size_t key_len = strlen(op->key);
    /* the part of the prefix inside this directory ("" below the prefix's own directory) */
    index_ctx ic = { .op = op, .want = dir_len < key_len ? op->key + dir_len : "" };
    ic.want_len = strlen(ic.want);
    char err[96];
    int rc = cfs_http_index_parse(body->data, body->len, index_entry, &ic, err, sizeof err);
    if (rc < 0)
        cfs_op_fail(op, CFS_EPROTOCOL, "%s", err);
    else if (rc == 0)
        op->status = CFS_OK;
    cfs_buf_free(&ic.path);
    return next_dir_or_done(op);
}

static cfs_next http_finish(cfs_backend *b, cfs_op *op, const cfs_response *resp)
{
    (void)b;
    if ((op->kind == CFS_OP_GET || op->kind == CFS_OP_HEAD) && resp->status == 301) {
        /* a web server's redirect from "dir" to "dir/": a directory is not an object */
        cfs_op_fail(op, CFS_ENOTFOUND, "HTTP 301: a directory");
        return CFS_NEXT_DONE;
    }
    cfs_next next = cfs_http_status_outcome(op, resp);
    if (op->kind == CFS_OP_RMDIR && next == CFS_NEXT_DONE && op->status != CFS_OK) {
        /* cleanup only: a server without collections (or the directory gone) is fine */
        op->status = CFS_OK;
        op->message[0] = '\0';
    }
    if (op->kind == CFS_OP_COPY && op->step == 0 && next == CFS_NEXT_DONE && op->status == CFS_OK) {
        cfs_buf_free(&op->data); /* the source's bytes, to be written next */
        op->data = *resp->body;
        memset(resp->body, 0, sizeof *resp->body);
        op->step = 1;
        return CFS_NEXT_AGAIN;
    }
    if (op->kind == CFS_OP_LIST) {
        if (op->status == CFS_ENOTFOUND) { /* a missing directory lists as empty */
            op->status = CFS_OK;
            op->message[0] = '\0';
            return next_dir_or_done(op);
        }
        if (next == CFS_NEXT_DONE && op->status == CFS_OK)
            return parse_index(op, resp->body);
    }
    if (op->kind == CFS_OP_HEAD && next == CFS_NEXT_DONE && op->status == CFS_OK)
        cfs_attrs_from_headers(op, resp, NULL);
    return next;
}

static int http_configure_handle(cfs_backend *b, CURL *easy)
{
    http_backend *h = (http_backend *)b;
    if (cfs_tls_configure(&h->tls, easy) < 0)
        return -1;
    if (h->userpwd && (curl_easy_setopt(easy, CURLOPT_USERPWD, h->userpwd) != CURLE_OK ||
                       curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC) != CURLE_OK))
        return -1;
    return 0;
}

static const char *http_url(cfs_backend *b)
{
    return ((http_backend *)b)->url;
}

static const char *const http_schemes[] = { "http", "https", NULL };

static const char *const http_secret_options[] = { "bearer_token", "password", NULL };

const cfs_backend_ops cfs_http_backend = {
    .name = "http",
    .schemes = http_schemes,
    .secret_options = http_secret_options, /* nginx ignores If-None-Match on PUT: not atomic */
    /* a PUT sends Content-Type; whether the server keeps it is the server's (nginx's
     * WebDAV does not: it serves a type by extension) */
    .capabilities = CFS_CAP_CONTENT_TYPE,
    .open = http_open,
    .close = http_close,
    .build = http_build,
    .finish = http_finish,
    .configure_handle = http_configure_handle,
    .url = http_url,
};
