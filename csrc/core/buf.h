/* A growable byte buffer: the one container for bodies moving through the engine. */
#ifndef CFS_BUF_H
#define CFS_BUF_H
#include <stddef.h>

typedef struct cfs_buf {
    char *data;
    size_t len;
    size_t cap;
} cfs_buf;

/* Make room for at least `need` more bytes. Returns 0 or -1 (out of memory). */
int cfs_buf_reserve(cfs_buf *b, size_t need);
/* Make room for `need` more bytes of a body announced to end at `expected` bytes in all (its
 * Content-Length, + 1 for a NUL): at most CFS_BUF_FIRST_RESERVE at first, then doubling as
 * the bytes arrive, never past `expected` while they stay within it. A length a server
 * claims thus costs memory only as its bytes come. Returns 0 or -1. */
#define CFS_BUF_FIRST_RESERVE ((size_t)8 << 20)
int cfs_buf_reserve_expected(cfs_buf *b, size_t need, size_t expected);
int cfs_buf_append(cfs_buf *b, const void *p, size_t n);
int cfs_buf_append_str(cfs_buf *b, const char *s);
/* NUL-terminate without counting the NUL in len. */
int cfs_buf_terminate(cfs_buf *b);
void cfs_buf_reset(cfs_buf *b);
void cfs_buf_free(cfs_buf *b);
/* A new string from a printf format (the caller frees it), or NULL on out-of-memory. */
char *cfs_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Free a buffer's storage (data, cap) as cfs_buf_free does: a large one goes back to the
 * pool of body buffers. */
void cfs_buf_pool_put(char *data, size_t cap);

/* Hand the storage to the caller (who frees it with free()) and leave the buffer empty. */
char *cfs_buf_steal(cfs_buf *b, size_t *len);

/* Hand the storage as it is to the caller, who gives it back with cfs_buf_pool_put(data,
 * cap); the buffer is left empty. */
char *cfs_buf_take(cfs_buf *b, size_t *len, size_t *cap);

/* Every buffer is a malloc'd block whose data starts CFS_BUF_HEAP_HEADER bytes in: the
 * size of CPython's PyBytesObject header, so that a body can become a bytes object where it
 * lies, without a copy (blob.c checks the layout and the allocator). glibc maps a large
 * block by itself and grows it with mremap rather than a copy; a body of known size of
 * 4 MiB or more is faulted in with one madvise call when its block is made. */
#define CFS_BUF_HEAP_HEADER (4 * sizeof(void *))

/* The malloc'd block holding the buffer, whose data (at CFS_BUF_HEAP_HEADER) has room for
 * a NUL after it, trimmed if it holds much more than that; b is left empty and the caller
 * owns the block (free() it). NULL, b untouched, for an empty or full buffer. */
char *cfs_buf_release_block(cfs_buf *b);

#endif
