/* Base64 (RFC 4648): the standard alphabet with '=' padding (GCS hashes, Content-MD5) and
 * the URL-safe alphabet without padding (JWT). Pure. */
#ifndef CFS_BASE64_H
#define CFS_BASE64_H
#include <stddef.h>

#include "core/buf.h"

/* Append the encoding of data to out (NUL-terminated, the NUL not counted).
 * url: URL-safe alphabet ('-', '_') and no padding. Returns 0 or -1 (out of memory). */
int cfs_base64_encode(cfs_buf *out, const void *data, size_t len, int url);

/* Decode either alphabet, padding optional, no whitespace, into out (room for `cap`
 * bytes). Returns the decoded length, or -1 if malformed or longer than cap. */
long cfs_base64_decode(const char *s, size_t len, unsigned char *out, size_t cap);

#endif
