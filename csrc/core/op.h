/* One storage operation: what the Python layer asks for, what a backend turns into
 * requests (or executes locally), and what the engine completes. Shared by every layer. */
#ifndef CFS_OP_H
#define CFS_OP_H
#include <stdatomic.h>
#include <stdint.h>
#include <stddef.h>

#include "core/buf.h"

typedef enum cfs_op_kind {
    CFS_OP_GET,        /* whole object or a byte range */
    CFS_OP_HEAD,       /* existence and size */
    CFS_OP_PUT,        /* whole object */
    CFS_OP_DELETE,     /* one key; deleting a missing key is not an error */
    CFS_OP_LIST,       /* keys under a prefix, recursive or one level */
    CFS_OP_RMDIR,      /* after a prefix's keys are deleted: remove what is left of it
                        * (empty directories); a no-op for flat object stores */
    CFS_OP_DELETE_MANY, /* several keys in one request (S3 DeleteObjects), for backends
                         * with delete_many_max > 0; missing keys are not failures */
    CFS_OP_COPY,        /* op->source to op->key, on the server where it can */
} cfs_op_kind;

/* The outcome of an operation; CFS_OK and CFS_ENOTFOUND are the only "normal" ones. */
typedef enum cfs_status {
    CFS_OK = 0,
    CFS_ENOTFOUND,     /* 404 / no such file: a KeyError, never retried */
    CFS_EEXISTS,       /* conditional create lost (412) */
    CFS_EAUTH,         /* 401 / 403 */
    CFS_ERANGE,        /* 416: the range starts past the end */
    CFS_EHTTP,         /* another 4xx the server gave */
    CFS_ETRANSIENT,    /* 5xx / 429 / 408 / network error, still failing after every retry */
    CFS_ECHECKSUM,     /* body did not match the server's checksum, after every retry */
    CFS_EPROTOCOL,     /* malformed response */
    CFS_ENETWORK,      /* a transfer failure not worth retrying (TLS verification...) */
    CFS_EIO,           /* local filesystem error */
    CFS_EINVALID,      /* bad input caught late (by the backend) */
    CFS_ENOMEM,
    CFS_ECANCELLED,    /* given up because its caller was interrupted (engine.h) */
    CFS_ENOCONTAINER,  /* the bucket or container the store points into does not exist */
    CFS_EBADKEY,       /* a key this backend cannot store (a GCS name with CR, too long) */
} cfs_status;

const char *cfs_status_name(cfs_status s);
const char *cfs_op_kind_name(cfs_op_kind k);

typedef enum cfs_range_kind {
    CFS_RANGE_NONE,    /* whole object */
    CFS_RANGE_BOUNDED, /* [start, end) */
    CFS_RANGE_FROM,    /* [start, EOF) */
    CFS_RANGE_SUFFIX,  /* the last `length` bytes */
} cfs_range_kind;

typedef struct cfs_range {
    cfs_range_kind kind;
    int64_t start;     /* BOUNDED, FROM */
    int64_t end;       /* BOUNDED: exclusive */
    int64_t length;    /* SUFFIX */
} cfs_range;

/* The bytes [*start, *end) a range selects from an object of `size` bytes. Returns 0,
 * or -1 when the range starts past the end (HTTP's 416; an empty object still reads
 * empty from offset 0). */
int cfs_range_resolve(const cfs_range *r, int64_t size, int64_t *start, int64_t *end);

typedef struct cfs_entry {
    char *name;        /* key relative to the store root */
    int64_t size;      /* LIST: -1 when unknown */
    int is_dir;        /* LIST: a common prefix, only when listing one level */
    cfs_status status; /* DELETE_MANY: why this key failed */
    char *detail;      /* DELETE_MANY: the server's word on it, or NULL */
    int64_t mtime_ms;  /* LIST: last modified, Unix time in ms; -1 unknown */
    char *etag;        /* LIST: the listing's ETag (as the server writes it), or NULL */
} cfs_entry;

typedef struct cfs_entries {
    cfs_entry *items;
    size_t len, cap;
} cfs_entries;

int cfs_entries_add(cfs_entries *e, const char *name, size_t name_len, int64_t size, int is_dir);
/* A key that failed (DELETE_MANY). Returns 0 or -1. */
int cfs_entries_add_failure(cfs_entries *e, const char *name, cfs_status status, const char *detail);
void cfs_entries_free(cfs_entries *e);
/* Sort by name and drop repeated names. */
void cfs_entries_sort_unique(cfs_entries *e);
/* LIST: the last-modified time (ms, -1 unknown) and ETag (NULL or etag_len bytes) of the
 * entry added last. Returns 0 or -1 (out of memory). */
int cfs_entries_set_info(cfs_entries *e, int64_t mtime_ms, const char *etag, size_t etag_len);

/* A user metadata entry (S3 x-amz-meta-NAME, GCS custom metadata). */
typedef struct cfs_meta_pair {
    char *name;
    char *value;
} cfs_meta_pair;

/* An object's attributes beyond its bytes. PUT: what to store with it (NULL fields are
 * not sent; content_encoding names what the body already is once encoded). HEAD and GET:
 * what the server said (NULL when it did not say). Owned by the op: cfs_object_attrs_free. */
typedef struct cfs_object_attrs {
    char *content_encoding;     /* "gzip", "br", "zstd"; NULL: identity */
    char *content_type;
    char *cache_control;
    char *content_disposition;
    char *storage_class;
    char *etag;                 /* HEAD/GET/LIST */
    int64_t last_modified_ms;   /* HEAD/GET/LIST: Unix time in ms; -1 unknown */
    cfs_meta_pair *metadata;
    size_t n_metadata;
} cfs_object_attrs;

void cfs_object_attrs_free(cfs_object_attrs *a);

/* Limits on what a write stores beside the bytes (checked in the Python layer, again by
 * the backends): at most CFS_META_MAX user metadata pairs whose names and values add up
 * to at most CFS_META_BYTES_MAX bytes (S3's limit on x-amz-meta-*), and header values of
 * at most CFS_ATTR_VALUE_MAX bytes. */
#define CFS_META_MAX 64
#define CFS_META_BYTES_MAX 2048
#define CFS_ATTR_VALUE_MAX 1024

/* Deep copy of src into dst (dst freed first). Returns 0 or -1 (out of memory: dst
 * empty). */
int cfs_object_attrs_copy(cfs_object_attrs *dst, const cfs_object_attrs *src);
/* Append a user metadata pair. Returns 0 or -1 (out of memory, or more than CFS_META_MAX). */
int cfs_object_attrs_add_meta(cfs_object_attrs *a, const char *name, size_t name_len,
                              const char *value, size_t value_len);
/* Set one string field (*field freed first) to len bytes of v. Returns 0 or -1. */
int cfs_attr_set(char **field, const char *v, size_t len);

/* Times as servers write them, to Unix ms: an HTTP date (RFC 9110 IMF-fixdate, "Sun, 06
 * Nov 1994 08:49:37 GMT") and RFC 3339 ("2024-01-02T03:04:05.678Z", an offset allowed).
 * Return 0, or -1 if malformed or before 1970 (-1 is "no time" everywhere). */
int cfs_parse_http_date(const char *s, int64_t *ms);
int cfs_parse_rfc3339(const char *s, int64_t *ms);
struct cfs_backend;
struct cfs_op;
typedef void (*cfs_done_fn)(struct cfs_op *op, void *ctx);

/* A file a PUT's body is read from as it is sent, rather than held in memory (a large
 * local file goes up with memory bounded by the requests in flight): owned by the caller,
 * open until the op completes. */
typedef struct cfs_body_file {
    int fd;
} cfs_body_file;

typedef struct cfs_op {
    /* --- request: set by the caller before submission --- */
    cfs_op_kind kind;
    struct cfs_backend *backend;
    char *key;                  /* owned; GET/HEAD/PUT/DELETE; the prefix for LIST */
    cfs_range range;            /* GET */
    const char *body;           /* PUT: borrowed, alive until completion; NULL with body_file */
    size_t body_len;
    const cfs_body_file *body_file; /* PUT: the body is body_len bytes of this file from
                                 * body_offset, read as it is hashed and sent (borrowed, as
                                 * body); NULL: the body is op->body */
    int64_t body_offset;
    int if_none_match;          /* PUT: create only if absent */
    int missing_ok;             /* DELETE: the caller ignores a missing key, so a backend
                                 * need not look before it deletes */
    int recursive;              /* LIST: every key below, or one level with directories */
    char *source;               /* COPY: the key copied (op->key is the destination); owned */
    struct cfs_backend *source_backend; /* COPY: the store op->source is in, when not this
                                 * one (its ops' can_copy_from said yes); borrowed, alive
                                 * until completion. NULL: op->backend */
    char **keys;                /* DELETE_MANY: owned, n_keys of them (op->key is the first) */
    size_t n_keys;
    cfs_object_attrs attrs;     /* PUT: stored with the object; HEAD/GET: as found */
    /* Content coding (util/codec.h), done by the engine on a worker thread for every
     * backend. PUT: encode the body with `encode` (a cfs_codec; 0 none) at `encode_level`
     * before the first request, into `encoded`, and send that with attrs.content_encoding;
     * unless encode_always, a body that does not shrink is sent as it is. GET: the body is
     * decoded by attrs.content_encoding (set by the engine from the response, or by a
     * local backend) after its checksum is verified, unless `raw`.
     * A PUT whose body is in a file, or is itself encoded (`body_codec`: a raw value to
     * store in another encoding, `encode`, 0 for none), is transcoded as a stream
     * (util/transcode.h): a file's into an unnamed temporary file in `spool_dir`
     * (owned; NULL: /tmp), then sent from there (`spool`, owned, fd -1 if none). */
    int encode;
    int encode_level;
    int encode_always;
    int body_codec;
    char *spool_dir;
    cfs_body_file spool;
    int raw;                    /* GET: keep the stored bytes (attrs.content_encoding says) */
    int whole_stored;           /* GET, set by a local backend: op->data is the whole stored
                                 * (encoded) object although a range was asked */
    const atomic_int *cancel;   /* nonzero once the caller gives up (engine.h:
                                 * cfs_engine_notice_cancel); NULL: never */

    /* --- result: set by the backend / engine --- */
    cfs_status status;
    long http_status;           /* last HTTP status seen, 0 for local backends */
    int attempts;               /* transfers tried, retries included */
    cfs_buf data;               /* GET body */
    int64_t size;               /* HEAD: object size; GET: total size if known; COPY: set
                                 * by the caller, the source's size (-1: not known) */
    cfs_entries entries;        /* LIST: what is there; DELETE_MANY: the keys that failed */
    char *where;                /* URL or path named in errors, never a secret; owned */
    char message[256];          /* human detail for a failure */

    /* --- backend scratch: multi-step operations (paging, multipart) --- */
    int step;
    void *backend_state;
    void (*free_backend_state)(void *);
    struct cfs_op *children;    /* CFS_NEXT_CHILDREN: new ops for the engine to run, linked
                                 * by next (kind, key, body set; the engine sets the rest) */

    /* --- completion --- */
    cfs_done_fn on_done;
    void *ctx;
    void *caller;               /* the submitter's own per-op data (Python objects...) */
    struct cfs_limiter *limiter; /* admission control this op counts against */

    /* --- engine private --- */
    int coded;                  /* PUT: encoding done; GET: decoding done */
    cfs_range asked;            /* GET of an encoded object: the range asked, read whole */
    int refetched_whole;        /* GET: the range was replaced by the whole object */
    cfs_buf encoded;            /* PUT: the encoded body op->body points into */
    int64_t bytes_held;         /* PUT: what cfs_op_set_bytes_held last said, counted in
                                 * its limiter's upload bytes until the op completes */
    void *engine_priv;
    int fresh_connection;       /* the last try failed on its connection: use a new one */
    int worker_job;             /* a remote op on the worker queue: prepare or verify */
    int lane;                   /* the engine lane a remote op runs on */
    struct cfs_op *parent;      /* a child op: the op it runs for */
    int children_running;       /* a parent op: its children not yet handed back */
    struct cfs_host_window *host; /* the host window this op counts in (throttle.c) */
    unsigned host_epoch;        /* that window's epoch when the op was counted */
    struct cfs_op *next;
} cfs_op;

/* Allocate a zeroed op; key is copied. Returns NULL on out-of-memory. */
cfs_op *cfs_op_new(cfs_op_kind kind, struct cfs_backend *backend, const char *key, size_t key_len);

/* A PUT's body, in memory or in a file (op->body_file): */
/* Read len bytes at off of it into dst. 0, or -1 after cfs_op_fail() (CFS_EIO: the file
 * cannot be read, or is shorter than when the op was made). */
int cfs_op_body_read(cfs_op *op, size_t off, char *dst, size_t len);
/* Call fn over all of it in order: once for a body in memory, 1 MiB at a time for one in a
 * file. 0, or -1 after cfs_op_fail() (fn returning -1 is out of memory). */
int cfs_op_body_scan(cfs_op *op, int (*fn)(void *ctx, const char *p, size_t n), void *ctx);
/* Fail the op for its body's file: errno `err`, or 0 for a file shorter than the body
 * (CFS_EIO). */
void cfs_op_fail_body_file(cfs_op *op, int err);
/* Make `part` carry bytes [off, off + len) of `whole`'s body (a multipart upload's part). */
void cfs_op_body_slice(cfs_op *part, const cfs_op *whole, size_t off, size_t len);
void cfs_op_free(cfs_op *op);
/* Record a failure with a printf-style message. */
void cfs_op_fail(cfs_op *op, cfs_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Replace op->where (copied). Returns 0 or -1. */
int cfs_op_set_where(cfs_op *op, const char *where);

#endif
