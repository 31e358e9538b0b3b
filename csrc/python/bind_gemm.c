/* bind_gemm.c: csrc/gemm for Python: pf_gemm, the back-end and micro-kernel choice, and the
 * C side of pacofr.build_info(). */
#include <float.h>
#include <math.h>
#include <string.h>
#include "python/args.h"

static const char *backend_names[] = {"dnnl", "portable"};

/* The gemm output (M, N): a new array when out_obj is None (beta must be 0), else out_obj
 * checked (float32, writeable, (M, N), sharing no memory with a or b). Returns a new reference. */
static PyArrayObject *gemm_out(PyObject *out_obj, npy_intp M, npy_intp N, double beta, PyArrayObject *a,
                               PyArrayObject *b) {
    if (out_obj == Py_None) {
        if (beta != 0.0) {
            PyErr_SetString(PyExc_ValueError, "beta != 0 needs an out array to accumulate into");
            return NULL;
        }
        return (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(M, N), NPY_FLOAT32, 0);
    }
    PyArrayObject *out = check_f32(out_obj, "out", 2, 1, "");
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
    return out;
}

/* gemm(a (M, K) | (K, M), b (K, N) | (N, K), out (M, N) | None, ...) -> out (M, N) */
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
    if (!(fabs(alpha) <= FLT_MAX) || !(fabs(beta) <= FLT_MAX)) { /* they run as float32 */
        char msg[160];
        PyOS_snprintf(msg, sizeof msg, "alpha and beta must be finite, got alpha=%g beta=%g (they run as float32: "
                      "|x| <= %g)", alpha, beta, (double)FLT_MAX);
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
    PyArrayObject *out = gemm_out(out_obj, M, N, beta, a, b);
    if (!out) return NULL;
    const float *pa = PyArray_DATA(a), *pb = PyArray_DATA(b);
    float *pc = PyArray_DATA(out);
    const int64_t lda = PyArray_DIM(a, 1) ? PyArray_DIM(a, 1) : 1;
    const int64_t ldb = PyArray_DIM(b, 1) ? PyArray_DIM(b, 1) : 1;
    const int64_t ldc = N ? N : 1;
    pf_status st;
    PF_NOGIL(st = pf_gemm(trans_a, trans_b, M, N, K, (float)alpha, pa, lda, pb, ldb, (float)beta, pc, ldc, dtype));
    if (st != PF_OK) {
        Py_DECREF(out);
        return raise_status(st);
    }
    return (PyObject *)out;
}

/* set_gemm_backend('dnnl' | 'portable') -> None */
static PyObject *py_set_gemm_backend(PyObject *self, PyObject *arg) {
    (void)self;
    const char *s = str_arg(arg, "backend must be 'dnnl' or 'portable'");
    if (!s) return NULL;
    for (int i = 0; i < 2; i++)
        if (strcmp(s, backend_names[i]) == 0) return none_or_raise(pf_set_gemm_backend((pf_gemm_backend)i));
    PyErr_Format(PyExc_ValueError, "backend must be 'dnnl' or 'portable', got '%s'", s);
    return NULL;
}

/* get_gemm_backend() -> str */
static PyObject *py_get_gemm_backend(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    return PyUnicode_FromString(backend_names[pf_get_gemm_backend()]);
}

/* portable_kernels() -> [str]: the micro-kernels this CPU runs, best first. */
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

/* set_portable_kernel(name | 'auto') -> None */
static PyObject *py_set_portable_kernel(PyObject *self, PyObject *arg) {
    (void)self;
    const char *s = str_arg(arg, "kernel must be a str");
    if (!s) return NULL;
    return none_or_raise(pf_set_portable_kernel(s));
}

/* get_portable_kernel() -> str */
static PyObject *py_get_portable_kernel(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    return PyUnicode_FromString(pf_get_portable_kernel());
}

/* build_info() -> dict: the C side of pacofr.build_info(). */
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

PyMethodDef pf_gemm_methods[] = {
    {"gemm", (PyCFunction)(void (*)(void))py_gemm, METH_VARARGS | METH_KEYWORDS,
     "gemm(a, b, out=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, dtype='fp32') -> out (M, N)\n\n"
     "out = alpha * op(a) @ op(b) + beta * out on 2-D C-contiguous float32 arrays: op(a) (M, K) is a, or\n"
     "a.T when trans_a; op(b) (K, N) likewise. out None: a new array (beta must be 0). dtype 'bf16':\n"
     "a and b rounded to bf16, fp32 accumulation."},
    {"set_gemm_backend", py_set_gemm_backend, METH_O,
     "set_gemm_backend(backend) -> None\n\nbackend 'dnnl' (oneDNN; RuntimeError when built without it) or 'portable'."},
    {"get_gemm_backend", py_get_gemm_backend, METH_NOARGS,
     "get_gemm_backend() -> str\n\n'dnnl' or 'portable': the back end pf_gemm uses."},
    {"portable_kernels", py_portable_kernels, METH_NOARGS,
     "portable_kernels() -> list of str\n\nThe portable back end's micro-kernels this CPU runs, best first."},
    {"set_portable_kernel", py_set_portable_kernel, METH_O,
     "set_portable_kernel(name) -> None\n\nname: one of portable_kernels(), or 'auto' for the best one."},
    {"get_portable_kernel", py_get_portable_kernel, METH_NOARGS,
     "get_portable_kernel() -> str\n\nThe portable back end's micro-kernel in use."},
    {"build_info", py_build_info, METH_NOARGS,
     "build_info() -> dict\n\nThe C side of pacofr.build_info(): onednn (version or None), isa, matmul_impl_fp32,\n"
     "matmul_impl_bf16, portable_kernel, portable_kernels, compiler, openmp."},
    {NULL, NULL, 0, NULL},
};
