/* The GCS backend's private header: the backend and per-op state that its files share
 * (driver.c: open/close, the token cache and the ops table; request.c: gcs_build;
 * response.c: gcs_finish and gcs_verify; resumable.c: resumable upload sessions), and
 * the functions each lends the others. Not for use outside csrc/backends/gcs. */
#ifndef CFS_GCS_INTERNAL_H
#define CFS_GCS_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/cred_cache.h"
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
    cfs_cred_cache tokens;  /* access tokens fetched (service account, user, metadata) */
} gcs_backend;

/* Per-op state: which request of the op is in flight. */
typedef struct gcs_state {
    int auth_step;          /* the current request fetches a token */
    cfs_cred_ticket ticket; /* its part in the token cache */
    int reauthed;           /* already fetched a fresh token after a 401 */
    char *page_token;       /* LIST: where the next page starts */
    char *rewrite_token;    /* COPY: where the next rewrite call continues */
    int have_crc;           /* PUT: crc32c of the body computed */
    uint32_t crc;
    /* GET of a whole object: what gcs_verify checks and undoes on a worker thread */
    cfs_goog_hash want;     /* the server's x-goog-hash */
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
int add_bearer(cfs_request *req, const char *token);
/* The token the op's next request carries (CFS_CRED_USE, *token set; NULL: anonymous), or
 * its token request built in req (CFS_CRED_FETCH), or CFS_CRED_WAIT, or CFS_CRED_FAILED. */
int token_step(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req, char **token);
/* The token endpoint's answer. */
cfs_next finish_token(gcs_backend *g, cfs_op *op, gcs_state *st, const cfs_response *resp);

/* request.c */
int gcs_build(cfs_backend *b, cfs_op *op, cfs_request *req);
/* The crc32c of a PUT body in a file, on a worker thread (cfs_backend_ops.prepare). */
int gcs_prepare(cfs_backend *b, cfs_op *op);

/* response.c */
cfs_next gcs_finish(cfs_backend *b, cfs_op *op, const cfs_response *resp);
cfs_next gcs_verify(cfs_backend *b, cfs_op *op);
/* Add the GCS error message of a failed request to op->message. */
void gcs_describe_failure(cfs_op *op, const cfs_response *resp);
/* Whether the object resource of a finished upload is what was sent: 1 if so (or the
 * server said nothing checkable), 0 after failing the op (CFS_ECHECKSUM). */
int gcs_check_stored(cfs_op *op, const gcs_state *st, const cfs_response *resp);

/* resumable.c */
/* Whether a PUT goes up in a resumable session (its body is resumable_threshold or more,
 * or in a file). */
int gcs_is_resumable(const gcs_backend *g, const cfs_op *op);
/* The session's next request (start, chunk or status query) for object `name`; sets
 * *may_auth to 0 when it goes off the endpoint (no token then). Returns 0 or -1 (out of
 * memory). */
int gcs_build_resumable(gcs_backend *g, cfs_op *op, gcs_state *st, cfs_request *req,
                        const char *name, size_t name_len, int *may_auth);
/* What a response of the session means: the next chunk, a resend, a restart, done. */
cfs_next gcs_finish_resumable(cfs_op *op, gcs_state *st, const cfs_response *resp);

#endif
