/* args.c: the argument checks shared by every bind_<folder>.c, and status -> exception. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "python/args.h"

/* st -> ValueError / MemoryError / RuntimeError with pf_last_error(); NULL. */
PyObject *raise_status(pf_status st) {
    PyObject *type = PyExc_RuntimeError;
    if (st == PF_EINVAL) type = PyExc_ValueError;
    else if (st == PF_ENOMEM) type = PyExc_MemoryError;
    PyErr_SetString(type, pf_last_error());
    return NULL;
}

/* st -> None, or NULL with its exception. */
PyObject *none_or_raise(pf_status st) {
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

/* a's dtype as numpy prints it, for messages (a per-thread buffer). */
static const char *dtype_name(PyArrayObject *a) {
    static _Thread_local char buf[64];
    PyObject *s = PyObject_Str((PyObject *)PyArray_DESCR(a));
    const char *u = s ? PyUnicode_AsUTF8(s) : NULL;
    snprintf(buf, sizeof buf, "%s", u ? u : "?");
    Py_XDECREF(s);
    PyErr_Clear();
    return buf;
}

/* a's shape as "(2, 3)" / "(5,)" (a per-thread buffer). */
const char *shape_str(PyArrayObject *a) {
    static _Thread_local char buf[128];
    int n = 0;
    n += snprintf(buf + n, sizeof buf - n, "(");
    for (int i = 0; i < PyArray_NDIM(a) && n < (int)sizeof buf - 24; i++)
        n += snprintf(buf + n, sizeof buf - n, i ? ", %lld" : "%lld", (long long)PyArray_DIM(a, i));
    snprintf(buf + n, sizeof buf - n, PyArray_NDIM(a) == 1 ? ",)" : ")");
    return buf;
}

/* The name of a NumPy type number this file checks for. */
static const char *type_name(int type) {
    return type == NPY_FLOAT32 ? "float32" : type == NPY_INT64 ? "int64" : type == NPY_UINT8 ? "uint8"
         : type == NPY_FLOAT64 ? "float64" : type == NPY_UINT16 ? "uint16" : "?";
}

/* shape (ndim), -1 = any -> "(3, ?, 4)" into want (size n). */
static void wanted_shape(char *want, int n, const npy_intp *shape, int ndim) {
    int k = snprintf(want, n, "(");
    for (int j = 0; j < ndim && k < n - 24; j++)
        k += shape[j] >= 0 ? snprintf(want + k, n - k, j ? ", %lld" : "%lld", (long long)shape[j])
                           : snprintf(want + k, n - k, j ? ", ?" : "?");
    snprintf(want + k, n - k, ndim == 1 ? ",)" : ")");
}

/* The dtype and byte-order half of check_arr: 1 when obj is a native-endian ndarray of type. */
static int check_type(PyObject *obj, const char *name, int type) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray of %s, got %s", name,
                     type_name(type), Py_TYPE(obj)->tp_name);
        return 0;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != type) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype %s, got %s", name, type_name(type), dtype_name(a));
        return 0;
    }
    if (!PyArray_ISNOTSWAPPED(a)) {
        PyErr_Format(PyExc_TypeError, "%s must be native-endian %s, got byte-swapped %s",
                     name, type_name(type), dtype_name(a));
        return 0;
    }
    return 1;
}

/* obj -> a borrowed ndarray of type, ndim, shape (-1: any), C-contiguous, aligned,
 * writeable when asked; NULL with TypeError / ValueError naming the argument. */
PyArrayObject *check_arr(PyObject *obj, const char *name, int type, int ndim, const npy_intp *shape,
                         int writeable, const char *hint) {
    if (!check_type(obj, name, type)) return NULL;
    PyArrayObject *a = (PyArrayObject *)obj;
    if (ndim >= 0 && PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be %d-D, got %d-D array of shape %s", name, ndim,
                     PyArray_NDIM(a), shape_str(a));
        return NULL;
    }
    for (int i = 0; shape && i < ndim; i++) {
        if (shape[i] >= 0 && PyArray_DIM(a, i) != shape[i]) {
            char want[128];
            wanted_shape(want, sizeof want, shape, ndim);
            PyErr_Format(PyExc_ValueError, "%s must have shape %s, got %s", name, want, shape_str(a));
            return NULL;
        }
    }
    if (!PyArray_IS_C_CONTIGUOUS(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be C-contiguous, got a strided view%s", name, hint);
        return NULL;
    }
    if (!PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be aligned to %d bytes, got an unaligned buffer",
                     name, (int)PyArray_ITEMSIZE(a));
        return NULL;
    }
    if (writeable && !PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s must be writeable, got a read-only array", name);
        return NULL;
    }
    return a;
}

/* check_arr for float32 of ndim dimensions, any sizes. */
PyArrayObject *check_f32(PyObject *obj, const char *name, int ndim, int writeable, const char *hint) {
    return check_arr(obj, name, NPY_FLOAT32, ndim, NULL, writeable, hint);
}

/* None -> *out NULL; else a writeable float32 of shape (nd) into *out. 0 on error. */
int opt_f32(PyObject *obj, const char *name, int nd, const npy_intp *shape, PyArrayObject **out) {
    *out = NULL;
    if (obj == Py_None) return 1;
    *out = F32(obj, name, nd, shape, 1);
    return *out != NULL;
}

/* A new float32 array of shape dims (nd), zero-filled or not. */
PyArrayObject *new_f32(int nd, const npy_intp *dims, int zero) {
    return (PyArrayObject *)(zero ? PyArray_ZEROS(nd, (npy_intp *)dims, NPY_FLOAT32, 0)
                                  : PyArray_EMPTY(nd, (npy_intp *)dims, NPY_FLOAT32, 0));
}

/* a's data, NULL for a missing optional array. */
float *data_or_null(PyArrayObject *a) { return a ? (float *)PyArray_DATA(a) : NULL; }

/* 1 when the bytes of x and y overlap. */
int overlaps(PyArrayObject *x, PyArrayObject *y) {
    const char *x0 = PyArray_BYTES(x), *y0 = PyArray_BYTES(y);
    const char *x1 = x0 + PyArray_NBYTES(x), *y1 = y0 + PyArray_NBYTES(y);
    return PyArray_NBYTES(x) > 0 && PyArray_NBYTES(y) > 0 && x0 < y1 && y0 < x1;
}

/* a float32 (any shape) -> 1 when finite, else 0 with ValueError (scanned without the GIL). */
int check_finite(PyArrayObject *a, const char *name) {
    int64_t bad;
    const float *p = PyArray_DATA(a);
    const npy_intp n = PyArray_SIZE(a);
    PF_NOGIL(bad = pf_first_nonfinite(p, n));
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError, "%s contains NaN or Inf (first at flat index %lld)", name, (long long)bad);
        return 0;
    }
    return 1;
}

/* a float64 (any shape) -> 1 when finite, else 0 with ValueError. */
int check_finite_f64(PyArrayObject *a, const char *name) {
    const double *p = PyArray_DATA(a);
    for (npy_intp i = 0; i < PyArray_SIZE(a); i++)
        if (!isfinite(p[i])) {
            PyErr_Format(PyExc_ValueError, "%s contains NaN or Inf", name);
            return 0;
        }
    return 1;
}

/* a int64 (any shape) -> 1 when every value is in [0, hi), else 0 with ValueError. */
int check_index(PyArrayObject *a, const char *name, int64_t hi) {
    const int64_t *v = PyArray_DATA(a);
    for (npy_intp i = 0; i < PyArray_SIZE(a); i++)
        if (v[i] < 0 || v[i] >= hi) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] = %lld is outside [0, %lld)", name, (Py_ssize_t)i,
                         (long long)v[i], (long long)hi);
            return 0;
        }
    return 1;
}

/* 1 when the patch size p divides the side S, else 0 with ValueError. */
int check_patch(npy_intp S, long p) {
    if (p < 1 || S % p) {
        PyErr_Format(PyExc_ValueError, "patch size %ld must divide the image side %zd", p, (Py_ssize_t)S);
        return 0;
    }
    return 1;
}

/* 'fp32' | 'bf16' -> *dtype; 0 with TypeError / ValueError otherwise. */
int parse_dtype(PyObject *obj, pf_dtype *dtype) {
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

/* A str argument as UTF-8; NULL with TypeError "<what>, got <type>". */
const char *str_arg(PyObject *arg, const char *what) {
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "%s, got %s", what, Py_TYPE(arg)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8(arg);
}
