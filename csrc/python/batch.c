/* The Batch type: ops streamed from a Python iterable through a bounded window.
 * As an iterator (Store.iter_get) it yields (key, bytes or None) as transfers complete,
 * and raises BatchError at the end if any key failed. */
#include "python/batch.h"

#include <string.h>

#include "python/attrs.h"
#include "python/blob.h"
#include "python/pyutil.h"

struct BatchObject {
    PyObject_HEAD
    StoreObject *store;
    StoreObject *source;        /* BATCH_COPY: the store the sources are in */
    PyObject *iter;             /* NULL once exhausted or after an input error */
    batch_kind kind;
    cfs_waiter *waiter;
    int in_flight;
    int window;
    Py_ssize_t next_index;
    cfs_op *ready;              /* completed, not yet handed out */
    PyObject *failures;         /* list of exceptions */
    PyObject *input_exc;        /* the exception the input raised, kept for the end */
    int interrupted;
    int has_coding;             /* BATCH_PUT: coding given for this call */
    cfs_put_coding coding;
    int raw_reads;              /* BATCH_GET/RANGE: stored bytes, with their encoding */
    const cfs_object_attrs *put_attrs; /* BATCH_PUT: borrowed, or NULL (the store's) */
};

void cfs_batch_set_coding(BatchObject *b, const cfs_put_coding *pc, int raw_reads)
{
    b->has_coding = pc != NULL;
    if (pc)
        b->coding = *pc;
    b->raw_reads = raw_reads;
}

void cfs_batch_set_put_attrs(BatchObject *b, const cfs_object_attrs *attrs)
{
    b->put_attrs = attrs;
}

/* The op for one input item, shaped as the batch's kind says; NULL with an error set. */
static cfs_op *build_item(BatchObject *b, PyObject *obj)
{
    switch (b->kind) {
    case BATCH_GET: {
        cfs_op *op = cfs_pyop_get(b->store, obj, Py_None, Py_None);
        if (op)
            op->raw = b->raw_reads;
        return op;
    }
    case BATCH_DELETE:
        return cfs_pyop_delete(b->store, obj, 1); /* delitems, rmdir, clear ignore missing keys */
    case BATCH_PUT:
        if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2) {
            PyErr_Format(PyExc_TypeError, "setitems items must be (key, value) pairs, not %.100s",
                         Py_TYPE(obj)->tp_name);
            return NULL;
        }
        {
            cfs_op *op =
                cfs_pyop_put_coded(b->store, PyTuple_GET_ITEM(obj, 0), PyTuple_GET_ITEM(obj, 1), 0,
                                   b->has_coding ? &b->coding : NULL);
            if (op && b->put_attrs && cfs_pyop_set_attrs(op, b->put_attrs) < 0) {
                cfs_pyop_release(op);
                return NULL;
            }
            return op;
        }
    case BATCH_HEAD:
        return cfs_pyop_head(b->store, obj);
    case BATCH_COPY: {
        long long size = -1;
        if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) < 2 || PyTuple_GET_SIZE(obj) > 3) {
            PyErr_Format(PyExc_TypeError,
                         "copy items must be (source, destination, size), not %.100s",
                         Py_TYPE(obj)->tp_name);
            return NULL;
        }
        if (PyTuple_GET_SIZE(obj) == 3 && PyTuple_GET_ITEM(obj, 2) != Py_None) {
            size = PyLong_AsLongLong(PyTuple_GET_ITEM(obj, 2));
            if (size == -1 && PyErr_Occurred())
                return NULL;
        }
        return cfs_pyop_copy(b->store, b->source, PyTuple_GET_ITEM(obj, 0),
                             PyTuple_GET_ITEM(obj, 1), size);
    }
    case BATCH_RANGE:
        if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) < 2 || PyTuple_GET_SIZE(obj) > 3) {
            PyErr_Format(PyExc_TypeError, "range items must be (key, start, end), not %.100s",
                         Py_TYPE(obj)->tp_name);
            return NULL;
        }
        {
            cfs_op *op =
                cfs_pyop_get(b->store, PyTuple_GET_ITEM(obj, 0), PyTuple_GET_ITEM(obj, 1),
                             PyTuple_GET_SIZE(obj) == 3 ? PyTuple_GET_ITEM(obj, 2) : Py_None);
            if (op)
                op->raw = b->raw_reads;
            return op;
        }
    }
    PyErr_SetString(PyExc_SystemError, "unknown batch kind");
    return NULL;
}

/* Submit an op built for the next `n_items` items of the input. Returns 0, or -1 with an
 * error set (the op, NULL when it could not be built, is released). */
static int submit(BatchObject *b, cfs_op *op, Py_ssize_t n_items)
{
    if (!op)
        return -1;
    cfs_pyop_of(op)->index = b->next_index;
    if (cfs_pyop_submit(op, cfs_waiter_done, b->waiter, cfs_waiter_cancel_flag(b->waiter)) < 0) {
        cfs_pyop_release(op);
        return -1;
    }
    b->in_flight++;
    b->next_index += n_items;
    return 0;
}

/* Deletes on a backend that takes many keys per request: pull groups of up to
 * delete_many_max keys. A bad key ends the input; the keys before it still go. */
static void refill_groups(BatchObject *b, size_t group_max)
{
    while (b->iter && !b->interrupted && b->in_flight < b->window) {
        PyObject *keys = PyList_New(0);
        if (!keys) {
            b->input_exc = cfs_exc_take();
            Py_CLEAR(b->iter);
            return;
        }
        while (b->iter && (size_t)PyList_GET_SIZE(keys) < group_max) {
            PyObject *obj = PyIter_Next(b->iter);
            const char *k;
            Py_ssize_t klen;
            if (!obj || cfs_py_key(obj, 0, &k, &klen) < 0 || PyList_Append(keys, obj) < 0) {
                if (PyErr_Occurred())
                    b->input_exc = cfs_exc_take();
                Py_CLEAR(b->iter);
            }
            Py_XDECREF(obj);
        }
        Py_ssize_t n = PyList_GET_SIZE(keys);
        if (n > 0 && submit(b, cfs_pyop_delete_many(b->store, keys), n) < 0) {
            PyObject *exc = cfs_exc_take();
            if (b->input_exc)
                Py_XDECREF(exc); /* the input's own error, which ended the group, comes first */
            else
                b->input_exc = exc;
            Py_CLEAR(b->iter);
        }
        Py_DECREF(keys);
    }
}

/* Pull items until the window is full or the input ends. */
static void refill(BatchObject *b)
{
    size_t group_max = b->store->backend->ops->delete_many_max;
    if (b->kind == BATCH_DELETE && group_max > 1) {
        refill_groups(b, group_max);
        return;
    }
    while (b->iter && !b->interrupted && b->in_flight < b->window) {
        PyObject *obj = PyIter_Next(b->iter);
        if (!obj) {
            if (PyErr_Occurred())
                b->input_exc = cfs_exc_take();
            Py_CLEAR(b->iter);
            return;
        }
        int rc = submit(b, build_item(b, obj), 1);
        Py_DECREF(obj);
        if (rc < 0) {
            /* bad input: stop taking more, let what is in flight finish, then raise */
            b->input_exc = cfs_exc_take();
            Py_CLEAR(b->iter);
            return;
        }
    }
}

cfs_op *cfs_batch_next(BatchObject *b)
{
    for (;;) {
        refill(b);
        if (b->ready) {
            cfs_op *op = b->ready;
            b->ready = op->next;
            op->next = NULL;
            b->in_flight--;
            return op;
        }
        if (b->in_flight == 0)
            return NULL;
        /* Wake for a quarter of the window at a time, not for every completion: the engine
         * keeps the rest of the window busy meanwhile. A straggler holds the others back
         * for CFS_SIGNAL_CHECK_MS at most. */
        int want = b->window / 4;
        if (want > b->in_flight)
            want = b->in_flight;
        if (want < 1)
            want = 1;
        cfs_op *done;
        Py_BEGIN_ALLOW_THREADS
            /* bounded, so a Ctrl-C is seen while a transfer stalls */
            done = cfs_waiter_take(b->waiter, want, CFS_SIGNAL_CHECK_MS);
        Py_END_ALLOW_THREADS b->ready = done;
        if (!b->interrupted && PyErr_CheckSignals() < 0) {
            /* Ctrl-C: submit nothing more, give up what can be given up (engine.h); the
             * rest completes as usual */
            b->interrupted = 1;
            cfs_waiter_cancel(b->waiter);
            if (!b->input_exc)
                b->input_exc = cfs_exc_take();
            else
                PyErr_Clear();
        }
    }
}

int cfs_batch_record_failure(BatchObject *b, const cfs_op *op)
{
    return cfs_pyop_add_failures(op, b->failures);
}

int cfs_batch_finish(BatchObject *b, const char *what)
{
    if (b->input_exc) {
        cfs_exc_restore(b->input_exc);
        b->input_exc = NULL;
        return -1;
    }
    if (PyList_GET_SIZE(b->failures) == 0)
        return 0;
    PyObject *exc = cfs_py_batch_error(b->failures, what);
    if (exc) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return -1;
}

BatchObject *cfs_batch_new(StoreObject *store, PyObject *iterable, batch_kind kind)
{
    if (cfs_store_check_open(store) < 0)
        return NULL;
    /* a str is iterable, but "abc" is never meant as the keys "a", "b", "c" */
    if (PyUnicode_Check(iterable) || PyBytes_Check(iterable) || PyByteArray_Check(iterable)) {
        static const char *const items[] = {
            [BATCH_GET] = "keys",
            [BATCH_RANGE] = "(key, start, end) ranges",
            [BATCH_PUT] = "(key, value) pairs or a mapping",
            [BATCH_DELETE] = "keys",
            [BATCH_HEAD] = "keys",
            [BATCH_COPY] = "(source, destination, size) items",
        };
        PyErr_Format(PyExc_TypeError,
                     "expected an iterable of %s, not %.50s (put a single key in a list)",
                     items[kind], Py_TYPE(iterable)->tp_name);
        return NULL;
    }
    PyObject *iter = PyObject_GetIter(iterable);
    if (!iter)
        return NULL;
    BatchObject *b = PyObject_GC_New(BatchObject, &cfs_BatchType);
    if (!b) {
        Py_DECREF(iter);
        return NULL;
    }
    b->store = (StoreObject *)Py_NewRef(store);
    b->source = NULL;
    b->iter = iter;
    b->kind = kind;
    b->in_flight = 0;
    b->next_index = 0;
    b->ready = NULL;
    b->input_exc = NULL;
    b->interrupted = 0;
    b->has_coding = 0;
    b->raw_reads = 0;
    b->put_attrs = NULL;
    /* twice the store's concurrency: the engine always has the next op queued */
    b->window = 2 * cfs_limiter_config(store->limiter)->concurrency;
    b->failures = PyList_New(0);
    b->waiter = cfs_waiter_new();
    PyObject_GC_Track(b);
    if (!b->failures || !b->waiter) {
        Py_DECREF(b);
        PyErr_NoMemory();
        return NULL;
    }
    return b;
}

BatchObject *cfs_batch_new_copy(StoreObject *store, StoreObject *source, PyObject *iterable)
{
    if (cfs_store_check_open(source) < 0)
        return NULL;
    if (!cfs_pyop_can_copy_from(store, source)) {
        PyErr_Format(PyExc_ValueError, "a %s store cannot copy from this %s store on the server",
                     store->backend->ops->name, source->backend->ops->name);
        return NULL;
    }
    BatchObject *b = cfs_batch_new(store, iterable, BATCH_COPY);
    if (b)
        b->source = (StoreObject *)Py_NewRef((PyObject *)source);
    return b;
}

/* Wait out whatever is still in flight: its buffers and waiter belong to this batch. No
 * one wants the results any more: what can be given up is. */
static void drain(BatchObject *b)
{
    Py_CLEAR(b->iter);
    if (b->in_flight > 0)
        cfs_waiter_cancel(b->waiter);
    while (b->in_flight > 0) {
        while (b->ready) {
            cfs_op *op = b->ready;
            b->ready = op->next;
            b->in_flight--;
            cfs_pyop_release(op);
        }
        if (b->in_flight == 0)
            break;
        cfs_op *done;
        Py_BEGIN_ALLOW_THREADS done = cfs_waiter_take(b->waiter, 1, -1);
        Py_END_ALLOW_THREADS b->ready = done;
    }
}

static void batch_dealloc(BatchObject *b)
{
    PyObject_GC_UnTrack(b);
    PyObject *exc = cfs_exc_take();
    if (b->waiter)
        drain(b);
    cfs_exc_restore(exc);
    cfs_waiter_free(b->waiter);
    Py_XDECREF(b->store);
    Py_XDECREF(b->source);
    Py_XDECREF(b->failures);
    Py_XDECREF(b->input_exc);
    PyObject_GC_Del(b);
}

static int batch_traverse(BatchObject *b, visitproc visit, void *arg)
{
    Py_VISIT(b->store);
    Py_VISIT(b->source);
    Py_VISIT(b->iter);
    Py_VISIT(b->failures);
    Py_VISIT(b->input_exc);
    return 0;
}

static PyObject *batch_iternext(BatchObject *b)
{
    for (;;) {
        cfs_op *op = cfs_batch_next(b);
        if (!op) {
            if (!PyErr_Occurred())
                cfs_batch_finish(b, "iter_get");
            return NULL;
        }
        PyObject *key = cfs_pyop_of(op)->key;
        PyObject *result = NULL;
        if (op->status == CFS_OK) {
            PyObject *data = b->raw_reads
                                 ? cfs_py_raw_result(op, 0)
                                 : cfs_bytes_from_buf(&op->data); /* no copy where it can */
            result = data ? PyTuple_Pack(2, key, data) : NULL;
            Py_XDECREF(data);
        } else if (op->status == CFS_ENOTFOUND) {
            result = PyTuple_Pack(2, key, Py_None);
        } else if (cfs_batch_record_failure(b, op) == 0) {
            cfs_pyop_release(op);
            continue;
        }
        cfs_pyop_release(op);
        return result;
    }
}

PyTypeObject cfs_BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cloudfiles_store._core.Batch",
    .tp_basicsize = sizeof(BatchObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Results of a batch, yielded as the transfers complete.",
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_traverse = (traverseproc)batch_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)batch_iternext,
};
