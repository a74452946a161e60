/* Blob: received bytes handed to Python without a copy. */
#ifndef CFS_BLOB_H
#define CFS_BLOB_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core/buf.h"

extern PyTypeObject cfs_BlobType;

/* A Blob that takes over b's storage (b is left empty). NULL with an exception set. */
PyObject *cfs_blob_from_buf(cfs_buf *b);

/* A bytes object with b's contents: where possible b's block becomes the bytes object
 * where it lies and b is left empty; otherwise b is copied and left as it was. NULL with
 * an exception set. */
PyObject *cfs_bytes_from_buf(cfs_buf *b);

#endif
