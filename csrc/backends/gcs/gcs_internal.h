/* The GCS backend's private header: the backend and per-op state that its files share
 * (driver.c: open/close, the token cache and the ops table; request.c: gcs_build;
 * response.c: gcs_finish and gcs_verify; resumable.c: resumable upload sessions), and
 * the functions each lends the others. Not for use outside csrc/backends/gcs. */
#ifndef CFS_GCS_INTERNAL_H
#define CFS_GCS_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/fork_mutex.h"
#include "backends/gcs/auth.h"
#include "backends/gcs/proto.h"

typedef struct gcs_backend {
    cfs_backend base;
    char *url;              /* gs://bucket[/prefix]: canonical, no secret */
    char *endpoint;         /* scheme://host[:port], no trailing '/' */
    char *bucket;
    char *root;             /* "prefix/" or "" */
    cfs_tls tls;
    char *scope;
    cfs_gcs_credentials cred;
    size_t resumable_threshold; /* PUTs of at least this many bytes go up in a session */
    size_t resumable_chunk;     /* bytes per request of a session */

    cfs_fork_mutex lock;    /* guards the token cache below (token_lock/token_unlock) */
    char *token;            /* access token (secret), NULL if none yet */
    double token_usable_until; /* monotonic seconds */
    double token_refresh_at;   /* monotonic seconds */
    double refresh_claimed; /* monotonic seconds an op began an early refresh, 0 if none */
    unsigned long token_gen;
} gcs_backend;

/* Per-op state: which request of the op is in flight. */
typedef struct gcs_state {
    int auth_step;          /* the current request fetches a token */
    int just_fetched;       /* the last request fetched a token: use it */
    int fetches;            /* tokens this op obtained */
    int reauthed;           /* already fetched a fresh token after a 401 */
    unsigned long token_gen; /* generation of the token the request carried */
    char *page_token;       /* LIST: where the next page starts */
    char *rewrite_token;    /* COPY: where the next rewrite call continues */
    int have_crc;           /* PUT: crc32c of the body computed */
    uint32_t crc;
    /* GET of a whole object: what gcs_verify checks and undoes on a worker thread */
    cfs_goog_hash want;     /* the server's x-goog-hash */
    int gzipped;            /* stored gzip-encoded: decompress after the check */
    /* resumable PUT: a session (its URI is a capability: never in messages) */
    int rs_phase;           /* RS_START: ask for a session; RS_SEND: send bytes */
    char *session;          /* the session URI */
    size_t rs_offset;       /* bytes the server holds */
    size_t rs_sent_end;     /* end of the chunk in flight */
    int rs_query;           /* the next request asks the server what it holds */
    int rs_querying;        /* the request in flight is such a query */
    int rs_in_flight;       /* a request of the session was built and not answered: if it
                             * is built again, the transfer failed and the server may hold
                             * some of it */
    int rs_chunks;          /* chunk requests sent */
    int rs_restarts;        /* sessions started over from the first byte */
    /* DELETE_MANY: the keys still to delete (a batch retried for transient part failures
     * carries only those) */
    unsigned char *pending;
} gcs_state;

enum { RS_START = 0, RS_SEND = 1 };

/* Indices in cfs_response.captured: the order of gcs_response_headers in driver.c. */
enum { GCS_GOOG_HASH, GCS_LOCATION, GCS_RANGE };

/* driver.c: the token cache and the token step of an op ("tokens" there). */
enum { TOKEN_NONE, TOKEN_USE, TOKEN_FETCH, TOKEN_WAIT };
void token_lock(gcs_backend *g);
void token_unlock(gcs_backend *g);
int add_bearer(cfs_request *req, const char *token);
int token_decide(gcs_backend *g, gcs_state *st, char **token);
int build_token_request(gcs_backend *g, cfs_op *op, cfs_request *req);
void token_release_claim(gcs_backend *g);
cfs_next finish_token(gcs_backend *g, cfs_op *op, gcs_state *st, const cfs_response *resp);

/* request.c */
int gcs_build(cfs_backend *b, cfs_op *op, cfs_request *req);

/* response.c */
cfs_next gcs_finish(cfs_backend *b, cfs_op *op, const cfs_response *resp);
cfs_next gcs_verify(cfs_backend *b, cfs_op *op);
/* Add the GCS error message of a failed request to op->message. */
void gcs_describe_failure(cfs_op *op, const cfs_response *resp);
/* Whether the object resource of a finished upload is what was sent: 1 if so (or the
 * server said nothing checkable), 0 after failing the op (CFS_ECHECKSUM). */
int gcs_check_stored(cfs_op *op, const gcs_state *st, const cfs_response *resp);

/* resumable.c */
/* Whether a PUT goes up in a resumable session (its body is resumable_threshold or more). */
int gcs_is_resumable(const gcs_backend *g, const cfs_op *op);
/* The session's next request (start, chunk or status query) for object `name`; sets
 * *may_auth to 0 when it goes off the endpoint (no token then). Returns 0 or -1 (out of
 * memory). */
int gcs_build_resumable(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req,
                        const char *name, size_t name_len, int *may_auth);
/* What a response of the session means: the next chunk, a resend, a restart, done. */
cfs_next gcs_finish_resumable(cfs_op *op, gcs_state *st, const cfs_response *resp);

#endif
