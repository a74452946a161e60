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

/* Smaller buffers are malloc'd blocks whose data starts CFS_BUF_HEAP_HEADER bytes in: the
 * size of CPython's PyBytesObject header, so that a body can become a bytes object where it
 * lies, without a copy (blob.c checks the layout and the allocator). */
#define CFS_BUF_HEAP_HEADER (4 * sizeof(void *))

/* The malloc'd block holding a heap buffer whose data (at CFS_BUF_HEAP_HEADER) has room
 * for a NUL after it, trimmed if it holds much more than that; b is left empty and the
 * caller owns the block (free() it). NULL, b untouched, for any other buffer. */
char *cfs_buf_release_heap(cfs_buf *b);

/* Buffers of CFS_BUF_MAP_MIN bytes or more are anonymous mappings of their own whose data
 * starts CFS_BUF_MAP_OFFSET bytes into a page: where glibc's malloc puts the data of a
 * bytes object that large (a 2-word chunk header, then CPython's 4-word PyBytesObject
 * header). The whole pages of such a body can then be moved into a new bytes object with
 * mremap instead of copied: no copy, and no page faults on the bytes object's fresh memory.
 * Another layout (another allocator, tracemalloc, a debug build) only means a copy. */
#define CFS_BUF_MAP_MIN ((size_t)4 << 20)
#define CFS_BUF_MAP_OFFSET (6 * sizeof(void *))

/* How many bytes of b, starting `*skip` bytes in, can be moved as whole pages to the same
 * offsets from dst (dst must have room for b->len bytes); 0 if none. */
size_t cfs_buf_movable_pages(const cfs_buf *b, const char *dst, size_t *skip);

/* Move those pages (from cfs_buf_movable_pages) to dst + skip, replacing what was there,
 * and free the rest of b (left empty). Returns 0; -1 if they could not be moved (b and dst
 * as they were: copy instead); -2 if they could not be moved and dst's pages at
 * [skip, skip + n) could not be restored either (dst must never be used or freed). */
int cfs_buf_move_pages(cfs_buf *b, char *dst, size_t skip, size_t n);

#endif
