/* cfs_bytes_from_buf: a bytes object of a body without a copy where the interpreter allows
 * it: the body's block becomes the bytes object where it lies (buf.h explains the layout).
 *
 * The Blob type: an object's bytes as the engine received them, handed to Python without
 * a copy. Read-only buffer protocol (numpy.frombuffer, memoryview, zarr's buffers take it
 * as is), len(), bytes(), and equality with any bytes-like object. The asyncio path uses
 * it: a copy of every chunk into a new bytes object was most of the CPU of a zarr read. */
#include "python/blob.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct BlobObject {
    PyObject_HEAD
    char *data;         /* the engine's body buffer; given back to its pool here */
    Py_ssize_t len;
    size_t cap;
} BlobObject;

PyTypeObject cfs_BlobType;

PyObject *cfs_blob_from_buf(cfs_buf *b)
{
    BlobObject *o = PyObject_New(BlobObject, &cfs_BlobType);
    if (!o)
        return NULL;
    size_t len;
    o->data = cfs_buf_take(b, &len, &o->cap);
    o->len = (Py_ssize_t)len;
    return (PyObject *)o;
}

/* Bodies larger than this become bytes objects where they lie when they can: below it
 * CPython's own small-object allocator would hold the bytes, and a copy costs little. */
#define BYTES_IN_PLACE_MIN 512

#if PY_VERSION_HEX < 0x030D0000
static const char *allocator_name(void)
{
    return _PyMem_GetCurrentAllocatorName();
}
#else
/* Python 3.13 no longer declares _PyMem_GetCurrentAllocatorName but still exports it:
 * looked up once, so that an interpreter without it only means copies. */
static const char *(*g_allocator_name)(void);
static pthread_once_t g_allocator_name_once = PTHREAD_ONCE_INIT;

static void find_allocator_name(void)
{
    *(void **)&g_allocator_name = dlsym(RTLD_DEFAULT, "_PyMem_GetCurrentAllocatorName");
}

static const char *allocator_name(void)
{
    pthread_once(&g_allocator_name_once, find_allocator_name);
    return g_allocator_name ? g_allocator_name() : NULL;
}
#endif

/* Whether a bytes object's memory is freed with free(): CPython frees bytes objects
 * through PyObject_Free, which hands any block outside its small-object arenas to
 * free() under the default allocators ("pymalloc", "malloc"). Not under debug hooks,
 * tracemalloc (whose accounting would miss the block), mimalloc or a custom allocator. */
static int bytes_freed_with_free(void)
{
    if (offsetof(PyBytesObject, ob_sval) != CFS_BUF_HEAP_HEADER)
        return 0;
    const char *name = allocator_name();
    return name && (strcmp(name, "pymalloc") == 0 || strcmp(name, "malloc") == 0);
}

/* A bytes object made of a buffer's own block (cfs_buf_release_block), whose first
 * CFS_BUF_HEAP_HEADER bytes become the object's header: no copy, no fresh memory. */
static PyObject *bytes_in_place(char *block, size_t len)
{
    PyBytesObject *o = (PyBytesObject *)block;
    (void)PyObject_InitVar((PyVarObject *)o, &PyBytes_Type, (Py_ssize_t)len);
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* ob_shash, 3.12 */
#endif
    o->ob_shash = -1;
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
    o->ob_sval[len] = '\0';
    return (PyObject *)o;
}

PyObject *cfs_bytes_from_buf(cfs_buf *b)
{
    if (b->len > (size_t)PY_SSIZE_T_MAX)
        return PyErr_NoMemory();
    size_t len = b->len;
    if (len > BYTES_IN_PLACE_MIN && bytes_freed_with_free()) {
        char *block = cfs_buf_release_block(b);
        if (block)
            return bytes_in_place(block, len);
    }
    return PyBytes_FromStringAndSize(b->data, (Py_ssize_t)len);
}

static void blob_dealloc(BlobObject *o)
{
    cfs_buf_pool_put(o->data, o->cap);
    PyObject_Free(o);
}

static int blob_getbuffer(BlobObject *o, Py_buffer *view, int flags)
{
    static char empty[1];
    /* immutable: views need no bookkeeping */
    return PyBuffer_FillInfo(view, (PyObject *)o, o->data ? o->data : empty, o->len, 1, flags);
}

static Py_ssize_t blob_length(BlobObject *o)
{
    return o->len;
}

static PyObject *blob_bytes(BlobObject *o, PyObject *unused)
{
    (void)unused;
    return PyBytes_FromStringAndSize(o->data, o->len);
}

static PyObject *blob_richcompare(BlobObject *o, PyObject *other, int op)
{
    if (op != Py_EQ && op != Py_NE)
        Py_RETURN_NOTIMPLEMENTED;
    Py_buffer view;
    if (PyObject_GetBuffer(other, &view, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    int eq = view.len == o->len && (o->len == 0 || memcmp(view.buf, o->data, (size_t)o->len) == 0);
    PyBuffer_Release(&view);
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static PyObject *blob_repr(BlobObject *o)
{
    return PyUnicode_FromFormat("<Blob of %zd bytes>", o->len);
}

static PyBufferProcs blob_as_buffer = {
    .bf_getbuffer = (getbufferproc)blob_getbuffer,
};

static PySequenceMethods blob_as_sequence = {
    .sq_length = (lenfunc)blob_length,
};

static PyMethodDef blob_methods[] = {
    { "__bytes__", (PyCFunction)blob_bytes, METH_NOARGS,
      "__bytes__($self, /)\n--\n\nReturn a copy as bytes." },
    { NULL },
};

PyTypeObject cfs_BlobType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cloudfiles_store._core.Blob",
    .tp_basicsize = sizeof(BlobObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "An object's bytes as received, without a copy (read-only buffer).",
    .tp_dealloc = (destructor)blob_dealloc,
    .tp_repr = (reprfunc)blob_repr,
    .tp_richcompare = (richcmpfunc)blob_richcompare,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_as_buffer = &blob_as_buffer,
    .tp_as_sequence = &blob_as_sequence,
    .tp_methods = blob_methods,
};
