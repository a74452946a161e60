/* The S3 backend's private header: the backend object, the state one op carries between
 * its requests, the request spec that build fills, and the functions its files share.
 *
 * The backend's files:
 *   driver.c     open/close and options, per-op state, the credentials, the ops table
 *   request.c    build: an op's request, hashed and signed (SigV4, sigv4.c)
 *   multipart.c  multipart upload: initiate, the parts as child ops, complete, abort
 *   response.c   finish: status and error mapping, listings, deletes, body checks
 *
 * Only these files include it. Functions shared between them are prefixed s3_, except the
 * credentials in driver.c and add_header_line, whose names are kept as they were. */
#ifndef CFS_S3_INTERNAL_H
#define CFS_S3_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

#include "backends/s3/sigv4.h"
#include "core/backend.h"
#include "core/buf.h"
#include "core/cred_cache.h"
#include "core/op.h"

extern const cfs_backend_ops cfs_s3_backend;

#define MD5_LEN 16
#define MD5_B64_LEN 24
#define CRC32C_B64_LEN 8
/* the request's own headers, with room for an object's attributes and metadata */
#define MAX_SIGNED_HEADERS (20 + CFS_META_MAX)

typedef enum cred_source {
    CRED_STATIC,        /* given as options (or none: anonymous) */
    CRED_CONTAINER,     /* GET credential_url (+ Authorization from a token or token file) */
    CRED_IMDS,          /* IMDSv2: PUT token, GET role, GET role credentials */
    CRED_WEB_IDENTITY,  /* POST STS AssumeRoleWithWebIdentity with the token file's token */
} cred_source;

typedef struct s3_backend {
    cfs_backend base;
    char *url;              /* s3://bucket[/prefix]: repr, pickling, errors */
    char *bucket;
    char *prefix;           /* "" or "a/b/": the store root inside the bucket */
    char *origin;           /* scheme://authority every request goes to */
    char *host;             /* the Host header (authority of origin) */
    char *path_base;        /* raw path before root+key: "/bucket/" (path-style) or "/" */
    char *region;
    cfs_tls tls;
    int anon;
    int requester_pays;
    int sign_payload;       /* the body's SHA-256 in the signature (default: over http) */
    int verify_etag;
    int checksum_crc32c;    /* uploads carry x-amz-checksum-crc32c (checksum_algorithm) */
    int verify_checksum;    /* whole-object GETs ask for and check x-amz-checksum-* */
    size_t mpu_threshold;   /* PUT bodies this large go up in parts */
    size_t mpu_chunksize;   /* part size (grown to fit 10,000 parts) */
    int mpu_concurrency;    /* parts of one upload in flight at once */
    int64_t mpu_copy_threshold; /* COPY of a source this large: UploadPartCopy parts */
    size_t mpu_copy_chunksize;  /* their size (grown to fit 10,000 parts) */
    cred_source source;
    char *cred_url;         /* container: the full URL; IMDS: the base URL; STS endpoint */
    char *cred_auth;        /* container: the Authorization value (secret), or NULL */
    char *cred_auth_file;   /* container: a file holding it; web identity: the token file;
                             * read at each fetch (the platform rotates it) */
    char *role_arn;         /* web identity */
    char *role_session;
    /* keys given as options, until open moves them into creds */
    char *access_key_id;
    char *secret_access_key;
    char *session_token;
    int64_t expiration;     /* epoch seconds; 0: the keys given do not expire */
    cfs_cred_cache creds;   /* the keys requests are signed with */
} s3_backend;

/* ---------------------------------------------------------------- op state */

/* Everything one op carries between its requests. */
typedef struct s3_state {
    /* credential fetch: a sub-step before the op's own request */
    int cred_step;          /* 0: none; container, STS: 1; IMDS: 1 token, 2 role, 3 credentials */
    cfs_cred_ticket ticket; /* its part in the credential cache */
    char *imds_token;       /* secret */
    char *imds_role;
    /* LIST: the token of the next page (NULL for the first) */
    char *list_token;
    /* PUT: hashes of the body (a single PUT or one part; the complete document), and the
     * CRC32C of the object's bytes (a single PUT's, a part's; a multipart PUT's whole) */
    int put_hashed;
    char md5_b64[MD5_B64_LEN + 1];
    char sha256[CFS_SHA256_HEX_LEN + 1];
    uint32_t crc32c;
    char crc32c_b64[CRC32C_B64_LEN + 1];
    /* GET: what s3_verify checks the body against on a worker thread (enum s3_check) */
    int check;
    char etag_md5[33];      /* S3_CHECK_MD5: the MD5 (hex) a plain ETag promised */
    uint32_t want_crc32c;   /* S3_CHECK_CRC32C: a FULL_OBJECT x-amz-checksum-crc32c */
    /* DELETE_MANY: the <Delete> document (hashes in md5_b64/sha256 once put_hashed) */
    cfs_buf delete_body;
    /* multipart PUT (steps: enum mpu_step): the parts go up as child ops */
    char *upload_id;
    size_t part_size;
    size_t n_parts;
    size_t parts_started;
    char **etags;           /* of each part, by part number - 1 */
    uint32_t *part_crc32c;  /* the CRC32C of each part, by part number - 1 */
    cfs_buf complete;
    cfs_status fail_status; /* the first failure, kept while the upload is aborted */
    long fail_http_status;
    int fail_attempts;
    char *fail_where;       /* the URL that failed, when not the PUT's own */
    char fail_message[sizeof(((cfs_op *)0)->message)];
    /* one part (a child op): its number, the upload's state (its parent's), its ETag */
    size_t part_number;
    const struct s3_state *upload;
    char *part_etag;
} s3_state;

enum s3_check {
    S3_CHECK_NONE,
    S3_CHECK_MD5,       /* a plain-MD5 ETag */
    S3_CHECK_CRC32C,    /* a FULL_OBJECT x-amz-checksum-crc32c */
};

/* Indices in cfs_response.captured: the order of s3_response_headers in driver.c. */
enum {
    S3_CAPTURE_CRC32C,          /* x-amz-checksum-crc32c */
    S3_CAPTURE_CHECKSUM_TYPE,   /* x-amz-checksum-type: FULL_OBJECT or COMPOSITE */
};

enum mpu_step {
    MPU_INITIATE,   /* CreateMultipartUpload */
    MPU_PARTS,      /* the parts, as child ops: no request of the PUT's own */
    MPU_COMPLETE,   /* CompleteMultipartUpload */
    MPU_ABORT,      /* AbortMultipartUpload, after a failure */
    MPU_HEAD_SOURCE, /* a COPY's first step: HEAD of the source, whose attributes the
                      * upload is created with (UploadPartCopy copies bytes only) */
};

/* The op's state, made on first use (sized for the parts of a multipart PUT); NULL when
 * out of memory. */
s3_state *s3_state_of(s3_backend *s, cfs_op *op);
void s3_state_free(void *p);

/* A child op carrying one part of a multipart upload. */
static inline int s3_is_part(const cfs_op *op)
{
    const s3_state *st = op->backend_state;
    return st && st->upload;
}

/* A PUT large enough to go up in parts (the PUT itself, not one of its parts), or a COPY
 * of a source large enough to be copied in parts (UploadPartCopy). */
static inline int s3_is_multipart(const s3_backend *s, const cfs_op *op)
{
    if (s3_is_part(op))
        return 0;
    if (op->kind == CFS_OP_COPY)
        return op->size >= 0 && op->size >= s->mpu_copy_threshold;
    return op->kind == CFS_OP_PUT && op->body_len >= s->mpu_threshold;
}

/* The bytes a multipart op moves: a PUT's body, a COPY's source. */
static inline size_t s3_multipart_len(const cfs_op *op)
{
    return op->kind == CFS_OP_COPY ? (size_t)op->size : op->body_len;
}

/* A DELETE's first step: HEAD, so that a missing key is reported. */
static inline int s3_looks_before_delete(const cfs_op *op)
{
    return op->kind == CFS_OP_DELETE && op->step == 0 && !op->missing_ok;
}

/* ------------------------------------------------------- credentials (driver.c) */

/* What one request is signed with: copies taken under the cache's lock. */
typedef struct creds_view {
    char *access_key_id;
    char *session_token;    /* secret, may be NULL */
    unsigned char key[CFS_SHA256_LEN];
    char amz_date[17];
    int64_t now;
    const char *region;
    cfs_op *op;
} creds_view;

/* Wipe and free the copies. */
void creds_view_clear(creds_view *v);
/* The keys the op's next request is signed with (CFS_CRED_USE, *v filled), or the request
 * of its credential fetch (CFS_CRED_FETCH, in req), or CFS_CRED_WAIT, or CFS_CRED_FAILED
 * (after cfs_op_fail()); cfs_cred_build_answer() says what build returns for the last
 * three. */
int creds_step(s3_backend *s, cfs_op *op, s3_state *st, cfs_request *req, creds_view *v);
/* The answer to a credential sub-step (st->cred_step). */
cfs_next finish_cred(s3_backend *s, cfs_op *op, s3_state *st, const cfs_response *resp);

/* A header line of any length onto the request ("Name: value"); the line is wiped after
 * use, as it may hold a token. Returns 0 or -1. */
int add_header_line(cfs_request *req, const char *name, const char *value);

/* ------------------------------------------------------------ build (request.c) */

/* What one request is, before signing: filled per op kind, then signed and sent by
 * emit_request(). Strings are borrowed (from the op, its state, or `scratch`). */
typedef struct req_spec {
    const char *method;
    const char *origin;                 /* scheme://authority; NULL: the store's */
    cfs_buf path;                       /* raw (unencoded) path */
    cfs_sigv4_pair query[8];            /* raw names and values */
    size_t nq;
    cfs_sigv4_pair headers[MAX_SIGNED_HEADERS];
    size_t nh;
    const char *payload;                /* x-amz-content-sha256 */
    const char *body;
    size_t body_len;
    const cfs_op *body_of;              /* a PUT or part: send this op's body (in memory or
                                         * in a file) rather than body */
    int no_body;
    char range[96];
    char part_number[24];
    char *scratch;                      /* owned: a string a pair points into */
    char *meta_names[CFS_META_MAX];     /* owned: "x-amz-meta-NAME" of a PUT's metadata */
} req_spec;

static inline void add_h(req_spec *r, const char *name, const char *value)
{
    if (r->nh < MAX_SIGNED_HEADERS)
        r->headers[r->nh++] = (cfs_sigv4_pair){ name, value };
}

static inline void add_q(req_spec *r, const char *name, const char *value)
{
    if (r->nq < sizeof r->query / sizeof r->query[0])
        r->query[r->nq++] = (cfs_sigv4_pair){ name, value };
}

/* MD5 of n bytes. Returns 0 or -1. */
int s3_md5(const void *data, size_t n, unsigned char out[MD5_LEN]);
/* The base64 of a CRC32C's four big-endian bytes, as x-amz-checksum-crc32c carries it. */
void s3_crc32c_b64(uint32_t crc, char out[CRC32C_B64_LEN + 1]);
/* Content-MD5 (base64) and the payload hash (SHA-256 hex, or UNSIGNED-PAYLOAD unless
 * sign_payload) of a body. Returns 0 or -1. */
int s3_hash_body(s3_backend *s, const char *body, size_t n, char md5_b64[MD5_B64_LEN + 1],
                 char sha256[CFS_SHA256_HEX_LEN + 1]);
int s3_build(cfs_backend *b, cfs_op *op, cfs_request *req);
int s3_prepare(cfs_backend *b, cfs_op *op);
/* The headers of a PUT's or a part's x-amz-checksum-crc32c (none if checksum_algorithm is
 * none). */
void s3_spec_put_checksum(s3_backend *s, const s3_state *st, req_spec *r);
/* The headers of what a PUT stores besides its bytes (op->attrs): Content-Type (else
 * application/octet-stream), Cache-Control, Content-Disposition, x-amz-storage-class,
 * x-amz-meta-*. Returns 0 or -1 (out of memory). */
int s3_spec_put_attrs(const cfs_op *op, req_spec *r);

/* ------------------------------------------------------- multipart (multipart.c) */

/* The PUT's (or COPY's) own requests of a multipart upload, and UploadPart for a part. 0,
 * or -1 (out of memory, or no request at this step). */
int s3_spec_multipart(s3_backend *s, cfs_op *op, s3_state *st, req_spec *r);
int s3_spec_part(s3_backend *s, s3_state *st, cfs_op *op, req_spec *r);
/* x-amz-copy-source of a COPY: "/bucket/key" of op->source in its store, URL-encoded.
 * NULL when out of memory. */
char *s3_copy_source(const s3_backend *s, const cfs_op *op);
/* Whether a COPY into dst can read its source from src on the server (driver.c). */
int s3_can_copy_from(const cfs_backend *dst, const cfs_backend *src);
cfs_next s3_mpu_finish(s3_backend *s, cfs_op *op, const cfs_response *resp);
cfs_next s3_part_finish(cfs_op *op, const cfs_response *resp);
cfs_next s3_child_done(cfs_backend *b, cfs_op *op, cfs_op *part);

/* ----------------------------------------------------------- finish (response.c) */

/* A non-2xx answer: the op's status from the S3 error code in the body, else from HTTP. */
cfs_next s3_error(cfs_op *op, const cfs_response *resp);
cfs_next s3_finish(cfs_backend *b, cfs_op *op, const cfs_response *resp);
cfs_next s3_verify(cfs_backend *b, cfs_op *op);

#endif
