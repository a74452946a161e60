/* The Completions type: the asyncio side of the engine. Ops are submitted with an
 * asyncio future; the engine thread queues each finished op and signals an eventfd that
 * the event loop watches (loop.add_reader); drain(), on the loop thread, resolves the
 * futures. No thread per call, and the engine never takes the GIL. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "python/blob.h"
#include "python/ops.h"
#include "python/pyutil.h"
#include "python/store.h"

typedef struct CompletionsObject {
    PyObject_HEAD
    int efd;
    pthread_mutex_t lock;   /* guards done */
    cfs_op *done;           /* finished, waiting for drain() */
    Py_ssize_t in_flight;   /* submitted and not yet drained (loop thread only) */
    /* the future methods called per op, interned once */
    PyObject *add_done_callback, *remove_done_callback, *done_name, *set_result, *set_exception;
} CompletionsObject;

#define CANCEL_FLAG_CAPSULE "cloudfiles_store cancel flag"

static void free_cancel_flag(PyObject *capsule)
{
    PyMem_Free(PyCapsule_GetPointer(capsule, CANCEL_FLAG_CAPSULE));
}

/* The future's done callback: a cancelled future gives up its op (engine.h). */
static PyObject *on_future_done(PyObject *capsule, PyObject *future)
{
    PyObject *cancelled = PyObject_CallMethod(future, "cancelled", NULL);
    if (!cancelled)
        return NULL;
    int yes = PyObject_IsTrue(cancelled);
    Py_DECREF(cancelled);
    if (yes < 0)
        return NULL;
    if (yes) {
        atomic_int *flag = PyCapsule_GetPointer(capsule, CANCEL_FLAG_CAPSULE);
        if (!flag)
            return NULL;
        atomic_store(flag, 1);
        cfs_engine_notice_cancel();
    }
    Py_RETURN_NONE;
}

static PyMethodDef on_future_done_def = {
    "on_future_done",
    (PyCFunction)on_future_done,
    METH_O,
    NULL,
};

/* The flag for op->cancel, which a done callback on the future sets if the future is
 * cancelled; NULL with an error set. The flag lives in a capsule, the callback's self,
 * which the op holds (p->on_cancel) until drain, while the engine may read the flag.
 * drain() takes the callback off before it resolves the future, so only a cancellation
 * costs the loop a callback. */
static const atomic_int *watch_cancel(CompletionsObject *c, cfs_pyop *p)
{
    atomic_int *flag = PyMem_Malloc(sizeof *flag);
    if (!flag) {
        PyErr_NoMemory();
        return NULL;
    }
    atomic_init(flag, 0);
    PyObject *capsule = PyCapsule_New(flag, CANCEL_FLAG_CAPSULE, free_cancel_flag);
    if (!capsule) {
        PyMem_Free(flag);
        return NULL;
    }
    p->on_cancel = PyCFunction_New(&on_future_done_def, capsule);
    Py_DECREF(capsule);
    PyObject *r = NULL;
    if (p->on_cancel)
        r = PyObject_CallMethodOneArg(p->future, c->add_done_callback, p->on_cancel);
    if (!r)
        return NULL;
    Py_DECREF(r);
    return flag;
}

PyTypeObject cfs_CompletionsType;

static void on_done(cfs_op *op, void *ctx)
{
    CompletionsObject *c = ctx;
    pthread_mutex_lock(&c->lock);
    int was_empty = c->done == NULL;
    op->next = c->done;
    c->done = op;
    pthread_mutex_unlock(&c->lock);
    if (was_empty) {
        uint64_t one = 1;
        /* can only fail if the counter would overflow: then it is already readable */
        ssize_t rc = write(c->efd, &one, sizeof one);
        (void)rc;
    }
}

/* Attach the future to a new op (NULL: it could not be built, an error is set), watch
 * for its cancelling, submit, count it. Consumes op in every case. */
static PyObject *submit(CompletionsObject *c, PyObject *future, cfs_op *op)
{
    if (!op)
        return NULL;
    cfs_pyop *p = cfs_pyop_of(op);
    p->future = Py_NewRef(future);
    const atomic_int *flag = watch_cancel(c, p);
    if (!flag)
        goto fail;
    Py_INCREF(c); /* the engine holds the queue until drain() hands the op back */
    if (cfs_pyop_submit(op, on_done, c, flag) < 0) {
        Py_DECREF(c);
        goto fail;
    }
    c->in_flight++;
    Py_RETURN_NONE;
fail:
    cfs_pyop_release(op);
    return NULL;
}

static PyObject *completions_get(CompletionsObject *c, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "store", "key", "future", "start", "end", NULL };
    StoreObject *s;
    PyObject *key, *future, *start = Py_None, *end = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OO|OO:get", kwlist, &cfs_StoreType, &s, &key,
                                     &future, &start, &end))
        return NULL;
    return submit(c, future, cfs_pyop_get(s, key, start, end));
}

static PyObject *completions_put(CompletionsObject *c, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "store", "key", "value", "future", "if_absent", NULL };
    StoreObject *s;
    PyObject *key, *value, *future;
    int if_absent = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OOO|p:put", kwlist, &cfs_StoreType, &s, &key,
                                     &value, &future, &if_absent))
        return NULL;
    return submit(c, future, cfs_pyop_put(s, key, value, if_absent));
}

/* The methods that take (store, key or prefix or keys, future): the op `build` makes. */
static PyObject *submit_keyed(CompletionsObject *c, PyObject *args, PyObject *kwargs,
                              const char *format, char **kwlist,
                              cfs_op *(*build)(StoreObject *, PyObject *))
{
    StoreObject *s;
    PyObject *key, *future;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, format, kwlist, &cfs_StoreType, &s, &key,
                                     &future))
        return NULL;
    return submit(c, future, build(s, key));
}

static char *key_kwlist[] = { "store", "key", "future", NULL };
static char *prefix_kwlist[] = { "store", "prefix", "future", NULL };
static char *keys_kwlist[] = { "store", "keys", "future", NULL };

/* resolves to None either way */
static cfs_op *build_delete(StoreObject *s, PyObject *key)
{
    return cfs_pyop_delete(s, key, 1);
}

static cfs_op *build_list(StoreObject *s, PyObject *prefix)
{
    return cfs_pyop_list(s, prefix, 1);
}

static cfs_op *build_list_dir(StoreObject *s, PyObject *prefix)
{
    return cfs_pyop_list(s, prefix, 0);
}

/* completions_<name>(store, key/prefix/keys, future): the op `build` makes */
#define KEYED_METHOD(name, kwlist, build)                                                       \
    static PyObject *completions_##name(CompletionsObject *c, PyObject *args, PyObject *kwargs) \
    {                                                                                           \
        return submit_keyed(c, args, kwargs, "O!OO:" #name, kwlist, build);                     \
    }

KEYED_METHOD(head, key_kwlist, cfs_pyop_head)
KEYED_METHOD(delete, key_kwlist, build_delete)
KEYED_METHOD(delete_many, keys_kwlist, cfs_pyop_delete_many)
KEYED_METHOD(list, prefix_kwlist, build_list)
KEYED_METHOD(list_dir, prefix_kwlist, build_list_dir)
KEYED_METHOD(rmdir, prefix_kwlist, cfs_pyop_rmdir)

/* A multi-key delete that failed for some keys: *exc = the BatchError naming them. */
static PyObject *failures_of(cfs_op *op, PyObject **exc)
{
    PyObject *failures = PyList_New(0);
    if (failures && cfs_pyop_add_failures(op, failures) == 0)
        *exc = cfs_py_batch_error(failures, "delete_many");
    Py_XDECREF(failures);
    return NULL;
}

/* The value a finished op resolves its future with; NULL + *exc for a failure, NULL with
 * an error set where building either failed. */
static PyObject *result_of(cfs_op *op, PyObject **exc)
{
    *exc = NULL;
    cfs_status st = op->status;
    switch (op->kind) {
    case CFS_OP_GET:
        if (st == CFS_OK)
            return cfs_blob_from_buf(&op->data); /* no copy */
        if (st == CFS_ENOTFOUND)
            Py_RETURN_NONE;
        if (st == CFS_ERANGE)
            return PyBytes_FromStringAndSize(NULL, 0);
        break;
    case CFS_OP_HEAD:
        if (st == CFS_OK)
            return PyLong_FromLongLong(op->size);
        if (st == CFS_ENOTFOUND)
            Py_RETURN_NONE;
        break;
    case CFS_OP_PUT:
        if (st == CFS_OK)
            Py_RETURN_TRUE;
        if (st == CFS_EEXISTS && op->if_none_match)
            Py_RETURN_FALSE;
        break;
    case CFS_OP_DELETE:
        if (st == CFS_OK || st == CFS_ENOTFOUND)
            Py_RETURN_NONE;
        break;
    case CFS_OP_RMDIR:
        if (st == CFS_OK)
            Py_RETURN_NONE;
        break;
    case CFS_OP_DELETE_MANY:
        if (!cfs_pyop_failed(op, 1))
            Py_RETURN_NONE;
        return failures_of(op, exc);
    case CFS_OP_COPY: /* Store.copy only */
        break;
    case CFS_OP_LIST:
        if (st == CFS_OK) {
            PyObject *list = PyList_New((Py_ssize_t)op->entries.len);
            for (size_t i = 0; list && i < op->entries.len; i++) {
                const cfs_entry *e = &op->entries.items[i];
                PyObject *name =
                    PyUnicode_DecodeUTF8(e->name, (Py_ssize_t)strlen(e->name), "surrogateescape");
                PyObject *t = name ? Py_BuildValue("(NLN)", name, (long long)e->size,
                                                   PyBool_FromLong(e->is_dir))
                                   : NULL;
                if (!t) {
                    Py_CLEAR(list);
                    break;
                }
                PyList_SET_ITEM(list, (Py_ssize_t)i, t);
            }
            return list;
        }
        break;
    }
    *exc = cfs_py_op_error(op, cfs_pyop_of(op)->key);
    return NULL;
}

/* Resolve one future, unless it was cancelled meanwhile. */
static int resolve(CompletionsObject *c, PyObject *future, PyObject *value, PyObject *exc)
{
    PyObject *done = PyObject_CallMethodNoArgs(future, c->done_name);
    if (!done)
        return -1;
    int is_done = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (is_done)
        return 0;
    PyObject *r = exc ? PyObject_CallMethodOneArg(future, c->set_exception, exc)
                      : PyObject_CallMethodOneArg(future, c->set_result, value);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

static PyObject *completions_drain(CompletionsObject *c, PyObject *unused)
{
    (void)unused;
    uint64_t count;
    if (read(c->efd, &count, sizeof count) < 0 && errno != EAGAIN)
        return PyErr_SetFromErrno(PyExc_OSError);
    pthread_mutex_lock(&c->lock);
    cfs_op *list = c->done;
    c->done = NULL;
    pthread_mutex_unlock(&c->lock);
    Py_ssize_t n = 0;
    int failed = 0;
    while (list) {
        cfs_op *op = list;
        list = op->next;
        cfs_pyop *p = cfs_pyop_of(op);
        PyObject *exc, *value = result_of(op, &exc);
        if (!value && !exc) {
            exc = cfs_exc_take(); /* building the result failed: that is the outcome */
            if (!exc)
                failed = 1;
        }
        /* the cancel watch is done with (were this to fail, for lack of memory, the
         * callback would only find the future resolved, not cancelled) */
        PyObject *r = PyObject_CallMethodOneArg(p->future, c->remove_done_callback, p->on_cancel);
        if (r)
            Py_DECREF(r);
        else
            PyErr_Clear();
        if (resolve(c, p->future, value, exc) < 0)
            failed = 1;
        Py_XDECREF(value);
        Py_XDECREF(exc);
        cfs_pyop_release(op);
        c->in_flight--;
        n++;
        Py_DECREF(c);
    }
    if (failed)
        return NULL;
    return PyLong_FromSsize_t(n);
}

static PyObject *completions_fileno(CompletionsObject *c, PyObject *unused)
{
    (void)unused;
    return PyLong_FromLong(c->efd);
}

static PyObject *completions_get_in_flight(CompletionsObject *c, void *closure)
{
    (void)closure;
    return PyLong_FromSsize_t(c->in_flight);
}

static PyObject *completions_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { NULL };
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, ":Completions", kwlist))
        return NULL;
    CompletionsObject *c = (CompletionsObject *)type->tp_alloc(type, 0);
    if (!c)
        return NULL;
    c->efd = -1;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        type->tp_free((PyObject *)c); /* not the dealloc: it destroys the lock */
        return PyErr_NoMemory();
    }
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(c);
        return NULL;
    }
    if (!(c->add_done_callback = PyUnicode_InternFromString("add_done_callback")) ||
        !(c->remove_done_callback = PyUnicode_InternFromString("remove_done_callback")) ||
        !(c->done_name = PyUnicode_InternFromString("done")) ||
        !(c->set_result = PyUnicode_InternFromString("set_result")) ||
        !(c->set_exception = PyUnicode_InternFromString("set_exception"))) {
        Py_DECREF(c);
        return NULL;
    }
    return (PyObject *)c;
}

static void completions_dealloc(CompletionsObject *c)
{
    /* no op can be in flight: each holds a reference */
    if (c->efd >= 0)
        close(c->efd);
    pthread_mutex_destroy(&c->lock);
    Py_XDECREF(c->add_done_callback);
    Py_XDECREF(c->remove_done_callback);
    Py_XDECREF(c->done_name);
    Py_XDECREF(c->set_result);
    Py_XDECREF(c->set_exception);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyMethodDef completions_methods[] = {
    { "get", (PyCFunction)(void (*)(void))completions_get, METH_VARARGS | METH_KEYWORDS,
      "get($self, /, store, key, future, start=None, end=None)\n--\n\nSubmit a read; resolves to a Blob (the bytes, "
      "without a copy), None if missing, b'' for a range past the end." },
    { "put", (PyCFunction)(void (*)(void))completions_put, METH_VARARGS | METH_KEYWORDS,
      "put($self, /, store, key, value, future, if_absent=False)\n--\n\nSubmit a write; resolves to True, or False when "
      "if_absent found the key present." },
    { "head", (PyCFunction)(void (*)(void))completions_head, METH_VARARGS | METH_KEYWORDS,
      "head($self, /, store, key, future)\n--\n\nSubmit a size lookup; resolves to the size, or None if missing." },
    { "delete", (PyCFunction)(void (*)(void))completions_delete, METH_VARARGS | METH_KEYWORDS,
      "delete($self, /, store, key, future)\n--\n\nSubmit a delete; resolves to None (missing keys too)." },
    { "delete_many", (PyCFunction)(void (*)(void))completions_delete_many,
      METH_VARARGS | METH_KEYWORDS,
      "delete_many($self, /, store, keys, future)\n--\n\nDelete 1 to store.delete_many_max keys in one request\n"
      "(S3 DeleteObjects, a GCS batch); resolves to None (missing keys too), or fails with a\n"
      "BatchError naming the keys that failed. ValueError where the store has no such request." },
    { "list", (PyCFunction)(void (*)(void))completions_list, METH_VARARGS | METH_KEYWORDS,
      "list($self, /, store, prefix, future)\n--\n\nSubmit a listing; resolves to [(key, size, False)] for every key below." },
    { "list_dir", (PyCFunction)(void (*)(void))completions_list_dir, METH_VARARGS | METH_KEYWORDS,
      "list_dir($self, /, store, prefix, future)\n--\n\nSubmit a listing; resolves to [(key, size, is_dir)] one level below." },
    { "rmdir", (PyCFunction)(void (*)(void))completions_rmdir, METH_VARARGS | METH_KEYWORDS,
      "rmdir($self, /, store, prefix, future)\n--\n\nRemove what is left of a prefix once its keys are gone." },
    { "drain", (PyCFunction)completions_drain, METH_NOARGS,
      "drain($self, /)\n--\n\nResolve the futures of every finished op; call on the loop thread when fileno() is "
      "readable. Returns how many." },
    { "fileno", (PyCFunction)completions_fileno, METH_NOARGS,
      "fileno($self, /)\n--\n\nReturn the eventfd that becomes readable when ops have finished." },
    { NULL },
};

static PyGetSetDef completions_getset[] = {
    { "in_flight", (getter)completions_get_in_flight, NULL, "Ops submitted and not yet drained.",
      NULL },
    { NULL },
};

PyTypeObject cfs_CompletionsType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cloudfiles_store._core.Completions",
    .tp_basicsize = sizeof(CompletionsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Completions()\n--\n\nAsyncio completion of engine ops through an eventfd.",
    .tp_new = completions_new,
    .tp_dealloc = (destructor)completions_dealloc,
    .tp_methods = completions_methods,
    .tp_getset = completions_getset,
};
