/* The Batch type: ops streamed from a Python iterable through a bounded window.
 * As an iterator (Store.iter_get) it yields (key, bytes or None) as transfers complete,
 * and raises BatchError at the end if any key failed. */
#include "python/batch.h"

#include <string.h>

#include "python/blob.h"
#include "python/pyutil.h"

struct BatchObject {
    PyObject_HEAD
    StoreObject *store;
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
};

static void item_free(batch_item *it)
{
    if (!it)
        return;
    Py_XDECREF(it->key);
    if (it->has_view)
        PyBuffer_Release(&it->view);
    PyMem_Free(it);
}

void cfs_batch_release(cfs_op *op)
{
    if (!op)
        return;
    item_free(op->caller);
    op->caller = NULL;
    cfs_op_free(op);
}

static cfs_op_kind op_kind(batch_kind k)
{
    switch (k) {
    case BATCH_GET:
    case BATCH_RANGE: return CFS_OP_GET;
    case BATCH_PUT: return CFS_OP_PUT;
    case BATCH_DELETE: return CFS_OP_DELETE;
    }
    return CFS_OP_GET;
}

/* Turn one input item into a submitted op. Returns 0, or -1 with an error set. */
static int submit_item(BatchObject *b, PyObject *obj)
{
    PyObject *key = obj, *value = NULL, *start = NULL, *end = Py_None;
    if (b->kind == BATCH_PUT) {
        if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2) {
            PyErr_Format(PyExc_TypeError, "setitems items must be (key, value) pairs, not %.100s",
                         Py_TYPE(obj)->tp_name);
            return -1;
        }
        key = PyTuple_GET_ITEM(obj, 0);
        value = PyTuple_GET_ITEM(obj, 1);
    } else if (b->kind == BATCH_RANGE) {
        if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) < 2 || PyTuple_GET_SIZE(obj) > 3) {
            PyErr_Format(PyExc_TypeError, "range items must be (key, start, end), not %.100s",
                         Py_TYPE(obj)->tp_name);
            return -1;
        }
        key = PyTuple_GET_ITEM(obj, 0);
        start = PyTuple_GET_ITEM(obj, 1);
        if (PyTuple_GET_SIZE(obj) == 3)
            end = PyTuple_GET_ITEM(obj, 2);
    }
    const char *k;
    Py_ssize_t klen;
    if (cfs_py_key(key, 0, &k, &klen) < 0)
        return -1;
    batch_item *it = PyMem_Calloc(1, sizeof *it);
    if (!it) {
        PyErr_NoMemory();
        return -1;
    }
    it->key = Py_NewRef(key);
    it->index = b->next_index;
    cfs_op *op = cfs_op_new(op_kind(b->kind), b->store->backend, k, (size_t)klen);
    if (!op) {
        item_free(it);
        PyErr_NoMemory();
        return -1;
    }
    op->caller = it;
    op->missing_ok = b->kind == BATCH_DELETE; /* delitems, rmdir, clear ignore missing keys */
    if (b->kind == BATCH_RANGE && cfs_py_range(start, end, &op->range) < 0)
        goto fail;
    if (value) {
        if (PyObject_GetBuffer(value, &it->view, PyBUF_CONTIG_RO) < 0) {
            PyErr_Format(PyExc_TypeError,
                         "value for key %R must support the buffer protocol (bytes, "
                         "bytearray, memoryview, numpy array), not %.100s",
                         key, Py_TYPE(value)->tp_name);
            goto fail;
        }
        it->has_view = 1;
        op->body = it->view.buf;
        op->body_len = (size_t)it->view.len;
    }
    op->limiter = b->store->limiter;
    op->on_done = cfs_waiter_done;
    op->ctx = b->waiter;
    op->cancel = cfs_waiter_cancel_flag(b->waiter);
    if (cfs_engine_submit(op) < 0) {
        PyErr_SetString(cfs_err.base, "the transfer engine could not start");
        goto fail;
    }
    b->in_flight++;
    b->next_index++;
    return 0;
fail:
    cfs_batch_release(op);
    return -1;
}

/* Submit one multi-key delete for the keys in `keys` (a list of validated str). */
static int submit_group(BatchObject *b, PyObject *keys)
{
    Py_ssize_t n = PyList_GET_SIZE(keys);
    const char *first = PyUnicode_AsUTF8(PyList_GET_ITEM(keys, 0));
    cfs_op *op = first ? cfs_op_new(CFS_OP_DELETE_MANY, b->store->backend, first, strlen(first)) : NULL;
    batch_item *it = op ? PyMem_Calloc(1, sizeof *it) : NULL;
    if (!it) {
        cfs_op_free(op);
        PyErr_NoMemory();
        return -1;
    }
    it->key = Py_NewRef(keys);
    it->index = b->next_index;
    op->caller = it;
    op->keys = calloc((size_t)n, sizeof *op->keys);
    if (!op->keys)
        goto oom;
    for (Py_ssize_t i = 0; i < n; i++) {
        op->keys[i] = strdup(PyUnicode_AsUTF8(PyList_GET_ITEM(keys, i))); /* UTF-8 cached */
        if (!op->keys[i])
            goto oom;
        op->n_keys++;
    }
    op->limiter = b->store->limiter;
    op->on_done = cfs_waiter_done;
    op->ctx = b->waiter;
    op->cancel = cfs_waiter_cancel_flag(b->waiter);
    if (cfs_engine_submit(op) < 0) {
        PyErr_SetString(cfs_err.base, "the transfer engine could not start");
        cfs_batch_release(op);
        return -1;
    }
    b->in_flight++;
    b->next_index += n;
    return 0;
oom:
    cfs_batch_release(op);
    PyErr_NoMemory();
    return -1;
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
        if (PyList_GET_SIZE(keys) > 0 && submit_group(b, keys) < 0 && !b->input_exc) {
            b->input_exc = cfs_exc_take();
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
        int rc = submit_item(b, obj);
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
        Py_END_ALLOW_THREADS
        b->ready = done;
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

static int append_failure(BatchObject *b, PyObject *exc)
{
    if (!exc)
        return -1;
    int rc = PyList_Append(b->failures, exc);
    Py_DECREF(exc);
    return rc;
}

int cfs_batch_record_failure(BatchObject *b, const cfs_op *op)
{
    batch_item *it = op->caller;
    if (op->kind != CFS_OP_DELETE_MANY)
        return append_failure(b, cfs_py_op_error(op, it ? it->key : NULL));
    /* a group: the request failed for all its keys, or the server named those it kept */
    if (op->status != CFS_OK) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(it->key); i++)
            if (append_failure(b, cfs_py_op_error(op, PyList_GET_ITEM(it->key, i))) < 0)
                return -1;
        return 0;
    }
    for (size_t i = 0; i < op->entries.len; i++) {
        const cfs_entry *e = &op->entries.items[i];
        PyObject *key = PyUnicode_DecodeUTF8(e->name, (Py_ssize_t)strlen(e->name), "surrogateescape");
        if (!key)
            return -1;
        int rc = append_failure(b, cfs_py_key_error(op, key, e->status, e->detail ? e->detail : ""));
        Py_DECREF(key);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int cfs_batch_op_failed(const cfs_op *op, int missing_ok)
{
    if (op->status != CFS_OK)
        return !(missing_ok && op->status == CFS_ENOTFOUND);
    return op->kind == CFS_OP_DELETE_MANY && op->entries.len > 0;
}

int cfs_batch_finish(BatchObject *b, const char *what)
{
    if (b->input_exc) {
        cfs_exc_restore(b->input_exc);
        b->input_exc = NULL;
        return -1;
    }
    Py_ssize_t n = PyList_GET_SIZE(b->failures);
    if (n == 0)
        return 0;
    PyObject *first = PyList_GET_ITEM(b->failures, 0);
    PyObject *msg = PyUnicode_FromFormat("%s: %zd of the keys failed; first: %S", what, n, first);
    if (!msg)
        return -1;
    PyObject *args = PyTuple_Pack(1, msg);
    Py_DECREF(msg);
    PyObject *kw = args ? Py_BuildValue("{s:O,s:s}", "errors", b->failures, "operation", what) : NULL;
    PyObject *exc = kw ? PyObject_Call(cfs_err.batch, args, kw) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kw);
    if (exc) {
        PyErr_SetObject(cfs_err.batch, exc);
        Py_DECREF(exc);
    }
    return -1;
}

BatchObject *cfs_batch_new(StoreObject *store, PyObject *iterable, batch_kind kind)
{
    if (cfs_store_check_open(store) < 0)
        return NULL;
    PyObject *iter = PyObject_GetIter(iterable);
    if (!iter)
        return NULL;
    BatchObject *b = PyObject_GC_New(BatchObject, &cfs_BatchType);
    if (!b) {
        Py_DECREF(iter);
        return NULL;
    }
    b->store = (StoreObject *)Py_NewRef(store);
    b->iter = iter;
    b->kind = kind;
    b->in_flight = 0;
    b->next_index = 0;
    b->ready = NULL;
    b->input_exc = NULL;
    b->interrupted = 0;
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
            cfs_batch_release(op);
        }
        if (b->in_flight == 0)
            break;
        cfs_op *done;
        Py_BEGIN_ALLOW_THREADS
        done = cfs_waiter_take(b->waiter, 1, -1);
        Py_END_ALLOW_THREADS
        b->ready = done;
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
    Py_XDECREF(b->failures);
    Py_XDECREF(b->input_exc);
    PyObject_GC_Del(b);
}

static int batch_traverse(BatchObject *b, visitproc visit, void *arg)
{
    Py_VISIT(b->store);
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
        batch_item *it = op->caller;
        PyObject *result = NULL;
        if (op->status == CFS_OK) {
            PyObject *data = cfs_bytes_from_buf(&op->data); /* no copy where it can */
            result = data ? PyTuple_Pack(2, it->key, data) : NULL;
            Py_XDECREF(data);
        } else if (op->status == CFS_ENOTFOUND) {
            result = PyTuple_Pack(2, it->key, Py_None);
        } else if (cfs_batch_record_failure(b, op) == 0) {
            cfs_batch_release(op);
            continue;
        }
        cfs_batch_release(op);
        return result;
    }
}

PyTypeObject cfs_BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "cloudfiles_store._core.Batch",
    .tp_basicsize = sizeof(BatchObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Results of a batch, yielded as the transfers complete.",
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_traverse = (traverseproc)batch_traverse,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)batch_iternext,
};
