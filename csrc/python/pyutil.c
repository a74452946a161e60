#include "python/pyutil.h"

#include "util/keys.h"

cfs_errors cfs_err;

int cfs_errors_load(void)
{
    PyObject *m = PyImport_ImportModule("cloudfiles_store.errors");
    if (!m)
        return -1;
    struct {
        PyObject **slot;
        const char *name;
    } names[] = {
        { &cfs_err.base, "CloudFilesError" },        { &cfs_err.auth, "AuthenticationError" },
        { &cfs_err.transient, "TransientError" },    { &cfs_err.checksum, "ChecksumError" },
        { &cfs_err.protocol, "ProtocolError" },      { &cfs_err.network, "NetworkError" },
        { &cfs_err.io, "StorageIOError" },           { &cfs_err.request, "RequestError" },
        { &cfs_err.exists, "AlreadyExistsError" },   { &cfs_err.batch, "BatchError" },
        { &cfs_err.invalid_key, "InvalidKeyError" }, { &cfs_err.no_bucket, "BucketNotFoundError" },
        { &cfs_err.option, "OptionError" },          { &cfs_err.scheme, "UnsupportedSchemeError" },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *names[i].slot = PyObject_GetAttrString(m, names[i].name);
        if (!*names[i].slot) {
            Py_DECREF(m);
            return -1;
        }
    }
    Py_DECREF(m);
    return 0;
}

/* Messages show a key in full up to this many characters, a longer one by its start and
 * end (the exception's `key` attribute keeps it whole). */
#define MESSAGE_KEY_MAX 120

/* repr() of a key for a message, shortened as MESSAGE_KEY_MAX says. */
static PyObject *key_for_message(PyObject *key)
{
    if (!key || !PyUnicode_Check(key) || PyUnicode_GET_LENGTH(key) <= MESSAGE_KEY_MAX)
        return PyObject_Repr(key ? key : Py_None);
    Py_ssize_t n = PyUnicode_GET_LENGTH(key);
    PyObject *head = PyUnicode_Substring(key, 0, 80);
    PyObject *tail = head ? PyUnicode_Substring(key, n - 30, n) : NULL;
    PyObject *r = tail ? PyUnicode_FromFormat("%R...%R (%zd characters)", head, tail, n) : NULL;
    Py_XDECREF(head);
    Py_XDECREF(tail);
    return r;
}

int cfs_py_key(PyObject *key, int prefix, const char **utf8, Py_ssize_t *len)
{
    if (!PyUnicode_Check(key)) {
        PyErr_Format(cfs_err.invalid_key, "keys must be str, not %.100s", Py_TYPE(key)->tp_name);
        return -1;
    }
    char why[128] = "not valid UTF-8";
    const char *s = PyUnicode_AsUTF8AndSize(key, len);
    if (!s)
        PyErr_Clear();
    int rc = !s       ? -1
             : prefix ? cfs_prefix_check(s, (size_t)*len, why, sizeof why)
                      : cfs_key_check(s, (size_t)*len, why, sizeof why);
    if (rc < 0) {
        PyObject *shown = key_for_message(key);
        if (shown)
            PyErr_Format(cfs_err.invalid_key, "invalid key %U: %s", shown, why);
        Py_XDECREF(shown);
        return -1;
    }
    *utf8 = s;
    return 0;
}

int cfs_py_options(PyObject *kwargs, cfs_options *out)
{
    if (!kwargs)
        return 0;
    PyObject *name, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(kwargs, &pos, &name, &value)) {
        const char *n = PyUnicode_AsUTF8(name);
        if (!n)
            return -1;
        PyObject *text = NULL;
        if (value == Py_None)
            continue;
        if (PyBool_Check(value))
            text = PyUnicode_FromString(value == Py_True ? "true" : "false");
        else if (PyLong_Check(value) || PyFloat_Check(value))
            text = PyObject_Str(value);
        else if (PyUnicode_Check(value))
            text = Py_NewRef(value);
        else if (PyObject_HasAttrString(value, "__fspath__"))
            text = PyOS_FSPath(value);
        else {
            PyErr_Format(cfs_err.option, "option %s: unsupported value of type %.100s", n,
                         Py_TYPE(value)->tp_name);
            return -1;
        }
        if (!text)
            return -1;
        Py_ssize_t vlen = 0;
        const char *v = PyUnicode_Check(text) ? PyUnicode_AsUTF8AndSize(text, &vlen) : NULL;
        if (!v) {
            Py_DECREF(text);
            if (!PyErr_Occurred())
                PyErr_Format(cfs_err.option, "option %s must be text", n);
            return -1;
        }
        /* NUL would cut the value short in C; CR or LF would inject a header where the
         * value becomes one (tokens, passwords): refused for every option, never echoed */
        if (strcspn(v, "\r\n") != (size_t)vlen) {
            Py_DECREF(text);
            PyErr_Format(cfs_err.option, "option %s: a value may not hold CR, LF or NUL", n);
            return -1;
        }
        int rc = cfs_options_add(out, n, v);
        Py_DECREF(text);
        if (rc < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

static PyObject *error_class(cfs_status s)
{
    switch (s) {
    case CFS_EAUTH:
        return cfs_err.auth;
    case CFS_ETRANSIENT:
        return cfs_err.transient;
    case CFS_ECHECKSUM:
        return cfs_err.checksum;
    case CFS_EPROTOCOL:
        return cfs_err.protocol;
    case CFS_ENETWORK:
        return cfs_err.network;
    case CFS_EIO:
        return cfs_err.io;
    case CFS_EEXISTS:
        return cfs_err.exists;
    case CFS_ENOCONTAINER:
        return cfs_err.no_bucket;
    case CFS_EBADKEY:
        return cfs_err.invalid_key;
    case CFS_EHTTP:
    case CFS_ERANGE:
        return cfs_err.request;
    default:
        return cfs_err.base;
    }
}

PyObject *cfs_py_op_error(const cfs_op *op, PyObject *key)
{
    return cfs_py_key_error(op, key, op->status, op->message);
}

PyObject *cfs_py_key_error(const cfs_op *op, PyObject *key, cfs_status status, const char *message)
{
    if (status == CFS_ENOMEM)
        return PyObject_CallNoArgs(PyExc_MemoryError);
    const char *where = op->where ? op->where : "";
    /* the URL holds the key too: a long one keeps its start and end */
    char where_shown[256];
    size_t wlen = strlen(where);
    if (wlen < sizeof where_shown)
        memcpy(where_shown, where, wlen + 1);
    else
        snprintf(where_shown, sizeof where_shown, "%.160s...%s", where, where + wlen - 60);
    PyObject *shown = key_for_message(key);
    PyObject *msg =
        shown ? PyUnicode_FromFormat("%s %U failed (%s): %s [%s]", cfs_op_kind_name(op->kind),
                                     shown, cfs_status_name(status), message, where_shown)
              : NULL;
    Py_XDECREF(shown);
    if (!msg)
        return NULL;
    PyObject *args = PyTuple_Pack(1, msg);
    Py_DECREF(msg);
    PyObject *kw =
        args ? Py_BuildValue("{s:s,s:O,s:s,s:l,s:s,s:i}", "operation", cfs_op_kind_name(op->kind),
                             "key", key ? key : Py_None, "url", where, "status", op->http_status,
                             "reason", cfs_status_name(status), "attempts", op->attempts)
             : NULL;
    PyObject *exc = kw ? PyObject_Call(error_class(status), args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    return exc;
}

PyObject *cfs_py_batch_error(PyObject *failures, const char *what)
{
    PyObject *first = PyList_GET_ITEM(failures, 0);
    PyObject *msg = PyUnicode_FromFormat("%s: %zd of the keys failed; first: %S", what,
                                         PyList_GET_SIZE(failures), first);
    if (!msg)
        return NULL;
    PyObject *args = PyTuple_Pack(1, msg);
    Py_DECREF(msg);
    PyObject *kw = args ? Py_BuildValue("{s:O,s:s}", "errors", failures, "operation", what) : NULL;
    PyObject *exc = kw ? PyObject_Call(cfs_err.batch, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    return exc;
}

PyObject *cfs_py_raise_op(const cfs_op *op, PyObject *key)
{
    if (op->status == CFS_ENOTFOUND) {
        PyErr_SetObject(PyExc_KeyError, key ? key : Py_None);
        return NULL;
    }
    PyObject *exc = cfs_py_op_error(op, key);
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

PyObject *cfs_exc_take(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (!type)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
}

void cfs_exc_restore(PyObject *exc)
{
    if (!exc)
        return;
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, tb);
}

int cfs_py_range(PyObject *start_o, PyObject *end_o, cfs_range *r)
{
    if (start_o == Py_None) {
        *r = (cfs_range){ .kind = CFS_RANGE_NONE };
        return 0;
    }
    long long start = PyLong_AsLongLong(start_o);
    if (start == -1 && PyErr_Occurred())
        return -1;
    if (end_o == Py_None) {
        if (start < 0)
            *r = (cfs_range){ .kind = CFS_RANGE_SUFFIX, .length = -start };
        else
            *r = (cfs_range){ .kind = CFS_RANGE_FROM, .start = start };
        return 0;
    }
    long long end = PyLong_AsLongLong(end_o);
    if (end == -1 && PyErr_Occurred())
        return -1;
    if (start < 0 || end < start) {
        PyErr_Format(PyExc_ValueError, "invalid byte range [%lld, %lld)", start, end);
        return -1;
    }
    *r = (cfs_range){ .kind = CFS_RANGE_BOUNDED, .start = start, .end = end };
    return 0;
}
