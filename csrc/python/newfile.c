/* The NewFile type (Store._new_file, file:// stores only): one new object written piece by
 * piece, for a copy that arrives as ranges (cloudfiles_store/_transfer.py): the pieces go
 * to fileno() with os.pwrite at their offsets, then commit() puts the file in place as the
 * key, or discard() gives it up. Until then the file is unnamed (or hidden) in the key's
 * directory; a writer that dies leaves nothing under the key. Everything about paths is in
 * backends/file.c; the syscalls that may block run without the GIL.
 *
 * A NewFile is meant for one thread at a time. While commit() runs (GIL released) another
 * thread's call is refused rather than wait. */
#include "python/newfile.h"

#include "backends/file.h"
#include <string.h>

#include "python/pyutil.h"
#include "util/codec.h"

typedef struct NewFileObject {
    PyObject_HEAD
    cfs_file_writer *writer; /* NULL once committed or discarded */
    cfs_op *op;              /* a PUT of the key: where (the path) and what failed */
    PyObject *key;           /* str */
    const char *ended;       /* "committed" or "discarded" once writer is NULL */
    int committing;          /* commit() runs without the GIL: writer is its own */
} NewFileObject;

PyTypeObject cfs_NewFileType;

PyObject *cfs_newfile_open(StoreObject *s, PyObject *key)
{
    cfs_op *op = cfs_store_file_op(s, key, CFS_OP_PUT, "_new_file");
    if (!op)
        return NULL;
    NewFileObject *o = PyObject_New(NewFileObject, &cfs_NewFileType);
    if (!o) {
        cfs_op_free(op);
        return NULL;
    }
    o->writer = NULL;
    o->ended = "discarded";
    o->committing = 0;
    o->key = Py_NewRef(key);
    o->op = op;
    cfs_backend *b = s->backend; /* alive while s is: close() only marks it closed */
    PyThreadState *ts = PyEval_SaveThread();
    cfs_file_writer *w = cfs_file_writer_open(b, o->op);
    PyEval_RestoreThread(ts);
    o->op->backend = NULL; /* the writer holds nothing of the store; neither does the op */
    if (!w) {
        cfs_py_raise_op(o->op, key);
        Py_DECREF(o);
        return NULL;
    }
    o->writer = w;
    o->ended = NULL;
    return (PyObject *)o;
}

/* 0 if the file is still being written; else ValueError naming the key and why not. */
static int check_writing(NewFileObject *o)
{
    if (o->committing) {
        PyErr_Format(PyExc_ValueError, "new file %R: commit() is running in another thread", o->key);
        return -1;
    }
    if (!o->writer) {
        PyErr_Format(PyExc_ValueError, "new file %R is already %s", o->key, o->ended);
        return -1;
    }
    return 0;
}

static PyObject *newfile_fileno(NewFileObject *o, PyObject *unused)
{
    (void)unused;
    if (check_writing(o) < 0)
        return NULL;
    return PyLong_FromLong(cfs_file_writer_fd(o->writer));
}

static PyObject *newfile_commit(NewFileObject *o, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "encoding", NULL };
    PyObject *encoding = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:commit", kwlist, &encoding))
        return NULL;
    if (check_writing(o) < 0)
        return NULL;
    const char *enc = NULL;
    cfs_codec codec = CFS_CODEC_NONE;
    if (encoding != Py_None) {
        if (!PyUnicode_Check(encoding)) {
            PyErr_Format(PyExc_TypeError, "commit: encoding must be a str or None, not %s",
                         Py_TYPE(encoding)->tp_name);
            return NULL;
        }
        enc = PyUnicode_AsUTF8(encoding);
        if (!enc)
            return NULL;
        if (cfs_codec_parse(enc, &codec) < 0) {
            PyErr_Format(PyExc_ValueError,
                         "commit %R: encoding %R is not one of 'gzip', 'br', 'zstd' or None",
                         o->key, encoding);
            return NULL;
        }
    }
    const char *name = cfs_codec_name(codec);
    free(o->op->attrs.content_encoding);
    o->op->attrs.content_encoding = NULL;
    if (name && cfs_attr_set(&o->op->attrs.content_encoding, name, strlen(name)) < 0)
        return PyErr_NoMemory();
    cfs_file_writer *w = o->writer;
    o->committing = 1;
    PyThreadState *ts = PyEval_SaveThread();
    cfs_file_writer_commit(w, o->op); /* frees w, in place or not */
    PyEval_RestoreThread(ts);
    o->committing = 0;
    o->writer = NULL;
    o->ended = "committed";
    if (o->op->status != CFS_OK) {
        o->ended = "discarded (its commit failed)";
        return cfs_py_raise_op(o->op, o->key);
    }
    Py_RETURN_NONE;
}

static PyObject *newfile_discard(NewFileObject *o, PyObject *unused)
{
    (void)unused;
    if (o->committing) {
        PyErr_Format(PyExc_ValueError, "new file %R: commit() is running in another thread", o->key);
        return NULL;
    }
    if (o->writer) {
        cfs_file_writer *w = o->writer;
        o->writer = NULL;
        o->ended = "discarded";
        PyThreadState *ts = PyEval_SaveThread();
        cfs_file_writer_discard(w);
        PyEval_RestoreThread(ts);
    }
    Py_RETURN_NONE;
}

static PyObject *newfile_enter(NewFileObject *o, PyObject *unused)
{
    (void)unused;
    if (check_writing(o) < 0)
        return NULL;
    return Py_NewRef(o);
}

/* Leaving a with block discards the file unless it was committed (after an exception
 * too): a with block never leaves half a file behind. */
static PyObject *newfile_exit(NewFileObject *o, PyObject *args)
{
    (void)args;
    PyObject *none = newfile_discard(o, NULL);
    if (!none)
        return NULL;
    Py_DECREF(none);
    Py_RETURN_FALSE; /* an exception goes on */
}

static void newfile_dealloc(NewFileObject *o)
{
    cfs_file_writer *w = o->writer;
    o->writer = NULL;
    if (w) { /* freeing a large file's blocks takes a while; nothing else can reach o now */
        PyThreadState *ts = PyEval_SaveThread();
        cfs_file_writer_discard(w);
        PyEval_RestoreThread(ts);
    }
    cfs_op_free(o->op);
    Py_XDECREF(o->key);
    PyObject_Free(o);
}

static PyObject *newfile_repr(NewFileObject *o)
{
    const char *where = o->op && o->op->where ? o->op->where : "?";
    return PyUnicode_FromFormat("<NewFile %R at %s%s%s>", o->key, where, o->ended ? ", " : "",
                                o->ended ? o->ended : "");
}

static PyObject *newfile_get_key(NewFileObject *o, void *closure)
{
    (void)closure;
    return Py_NewRef(o->key);
}

static PyObject *newfile_get_closed(NewFileObject *o, void *closure)
{
    (void)closure;
    return PyBool_FromLong(o->writer == NULL && !o->committing);
}

static PyMethodDef newfile_methods[] = {
    { "fileno", (PyCFunction)newfile_fileno, METH_NOARGS,
      "fileno($self, /)\n--\n\n"
      "The file's descriptor, open for writing (os.pwrite at any offset) until commit() or\n"
      "discard(); ValueError after them." },
    { "commit", (PyCFunction)(void (*)(void))newfile_commit, METH_VARARGS | METH_KEYWORDS,
      "commit($self, /, encoding=None)\n--\n\n"
      "Put the file in place as the key (key.gz, key.br, key.zstd for the encoding its bytes\n"
      "are in: 'gzip', 'br', 'zstd'), removing the key's other variants; flushed first on a\n"
      "durable store. Once only: ValueError after commit() or discard()." },
    { "discard", (PyCFunction)newfile_discard, METH_NOARGS,
      "discard($self, /)\n--\n\n"
      "Give the file up: nothing of it stays. Does nothing after commit() or discard()." },
    { "__enter__", (PyCFunction)newfile_enter, METH_NOARGS, NULL },
    { "__exit__", (PyCFunction)newfile_exit, METH_VARARGS, NULL },
    { NULL },
};

static PyGetSetDef newfile_getset[] = {
    { "key", (getter)newfile_get_key, NULL, "The key the file is written for.", NULL },
    { "closed", (getter)newfile_get_closed, NULL, "Whether it was committed or discarded.", NULL },
    { NULL },
};

PyTypeObject cfs_NewFileType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cloudfiles_store._core.NewFile",
    .tp_basicsize = sizeof(NewFileObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A new object of a file:// store written piece by piece (Store._new_file):\n"
              "os.pwrite to fileno(), then commit() or discard(). A with block discards\n"
              "whatever is not committed when it ends.",
    .tp_dealloc = (destructor)newfile_dealloc,
    .tp_repr = (reprfunc)newfile_repr,
    .tp_methods = newfile_methods,
    .tp_getset = newfile_getset,
};
