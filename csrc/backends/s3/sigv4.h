/* AWS Signature Version 4: pure request signing (no I/O, no clock, no global state).
 *
 * The caller describes a request (method, path, query parameters, headers, payload hash,
 * time, credentials, scope); cfs_sigv4_sign() returns every intermediate (canonical request,
 * string to sign, signature) and what to put on the wire: the Authorization header and the
 * extra headers to send (header signing), or the X-Amz-* query parameters to append
 * (presigned URLs). Canonical path and query come back encoded, so a caller that builds its
 * URL from them sends exactly what was signed.
 *
 * Encoding follows AWS: the unreserved bytes A-Z a-z 0-9 - _ . ~ are kept, every other byte
 * becomes %XX (uppercase hex); '/' is kept in paths only. Tested against the aws-c-auth
 * vectors (tests/c/backends/s3/test_sigv4.c) and botocore's signer
 * (tests/test_sigv4_botocore.py). */
#ifndef CFS_SIGV4_H
#define CFS_SIGV4_H
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define CFS_SHA256_LEN 32
#define CFS_SHA256_HEX_LEN 64
/* The payload hash of an empty body, and the marker for an unsigned payload. */
#define CFS_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define CFS_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"

/* How the request path becomes the canonical URI. */
typedef enum cfs_sigv4_path_mode {
    CFS_SIGV4_PATH_ENCODED,   /* already URI-encoded by the caller: signed exactly as given */
    CFS_SIGV4_PATH_S3,        /* raw bytes: each segment encoded, '/' kept, no normalisation
                               * (S3 signs the path as sent: "a//b/../c" stays) */
    CFS_SIGV4_PATH_NORMALIZE, /* raw bytes: empty, "." and ".." segments resolved (RFC 3986
                               * style, a trailing '/' kept), then encoded once: the generic
                               * rules of the aws-c-auth vectors */
} cfs_sigv4_path_mode;

/* A header or query parameter. Query names/values are raw (decoded) bytes: the signer
 * encodes them. Header names are case-insensitive; values are trimmed and their inner runs
 * of whitespace collapsed. Repeated header names are joined with ',' in the order given. */
typedef struct cfs_sigv4_pair {
    const char *name;
    const char *value;
} cfs_sigv4_pair;

typedef struct cfs_sigv4_input {
    const char *method;                 /* "GET", "PUT", ... */
    const char *path;                   /* begins with '/' (an empty path signs as "/") */
    cfs_sigv4_path_mode path_mode;
    const cfs_sigv4_pair *query;        /* may be NULL when n_query is 0 */
    size_t n_query;
    const cfs_sigv4_pair *headers;      /* every header to sign; Host must be among them */
    size_t n_headers;
    const char *payload_hash;           /* lowercase hex SHA-256 of the body, or
                                         * CFS_SIGV4_UNSIGNED_PAYLOAD; NULL = empty body */
    int content_sha256_header;          /* header signing: sign and send x-amz-content-sha256
                                         * (S3 requires it) */
    int64_t time;                       /* seconds since the epoch, UTC */
    const char *region;
    const char *service;                /* "s3" */
    const char *access_key_id;
    const char *secret_access_key;      /* unused when signing_key is given */
    const char *session_token;          /* NULL or "" when none */
    int omit_session_token;             /* send the token but leave it out of the signature */
    const unsigned char *signing_key;   /* optional: cfs_sigv4_derive_key() for this time's
                                         * date, region and service (saves 4 HMACs) */
    long expires;                       /* > 0: presign in the query (X-Amz-Expires) instead
                                         * of an Authorization header */
} cfs_sigv4_input;

#define CFS_SIGV4_MAX_EXTRA 3

typedef struct cfs_sigv4_output {
    char *canonical_path;               /* encoded path, for the URL */
    char *canonical_query;              /* encoded, sorted query without the X-Amz-* signing
                                         * parameters: for the URL ("" if none) */
    char *canonical_request;
    char *string_to_sign;
    char signature[CFS_SHA256_HEX_LEN + 1];
    char amz_date[17];                  /* "20150830T123600Z" */
    char *signed_headers;               /* "host;x-amz-date" */
    /* Header signing: */
    char *authorization;                /* value of the Authorization header */
    char *extra_headers[CFS_SIGV4_MAX_EXTRA]; /* "Name: value" lines to send as well
                                         * (X-Amz-Date, X-Amz-Security-Token,
                                         * x-amz-content-sha256) */
    size_t n_extra_headers;
    /* Query signing (expires > 0): the X-Amz-* parameters to append to the request's own
     * query, signature last, in the order AWS SDKs use. */
    char *presigned_query;
} cfs_sigv4_output;

/* Sign. Returns 0, or -1 with a message in err (bad input or out of memory); the output
 * is then empty. Free the output with cfs_sigv4_output_free() either way. */
int cfs_sigv4_sign(const cfs_sigv4_input *in, cfs_sigv4_output *out, char *err, size_t errlen);
void cfs_sigv4_output_free(cfs_sigv4_output *out);

/* The signing key for a date ("YYYYMMDD"), region and service. Returns 0 or -1. */
int cfs_sigv4_derive_key(const char *secret_access_key, const char *date8, const char *region,
                         const char *service, unsigned char key[CFS_SHA256_LEN]);
/* "YYYYMMDDTHHMMSSZ" for epoch seconds. Returns 0 or -1 (time out of range). */
int cfs_sigv4_format_time(int64_t t, char out[17]);

/* Lowercase hex SHA-256 of n bytes. Returns 0 or -1. */
int cfs_sha256_hex(const void *data, size_t n, char out[CFS_SHA256_HEX_LEN + 1]);
/* Lowercase hex of a SHA-256 digest. */
void cfs_sha256_to_hex(const unsigned char md[CFS_SHA256_LEN], char out[CFS_SHA256_HEX_LEN + 1]);

/* URI encoding per AWS: unreserved bytes kept, others %XX uppercase; '/' kept when
 * keep_slash (S3 object paths). Appends to out. Returns 0 or -1 (out of memory). */
int cfs_aws_uri_encode(cfs_buf *out, const char *s, size_t n, int keep_slash);
/* The same into a new NUL-terminated string (caller frees), NULL on out-of-memory. */
char *cfs_aws_uri_encode_dup(const char *s, size_t n, int keep_slash);

#endif
