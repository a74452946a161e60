/* cloudfiles_store._core: wires the types and module functions together. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "python/attrs.h"
#include "python/batch.h"
#include "python/blob.h"
#include "core/engine.h"
#include "python/newfile.h"
#include "python/pyutil.h"
#include "python/store.h"

extern PyTypeObject cfs_CompletionsType;

static PyObject *engine_stats(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    cfs_engine_stats st;
    cfs_engine_get_stats(&st);
    return Py_BuildValue("{s:K,s:K,s:K,s:i,s:K,s:K,s:K,s:K}", "requests",
                         (unsigned long long)st.requests, "retries", (unsigned long long)st.retries,
                         "connections", (unsigned long long)st.connections, "lanes", st.lanes,
                         "window_decreases", (unsigned long long)st.window_decreases, "parked",
                         (unsigned long long)st.parked, "hedges", (unsigned long long)st.hedges,
                         "hedges_won", (unsigned long long)st.hedges_won);
}

static PyMethodDef module_methods[] = {
    { "engine_stats", engine_stats, METH_NOARGS,
      "engine_stats($module, /)\n--\n\n"
      "Return a dict of counters of this process's engine: HTTP requests, retries, connections opened;\n"
      "lanes, its transfer threads (0 before its first transfer); window_decreases, times a\n"
      "host's in-flight window was halved on a 503 or 429; parked, times an op waited for\n"
      "another op's credential fetch; hedges, second requests sent for slow reads (the\n"
      "store option hedge), and hedges_won, those whose answer was used." },
    { "_set_mime_types", cfs_py_set_mime_types, METH_VARARGS,
      "_set_mime_types(types_map, encoding_extensions): the extension table content types\n"
      "are guessed from (mimetypes.types_map and mimetypes.encodings_map's keys), set at import." },
    { NULL },
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cloudfiles_store._core",
    .m_doc = "The C engine of cloudfiles_store.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__core(void)
{
    if (cfs_errors_load() < 0)
        return NULL;
    if (PyType_Ready(&cfs_StoreType) < 0 || PyType_Ready(&cfs_BatchType) < 0 ||
        PyType_Ready(&cfs_CompletionsType) < 0 || PyType_Ready(&cfs_BlobType) < 0 ||
        PyType_Ready(&cfs_NewFileType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&core_module);
    if (!m)
        return NULL;
    if (PyModule_AddObjectRef(m, "Store", (PyObject *)&cfs_StoreType) < 0 ||
        PyModule_AddObjectRef(m, "Batch", (PyObject *)&cfs_BatchType) < 0 ||
        PyModule_AddObjectRef(m, "Completions", (PyObject *)&cfs_CompletionsType) < 0 ||
        PyModule_AddObjectRef(m, "Blob", (PyObject *)&cfs_BlobType) < 0 ||
        PyModule_AddObjectRef(m, "NewFile", (PyObject *)&cfs_NewFileType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
