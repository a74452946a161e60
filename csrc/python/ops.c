/* Ops built from Python arguments, submitted and waited for: the CPython layer's one door
 * into the engine (ops.h). */
#include "python/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "python/blob.h"
#include "python/attrs.h"
#include "python/pyutil.h"
#include "util/codec.h"

/* ---------- builders ---------- */

/* A new op of `kind` on a validated key or prefix, holding the store and the key. */
static cfs_op *new_op(StoreObject *s, cfs_op_kind kind, PyObject *key, int prefix)
{
    if (cfs_store_check_open(s) < 0)
        return NULL;
    const char *k;
    Py_ssize_t n;
    if (cfs_py_key(key, prefix, &k, &n) < 0)
        return NULL;
    cfs_pyop *p = PyMem_Calloc(1, sizeof *p);
    cfs_op *op = p ? cfs_op_new(kind, s->backend, k, (size_t)n) : NULL;
    if (!op) {
        PyMem_Free(p);
        PyErr_NoMemory();
        return NULL;
    }
    p->store = (StoreObject *)Py_NewRef((PyObject *)s);
    p->key = Py_NewRef(key);
    op->caller = p;
    return op;
}

void cfs_pyop_release(cfs_op *op)
{
    if (!op)
        return;
    cfs_pyop *p = op->caller;
    if (p) {
        Py_XDECREF(p->store);
        Py_XDECREF(p->key);
        Py_XDECREF(p->future);
        Py_XDECREF(p->on_cancel);
        Py_XDECREF(p->source_store);
        if (p->has_value)
            PyBuffer_Release(&p->value);
        if (p->has_file)
            close(p->file.fd);
        PyMem_Free(p);
        op->caller = NULL;
    }
    cfs_op_free(op);
}

cfs_op *cfs_pyop_get(StoreObject *s, PyObject *key, PyObject *start, PyObject *end)
{
    cfs_op *op = new_op(s, CFS_OP_GET, key, 0);
    if (op && cfs_py_range(start, end, &op->range) < 0) {
        cfs_pyop_release(op);
        return NULL;
    }
    return op;
}

cfs_op *cfs_pyop_head(StoreObject *s, PyObject *key)
{
    return new_op(s, CFS_OP_HEAD, key, 0);
}

/* ---------- content coding of writes ---------- */

int cfs_py_codec(PyObject *v, const char *what, int *given, int *codec)
{
    *given = 0;
    *codec = CFS_CODEC_NONE;
    if (v == NULL || v == Py_None)
        return 0;
    *given = 1;
    if (PyBool_Check(v)) {
        *codec = v == Py_True ? CFS_CODEC_GZIP : CFS_CODEC_NONE; /* as CloudFiles takes it */
        return 0;
    }
    const char *name = PyUnicode_Check(v) ? PyUnicode_AsUTF8(v) : NULL;
    if (!name) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%s must be a str, a bool or None, not %.100s", what,
                         Py_TYPE(v)->tp_name);
        return -1;
    }
    cfs_codec c;
    if (strcasecmp(name, "none") == 0) {
        c = CFS_CODEC_NONE;
    } else if (cfs_codec_parse(name, &c) < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be None, 'gzip', 'br' or 'zstd', not %R", what, v);
        return -1;
    }
    *codec = (int)c;
    return 0;
}

int cfs_py_put_coding(PyObject *compress, PyObject *level, int raw, PyObject *content_encoding,
                      cfs_put_coding *out)
{
    memset(out, 0, sizeof *out);
    out->level = CFS_CODEC_LEVEL_DEFAULT;
    out->raw = raw;
    if (cfs_py_codec(compress, "compress", &out->given, &out->codec) < 0)
        return -1;
    int ce_given = 0;
    if (cfs_py_codec(content_encoding == Py_True || content_encoding == Py_False ? NULL
                                                                                 : content_encoding,
                     "content_encoding", &ce_given, &out->raw_codec) < 0)
        return -1;
    if (ce_given && !raw) {
        PyErr_SetString(PyExc_ValueError, "content_encoding= names the encoding of a raw value: "
                                          "give raw=True (or compress= to have the value encoded)");
        return -1;
    }
    if (level && level != Py_None) {
        long v = PyLong_AsLong(level);
        if (v == -1 && PyErr_Occurred())
            return -1;
        cfs_codec c = (cfs_codec)out->codec;
        if ((raw && !out->given) || (out->given && c == CFS_CODEC_NONE)) {
            PyErr_SetString(PyExc_ValueError, "level= without a compression");
            return -1;
        }
        if (out->given && (v < INT_MIN / 2 || v > INT_MAX / 2 || !cfs_codec_level_ok(c, (int)v))) {
            char range[64];
            cfs_codec_level_range(c, range, sizeof range);
            PyErr_Format(PyExc_ValueError, "level %ld is not a %s level (%s)", v, cfs_codec_name(c),
                         range);
            return -1;
        }
        out->level = (int)v;
    }
    return 0;
}

/* Whether the store's compress_keys patterns take this key (none given: every key). */
static int key_compressed(const StoreObject *s, const char *key)
{
    if (!s->compress_keys)
        return 1;
    const char *slash = strrchr(key, '/');
    const char *base = slash ? slash + 1 : key;
    char pattern[256];
    for (const char *p = s->compress_keys; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        while (n > 0 && *p == ' ') {
            p++;
            n--;
        }
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (n > 0 && n < sizeof pattern) {
            memcpy(pattern, p, n);
            pattern[n] = '\0';
            if (fnmatch(pattern, base, 0) == 0)
                return 1;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

/* Set a PUT op's coding: a raw value's encoding, or the codec to encode it with (a raw
 * value with compress= given is decoded from its encoding and encoded with that). */
static int apply_coding(StoreObject *s, cfs_op *op, const cfs_put_coding *pc, int item_codec)
{
    if (pc && pc->raw) {
        int c = item_codec >= 0 ? item_codec : pc->raw_codec;
        if (pc->given) {
            op->body_codec = c;
            op->encode = pc->codec;
            op->encode_level = pc->level;
            return 0;
        }
        const char *name = cfs_codec_name((cfs_codec)c);
        if (name && !(op->attrs.content_encoding = strdup(name))) {
            PyErr_NoMemory();
            return -1;
        }
        return 0;
    }
    if (pc && pc->given) {
        op->encode = pc->codec;
        op->encode_level = pc->level;
        return 0;
    }
    if (s->compress != CFS_CODEC_NONE && key_compressed(s, op->key)) {
        op->encode = s->compress;
        op->encode_level =
            pc && pc->level != CFS_CODEC_LEVEL_DEFAULT ? pc->level : s->compress_level;
        if (!cfs_codec_level_ok((cfs_codec)op->encode, op->encode_level)) {
            char range[64];
            cfs_codec_level_range((cfs_codec)op->encode, range, sizeof range);
            PyErr_Format(PyExc_ValueError, "level %d is not a %s level (%s)", op->encode_level,
                         cfs_codec_name((cfs_codec)op->encode), range);
            return -1;
        }
    }
    return 0;
}

cfs_op *cfs_pyop_put_coded(StoreObject *s, PyObject *key, PyObject *value, int if_absent,
                           const cfs_put_coding *pc)
{
    int item_codec = -1;
    if (pc && pc->raw && PyTuple_Check(value) && PyTuple_GET_SIZE(value) == 2) {
        int given;
        if (cfs_py_codec(PyTuple_GET_ITEM(value, 1), "a raw value's encoding", &given,
                         &item_codec) < 0)
            return NULL;
        value = PyTuple_GET_ITEM(value, 0);
    }
    cfs_op *op = cfs_pyop_put(s, key, value, if_absent);
    if (op && (op->encode = CFS_CODEC_NONE, apply_coding(s, op, pc, item_codec) < 0)) {
        cfs_pyop_release(op);
        return NULL;
    }
    return op;
}

PyObject *cfs_py_raw_result(cfs_op *op, int blob)
{
    PyObject *data = blob ? cfs_blob_from_buf(&op->data) : cfs_bytes_from_buf(&op->data);
    if (!data)
        return NULL;
    cfs_codec c;
    const char *name = op->attrs.content_encoding;
    if (name && cfs_codec_parse(name, &c) == 0)
        name = cfs_codec_name(c); /* "x-gzip" is "gzip"; identity is None */
    return Py_BuildValue("(Nz)", data, name);
}

/* Where the engine puts a file body it encodes (coding.c): Python's temporary directory
 * (TMPDIR, tempfile.tempdir), as the caller's own temporary files go. */
static int set_spool_dir(cfs_op *op)
{
    PyObject *tempfile = PyImport_ImportModule("tempfile");
    PyObject *dir = tempfile ? PyObject_CallMethod(tempfile, "gettempdir", NULL) : NULL;
    Py_XDECREF(tempfile);
    const char *utf8 = dir ? PyUnicode_AsUTF8(dir) : NULL;
    if (utf8 && !(op->spool_dir = strdup(utf8)))
        PyErr_NoMemory();
    Py_XDECREF(dir);
    return op->spool_dir ? 0 : -1;
}

/* A PUT's body from a file value (a binary file object on a regular file): from its
 * position (tell(), which knows what a buffered reader has read ahead) to its end. The op
 * reads a duplicate of its descriptor at offsets, as it hashes and sends. 0, or -1 with an
 * exception set. */
static int put_body_from_file(cfs_op *op, PyObject *key, PyObject *value)
{
    cfs_pyop *p = cfs_pyop_of(op);
    if (PyObject_HasAttrString(value, "encoding")) {
        PyErr_Format(PyExc_TypeError,
                     "value for key %R is a text file: open it in binary mode ('rb')", key);
        return -1;
    }
    int fd = PyObject_AsFileDescriptor(value);
    if (fd < 0) { /* io.BytesIO: fileno() raises */
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "value for key %R is a file object without a descriptor (%.100s): give "
                     "its bytes instead",
                     key, Py_TYPE(value)->tp_name);
        return -1;
    }
    struct stat st;
    PyThreadState *ts = PyEval_SaveThread();
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int e = dup_fd < 0 || fstat(dup_fd, &st) < 0 ? errno : 0;
    PyEval_RestoreThread(ts);
    if (e) {
        if (dup_fd >= 0)
            close(dup_fd);
        errno = e;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(dup_fd);
        PyErr_Format(PyExc_TypeError,
                     "value for key %R is a file that is not a regular one (a pipe, a socket, a "
                     "device): it is read at offsets as it is sent; give its bytes instead",
                     key);
        return -1;
    }
    p->file.fd = dup_fd; /* closed with the op from here on */
    p->has_file = 1;
    PyObject *at = PyObject_CallMethod(value, "tell", NULL);
    long long pos = at ? PyLong_AsLongLong(at) : -1;
    Py_XDECREF(at);
    if (pos < 0) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ValueError, "value for key %R: the file's position is %lld", key,
                         pos);
        return -1;
    }
    op->body_len = st.st_size > pos ? (size_t)(st.st_size - pos) : 0;
    if (op->body_len == 0) {
        op->body = ""; /* nothing to read: an empty body in memory */
        return 0;
    }
    op->body_file = &p->file;
    op->body_offset = pos;
    return set_spool_dir(op);
}

cfs_op *cfs_pyop_put(StoreObject *s, PyObject *key, PyObject *value, int if_absent)
{
    cfs_op *op = new_op(s, CFS_OP_PUT, key, 0);
    if (!op)
        return NULL;
    cfs_pyop *p = cfs_pyop_of(op);
    p->has_value = PyObject_GetBuffer(value, &p->value, PyBUF_CONTIG_RO) == 0;
    if (!p->has_value)
        PyErr_Clear(); /* not a buffer: a file, or the TypeError below */
    if (p->has_value) {
        op->body = p->value.buf;
        op->body_len = (size_t)p->value.len;
    } else if (PyObject_HasAttrString(value, "fileno")) {
        if (put_body_from_file(op, key, value) < 0) {
            cfs_pyop_release(op);
            return NULL;
        }
    } else {
        PyErr_Format(PyExc_TypeError,
                     "value for key %R must support the buffer protocol (bytes, bytearray, "
                     "memoryview, numpy array) or be a binary file, not %.100s",
                     key, Py_TYPE(value)->tp_name);
        cfs_pyop_release(op);
        return NULL;
    }
    if (cfs_pyop_set_attrs(op, &s->write_attrs) < 0) { /* the store's; a call may replace them */
        cfs_pyop_release(op);
        return NULL;
    }
    op->if_none_match = if_absent;
    if (apply_coding(s, op, NULL, -1) < 0) { /* the store's compress default */
        cfs_pyop_release(op);
        return NULL;
    }
    return op;
}

cfs_op *cfs_pyop_delete(StoreObject *s, PyObject *key, int missing_ok)
{
    cfs_op *op = new_op(s, CFS_OP_DELETE, key, 0);
    if (op)
        op->missing_ok = missing_ok;
    return op;
}

cfs_op *cfs_pyop_delete_many(StoreObject *s, PyObject *keys)
{
    if (cfs_store_check_open(s) < 0)
        return NULL;
    if (PyUnicode_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "a multi-key delete takes a sequence of keys, not a str");
        return NULL;
    }
    /* a copy: the op's own list of the keys its errors name */
    PyObject *list = PySequence_List(keys);
    if (!list)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    size_t max = s->backend->ops->delete_many_max;
    cfs_op *op = NULL;
    if (max == 0)
        PyErr_Format(PyExc_ValueError, "a %s store deletes one key per request",
                     s->backend->ops->name);
    else if (n == 0 || (size_t)n > max)
        PyErr_Format(PyExc_ValueError,
                     "a multi-key delete of a %s store takes 1 to %zu keys, not %zd",
                     s->backend->ops->name, max, n);
    else
        op = new_op(s, CFS_OP_DELETE_MANY, PyList_GET_ITEM(list, 0), 0);
    if (!op) {
        Py_DECREF(list);
        return NULL;
    }
    Py_SETREF(cfs_pyop_of(op)->key, list);
    op->keys = calloc((size_t)n, sizeof *op->keys);
    if (!op->keys) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *k;
        Py_ssize_t len;
        if (cfs_py_key(PyList_GET_ITEM(list, i), 0, &k, &len) < 0)
            goto fail;
        op->keys[i] = strndup(k, (size_t)len);
        if (!op->keys[i]) {
            PyErr_NoMemory();
            goto fail;
        }
        op->n_keys++;
    }
    return op;
fail:
    cfs_pyop_release(op);
    return NULL;
}

cfs_op *cfs_pyop_list(StoreObject *s, PyObject *prefix, int recursive)
{
    cfs_op *op = new_op(s, CFS_OP_LIST, prefix, 1);
    if (op)
        op->recursive = recursive;
    return op;
}

cfs_op *cfs_pyop_rmdir(StoreObject *s, PyObject *prefix)
{
    return new_op(s, CFS_OP_RMDIR, prefix, 1);
}

int cfs_pyop_can_copy_from(StoreObject *s, StoreObject *from)
{
    if (!s->backend || !from->backend)
        return 0;
    if (s == from)
        return 1;
    const cfs_backend_ops *ops = s->backend->ops;
    return ops->can_copy_from && ops->can_copy_from(s->backend, from->backend);
}

cfs_op *cfs_pyop_copy(StoreObject *s, StoreObject *from, PyObject *source, PyObject *dest,
                      long long size)
{
    const char *src;
    Py_ssize_t src_len;
    if (from && cfs_store_check_open(from) < 0)
        return NULL;
    if (from && !cfs_pyop_can_copy_from(s, from)) {
        PyErr_Format(PyExc_ValueError, "a %s store cannot copy from this %s store on the server",
                     s->backend ? s->backend->ops->name : "closed", from->backend->ops->name);
        return NULL;
    }
    if (cfs_py_key(source, 0, &src, &src_len) < 0)
        return NULL;
    cfs_op *op = new_op(s, CFS_OP_COPY, dest, 0);
    if (!op)
        return NULL;
    op->size = size < 0 ? -1 : (int64_t)size;
    if (from && from != s) {
        cfs_pyop_of(op)->source_store = Py_NewRef((PyObject *)from);
        op->source_backend = from->backend;
    }
    Py_SETREF(cfs_pyop_of(op)->key, Py_NewRef(source)); /* a KeyError names the missing source */
    op->source = strndup(src, (size_t)src_len);
    if (!op->source) {
        cfs_pyop_release(op);
        PyErr_NoMemory();
        return NULL;
    }
    return op;
}

/* ---------- running ---------- */

int cfs_pyop_submit(cfs_op *op, cfs_done_fn on_done, void *ctx, const atomic_int *cancel)
{
    op->limiter = cfs_pyop_of(op)->store->limiter;
    op->on_done = on_done;
    op->ctx = ctx;
    op->cancel = cancel;
    if (cfs_engine_submit(op) < 0) {
        PyErr_SetString(cfs_err.base, "the transfer engine could not start");
        return -1;
    }
    return 0;
}

int cfs_pyop_run(cfs_op *op)
{
    cfs_waiter *w = cfs_waiter_new();
    if (!w) {
        PyErr_NoMemory();
        return -1;
    }
    if (cfs_pyop_submit(op, cfs_waiter_done, w, cfs_waiter_cancel_flag(w)) < 0) {
        cfs_waiter_free(w);
        return -1;
    }
    int interrupted = 0;
    for (;;) {
        cfs_op *done;
        /* bounded while no signal came, so that a Ctrl-C is seen while a transfer stalls */
        long wait_ms = interrupted ? -1 : CFS_SIGNAL_CHECK_MS;
        Py_BEGIN_ALLOW_THREADS done = cfs_waiter_take(w, 1, wait_ms);
        Py_END_ALLOW_THREADS if (done) break;
        if (PyErr_CheckSignals() < 0) {
            /* the signal's exception stays set; the op is given up if it can be (engine.h)
             * and waited for, since it uses the caller's buffers */
            interrupted = 1;
            cfs_waiter_cancel(w);
        }
    }
    cfs_waiter_free(w);
    return interrupted ? -1 : 0;
}

int cfs_pyop_run_checked(cfs_op *op, int missing_ok)
{
    if (cfs_pyop_run(op) < 0)
        return -1;
    if (op->status == CFS_OK || (missing_ok && op->status == CFS_ENOTFOUND))
        return 0;
    cfs_py_raise_op(op, cfs_pyop_of(op)->key);
    return -1;
}

/* ---------- outcomes ---------- */

int cfs_pyop_failed(const cfs_op *op, int missing_ok)
{
    if (op->status != CFS_OK)
        return !(missing_ok && op->status == CFS_ENOTFOUND);
    return op->kind == CFS_OP_DELETE_MANY && op->entries.len > 0;
}

static int append_failure(PyObject *failures, PyObject *exc)
{
    if (!exc)
        return -1;
    int rc = PyList_Append(failures, exc);
    Py_DECREF(exc);
    return rc;
}

int cfs_pyop_add_failures(const cfs_op *op, PyObject *failures)
{
    PyObject *key = cfs_pyop_of(op)->key;
    if (op->kind != CFS_OP_DELETE_MANY)
        return append_failure(failures, cfs_py_op_error(op, key));
    /* a group: the request failed for all its keys, or the server named those it kept */
    if (op->status != CFS_OK) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(key); i++)
            if (append_failure(failures, cfs_py_op_error(op, PyList_GET_ITEM(key, i))) < 0)
                return -1;
        return 0;
    }
    for (size_t i = 0; i < op->entries.len; i++) {
        const cfs_entry *e = &op->entries.items[i];
        PyObject *name =
            PyUnicode_DecodeUTF8(e->name, (Py_ssize_t)strlen(e->name), "surrogateescape");
        if (!name)
            return -1;
        int rc = append_failure(failures,
                                cfs_py_key_error(op, name, e->status, e->detail ? e->detail : ""));
        Py_DECREF(name);
        if (rc < 0)
            return -1;
    }
    return 0;
}
