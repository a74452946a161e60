/* The backend interface: the one struct of operations every storage protocol implements.
 *
 * A remote backend turns an op into HTTP requests (`build`) and interprets each response
 * (`finish`); the engine does the transfer, retries and completion without knowing the
 * protocol. A local backend executes the op itself (`execute`) on an engine worker thread.
 * Exactly one of {build+finish, execute} is set. Backends never start threads or touch
 * Python. */
#ifndef CFS_BACKEND_H
#define CFS_BACKEND_H
#include <curl/curl.h>

#include "core/buf.h"
#include "core/op.h"
#include "core/options.h"

/* One HTTP request, filled by a backend's build(); the engine owns and frees it. */
typedef struct cfs_request {
    const char *method;         /* static string: "GET", "PUT", ... */
    char *url;                  /* owned, fully encoded */
    struct curl_slist *headers; /* owned */
    const char *body;           /* borrowed (op->body or body_owned.data) */
    size_t body_len;
    const cfs_body_file *body_file; /* a PUT's body read from this file at body_offset as it
                                 * is sent (op->body_file; borrowed); NULL: body */
    int64_t body_offset;
    cfs_buf body_owned;         /* a body the backend built (XML, JSON) */
    int no_body;                /* HEAD: no response body expected */
    long timeout_ms;            /* > 0: a limit of its own for the whole request (credential
                                 * endpoints answer at once or not at all) */
    int secret;                 /* the body carries a secret: wiped when cleared (header
                                 * lines always are: Authorization) */
} cfs_request;

/* Add a header line "Name: value". Returns 0, or -1 (out of memory, longer than 2 KiB, or
 * holding CR or LF, which would inject another header). */
int cfs_request_header(cfs_request *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cfs_request_clear(cfs_request *req);
/* Send bytes [off, off + len) of a PUT's body (in memory, or in op->body_file). */
void cfs_request_body_of(cfs_request *req, const cfs_op *op, size_t off, size_t len);

/* Response headers beyond the common ones that a backend may ask the engine to keep
 * (cfs_backend_ops.response_headers): at most CFS_CAPTURE_MAX names, each value at most
 * CFS_CAPTURE_VALUE_MAX - 1 bytes (a longer one is dropped, as if absent). */
#define CFS_CAPTURE_MAX 4
#define CFS_CAPTURE_VALUE_MAX 2048

/* What came back for one request. */
typedef struct cfs_response {
    long status;
    cfs_buf *body;              /* points at op->data for GET, else a scratch buffer */
    int64_t content_length;     /* -1 if absent */
    const char *etag;           /* header values, NULL if absent; valid during finish() */
    const char *content_range;
    const char *content_type;
    const char *content_encoding;
    /* The headers named in the backend's response_headers, in that order; a header sent
     * more than once has its values joined by ','. NULL if absent. */
    const char *captured[CFS_CAPTURE_MAX];
    /* A HEAD request (an op's, or a step of another op's): every header line of the
     * response ("Name: value\r\n"...), at most
     * CFS_HEAD_HEADERS_MAX bytes; headers_truncated when there were more (the rest
     * dropped). NULL for other requests. Read with cfs_attrs_from_headers(). */
    const char *headers;
    size_t headers_len;
    int headers_truncated;
} cfs_response;

#define CFS_HEAD_HEADERS_MAX 16384

/* A HEAD's attributes from its response (op->attrs, replaced): ETag, Content-Type,
 * Content-Encoding, Cache-Control, Content-Disposition, Last-Modified,
 * x-amz-storage-class, and user metadata from the headers named meta_prefix + NAME
 * ("x-amz-meta-"; NULL: none), names in lower case. Returns 0, or -1 after cfs_op_fail()
 * (out of memory; truncated headers or more than CFS_META_MAX metadata headers:
 * CFS_EPROTOCOL, never a partial answer). */
int cfs_attrs_from_headers(cfs_op *op, const cfs_response *resp, const char *meta_prefix);

/* What finish() tells the engine to do next. */
typedef enum cfs_next {
    CFS_NEXT_DONE,      /* op->status is final */
    CFS_NEXT_AGAIN,     /* build() and send the next request of a multi-step op now */
    CFS_NEXT_RETRY, /* transient failure seen by the backend (checksum, SlowDown): back off, retry */
    CFS_NEXT_VERIFY, /* run verify() on a worker thread (hashing a body), then done or retry */
    CFS_NEXT_CHILDREN, /* run the ops attached to op->children, each its own transfer, in
                         * parallel (the parts of a multipart upload); child_done() hears
                         * of each as it completes */
} cfs_next;

typedef struct cfs_backend cfs_backend;

/* What build() did. */
enum {
    CFS_BUILD_FAILED = -1, /* after cfs_op_fail() */
    CFS_BUILD_SEND = 0, /* the request is ready */
    CFS_BUILD_DONE = 1, /* the op is complete without a request (op->status says how) */
    CFS_BUILD_WAIT = 2, /* not yet: another op is fetching what this one needs (a token);
                             * the engine parks the op, without counting an attempt, and
                             * builds it again once cfs_engine_release_parked() is called */
    CFS_BUILD_PREPARE = 3, /* run prepare() on a worker thread first (hashing a large body
                             * would stall every other transfer), then build again */
};

/* What a backend can do beyond reading and writing (cfs_backend_ops.capabilities), for
 * the layers above to ask rather than keep a list of backends. */
enum {
    CFS_CAP_ATOMIC_IF_ABSENT = 1u << 0, /* a PUT with if_none_match is atomic on the server */
    CFS_CAP_SERVER_COPY = 1u << 1, /* CFS_OP_COPY runs on the server, no bytes through us */
    /* What a PUT stores of op->attrs besides the bytes (the Python layer refuses the rest,
     * naming it, rather than drop it): */
    CFS_CAP_CONTENT_TYPE = 1u << 2, /* content_type */
    CFS_CAP_OBJECT_ATTRS = 1u << 3, /* cache_control, content_disposition, metadata */
    CFS_CAP_STORAGE_CLASS = 1u << 4, /* storage_class */
};

typedef struct cfs_backend_ops {
    const char *name; /* "http", "file", "mem", ... */
    const char *const *schemes; /* URL schemes handled, NULL-terminated */
    size_t delete_many_max; /* keys per CFS_OP_DELETE_MANY; 0: one DELETE per key */
    unsigned capabilities; /* CFS_CAP_* */
    /* Options whose values are secrets, NULL-terminated (or NULL): masked wherever options
     * are shown (repr, the options property). */
    const char *const *secret_options;
    /* Response headers to capture for finish() in cfs_response.captured, lower case,
     * NULL-terminated (or NULL), at most CFS_CAPTURE_MAX. */
    const char *const *response_headers;
    /* "module:function" of Python, or NULL: called as function(url, options) -> options
     * before open(), to add what the service's own tools would find in the environment and
     * config files (AWS profiles, credential_process). The store keeps only the options
     * given. */
    const char *discover_options;

    /* Parse the URL and take the options this backend understands (cfs_options_take);
     * the caller rejects whatever remains. On failure returns NULL and writes `err`. */
    cfs_backend *(*open)(const char *url, cfs_options *opts, char *err, size_t errlen);
    void (*close)(cfs_backend *b);

    /* Remote backends. build() may be called several times per op (retries, paging);
     * it must be pure with respect to op->step. Returns one of CFS_BUILD_*. */
    int (*build)(cfs_backend *b, cfs_op *op, cfs_request *req);
    cfs_next (*finish)(cfs_backend *b, cfs_op *op, const cfs_response *resp);
    /* Options for the transfer itself (TLS, CA bundle, auth) applied to every handle. */
    int (*configure_handle)(cfs_backend *b, CURL *easy);

    /* Remote backends, optional: check a received body off the transfer thread (MD5,
     * CRC32C of large objects would stall every other transfer). Called on a worker
     * thread after finish() returned CFS_NEXT_VERIFY; returns CFS_NEXT_DONE, or
     * CFS_NEXT_RETRY after cfs_op_fail() (e.g. CFS_ECHECKSUM). */
    cfs_next (*verify)(cfs_backend *b, cfs_op *op);

    /* Remote backends whose build() returns CFS_BUILD_PREPARE: the work done once before
     * the op's request, on a worker thread. Returns 0, or -1 after cfs_op_fail(). */
    int (*prepare)(cfs_backend *b, cfs_op *op);

    /* Remote backends whose finish() returns CFS_NEXT_CHILDREN: called on the transfer
     * thread as each child of `parent` completes; the backend takes the child (and frees
     * it). Children run outside admission control (their parent holds the slot) with
     * their own retries. Children attached to parent->children here start at once; the
     * answer counts once no child is running: what the parent does next, CFS_NEXT_AGAIN
     * or CFS_NEXT_DONE (CFS_NEXT_CHILDREN while children run). */
    cfs_next (*child_done)(cfs_backend *b, cfs_op *parent, cfs_op *child);

    /* Optional: whether a CFS_OP_COPY on `dst` can take its source from `src`, another
     * store (op->source_backend), on the server: same service and endpoint. NULL: only
     * within one store. The caller makes sure both stores use the same credentials. */
    int (*can_copy_from)(const cfs_backend *dst, const cfs_backend *src);

    /* Local backends: run the whole op synchronously. */
    void (*execute)(cfs_backend *b, cfs_op *op);

    /* The canonical URL for repr/pickle/errors: never holds a secret. */
    const char *(*url)(cfs_backend *b);
} cfs_backend_ops;

/* Every backend object begins with this header so generic code can find its ops. */
struct cfs_backend {
    const cfs_backend_ops *ops;
};

/* Build again the ops parked because their build() said CFS_BUILD_WAIT: what they waited
 * for (another op's fetch of a credential) is over. Any thread (engine.c; the credential
 * cache, core/cred_cache.h, calls it). */
void cfs_engine_release_parked(void);

/* Retry facts for a backend's multi-step ops (the engine keeps the budget: admission.c). */
/* Attempts a transient failure gets in all for the op's store (the retries option). */
int cfs_op_max_attempts(const cfs_op *op);
/* Whether a failure now would be the op's last try. */
int cfs_op_last_attempt(const cfs_op *op);
/* Move a multi-step op to `step` after progress: the retry budget starts over, so each
 * step (a listing page, an upload part, a chunk) gets every try and errors report the
 * tries of the step that failed. Returns CFS_NEXT_AGAIN. */
cfs_next cfs_op_next_step(cfs_op *op, int step);
/* A parent op (CFS_NEXT_CHILDREN): its children started and not yet handed back. */
int cfs_op_children_running(const cfs_op *op);
/* A PUT in several requests (multipart parts, resumable chunks): the service now holds
 * `held` bytes of its body (fewer than before if the upload started over). The store
 * counts them until the op completes (cfs_limiter_upload_bytes_held), so a progress bar
 * moves during one large upload. The op's own thread. */
void cfs_op_set_bytes_held(cfs_op *op, int64_t held);

/* Whether `option` is one of the backend's secret_options. */
int cfs_backend_is_secret_option(const cfs_backend_ops *ops, const char *option);

/* The registry (backends/registry.c): the backend for a URL's scheme, NULL if none. */
const cfs_backend_ops *cfs_backend_for_url(const char *url);
/* Whether a lower-case scheme has a backend (a cfs_scheme_known_fn for cfs_url_normalize). */
int cfs_backend_scheme_known(const char *scheme);
/* The schemes known, comma-separated, for error messages. */
void cfs_backend_schemes(char *out, size_t n);

/* TLS settings every HTTPS backend takes: the options ca_bundle (a CA file) and verify
 * (False turns certificate checks off). */
typedef struct cfs_tls {
    char *ca_bundle;
    int verify;
} cfs_tls;

/* Take the options (verify defaults to on). Returns 0, or -1 with err written. */
int cfs_tls_take_options(cfs_tls *tls, cfs_options *opts, char *err, size_t errlen);
/* Apply them to a transfer handle. Returns 0 or -1. */
int cfs_tls_configure(const cfs_tls *tls, CURL *easy);
void cfs_tls_free(cfs_tls *tls);

/* Helpers for remote backends (core/request.c). */
/* Add the Range header for op->range (nothing for a whole-object read). */
int cfs_request_range(cfs_request *req, const cfs_range *r);
/* Map an HTTP status to an op status for the simple cases (2xx, 404, 401/403, 412, 416,
 * other 4xx); returns CFS_NEXT_RETRY for statuses worth retrying. */
cfs_next cfs_http_status_outcome(cfs_op *op, const cfs_response *resp);

#endif
