/* Blob: received bytes handed to Python without a copy. */
#ifndef CFS_BLOB_H
#define CFS_BLOB_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "buf.h"

extern PyTypeObject cfs_BlobType;

/* A Blob that takes over b's storage (b is left empty). NULL with an exception set. */
PyObject *cfs_blob_from_buf(cfs_buf *b);

/* A bytes object with b's contents. Large bodies have their pages moved into it, not
 * copied, and b is then left empty; otherwise b is copied and left as it was. NULL with
 * an exception set. */
PyObject *cfs_bytes_from_buf(cfs_buf *b);

#endif
