/* Helpers shared by the Python types: key conversion, options, exceptions. */
#ifndef CFS_PYUTIL_H
#define CFS_PYUTIL_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core/op.h"
#include "core/options.h"

/* How long a blocking call waits before it looks for a pending signal (Ctrl-C). */
#define CFS_SIGNAL_CHECK_MS 200

/* The package's exception classes (cloudfiles_store.errors), loaded at module init and
 * never changed afterwards. */
typedef struct cfs_errors {
    PyObject *base;             /* CloudFilesError */
    PyObject *auth;             /* AuthenticationError */
    PyObject *transient;        /* TransientError */
    PyObject *checksum;         /* ChecksumError */
    PyObject *protocol;         /* ProtocolError */
    PyObject *network;          /* NetworkError */
    PyObject *io;               /* StorageIOError */
    PyObject *request;          /* RequestError */
    PyObject *exists;           /* AlreadyExistsError */
    PyObject *batch;            /* BatchError */
    PyObject *invalid_key;      /* InvalidKeyError */
    PyObject *no_bucket;        /* BucketNotFoundError */
    PyObject *option;           /* OptionError */
    PyObject *scheme;           /* UnsupportedSchemeError */
} cfs_errors;

extern cfs_errors cfs_err;
int cfs_errors_load(void);

/* A key given by the user, as validated UTF-8. Sets InvalidKeyError and returns -1 if the
 * key is not a str or not a valid key. `prefix` accepts "" and a trailing '/'. */
int cfs_py_key(PyObject *key, int prefix, const char **utf8, Py_ssize_t *len);

/* A byte range from Python bounds: start None (whole object); start >= 0 with end None
 * (to the end) or end >= start ([start, end)); start < 0 with end None (the last -start
 * bytes). Returns 0, or -1 with ValueError/TypeError set. */
int cfs_py_range(PyObject *start, PyObject *end, cfs_range *r);

/* Keyword options -> name/value strings (bool -> true/false, numbers -> str, None
 * skipped). Sets OptionError and returns -1 on an unsupported value type. */
int cfs_py_options(PyObject *kwargs, cfs_options *out);

/* The exception instance for a failed op (status != OK), naming operation, key, URL. */
PyObject *cfs_py_op_error(const cfs_op *op, PyObject *key);
/* The same for one key of a multi-key op, with that key's own status and message. */
PyObject *cfs_py_key_error(const cfs_op *op, PyObject *key, cfs_status status, const char *message);
/* The BatchError for the keys that failed in `what`, given one exception per key (a
 * non-empty list): its message names how many and the first. */
PyObject *cfs_py_batch_error(PyObject *failures, const char *what);
/* Raise it (KeyError for a missing key). Always returns NULL. */
PyObject *cfs_py_raise_op(const cfs_op *op, PyObject *key);

/* Take the raised exception as one object (NULL if none), and raise it again: the
 * Python 3.12 PyErr_GetRaisedException/SetRaisedException, for 3.11 too. */
PyObject *cfs_exc_take(void);
void cfs_exc_restore(PyObject *exc); /* steals the reference */

#endif
