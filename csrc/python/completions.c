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

/* What an async op carries for its caller. */
typedef struct async_item {
    PyObject *future;
    PyObject *store;        /* its backend and limiter must outlive the op */
    PyObject *on_cancel;    /* the future's done callback that gives the op up (watch_cancel) */
    Py_buffer view;
    int has_view;
} async_item;

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
    "on_future_done", (PyCFunction)on_future_done, METH_O, NULL,
};

/* Point op->cancel at a flag that a done callback on the future sets if the future is
 * cancelled. The flag lives in a capsule, the callback's self, which the item holds until
 * drain (while the engine may read the flag). drain() takes the callback off before it
 * resolves the future, so only a cancellation costs the loop a callback. */
static int watch_cancel(CompletionsObject *c, async_item *it, cfs_op *op)
{
    atomic_int *flag = PyMem_Malloc(sizeof *flag);
    if (!flag) {
        PyErr_NoMemory();
        return -1;
    }
    atomic_init(flag, 0);
    PyObject *capsule = PyCapsule_New(flag, CANCEL_FLAG_CAPSULE, free_cancel_flag);
    if (!capsule) {
        PyMem_Free(flag);
        return -1;
    }
    it->on_cancel = PyCFunction_New(&on_future_done_def, capsule);
    Py_DECREF(capsule);
    PyObject *r = NULL;
    if (it->on_cancel)
        r = PyObject_CallMethodOneArg(it->future, c->add_done_callback, it->on_cancel);
    if (!r)
        return -1;
    Py_DECREF(r);
    op->cancel = flag;
    return 0;
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

static void item_free(async_item *it)
{
    Py_XDECREF(it->future);
    Py_XDECREF(it->store);
    Py_XDECREF(it->on_cancel);
    if (it->has_view)
        PyBuffer_Release(&it->view);
    PyMem_Free(it);
}

/* Attach the future, submit, count it. Consumes op in every case. */
static PyObject *submit(CompletionsObject *c, StoreObject *s, cfs_op *op, PyObject *future,
                        PyObject *value)
{
    async_item *it = PyMem_Calloc(1, sizeof *it);
    if (!it) {
        cfs_op_free(op);
        return PyErr_NoMemory();
    }
    it->future = Py_NewRef(future);
    it->store = Py_NewRef((PyObject *)s);
    op->caller = it;
    if (watch_cancel(c, it, op) < 0)
        goto fail;
    if (value) {
        if (PyObject_GetBuffer(value, &it->view, PyBUF_CONTIG_RO) < 0) {
            PyErr_Format(PyExc_TypeError, "value must support the buffer protocol, not %.100s",
                         Py_TYPE(value)->tp_name);
            goto fail;
        }
        it->has_view = 1;
        op->body = it->view.buf;
        op->body_len = (size_t)it->view.len;
    }
    op->limiter = s->limiter;
    op->on_done = on_done;
    op->ctx = c;
    Py_INCREF(c); /* the engine holds the queue until drain() hands the op back */
    if (cfs_engine_submit(op) < 0) {
        Py_DECREF(c);
        PyErr_SetString(cfs_err.base, "the transfer engine could not start");
        goto fail;
    }
    c->in_flight++;
    Py_RETURN_NONE;
fail:
    item_free(it);
    op->caller = NULL;
    cfs_op_free(op);
    return NULL;
}

static int check_store(PyObject *store)
{
    if (!PyObject_TypeCheck(store, &cfs_StoreType)) {
        PyErr_Format(PyExc_TypeError, "expected a Store, not %.100s", Py_TYPE(store)->tp_name);
        return -1;
    }
    return 0;
}

static PyObject *completions_get(CompletionsObject *c, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "store", "key", "future", "start", "end", NULL };
    PyObject *store, *key, *future, *start = Py_None, *end = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|OO:get", kwlist, &store, &key, &future,
                                     &start, &end) || check_store(store) < 0)
        return NULL;
    cfs_range r;
    if (cfs_py_range(start, end, &r) < 0)
        return NULL;
    cfs_op *op = cfs_store_key_op((StoreObject *)store, CFS_OP_GET, key, 0);
    if (!op)
        return NULL;
    op->range = r;
    return submit(c, (StoreObject *)store, op, future, NULL);
}

static PyObject *completions_put(CompletionsObject *c, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "store", "key", "value", "future", "if_absent", NULL };
    PyObject *store, *key, *value, *future;
    int if_absent = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO|p:put", kwlist, &store, &key, &value,
                                     &future, &if_absent) || check_store(store) < 0)
        return NULL;
    cfs_op *op = cfs_store_key_op((StoreObject *)store, CFS_OP_PUT, key, 0);
    if (!op)
        return NULL;
    op->if_none_match = if_absent;
    return submit(c, (StoreObject *)store, op, future, value);
}

/* head, delete, list, rmdir: (store, key, future) */
static PyObject *submit_simple(CompletionsObject *c, PyObject *args, cfs_op_kind kind, int prefix,
                               int recursive, const char *name)
{
    PyObject *store, *key, *future;
    if (!PyArg_ParseTuple(args, "OOO", &store, &key, &future)) {
        PyErr_Format(PyExc_TypeError, "%s(store, key, future)", name);
        return NULL;
    }
    if (check_store(store) < 0)
        return NULL;
    cfs_op *op = cfs_store_key_op((StoreObject *)store, kind, key, prefix);
    if (!op)
        return NULL;
    op->recursive = recursive;
    op->missing_ok = kind == CFS_OP_DELETE; /* resolves to None either way */
    return submit(c, (StoreObject *)store, op, future, NULL);
}

static PyObject *completions_head(CompletionsObject *c, PyObject *args)
{
    return submit_simple(c, args, CFS_OP_HEAD, 0, 0, "head");
}

static PyObject *completions_delete(CompletionsObject *c, PyObject *args)
{
    return submit_simple(c, args, CFS_OP_DELETE, 0, 0, "delete"); /* sets missing_ok */
}

static PyObject *completions_list(CompletionsObject *c, PyObject *args)
{
    return submit_simple(c, args, CFS_OP_LIST, 1, 1, "list");
}

static PyObject *completions_list_dir(CompletionsObject *c, PyObject *args)
{
    return submit_simple(c, args, CFS_OP_LIST, 1, 0, "list_dir");
}

static PyObject *completions_rmdir(CompletionsObject *c, PyObject *args)
{
    return submit_simple(c, args, CFS_OP_RMDIR, 1, 0, "rmdir");
}

/* The value a finished op resolves its future with; NULL + *exc for a failure. */
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
    case CFS_OP_DELETE_MANY: /* batches only */
    case CFS_OP_COPY:        /* Store.copy only */
        break;
    case CFS_OP_LIST:
        if (st == CFS_OK) {
            PyObject *list = PyList_New((Py_ssize_t)op->entries.len);
            for (size_t i = 0; list && i < op->entries.len; i++) {
                const cfs_entry *e = &op->entries.items[i];
                PyObject *name = PyUnicode_DecodeUTF8(e->name, (Py_ssize_t)strlen(e->name), "surrogateescape");
                PyObject *t = name ? Py_BuildValue("(NLN)", name, (long long)e->size,
                                                   PyBool_FromLong(e->is_dir)) : NULL;
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
    PyObject *key = PyUnicode_DecodeUTF8(op->key, (Py_ssize_t)strlen(op->key), "surrogateescape");
    if (!key)
        return NULL;
    *exc = cfs_py_op_error(op, key);
    Py_DECREF(key);
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
        async_item *it = op->caller;
        PyObject *exc, *value = result_of(op, &exc);
        if (!value && !exc) {
            exc = cfs_exc_take(); /* building the result failed: that is the outcome */
            if (!exc)
                failed = 1;
        }
        /* the cancel watch is done with (were this to fail, for lack of memory, the
         * callback would only find the future resolved, not cancelled) */
        PyObject *r = PyObject_CallMethodOneArg(it->future, c->remove_done_callback, it->on_cancel);
        if (r)
            Py_DECREF(r);
        else
            PyErr_Clear();
        if (resolve(c, it->future, value, exc) < 0)
            failed = 1;
        Py_XDECREF(value);
        Py_XDECREF(exc);
        item_free(it);
        op->caller = NULL;
        cfs_op_free(op);
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
      "get(store, key, future, start=None, end=None): resolves to a Blob (the bytes, "
      "without a copy), None if missing, b'' for a range past the end." },
    { "put", (PyCFunction)(void (*)(void))completions_put, METH_VARARGS | METH_KEYWORDS,
      "put(store, key, value, future, if_absent=False): resolves to True, or False when "
      "if_absent found the key present." },
    { "head", (PyCFunction)completions_head, METH_VARARGS,
      "head(store, key, future): resolves to the size, or None if missing." },
    { "delete", (PyCFunction)completions_delete, METH_VARARGS,
      "delete(store, key, future): resolves to None (missing keys too)." },
    { "list", (PyCFunction)completions_list, METH_VARARGS,
      "list(store, prefix, future): resolves to [(key, size, False)] for every key below." },
    { "list_dir", (PyCFunction)completions_list_dir, METH_VARARGS,
      "list_dir(store, prefix, future): resolves to [(key, size, is_dir)] one level below." },
    { "rmdir", (PyCFunction)completions_rmdir, METH_VARARGS,
      "rmdir(store, prefix, future): remove what is left of a prefix once its keys are gone." },
    { "drain", (PyCFunction)completions_drain, METH_NOARGS,
      "Resolve the futures of every finished op; call on the loop thread when fileno() is "
      "readable. Returns how many." },
    { "fileno", (PyCFunction)completions_fileno, METH_NOARGS,
      "The eventfd that becomes readable when ops have finished." },
    { NULL },
};

static PyGetSetDef completions_getset[] = {
    { "in_flight", (getter)completions_get_in_flight, NULL, "Ops submitted and not yet drained.", NULL },
    { NULL },
};

PyTypeObject cfs_CompletionsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cloudfiles_store._core.Completions",
    .tp_basicsize = sizeof(CompletionsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Completions(): asyncio completion of engine ops through an eventfd.",
    .tp_new = completions_new,
    .tp_dealloc = (destructor)completions_dealloc,
    .tp_methods = completions_methods,
    .tp_getset = completions_getset,
};
