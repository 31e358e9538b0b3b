/* args.h: what every binding file shares: the Python and NumPy headers (csrc/python/ is the
 * only folder that includes them), the argument checks, status -> exception, and the one
 * GIL-release macro.
 *
 * Every array argument is checked up front (type, dtype, byte order, ndim, shape,
 * C-contiguity, alignment, writeability of outputs); a violation raises TypeError or
 * ValueError naming the argument with what was expected and what came. C statuses become
 * exceptions here and nowhere else. */
#ifndef PF_PY_ARGS_H
#define PF_PY_ARGS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
/* One NumPy C-API table for the whole extension: module.c imports it, the others use it. */
#define PY_ARRAY_UNIQUE_SYMBOL pacofr_ARRAY_API
#ifndef PF_PY_IMPORT_ARRAY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>
#include <stdint.h>
#include "pf.h"

/* Run a statement of pure compute with the GIL released. Every array it touches must stay
 * referenced (an argument of the call, or an array the binding owns) until it returns. */
#define PF_NOGIL(...)               \
    do {                            \
        Py_BEGIN_ALLOW_THREADS      \
        __VA_ARGS__;                \
        Py_END_ALLOW_THREADS        \
    } while (0)

/* A shape for check_arr: SHP(B, -1, 3); -1 accepts any size. */
#define SHP(...) ((const npy_intp[]){__VA_ARGS__})
#define F32(obj, name, nd, shape, w) check_arr(obj, name, NPY_FLOAT32, nd, shape, w, "")
#define I64(obj, name, nd, shape) check_arr(obj, name, NPY_INT64, nd, shape, 0, "")

/* Raise the exception that matches a failed status (PF_EINVAL: ValueError, PF_ENOMEM:
 * MemoryError, else RuntimeError) with the core's message; returns NULL. */
PyObject *raise_status(pf_status st);
/* None when st is PF_OK; else NULL with the error raised. */
PyObject *none_or_raise(pf_status st);

/* "(2, 3)" / "(5,)": a's shape for messages (a per-thread buffer, valid until the next call). */
const char *shape_str(PyArrayObject *a);

/* obj must be a native-endian, aligned, C-contiguous ndarray of `type` with ndim dimensions
 * (ndim < 0: any) and, where shape is given, those sizes (-1: any); writeable when asked.
 * Returns it borrowed, or NULL with TypeError / ValueError naming the argument; hint is
 * appended to the C-contiguity message. */
PyArrayObject *check_arr(PyObject *obj, const char *name, int type, int ndim, const npy_intp *shape,
                         int writeable, const char *hint);
/* check_arr for float32, any shape. */
PyArrayObject *check_f32(PyObject *obj, const char *name, int ndim, int writeable, const char *hint);
/* Optional float32 argument, writeable: None -> *out = NULL (returns 1); else checked like F32. */
int opt_f32(PyObject *obj, const char *name, int nd, const npy_intp *shape, PyArrayObject **out);
/* A new float32 array of shape dims (nd), zero-filled (accumulators) or not; NULL on error. */
PyArrayObject *new_f32(int nd, const npy_intp *dims, int zero);
/* The data of a float32 array, or NULL for a missing optional one. */
float *data_or_null(PyArrayObject *a);

/* 1 when the byte ranges of two arrays overlap. */
int overlaps(PyArrayObject *x, PyArrayObject *y);
/* 1 when every value of a float32 (resp. float64) array is finite; else 0 with ValueError. */
int check_finite(PyArrayObject *a, const char *name);
int check_finite_f64(PyArrayObject *a, const char *name);
/* 1 when every value of an int64 array is in [0, hi); else 0 with ValueError naming the first. */
int check_index(PyArrayObject *a, const char *name, int64_t hi);
/* 1 when p divides the image side S (p >= 1); else 0 with ValueError. */
int check_patch(npy_intp S, long p);

/* 'fp32' | 'bf16' -> *dtype; 0 with TypeError / ValueError otherwise. */
int parse_dtype(PyObject *obj, pf_dtype *dtype);
/* arg as UTF-8, or NULL with TypeError "<what>, got <type>". */
const char *str_arg(PyObject *arg, const char *what);

#endif
