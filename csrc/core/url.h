/* Store URLs as users type them, made canonical before a backend sees one (pure; unit
 * tested in tests/c/core/test_url.c).
 *
 * Schemes are case-insensitive (RFC 3986): "S3://b" is "s3://b". A file URL may be
 * file:///path, file:/path or file://localhost/path. A leading "~" or "~user" expands as
 * Python's os.path.expanduser does. A bare path, relative or absolute, is a file path.
 * Anything that looks like "scheme:" (a letter, then letters, digits, "+", "-" or ".",
 * then ":") is a URL: an unknown scheme, or a known one without "//" (a mistyped
 * "s3:/bucket"), is an error naming the URL; a path whose first segment holds ':' can be
 * written "./name:with:colons". */
#ifndef CFS_URL_H
#define CFS_URL_H
#include <stddef.h>

/* Whether a lower-case scheme has a backend (the registry's answer). */
typedef int (*cfs_scheme_known_fn)(const char *scheme);

/* The canonical URL (malloc'd), or NULL with a message in err that names the URL with any
 * password masked (err left empty: out of memory). */
char *cfs_url_normalize(const char *url, cfs_scheme_known_fn known, char *err, size_t errlen);

/* `url` with the password of its userinfo ("user:secret@") replaced by "***", for
 * messages; truncated to fit `out`. */
void cfs_url_redact(const char *url, char *out, size_t outlen);

#endif
