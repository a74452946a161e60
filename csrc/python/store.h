/* The Store type: one backend and its transfer settings, behind the mapping protocol. */
#ifndef CFS_STORE_H
#define CFS_STORE_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core/backend.h"
#include "core/engine.h"

typedef struct StoreObject {
    PyObject_HEAD
    cfs_backend *backend;
    cfs_limiter *limiter;
    PyObject *url;          /* str: the URL as given */
    PyObject *options;      /* dict: the options as given (pickling, equality) */
    int closed;
    PyObject *weakreflist;
} StoreObject;

extern PyTypeObject cfs_StoreType;

/* Set ValueError and return -1 if the store is closed. */
int cfs_store_check_open(StoreObject *s);

/* A new op on a user key, validated (KeyError-free: InvalidKeyError on a bad key).
 * `prefix` accepts "" and a trailing '/'. NULL with an exception set on failure. */
cfs_op *cfs_store_key_op(StoreObject *s, cfs_op_kind kind, PyObject *key, int prefix);

/* Submit one op against this store and wait for it with the GIL released.
 * Returns 0 (look at op->status), or -1 with an exception set: the engine could not
 * start, or a signal's handler raised (the op was then given up if it could be, and has
 * completed either way). */
int cfs_store_run(StoreObject *s, cfs_op *op);

#endif
