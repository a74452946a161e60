/* mem://NAME: objects in process memory, shared by every store opened on the same NAME,
 * for tests and demos. Buckets live as long as the process; clear() empties one. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backend.h"

extern const cfs_backend_ops cfs_mem_backend;

typedef struct mem_object {
    char *key;
    char *data;
    size_t len;
    uint64_t hash;
    cfs_object_attrs attrs;     /* what the PUT stored with it, its ETag and time */
    struct mem_object *next;
} mem_object;

typedef struct mem_bucket {
    char *name;
    pthread_mutex_t lock;       /* guards slots and count */
    mem_object **slots;
    size_t n_slots, count;
    struct mem_bucket *next;
} mem_bucket;

/* The named buckets of this process. */
static pthread_mutex_t g_buckets_lock = PTHREAD_MUTEX_INITIALIZER;
static mem_bucket *g_buckets;   /* guarded by g_buckets_lock */
static pthread_once_t g_fork_once = PTHREAD_ONCE_INIT;

/* Hold every lock across fork() so the child never inherits one held mid-update. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&g_buckets_lock);
    for (mem_bucket *b = g_buckets; b; b = b->next)
        pthread_mutex_lock(&b->lock);
}

static void fork_release(void)
{
    for (mem_bucket *b = g_buckets; b; b = b->next)
        pthread_mutex_unlock(&b->lock);
    pthread_mutex_unlock(&g_buckets_lock);
}

static void register_fork_handlers(void)
{
    pthread_atfork(fork_prepare, fork_release, fork_release);
}

typedef struct mem_backend {
    cfs_backend base;
    mem_bucket *bucket;
    char *url;
} mem_backend;

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static mem_bucket *bucket_get(const char *name)
{
    pthread_once(&g_fork_once, register_fork_handlers);
    pthread_mutex_lock(&g_buckets_lock);
    mem_bucket *b;
    for (b = g_buckets; b; b = b->next)
        if (strcmp(b->name, name) == 0)
            goto out;
    b = calloc(1, sizeof *b);
    if (!b)
        goto out;
    b->n_slots = 64;
    b->slots = calloc(b->n_slots, sizeof *b->slots);
    b->name = strdup(name);
    if (!b->slots || !b->name || pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b->slots);
        free(b->name);
        free(b);
        b = NULL;
        goto out;
    }
    b->next = g_buckets;
    g_buckets = b;
out:
    pthread_mutex_unlock(&g_buckets_lock);
    return b;
}

static mem_object **find_slot(mem_bucket *b, const char *key, uint64_t h)
{
    mem_object **pp = &b->slots[h & (b->n_slots - 1)];
    while (*pp && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0))
        pp = &(*pp)->next;
    return pp;
}

static void grow(mem_bucket *b)
{
    size_t n = b->n_slots * 2;
    mem_object **slots = calloc(n, sizeof *slots);
    if (!slots)
        return; /* stay at the current size: slower, still correct */
    for (size_t i = 0; i < b->n_slots; i++) {
        mem_object *o = b->slots[i];
        while (o) {
            mem_object *next = o->next;
            o->next = slots[o->hash & (n - 1)];
            slots[o->hash & (n - 1)] = o;
            o = next;
        }
    }
    free(b->slots);
    b->slots = slots;
    b->n_slots = n;
}

static cfs_backend *mem_open(const char *url, cfs_options *opts, char *err, size_t errlen)
{
    (void)opts;
    const char *name = url + strlen("mem://");
    mem_backend *m = calloc(1, sizeof *m);
    if (!m || !(m->url = strdup(url)) || !(m->bucket = bucket_get(name))) {
        if (m)
            free(m->url);
        free(m);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->base.ops = &cfs_mem_backend;
    return &m->base;
}

static void mem_close(cfs_backend *b)
{
    mem_backend *m = (mem_backend *)b;
    if (!m)
        return;
    free(m->url);
    free(m);
}

/* What to copy of an object for a GET: a range, or the whole of an encoded object (the
 * engine decodes it, then cuts the range: op->whole_stored). */
static void copy_range(cfs_op *op, const mem_object *o)
{
    int64_t size = (int64_t)o->len, start, end;
    op->size = size;
    free(op->attrs.content_encoding);
    op->attrs.content_encoding = NULL;
    if (o->attrs.content_encoding) {
        if (!(op->attrs.content_encoding = strdup(o->attrs.content_encoding))) {
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
            return;
        }
        if (!op->raw && op->range.kind != CFS_RANGE_NONE) {
            op->whole_stored = 1;
            cfs_buf_reset(&op->data);
            if (o->len && cfs_buf_append(&op->data, o->data, o->len) < 0)
                cfs_op_fail(op, CFS_ENOMEM, "out of memory");
            return;
        }
    }
    if (cfs_range_resolve(&op->range, size, &start, &end) < 0) {
        cfs_op_fail(op, CFS_ERANGE, "range starts at %lld, past the end (%lld bytes)",
                    (long long)op->range.start, (long long)size);
        return;
    }
    cfs_buf_reset(&op->data);
    if (end > start && cfs_buf_append(&op->data, o->data + start, (size_t)(end - start)) < 0)
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
}

/* The attributes a PUT of `value` (its body, copied) stores: the op's, with an ETag
 * (FNV-1a of the bytes, quoted) and the time. Returns 0 or -1 (out of memory). */
static int put_attrs(const cfs_op *op, const char *value, cfs_object_attrs *a)
{
    if (cfs_object_attrs_copy(a, &op->attrs) < 0)
        return -1;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < op->body_len; i++)
        h = (h ^ (unsigned char)value[i]) * 1099511628211ULL;
    char etag[24];
    snprintf(etag, sizeof etag, "\"%016llx\"", (unsigned long long)h);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    a->last_modified_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (cfs_attr_set(&a->etag, etag, strlen(etag)) < 0) {
        cfs_object_attrs_free(a);
        return -1;
    }
    return 0;
}

static void mem_list(mem_bucket *b, cfs_op *op)
{
    size_t plen = strlen(op->key);
    const char *last = strrchr(op->key, '/');
    size_t dir_len = last ? (size_t)(last - op->key) + 1 : 0;
    for (size_t i = 0; i < b->n_slots; i++) {
        for (mem_object *o = b->slots[i]; o; o = o->next) {
            if (strncmp(o->key, op->key, plen) != 0)
                continue;
            const char *sub = op->recursive ? NULL : strchr(o->key + dir_len, '/');
            int rc = sub ? cfs_entries_add(&op->entries, o->key, (size_t)(sub - o->key), -1, 1)
                         : cfs_entries_add(&op->entries, o->key, strlen(o->key), (int64_t)o->len, 0);
            if (rc == 0 && !sub)
                rc = cfs_entries_set_info(&op->entries, o->attrs.last_modified_ms, o->attrs.etag,
                                          o->attrs.etag ? strlen(o->attrs.etag) : 0);
            if (rc < 0) {
                cfs_op_fail(op, CFS_ENOMEM, "out of memory listing");
                return;
            }
        }
    }
    if (!op->recursive)
        cfs_entries_sort_unique(&op->entries); /* a directory is seen once per key below it */
}

/* COPY under the bucket lock: the source's bytes become the destination's. */
static void mem_copy(mem_bucket *b, cfs_op *op, uint64_t dst_hash)
{
    mem_object *src = *find_slot(b, op->source, hash_key(op->source));
    if (!src) {
        cfs_op_fail(op, CFS_ENOTFOUND, "no such key");
        return;
    }
    char *data = malloc(src->len ? src->len : 1);
    if (!data) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    memcpy(data, src->data, src->len);
    cfs_object_attrs attrs = { .last_modified_ms = -1 };
    if (cfs_object_attrs_copy(&attrs, &src->attrs) < 0) {
        free(data);
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    mem_object **pp = find_slot(b, op->key, dst_hash);
    if (*pp) {
        free((*pp)->data);
        (*pp)->data = data;
        (*pp)->len = src->len;
        cfs_object_attrs_free(&(*pp)->attrs);
        (*pp)->attrs = attrs;
        return;
    }
    mem_object *o = calloc(1, sizeof *o);
    char *key = strdup(op->key);
    if (!o || !key) {
        free(o);
        free(key);
        free(data);
        cfs_object_attrs_free(&attrs);
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    *o = (mem_object){ key, data, src->len, dst_hash, attrs, NULL };
    *pp = o;
    if (++b->count > b->n_slots)
        grow(b);
}

static void mem_execute(cfs_backend *be, cfs_op *op)
{
    mem_backend *m = (mem_backend *)be;
    mem_bucket *b = m->bucket;
    if (cfs_op_set_where(op, m->url) < 0) {
        cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        return;
    }
    uint64_t h = hash_key(op->key);
    /* A PUT copies its value before taking the lock: the lock covers pointer swaps only. */
    char *copy = NULL, *key_copy = NULL;
    cfs_object_attrs attrs = { .last_modified_ms = -1 };
    if (op->kind == CFS_OP_PUT) {
        copy = malloc(op->body_len ? op->body_len : 1);
        key_copy = strdup(op->key);
        int read = copy ? cfs_op_body_read(op, 0, copy, op->body_len) : 0; /* -1: op failed */
        if (!copy || !key_copy || read < 0 || put_attrs(op, copy, &attrs) < 0) {
            free(copy);
            free(key_copy);
            if (read == 0)
                cfs_op_fail(op, CFS_ENOMEM, "out of memory");
            return;
        }
    }
    pthread_mutex_lock(&b->lock);
    mem_object **pp = (op->kind == CFS_OP_LIST || op->kind == CFS_OP_RMDIR ||
                       op->kind == CFS_OP_DELETE_MANY || op->kind == CFS_OP_COPY)
                          ? NULL
                          : find_slot(b, op->key, h);
    switch (op->kind) {
    case CFS_OP_GET:
    case CFS_OP_HEAD:
        if (!*pp)
            cfs_op_fail(op, CFS_ENOTFOUND, "no such key");
        else if (op->kind == CFS_OP_GET)
            copy_range(op, *pp);
        else if (cfs_object_attrs_copy(&op->attrs, &(*pp)->attrs) < 0)
            cfs_op_fail(op, CFS_ENOMEM, "out of memory");
        else
            op->size = (int64_t)(*pp)->len;
        break;
    case CFS_OP_PUT:
        if (*pp && op->if_none_match) {
            cfs_op_fail(op, CFS_EEXISTS, "already exists");
        } else if (*pp) {
            free((*pp)->data);
            (*pp)->data = copy;
            (*pp)->len = op->body_len;
            cfs_object_attrs_free(&(*pp)->attrs);
            (*pp)->attrs = attrs;
            attrs = (cfs_object_attrs){ .last_modified_ms = -1 };
            copy = NULL;
        } else {
            mem_object *o = calloc(1, sizeof *o);
            if (!o) {
                cfs_op_fail(op, CFS_ENOMEM, "out of memory");
                break;
            }
            *o = (mem_object){ key_copy, copy, op->body_len, h, attrs, NULL };
            attrs = (cfs_object_attrs){ .last_modified_ms = -1 };
            *pp = o;
            copy = key_copy = NULL;
            if (++b->count > b->n_slots)
                grow(b);
        }
        break;
    case CFS_OP_DELETE:
        if (!*pp) {
            cfs_op_fail(op, CFS_ENOTFOUND, "no such key");
        } else {
            mem_object *o = *pp;
            *pp = o->next;
            b->count--;
            free(o->key);
            free(o->data);
            cfs_object_attrs_free(&o->attrs);
            free(o);
        }
        break;
    case CFS_OP_LIST:
        mem_list(b, op);
        break;
    case CFS_OP_RMDIR:
        break; /* no directories in a flat namespace */
    case CFS_OP_DELETE_MANY: /* delete_many_max is 0: never submitted here */
        cfs_op_fail(op, CFS_EINVALID, "no multi-key delete");
        break;
    case CFS_OP_COPY:
        mem_copy(b, op, h);
        break;
    }
    pthread_mutex_unlock(&b->lock);
    free(copy);
    free(key_copy);
    cfs_object_attrs_free(&attrs);
}

static const char *mem_url(cfs_backend *b)
{
    return ((mem_backend *)b)->url;
}

static const char *const mem_schemes[] = { "mem", NULL };

const cfs_backend_ops cfs_mem_backend = {
    .name = "mem",
    .schemes = mem_schemes,
    .capabilities = CFS_CAP_ATOMIC_IF_ABSENT | CFS_CAP_CONTENT_TYPE | CFS_CAP_OBJECT_ATTRS |
                    CFS_CAP_STORAGE_CLASS,
    .open = mem_open,
    .close = mem_close,
    .execute = mem_execute,
    .url = mem_url,
};
