/* Object attributes from and to Python: what a write stores besides the bytes
 * (content_type, cache_control, content_disposition, storage_class, metadata), checked as
 * hostile input; the content type guessed from a key's extension (the standard library's
 * mimetypes table, handed over once at import); and a HEAD's answer as a dict. */
#ifndef CFS_PY_ATTRS_H
#define CFS_PY_ATTRS_H
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core/op.h"
#include "python/store.h"

/* The names of the write attributes, NULL-terminated: store options and keyword arguments
 * of put() and setitems(). */
extern const char *const cfs_write_attr_names[];

/* The write attributes given (each may be NULL or None: not given) into *out (freed
 * first), checked: header values printable ASCII without CR/LF/NUL (at most
 * CFS_ATTR_VALUE_MAX bytes), storage_class [A-Z0-9_], metadata a mapping of str to str
 * whose names are HTTP tokens (stored in lower case), at most CFS_META_MAX pairs and
 * CFS_META_BYTES_MAX bytes of names and values. Returns 0, or -1 with OptionError naming
 * the field. */
int cfs_py_write_attrs(PyObject *const values[5], cfs_object_attrs *out);

/* The same from a dict of keyword options: the names of cfs_write_attr_names taken (and
 * removed) from `options`. Returns 0 or -1 with an exception. */
int cfs_py_write_attrs_take(PyObject *options, cfs_object_attrs *out);

/* What one write stores: the store's defaults, overridden by the call's fields given
 * (metadata merged, the call's names winning), checked against what the backend can store
 * (OptionError naming the field and the backend otherwise). *out freed first. */
int cfs_py_attrs_for_call(StoreObject *s, const cfs_object_attrs *call, cfs_object_attrs *out);

/* A PUT op's attributes: a copy of `tmpl` (may be NULL), with the content type guessed
 * from the key where none is given and the backend stores one (else
 * application/octet-stream); op->attrs.content_encoding, if set, is kept. Returns 0 or -1
 * (MemoryError). */
int cfs_pyop_set_attrs(cfs_op *op, const cfs_object_attrs *tmpl);

/* The type the mimetypes table gives the key's extension (an encoding extension such as
 * .gz skipped, as mimetypes.guess_type does), or NULL. The GIL held. */
const char *cfs_guess_content_type(const char *key);

/* Module function: _set_mime_types(types_map, encodings) — the extension table, set once. */
PyObject *cfs_py_set_mime_types(PyObject *module, PyObject *args);

/* A HEAD's answer as a dict: size, etag, last_modified (ms or None), content_type,
 * content_encoding, cache_control, content_disposition, storage_class, metadata (dict). */
PyObject *cfs_py_head_dict(StoreObject *s, const cfs_op *op);

#endif
