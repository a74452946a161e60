/* Google Cloud Storage JSON API: the pure pieces of the protocol, apart from I/O so they
 * are unit-tested on fixed inputs (tests/c/backends/gcs/test_proto.c): request URLs, the
 * x-goog-hash header, object and list responses, error bodies, multipart upload bodies. */
#ifndef CFS_GCS_PROTO_H
#define CFS_GCS_PROTO_H
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/op.h"

/* URL of one object: {endpoint}/storage/v1/b/{bucket}/o/{name, '/' encoded too}, then
 * `query` ("alt=media", ...; may be NULL). Returns a fresh string or NULL (no memory). */
char *cfs_gcs_object_url(const char *endpoint, const char *bucket, const char *name,
                         size_t name_len, const char *query);

/* URL of a listing page: prefix (may be ""), one level (delimiter '/') or recursive,
 * continuing after page_token (NULL for the first page), at most max_results names. */
char *cfs_gcs_list_url(const char *endpoint, const char *bucket, const char *prefix, int recursive,
                       const char *page_token, int max_results);

/* URL of a multipart upload; if_generation_match_zero: create only if absent. */
char *cfs_gcs_upload_url(const char *endpoint, const char *bucket, int if_generation_match_zero);

/* The checksums in x-goog-hash ("crc32c=BASE64,md5=BASE64", either may be missing, in any
 * order, the engine joins repeated headers with ','). Unknown hash names are skipped. */
typedef struct cfs_goog_hash {
    int has_crc32c;
    uint32_t crc32c;
    int has_md5;
    unsigned char md5[16];
} cfs_goog_hash;
/* Returns 0, or -1 if a known hash has a malformed value. */
int cfs_gcs_parse_hash(const char *header, cfs_goog_hash *out);

/* One listing page (JSON: items[].name/size, prefixes[], nextPageToken). Names must begin
 * with `strip` (the store root "p/" or ""); what follows it is added to `out` (prefixes as
 * directories, without the trailing '/'). Names that are empty after the root or end in
 * '/' (folder placeholders) are skipped. *next_page_token is set to a fresh string or NULL.
 * Returns 0, or -1 with a reason in err (a malformed page, or out of memory: *oom set). */
int cfs_gcs_parse_list(const char *body, size_t len, const char *strip, cfs_entries *out,
                       char **next_page_token, int *oom, char *err, size_t errlen);

/* The "size" of an object resource (JSON; GCS writes it as a decimal string) and, when
 * present, its "crc32c". Returns 0 or -1 if malformed. */
int cfs_gcs_parse_object(const char *body, size_t len, int64_t *size, cfs_goog_hash *hash);

/* An object resource's attributes (etag, updated, contentType, contentEncoding,
 * cacheControl, contentDisposition, storageClass, metadata: at most CFS_META_MAX) into
 * *a (replaced). Returns 0, -1 if malformed, -2 if out of memory (*a then empty). */
int cfs_gcs_parse_object_attrs(const char *body, size_t len, cfs_object_attrs *a);

/* The human part of an error body: {"error": {"code": N, "message": "..."}} or
 * {"error": "...", "error_description": "..."} (OAuth), else the start of the text.
 * Always NUL-terminates out (empty if nothing usable). */
void cfs_gcs_error_message(const char *body, size_t len, char *out, size_t n);

/* A multipart/related upload body: JSON metadata {"name": ..., "crc32c": base64, and what
 * attrs (may be NULL) stores: contentType (else application/octet-stream), cacheControl,
 * contentDisposition, storageClass, metadata} and the data, with a boundary that does not occur in the data. Writes the boundary (NUL
 * terminated, < 64 bytes) into `boundary`. Returns 0 or -1 (out of memory). */
int cfs_gcs_multipart_body(cfs_buf *out, char boundary[64], const char *name, size_t name_len,
                           const void *data, size_t len, uint32_t crc32c,
                           const cfs_object_attrs *attrs);

/* Resumable uploads. The URL that starts a session for object `name`:
 * {endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&name={name}
 * [&ifGenerationMatch=0]. Returns a fresh string or NULL (no memory). */
char *cfs_gcs_resumable_url(const char *endpoint, const char *bucket, const char *name,
                            size_t name_len, int if_generation_match_zero);

/* The JSON metadata that starts a session: {"name", "crc32c" (base64 of big-endian),
 * "contentType"}, so the server checks the whole object when it is complete. Appends to
 * out. Returns 0 or -1 (out of memory). */
int cfs_gcs_upload_metadata(cfs_buf *out, const char *name, size_t name_len, uint32_t crc32c,
                            const cfs_object_attrs *attrs);

/* How many bytes a session holds, from the Range header of a 308 answer: "bytes=0-N"
 * means N+1; no header (NULL) means none yet (0). Returns 0, or -1 if malformed (another
 * start than 0, N not a decimal, trailing text). */
int cfs_gcs_parse_upload_range(const char *range, int64_t *persisted);

/* The Content-Range of one request of a session: "bytes A-B/TOTAL" for the len bytes from
 * offset (len > 0), or "bytes * /TOTAL" (no space) for a status query (len == 0). Writes a
 * NUL-terminated value into out (n >= 64). */
void cfs_gcs_content_range(char *out, size_t n, uint64_t offset, uint64_t len, uint64_t total);

/* Batch requests (POST {endpoint}/batch/storage/v1, multipart/mixed). The boundary of the
 * bodies we build: '=' is percent-encoded in every object path, so it never occurs in one. */
#define CFS_GCS_BATCH_BOUNDARY "==cfs-batch=="
#define CFS_GCS_BATCH_MAX 100 /* parts per batch request, GCS's limit */

/* A batch body of n DELETE parts, part i for object names[i] (names[i] bytes, not
 * NUL-terminated necessarily: lens[i]) with Content-ID <ids[i]>. Appends to out. Returns 0
 * or -1 (out of memory). */
int cfs_gcs_batch_delete_body(cfs_buf *out, const char *bucket, const char *const *names,
                              const size_t *lens, const size_t *ids, size_t n);

/* Read a batch response: content_type carries its boundary; each part is
 * "Content-ID: <response-ID>" and an HTTP response (status line, headers, body). Calls
 * part(ctx, id, status, body, body_len) for each part with a Content-ID of a decimal ID
 * (parts without one are skipped); a nonzero return from part stops the parse with that
 * value. Returns 0, the callback's value, or -1 with a reason in err (no boundary, no
 * parts, a part without a status line). */
int cfs_gcs_parse_batch(const char *content_type, const char *body, size_t len,
                        int (*part)(void *ctx, long id, long status, const char *body, size_t len),
                        void *ctx, char *err, size_t errlen);


#endif
