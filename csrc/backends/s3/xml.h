/* S3's XML: ListObjectsV2 results, error bodies, DeleteObjects requests and results,
 * multipart upload documents. Pure functions over bytes, read with the expat walker of
 * util/xml.h (no string searching); tested in tests/c/backends/s3/test_xml.c. */
#ifndef CFS_S3_XML_H
#define CFS_S3_XML_H
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/op.h"

/* One page of ListObjectsV2. Names are as the XML holds them (URL-encoded when
 * url_encoded: decode with cfs_url_decode, '+' as a space). */
typedef struct cfs_s3_list_page {
    cfs_entries entries;        /* <Contents><Key>, <Size> (is_dir 0) and
                                 * <CommonPrefixes><Prefix> (is_dir 1, size -1) */
    int is_truncated;
    char *next_token;           /* <NextContinuationToken>, NULL if absent */
    int url_encoded;            /* <EncodingType>url</EncodingType> */
} cfs_s3_list_page;

/* Parse a ListBucketResult. Returns 0, or -1 with a message in err (not XML, not a
 * listing, an entry without a key, a bad size, out of memory). */
int cfs_s3_parse_list(const char *xml, size_t len, cfs_s3_list_page *page, char *err, size_t errlen);
void cfs_s3_list_page_free(cfs_s3_list_page *page);

/* An S3 <Error> body. */
typedef struct cfs_s3_error {
    char code[64];              /* "NoSuchKey", "SlowDown", ... ("" if absent) */
    char message[160];          /* truncated */
} cfs_s3_error;

/* Returns 0 if the body is an <Error> document (fields filled), -1 otherwise. */
int cfs_s3_parse_error(const char *xml, size_t len, cfs_s3_error *out);

/* A <Delete> request body for DeleteObjects (Quiet mode: only failures come back). Keys are
 * full object keys (UTF-8), XML-escaped here. Returns 0 or -1 (out of memory, or a key
 * XML 1.0 cannot carry). */
int cfs_s3_delete_body(cfs_buf *out, const char *const *keys, size_t n);

/* Walk a <DeleteResult>: cb(ctx, key, code, message) for each <Error> entry (the keys that
 * failed; code/message may be ""). Returns 0, or -1 with err if the body is not a
 * DeleteResult or cb returned non-zero. */
typedef int (*cfs_s3_delete_error_cb)(void *ctx, const char *key, const char *code,
                                      const char *message);
int cfs_s3_parse_delete_result(const char *xml, size_t len, cfs_s3_delete_error_cb cb, void *ctx,
                               char *err, size_t errlen);

/* Multipart upload: the UploadId of an <InitiateMultipartUploadResult> (a new string the
 * caller frees). Returns 0, or -1 with err. */
int cfs_s3_parse_upload_id(const char *xml, size_t len, char **upload_id, char *err, size_t errlen);

/* A <CompleteMultipartUpload> body listing parts 1..n with their ETags (as the server gave
 * them, quotes included) and, unless crc32c is NULL, their <ChecksumCRC32C>. Returns 0 or
 * -1 (out of memory, or an ETag XML cannot carry). */
/* The ETag of an UploadPartCopy answer (<CopyPartResult>), malloc'd into *etag. Returns 0,
 * or -1 with err written. */
int cfs_s3_parse_copy_part_etag(const char *xml, size_t len, char **etag, char *err, size_t errlen);
int cfs_s3_complete_body(cfs_buf *out, char *const *etags, const uint32_t *crc32c, size_t n);

#endif
