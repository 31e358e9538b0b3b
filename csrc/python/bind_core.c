/* bind_core.c: csrc/core for Python: bf16 rounding, the thread count, layer profiling. */
#include "python/args.h"
#include "core/profile.h"
#include "layers/attention.h"

/* round_bf16(x float32, any shape) -> a new float32 array of x's shape. */
static PyObject *py_round_bf16(PyObject *self, PyObject *x_obj) {
    (void)self;
    PyArrayObject *x = check_f32(x_obj, "x", -1, 0, " (use np.ascontiguousarray(x))");
    if (!x) return NULL;
    PyArrayObject *y = (PyArrayObject *)PyArray_EMPTY(PyArray_NDIM(x), PyArray_DIMS(x), NPY_FLOAT32, 0);
    if (!y) return NULL;
    const float *px = PyArray_DATA(x);
    float *py = PyArray_DATA(y);
    const npy_intp n = PyArray_SIZE(x);
    PF_NOGIL(pf_round_bf16(px, py, n));
    return (PyObject *)y;
}

/* set_num_threads(n int in [1, 4096]) -> None. */
static PyObject *py_set_num_threads(PyObject *self, PyObject *arg) {
    (void)self;
    if (!PyLong_Check(arg) || PyBool_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "n must be an int, got %s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1 || n > 4096) {
        PyErr_Format(PyExc_ValueError, "n must be between 1 and 4096, got %ld", n);
        return NULL;
    }
    return none_or_raise(pf_set_num_threads((int)n));
}

/* get_num_threads() -> int. */
static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    return PyLong_FromLong(pf_get_num_threads());
}

/* profile(on) -> None. */
static PyObject *py_profile(PyObject *self, PyObject *arg) {
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    pf_prof_enable(on);
    Py_RETURN_NONE;
}

/* profile_read() -> {layer kind: (seconds, calls)}. */
static PyObject *py_profile_read(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    PyObject *d = PyDict_New();
    const char *name;
    double sec;
    long calls;
    for (int i = 0; d && pf_prof_get(i, &name, &sec, &calls); i++) {
        PyObject *v = Py_BuildValue("(dl)", sec, calls);
        if (!v || PyDict_SetItemString(d, name, v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(d);
            break;
        }
        Py_DECREF(v);
    }
    return d;
}

/* profile_reset() -> None. */
static PyObject *py_profile_reset(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    pf_prof_reset();
    Py_RETURN_NONE;
}

/* attention_bf16_products() -> bool: which attention kernels a bf16 model runs here. */
static PyObject *py_attention_bf16_products(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    return PyBool_FromLong(pf_attention_bf16_products());
}

PyMethodDef pf_core_methods[] = {
    {"round_bf16", py_round_bf16, METH_O,
     "round_bf16(x) -> float32 array of x's shape\n\n"
     "x: float32, any shape, C-contiguous. Each value rounded to the nearest bf16 (ties to even; NaN\n"
     "stays NaN) and widened back to float32."},
    {"set_num_threads", py_set_num_threads, METH_O,
     "set_num_threads(n) -> None\n\nThreads of every OpenMP region of the C core and of oneDNN, n in [1, 4096]."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS,
     "get_num_threads() -> int\n\nThe thread count set by set_num_threads (1 at import)."},
    {"profile", py_profile, METH_O,
     "profile(on) -> None\n\nStart (on true) or stop timing every layer kind of the C core."},
    {"profile_read", py_profile_read, METH_NOARGS,
     "profile_read() -> dict\n\n{layer kind: (seconds, calls)} accumulated since the last profile_reset()."},
    {"profile_reset", py_profile_reset, METH_NOARGS,
     "profile_reset() -> None\n\nZero every profiling total."},
    {"attention_bf16_products", py_attention_bf16_products, METH_NOARGS,
     "attention_bf16_products() -> bool\n\nWhether a bf16 model's attention runs its products in bf16 here "
     "(AVX512-BF16)."},
    {NULL, NULL, 0, NULL},
};
