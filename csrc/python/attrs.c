/* Object attributes from and to Python (attrs.h). */
#include "python/attrs.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/backend.h"
#include "python/pyutil.h"

const char *const cfs_write_attr_names[] = {
    "content_type", "cache_control", "content_disposition", "storage_class", "metadata", NULL,
};

/* ---------- checks ---------- */

/* A header value: printable ASCII, 1 to CFS_ATTR_VALUE_MAX bytes, no space at either end
 * (servers trim it, and SigV4 signs the value trimmed: it would not come back as given). */
static int check_value(const char *field, const char *what, const char *v, Py_ssize_t n)
{
    if (n == 0 || n > CFS_ATTR_VALUE_MAX) {
        PyErr_Format(cfs_err.option, "%s%s: must be 1 to %d characters, not %zd", field, what,
                     CFS_ATTR_VALUE_MAX, n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c >= 0x7F) {
            PyErr_Format(cfs_err.option,
                         "%s%s: only printable ASCII is allowed in a header value (found %s)",
                         field, what,
                         c == '\r' || c == '\n' ? "CR or LF"
                         : c == 0               ? "NUL"
                                                : "a control or non-ASCII byte");
            return -1;
        }
    }
    if (v[0] == ' ' || v[n - 1] == ' ') {
        PyErr_Format(cfs_err.option, "%s%s: may not begin or end with a space", field, what);
        return -1;
    }
    return 0;
}

/* An HTTP token (RFC 9110 tchar), the name of a user metadata entry. */
static int is_token(const char *s, Py_ssize_t n)
{
    if (n == 0)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c)) || c == 0 || c >= 0x80)
            return 0;
    }
    return 1;
}

static const char *utf8_of(PyObject *v, const char *field, Py_ssize_t *n)
{
    if (!PyUnicode_Check(v)) {
        PyErr_Format(cfs_err.option, "%s: must be a str, not %.100s", field, Py_TYPE(v)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8AndSize(v, n);
}

static int take_metadata(PyObject *md, cfs_object_attrs *out)
{
    if (!PyMapping_Check(md) || PyUnicode_Check(md)) {
        PyErr_Format(cfs_err.option, "metadata: must be a mapping of str to str, not %.100s",
                     Py_TYPE(md)->tp_name);
        return -1;
    }
    PyObject *items = PyMapping_Items(md);
    if (!items)
        return -1;
    int rc = -1;
    Py_ssize_t total = 0, count = PyList_GET_SIZE(items);
    if (count > CFS_META_MAX) {
        PyErr_Format(cfs_err.option, "metadata: at most %d entries, not %zd", CFS_META_MAX, count);
        goto out;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PyList_GET_ITEM(items, i);
        PyObject *k = PyTuple_GET_ITEM(pair, 0), *v = PyTuple_GET_ITEM(pair, 1);
        Py_ssize_t kn, vn;
        const char *ks = utf8_of(k, "metadata name", &kn);
        if (!ks)
            goto out;
        if (!is_token(ks, kn) || kn > 128) {
            PyErr_Format(cfs_err.option,
                         "metadata: the name %R is not a valid header name (1 to 128 letters, "
                         "digits and !#$%%&'*+-.^_`|~)",
                         k);
            goto out;
        }
        const char *vs = utf8_of(v, "metadata value", &vn);
        if (!vs)
            goto out;
        char what[160];
        PyOS_snprintf(what, sizeof what, "[%.*s]", (int)kn, ks);
        if (vn > 0 && check_value("metadata", what, vs, vn) < 0)
            goto out;
        total += kn + vn;
        if (total > CFS_META_BYTES_MAX) {
            PyErr_Format(cfs_err.option,
                         "metadata: names and values add up to more than %d bytes "
                         "(S3's limit on user metadata)",
                         CFS_META_BYTES_MAX);
            goto out;
        }
        char lower[129];
        for (Py_ssize_t j = 0; j < kn; j++)
            lower[j] = (char)tolower((unsigned char)ks[j]);
        for (size_t j = 0; j < out->n_metadata; j++)
            if (strlen(out->metadata[j].name) == (size_t)kn &&
                !memcmp(out->metadata[j].name, lower, (size_t)kn)) {
                PyErr_Format(cfs_err.option,
                             "metadata: the name %R is given twice (names are "
                             "case-insensitive and stored in lower case)",
                             k);
                goto out;
            }
        if (cfs_object_attrs_add_meta(out, lower, (size_t)kn, vs, (size_t)vn) < 0) {
            PyErr_NoMemory();
            goto out;
        }
    }
    rc = 0;
out:
    Py_DECREF(items);
    return rc;
}

int cfs_py_write_attrs(PyObject *const values[5], cfs_object_attrs *out)
{
    cfs_object_attrs_free(out);
    char **fields[4] = { &out->content_type, &out->cache_control, &out->content_disposition,
                         &out->storage_class };
    for (int i = 0; i < 4; i++) {
        PyObject *v = values[i];
        if (!v || v == Py_None)
            continue;
        Py_ssize_t n;
        const char *s = utf8_of(v, cfs_write_attr_names[i], &n);
        if (!s || check_value(cfs_write_attr_names[i], "", s, n) < 0)
            goto fail;
        if (i == 3) {
            for (Py_ssize_t j = 0; j < n; j++)
                if (!(isupper((unsigned char)s[j]) || isdigit((unsigned char)s[j]) || s[j] == '_') ||
                    n > 64) {
                    PyErr_Format(cfs_err.option,
                                 "storage_class: %R is not a storage class name "
                                 "(upper-case letters, digits and _, such as STANDARD_IA, NEARLINE)",
                                 v);
                    goto fail;
                }
        }
        if (cfs_attr_set(fields[i], s, (size_t)n) < 0) {
            PyErr_NoMemory();
            goto fail;
        }
    }
    if (values[4] && values[4] != Py_None && take_metadata(values[4], out) < 0)
        goto fail;
    return 0;
fail:
    cfs_object_attrs_free(out);
    return -1;
}

int cfs_py_write_attrs_take(PyObject *options, cfs_object_attrs *out)
{
    PyObject *values[5] = { NULL };
    for (int i = 0; i < 5; i++) {
        PyObject *v = PyDict_GetItemString(options, cfs_write_attr_names[i]); /* borrowed */
        if (v) {
            values[i] = Py_NewRef(v);
            if (PyDict_DelItemString(options, cfs_write_attr_names[i]) < 0)
                goto fail;
        }
    }
    int rc = cfs_py_write_attrs(values, out);
    for (int i = 0; i < 5; i++)
        Py_XDECREF(values[i]);
    return rc;
fail:
    for (int i = 0; i < 5; i++)
        Py_XDECREF(values[i]);
    return -1;
}

static int refuse(StoreObject *s, const char *field, const char *why)
{
    PyErr_Format(cfs_err.option, "%s: a %s store cannot store it (%s)", field,
                 s->backend->ops->name, why);
    return -1;
}

int cfs_py_attrs_for_call(StoreObject *s, const cfs_object_attrs *call, cfs_object_attrs *out)
{
    if (cfs_object_attrs_copy(out, &s->write_attrs) < 0)
        return PyErr_NoMemory(), -1;
    char **dst[4] = { &out->content_type, &out->cache_control, &out->content_disposition,
                      &out->storage_class };
    char *const src[4] = { call->content_type, call->cache_control, call->content_disposition,
                           call->storage_class };
    for (int i = 0; i < 4; i++)
        if (src[i] && cfs_attr_set(dst[i], src[i], strlen(src[i])) < 0)
            goto oom;
    size_t total = 0;
    for (size_t i = 0; i < call->n_metadata; i++) {
        const cfs_meta_pair *p = &call->metadata[i];
        size_t j;
        for (j = 0; j < out->n_metadata; j++)
            if (!strcmp(out->metadata[j].name, p->name))
                break;
        if (j < out->n_metadata) {
            if (cfs_attr_set(&out->metadata[j].value, p->value, strlen(p->value)) < 0)
                goto oom;
        } else if (out->n_metadata >= CFS_META_MAX) {
            PyErr_Format(cfs_err.option, "metadata: at most %d entries with the store's own",
                         CFS_META_MAX);
            goto fail;
        } else if (cfs_object_attrs_add_meta(out, p->name, strlen(p->name), p->value,
                                             strlen(p->value)) < 0) {
            goto oom;
        }
    }
    for (size_t i = 0; i < out->n_metadata; i++)
        total += strlen(out->metadata[i].name) + strlen(out->metadata[i].value);
    if (total > CFS_META_BYTES_MAX) {
        PyErr_Format(cfs_err.option,
                     "metadata: with the store's own, names and values add up "
                     "to more than %d bytes",
                     CFS_META_BYTES_MAX);
        goto fail;
    }
    unsigned caps = s->backend->ops->capabilities;
    if (out->content_type && !(caps & CFS_CAP_CONTENT_TYPE)) {
        refuse(s, "content_type",
               "it keeps only the bytes; head() guesses a type from the extension");
        goto fail;
    }
    if (!(caps & CFS_CAP_OBJECT_ATTRS)) {
        const char *what = out->cache_control         ? "cache_control"
                           : out->content_disposition ? "content_disposition"
                           : out->n_metadata          ? "metadata"
                                                      : NULL;
        if (what) {
            refuse(s, what, "it keeps only the bytes and a content type at most");
            goto fail;
        }
    }
    if (out->storage_class && !(caps & CFS_CAP_STORAGE_CLASS)) {
        refuse(s, "storage_class", "only S3 and GCS have storage classes");
        goto fail;
    }
    return 0;
oom:
    PyErr_NoMemory();
fail:
    cfs_object_attrs_free(out);
    return -1;
}

/* ---------- content types ---------- */

/* The extension table: set at import by _set_mime_types, read when a PUT is built; both
 * with the GIL held, which is the lock that guards it. */
typedef struct mime_entry {
    char *ext;      /* lower case, with the dot */
    char *type;
} mime_entry;

static mime_entry *g_mime;
static size_t g_n_mime;
static char **g_encodings;     /* ".gz", ".bz2", ... */
static size_t g_n_encodings;

static int mime_cmp(const void *a, const void *b)
{
    return strcmp(((const mime_entry *)a)->ext, ((const mime_entry *)b)->ext);
}

static void mime_free(mime_entry *m, size_t n, char **enc, size_t n_enc)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].ext);
        free(m[i].type);
    }
    free(m);
    for (size_t i = 0; i < n_enc; i++)
        free(enc[i]);
    free(enc);
}

static char *lower_dup(const char *s, Py_ssize_t n)
{
    char *d = malloc((size_t)n + 1);
    if (!d)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        d[i] = (char)tolower((unsigned char)s[i]);
    d[n] = '\0';
    return d;
}

PyObject *cfs_py_set_mime_types(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *types, *encodings;
    if (!PyArg_ParseTuple(args, "O!O:_set_mime_types", &PyDict_Type, &types, &encodings))
        return NULL;
    PyObject *enc_list = PySequence_List(encodings);
    if (!enc_list)
        return NULL;
    Py_ssize_t n = PyDict_Size(types), ne = PyList_GET_SIZE(enc_list);
    mime_entry *m = calloc((size_t)n + 1, sizeof *m);
    char **enc = calloc((size_t)ne + 1, sizeof *enc);
    size_t used = 0, used_enc = 0;
    if (!m || !enc) {
        PyErr_NoMemory();
        goto fail;
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(types, &pos, &k, &v)) {
        Py_ssize_t kn, vn;
        const char *ks = PyUnicode_Check(k) ? PyUnicode_AsUTF8AndSize(k, &kn) : NULL;
        const char *vs = PyUnicode_Check(v) ? PyUnicode_AsUTF8AndSize(v, &vn) : NULL;
        if (!ks || !vs) {
            PyErr_Clear();
            continue;
        }
        /* the table comes from system files too: keep only what is a sane header value */
        if (kn < 2 || ks[0] != '.' || vn < 1 || vn > 255 || (Py_ssize_t)strcspn(vs, "\r\n\t") != vn)
            continue;
        int ascii = 1;
        for (Py_ssize_t i = 0; i < vn; i++)
            ascii &= (unsigned char)vs[i] >= 0x20 && (unsigned char)vs[i] < 0x7F;
        if (!ascii)
            continue;
        m[used].ext = lower_dup(ks, kn);
        m[used].type = strndup(vs, (size_t)vn);
        if (!m[used].ext || !m[used].type) {
            used++;
            PyErr_NoMemory();
            goto fail;
        }
        used++;
    }
    for (Py_ssize_t i = 0; i < ne; i++) {
        Py_ssize_t kn;
        PyObject *e = PyList_GET_ITEM(enc_list, i);
        const char *ks = PyUnicode_Check(e) ? PyUnicode_AsUTF8AndSize(e, &kn) : NULL;
        if (!ks) {
            PyErr_Clear();
            continue;
        }
        if (!(enc[used_enc] = lower_dup(ks, kn))) {
            PyErr_NoMemory();
            goto fail;
        }
        used_enc++;
    }
    qsort(m, used, sizeof *m, mime_cmp);
    mime_free(g_mime, g_n_mime, g_encodings, g_n_encodings);
    g_mime = m;
    g_n_mime = used;
    g_encodings = enc;
    g_n_encodings = used_enc;
    Py_DECREF(enc_list);
    Py_RETURN_NONE;
fail:
    Py_DECREF(enc_list);
    if (m || enc)
        mime_free(m, used, enc, used_enc);
    return NULL;
}

static const char *lookup_ext(const char *ext, size_t n)
{
    char lower[32];
    if (n >= sizeof lower)
        return NULL;
    for (size_t i = 0; i < n; i++)
        lower[i] = (char)tolower((unsigned char)ext[i]);
    lower[n] = '\0';
    mime_entry want = { lower, NULL };
    const mime_entry *hit =
        g_mime ? bsearch(&want, g_mime, g_n_mime, sizeof *g_mime, mime_cmp) : NULL;
    return hit ? hit->type : NULL;
}

static int is_encoding_ext(const char *ext, size_t n)
{
    for (size_t i = 0; i < g_n_encodings; i++)
        if (strlen(g_encodings[i]) == n && !strncasecmp(g_encodings[i], ext, n))
            return 1;
    return 0;
}

const char *cfs_guess_content_type(const char *key)
{
    const char *base = strrchr(key, '/');
    base = base ? base + 1 : key;
    size_t end = strlen(base);
    for (int round = 0; round < 2; round++) {
        const char *dot = NULL;
        for (size_t i = end; i > 0; i--)
            if (base[i - 1] == '.') {
                dot = base + i - 1;
                break;
            }
        if (!dot || dot == base) /* no extension; a dot file (".zattrs") has none either */
            return NULL;
        size_t n = (size_t)(base + end - dot);
        if (round == 0 && is_encoding_ext(dot, n)) {
            end = (size_t)(dot - base); /* "a.json.gz": the type of "a.json" */
            continue;
        }
        return lookup_ext(dot, n);
    }
    return NULL;
}

int cfs_pyop_set_attrs(cfs_op *op, const cfs_object_attrs *tmpl)
{
    /* the body's encoding is the op's own (set by whoever encoded it), not the template's */
    char *encoding = op->attrs.content_encoding;
    op->attrs.content_encoding = NULL;
    if (tmpl && cfs_object_attrs_copy(&op->attrs, tmpl) < 0) {
        free(encoding);
        PyErr_NoMemory();
        return -1;
    }
    if (encoding) {
        free(op->attrs.content_encoding);
        op->attrs.content_encoding = encoding;
    }
    if (!op->attrs.content_type && (op->backend->ops->capabilities & CFS_CAP_CONTENT_TYPE)) {
        const char *t = cfs_guess_content_type(op->key);
        if (!t)
            t = "application/octet-stream";
        if (cfs_attr_set(&op->attrs.content_type, t, strlen(t)) < 0) {
            PyErr_NoMemory();
            return -1;
        }
    }
    return 0;
}

/* ---------- a HEAD's answer ---------- */

static int set_str(PyObject *d, const char *name, const char *v)
{
    PyObject *o = v ? PyUnicode_DecodeUTF8(v, (Py_ssize_t)strlen(v), "replace") : Py_NewRef(Py_None);
    int rc = o ? PyDict_SetItemString(d, name, o) : -1;
    Py_XDECREF(o);
    return rc;
}

PyObject *cfs_py_head_dict(StoreObject *s, const cfs_op *op)
{
    const cfs_object_attrs *a = &op->attrs;
    PyObject *d = PyDict_New(), *md = PyDict_New(), *o;
    if (!d || !md)
        goto fail;
    const char *ct = a->content_type;
    if (!ct && !(s->backend->ops->capabilities & CFS_CAP_CONTENT_TYPE))
        ct = cfs_guess_content_type(op->key); /* a store of bytes only: the type by name */
    if (!ct && !(s->backend->ops->capabilities & CFS_CAP_CONTENT_TYPE))
        ct = "application/octet-stream";
    if (set_str(d, "etag", a->etag) < 0 || set_str(d, "content_type", ct) < 0 ||
        set_str(d, "content_encoding", a->content_encoding) < 0 ||
        set_str(d, "cache_control", a->cache_control) < 0 ||
        set_str(d, "content_disposition", a->content_disposition) < 0 ||
        set_str(d, "storage_class", a->storage_class) < 0)
        goto fail;
    o = PyLong_FromLongLong(op->size);
    if (!o || PyDict_SetItemString(d, "size", o) < 0) {
        Py_XDECREF(o);
        goto fail;
    }
    Py_DECREF(o);
    o = a->last_modified_ms >= 0 ? PyLong_FromLongLong(a->last_modified_ms) : Py_NewRef(Py_None);
    if (!o || PyDict_SetItemString(d, "last_modified_ms", o) < 0) {
        Py_XDECREF(o);
        goto fail;
    }
    Py_DECREF(o);
    for (size_t i = 0; i < a->n_metadata; i++) {
        const char *n = a->metadata[i].name, *v = a->metadata[i].value;
        PyObject *k = PyUnicode_DecodeUTF8(n, (Py_ssize_t)strlen(n), "replace");
        PyObject *val = k ? PyUnicode_DecodeUTF8(v, (Py_ssize_t)strlen(v), "replace") : NULL;
        int rc = val ? PyDict_SetItem(md, k, val) : -1;
        Py_XDECREF(k);
        Py_XDECREF(val);
        if (rc < 0)
            goto fail;
    }
    if (PyDict_SetItemString(d, "metadata", md) < 0)
        goto fail;
    Py_DECREF(md);
    return d;
fail:
    Py_XDECREF(d);
    Py_XDECREF(md);
    return NULL;
}
