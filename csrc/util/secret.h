/* Secrets in memory: the one way to wipe them (OPENSSL_cleanse, which the compiler cannot
 * drop as a dead store) before their memory is freed or reused. Every credential, token,
 * private key text and credential document goes through here. */
#ifndef CFS_SECRET_H
#define CFS_SECRET_H
#include <stddef.h>

#include "core/buf.h"

/* Overwrite n bytes at p (p may be NULL when n is 0). */
void cfs_secret_wipe(void *p, size_t n);
/* Wipe a NUL-terminated string and free it (NULL is fine). */
void cfs_secret_free(char *s);
/* Wipe a buffer's whole storage (not only its length) and free it; b is left empty. */
void cfs_secret_buf_free(cfs_buf *b);
/* cJSON_Delete() a parsed credential document after wiping every string in it. */
struct cJSON;
void cfs_secret_json_delete(struct cJSON *root);
/* The contents of a small file holding one secret (a token rotated on disk by the
 * platform), trailing whitespace removed, or NULL when it cannot be read, is empty, is
 * longer than max bytes or holds control characters. Nothing of it is left in freed memory. */
char *cfs_secret_read_file(const char *path, size_t max);

#endif
