/* Blob: received bytes handed to Python without a copy. */
#ifndef CFS_BLOB_H
#define CFS_BLOB_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "buf.h"

extern PyTypeObject cfs_BlobType;

/* A Blob that takes over b's storage (b is left empty). NULL with an exception set. */
PyObject *cfs_blob_from_buf(cfs_buf *b);

/* A bytes object with b's contents, without a copy where possible, b then left empty: a
 * heap body becomes the bytes object where it lies, a mapped one has its pages moved into
 * it. Otherwise b is copied and left as it was. NULL with an exception set. */
PyObject *cfs_bytes_from_buf(cfs_buf *b);

#endif
