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
    /* the compress options: what this store's writes are encoded with by default (a
     * cfs_codec, 0 none), at what level, and for which keys (comma-separated fnmatch
     * patterns matched against a key's last segment; NULL: every key) */
    int compress;
    int compress_level;
    char *compress_keys;
    cfs_object_attrs write_attrs; /* what every write stores unless the call says otherwise
                                   * (the options content_type, metadata, ...) */
} StoreObject;

extern PyTypeObject cfs_StoreType;

/* Set ValueError and return -1 if the store is closed. */
int cfs_store_check_open(StoreObject *s);

/* A new op of this kind on key, for the methods that reach a file:// store's files
 * directly (_open_stored, _new_file): NULL with an exception if the store is closed, the key
 * is not valid or the store is not file:// (TypeError naming the method). */
cfs_op *cfs_store_file_op(StoreObject *s, PyObject *key, cfs_op_kind kind, const char *method);

#endif
