/* module.c: pacofr._C, assembled from the method tables of the bind_<folder>.c files, one per
 * C folder. Binding names are unique across the tables (import fails on a repeat). */
#define PF_PY_IMPORT_ARRAY /* this file imports NumPy's C-API table for the others */
#include "python/args.h"

extern PyMethodDef pf_core_methods[], pf_gemm_methods[], pf_layers_methods[], pf_tokens_methods[], pf_model_methods[],
    pf_paco_methods[], pf_heads_methods[], pf_image_methods[];

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "pacofr._C",
                                       "pacofr's C core: one binding per C entry point (csrc/python/).", -1,
                                       NULL};

/* Add one table's functions to module m; -1 with an exception on a name already there. */
static int add_table(PyObject *m, PyMethodDef *table) {
    for (PyMethodDef *d = table; d->ml_name; d++)
        if (PyObject_HasAttrString(m, d->ml_name)) {
            PyErr_Format(PyExc_ImportError, "pacofr._C: binding %s is defined twice", d->ml_name);
            return -1;
        }
    return PyModule_AddFunctions(m, table);
}

/* The module: NumPy's C API imported, then every folder's table added. */
PyMODINIT_FUNC PyInit__C(void) {
    PyMethodDef *tables[] = {pf_core_methods, pf_gemm_methods, pf_layers_methods, pf_tokens_methods, pf_model_methods,
                             pf_paco_methods, pf_heads_methods, pf_image_methods};
    import_array();
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (add_table(m, tables[i]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    return m;
}
