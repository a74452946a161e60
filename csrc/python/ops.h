/* The CPython layer's one door into the engine. Every op the Python types ask for is
 * built here from Python arguments, one builder per kind that validates and converts them
 * (key, prefix, range, value buffer, flags) the same way for every caller, and goes to the
 * engine through one submit function; the blocking calls wait for it here too. Store's
 * methods, batches (batch.c) and the asyncio Completions (completions.c) only choose the
 * builder and what to do with the result. (CPython's Modules/_sqlite keeps its argument
 * handling in a shared helper file the same way.) */
#ifndef CFS_PY_OPS_H
#define CFS_PY_OPS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core/engine.h"
#include "python/store.h"

/* What an op built here carries for its Python caller (op->caller), released with the op
 * by cfs_pyop_release(). */
typedef struct cfs_pyop {
    StoreObject *store;     /* the backend and limiter the op uses outlive it */
    PyObject *key;          /* the key its errors name; DELETE_MANY: a list of keys */
    Py_buffer value;        /* PUT: the value's buffer, held until the op completes */
    int has_value;
    cfs_body_file file;     /* PUT of a file value: a duplicate of its descriptor, closed
                             * when the op is released (the caller may close theirs) */
    int has_file;
    Py_ssize_t index;       /* a batch's: the item's position in the input */
    PyObject *future;       /* the asyncio path's: resolved with the result */
    PyObject *on_cancel;    /* the asyncio path's: the future's done callback */
    PyObject *source_store; /* COPY from another store: its backend outlives the op */
} cfs_pyop;

static inline cfs_pyop *cfs_pyop_of(const cfs_op *op)
{
    return op->caller;
}

/* ---------- builders: a new op, or NULL with an exception set ----------
 * Each checks that the store is open and that the key is a valid key (InvalidKeyError),
 * or a valid prefix ("" and a trailing '/' allowed) where it says prefix. */

/* The object, or a byte range of it (cfs_py_range: start None for the whole object). */
cfs_op *cfs_pyop_get(StoreObject *s, PyObject *key, PyObject *start, PyObject *end);
cfs_op *cfs_pyop_head(StoreObject *s, PyObject *key);
/* `value` supports the buffer protocol, or is a binary file open on a regular file (sent
 * from its position to its end as they are now, read as it is sent: never held whole);
 * with if_absent, create only if the key is absent. */
cfs_op *cfs_pyop_put(StoreObject *s, PyObject *key, PyObject *value, int if_absent);
/* How one call's writes are encoded (compress=, level=, raw=, content_encoding=). */
typedef struct cfs_put_coding {
    int given;              /* compress= given: overrides the store's default */
    int codec;              /* cfs_codec */
    int level;              /* CFS_CODEC_LEVEL_DEFAULT: the codec's (or the store's) */
    int raw;                /* the value is stored as it is, already encoded */
    int raw_codec;          /* raw: its encoding (content_encoding=), cfs_codec */
} cfs_put_coding;

/* Parse a call's compress, level, raw and content_encoding arguments (None where not
 * given). Returns 0, or -1 with ValueError/TypeError set. */
int cfs_py_put_coding(PyObject *compress, PyObject *level, int raw, PyObject *content_encoding,
                      cfs_put_coding *out);
/* Parse a compress= value (None: *given 0; True: gzip; False, "", "none", "identity": no
 * compression; "gzip", "x-gzip", "br", "zstd"). Returns 0, or -1 with ValueError set. */
int cfs_py_codec(PyObject *v, const char *what, int *given, int *codec);
/* A PUT encoded as `pc` says (NULL: the store's default). With pc->raw, `value` may be a
 * (bytes, encoding) pair, as a raw read returns. */
cfs_op *cfs_pyop_put_coded(StoreObject *s, PyObject *key, PyObject *value, int if_absent,
                           const cfs_put_coding *pc);
/* A raw read's result: (bytes, encoding or None); blob: a Blob (blob.h) for the bytes,
 * whose buffer goes back to the engine's pool when it is freed. */
PyObject *cfs_py_raw_result(cfs_op *op, int blob);

/* missing_ok: the caller does not want a missing key to fail the op. */
cfs_op *cfs_pyop_delete(StoreObject *s, PyObject *key, int missing_ok);
/* Keys (a non-empty sequence of at most the backend's delete_many_max) in one request;
 * ValueError where the backend deletes one key per request. */
cfs_op *cfs_pyop_delete_many(StoreObject *s, PyObject *keys);
/* Keys below a prefix: every one (recursive), or one level with directories. */
cfs_op *cfs_pyop_list(StoreObject *s, PyObject *prefix, int recursive);
/* What is left of a prefix once its keys are deleted (empty directories). */
cfs_op *cfs_pyop_rmdir(StoreObject *s, PyObject *prefix);
/* Copy source to dest; errors name the source. `from`: the store the source is in (NULL:
 * s; else one whose backend s's can_copy_from accepts); `size`: the source's size, -1 if
 * not known (S3 copies a large one in parts). */
cfs_op *cfs_pyop_copy(StoreObject *s, StoreObject *from, PyObject *source, PyObject *dest,
                      long long size);
/* Whether s can copy from `from` on the server (its backend's can_copy_from). */
int cfs_pyop_can_copy_from(StoreObject *s, StoreObject *from);

/* Free an op built here and what it holds (the GIL held). NULL is allowed. */
void cfs_pyop_release(cfs_op *op);

/* ---------- running ---------- */

/* Submit to the engine: on_done(op, ctx) on an engine thread when it completes; `cancel`
 * the flag that gives it up (engine.h), or NULL. Returns 0, or -1 with an exception set
 * (the op was not submitted and is still the caller's). */
int cfs_pyop_submit(cfs_op *op, cfs_done_fn on_done, void *ctx, const atomic_int *cancel);

/* Submit and wait with the GIL released. Returns 0 (look at op->status), or -1 with an
 * exception set: the engine could not start, or a signal's handler raised (the op was
 * then given up if it could be, and has completed either way). */
int cfs_pyop_run(cfs_op *op);

/* cfs_pyop_run, then raise for a failure (KeyError for a missing key unless missing_ok).
 * Returns 0 or -1. */
int cfs_pyop_run_checked(cfs_op *op, int missing_ok);

/* ---------- outcomes ---------- */

/* Did the op fail (some of its keys, for a multi-key delete)? */
int cfs_pyop_failed(const cfs_op *op, int missing_ok);

/* Append to `failures` (a list) an exception per key the op failed for: its key, every
 * key of a multi-key delete whose request failed, or those the server named. 0 or -1. */
int cfs_pyop_add_failures(const cfs_op *op, PyObject *failures);

#endif
