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

/* A gemm operand: a 2-D C-contiguous float32 array, or uint16 (bf16 bit patterns). */
static PyArrayObject *operand(PyObject *obj, const char *name, const char *hint, int *is_bf16) {
    *is_bf16 = PyArray_Check(obj) && PyArray_TYPE((PyArrayObject *)obj) == NPY_UINT16;
    return *is_bf16 ? check_arr(obj, name, NPY_UINT16, 2, NULL, 0, hint) : check_f32(obj, name, 2, 0, hint);
}

/* alpha and beta run as float32: finite and in range, else ValueError (0). */
static int check_scalars(double alpha, double beta) {
    if (fabs(alpha) <= FLT_MAX && fabs(beta) <= FLT_MAX) return 1;
    char msg[160];
    PyOS_snprintf(msg, sizeof msg, "alpha and beta must be finite, got alpha=%g beta=%g (they run as float32: "
                  "|x| <= %g)", alpha, beta, (double)FLT_MAX);
    PyErr_SetString(PyExc_ValueError, msg);
    return 0;
}

/* op(a) (M, K) and op(b) (K, N) agree on K, else ValueError (0). */
static int check_inner(PyArrayObject *a, PyArrayObject *b, int ta, int tb, pf_gemm_args *g) {
    g->M = PyArray_DIM(a, ta ? 1 : 0), g->K = PyArray_DIM(a, ta ? 0 : 1);
    const npy_intp Kb = PyArray_DIM(b, tb ? 1 : 0);
    g->N = PyArray_DIM(b, tb ? 0 : 1);
    if (g->K == Kb) return 1;
    PyErr_Format(PyExc_ValueError,
                 "inner dimensions differ: op(a) is %zd x %zd (trans_a=%s) but op(b) is %zd x %zd (trans_b=%s)",
                 (Py_ssize_t)g->M, (Py_ssize_t)g->K, ta ? "True" : "False", (Py_ssize_t)Kb, (Py_ssize_t)g->N,
                 tb ? "True" : "False");
    return 0;
}

/* gemm(a (M, K) | (K, M), b (K, N) | (N, K), out (M, N) | None, ..., bias (N) | None) -> out */
static PyObject *py_gemm(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"a", "b", "out", "trans_a", "trans_b", "alpha", "beta", "dtype", "bias", NULL};
    PyObject *a_obj, *b_obj, *out_obj = Py_None, *dtype_obj = NULL, *bias_obj = Py_None;
    int trans_a = 0, trans_b = 0;
    double alpha = 1.0, beta = 0.0;
    pf_gemm_args g = {.dtype = PF_FP32};
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OppddOO:gemm", kwlist, &a_obj, &b_obj, &out_obj,
                                     &trans_a, &trans_b, &alpha, &beta, &dtype_obj, &bias_obj))
        return NULL;
    if ((dtype_obj && !parse_dtype(dtype_obj, &g.dtype)) || !check_scalars(alpha, beta)) return NULL;
    PyArrayObject *a = operand(a_obj, "a", " (pass trans_a=True instead of a.T, or np.ascontiguousarray(a))",
                               &g.a_bf16);
    if (!a) return NULL;
    PyArrayObject *b = operand(b_obj, "b", " (pass trans_b=True instead of b.T, or np.ascontiguousarray(b))",
                               &g.b_bf16);
    if (!b || !check_inner(a, b, trans_a, trans_b, &g)) return NULL;
    if ((g.a_bf16 || g.b_bf16) && g.dtype != PF_BF16) {
        PyErr_SetString(PyExc_ValueError, "uint16 (bf16) operands need dtype='bf16'");
        return NULL;
    }
    PyArrayObject *bias = NULL;
    if (!opt_f32(bias_obj, "bias", 1, SHP(g.N), &bias)) return NULL;
    if (bias && alpha != 1.0) {
        PyErr_SetString(PyExc_ValueError, "a bias needs alpha == 1");
        return NULL;
    }
    PyArrayObject *out = gemm_out(out_obj, g.M, g.N, beta, a, b);
    if (!out) return NULL;
    g.trans_a = trans_a, g.trans_b = trans_b, g.alpha = (float)alpha, g.beta = (float)beta;
    g.A = PyArray_DATA(a), g.B = PyArray_DATA(b), g.C = PyArray_DATA(out), g.bias = data_or_null(bias);
    g.lda = PyArray_DIM(a, 1) ? PyArray_DIM(a, 1) : 1;
    g.ldb = PyArray_DIM(b, 1) ? PyArray_DIM(b, 1) : 1;
    g.ldc = g.N ? g.N : 1;
    pf_status st;
    PF_NOGIL(st = pf_gemm_ex(&g));
    if (st != PF_OK) {
        Py_DECREF(out);
        return raise_status(st);
    }
    return (PyObject *)out;
}

/* dnnl_bare_matmul(M, N, K, trans_b=False, dtype='fp32', dst_bf16=False, reps=7) -> seconds */
static PyObject *py_dnnl_bare_matmul(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"M", "N", "K", "trans_b", "dtype", "dst_bf16", "reps", NULL};
    long long M, N, K;
    int trans_b = 0, dst_bf16 = 0, reps = 7;
    PyObject *dtype_obj = NULL;
    pf_dtype dtype = PF_FP32;
    double secs = 0.0;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LLL|pOpi:dnnl_bare_matmul", kwlist, &M, &N, &K, &trans_b,
                                     &dtype_obj, &dst_bf16, &reps))
        return NULL;
    if (dtype_obj && !parse_dtype(dtype_obj, &dtype)) return NULL;
    pf_status st;
    PF_NOGIL(st = pf_dnnl_bare_matmul(M, N, K, trans_b, dtype, dst_bf16, reps, &secs));
    if (st != PF_OK) return raise_status(st);
    return PyFloat_FromDouble(secs);
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
     "gemm(a, b, out=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, dtype='fp32', bias=None)\n"
     "-> out (M, N)\n\n"
     "out = alpha * op(a) @ op(b) + beta * out on 2-D C-contiguous float32 arrays: op(a) (M, K) is a, or\n"
     "a.T when trans_a; op(b) (K, N) likewise. out None: a new array (beta must be 0). dtype 'bf16':\n"
     "a and b rounded to bf16, fp32 accumulation; a uint16 a or b holds bf16 bit patterns, used as\n"
     "they are. bias (N,) float32 is added to every row (alpha must be 1)."},
    {"dnnl_bare_matmul", (PyCFunction)(void (*)(void))py_dnnl_bare_matmul, METH_VARARGS | METH_KEYWORDS,
     "dnnl_bare_matmul(M, N, K, trans_b=False, dtype='fp32', dst_bf16=False, reps=7) -> float\n\n"
     "Median seconds of oneDNN's matmul (M, K) @ (K, N) created once, buffers allocated once, run reps\n"
     "times: the bare primitive that benchmarks/speed/bench_gemm.py sets pacofr's matmul against."},
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
