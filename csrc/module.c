/* module.c: pacofr._C, the only file that touches Python objects.
 *
 * Every array argument is checked up front (type, dtype, byte order, ndim, shape,
 * C-contiguity, alignment, writeability of outputs); a violation raises TypeError or
 * ValueError naming the argument with what was expected and what came. The GIL is released
 * around pure compute only. C statuses become exceptions here and nowhere else. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#include <numpy/arrayobject.h>
#include <math.h>
#include <string.h>
#include "pf.h"

/* Raise the exception that matches a failed status, with the core's message. */
static PyObject *raise_status(pf_status st) {
    PyObject *type = PyExc_RuntimeError;
    if (st == PF_EINVAL) type = PyExc_ValueError;
    else if (st == PF_ENOMEM) type = PyExc_MemoryError;
    PyErr_SetString(type, pf_last_error());
    return NULL;
}

static const char *dtype_name(PyArrayObject *a) {
    static _Thread_local char buf[64];
    PyObject *s = PyObject_Str((PyObject *)PyArray_DESCR(a));
    const char *u = s ? PyUnicode_AsUTF8(s) : NULL;
    snprintf(buf, sizeof buf, "%s", u ? u : "?");
    Py_XDECREF(s);
    PyErr_Clear();
    return buf;
}

static const char *shape_str(PyArrayObject *a) {
    static _Thread_local char buf[128];
    int n = 0;
    n += snprintf(buf + n, sizeof buf - n, "(");
    for (int i = 0; i < PyArray_NDIM(a) && n < (int)sizeof buf - 24; i++)
        n += snprintf(buf + n, sizeof buf - n, i ? ", %lld" : "%lld", (long long)PyArray_DIM(a, i));
    snprintf(buf + n, sizeof buf - n, PyArray_NDIM(a) == 1 ? ",)" : ")");
    return buf;
}

/* obj must be a native-endian, aligned, C-contiguous float32 ndarray of ndim dimensions
 * (ndim < 0: any), writeable when asked. Returns it borrowed, or NULL with an exception. */
static PyArrayObject *check_f32(PyObject *obj, const char *name, int ndim, int writeable,
                                const char *hint) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray of float32, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_FLOAT32) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype float32, got %s", name, dtype_name(a));
        return NULL;
    }
    if (!PyArray_ISNOTSWAPPED(a)) {
        PyErr_Format(PyExc_TypeError, "%s must be native-endian float32, got byte-swapped %s",
                     name, dtype_name(a));
        return NULL;
    }
    if (ndim >= 0 && PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be %d-D, got %d-D array of shape %s", name, ndim,
                     PyArray_NDIM(a), shape_str(a));
        return NULL;
    }
    if (!PyArray_IS_C_CONTIGUOUS(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous, got a strided view%s", name, hint);
        return NULL;
    }
    if (!PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be aligned to 4 bytes, got an unaligned buffer", name);
        return NULL;
    }
    if (writeable && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be writeable, got a read-only array", name);
        return NULL;
    }
    return a;
}

/* 1 when the byte ranges of two arrays overlap. */
static int overlaps(PyArrayObject *x, PyArrayObject *y) {
    const char *x0 = PyArray_BYTES(x), *y0 = PyArray_BYTES(y);
    const char *x1 = x0 + PyArray_NBYTES(x), *y1 = y0 + PyArray_NBYTES(y);
    return PyArray_NBYTES(x) && PyArray_NBYTES(y) && x0 < y1 && y0 < x1;
}

static int parse_dtype(PyObject *obj, pf_dtype *dtype) {
    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "dtype must be 'fp32' or 'bf16', got %s", Py_TYPE(obj)->tp_name);
        return 0;
    }
    const char *s = PyUnicode_AsUTF8(obj);
    if (!s) return 0;
    if (strcmp(s, "fp32") == 0) *dtype = PF_FP32;
    else if (strcmp(s, "bf16") == 0) *dtype = PF_BF16;
    else {
        PyErr_Format(PyExc_ValueError, "dtype must be 'fp32' or 'bf16', got '%s'", s);
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(gemm_doc,
"gemm(a, b, out=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, dtype='fp32')\n--\n\n"
"out = alpha * op(a) @ op(b) + beta * out on 2-D C-contiguous float32 arrays; returns out.");

static PyObject *py_gemm(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"a", "b", "out", "trans_a", "trans_b", "alpha", "beta", "dtype", NULL};
    PyObject *a_obj, *b_obj, *out_obj = Py_None, *dtype_obj = NULL;
    int trans_a = 0, trans_b = 0;
    double alpha = 1.0, beta = 0.0;
    pf_dtype dtype = PF_FP32;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OppddO:gemm", kwlist, &a_obj, &b_obj,
                                     &out_obj, &trans_a, &trans_b, &alpha, &beta, &dtype_obj))
        return NULL;
    if (dtype_obj && !parse_dtype(dtype_obj, &dtype)) return NULL;
    if (!isfinite(alpha) || !isfinite(beta)) {
        char msg[128];
        PyOS_snprintf(msg, sizeof msg, "alpha and beta must be finite, got alpha=%g beta=%g", alpha, beta);
        PyErr_SetString(PyExc_ValueError, msg);
        return NULL;
    }
    PyArrayObject *a = check_f32(a_obj, "a", 2, 0, " (pass trans_a=True instead of a.T, or np.ascontiguousarray(a))");
    if (!a) return NULL;
    PyArrayObject *b = check_f32(b_obj, "b", 2, 0, " (pass trans_b=True instead of b.T, or np.ascontiguousarray(b))");
    if (!b) return NULL;

    const npy_intp M = PyArray_DIM(a, trans_a ? 1 : 0), K = PyArray_DIM(a, trans_a ? 0 : 1);
    const npy_intp Kb = PyArray_DIM(b, trans_b ? 1 : 0), N = PyArray_DIM(b, trans_b ? 0 : 1);
    if (K != Kb) {
        PyErr_Format(PyExc_ValueError,
                     "inner dimensions differ: op(a) is %zd x %zd (trans_a=%s) but op(b) is %zd x %zd (trans_b=%s)",
                     (Py_ssize_t)M, (Py_ssize_t)K, trans_a ? "True" : "False", (Py_ssize_t)Kb,
                     (Py_ssize_t)N, trans_b ? "True" : "False");
        return NULL;
    }
    PyArrayObject *out;
    if (out_obj == Py_None) {
        if (beta != 0.0) {
            PyErr_SetString(PyExc_ValueError, "beta != 0 needs an out array to accumulate into");
            return NULL;
        }
        npy_intp dims[2] = {M, N};
        out = (PyArrayObject *)PyArray_EMPTY(2, dims, NPY_FLOAT32, 0);
        if (!out) return NULL;
    } else {
        out = check_f32(out_obj, "out", 2, 1, "");
        if (!out) return NULL;
        if (PyArray_DIM(out, 0) != M || PyArray_DIM(out, 1) != N) {
            PyErr_Format(PyExc_ValueError, "out must have shape (%zd, %zd), got %s", (Py_ssize_t)M,
                         (Py_ssize_t)N, shape_str(out));
            return NULL;
        }
        if (overlaps(out, a) || overlaps(out, b)) {
            PyErr_Format(PyExc_ValueError, "out must not share memory with %s", overlaps(out, a) ? "a" : "b");
            return NULL;
        }
        Py_INCREF(out);
    }
    const float *pa = PyArray_DATA(a), *pb = PyArray_DATA(b);
    float *pc = PyArray_DATA(out);
    const int64_t lda = PyArray_DIM(a, 1) ? PyArray_DIM(a, 1) : 1;
    const int64_t ldb = PyArray_DIM(b, 1) ? PyArray_DIM(b, 1) : 1;
    const int64_t ldc = N ? N : 1;
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_gemm(trans_a, trans_b, M, N, K, (float)alpha, pa, lda, pb, ldb, (float)beta, pc, ldc, dtype);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) {
        Py_DECREF(out);
        return raise_status(st);
    }
    return (PyObject *)out;
}

PyDoc_STRVAR(round_bf16_doc, "round_bf16(x)\n--\n\nA new float32 array: x rounded to bf16 (nearest, ties to even).");

static PyObject *py_round_bf16(PyObject *self, PyObject *x_obj) {
    (void)self;
    PyArrayObject *x = check_f32(x_obj, "x", -1, 0, " (use np.ascontiguousarray(x))");
    if (!x) return NULL;
    PyArrayObject *y = (PyArrayObject *)PyArray_EMPTY(PyArray_NDIM(x), PyArray_DIMS(x), NPY_FLOAT32, 0);
    if (!y) return NULL;
    const float *px = PyArray_DATA(x);
    float *py = PyArray_DATA(y);
    npy_intp n = PyArray_SIZE(x);
    Py_BEGIN_ALLOW_THREADS
    pf_round_bf16(px, py, n);
    Py_END_ALLOW_THREADS
    return (PyObject *)y;
}

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
    pf_status st = pf_set_num_threads((int)n);
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    return PyLong_FromLong(pf_get_num_threads());
}

/* arg as UTF-8, or NULL with TypeError "<what>, got <type>". */
static const char *str_arg(PyObject *arg, const char *what) {
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "%s, got %s", what, Py_TYPE(arg)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8(arg);
}

static const char *backend_names[] = {"dnnl", "portable"};

static PyObject *py_set_gemm_backend(PyObject *self, PyObject *arg) {
    (void)self;
    const char *s = str_arg(arg, "backend must be 'dnnl' or 'portable'");
    if (!s) return NULL;
    for (int i = 0; i < 2; i++)
        if (strcmp(s, backend_names[i]) == 0) {
            pf_status st = pf_set_gemm_backend((pf_gemm_backend)i);
            if (st != PF_OK) return raise_status(st);
            Py_RETURN_NONE;
        }
    PyErr_Format(PyExc_ValueError, "backend must be 'dnnl' or 'portable', got '%s'", s);
    return NULL;
}

static PyObject *py_get_gemm_backend(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    return PyUnicode_FromString(backend_names[pf_get_gemm_backend()]);
}

static PyObject *py_portable_kernels(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    int n = pf_portable_kernel_count();
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; i++) {
        PyObject *s = PyUnicode_FromString(pf_portable_kernel_name(i));
        if (!s) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, s);
    }
    return list;
}

static PyObject *py_set_portable_kernel(PyObject *self, PyObject *arg) {
    (void)self;
    const char *s = str_arg(arg, "kernel must be a str");
    if (!s) return NULL;
    pf_status st = pf_set_portable_kernel(s);
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *py_get_portable_kernel(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    return PyUnicode_FromString(pf_get_portable_kernel());
}

/* The C side of pacofr.build_info(). */
static PyObject *py_build_info(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    const char *v = pf_dnnl_version();
    PyObject *kernels = py_portable_kernels(NULL, NULL);
    if (!kernels) return NULL;
#ifdef _OPENMP
    const int openmp = _OPENMP;
#else
    const int openmp = 0;
#endif
    return Py_BuildValue("{s:z,s:z,s:z,s:z,s:s,s:N,s:s,s:i}",
                         "onednn", v, "isa", pf_dnnl_isa(),
                         "matmul_impl_fp32", v ? pf_dnnl_matmul_impl(PF_FP32) : NULL,
                         "matmul_impl_bf16", v ? pf_dnnl_matmul_impl(PF_BF16) : NULL,
                         "portable_kernel", pf_get_portable_kernel(), "portable_kernels", kernels,
                         "compiler", "gcc " __VERSION__, "openmp", openmp);
}

static PyMethodDef methods[] = {
    {"gemm", (PyCFunction)(void (*)(void))py_gemm, METH_VARARGS | METH_KEYWORDS, gemm_doc},
    {"round_bf16", py_round_bf16, METH_O, round_bf16_doc},
    {"set_num_threads", py_set_num_threads, METH_O, "set_num_threads(n): threads of the C core and oneDNN."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> int"},
    {"set_gemm_backend", py_set_gemm_backend, METH_O, "set_gemm_backend('dnnl' | 'portable')"},
    {"get_gemm_backend", py_get_gemm_backend, METH_NOARGS, "get_gemm_backend() -> str"},
    {"portable_kernels", py_portable_kernels, METH_NOARGS, "portable_kernels() -> list of kernels this CPU runs"},
    {"set_portable_kernel", py_set_portable_kernel, METH_O, "set_portable_kernel(name | 'auto')"},
    {"get_portable_kernel", py_get_portable_kernel, METH_NOARGS, "get_portable_kernel() -> str"},
    {"build_info", py_build_info, METH_NOARGS, "build_info() -> dict (C side)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "pacofr._C",
                                       "pacofr's C core.", -1, methods};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    return PyModule_Create(&moduledef);
}
