#include "core/op.h"
#include "util/codec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *cfs_status_name(cfs_status s)
{
    switch (s) {
    case CFS_OK:
        return "ok";
    case CFS_ENOTFOUND:
        return "not found";
    case CFS_EEXISTS:
        return "already exists";
    case CFS_EAUTH:
        return "not authorized";
    case CFS_ERANGE:
        return "range not satisfiable";
    case CFS_EHTTP:
        return "request refused";
    case CFS_ETRANSIENT:
        return "failed after retries";
    case CFS_ECHECKSUM:
        return "checksum mismatch";
    case CFS_EPROTOCOL:
        return "malformed response";
    case CFS_ENETWORK:
        return "network error";
    case CFS_EIO:
        return "I/O error";
    case CFS_EINVALID:
        return "invalid request";
    case CFS_ENOMEM:
        return "out of memory";
    case CFS_ECANCELLED:
        return "cancelled";
    case CFS_ENOCONTAINER:
        return "no such bucket";
    case CFS_EBADKEY:
        return "invalid key";
    }
    return "unknown";
}

const char *cfs_op_kind_name(cfs_op_kind k)
{
    switch (k) {
    case CFS_OP_GET:
        return "get";
    case CFS_OP_HEAD:
        return "head";
    case CFS_OP_PUT:
        return "put";
    case CFS_OP_DELETE:
        return "delete";
    case CFS_OP_LIST:
        return "list";
    case CFS_OP_RMDIR:
        return "rmdir";
    case CFS_OP_DELETE_MANY:
        return "delete";
    case CFS_OP_COPY:
        return "copy";
    }
    return "unknown";
}

int cfs_range_resolve(const cfs_range *r, int64_t size, int64_t *start, int64_t *end)
{
    *start = 0;
    *end = size;
    switch (r->kind) {
    case CFS_RANGE_NONE:
        return 0;
    case CFS_RANGE_SUFFIX:
        *start = r->length < size ? size - r->length : 0;
        return 0;
    case CFS_RANGE_BOUNDED:
    case CFS_RANGE_FROM:
        if (r->start >= size && !(r->start == 0 && size == 0))
            return -1;
        *start = r->start;
        if (r->kind == CFS_RANGE_BOUNDED && r->end < size)
            *end = r->end;
        if (*end < *start)
            *end = *start;
        return 0;
    }
    return 0;
}

int cfs_entries_add(cfs_entries *e, const char *name, size_t name_len, int64_t size, int is_dir)
{
    if (e->len == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        cfs_entry *p = realloc(e->items, cap * sizeof *p);
        if (!p)
            return -1;
        e->items = p;
        e->cap = cap;
    }
    char *copy = malloc(name_len + 1);
    if (!copy)
        return -1;
    memcpy(copy, name, name_len);
    copy[name_len] = '\0';
    e->items[e->len++] = (cfs_entry){ .name = copy, .size = size, .is_dir = is_dir, .mtime_ms = -1 };
    return 0;
}

int cfs_entries_add_failure(cfs_entries *e, const char *name, cfs_status status, const char *detail)
{
    char *d = strdup(detail ? detail : "");
    if (!d || cfs_entries_add(e, name, strlen(name), -1, 0) < 0) {
        free(d);
        return -1;
    }
    e->items[e->len - 1].status = status;
    e->items[e->len - 1].detail = d;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const cfs_entry *)a)->name, ((const cfs_entry *)b)->name);
}

void cfs_entries_sort_unique(cfs_entries *e)
{
    if (e->len < 2)
        return;
    qsort(e->items, e->len, sizeof e->items[0], entry_cmp);
    size_t kept = 1;
    for (size_t i = 1; i < e->len; i++) {
        if (strcmp(e->items[i].name, e->items[kept - 1].name) == 0) {
            free(e->items[i].name);
            free(e->items[i].detail);
            free(e->items[i].etag);
        } else
            e->items[kept++] = e->items[i];
    }
    e->len = kept;
}

void cfs_entries_free(cfs_entries *e)
{
    for (size_t i = 0; i < e->len; i++) {
        free(e->items[i].name);
        free(e->items[i].detail);
        free(e->items[i].etag);
    }
    free(e->items);
    e->items = NULL;
    e->len = e->cap = 0;
}

cfs_op *cfs_op_new(cfs_op_kind kind, struct cfs_backend *backend, const char *key, size_t key_len)
{
    cfs_op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->kind = kind;
    op->backend = backend;
    op->size = -1;
    op->encode_level = CFS_CODEC_LEVEL_DEFAULT;
    op->spool.fd = -1;
    op->attrs.last_modified_ms = -1;
    op->key = malloc(key_len + 1);
    if (!op->key) {
        free(op);
        return NULL;
    }
    memcpy(op->key, key, key_len);
    op->key[key_len] = '\0';
    return op;
}

void cfs_op_fail_body_file(cfs_op *op, int err)
{
    cfs_op_fail(op, CFS_EIO, "cannot read the value from its file: %s",
                err ? strerror(err) : "the file is shorter than when it was given");
}

int cfs_op_body_read(cfs_op *op, size_t off, char *dst, size_t len)
{
    if (!op->body_file) {
        if (len)
            memcpy(dst, op->body + off, len);
        return 0;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t k = pread(op->body_file->fd, dst + done, len - done,
                          (off_t)(op->body_offset + (int64_t)(off + done)));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            cfs_op_fail_body_file(op, k < 0 ? errno : 0);
            return -1;
        }
        done += (size_t)k;
    }
    return 0;
}

/* A body in a file is read in pieces of this size to be hashed: the reads stay in the CPU
 * cache and memory stays bounded whatever the file's size. */
#define BODY_SCAN_PIECE (1u << 20)

int cfs_op_body_scan(cfs_op *op, int (*fn)(void *ctx, const char *p, size_t n), void *ctx)
{
    if (!op->body_file) {
        if (fn(ctx, op->body ? op->body : "", op->body_len) == 0)
            return 0;
        cfs_op_fail(op, CFS_ENOMEM, "out of memory hashing the body");
        return -1;
    }
    size_t piece = op->body_len < BODY_SCAN_PIECE ? op->body_len : BODY_SCAN_PIECE;
    char *buf = malloc(piece ? piece : 1);
    if (!buf) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory hashing the body");
        return -1;
    }
    int rc = 0;
    size_t off = 0;
    do { /* an empty body is one empty piece: fn sees it */
        size_t n = op->body_len - off < piece ? op->body_len - off : piece;
        if (cfs_op_body_read(op, off, buf, n) < 0) {
            rc = -1;
        } else if (fn(ctx, buf, n) < 0) {
            cfs_op_fail(op, CFS_ENOMEM, "out of memory hashing the body");
            rc = -1;
        }
        off += n;
    } while (rc == 0 && off < op->body_len);
    free(buf);
    return rc;
}

void cfs_op_body_slice(cfs_op *part, const cfs_op *whole, size_t off, size_t len)
{
    part->body_file = whole->body_file;
    part->body = whole->body_file ? NULL : whole->body + off;
    part->body_offset = whole->body_file ? whole->body_offset + (int64_t)off : 0;
    part->body_len = len;
}

void cfs_op_free(cfs_op *op)
{
    if (!op)
        return;
    free(op->key);
    free(op->source);
    for (size_t i = 0; i < op->n_keys; i++)
        free(op->keys[i]);
    free(op->keys);
    cfs_buf_free(&op->data);
    cfs_buf_free(&op->encoded);
    if (op->spool.fd >= 0)
        close(op->spool.fd);
    free(op->spool_dir);
    cfs_entries_free(&op->entries);
    cfs_object_attrs_free(&op->attrs);
    free(op->where);
    while (op->children) { /* attached but never started */
        cfs_op *child = op->children;
        op->children = child->next;
        cfs_op_free(child);
    }
    if (op->backend_state && op->free_backend_state)
        op->free_backend_state(op->backend_state);
    free(op);
}

void cfs_op_fail(cfs_op *op, cfs_status status, const char *fmt, ...)
{
    op->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(op->message, sizeof op->message, fmt, ap);
    va_end(ap);
}

int cfs_op_set_where(cfs_op *op, const char *where)
{
    char *copy = strdup(where);
    if (!copy)
        return -1;
    free(op->where);
    op->where = copy;
    return 0;
}

void cfs_object_attrs_free(cfs_object_attrs *a)
{
    free(a->content_encoding);
    free(a->content_type);
    free(a->cache_control);
    free(a->content_disposition);
    free(a->storage_class);
    free(a->etag);
    for (size_t i = 0; i < a->n_metadata; i++) {
        free(a->metadata[i].name);
        free(a->metadata[i].value);
    }
    free(a->metadata);
    memset(a, 0, sizeof *a);
    a->last_modified_ms = -1;
}
