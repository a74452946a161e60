/* Batches: a stream of ops from a Python iterable pushed through a bounded window, their
 * results taken as they complete. One mechanism for getitems/setitems/delitems/ranges and
 * the iterator forms. */
#ifndef CFS_BATCH_H
#define CFS_BATCH_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core/engine.h"
#include "python/ops.h"
#include "python/store.h"

typedef enum batch_kind {
    BATCH_GET,      /* items: key */
    BATCH_RANGE,    /* items: (key, start, end-or-None); start < 0 reads a suffix */
    BATCH_PUT,      /* items: (key, value) */
    BATCH_DELETE,   /* items: key */
    BATCH_HEAD,     /* items: key */
    BATCH_COPY,     /* items: (source key, destination key, source size or -1), the source
                     * in the batch's source store (cfs_batch_new_copy) */
} batch_kind;

typedef struct BatchObject BatchObject;
extern PyTypeObject cfs_BatchType;

/* A new batch over `iterable`, its items shaped as `kind` says. */
BatchObject *cfs_batch_new(StoreObject *store, PyObject *iterable, batch_kind kind);

/* Set before the first cfs_batch_next: how a BATCH_PUT's values are encoded (copied), and
 * whether a BATCH_GET's reads are raw (results then (bytes, encoding) pairs). */
void cfs_batch_set_coding(BatchObject *b, const cfs_put_coding *pc, int raw_reads);
/* BATCH_PUT: what each write stores (cfs_py_attrs_for_call), instead of the store's
 * defaults; borrowed, alive until the batch has completed. */
void cfs_batch_set_put_attrs(BatchObject *b, const cfs_object_attrs *attrs);
/* A batch of server-side copies into `store` from keys of `source`. */
BatchObject *cfs_batch_new_copy(StoreObject *store, StoreObject *source, PyObject *iterable);

/* The next completed op, waiting with the GIL released; NULL when every op has completed
 * (then an error is set if the input iterator raised or the wait was interrupted).
 * Its op->caller is a cfs_pyop (ops.h) whose index is the item's position in the input;
 * the caller frees it with cfs_pyop_release(). */
cfs_op *cfs_batch_next(BatchObject *b);
/* Record a failed op's exception(s) for the final BatchError. Returns 0 or -1. */
int cfs_batch_record_failure(BatchObject *b, const cfs_op *op);
/* After the last op: raise the input error or a BatchError naming every failed key and
 * return -1, or return 0 if all went well. */
int cfs_batch_finish(BatchObject *b, const char *what);

#endif
