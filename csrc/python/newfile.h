/* The NewFile type: a new object of a file:// store written piece by piece. */
#ifndef CFS_NEWFILE_H
#define CFS_NEWFILE_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "python/store.h"

extern PyTypeObject cfs_NewFileType;

/* Store._new_file(key): a NewFile for `key` of the file:// store s. NULL with TypeError
 * for another backend, InvalidKeyError for a bad key, the store's error if the file
 * cannot be made. */
PyObject *cfs_newfile_open(StoreObject *s, PyObject *key);

#endif
