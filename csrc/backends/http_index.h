/* nginx's JSON directory index (`autoindex_format json`), the listing of the http backend:
 * [{"name": "...", "type": "file"|"directory"|..., "size": N, "mtime": "..."}, ...].
 * Pure: bytes in, one callback per entry out; fuzzed by tests/fuzz/http_index.c. */
#ifndef CFS_HTTP_INDEX_H
#define CFS_HTTP_INDEX_H
#include <stddef.h>
#include <stdint.h>

/* One entry: name and type are NUL-terminated, valid during the call; size is -1 when
 * the entry has no numeric "size"; mtime_ms the entry's "mtime" (an HTTP date) in Unix
 * ms, -1 when it has none or an unreadable one. A nonzero return (positive, to tell it from a
 * malformed index) stops the parse. */
typedef int (*cfs_http_index_fn)(void *ctx, const char *name, const char *type, int64_t size,
                                 int64_t mtime_ms);

/* Read an index one array element at a time, calling fn for each. Returns 0, the
 * callback's nonzero value, or -1 with a reason in err (not a JSON array, an entry
 * without a string name or type). */
int cfs_http_index_parse(const char *body, size_t len, cfs_http_index_fn fn, void *ctx, char *err,
                         size_t errlen);

#endif
