/* Keys: validation, and their encoding into URLs. Pure functions. */
#ifndef CFS_KEYS_H
#define CFS_KEYS_H
#include <stddef.h>

#include "core/buf.h"

/* A key is non-empty UTF-8 without NUL, made of '/'-separated non-empty segments none of
 * which is "." or "..". Returns 0, or -1 with the reason in err. */
int cfs_key_check(const char *key, size_t len, char *err, size_t errlen);

/* A prefix (for listing, rmdir) is "" or a key, with an optional trailing '/'. */
int cfs_prefix_check(const char *prefix, size_t len, char *err, size_t errlen);

/* Percent-encode every byte but the unreserved set (A-Z a-z 0-9 - _ . ~), and '/' when
 * keep_slash: the form S3, GCS and plain HTTP servers all decode back exactly. */
int cfs_url_encode(cfs_buf *out, const char *s, size_t len, int keep_slash);

/* Decode %XX escapes into out, and '+' into a space when plus_is_space (the form
 * S3 listings use with encoding-type=url). Returns 0, or -1 if malformed. */
int cfs_url_decode(cfs_buf *out, const char *s, size_t len, int plus_is_space);

/* Join base and key with exactly one '/' between them into a fresh string. */
char *cfs_path_join(const char *base, const char *key);

#endif
