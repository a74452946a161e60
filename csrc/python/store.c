/* The Store type: the zarr-compatible mapping over one backend. Every method that waits
 * does so with the GIL released; batches go through batch.c. */
#include "python/store.h"
#include "backends/file.h"
#include "core/url.h"

#include <limits.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "python/attrs.h"
#include "python/batch.h"
#include "python/blob.h"
#include "python/newfile.h"
#include "python/ops.h"
#include "python/pyutil.h"
#include "util/codec.h"

int cfs_store_check_open(StoreObject *s)
{
    if (s->closed || !s->backend) {
        PyErr_SetString(PyExc_ValueError, "I/O operation on a closed store");
        return -1;
    }
    return 0;
}

cfs_op *cfs_store_file_op(StoreObject *s, PyObject *key, cfs_op_kind kind, const char *method)
{
    const char *utf8;
    Py_ssize_t len;
    if (cfs_store_check_open(s) < 0 || cfs_py_key(key, 0, &utf8, &len) < 0)
        return NULL;
    if (!cfs_file_backend_is(s->backend)) {
        PyErr_Format(PyExc_TypeError, "%s: only a file:// store keeps objects as files, not %s",
                     method, s->backend->ops->url(s->backend));
        return NULL;
    }
    cfs_op *op = cfs_op_new(kind, s->backend, utf8, (size_t)len);
    if (!op)
        PyErr_NoMemory();
    return op;
}

/* ---------- construction ---------- */

static int parse_transfer_options(cfs_options *o, cfs_transfer_config *cfg, char *err, size_t n)
{
    long v;
    double d;
    int rc;
    if ((rc = cfs_options_take_long(o, "concurrency", 1, 4096, &v, err, n)) < 0)
        return -1;
    if (rc)
        cfg->concurrency = (int)v;
    if ((rc = cfs_options_take_long(o, "retries", 1, 100, &v, err, n)) < 0)
        return -1;
    if (rc)
        cfg->retry.max_attempts = (int)v;
    if ((rc = cfs_options_take_double(o, "retry_base", 0, 3600, &d, err, n)) < 0)
        return -1;
    if (rc)
        cfg->retry.base_seconds = d;
    if ((rc = cfs_options_take_double(o, "retry_cap", 0, 3600, &d, err, n)) < 0)
        return -1;
    if (rc)
        cfg->retry.cap_seconds = d;
    if ((rc = cfs_options_take_double(o, "connect_timeout", 0.001, 3600, &d, err, n)) < 0)
        return -1;
    if (rc)
        cfg->connect_timeout_ms = (long)(d * 1000);
    if ((rc = cfs_options_take_long(o, "stall_timeout", 1, 3600, &v, err, n)) < 0)
        return -1;
    if (rc)
        cfg->stall_timeout_s = v;
    if ((rc = cfs_options_take_long(o, "buffer_size", 1024, 10 * 1024 * 1024, &v, err, n)) < 0)
        return -1;
    if (rc)
        cfg->buffer_size = v;
    if (cfs_options_take_bool(o, "http2", &cfg->http2, err, n) < 0)
        return -1;
    if (cfs_options_take_bool(o, "hedge", &cfg->hedge, err, n) < 0)
        return -1;
    if (cfs_options_take_double(o, "hedge_quantile", 0.5, 0.999, &cfg->hedge_quantile, err, n) < 0)
        return -1;
    if (cfs_options_take_double(o, "hedge_budget", 0.001, 1, &cfg->hedge_budget, err, n) < 0)
        return -1;
    if (cfs_options_take_double(o, "hedge_delay", 0.0001, 3600, &cfg->hedge_delay, err, n) < 0)
        return -1;
    if ((rc = cfs_options_take_long(o, "max_decoded_size", 0, LONG_MAX, &v, err, n)) < 0)
        return -1;
    if (rc)
        cfg->max_decoded_size = v;
    return 0;
}

/* compress, compress_level, compress_keys: the default coding of this store's writes. */
static int take_compress_options(StoreObject *s, cfs_options *o, char *err, size_t n)
{
    const char *v = cfs_options_take(o, "compress");
    cfs_codec c = CFS_CODEC_NONE;
    if (v && strcasecmp(v, "true") == 0)
        c = CFS_CODEC_GZIP; /* compress=True: gzip, as CloudFiles takes it */
    else if (v && strcasecmp(v, "false") != 0 && strcasecmp(v, "none") != 0 &&
             cfs_codec_parse(v, &c) < 0) {
        snprintf(err, n, "option compress must be 'gzip', 'br', 'zstd' or None, not '%.40s'", v);
        return -1;
    }
    s->compress = (int)c;
    s->compress_level = CFS_CODEC_LEVEL_DEFAULT;
    long level;
    int rc = cfs_options_take_long(o, "compress_level", -1000000, 1000000, &level, err, n);
    if (rc < 0)
        return -1;
    if (rc) {
        if (c == CFS_CODEC_NONE || !cfs_codec_level_ok(c, (int)level)) {
            char range[64] = "no compression";
            if (c != CFS_CODEC_NONE)
                cfs_codec_level_range(c, range, sizeof range);
            snprintf(err, n, "option compress_level %ld is not a level of compress=%s (%s)", level,
                     c == CFS_CODEC_NONE ? "None" : cfs_codec_name(c), range);
            return -1;
        }
        s->compress_level = (int)level;
    }
    free(s->compress_keys);
    s->compress_keys = NULL;
    const char *keys = cfs_options_take(o, "compress_keys");
    if (keys && !(s->compress_keys = strdup(keys))) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    return 0;
}

/* The options the backend opens with: those given, plus what its discover_options
 * function finds (backend.h). A new dict. */
static PyObject *resolve_options(const cfs_backend_ops *ops, PyObject *url, PyObject *kwargs)
{
    PyObject *given = kwargs ? PyDict_Copy(kwargs) : PyDict_New();
    if (!given || !ops->discover_options)
        return given;
    const char *colon = strchr(ops->discover_options, ':');
    PyObject *module =
        colon ? PyUnicode_FromStringAndSize(ops->discover_options, colon - ops->discover_options)
              : NULL;
    PyObject *m = module ? PyImport_Import(module) : NULL;
    PyObject *r = m ? PyObject_CallMethod(m, colon + 1, "OO", url, given) : NULL;
    Py_XDECREF(module);
    Py_XDECREF(m);
    Py_DECREF(given);
    if (r && !PyDict_Check(r)) {
        PyErr_Format(PyExc_TypeError, "%s must return a dict", ops->discover_options);
        Py_CLEAR(r);
    }
    return r;
}

static int store_init(StoreObject *self, PyObject *args, PyObject *kwargs)
{
    PyObject *url;
    if (!PyArg_ParseTuple(args, "U:CloudFilesStore", &url))
        return -1;
    if (self->backend) {
        PyErr_SetString(PyExc_RuntimeError, "CloudFilesStore.__init__ called twice");
        return -1;
    }
    const char *given = PyUnicode_AsUTF8(url);
    if (!given)
        return -1;
    char err[256] = "";
    char *u = cfs_url_normalize(given, cfs_backend_scheme_known, err, sizeof err);
    if (!u) {
        if (err[0]) {
            char schemes[256];
            cfs_backend_schemes(schemes, sizeof schemes);
            PyErr_Format(cfs_err.scheme, "%s (known schemes: %s, or a plain path)", err, schemes);
        } else {
            PyErr_NoMemory();
        }
        return -1;
    }
    const cfs_backend_ops *ops = cfs_backend_for_url(u);
    if (!ops) { /* normalisation admits known schemes only */
        PyErr_SetString(cfs_err.scheme, "no backend for this URL's scheme");
        free(u);
        return -1;
    }
    cfs_options opts = { 0 };
    cfs_transfer_config cfg = CFS_TRANSFER_DEFAULT;
    int rc = -1;
    /* What the backend opens with: the options given plus what Python discovers
     * (credentials, region). Only the options given are kept for repr and pickling. */
    /* what writes store (content_type, metadata, ...) is the store's, not the backend's */
    PyObject *backend_kwargs = kwargs ? PyDict_Copy(kwargs) : PyDict_New();
    if (!backend_kwargs || cfs_py_write_attrs_take(backend_kwargs, &self->write_attrs) < 0) {
        Py_XDECREF(backend_kwargs);
        goto out;
    }
    PyObject *canonical = PyUnicode_FromString(u);
    PyObject *resolved = canonical ? resolve_options(ops, canonical, backend_kwargs) : NULL;
    Py_XDECREF(canonical);
    Py_DECREF(backend_kwargs);
    if (!resolved)
        goto out;
    int converted = cfs_py_options(resolved, &opts);
    Py_DECREF(resolved);
    if (converted < 0)
        goto out;
    if (parse_transfer_options(&opts, &cfg, err, sizeof err) < 0 ||
        take_compress_options(self, &opts, err, sizeof err) < 0) {
        PyErr_SetString(cfs_err.option, err);
        goto out;
    }
    cfs_backend *b = ops->open(u, &opts, err, sizeof err);
    if (!b) {
        PyErr_Format(cfs_err.option, "cannot open %s store: %s", ops->name, err);
        goto out;
    }
    const char *unknown = cfs_options_unknown(&opts);
    if (unknown) {
        PyErr_Format(cfs_err.option, "unknown option %s for a %s store", unknown, ops->name);
        ops->close(b);
        goto out;
    }
    self->limiter = cfs_limiter_new(&cfg);
    if (!self->limiter) {
        ops->close(b);
        PyErr_NoMemory();
        goto out;
    }
    self->backend = b;
    cfs_object_attrs none = { .last_modified_ms = -1 }, checked = { .last_modified_ms = -1 };
    if (cfs_py_attrs_for_call(self, &none, &checked) < 0) /* what this backend cannot store */
        goto out;
    cfs_object_attrs_free(&checked);
    self->url = Py_NewRef(url);
    self->options = kwargs ? PyDict_Copy(kwargs) : PyDict_New();
    if (!self->options)
        goto out;
    rc = 0;
out:
    cfs_options_free(&opts);
    free(u);
    return rc;
}

static void store_release(StoreObject *self)
{
    if (self->backend) {
        self->backend->ops->close(self->backend);
        self->backend = NULL;
    }
    cfs_limiter_free(self->limiter);
    self->limiter = NULL;
    free(self->compress_keys);
    self->compress_keys = NULL;
    cfs_object_attrs_free(&self->write_attrs);
}

static void store_dealloc(StoreObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist)
        PyObject_ClearWeakRefs((PyObject *)self);
    store_release(self);
    Py_CLEAR(self->url);
    Py_CLEAR(self->options);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int store_traverse(StoreObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->url);
    Py_VISIT(self->options);
    return 0;
}

static int store_clear_refs(StoreObject *self)
{
    Py_CLEAR(self->options);
    return 0;
}

/* The body as bytes, without a copy where it can (op->data is then empty). */
static PyObject *bytes_of(cfs_op *op)
{
    return cfs_bytes_from_buf(&op->data);
}

/* ---------- listing ---------- */

/* The names under `prefix`, recursive or one level, sorted and unique: relative to the
 * prefix when it names a directory ("" or ending in '/'), whole keys for a partial prefix.
 * With want_sizes, *total_size gets the sum of the objects' sizes. */
static PyObject *list_names(StoreObject *s, PyObject *prefix, int recursive, int want_sizes,
                            int64_t *total_size)
{
    cfs_op *op = cfs_pyop_list(s, prefix, recursive);
    if (!op)
        return NULL;
    PyObject *result = NULL;
    if (cfs_pyop_run_checked(op, 0) < 0)
        goto out;
    size_t strip = strlen(op->key);
    if (strip && op->key[strip - 1] != '/')
        strip = 0; /* a partial prefix: names are whole keys */
    PyObject *names = PyList_New(0);
    if (!names)
        goto out;
    int64_t total = 0;
    for (size_t i = 0; i < op->entries.len; i++) {
        const cfs_entry *e = &op->entries.items[i];
        size_t len = strlen(e->name);
        if (len <= strip)
            continue;
        if (want_sizes && !e->is_dir && e->size > 0)
            total += e->size;
        PyObject *n =
            PyUnicode_DecodeUTF8(e->name + strip, (Py_ssize_t)(len - strip), "surrogateescape");
        if (!n || PyList_Append(names, n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(names);
            goto out;
        }
        Py_DECREF(n);
    }
    /* sorted, then repeats (a directory seen again, a key listed twice) dropped */
    if (PyList_Sort(names) < 0) {
        Py_DECREF(names);
        goto out;
    }
    Py_ssize_t kept = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(names); i++) {
        PyObject *n = PyList_GET_ITEM(names, i);
        if (kept > 0 && PyUnicode_Compare(PyList_GET_ITEM(names, kept - 1), n) == 0)
            continue;
        Py_INCREF(n);
        PyList_SetItem(names, kept++, n); /* releases the item it replaces */
    }
    if (PyList_SetSlice(names, kept, PyList_GET_SIZE(names), NULL) < 0) {
        Py_DECREF(names);
        goto out;
    }
    result = names;
    if (total_size)
        *total_size = total;
out:
    cfs_pyop_release(op);
    return result;
}

/* None or absent, and "", are the root ""; "a" and "a/" become "a/". */
static PyObject *dir_prefix(PyObject *path)
{
    if (!path || path == Py_None)
        return PyUnicode_FromString("");
    if (!PyUnicode_Check(path)) {
        PyErr_Format(cfs_err.invalid_key, "paths must be str, not %.100s", Py_TYPE(path)->tp_name);
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(path);
    if (n == 0 || PyUnicode_READ_CHAR(path, n - 1) == '/')
        return Py_NewRef(path);
    return PyUnicode_FromFormat("%U/", path);
}

/* ---------- mapping protocol ---------- */

static PyObject *store_getitem(StoreObject *s, PyObject *key)
{
    cfs_op *op = cfs_pyop_get(s, key, Py_None, Py_None);
    if (!op)
        return NULL;
    PyObject *r = cfs_pyop_run_checked(op, 0) < 0 ? NULL : bytes_of(op);
    cfs_pyop_release(op);
    return r;
}

static int store_setitem(StoreObject *s, PyObject *key, PyObject *value)
{
    cfs_op *op = value ? cfs_pyop_put(s, key, value, 0) : cfs_pyop_delete(s, key, 0);
    if (!op)
        return -1;
    int rc = cfs_pyop_run_checked(op, 0);
    cfs_pyop_release(op);
    return rc;
}

static int store_contains(StoreObject *s, PyObject *key)
{
    if (!PyUnicode_Check(key))
        return 0;
    cfs_op *op = cfs_pyop_head(s, key);
    if (!op) {
        if (PyErr_ExceptionMatches(cfs_err.invalid_key)) {
            PyErr_Clear(); /* no such key can exist */
            return 0;
        }
        return -1;
    }
    int rc = cfs_pyop_run_checked(op, 1);
    if (rc == 0)
        rc = op->status == CFS_OK;
    cfs_pyop_release(op);
    return rc;
}

static PyObject *store_keys(StoreObject *s, PyObject *unused)
{
    (void)unused;
    PyObject *empty = PyUnicode_FromString("");
    if (!empty)
        return NULL;
    PyObject *r = list_names(s, empty, 1, 0, NULL);
    Py_DECREF(empty);
    return r;
}

static PyObject *store_iter(StoreObject *s)
{
    PyObject *keys = store_keys(s, NULL);
    if (!keys)
        return NULL;
    PyObject *it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}

static Py_ssize_t store_len(StoreObject *s)
{
    PyObject *keys = store_keys(s, NULL);
    if (!keys)
        return -1;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    Py_DECREF(keys);
    return n;
}

/* ---------- batches ---------- */

static PyObject *store_getitems(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "keys", "contexts", "raw", NULL };
    PyObject *keys, *contexts = NULL;
    int raw = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$Op:getitems", kwlist, &keys, &contexts, &raw))
        return NULL;
    BatchObject *b = cfs_batch_new(s, keys, BATCH_GET);
    if (!b)
        return NULL;
    cfs_batch_set_coding(b, NULL, raw);
    PyObject *out = PyDict_New();
    cfs_op *op;
    while (out && (op = cfs_batch_next(b))) {
        if (op->status == CFS_OK) {
            PyObject *data = raw ? cfs_py_raw_result(op, 0) : bytes_of(op);
            if (!data || PyDict_SetItem(out, cfs_pyop_of(op)->key, data) < 0)
                Py_CLEAR(out);
            Py_XDECREF(data);
        } else if (op->status != CFS_ENOTFOUND && cfs_batch_record_failure(b, op) < 0) {
            Py_CLEAR(out);
        }
        cfs_pyop_release(op);
    }
    if (out && (PyErr_Occurred() || cfs_batch_finish(b, "getitems") < 0))
        Py_CLEAR(out);
    Py_DECREF(b);
    return out;
}

/* Run a batch whose results are only successes or failures (put, delete). */
static PyObject *run_void_batch(StoreObject *s, PyObject *items, batch_kind kind, int missing_ok,
                                const char *what, const cfs_put_coding *pc,
                                const cfs_object_attrs *attrs)
{
    BatchObject *b = cfs_batch_new(s, items, kind);
    if (!b)
        return NULL;
    cfs_batch_set_coding(b, pc, 0);
    cfs_batch_set_put_attrs(b, attrs);
    int ok = 1;
    cfs_op *op;
    while ((op = cfs_batch_next(b))) {
        if (cfs_pyop_failed(op, missing_ok) && cfs_batch_record_failure(b, op) < 0)
            ok = 0;
        cfs_pyop_release(op);
    }
    if (PyErr_Occurred() || !ok || cfs_batch_finish(b, what) < 0) {
        Py_DECREF(b);
        return NULL;
    }
    Py_DECREF(b);
    Py_RETURN_NONE;
}

/* The write attributes of a call (keyword arguments named as cfs_write_attr_names) merged
 * with the store's into *out. 0 or -1. */
static int call_attrs(StoreObject *s, PyObject *const values[5], cfs_object_attrs *out)
{
    cfs_object_attrs call = { .last_modified_ms = -1 };
    if (cfs_store_check_open(s) < 0 || cfs_py_write_attrs(values, &call) < 0)
        return -1;
    int rc = cfs_py_attrs_for_call(s, &call, out);
    cfs_object_attrs_free(&call);
    return rc;
}

/* Whether a call gave any write attribute; if so merge them with the store's into *out. */
static int take_call_attrs(StoreObject *s, PyObject *const values[5], cfs_object_attrs *out,
                           int *given)
{
    *given = 0;
    for (int i = 0; i < 5; i++)
        *given |= values[i] && values[i] != Py_None;
    return *given ? call_attrs(s, values, out) : 0;
}

static PyObject *store_setitems(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "",
                              "compress",
                              "level",
                              "raw",
                              "content_encoding",
                              "content_type",
                              "cache_control",
                              "content_disposition",
                              "storage_class",
                              "metadata",
                              NULL };
    PyObject *values, *compress = Py_None, *level = Py_None, *content_encoding = Py_None;
    PyObject *attr_values[5] = { NULL };
    int raw = 0, have_attrs;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$OOpOOOOOO:setitems", kwlist, &values,
                                     &compress, &level, &raw, &content_encoding, &attr_values[0],
                                     &attr_values[1], &attr_values[2], &attr_values[3],
                                     &attr_values[4]))
        return NULL;
    cfs_put_coding pc;
    cfs_object_attrs attrs = { .last_modified_ms = -1 };
    if (cfs_py_put_coding(compress, level, raw, content_encoding, &pc) < 0 ||
        take_call_attrs(s, attr_values, &attrs, &have_attrs) < 0)
        return NULL;
    PyObject *items = values;
    if (PyDict_Check(values) || PyObject_HasAttrString(values, "items")) {
        items = PyObject_CallMethod(values, "items", NULL);
        if (!items)
            return NULL;
    } else {
        Py_INCREF(items);
    }
    PyObject *r =
        run_void_batch(s, items, BATCH_PUT, 0, "setitems", &pc, have_attrs ? &attrs : NULL);
    Py_DECREF(items);
    cfs_object_attrs_free(&attrs);
    return r;
}

/* ---------- attributes ---------- */

static PyObject *store_head(StoreObject *s, PyObject *key)
{
    cfs_op *op = cfs_pyop_head(s, key);
    if (!op)
        return NULL;
    PyObject *r = cfs_pyop_run_checked(op, 0) < 0 ? NULL : cfs_py_head_dict(s, op);
    cfs_pyop_release(op);
    return r;
}

static PyObject *store_heads(StoreObject *s, PyObject *keys)
{
    BatchObject *b = cfs_batch_new(s, keys, BATCH_HEAD);
    if (!b)
        return NULL;
    PyObject *out = PyDict_New();
    cfs_op *op;
    while (out && (op = cfs_batch_next(b))) {
        if (op->status == CFS_OK) {
            PyObject *d = cfs_py_head_dict(s, op);
            if (!d || PyDict_SetItem(out, cfs_pyop_of(op)->key, d) < 0)
                Py_CLEAR(out);
            Py_XDECREF(d);
        } else if (op->status != CFS_ENOTFOUND && cfs_batch_record_failure(b, op) < 0) {
            Py_CLEAR(out);
        }
        cfs_pyop_release(op);
    }
    if (out && (PyErr_Occurred() || cfs_batch_finish(b, "heads") < 0))
        Py_CLEAR(out);
    Py_DECREF(b);
    return out;
}

static PyObject *store_delitems(StoreObject *s, PyObject *keys)
{
    return run_void_batch(s, keys, BATCH_DELETE, 1, "delitems", NULL, NULL);
}

static PyObject *store_iter_get(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "", "raw", NULL };
    PyObject *keys;
    int raw = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$p:iter_get", kwlist, &keys, &raw))
        return NULL;
    BatchObject *b = cfs_batch_new(s, keys, BATCH_GET);
    if (b)
        cfs_batch_set_coding(b, NULL, raw);
    return (PyObject *)b;
}

/* put(key, value, *, compress=, level=, raw=, content_encoding=, and the write attributes) */
static PyObject *store_put(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "",
                              "",
                              "compress",
                              "level",
                              "raw",
                              "content_encoding",
                              "content_type",
                              "cache_control",
                              "content_disposition",
                              "storage_class",
                              "metadata",
                              NULL };
    PyObject *key, *value, *compress = Py_None, *level = Py_None, *content_encoding = Py_None;
    PyObject *attr_values[5] = { NULL };
    int raw = 0, have_attrs;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|$OOpOOOOOO:put", kwlist, &key, &value,
                                     &compress, &level, &raw, &content_encoding, &attr_values[0],
                                     &attr_values[1], &attr_values[2], &attr_values[3],
                                     &attr_values[4]))
        return NULL;
    cfs_put_coding pc;
    cfs_object_attrs attrs = { .last_modified_ms = -1 };
    if (cfs_py_put_coding(compress, level, raw, content_encoding, &pc) < 0 ||
        take_call_attrs(s, attr_values, &attrs, &have_attrs) < 0)
        return NULL;
    cfs_op *op = cfs_pyop_put_coded(s, key, value, 0, &pc);
    PyObject *r = NULL;
    if (op && (!have_attrs || cfs_pyop_set_attrs(op, &attrs) == 0) &&
        cfs_pyop_run_checked(op, 0) == 0)
        r = Py_NewRef(Py_None);
    cfs_pyop_release(op);
    cfs_object_attrs_free(&attrs);
    return r;
}

/* get_raw(key) -> (bytes as stored, encoding or None) */
static PyObject *store_get_raw(StoreObject *s, PyObject *key)
{
    cfs_op *op = cfs_pyop_get(s, key, Py_None, Py_None);
    if (!op)
        return NULL;
    op->raw = 1;
    PyObject *r = cfs_pyop_run_checked(op, 0) < 0 ? NULL : cfs_py_raw_result(op, 0);
    cfs_pyop_release(op);
    return r;
}

/* The ranges read in parallel, in order; raw: (stored bytes, encoding) pairs, the ranges
 * being of the stored bytes; blobs (with raw): Blobs rather than bytes, whose buffers go
 * back to the engine's pool when freed (a copy streamed range by range reuses warm memory:
 * fresh pages cost more than the reads here). */
static PyObject *read_ranges(StoreObject *s, PyObject *ranges, int raw, int blobs)
{
    BatchObject *b = cfs_batch_new(s, ranges, BATCH_RANGE);
    if (!b)
        return NULL;
    cfs_batch_set_coding(b, NULL, raw);
    PyObject *out = PyList_New(0);
    cfs_op *op;
    while (out && (op = cfs_batch_next(b))) {
        Py_ssize_t index = cfs_pyop_of(op)->index;
        PyObject *v = NULL;
        if (op->status == CFS_OK)
            v = raw ? cfs_py_raw_result(op, blobs) : bytes_of(op);
        else if (op->status == CFS_ERANGE)
            v = raw ? Py_BuildValue("(y#O)", "", (Py_ssize_t)0, Py_None)
                    : PyBytes_FromStringAndSize(NULL, 0);
        else if (op->status == CFS_ENOTFOUND)
            v = Py_NewRef(Py_None);
        else if (cfs_batch_record_failure(b, op) == 0)
            v = Py_NewRef(Py_None);
        /* results arrive out of order: grow the list to the index and place it */
        while (v && PyList_GET_SIZE(out) <= index)
            if (PyList_Append(out, Py_None) < 0)
                Py_CLEAR(v);
        if (!v || PyList_SetItem(out, index, v) < 0)
            Py_CLEAR(out);
        cfs_pyop_release(op);
    }
    if (out && (PyErr_Occurred() || cfs_batch_finish(b, "get_ranges") < 0))
        Py_CLEAR(out);
    Py_DECREF(b);
    return out;
}

/* get_ranges(ranges, /, *, raw=False, _blobs=False) */
static PyObject *store_get_ranges(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "", "raw", "_blobs", NULL };
    PyObject *ranges;
    int raw = 0, blobs = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|$pp:get_ranges", kwlist, &ranges, &raw,
                                     &blobs))
        return NULL;
    return read_ranges(s, ranges, raw, blobs);
}

static PyObject *store_get_range(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "key", "start", "end", NULL };
    PyObject *key, *start, *end = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:get_range", kwlist, &key, &start, &end))
        return NULL;
    PyObject *item = Py_BuildValue("((OOO))", key, start, end);
    if (!item)
        return NULL;
    PyObject *list = read_ranges(s, item, 0, 0);
    Py_DECREF(item);
    if (!list)
        return NULL;
    PyObject *r = PyList_GET_ITEM(list, 0);
    if (r == Py_None) {
        PyErr_SetObject(PyExc_KeyError, key);
        r = NULL;
    } else {
        Py_INCREF(r);
    }
    Py_DECREF(list);
    return r;
}

static PyObject *store_copy(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "source", "destination", NULL };
    PyObject *source, *dest;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:copy", kwlist, &source, &dest))
        return NULL;
    cfs_op *op = cfs_pyop_copy(s, NULL, source, dest, -1);
    if (!op)
        return NULL;
    PyObject *r = cfs_pyop_run_checked(op, 0) == 0 ? Py_NewRef(Py_None) : NULL;
    cfs_pyop_release(op);
    return r;
}

/* Server-side copies from another store (or this one) of the same service and endpoint:
 * items (source key, destination key, size or None). Failures (a missing source too) raise
 * BatchError naming the source keys once every copy is done. */
static PyObject *store_copy_from(StoreObject *s, PyObject *args)
{
    PyObject *source, *items;
    if (!PyArg_ParseTuple(args, "O!O:_copy_from", &cfs_StoreType, &source, &items))
        return NULL;
    if (cfs_store_check_open(s) < 0)
        return NULL;
    BatchObject *b = cfs_batch_new_copy(s, (StoreObject *)source, items);
    if (!b)
        return NULL;
    int ok = 1;
    cfs_op *op;
    while ((op = cfs_batch_next(b))) {
        if (cfs_pyop_failed(op, 0) && cfs_batch_record_failure(b, op) < 0)
            ok = 0;
        cfs_pyop_release(op);
    }
    if (PyErr_Occurred() || !ok || cfs_batch_finish(b, "copy") < 0) {
        Py_DECREF(b);
        return NULL;
    }
    Py_DECREF(b);
    Py_RETURN_NONE;
}

static PyObject *store_can_copy_from(StoreObject *s, PyObject *source)
{
    if (!PyObject_TypeCheck(source, &cfs_StoreType)) {
        PyErr_SetString(PyExc_TypeError, "expected a store");
        return NULL;
    }
    if (cfs_store_check_open(s) < 0 || cfs_store_check_open((StoreObject *)source) < 0)
        return NULL;
    return PyBool_FromLong(cfs_pyop_can_copy_from(s, (StoreObject *)source) &&
                           (s->backend->ops->capabilities & CFS_CAP_SERVER_COPY));
}

/* ---------- directories ---------- */

static PyObject *store_entries(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "prefix", "details", NULL };
    PyObject *prefix = NULL;
    int details = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|U$p:entries", kwlist, &prefix, &details))
        return NULL;
    PyObject *empty = prefix ? NULL : PyUnicode_FromString("");
    cfs_op *op = prefix || empty ? cfs_pyop_list(s, prefix ? prefix : empty, 1) : NULL;
    PyObject *out = NULL;
    if (!op || cfs_pyop_run_checked(op, 0) < 0)
        goto done;
    out = PyList_New((Py_ssize_t)op->entries.len);
    for (size_t i = 0; out && i < op->entries.len; i++) {
        const cfs_entry *e = &op->entries.items[i];
        PyObject *name =
            PyUnicode_DecodeUTF8(e->name, (Py_ssize_t)strlen(e->name), "surrogateescape");
        PyObject *t = NULL;
        if (name && !details) {
            t = Py_BuildValue("(NL)", name, (long long)e->size);
        } else if (name) {
            PyObject *mtime = e->mtime_ms >= 0 ? PyFloat_FromDouble((double)e->mtime_ms / 1000.0)
                                               : Py_NewRef(Py_None);
            PyObject *etag =
                e->etag ? PyUnicode_DecodeUTF8(e->etag, (Py_ssize_t)strlen(e->etag), "replace")
                        : Py_NewRef(Py_None);
            t = mtime && etag ? Py_BuildValue("(NLNN)", name, (long long)e->size, mtime, etag)
                              : NULL;
            if (!t) {
                Py_XDECREF(mtime);
                Py_XDECREF(etag);
                Py_DECREF(name);
            }
        }
        if (!t)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    if (out && PyList_Sort(out) < 0)
        Py_CLEAR(out);
done:
    cfs_pyop_release(op);
    Py_XDECREF(empty);
    return out;
}

static PyObject *store_listdir(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "path", NULL };
    PyObject *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:listdir", kwlist, &path))
        return NULL;
    PyObject *prefix = dir_prefix(path);
    if (!prefix)
        return NULL;
    PyObject *r = list_names(s, prefix, 0, 0, NULL);
    Py_DECREF(prefix);
    return r;
}

static PyObject *store_rmdir(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "path", NULL };
    PyObject *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:rmdir", kwlist, &path))
        return NULL;
    PyObject *prefix = dir_prefix(path);
    if (!prefix)
        return NULL;
    PyObject *names = list_names(s, prefix, 1, 0, NULL);
    PyObject *keys = NULL, *r = NULL;
    if (!names)
        goto out;
    keys = PyList_New(PyList_GET_SIZE(names));
    if (!keys)
        goto out;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(names); i++) {
        PyObject *k = PyUnicode_Concat(prefix, PyList_GET_ITEM(names, i));
        if (!k)
            goto out;
        PyList_SET_ITEM(keys, i, k);
    }
    r = store_delitems(s, keys);
    if (r) {
        cfs_op *op = cfs_pyop_rmdir(s, prefix);
        if (!op || cfs_pyop_run_checked(op, 1) < 0)
            Py_CLEAR(r);
        cfs_pyop_release(op);
    }
out:
    Py_DECREF(prefix);
    Py_XDECREF(names);
    Py_XDECREF(keys);
    return r;
}

static PyObject *store_clear(StoreObject *s, PyObject *unused)
{
    (void)unused;
    PyObject *no_args = PyTuple_New(0);
    if (!no_args)
        return NULL;
    PyObject *r = store_rmdir(s, no_args, NULL);
    Py_DECREF(no_args);
    return r;
}

static PyObject *store_getsize(StoreObject *s, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = { "path", NULL };
    PyObject *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:getsize", kwlist, &path))
        return NULL;
    /* a key: its size; a directory: the total of the objects directly in it */
    if (path && path != Py_None && PyUnicode_Check(path) && PyUnicode_GET_LENGTH(path) > 0 &&
        PyUnicode_READ_CHAR(path, PyUnicode_GET_LENGTH(path) - 1) != '/') {
        cfs_op *op = cfs_pyop_head(s, path);
        if (!op)
            return NULL;
        int rc = cfs_pyop_run_checked(op, 1);
        PyObject *r = NULL;
        if (rc == 0 && op->status == CFS_OK)
            r = PyLong_FromLongLong(op->size);
        cfs_pyop_release(op);
        if (rc < 0 || r)
            return r;
    }
    PyObject *prefix = dir_prefix(path);
    if (!prefix)
        return NULL;
    int64_t total = 0;
    PyObject *names = list_names(s, prefix, 0, 1, &total);
    Py_DECREF(prefix);
    if (!names)
        return NULL;
    Py_DECREF(names);
    return PyLong_FromLongLong(total);
}

/* _new_file(key) -> NewFile (newfile.c) */
static PyObject *store_new_file(StoreObject *s, PyObject *key)
{
    return cfs_newfile_open(s, key);
}

/* _open_stored(key) -> (file, encoding): a key's stored bytes (file:// stores), for a
 * copy that sends them from the file (_transfer.py) rather than from memory */
static PyObject *store_open_stored(StoreObject *s, PyObject *key)
{
    cfs_op *op = cfs_store_file_op(s, key, CFS_OP_GET, "_open_stored");
    if (!op)
        return NULL;
    cfs_backend *b = s->backend; /* alive while s is: close() only marks it closed */
    PyThreadState *ts = PyEval_SaveThread();
    int fd = cfs_file_open_stored(b, op);
    PyEval_RestoreThread(ts);
    PyObject *file = NULL;
    if (fd < 0) {
        cfs_py_raise_op(op, key);
    } else if (!(file = PyFile_FromFd(fd, NULL, "rb", -1, NULL, NULL, NULL, 1))) {
        close(fd);
    }
    const char *enc = op->attrs.content_encoding;
    cfs_codec codec;
    if (enc && cfs_codec_parse(enc, &codec) == 0)
        enc = cfs_codec_name(codec);
    PyObject *out = file ? Py_BuildValue("(Nz)", file, enc) : NULL;
    cfs_op_free(op);
    return out;
}

/* ---------- object protocol ---------- */

static PyObject *store_close(StoreObject *s, PyObject *unused)
{
    (void)unused;
    s->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *store_enter(StoreObject *s, PyObject *unused)
{
    (void)unused;
    if (cfs_store_check_open(s) < 0)
        return NULL;
    return Py_NewRef(s);
}

static PyObject *store_exit(StoreObject *s, PyObject *args)
{
    (void)args;
    s->closed = 1;
    Py_RETURN_FALSE;
}

static PyObject *store_reduce(StoreObject *s, PyObject *unused)
{
    (void)unused;
    PyObject *pkg = PyImport_ImportModule("cloudfiles_store");
    if (!pkg)
        return NULL;
    PyObject *rebuild = PyObject_GetAttrString(pkg, "_rebuild");
    Py_DECREF(pkg);
    if (!rebuild)
        return NULL;
    PyObject *r = Py_BuildValue("N(OOO)", rebuild, (PyObject *)Py_TYPE(s), s->url, s->options);
    return r;
}

static int is_secret_option(StoreObject *s, PyObject *name)
{
    const char *n = PyUnicode_AsUTF8(name);
    if (!n) {
        PyErr_Clear();
        return 1;
    }
    return cfs_backend_is_secret_option(s->backend->ops, n);
}

/* The options given, secrets masked as repr() masks them (a pickle keeps them: the store
 * rebuilt on the other side needs them). */
static PyObject *store_get_options(StoreObject *s, void *closure)
{
    (void)closure;
    PyObject *out = PyDict_Copy(s->options);
    PyObject *name, *value, *masked = NULL;
    Py_ssize_t pos = 0;
    while (out && s->backend && PyDict_Next(s->options, &pos, &name, &value)) {
        if (!is_secret_option(s, name))
            continue;
        if (!masked && !(masked = PyUnicode_FromString("***")))
            Py_CLEAR(out);
        else if (PyDict_SetItem(out, name, masked) < 0)
            Py_CLEAR(out);
    }
    Py_XDECREF(masked);
    return out;
}

static PyObject *store_repr(StoreObject *s)
{
    if (!s->backend)
        return PyUnicode_FromFormat("<%s (uninitialised)>", Py_TYPE(s)->tp_name);
    PyObject *parts = PyList_New(0);
    if (!parts)
        return NULL;
    PyObject *url = PyUnicode_FromString(s->backend->ops->url(s->backend));
    PyObject *first = url ? PyUnicode_FromFormat("%R", url) : NULL;
    Py_XDECREF(url);
    if (!first || PyList_Append(parts, first) < 0)
        goto fail_first;
    Py_DECREF(first);
    PyObject *name, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(s->options, &pos, &name, &value)) {
        PyObject *p = is_secret_option(s, name) ? PyUnicode_FromFormat("%U='***'", name)
                                                : PyUnicode_FromFormat("%U=%R", name, value);
        if (!p || PyList_Append(parts, p) < 0) {
            Py_XDECREF(p);
            Py_DECREF(parts);
            return NULL;
        }
        Py_DECREF(p);
    }
    PyObject *sep = PyUnicode_FromString(", ");
    PyObject *joined = sep ? PyUnicode_Join(sep, parts) : NULL;
    Py_XDECREF(sep);
    Py_DECREF(parts);
    if (!joined)
        return NULL;
    PyObject *r = PyUnicode_FromFormat("%s(%U)", _PyType_Name(Py_TYPE(s)), joined);
    Py_DECREF(joined);
    return r;
fail_first:
    Py_XDECREF(first);
    Py_DECREF(parts);
    return NULL;
}

static PyObject *store_richcompare(StoreObject *a, PyObject *other, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(other, &cfs_StoreType))
        Py_RETURN_NOTIMPLEMENTED;
    StoreObject *b = (StoreObject *)other;
    int eq = Py_TYPE(a) == Py_TYPE(b) && a->backend && b->backend;
    if (eq)
        eq = strcmp(a->backend->ops->url(a->backend), b->backend->ops->url(b->backend)) == 0;
    if (eq) {
        eq = PyObject_RichCompareBool(a->options, b->options, Py_EQ);
        if (eq < 0)
            return NULL;
    }
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static PyObject *store_get_url(StoreObject *s, void *closure)
{
    (void)closure;
    if (!s->backend)
        Py_RETURN_NONE;
    return PyUnicode_FromString(s->backend->ops->url(s->backend));
}


static PyObject *store_get_closed(StoreObject *s, void *closure)
{
    (void)closure;
    return PyBool_FromLong(s->closed);
}

static PyMethodDef store_methods[] = {
    { "keys", (PyCFunction)store_keys, METH_NOARGS,
      "keys($self, /)\n--\n\nReturn a sorted list of every key in the store (one listing).\n"
      "Raises CloudFilesError if the listing fails." },
    { "getitems", (PyCFunction)(void (*)(void))store_getitems, METH_VARARGS | METH_KEYWORDS,
      "getitems($self, /, keys, *, contexts=None, raw=False)\n--\n\n"
      "Fetch keys (any iterable) in parallel; return a dict of the keys present to their\n"
      "bytes (missing keys are left out). raw=True: values are (bytes as stored, encoding)\n"
      "pairs, not decoded. contexts is accepted for zarr 2 and ignored.\n"
      "Raises BatchError, after every transfer has ended, if some keys failed." },
    { "setitems", (PyCFunction)(void (*)(void))store_setitems, METH_VARARGS | METH_KEYWORDS,
      "setitems($self, values, /, *, compress=None, level=None, raw=False, content_encoding=None,\n"
      " content_type=None, cache_control=None, content_disposition=None, storage_class=None,\n"
      " metadata=None)\n--\n\n"
      "Write a mapping, or an iterable of (key, value) pairs, in parallel; values are any\n"
      "buffers, or binary files on disk (sent from their position to their end, read as they\n"
      "are sent: never held whole). compress= 'gzip', 'br', 'zstd' or False overrides the store's compress option;\n"
      "raw=True stores the values as they are, already encoded with content_encoding (a value\n"
      "may also be a (bytes, encoding) pair, as a raw read returns it); with compress= too, they\n"
      "are decoded from that encoding and stored in compress's instead. Returns None. Raises\n"
      "BatchError, after every transfer has ended, if some writes failed (the others stay)." },
    { "put", (PyCFunction)(void (*)(void))store_put, METH_VARARGS | METH_KEYWORDS,
      "put($self, key, value, /, *, compress=None, level=None, raw=False, content_encoding=None,\n"
      " content_type=None, cache_control=None, content_disposition=None, storage_class=None,\n"
      " metadata=None)\n--\n\n"
      "Write one value, encoded and with the attributes as setitems says (the attributes given\n"
      "replace the store's defaults). Returns None. Raises CloudFilesError on failure." },
    { "get_raw", (PyCFunction)store_get_raw, METH_O,
      "get_raw($self, key, /)\n--\n\n"
      "Return (bytes, encoding): the object as stored, not decoded, and its Content-Encoding\n"
      "('gzip', 'br', 'zstd', another name as the server gave it, or None). Raises KeyError\n"
      "if key is missing." },
    { "_head", (PyCFunction)store_head, METH_O,
      "_head($self, key, /)\n--\n\n"
      "Return a dict of the object's attributes; KeyError if missing (see head())." },
    { "_heads", (PyCFunction)store_heads, METH_O,
      "_heads($self, keys, /)\n--\n\n"
      "Return {key: dict} of the keys present, in parallel (see heads())." },
    { "delitems", (PyCFunction)store_delitems, METH_O,
      "delitems($self, keys, /)\n--\n\n"
      "Delete keys (any iterable) in parallel; missing keys are ignored. Returns None.\n"
      "Raises BatchError, after every transfer has ended, if some deletes failed." },
    { "iter_get", (PyCFunction)(void (*)(void))store_iter_get, METH_VARARGS | METH_KEYWORDS,
      "iter_get($self, keys, /, *, raw=False)\n--\n\n"
      "Return an iterator of (key, bytes) pairs, bytes None for a missing key, in the order\n"
      "the transfers complete, with at most twice the concurrency in flight; raw=True gives\n"
      "(key, (bytes as stored, encoding) or None). A failed key raises its error from the\n"
      "iterator; leaving the loop early gives up the rest." },
    { "get_range", (PyCFunction)(void (*)(void))store_get_range, METH_VARARGS | METH_KEYWORDS,
      "get_range($self, /, key, start, end=None)\n--\n\n"
      "Return bytes [start, end) of key (end None: to the end); start < 0 reads the last\n"
      "-start bytes; a range past the end gives b''. Raises KeyError if key is missing,\n"
      "CloudFilesError on any other failure." },
    { "get_ranges", (PyCFunction)(void (*)(void))store_get_ranges, METH_VARARGS | METH_KEYWORDS,
      "get_ranges($self, ranges, /, *, raw=False, _blobs=False)\n--\n\n"
      "Read an iterable of (key, start, end) ranges in parallel; return a list of bytes in\n"
      "the same order, None for a missing key. A range of an encoded object is of its\n"
      "decoded value (the object is read whole); raw=True: ranges of the stored bytes,\n"
      "each a (bytes, encoding) pair (with _blobs=True, private: a Blob for the bytes).\n"
      "Raises BatchError if some reads failed." },
    { "entries", (PyCFunction)(void (*)(void))store_entries, METH_VARARGS | METH_KEYWORDS,
      "entries($self, /, prefix='', *, details=False)\n--\n\n"
      "Return a sorted list of (key, size) for every key starting with prefix (size -1\n"
      "where the listing does not give it); with details, (key, size, mtime, etag): mtime in\n"
      "Unix seconds and the listing's ETag, None where it has none. Raises CloudFilesError\n"
      "if the listing fails." },
    { "copy", (PyCFunction)(void (*)(void))store_copy, METH_VARARGS | METH_KEYWORDS,
      "copy($self, /, source, destination)\n--\n\n"
      "Copy an object within the store, on the server where it can (S3 CopyObject, GCS\n"
      "rewrite). Returns None. Raises KeyError if source is missing, CloudFilesError on\n"
      "any other failure." },
    { "_copy_from", (PyCFunction)store_copy_from, METH_VARARGS,
      "_copy_from($self, source_store, items, /)\n--\n\n"
      "Server-side copies from source_store of items (source key, destination key, size or\n"
      "None) (see _can_copy_from)." },
    { "_can_copy_from", (PyCFunction)store_can_copy_from, METH_O,
      "_can_copy_from($self, source_store, /)\n--\n\n"
      "Return whether _copy_from runs on the server (same service and endpoint; the caller\n"
      "checks the credentials are the same)." },
    { "_new_file", (PyCFunction)store_new_file, METH_O,
      "_new_file($self, key, /)\n--\n\n"
      "A NewFile: a new object for key written piece by piece (os.pwrite to its fileno()),\n"
      "then commit(encoding=None) or discard(). file:// stores only (TypeError otherwise)." },
    { "_open_stored", (PyCFunction)store_open_stored, METH_O,
      "_open_stored($self, key, /)\n--\n\n"
      "(file, encoding): the stored bytes of key open for reading ('rb'), with their content\n"
      "encoding (None: identity). file:// stores only (TypeError otherwise); KeyError if\n"
      "absent." },
    { "listdir", (PyCFunction)(void (*)(void))store_listdir, METH_VARARGS | METH_KEYWORDS,
      "listdir($self, /, path='')\n--\n\n"
      "Return the sorted names (keys and directories) one level below path.\n"
      "Raises CloudFilesError if the listing fails." },
    { "rmdir", (PyCFunction)(void (*)(void))store_rmdir, METH_VARARGS | METH_KEYWORDS,
      "rmdir($self, /, path='')\n--\n\n"
      "Delete every key below path (the whole store for ''), in parallel. Returns None.\n"
      "Raises BatchError if some deletes failed." },
    { "getsize", (PyCFunction)(void (*)(void))store_getsize, METH_VARARGS | METH_KEYWORDS,
      "getsize($self, /, path='')\n--\n\n"
      "Return the size in bytes of the key path, or, if path is a directory (or ''), the\n"
      "total size of the objects directly in it. Raises CloudFilesError on failure." },
    { "clear", (PyCFunction)store_clear, METH_NOARGS,
      "clear($self, /)\n--\n\nDelete every key in the store, in parallel. Returns None.\n"
      "Raises BatchError if some deletes failed." },
    { "close", (PyCFunction)store_close, METH_NOARGS,
      "close($self, /)\n--\n\nClose the store: later operations raise ValueError. Returns\n"
      "None; closing twice is harmless." },
    { "__enter__", (PyCFunction)store_enter, METH_NOARGS, NULL },
    { "__exit__", (PyCFunction)store_exit, METH_VARARGS, NULL },
    { "__reduce__", (PyCFunction)store_reduce, METH_NOARGS, NULL },
    { NULL },
};

/* What the backend can do (cfs_backend_ops.capabilities), as names. */
static PyObject *store_get_capabilities(StoreObject *s, void *closure)
{
    (void)closure;
    if (cfs_store_check_open(s) < 0)
        return NULL;
    static const struct {
        unsigned flag;
        const char *name;
    } names[] = {
        { CFS_CAP_ATOMIC_IF_ABSENT, "atomic_if_absent" }, { CFS_CAP_SERVER_COPY, "server_copy" },
        { CFS_CAP_CONTENT_TYPE, "content_type" },         { CFS_CAP_OBJECT_ATTRS, "object_attrs" },
        { CFS_CAP_STORAGE_CLASS, "storage_class" },
    };
    PyObject *set = PyFrozenSet_New(NULL);
    for (size_t i = 0; set && i < sizeof names / sizeof names[0]; i++) {
        if (!(s->backend->ops->capabilities & names[i].flag))
            continue;
        PyObject *name = PyUnicode_FromString(names[i].name);
        if (!name || PySet_Add(set, name) < 0)
            Py_CLEAR(set);
        Py_XDECREF(name);
    }
    return set;
}

static PyObject *store_get_delete_many_max(StoreObject *s, void *closure)
{
    (void)closure;
    if (cfs_store_check_open(s) < 0)
        return NULL;
    return PyLong_FromSize_t(s->backend->ops->delete_many_max);
}

static PyObject *store_get_upload_bytes_held(StoreObject *s, void *closure)
{
    (void)closure;
    /* a closed store has no uploads in progress (and no limiter): 0, not an error, so a
     * progress thread may read it at any time */
    return PyLong_FromLongLong(s->limiter ? cfs_limiter_upload_bytes_held(s->limiter) : 0);
}

static PyGetSetDef store_getset[] = {
    { "url", (getter)store_get_url, NULL, "The store's URL, without credentials.", NULL },
    { "options", (getter)store_get_options, NULL,
      "The options given, secret ones shown as '***' (a pickle keeps them).", NULL },
    { "closed", (getter)store_get_closed, NULL, "Whether close() was called.", NULL },
    { "capabilities", (getter)store_get_capabilities, NULL,
      "What the backend can do beyond reads and writes: 'atomic_if_absent' (create-if-absent\n"
      "is atomic on the server), 'server_copy' (copy() moves no bytes through this process),\n"
      "what writes store besides the bytes: 'content_type', 'object_attrs' (cache_control,\n"
      "content_disposition, metadata), 'storage_class'.",
      NULL },
    { "delete_many_max", (getter)store_get_delete_many_max, NULL,
      "How many keys one multi-key delete request takes (S3 DeleteObjects: 1000, a GCS\n"
      "batch: 100); 0 where each key takes a request of its own.",
      NULL },
    { "upload_bytes_held", (getter)store_get_upload_bytes_held, NULL,
      "Bytes of this store's uploads in progress that the service holds already: S3\n"
      "multipart parts stored, the chunks a GCS resumable session holds. An upload's bytes\n"
      "leave the count when it completes (done or failed), so the bytes of the objects\n"
      "written plus this is a running total: a progress bar for one large object.",
      NULL },
    { NULL },
};

static PyMappingMethods store_as_mapping = {
    .mp_length = (lenfunc)store_len,
    .mp_subscript = (binaryfunc)store_getitem,
    .mp_ass_subscript = (objobjargproc)store_setitem,
};

static PySequenceMethods store_as_sequence = {
    .sq_contains = (objobjproc)store_contains,
};

PyTypeObject cfs_StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cloudfiles_store._core.Store",
    .tp_basicsize = sizeof(StoreObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Store(url, /, **options)\n--\n\n"
              "A mapping of keys to bytes over one storage location (see CloudFilesStore).\n"
              "Raises UnsupportedSchemeError for a URL no backend handles, OptionError for an\n"
              "unknown or ill-typed option.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)store_init,
    .tp_dealloc = (destructor)store_dealloc,
    .tp_traverse = (traverseproc)store_traverse,
    .tp_clear = (inquiry)store_clear_refs,
    .tp_repr = (reprfunc)store_repr,
    .tp_richcompare = (richcmpfunc)store_richcompare,
    .tp_iter = (getiterfunc)store_iter,
    .tp_as_mapping = &store_as_mapping,
    .tp_as_sequence = &store_as_sequence,
    .tp_methods = store_methods,
    .tp_getset = store_getset,
    .tp_weaklistoffset = offsetof(StoreObject, weakreflist),
    .tp_hash = PyObject_HashNotImplemented,
};
