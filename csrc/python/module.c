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
#include "layers/layers.h"
#include "model/optim.h"
#include "core/profile.h"
#include "model/vit.h"
#include "paco/codebook.h"
#include "paco/consistency.h"
#include "paco/masking.h"
#include "paco/patches.h"
#include "image/warp.h"
#include "image/photometric.h"
#include "image/normalize.h"
#include "image/raster.h"
#include "heads/heads.h"

/* Raise the exception that matches a failed status, with the core's message. */
static PyObject *raise_status(pf_status st) {
    PyObject *type = PyExc_RuntimeError;
    if (st == PF_EINVAL) type = PyExc_ValueError;
    else if (st == PF_ENOMEM) type = PyExc_MemoryError;
    PyErr_SetString(type, pf_last_error());
    return NULL;
}

/* None when st is PF_OK; else NULL with the error raised. */
static PyObject *none_or_raise(pf_status st) {
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
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

static const char *type_name(int type) {
    return type == NPY_FLOAT32 ? "float32" : type == NPY_INT64 ? "int64" : type == NPY_UINT8 ? "uint8"
         : type == NPY_FLOAT64 ? "float64" : "?";
}

/* obj must be a native-endian, aligned, C-contiguous ndarray of `type` with ndim dimensions
 * (ndim < 0: any) and, where shape is given, those sizes (-1: any); writeable when asked.
 * Returns it borrowed, or NULL with TypeError / ValueError naming the argument. */
static PyArrayObject *check_arr(PyObject *obj, const char *name, int type, int ndim,
                                const npy_intp *shape, int writeable, const char *hint) {
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a numpy.ndarray of %s, got %s", name,
                     type_name(type), Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != type) {
        PyErr_Format(PyExc_TypeError, "%s must have dtype %s, got %s", name, type_name(type), dtype_name(a));
        return NULL;
    }
    if (!PyArray_ISNOTSWAPPED(a)) {
        PyErr_Format(PyExc_TypeError, "%s must be native-endian %s, got byte-swapped %s",
                     name, type_name(type), dtype_name(a));
        return NULL;
    }
    if (ndim >= 0 && PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be %d-D, got %d-D array of shape %s", name, ndim,
                     PyArray_NDIM(a), shape_str(a));
        return NULL;
    }
    if (shape && ndim >= 0) {
        for (int i = 0; i < ndim; i++) {
            if (shape[i] >= 0 && PyArray_DIM(a, i) != shape[i]) {
                char want[128];
                int k = snprintf(want, sizeof want, "(");
                for (int j = 0; j < ndim && k < (int)sizeof want - 24; j++)
                    k += shape[j] >= 0 ? snprintf(want + k, sizeof want - k, j ? ", %lld" : "%lld", (long long)shape[j])
                                       : snprintf(want + k, sizeof want - k, j ? ", ?" : "?");
                snprintf(want + k, sizeof want - k, ndim == 1 ? ",)" : ")");
                PyErr_Format(PyExc_ValueError, "%s must have shape %s, got %s", name, want, shape_str(a));
                return NULL;
            }
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

static PyArrayObject *check_f32(PyObject *obj, const char *name, int ndim, int writeable,
                                const char *hint) {
    return check_arr(obj, name, NPY_FLOAT32, ndim, NULL, writeable, hint);
}

/* 1 when the byte ranges of two arrays overlap. */
static int overlaps(PyArrayObject *x, PyArrayObject *y) {
    const char *x0 = PyArray_BYTES(x), *y0 = PyArray_BYTES(y);
    const char *x1 = x0 + PyArray_NBYTES(x), *y1 = y0 + PyArray_NBYTES(y);
    return PyArray_NBYTES(x) > 0 && PyArray_NBYTES(y) > 0 && x0 < y1 && y0 < x1;
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

/* ================================================================ shared helpers */

#define SHP(...) ((const npy_intp[]){__VA_ARGS__})
#define F32(obj, name, nd, shape, w) check_arr(obj, name, NPY_FLOAT32, nd, shape, w, "")
#define I64(obj, name, nd, shape) check_arr(obj, name, NPY_INT64, nd, shape, 0, "")

/* A new float32 array, zero-filled (accumulators) or not. */
static PyArrayObject *new_f32(int nd, const npy_intp *dims, int zero) {
    return (PyArrayObject *)(zero ? PyArray_ZEROS(nd, (npy_intp *)dims, NPY_FLOAT32, 0)
                                  : PyArray_EMPTY(nd, (npy_intp *)dims, NPY_FLOAT32, 0));
}

/* Optional float32 argument: None -> *out = NULL (returns 1); else checked like F32. */
static int opt_f32(PyObject *obj, const char *name, int nd, const npy_intp *shape, PyArrayObject **out) {
    *out = NULL;
    if (obj == Py_None) return 1;
    *out = F32(obj, name, nd, shape, 1);
    return *out != NULL;
}

static float *data_or_null(PyArrayObject *a) { return a ? (float *)PyArray_DATA(a) : NULL; }

static int check_finite(PyArrayObject *a, const char *name) {
    int64_t bad;
    const float *p = PyArray_DATA(a);
    npy_intp n = PyArray_SIZE(a);
    Py_BEGIN_ALLOW_THREADS
    bad = pf_first_nonfinite(p, n);
    Py_END_ALLOW_THREADS
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError, "%s contains NaN or Inf (first at flat index %lld)", name, (long long)bad);
        return 0;
    }
    return 1;
}

static int check_finite_f64(PyArrayObject *a, const char *name) {
    const double *p = PyArray_DATA(a);
    for (npy_intp i = 0; i < PyArray_SIZE(a); i++)
        if (!isfinite(p[i])) {
            PyErr_Format(PyExc_ValueError, "%s contains NaN or Inf", name);
            return 0;
        }
    return 1;
}

/* ================================================================ the ViT model */

typedef struct {
    pf_vit *m;
    int busy; /* the GIL is released during compute: one call at a time per model */
} model_box;

#define MODEL_CAPSULE "pacofr._C.vit"

static void model_free(PyObject *cap) {
    model_box *b = PyCapsule_GetPointer(cap, MODEL_CAPSULE);
    if (b) {
        pf_vit_free(b->m);
        free(b);
    }
}

/* The model behind a capsule, marked busy; NULL with an exception. Release with unbox(). */
static model_box *box(PyObject *cap) {
    if (!PyCapsule_IsValid(cap, MODEL_CAPSULE)) {
        PyErr_Format(PyExc_TypeError, "model must be a pacofr ViT handle, got %s", Py_TYPE(cap)->tp_name);
        return NULL;
    }
    model_box *b = PyCapsule_GetPointer(cap, MODEL_CAPSULE);
    if (__atomic_exchange_n(&b->busy, 1, __ATOMIC_ACQUIRE)) {
        PyErr_SetString(PyExc_RuntimeError, "this model is in use by another thread; give each thread its own model");
        return NULL;
    }
    return b;
}

static void unbox(model_box *b) { __atomic_store_n(&b->busy, 0, __ATOMIC_RELEASE); }

static PyObject *py_vit_create(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_hidden",
                         "decoder_embed_dim", "decoder_depth", "decoder_num_heads", "decoder_mlp_hidden",
                         "encoder_only", "learned_pos", "norm_pix_loss", "codebook_size", "belief_hidden", NULL};
    long long v[10] = {0}, K = 0, H = 0;
    int encoder_only = 0, learned_pos = 0, norm_pix = 1;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LLLLLL|LLLLpppLL:vit_create", kw, &v[0], &v[1], &v[2],
                                     &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &encoder_only,
                                     &learned_pos, &norm_pix, &K, &H))
        return NULL;
    pf_vit_config c = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9],
                       encoder_only, learned_pos, norm_pix, K, H};
    model_box *b = calloc(1, sizeof *b);
    if (!b) return PyErr_NoMemory();
    pf_status st = pf_vit_create(&c, &b->m);
    if (st != PF_OK) {
        free(b);
        return raise_status(st);
    }
    PyObject *cap = PyCapsule_New(b, MODEL_CAPSULE, model_free);
    if (!cap) {
        pf_vit_free(b->m);
        free(b);
    }
    return cap;
}

static PyObject *py_vit_tensors(PyObject *self, PyObject *cap) {
    (void)self;
    model_box *b = box(cap);
    if (!b) return NULL;
    int n = pf_vit_num_tensors(b->m);
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; i++) {
        const pf_tensor *t = pf_vit_tensor(b->m, i);
        PyObject *shape = PyTuple_New(t->ndim);
        for (int j = 0; shape && j < t->ndim; j++) PyTuple_SET_ITEM(shape, j, PyLong_FromLongLong(t->shape[j]));
        PyObject *item = shape ? Py_BuildValue("(sNLLii)", t->name, shape, (long long)t->offset,
                                               (long long)t->numel, t->decay, t->trainable) : NULL;
        if (!item) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, item);
    }
    unbox(b);
    return list;
}

/* A flat float32 view of the model's parameter or gradient buffer, keeping the model alive. */
static PyObject *buffer_view(PyObject *cap, int grads) {
    model_box *b = box(cap);
    if (!b) return NULL;
    npy_intp n = pf_vit_num_params(b->m);
    float *p = grads ? pf_vit_grads(b->m) : pf_vit_params(b->m);
    unbox(b);
    PyObject *arr = PyArray_SimpleNewFromData(1, &n, NPY_FLOAT32, p);
    if (!arr) return NULL;
    Py_INCREF(cap);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, cap) < 0) {
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

static PyObject *py_vit_params(PyObject *self, PyObject *cap) { (void)self; return buffer_view(cap, 0); }
static PyObject *py_vit_grads(PyObject *self, PyObject *cap) { (void)self; return buffer_view(cap, 1); }

/* images must be float32 (B, 3, S, S), finite. */
static PyArrayObject *check_images(PyObject *obj, const pf_vit *m) {
    const npy_intp S = pf_vit_get_config(m)->img_size;
    PyArrayObject *im = F32(obj, "images", 4, SHP(-1, 3, S, S), 0);
    if (im && !check_finite(im, "images")) return NULL;
    return im;
}

static PyObject *py_vit_forward(PyObject *self, PyObject *args) {
    PyObject *cap, *im_obj, *ids_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO:vit_forward", &cap, &im_obj, &ids_obj)) return NULL;
    model_box *b = box(cap);
    if (!b) return NULL;
    PyObject *result = NULL;
    PyArrayObject *im = check_images(im_obj, b->m);
    if (!im) goto done;
    const npy_intp B = PyArray_DIM(im, 0);
    PyArrayObject *ids = I64(ids_obj, "ids_keep", 2, SHP(B, -1));
    if (!ids) goto done;
    const float *pim = PyArray_DATA(im);
    const int64_t *pids = PyArray_DATA(ids);
    const npy_intp n = PyArray_DIM(ids, 1);
    double loss = 0.0;
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_vit_forward(b->m, pim, pids, B, n, &loss);
    Py_END_ALLOW_THREADS
    result = st == PF_OK ? PyFloat_FromDouble(loss) : raise_status(st);
done:
    unbox(b);
    return result;
}

static PyObject *py_vit_backward(PyObject *self, PyObject *cap) {
    (void)self;
    model_box *b = box(cap);
    if (!b) return NULL;
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_vit_backward(b->m);
    Py_END_ALLOW_THREADS
    unbox(b);
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

static PyObject *py_vit_encode(PyObject *self, PyObject *args) {
    PyObject *cap, *im_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO:vit_encode", &cap, &im_obj)) return NULL;
    model_box *b = box(cap);
    if (!b) return NULL;
    PyObject *result = NULL;
    PyArrayObject *im = check_images(im_obj, b->m);
    if (!im) goto done;
    const pf_vit_config *c = pf_vit_get_config(b->m);
    const npy_intp B = PyArray_DIM(im, 0), G = c->img_size / c->patch_size;
    PyArrayObject *out = new_f32(3, SHP(B, 1 + G * G, c->embed_dim), 0);
    if (!out) goto done;
    const float *pim = PyArray_DATA(im);
    float *pout = PyArray_DATA(out);
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_vit_encode(b->m, pim, B, pout);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) {
        Py_DECREF(out);
        raise_status(st);
    } else {
        result = (PyObject *)out;
    }
done:
    unbox(b);
    return result;
}

/* vit_forward_ex(model, images, ids_keep, target_images | None, weights (B, N) | None) -> loss */
static PyObject *py_vit_forward_ex(PyObject *self, PyObject *args) {
    PyObject *cap, *im_obj, *ids_obj, *t_obj, *w_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO:vit_forward_ex", &cap, &im_obj, &ids_obj, &t_obj, &w_obj)) return NULL;
    model_box *b = box(cap);
    if (!b) return NULL;
    PyObject *result = NULL;
    PyArrayObject *im = check_images(im_obj, b->m), *tim = NULL, *w = NULL;
    if (!im) goto done;
    const npy_intp B = PyArray_DIM(im, 0);
    const pf_vit_config *c = pf_vit_get_config(b->m);
    const npy_intp N = (c->img_size / c->patch_size) * (c->img_size / c->patch_size);
    PyArrayObject *ids = I64(ids_obj, "ids_keep", 2, SHP(B, -1));
    if (!ids) goto done;
    if (t_obj != Py_None) {
        tim = check_images(t_obj, b->m);
        if (!tim || PyArray_DIM(tim, 0) != B) {
            if (tim) PyErr_Format(PyExc_ValueError, "target_images must hold %zd images", (Py_ssize_t)B);
            goto done;
        }
    }
    if (w_obj != Py_None) {
        w = F32(w_obj, "weights", 2, SHP(B, N), 0);
        if (!w || !check_finite(w, "weights")) goto done;
        const float *pw = PyArray_DATA(w);
        for (npy_intp i = 0; i < B * N; i++)
            if (pw[i] < 0.0f) {
                PyErr_Format(PyExc_ValueError, "weights must be >= 0, got %g at %zd", (double)pw[i], (Py_ssize_t)i);
                goto done;
            }
    }
    const float *pim = PyArray_DATA(im), *pt = data_or_null(tim), *pw = data_or_null(w);
    const int64_t *pids = PyArray_DATA(ids);
    const npy_intp n = PyArray_DIM(ids, 1);
    double loss = 0.0;
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_vit_forward_ex(b->m, pim, pids, B, n, pt, pw, &loss);
    Py_END_ALLOW_THREADS
    result = st == PF_OK ? PyFloat_FromDouble(loss) : raise_status(st);
done:
    unbox(b);
    return result;
}

/* vit_backward_ex(model, dlatent (B, 1+n, C) | None, dcols (B, n, 3*p*p) | None): accumulate */
static PyObject *py_vit_backward_ex(PyObject *self, PyObject *args) {
    PyObject *cap, *dl_obj, *dc_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO:vit_backward_ex", &cap, &dl_obj, &dc_obj)) return NULL;
    model_box *b = box(cap);
    if (!b) return NULL;
    PyObject *result = NULL;
    int64_t B = 0, T = 0, C = 0;
    if (!pf_vit_latent(b->m, &B, &T, &C)) {
        PyErr_SetString(PyExc_ValueError, "backward() needs a forward() first");
        goto done;
    }
    const pf_vit_config *c = pf_vit_get_config(b->m);
    PyArrayObject *dl = NULL, *dc = NULL;
    if (dl_obj != Py_None && !((dl = F32(dl_obj, "dlatent", 3, SHP(B, T, C), 0)) && check_finite(dl, "dlatent")))
        goto done;
    if (!opt_f32(dc_obj, "dcols", 3, SHP(B, T - 1, 3 * c->patch_size * c->patch_size), &dc)) goto done;
    const float *pdl = data_or_null(dl);
    float *pdc = data_or_null(dc);
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_vit_backward_ex(b->m, pdl, pdc);
    Py_END_ALLOW_THREADS
    result = none_or_raise(st);
done:
    unbox(b);
    return result;
}

/* vit_latent(model) -> (B, 1+n, C) copy of the last forward's encoder output;
 * vit_pred(model) -> (B, N, d) copy of its decoder prediction (cls row dropped). */
static PyObject *latent_or_pred(PyObject *cap, int pred) {
    model_box *b = box(cap);
    if (!b) return NULL;
    int64_t B = 0, T = 0, C = 0;
    const float *src = pred ? pf_vit_pred(b->m, &B, &T, &C) : pf_vit_latent(b->m, &B, &T, &C);
    PyArrayObject *out = NULL;
    if (!src) {
        PyErr_SetString(PyExc_ValueError, "no forward() yet: nothing to return");
    } else if ((out = new_f32(3, SHP(B, T, C), 0))) {
        float *o = PyArray_DATA(out);
        for (int64_t i = 0; i < B; i++)
            memcpy(o + i * T * C, src + (pred ? i * (T + 1) * C + C : i * T * C), (size_t)(T * C) * sizeof(float));
    }
    unbox(b);
    return (PyObject *)out;
}

static PyObject *py_vit_latent(PyObject *self, PyObject *cap) { (void)self; return latent_or_pred(cap, 0); }
static PyObject *py_vit_pred(PyObject *self, PyObject *cap) { (void)self; return latent_or_pred(cap, 1); }

/* vit_encode_ids(model, images, ids (B, n)) -> (B, 1+n, C): the encoder on kept patches */
static PyObject *py_vit_encode_ids(PyObject *self, PyObject *args) {
    PyObject *cap, *im_obj, *ids_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO:vit_encode_ids", &cap, &im_obj, &ids_obj)) return NULL;
    model_box *b = box(cap);
    if (!b) return NULL;
    PyObject *result = NULL;
    PyArrayObject *im = check_images(im_obj, b->m), *out = NULL;
    if (!im) goto done;
    const npy_intp B = PyArray_DIM(im, 0);
    PyArrayObject *ids = I64(ids_obj, "ids", 2, SHP(B, -1));
    if (!ids) goto done;
    const npy_intp n = PyArray_DIM(ids, 1);
    if (!(out = new_f32(3, SHP(B, 1 + n, pf_vit_get_config(b->m)->embed_dim), 0))) goto done;
    const float *pim = PyArray_DATA(im);
    const int64_t *pids = PyArray_DATA(ids);
    float *pout = PyArray_DATA(out);
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_vit_encode_ids(b->m, pim, pids, B, n, pout);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) {
        Py_CLEAR(out);
        raise_status(st);
    }
    result = (PyObject *)out;
done:
    unbox(b);
    return result;
}

static PyObject *py_vit_zero_grad(PyObject *self, PyObject *cap) {
    (void)self;
    model_box *b = box(cap);
    if (!b) return NULL;
    pf_vit_zero_grad(b->m);
    unbox(b);
    Py_RETURN_NONE;
}

static PyObject *py_vit_set_dtype(PyObject *self, PyObject *args) {
    PyObject *cap, *dt_obj;
    pf_dtype dt;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO:vit_set_dtype", &cap, &dt_obj) || !parse_dtype(dt_obj, &dt)) return NULL;
    model_box *b = box(cap);
    if (!b) return NULL;
    pf_vit_set_dtype(b->m, dt);
    unbox(b);
    Py_RETURN_NONE;
}

static PyObject *py_vit_acts_bytes(PyObject *self, PyObject *cap) {
    (void)self;
    model_box *b = box(cap);
    if (!b) return NULL;
    long long n = pf_vit_acts_bytes(b->m);
    unbox(b);
    return PyLong_FromLongLong(n);
}

static PyObject *py_grad_norm(PyObject *self, PyObject *cap) {
    (void)self;
    model_box *b = box(cap);
    if (!b) return NULL;
    double norm;
    pf_vit *m = b->m;
    Py_BEGIN_ALLOW_THREADS
    norm = pf_grad_norm(pf_vit_grads(m), pf_vit_tensor(m, 0), pf_vit_num_tensors(m));
    Py_END_ALLOW_THREADS
    unbox(b);
    return PyFloat_FromDouble(norm);
}

static PyObject *py_adamw_step(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"model", "m", "v", "lr", "beta1", "beta2", "eps", "weight_decay",
                         "bias_correction1", "bias_correction2", "grad_scale", "lr_scale", NULL};
    PyObject *cap, *m_obj, *v_obj, *s_obj = Py_None;
    pf_adamw_args a;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOffffffff|O:adamw_step", kw, &cap, &m_obj, &v_obj,
                                     &a.lr, &a.beta1, &a.beta2, &a.eps, &a.weight_decay,
                                     &a.bias_correction1, &a.bias_correction2, &a.grad_scale, &s_obj))
        return NULL;
    model_box *b = box(cap);
    if (!b) return NULL;
    PyObject *result = NULL;
    pf_vit *model = b->m;
    const npy_intp n = pf_vit_num_params(model);
    PyArrayObject *m = F32(m_obj, "m", 1, SHP(n), 1);
    PyArrayObject *v = m ? F32(v_obj, "v", 1, SHP(n), 1) : NULL, *sc = NULL;
    if (!v || !opt_f32(s_obj, "lr_scale", 1, SHP(pf_vit_num_tensors(model)), &sc)) goto done;
    if (sc && !check_finite(sc, "lr_scale")) goto done;
    float *pm = PyArray_DATA(m), *pv = PyArray_DATA(v);
    const float *psc = data_or_null(sc);
    Py_BEGIN_ALLOW_THREADS
    pf_adamw_step(pf_vit_params(model), pf_vit_grads(model), pm, pv, pf_vit_tensor(model, 0),
                  pf_vit_num_tensors(model), psc, &a);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    unbox(b);
    return result;
}

/* vit_encoder_backward(model, dout (B, 1+n, C), dcols (B, n, 3*p*p) | None): gradients of the
 * last encode / encode_ids from a gradient on its output (fine-tuning). */
static PyObject *py_vit_encoder_backward(PyObject *self, PyObject *args) {
    PyObject *cap, *d_obj, *dc_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO:vit_encoder_backward", &cap, &d_obj, &dc_obj)) return NULL;
    model_box *b = box(cap);
    if (!b) return NULL;
    PyObject *result = NULL;
    const pf_vit_config *c = pf_vit_get_config(b->m);
    PyArrayObject *d = F32(d_obj, "dout", 3, SHP(-1, -1, c->embed_dim), 0), *dc = NULL;
    if (!d || !check_finite(d, "dout")) goto done;
    const npy_intp B = PyArray_DIM(d, 0), T = PyArray_DIM(d, 1);
    if (!opt_f32(dc_obj, "dcols", 3, SHP(B, T - 1, 3 * c->patch_size * c->patch_size), &dc)) goto done;
    const float *pd = PyArray_DATA(d);
    float *pdc = data_or_null(dc);
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_vit_encoder_backward(b->m, pd, B, T, pdc);
    Py_END_ALLOW_THREADS
    result = none_or_raise(st);
done:
    unbox(b);
    return result;
}

/* adamw_update(params, grads, m, v, lr, beta1, beta2, eps, weight_decay, bc1, bc2, grad_scale,
 * decay): one AdamW update of one flat float32 tensor (the downstream heads' parameters). */
static PyObject *py_adamw_update(PyObject *self, PyObject *args) {
    PyObject *p_obj, *g_obj, *m_obj, *v_obj;
    pf_adamw_args a;
    int decay;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOffffffffp:adamw_update", &p_obj, &g_obj, &m_obj, &v_obj, &a.lr, &a.beta1,
                          &a.beta2, &a.eps, &a.weight_decay, &a.bias_correction1, &a.bias_correction2,
                          &a.grad_scale, &decay))
        return NULL;
    PyArrayObject *p = F32(p_obj, "params", 1, NULL, 1);
    if (!p) return NULL;
    const npy_intp n = PyArray_DIM(p, 0);
    PyArrayObject *g = F32(g_obj, "grads", 1, SHP(n), 0);
    PyArrayObject *m = g ? F32(m_obj, "m", 1, SHP(n), 1) : NULL;
    PyArrayObject *v = m ? F32(v_obj, "v", 1, SHP(n), 1) : NULL;
    if (!v || !check_finite(g, "grads")) return NULL;
    float *pp = PyArray_DATA(p), *pm = PyArray_DATA(m), *pv = PyArray_DATA(v);
    const float *pg = PyArray_DATA(g);
    Py_BEGIN_ALLOW_THREADS
    pf_adamw_update(pp, pg, pm, pv, n, decay, 1.0f, &a);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Per-patch head logits (B, N, p*p*X) with N = G*G: checks the layout, returns X (0 on error). */
static npy_intp head_logits(PyArrayObject **out, PyObject *obj, const char *name, long p, npy_intp *G) {
    if (p < 1) {
        PyErr_Format(PyExc_ValueError, "p must be positive, got %ld", p);
        return 0;
    }
    PyArrayObject *z = F32(obj, name, 3, NULL, 0);
    if (!z) return 0;
    const npy_intp N = PyArray_DIM(z, 1), D = PyArray_DIM(z, 2);
    npy_intp g = 0;
    while (g * g < N) g++;
    if (N < 1 || g * g != N || D < 1 || D % (p * p)) {
        PyErr_Format(PyExc_ValueError, "%s must have shape (B, G*G, p*p*X) with p = %ld, got %s", name, p, shape_str(z));
        return 0;
    }
    *out = z, *G = g;
    return D / (p * p);
}

/* softargmax_forward(logits (B, N, p*p*L), p) -> (coords (B, L, 2), lse (B, L)) */
static PyObject *py_softargmax_forward(PyObject *self, PyObject *args) {
    PyObject *z_obj;
    long p;
    PyArrayObject *z;
    npy_intp G;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ol:softargmax_forward", &z_obj, &p)) return NULL;
    const npy_intp L = head_logits(&z, z_obj, "logits", p, &G);
    if (!L || !check_finite(z, "logits")) return NULL;
    const npy_intp B = PyArray_DIM(z, 0);
    PyArrayObject *xy = new_f32(3, SHP(B, L, 2), 0), *lse = new_f32(2, SHP(B, L), 0);
    if (!xy || !lse) {
        Py_XDECREF(xy), Py_XDECREF(lse);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pf_softargmax_forward(PyArray_DATA(xy), PyArray_DATA(lse), PyArray_DATA(z), B, G, p, L);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(NN)", xy, lse);
}

/* softargmax_backward(dcoords (B, L, 2), logits, lse (B, L), coords (B, L, 2), p, dlogits) */
static PyObject *py_softargmax_backward(PyObject *self, PyObject *args) {
    PyObject *dxy_obj, *z_obj, *lse_obj, *xy_obj, *dz_obj;
    long p;
    PyArrayObject *z;
    npy_intp G;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOlO:softargmax_backward", &dxy_obj, &z_obj, &lse_obj, &xy_obj, &p, &dz_obj))
        return NULL;
    const npy_intp L = head_logits(&z, z_obj, "logits", p, &G);
    if (!L) return NULL;
    const npy_intp B = PyArray_DIM(z, 0);
    PyArrayObject *dxy = F32(dxy_obj, "dcoords", 3, SHP(B, L, 2), 0);
    PyArrayObject *lse = dxy ? F32(lse_obj, "lse", 2, SHP(B, L), 0) : NULL;
    PyArrayObject *xy = lse ? F32(xy_obj, "coords", 3, SHP(B, L, 2), 0) : NULL;
    PyArrayObject *dz = xy ? F32(dz_obj, "dlogits", 3, PyArray_DIMS(z), 1) : NULL;
    if (!dz || !check_finite(dxy, "dcoords")) return NULL;
    Py_BEGIN_ALLOW_THREADS
    pf_softargmax_backward(PyArray_DATA(dz), PyArray_DATA(dxy), PyArray_DATA(z), PyArray_DATA(lse),
                           PyArray_DATA(xy), B, G, p, L);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Point arrays of an L1 call: pred, target (B, L, 2), weight (B, L) | None. */
static int l1_args(PyObject *p_obj, PyObject *t_obj, PyObject *w_obj, PyArrayObject **pred,
                   PyArrayObject **target, PyArrayObject **weight) {
    *pred = F32(p_obj, "pred", 3, SHP(-1, -1, 2), 0);
    *target = *pred ? F32(t_obj, "target", 3, PyArray_DIMS(*pred), 0) : NULL;
    if (!*target || !opt_f32(w_obj, "weight", 2, SHP(PyArray_DIM(*pred, 0), PyArray_DIM(*pred, 1)), weight)) return 0;
    return check_finite(*pred, "pred") && check_finite(*target, "target") && (!*weight || check_finite(*weight, "weight"));
}

/* l1_points_forward(pred, target, weight | None, scale) -> float */
static PyObject *py_l1_points_forward(PyObject *self, PyObject *args) {
    PyObject *p_obj, *t_obj, *w_obj;
    float scale;
    PyArrayObject *pr, *t, *w;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOf:l1_points_forward", &p_obj, &t_obj, &w_obj, &scale) ||
        !l1_args(p_obj, t_obj, w_obj, &pr, &t, &w))
        return NULL;
    return PyFloat_FromDouble(pf_l1_points_forward(PyArray_DATA(pr), PyArray_DATA(t), data_or_null(w),
                                                   PyArray_DIM(pr, 0), PyArray_DIM(pr, 1), scale));
}

/* l1_points_backward(pred, target, weight | None, scale, dloss, dpred) */
static PyObject *py_l1_points_backward(PyObject *self, PyObject *args) {
    PyObject *p_obj, *t_obj, *w_obj, *d_obj;
    float scale, dloss;
    PyArrayObject *pr, *t, *w, *d;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOffO:l1_points_backward", &p_obj, &t_obj, &w_obj, &scale, &dloss, &d_obj) ||
        !l1_args(p_obj, t_obj, w_obj, &pr, &t, &w) || !(d = F32(d_obj, "dpred", 3, PyArray_DIMS(pr), 1)))
        return NULL;
    pf_l1_points_backward(PyArray_DATA(d), PyArray_DATA(pr), PyArray_DATA(t), data_or_null(w),
                          PyArray_DIM(pr, 0), PyArray_DIM(pr, 1), scale, dloss);
    Py_RETURN_NONE;
}

/* Logits and labels of a pixel cross-entropy call; returns K (0 on error). */
static npy_intp pixel_args(PyObject *z_obj, PyObject *y_obj, long p, PyArrayObject **z, PyArrayObject **y,
                           npy_intp *G) {
    const npy_intp K = head_logits(z, z_obj, "logits", p, G);
    if (!K) return 0;
    const npy_intp S = *G * p;
    *y = I64(y_obj, "labels", 3, SHP(PyArray_DIM(*z, 0), S, S));
    return *y ? K : 0;
}

/* pixel_ce_forward(logits (B, N, p*p*K), labels (B, S, S) int64, p, ignore) -> (loss, count) */
static PyObject *py_pixel_ce_forward(PyObject *self, PyObject *args) {
    PyObject *z_obj, *y_obj;
    long p;
    long long ignore;
    PyArrayObject *z, *y;
    npy_intp G;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOlL:pixel_ce_forward", &z_obj, &y_obj, &p, &ignore)) return NULL;
    const npy_intp K = pixel_args(z_obj, y_obj, p, &z, &y, &G);
    if (!K || !check_finite(z, "logits")) return NULL;
    double loss = 0.0;
    int64_t count = 0;
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_pixel_ce_forward(&loss, &count, PyArray_DATA(z), PyArray_DATA(y), PyArray_DIM(z, 0), G, p, K, ignore);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) return raise_status(st);
    return Py_BuildValue("(dL)", loss, (long long)count);
}

/* pixel_ce_backward(logits, labels, p, ignore, dloss, dlogits) */
static PyObject *py_pixel_ce_backward(PyObject *self, PyObject *args) {
    PyObject *z_obj, *y_obj, *d_obj;
    long p;
    long long ignore;
    float dloss;
    PyArrayObject *z, *y, *d;
    npy_intp G;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOlLfO:pixel_ce_backward", &z_obj, &y_obj, &p, &ignore, &dloss, &d_obj)) return NULL;
    const npy_intp K = pixel_args(z_obj, y_obj, p, &z, &y, &G);
    if (!K || !(d = F32(d_obj, "dlogits", 3, PyArray_DIMS(z), 1))) return NULL;
    Py_BEGIN_ALLOW_THREADS
    pf_pixel_ce_backward(PyArray_DATA(d), PyArray_DATA(z), PyArray_DATA(y), PyArray_DIM(z, 0), G, p, K, ignore, dloss);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* pixel_softmax(logits (B, N, p*p*K), p) -> probs (B, K, S, S) */
static PyObject *py_pixel_softmax(PyObject *self, PyObject *args) {
    PyObject *z_obj;
    long p;
    PyArrayObject *z;
    npy_intp G;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ol:pixel_softmax", &z_obj, &p)) return NULL;
    const npy_intp K = head_logits(&z, z_obj, "logits", p, &G);
    if (!K || !check_finite(z, "logits")) return NULL;
    const npy_intp B = PyArray_DIM(z, 0), S = G * p;
    PyArrayObject *out = new_f32(4, SHP(B, K, S, S), 0);
    if (!out) return NULL;
    Py_BEGIN_ALLOW_THREADS
    pf_pixel_softmax(PyArray_DATA(out), PyArray_DATA(z), B, G, p, K);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* upsample_patches(x (B, N, q*q*K), q, u) -> (B, N, (q*u)^2*K) */
static PyObject *py_upsample_patches(PyObject *self, PyObject *args) {
    PyObject *x_obj;
    long q, u;
    PyArrayObject *x;
    npy_intp G;
    (void)self;
    if (!PyArg_ParseTuple(args, "Oll:upsample_patches", &x_obj, &q, &u)) return NULL;
    const npy_intp K = head_logits(&x, x_obj, "x", q, &G);
    if (!K) return NULL;
    if (u < 1) return PyErr_Format(PyExc_ValueError, "u must be positive, got %ld", u);
    const npy_intp B = PyArray_DIM(x, 0), p = q * u;
    PyArrayObject *out = new_f32(3, SHP(B, G * G, p * p * K), 0);
    if (!out) return NULL;
    Py_BEGIN_ALLOW_THREADS
    pf_upsample_patches_forward(PyArray_DATA(out), PyArray_DATA(x), B, G, q, u, K);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* upsample_patches_backward(dout (B, N, (q*u)^2*K), q, u, dx (B, N, q*q*K)): dx += */
static PyObject *py_upsample_patches_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *dx_obj;
    long q, u;
    PyArrayObject *dx, *d;
    npy_intp G;
    (void)self;
    if (!PyArg_ParseTuple(args, "OllO:upsample_patches_backward", &d_obj, &q, &u, &dx_obj)) return NULL;
    if (u < 1) return PyErr_Format(PyExc_ValueError, "u must be positive, got %ld", u);
    const npy_intp K = head_logits(&dx, dx_obj, "dx", q, &G);
    if (!K || !PyArray_ISWRITEABLE(dx)) {
        if (K) PyErr_SetString(PyExc_ValueError, "dx must be writeable");
        return NULL;
    }
    const npy_intp B = PyArray_DIM(dx, 0), p = q * u;
    if (!(d = F32(d_obj, "dout", 3, SHP(B, G * G, p * p * K), 0))) return NULL;
    Py_BEGIN_ALLOW_THREADS
    pf_upsample_patches_backward(PyArray_DATA(dx), PyArray_DATA(d), B, G, q, u, K);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ================================================================ single layers (tests) */

/* linear_forward(inp (R, IC), weight (OC, IC), bias (OC) | None, dtype) -> out (R, OC) */
static PyObject *py_linear_forward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *w_obj, *b_obj, *dt_obj;
    pf_dtype dt;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &x_obj, &w_obj, &b_obj, &dt_obj) || !parse_dtype(dt_obj, &dt)) return NULL;
    PyArrayObject *x = F32(x_obj, "inp", 2, NULL, 0);
    PyArrayObject *w = x ? F32(w_obj, "weight", 2, SHP(-1, PyArray_DIM(x, 1)), 0) : NULL;
    PyArrayObject *bias = NULL;
    if (!w || (b_obj != Py_None && !(bias = F32(b_obj, "bias", 1, SHP(PyArray_DIM(w, 0)), 0)))) return NULL;
    const npy_intp R = PyArray_DIM(x, 0), IC = PyArray_DIM(x, 1), OC = PyArray_DIM(w, 0);
    PyArrayObject *out = new_f32(2, SHP(R, OC), 0);
    if (!out) return NULL;
    float *pb = data_or_null(bias);
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_linear_forward(PyArray_DATA(out), PyArray_DATA(x), PyArray_DATA(w), pb, R, IC, OC, dt);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) {
        Py_DECREF(out);
        return raise_status(st);
    }
    return (PyObject *)out;
}

/* linear_backward(dout (R, OC), inp (R, IC), weight (OC, IC), dinp|None, dweight|None,
 * dbias|None, dtype): accumulates into the given gradient arrays. */
static PyObject *py_linear_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *x_obj, *w_obj, *dx_obj, *dw_obj, *db_obj, *dt_obj;
    pf_dtype dt;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOO", &d_obj, &x_obj, &w_obj, &dx_obj, &dw_obj, &db_obj, &dt_obj) ||
        !parse_dtype(dt_obj, &dt))
        return NULL;
    PyArrayObject *x = F32(x_obj, "inp", 2, NULL, 0);
    PyArrayObject *w = x ? F32(w_obj, "weight", 2, SHP(-1, PyArray_DIM(x, 1)), 0) : NULL;
    if (!w) return NULL;
    const npy_intp R = PyArray_DIM(x, 0), IC = PyArray_DIM(x, 1), OC = PyArray_DIM(w, 0);
    PyArrayObject *d = F32(d_obj, "dout", 2, SHP(R, OC), 0), *dx, *dw, *db;
    if (!d || !opt_f32(dx_obj, "dinp", 2, SHP(R, IC), &dx) || !opt_f32(dw_obj, "dweight", 2, SHP(OC, IC), &dw) ||
        !opt_f32(db_obj, "dbias", 1, SHP(OC), &db))
        return NULL;
    float *pdx = data_or_null(dx), *pdw = data_or_null(dw), *pdb = data_or_null(db);
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_linear_backward(pdx, pdw, pdb, PyArray_DATA(d), PyArray_DATA(x), PyArray_DATA(w), R, IC, OC, dt);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

/* layernorm_forward(x (R, C), w (C), b (C), eps) -> (out, mean, rstd) */
static PyObject *py_layernorm_forward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *w_obj, *b_obj;
    float eps;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOf", &x_obj, &w_obj, &b_obj, &eps)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0);
    if (!x) return NULL;
    const npy_intp R = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    PyArrayObject *w = F32(w_obj, "weight", 1, SHP(C), 0), *b = w ? F32(b_obj, "bias", 1, SHP(C), 0) : NULL;
    if (!b) return NULL;
    PyArrayObject *out = new_f32(2, SHP(R, C), 0), *mean = new_f32(1, SHP(R), 0), *rstd = new_f32(1, SHP(R), 0);
    if (out && mean && rstd)
        pf_layernorm_forward(PyArray_DATA(out), PyArray_DATA(mean), PyArray_DATA(rstd), PyArray_DATA(x),
                             PyArray_DATA(w), PyArray_DATA(b), R, C, eps);
    return out && mean && rstd ? Py_BuildValue("(NNN)", out, mean, rstd) : NULL;
}

/* layernorm_backward(dout, x, w, mean, rstd, dx|None, dw|None, db|None) */
static PyObject *py_layernorm_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *x_obj, *w_obj, *m_obj, *r_obj, *dx_obj, *dw_obj, *db_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &d_obj, &x_obj, &w_obj, &m_obj, &r_obj, &dx_obj, &dw_obj, &db_obj))
        return NULL;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0);
    if (!x) return NULL;
    const npy_intp R = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    PyArrayObject *d = F32(d_obj, "dout", 2, SHP(R, C), 0), *w = d ? F32(w_obj, "weight", 1, SHP(C), 0) : NULL;
    PyArrayObject *mean = w ? F32(m_obj, "mean", 1, SHP(R), 0) : NULL;
    PyArrayObject *rstd = mean ? F32(r_obj, "rstd", 1, SHP(R), 0) : NULL, *dx, *dw, *db;
    if (!rstd || !opt_f32(dx_obj, "dx", 2, SHP(R, C), &dx) || !opt_f32(dw_obj, "dweight", 1, SHP(C), &dw) ||
        !opt_f32(db_obj, "dbias", 1, SHP(C), &db))
        return NULL;
    pf_status st = pf_layernorm_backward(data_or_null(dx), data_or_null(dw), data_or_null(db), PyArray_DATA(d),
                                         PyArray_DATA(x), PyArray_DATA(w), PyArray_DATA(mean),
                                         PyArray_DATA(rstd), R, C);
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

/* gelu_forward(x) -> out; gelu_backward(x, dout, dx): dx += dout * gelu'(x) */
static PyObject *py_gelu_forward(PyObject *self, PyObject *x_obj) {
    (void)self;
    PyArrayObject *x = F32(x_obj, "x", -1, NULL, 0);
    if (!x) return NULL;
    PyArrayObject *out = new_f32(PyArray_NDIM(x), PyArray_DIMS(x), 0);
    if (out) pf_gelu_forward(PyArray_DATA(out), PyArray_DATA(x), PyArray_SIZE(x));
    return (PyObject *)out;
}

static PyObject *py_gelu_backward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *d_obj, *dx_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &x_obj, &d_obj, &dx_obj)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", -1, NULL, 0);
    PyArrayObject *d = x ? F32(d_obj, "dout", PyArray_NDIM(x), PyArray_DIMS(x), 0) : NULL;
    PyArrayObject *dx = d ? F32(dx_obj, "dx", PyArray_NDIM(x), PyArray_DIMS(x), 1) : NULL;
    if (!dx) return NULL;
    pf_gelu_backward(PyArray_DATA(dx), PyArray_DATA(x), PyArray_DATA(d), PyArray_SIZE(x));
    Py_RETURN_NONE;
}

static int check_heads(npy_intp C, long nh) {
    if (nh < 1 || C % nh) {
        PyErr_Format(PyExc_ValueError, "num_heads must divide the width %zd, got %ld", (Py_ssize_t)C, nh);
        return 0;
    }
    return 1;
}

/* attention_forward(qkv (B, T, 3C), num_heads, dtype) -> (out (B, T, C), att (B, NH, T, T)) */
static PyObject *py_attention_forward(PyObject *self, PyObject *args) {
    PyObject *q_obj, *dt_obj;
    long nh;
    pf_dtype dt;
    (void)self;
    if (!PyArg_ParseTuple(args, "OlO", &q_obj, &nh, &dt_obj) || !parse_dtype(dt_obj, &dt)) return NULL;
    PyArrayObject *qkv = F32(q_obj, "qkv", 3, NULL, 0);
    if (!qkv) return NULL;
    const npy_intp B = PyArray_DIM(qkv, 0), T = PyArray_DIM(qkv, 1), C = PyArray_DIM(qkv, 2) / 3;
    if (PyArray_DIM(qkv, 2) % 3) return PyErr_Format(PyExc_ValueError, "qkv's last dimension must be 3*C");
    if (!check_heads(C, nh)) return NULL;
    PyArrayObject *out = new_f32(3, SHP(B, T, C), 0), *att = new_f32(4, SHP(B, nh, T, T), 0);
    if (!out || !att) {
        Py_XDECREF(out), Py_XDECREF(att);
        return NULL;
    }
    const float *pq = PyArray_DATA(qkv);
    float *po = PyArray_DATA(out), *pa = PyArray_DATA(att);
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_attention_forward(po, pa, pq, B, T, C, nh, dt);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) {
        Py_DECREF(out), Py_DECREF(att);
        return raise_status(st);
    }
    return Py_BuildValue("(NN)", out, att);
}

/* attention_backward(dout (B, T, C), qkv (B, T, 3C), att (B, NH, T, T), dqkv (B, T, 3C), dtype) */
static PyObject *py_attention_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *q_obj, *a_obj, *dq_obj, *dt_obj;
    pf_dtype dt;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO", &d_obj, &q_obj, &a_obj, &dq_obj, &dt_obj) || !parse_dtype(dt_obj, &dt))
        return NULL;
    PyArrayObject *qkv = F32(q_obj, "qkv", 3, NULL, 0);
    if (!qkv) return NULL;
    const npy_intp B = PyArray_DIM(qkv, 0), T = PyArray_DIM(qkv, 1), C = PyArray_DIM(qkv, 2) / 3;
    PyArrayObject *att = F32(a_obj, "att", 4, SHP(B, -1, T, T), 0);
    if (!att || !check_heads(C, (long)PyArray_DIM(att, 1))) return NULL;
    PyArrayObject *d = F32(d_obj, "dout", 3, SHP(B, T, C), 0);
    PyArrayObject *dq = d ? F32(dq_obj, "dqkv", 3, SHP(B, T, 3 * C), 1) : NULL;
    if (!dq) return NULL;
    pf_status st = pf_attention_backward(PyArray_DATA(dq), PyArray_DATA(d), PyArray_DATA(qkv), PyArray_DATA(att),
                                         B, T, C, PyArray_DIM(att, 1), dt);
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

static int check_patch(npy_intp S, long p) {
    if (p < 1 || S % p) {
        PyErr_Format(PyExc_ValueError, "patch size %ld must divide the image side %zd", p, (Py_ssize_t)S);
        return 0;
    }
    return 1;
}

/* ids (B, n) int64 in [0, G*G) or None. */
static int opt_ids(PyObject *obj, npy_intp B, npy_intp N, PyArrayObject **out) {
    *out = NULL;
    if (obj == Py_None) return 1;
    *out = I64(obj, "ids", 2, SHP(B, -1));
    if (!*out) return 0;
    const int64_t *p = PyArray_DATA(*out);
    for (npy_intp i = 0; i < PyArray_SIZE(*out); i++)
        if (p[i] < 0 || p[i] >= N) {
            PyErr_Format(PyExc_ValueError, "ids holds %lld, outside [0, %zd)", (long long)p[i], (Py_ssize_t)N);
            return 0;
        }
    return 1;
}

/* im2col(images (B, 3, S, S), ids (B, n) | None, p) -> cols (B, n, 3*p*p) in (c, kh, kw) */
static PyObject *py_im2col(PyObject *self, PyObject *args) {
    PyObject *im_obj, *ids_obj;
    long p;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOl", &im_obj, &ids_obj, &p)) return NULL;
    PyArrayObject *im = F32(im_obj, "images", 4, SHP(-1, 3, -1, -1), 0), *ids;
    if (!im || !check_patch(PyArray_DIM(im, 2), p)) return NULL;
    const npy_intp B = PyArray_DIM(im, 0), S = PyArray_DIM(im, 2), G = S / p;
    if (PyArray_DIM(im, 3) != S) return PyErr_Format(PyExc_ValueError, "images must be square");
    if (!opt_ids(ids_obj, B, G * G, &ids)) return NULL;
    const npy_intp n = ids ? PyArray_DIM(ids, 1) : G * G;
    PyArrayObject *cols = new_f32(3, SHP(B, n, 3 * p * p), 0);
    if (cols) pf_im2col(PyArray_DATA(cols), PyArray_DATA(im), ids ? PyArray_DATA(ids) : NULL, B, n, S, p);
    return (PyObject *)cols;
}

/* patchify(images (B, 3, S, S), p) -> (B, G*G, p*p*3) in (p, q, c) */
static PyObject *py_patchify(PyObject *self, PyObject *args) {
    PyObject *im_obj;
    long p;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ol", &im_obj, &p)) return NULL;
    PyArrayObject *im = F32(im_obj, "images", 4, SHP(-1, 3, -1, -1), 0);
    if (!im || !check_patch(PyArray_DIM(im, 2), p)) return NULL;
    const npy_intp B = PyArray_DIM(im, 0), S = PyArray_DIM(im, 2), G = S / p;
    if (PyArray_DIM(im, 3) != S) return PyErr_Format(PyExc_ValueError, "images must be square");
    PyArrayObject *out = new_f32(3, SHP(B, G * G, p * p * 3), 0);
    if (out) pf_patchify(PyArray_DATA(out), PyArray_DATA(im), B, S, p);
    return (PyObject *)out;
}

/* unpatchify(patches (B, G*G, p*p*3), p) -> images (B, 3, S, S) */
static PyObject *py_unpatchify(PyObject *self, PyObject *args) {
    PyObject *x_obj;
    long p;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ol", &x_obj, &p)) return NULL;
    if (p < 1) return PyErr_Format(PyExc_ValueError, "patch size must be positive, got %ld", p);
    PyArrayObject *x = F32(x_obj, "patches", 3, SHP(-1, -1, 3 * p * p), 0);
    if (!x) return NULL;
    const npy_intp B = PyArray_DIM(x, 0), N = PyArray_DIM(x, 1);
    npy_intp G = 0;
    while ((G + 1) * (G + 1) <= N) G++;
    if (G * G != N) return PyErr_Format(PyExc_ValueError, "patches: %zd patches is not a square grid", (Py_ssize_t)N);
    PyArrayObject *out = new_f32(4, SHP(B, 3, G * p, G * p), 0);
    if (out) pf_unpatchify(PyArray_DATA(out), PyArray_DATA(x), B, G * p, p);
    return (PyObject *)out;
}

/* tokens_forward(emb (B, n, C), cls (C), pos (1+N, C), ids (B, n) | None) -> x (B, 1+n, C) */
static PyObject *py_tokens_forward(PyObject *self, PyObject *args) {
    PyObject *e_obj, *c_obj, *p_obj, *ids_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &e_obj, &c_obj, &p_obj, &ids_obj)) return NULL;
    PyArrayObject *e = F32(e_obj, "emb", 3, NULL, 0), *ids;
    if (!e) return NULL;
    const npy_intp B = PyArray_DIM(e, 0), n = PyArray_DIM(e, 1), C = PyArray_DIM(e, 2);
    PyArrayObject *cls = F32(c_obj, "cls", 1, SHP(C), 0), *pos = cls ? F32(p_obj, "pos", 2, SHP(-1, C), 0) : NULL;
    if (!pos || !opt_ids(ids_obj, B, PyArray_DIM(pos, 0) - 1, &ids)) return NULL;
    if (ids ? PyArray_DIM(ids, 1) != n : PyArray_DIM(pos, 0) != n + 1)
        return PyErr_Format(PyExc_ValueError, "ids must have shape (B, n) matching emb, and pos 1+n rows when ids is None");
    PyArrayObject *x = new_f32(3, SHP(B, n + 1, C), 0);
    if (x) pf_tokens_forward(PyArray_DATA(x), PyArray_DATA(e), PyArray_DATA(cls), PyArray_DATA(pos),
                             ids ? PyArray_DATA(ids) : NULL, B, n, C);
    return (PyObject *)x;
}

/* tokens_backward(dx (B, 1+n, C), ids | None, demb (B, n, C), dcls (C), dpos (1+N, C) | None) */
static PyObject *py_tokens_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *ids_obj, *de_obj, *dc_obj, *dp_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO", &d_obj, &ids_obj, &de_obj, &dc_obj, &dp_obj)) return NULL;
    PyArrayObject *d = F32(d_obj, "dx", 3, NULL, 0), *ids, *dpos;
    if (!d) return NULL;
    const npy_intp B = PyArray_DIM(d, 0), n = PyArray_DIM(d, 1) - 1, C = PyArray_DIM(d, 2);
    PyArrayObject *de = F32(de_obj, "demb", 3, SHP(B, n, C), 1), *dc = de ? F32(dc_obj, "dcls", 1, SHP(C), 1) : NULL;
    if (!dc || !opt_f32(dp_obj, "dpos", 2, SHP(-1, C), &dpos)) return NULL;
    const npy_intp N = dpos ? PyArray_DIM(dpos, 0) - 1 : 1 << 30;
    if (!opt_ids(ids_obj, B, N, &ids)) return NULL;
    if (ids && PyArray_DIM(ids, 1) != n) return PyErr_Format(PyExc_ValueError, "ids must have shape (B, n)");
    pf_tokens_backward(PyArray_DATA(de), PyArray_DATA(dc), data_or_null(dpos), PyArray_DATA(d),
                       ids ? PyArray_DATA(ids) : NULL, B, n, C);
    Py_RETURN_NONE;
}

/* mask (B, N) from ids_keep (B, n): 1 = removed; also checks ids are distinct. */
static uint8_t *mask_from_ids(PyArrayObject *ids, npy_intp N) {
    const npy_intp B = PyArray_DIM(ids, 0), n = PyArray_DIM(ids, 1);
    uint8_t *mask = malloc((size_t)(B * N) + 1);
    if (!mask) return (uint8_t *)PyErr_NoMemory();
    memset(mask, 1, (size_t)(B * N));
    const int64_t *p = PyArray_DATA(ids);
    for (npy_intp i = 0; i < B * n; i++) {
        uint8_t *m = mask + (i / n) * N + p[i];
        if (!*m) {
            free(mask);
            PyErr_Format(PyExc_ValueError, "ids_keep repeats patch %lld in a row", (long long)p[i]);
            return NULL;
        }
        *m = 0;
    }
    return mask;
}

/* unshuffle_forward(x (B, 1+n, C), mask_token (C), pos (1+N, C), ids_keep (B, n)) -> (B, 1+N, C) */
static PyObject *py_unshuffle_forward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *t_obj, *p_obj, *ids_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &x_obj, &t_obj, &p_obj, &ids_obj)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", 3, NULL, 0), *ids;
    if (!x) return NULL;
    const npy_intp B = PyArray_DIM(x, 0), n = PyArray_DIM(x, 1) - 1, C = PyArray_DIM(x, 2);
    PyArrayObject *tok = F32(t_obj, "mask_token", 1, SHP(C), 0), *pos = tok ? F32(p_obj, "pos", 2, SHP(-1, C), 0) : NULL;
    if (!pos) return NULL;
    const npy_intp N = PyArray_DIM(pos, 0) - 1;
    if (!opt_ids(ids_obj, B, N, &ids) || !ids) return ids_obj == Py_None ? PyErr_Format(PyExc_TypeError, "ids_keep is required") : NULL;
    if (PyArray_DIM(ids, 1) != n) return PyErr_Format(PyExc_ValueError, "ids_keep must have shape (B, n)");
    uint8_t *mask = mask_from_ids(ids, N);
    if (!mask) return NULL;
    PyArrayObject *full = new_f32(3, SHP(B, N + 1, C), 0);
    if (full) pf_unshuffle_forward(PyArray_DATA(full), PyArray_DATA(x), PyArray_DATA(tok), PyArray_DATA(pos),
                                   PyArray_DATA(ids), mask, B, n, N, C);
    free(mask);
    return (PyObject *)full;
}

/* unshuffle_backward(dfull (B, 1+N, C), ids_keep (B, n), dx (B, 1+n, C), dmask_token (C), dpos | None) */
static PyObject *py_unshuffle_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *ids_obj, *dx_obj, *dt_obj, *dp_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO", &d_obj, &ids_obj, &dx_obj, &dt_obj, &dp_obj)) return NULL;
    PyArrayObject *d = F32(d_obj, "dfull", 3, NULL, 0), *ids, *dpos;
    if (!d) return NULL;
    const npy_intp B = PyArray_DIM(d, 0), N = PyArray_DIM(d, 1) - 1, C = PyArray_DIM(d, 2);
    if (!opt_ids(ids_obj, B, N, &ids) || !ids) return ids_obj == Py_None ? PyErr_Format(PyExc_TypeError, "ids_keep is required") : NULL;
    const npy_intp n = PyArray_DIM(ids, 1);
    PyArrayObject *dx = F32(dx_obj, "dx", 3, SHP(B, n + 1, C), 1), *dt = dx ? F32(dt_obj, "dmask_token", 1, SHP(C), 1) : NULL;
    if (!dt || !opt_f32(dp_obj, "dpos", 2, SHP(N + 1, C), &dpos)) return NULL;
    uint8_t *mask = mask_from_ids(ids, N);
    if (!mask) return NULL;
    pf_unshuffle_backward(PyArray_DATA(dx), PyArray_DATA(dt), data_or_null(dpos), PyArray_DATA(d),
                          PyArray_DATA(ids), mask, B, n, N, C);
    free(mask);
    Py_RETURN_NONE;
}

/* norm_pix_target(x (R, d)) -> a normalised copy */
static PyObject *py_norm_pix_target(PyObject *self, PyObject *x_obj) {
    (void)self;
    PyArrayObject *x = F32(x_obj, "target", 2, NULL, 0);
    if (!x) return NULL;
    if (PyArray_DIM(x, 1) < 2) return PyErr_Format(PyExc_ValueError, "target rows need at least 2 values");
    PyArrayObject *out = (PyArrayObject *)PyArray_NewCopy(x, NPY_CORDER);
    if (out) pf_norm_pix_target(PyArray_DATA(out), PyArray_DIM(x, 0), PyArray_DIM(x, 1));
    return (PyObject *)out;
}

/* mae loss: pred (B, row0 + N, d), target (B, N, d), mask (B, N) uint8 */
static int mae_args(PyObject *p_obj, PyObject *t_obj, PyObject *m_obj, long row0, PyArrayObject **pred,
                    PyArrayObject **target, PyArrayObject **mask) {
    *target = F32(t_obj, "target", 3, NULL, 0);
    if (!*target) return 0;
    const npy_intp B = PyArray_DIM(*target, 0), N = PyArray_DIM(*target, 1), d = PyArray_DIM(*target, 2);
    *pred = F32(p_obj, "pred", 3, SHP(B, N + row0, d), 0);
    *mask = *pred ? check_arr(m_obj, "mask", NPY_UINT8, 2, SHP(B, N), 0, "") : NULL;
    return *mask != NULL;
}

static PyObject *py_mae_loss_forward(PyObject *self, PyObject *args) {
    PyObject *p_obj, *t_obj, *m_obj;
    long row0;
    PyArrayObject *pred, *target, *mask;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOl", &p_obj, &t_obj, &m_obj, &row0) || !mae_args(p_obj, t_obj, m_obj, row0, &pred, &target, &mask))
        return NULL;
    return PyFloat_FromDouble(pf_mae_loss_forward(PyArray_DATA(pred), PyArray_DATA(target), PyArray_DATA(mask),
                                                  PyArray_DIM(target, 0), PyArray_DIM(target, 1),
                                                  PyArray_DIM(target, 2), row0));
}

static PyObject *py_mae_loss_backward(PyObject *self, PyObject *args) {
    PyObject *p_obj, *t_obj, *m_obj, *d_obj;
    long row0;
    float dloss;
    PyArrayObject *pred, *target, *mask;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOlfO", &p_obj, &t_obj, &m_obj, &row0, &dloss, &d_obj) ||
        !mae_args(p_obj, t_obj, m_obj, row0, &pred, &target, &mask))
        return NULL;
    PyArrayObject *dpred = F32(d_obj, "dpred", 3, PyArray_DIMS(pred), 1);
    if (!dpred) return NULL;
    pf_mae_loss_backward(PyArray_DATA(dpred), PyArray_DATA(pred), PyArray_DATA(target), PyArray_DATA(mask),
                         PyArray_DIM(target, 0), PyArray_DIM(target, 1), PyArray_DIM(target, 2), row0, dloss);
    Py_RETURN_NONE;
}

/* logits (R, K), targets (R) int64 in [0, K) */
static int ce_targets(PyObject *obj, npy_intp R, npy_intp K, PyArrayObject **out) {
    *out = I64(obj, "targets", 1, SHP(R));
    if (!*out) return 0;
    const int64_t *t = PyArray_DATA(*out);
    for (npy_intp i = 0; i < R; i++)
        if (t[i] < 0 || t[i] >= K) {
            PyErr_Format(PyExc_ValueError, "targets[%zd] = %lld is outside [0, %zd)", (Py_ssize_t)i,
                         (long long)t[i], (Py_ssize_t)K);
            return 0;
        }
    return 1;
}

/* cross_entropy_forward(logits (R, K), targets (R)) -> (loss, probs) */
static PyObject *py_cross_entropy_forward(PyObject *self, PyObject *args) {
    PyObject *l_obj, *t_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &l_obj, &t_obj)) return NULL;
    PyArrayObject *l = F32(l_obj, "logits", 2, NULL, 0), *t;
    if (!l || !ce_targets(t_obj, PyArray_DIM(l, 0), PyArray_DIM(l, 1), &t)) return NULL;
    PyArrayObject *probs = new_f32(2, PyArray_DIMS(l), 0);
    if (!probs) return NULL;
    double loss = pf_cross_entropy_forward(PyArray_DATA(probs), PyArray_DATA(l), PyArray_DATA(t),
                                           PyArray_DIM(l, 0), PyArray_DIM(l, 1));
    return Py_BuildValue("(dN)", loss, probs);
}

/* cross_entropy_backward(probs, targets, dloss, dlogits) */
static PyObject *py_cross_entropy_backward(PyObject *self, PyObject *args) {
    PyObject *p_obj, *t_obj, *d_obj;
    float dloss;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOfO", &p_obj, &t_obj, &dloss, &d_obj)) return NULL;
    PyArrayObject *p = F32(p_obj, "probs", 2, NULL, 0), *t;
    if (!p || !ce_targets(t_obj, PyArray_DIM(p, 0), PyArray_DIM(p, 1), &t)) return NULL;
    PyArrayObject *d = F32(d_obj, "dlogits", 2, PyArray_DIMS(p), 1);
    if (!d) return NULL;
    pf_cross_entropy_backward(PyArray_DATA(d), PyArray_DATA(p), PyArray_DATA(t), PyArray_DIM(p, 0),
                              PyArray_DIM(p, 1), dloss);
    Py_RETURN_NONE;
}

/* mse_forward(x, target) -> float; mse_backward(x, target, dloss, dx) */
static PyObject *py_mse_forward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *t_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &x_obj, &t_obj)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", -1, NULL, 0);
    PyArrayObject *t = x ? F32(t_obj, "target", PyArray_NDIM(x), PyArray_DIMS(x), 0) : NULL;
    if (!t) return NULL;
    return PyFloat_FromDouble(pf_mse_forward(PyArray_DATA(x), PyArray_DATA(t), PyArray_SIZE(x)));
}

static PyObject *py_mse_backward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *t_obj, *d_obj;
    float dloss;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOfO", &x_obj, &t_obj, &dloss, &d_obj)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", -1, NULL, 0);
    PyArrayObject *t = x ? F32(t_obj, "target", PyArray_NDIM(x), PyArray_DIMS(x), 0) : NULL;
    PyArrayObject *d = t ? F32(d_obj, "dx", PyArray_NDIM(x), PyArray_DIMS(x), 1) : NULL;
    if (!d) return NULL;
    pf_mse_backward(PyArray_DATA(d), PyArray_DATA(x), PyArray_DATA(t), PyArray_SIZE(x), dloss);
    Py_RETURN_NONE;
}

/* warp(src (B, H, W, C) uint8, M (B, 2, 3) float64 dst->src, out_h, out_w, nearest, fill)
 * -> (B, out_h, out_w, C) uint8 */
static PyObject *py_warp(PyObject *self, PyObject *args) {
    PyObject *s_obj, *m_obj;
    long oh, ow;
    int nearest, fill;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOllpi", &s_obj, &m_obj, &oh, &ow, &nearest, &fill)) return NULL;
    PyArrayObject *src = check_arr(s_obj, "images", NPY_UINT8, 4, NULL, 0, "");
    if (!src) return NULL;
    const npy_intp B = PyArray_DIM(src, 0), C = PyArray_DIM(src, 3);
    PyArrayObject *M = check_arr(m_obj, "matrix", NPY_FLOAT64, 3, SHP(B, 2, 3), 0, "");
    if (!M) return NULL;
    if (oh < 1 || ow < 1 || oh > 65536 || ow > 65536)
        return PyErr_Format(PyExc_ValueError, "output size must be between 1 and 65536, got %ld x %ld", oh, ow);
    if (fill < 0 || fill > 255) return PyErr_Format(PyExc_ValueError, "fill must be in [0, 255], got %d", fill);
    if (!check_finite_f64(M, "matrix")) return NULL;
    PyArrayObject *out = (PyArrayObject *)PyArray_EMPTY(4, (npy_intp *)SHP(B, oh, ow, C), NPY_UINT8, 0);
    if (!out) return NULL;
    uint8_t *po = PyArray_DATA(out);
    const uint8_t *ps = PyArray_DATA(src);
    const double *pm = PyArray_DATA(M);
    const npy_intp sh = PyArray_DIM(src, 1), sw = PyArray_DIM(src, 2);
    Py_BEGIN_ALLOW_THREADS
    pf_warp_u8(po, B, oh, ow, ps, sh, sw, C, pm, nearest, (uint8_t)fill);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* color_jitter(images (B, H, W, 3) uint8, params (B, 4) float32): in place */
static PyObject *py_color_jitter(PyObject *self, PyObject *args) {
    PyObject *i_obj, *p_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &i_obj, &p_obj)) return NULL;
    PyArrayObject *im = check_arr(i_obj, "images", NPY_UINT8, 4, SHP(-1, -1, -1, 3), 1, "");
    if (!im) return NULL;
    PyArrayObject *pr = F32(p_obj, "params", 2, SHP(PyArray_DIM(im, 0), 4), 0);
    if (!pr || !check_finite(pr, "params")) return NULL;
    uint8_t *pi = PyArray_DATA(im);
    const float *pp = PyArray_DATA(pr);
    const npy_intp B = PyArray_DIM(im, 0), H = PyArray_DIM(im, 1), W = PyArray_DIM(im, 2);
    Py_BEGIN_ALLOW_THREADS
    pf_color_jitter_u8(pi, B, H, W, pp);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* add_noise(images (B, ...) uint8, sigmas (B,) float32, keys (B,) int64): in place */
static PyObject *py_add_noise(PyObject *self, PyObject *args) {
    PyObject *i_obj, *s_obj, *k_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &i_obj, &s_obj, &k_obj)) return NULL;
    PyArrayObject *im = check_arr(i_obj, "images", NPY_UINT8, -1, NULL, 1, "");
    if (!im) return NULL;
    if (PyArray_NDIM(im) < 1) return PyErr_Format(PyExc_ValueError, "images needs a batch dimension");
    const npy_intp B = PyArray_DIM(im, 0);
    PyArrayObject *sg = F32(s_obj, "sigmas", 1, SHP(B), 0);
    PyArrayObject *keys = sg ? I64(k_obj, "keys", 1, SHP(B)) : NULL;
    if (!keys || !check_finite(sg, "sigmas")) return NULL;
    uint8_t *pi = PyArray_DATA(im);
    const float *ps = PyArray_DATA(sg);
    const uint64_t *pk = PyArray_DATA(keys);
    const npy_intp n = B ? PyArray_SIZE(im) / B : 0;
    Py_BEGIN_ALLOW_THREADS
    pf_add_noise_u8(pi, B, n, ps, pk);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* gaussian_blur(images (B, H, W, C) uint8, sigmas (B,) float32): in place */
static PyObject *py_gaussian_blur(PyObject *self, PyObject *args) {
    PyObject *i_obj, *s_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &i_obj, &s_obj)) return NULL;
    PyArrayObject *im = check_arr(i_obj, "images", NPY_UINT8, 4, NULL, 1, "");
    if (!im) return NULL;
    PyArrayObject *sg = F32(s_obj, "sigmas", 1, SHP(PyArray_DIM(im, 0)), 0);
    if (!sg || !check_finite(sg, "sigmas")) return NULL;
    const float *ps = PyArray_DATA(sg);
    for (npy_intp b = 0; b < PyArray_DIM(im, 0); b++)
        if (ps[b] < 0.0f || ps[b] > 20.0f)
            return PyErr_Format(PyExc_ValueError, "sigmas[%zd] must lie in [0, 20]", (Py_ssize_t)b);
    uint8_t *pi = PyArray_DATA(im);
    pf_status st;
    const npy_intp B = PyArray_DIM(im, 0), H = PyArray_DIM(im, 1), W = PyArray_DIM(im, 2), C = PyArray_DIM(im, 3);
    Py_BEGIN_ALLOW_THREADS
    st = pf_gaussian_blur_u8(pi, B, H, W, C, ps);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

/* normalize(images (B, H, W, 3) uint8, mean (3,), std (3,)) -> (B, 3, H, W) float32 */
static PyObject *py_normalize(PyObject *self, PyObject *args) {
    PyObject *i_obj, *m_obj, *s_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &i_obj, &m_obj, &s_obj)) return NULL;
    PyArrayObject *im = check_arr(i_obj, "images", NPY_UINT8, 4, SHP(-1, -1, -1, 3), 0, "");
    PyArrayObject *mean = im ? F32(m_obj, "mean", 1, SHP(3), 0) : NULL;
    PyArrayObject *std = mean ? F32(s_obj, "std", 1, SHP(3), 0) : NULL;
    if (!std || !check_finite(mean, "mean") || !check_finite(std, "std")) return NULL;
    const float *ps = PyArray_DATA(std), *pm = PyArray_DATA(mean);
    for (int c = 0; c < 3; c++)
        if (!(ps[c] > 0.0f)) return PyErr_Format(PyExc_ValueError, "std must be positive");
    const npy_intp B = PyArray_DIM(im, 0), H = PyArray_DIM(im, 1), W = PyArray_DIM(im, 2);
    PyArrayObject *out = new_f32(4, SHP(B, 3, H, W), 0);
    if (!out) return NULL;
    float *po = PyArray_DATA(out);
    const uint8_t *pi = PyArray_DATA(im);
    Py_BEGIN_ALLOW_THREADS
    pf_normalize_u8(po, pi, B, H, W, pm, ps);
    Py_END_ALLOW_THREADS
    return (PyObject *)out;
}

/* raster_faces(layers (L,) float32, offsets (B+1,) int64, params (B, PF_RASTER_NPARAM) float32,
 * background (B, 6) float32, keys (B,) int64, size)
 *   -> (images (B, S, S, 3) uint8, labels (B, S, S) uint8) */
static PyObject *py_raster_faces(PyObject *self, PyObject *args) {
    PyObject *l_obj, *o_obj, *p_obj, *b_obj, *k_obj;
    long S;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOl", &l_obj, &o_obj, &p_obj, &b_obj, &k_obj, &S)) return NULL;
    PyArrayObject *layers = F32(l_obj, "layers", 1, NULL, 0);
    PyArrayObject *off = layers ? I64(o_obj, "offsets", 1, NULL) : NULL;
    if (!off) return NULL;
    const npy_intp B = PyArray_DIM(off, 0) - 1;
    if (B < 0) return PyErr_Format(PyExc_ValueError, "offsets needs B + 1 entries");
    PyArrayObject *params = F32(p_obj, "params", 2, SHP(B, PF_RASTER_NPARAM), 0);
    PyArrayObject *bg = params ? F32(b_obj, "background", 2, SHP(B, 6), 0) : NULL;
    PyArrayObject *keys = bg ? I64(k_obj, "keys", 1, SHP(B)) : NULL;
    if (!keys || !check_finite(layers, "layers") || !check_finite(params, "params") ||
        !check_finite(bg, "background"))
        return NULL;
    if (S < 1 || S > 4096) return PyErr_Format(PyExc_ValueError, "size must be in [1, 4096], got %ld", S);
    const int64_t *po = PyArray_DATA(off);
    for (npy_intp b = 0; b <= B; b++)
        if (po[b] < 0 || po[b] > PyArray_DIM(layers, 0) || (b && po[b] < po[b - 1]) || (b == 0 && po[b] != 0))
            return PyErr_Format(PyExc_ValueError, "offsets must rise from 0 to len(layers)");
    const float *pp = PyArray_DATA(params);
    for (npy_intp b = 0; b < B; b++) {
        const float *q = pp + PF_RASTER_NPARAM * b;
        if (!(q[2] > 0 && q[3] > 0))
            return PyErr_Format(PyExc_ValueError, "params[%zd]: head radii must be positive", (Py_ssize_t)b);
        if (q[10] < 0 || q[13] < 0 || q[14] < 0 || q[10] > S || q[13] > S)
            return PyErr_Format(PyExc_ValueError, "params[%zd]: texture cells and stripe period must be in [0, size]",
                                (Py_ssize_t)b);
    }
    PyArrayObject *img = (PyArrayObject *)PyArray_EMPTY(4, (npy_intp *)SHP(B, S, S, 3), NPY_UINT8, 0);
    PyArrayObject *lab = (PyArrayObject *)PyArray_EMPTY(3, (npy_intp *)SHP(B, S, S), NPY_UINT8, 0);
    if (!img || !lab) {
        Py_XDECREF(img), Py_XDECREF(lab);
        return NULL;
    }
    uint8_t *pi = PyArray_DATA(img), *pl = PyArray_DATA(lab);
    const float *pla = PyArray_DATA(layers), *pb = PyArray_DATA(bg);
    const uint64_t *pk = PyArray_DATA(keys);
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_raster_faces(pi, pl, B, S, pla, po, pp, pb, pk);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) {
        Py_DECREF(img), Py_DECREF(lab);
        return raise_status(st);
    }
    return Py_BuildValue("(NN)", img, lab);
}

/* ---------------------------------------------------------------- PaCo-FR (csrc/paco) */

/* Every value of an int64 array in [0, hi); 0 with ValueError naming the first bad one. */
static int check_index(PyArrayObject *a, const char *name, int64_t hi) {
    const int64_t *v = PyArray_DATA(a);
    for (npy_intp i = 0; i < PyArray_SIZE(a); i++)
        if (v[i] < 0 || v[i] >= hi) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] = %lld is outside [0, %lld)", name, (Py_ssize_t)i,
                         (long long)v[i], (long long)hi);
            return 0;
        }
    return 1;
}

/* patch_stats(x (R, d)) -> (xn (R, d), mu (R), sigma (R)): MAE's norm_pix normalisation */
static PyObject *py_patch_stats(PyObject *self, PyObject *x_obj) {
    (void)self;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0);
    if (!x || !check_finite(x, "x")) return NULL;
    const npy_intp R = PyArray_DIM(x, 0), d = PyArray_DIM(x, 1);
    if (d < 2) return PyErr_Format(PyExc_ValueError, "x rows need at least 2 values, got %zd", (Py_ssize_t)d);
    PyArrayObject *xn = new_f32(2, SHP(R, d), 0), *mu = new_f32(1, SHP(R), 0), *sd = new_f32(1, SHP(R), 0);
    if (!xn || !mu || !sd) {
        Py_XDECREF(xn), Py_XDECREF(mu), Py_XDECREF(sd);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pf_patch_stats(PyArray_DATA(xn), PyArray_DATA(mu), PyArray_DATA(sd), PyArray_DATA(x), R, d);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(NNN)", xn, mu, sd);
}

/* substitute(images (B, 3, S, S), t (B, s, d), mu (B, s), sigma (B, s), subst (B, s), p): in place */
static PyObject *py_substitute(PyObject *self, PyObject *args) {
    PyObject *im_obj, *t_obj, *m_obj, *s_obj, *g_obj;
    long p;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOl", &im_obj, &t_obj, &m_obj, &s_obj, &g_obj, &p)) return NULL;
    PyArrayObject *im = F32(im_obj, "images", 4, SHP(-1, 3, -1, -1), 1);
    if (!im || !check_patch(PyArray_DIM(im, 2), p)) return NULL;
    const npy_intp B = PyArray_DIM(im, 0), S = PyArray_DIM(im, 2), G = S / p;
    if (PyArray_DIM(im, 3) != S) return PyErr_Format(PyExc_ValueError, "images must be square");
    PyArrayObject *g = I64(g_obj, "subst", 2, SHP(B, -1));
    if (!g) return NULL;
    const npy_intp s = PyArray_DIM(g, 1);
    PyArrayObject *t = F32(t_obj, "t", 3, SHP(B, s, 3 * p * p), 0);
    PyArrayObject *mu = t ? F32(m_obj, "mu", 2, SHP(B, s), 0) : NULL;
    PyArrayObject *sd = mu ? F32(s_obj, "sigma", 2, SHP(B, s), 0) : NULL;
    if (!sd || !check_finite(t, "t") || !check_finite(mu, "mu") || !check_finite(sd, "sigma") ||
        !check_index(g, "subst", G * G))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    pf_substitute(PyArray_DATA(im), PyArray_DATA(t), PyArray_DATA(mu), PyArray_DATA(sd), PyArray_DATA(g), B, s, S, p);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* substitute_backward(dt (B, s, d), dcols (B, n, d), sigma (B, s), pos (B, s), p): dt += */
static PyObject *py_substitute_backward(PyObject *self, PyObject *args) {
    PyObject *dt_obj, *dc_obj, *s_obj, *pos_obj;
    long p;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOl", &dt_obj, &dc_obj, &s_obj, &pos_obj, &p)) return NULL;
    if (p < 1) return PyErr_Format(PyExc_ValueError, "patch size must be positive, got %ld", p);
    PyArrayObject *dt = F32(dt_obj, "dt", 3, SHP(-1, -1, 3 * p * p), 1);
    if (!dt) return NULL;
    const npy_intp B = PyArray_DIM(dt, 0), s = PyArray_DIM(dt, 1);
    PyArrayObject *dc = F32(dc_obj, "dcols", 3, SHP(B, -1, 3 * p * p), 0);
    PyArrayObject *sd = dc ? F32(s_obj, "sigma", 2, SHP(B, s), 0) : NULL;
    PyArrayObject *pos = sd ? I64(pos_obj, "pos", 2, SHP(B, s)) : NULL;
    if (!pos || !check_index(pos, "pos", PyArray_DIM(dc, 1))) return NULL;
    const npy_intp n = PyArray_DIM(dc, 1);
    Py_BEGIN_ALLOW_THREADS
    pf_substitute_backward(PyArray_DATA(dt), PyArray_DATA(dc), PyArray_DATA(sd), PyArray_DATA(pos), B, s, n, p);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* The codebook argument: float32 (K, d), finite. */
static PyArrayObject *check_codebook(PyObject *obj, npy_intp d, int writeable) {
    PyArrayObject *C = F32(obj, "codebook", 2, SHP(-1, d), writeable);
    if (C && PyArray_DIM(C, 0) < 1) {
        PyErr_SetString(PyExc_ValueError, "codebook must have at least one code");
        return NULL;
    }
    return C && check_finite(C, "codebook") ? C : NULL;
}

/* codebook_nearest(x (R, d), codebook (K, d)) -> (idx (R,) int64, dist (R,)) */
static PyObject *py_codebook_nearest(PyObject *self, PyObject *args) {
    PyObject *x_obj, *c_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &x_obj, &c_obj)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0);
    PyArrayObject *C = x && check_finite(x, "x") ? check_codebook(c_obj, PyArray_DIM(x, 1), 0) : NULL;
    if (!C) return NULL;
    const npy_intp R = PyArray_DIM(x, 0), K = PyArray_DIM(C, 0), d = PyArray_DIM(x, 1);
    PyArrayObject *idx = (PyArrayObject *)PyArray_EMPTY(1, (npy_intp *)SHP(R), NPY_INT64, 0);
    PyArrayObject *dist = new_f32(1, SHP(R), 0);
    if (!idx || !dist) {
        Py_XDECREF(idx), Py_XDECREF(dist);
        return NULL;
    }
    int64_t *pi = PyArray_DATA(idx);
    float *pd = PyArray_DATA(dist);
    const float *px = PyArray_DATA(x), *pc = PyArray_DATA(C);
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_codebook_nearest(pi, pd, px, pc, R, K, d);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) {
        Py_DECREF(idx), Py_DECREF(dist);
        return raise_status(st);
    }
    return Py_BuildValue("(NN)", idx, dist);
}

static int check_topk(long k, npy_intp K, float tau) {
    if (k < 1 || k > K || k > 64) {
        PyErr_Format(PyExc_ValueError, "k must be in [1, min(64, K = %zd)], got %ld", (Py_ssize_t)K, k);
        return 0;
    }
    if (!(tau > 0.0f) || !isfinite(tau)) {
        PyErr_Format(PyExc_ValueError, "tau must be positive and finite, got %g", (double)tau);
        return 0;
    }
    return 1;
}

/* topk_mixture_forward(logits (R, K), codebook (K, d), k, tau, hard) -> (t (R, d), idx (R, k), w (R, k)) */
static PyObject *py_topk_mixture_forward(PyObject *self, PyObject *args) {
    PyObject *l_obj, *c_obj;
    long k;
    float tau;
    int hard;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOlfp", &l_obj, &c_obj, &k, &tau, &hard)) return NULL;
    PyArrayObject *l = F32(l_obj, "logits", 2, NULL, 0);
    if (!l || !check_finite(l, "logits")) return NULL;
    const npy_intp R = PyArray_DIM(l, 0), K = PyArray_DIM(l, 1);
    PyArrayObject *C = F32(c_obj, "codebook", 2, SHP(K, -1), 0);
    if (!C || !check_finite(C, "codebook") || !check_topk(k, K, tau)) return NULL;
    const npy_intp d = PyArray_DIM(C, 1);
    PyArrayObject *t = new_f32(2, SHP(R, d), 0), *w = new_f32(2, SHP(R, k), 0);
    PyArrayObject *idx = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(R, k), NPY_INT64, 0);
    if (!t || !w || !idx) {
        Py_XDECREF(t), Py_XDECREF(w), Py_XDECREF(idx);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pf_topk_mixture_forward(PyArray_DATA(t), PyArray_DATA(idx), PyArray_DATA(w), PyArray_DATA(l), PyArray_DATA(C),
                            R, K, d, k, tau, hard);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(NNN)", t, idx, w);
}

/* topk_mixture_backward(dlogits (R, K) | None, dcodebook (K, d) | None, dt (R, d), idx (R, k),
 * w (R, k), codebook (K, d), tau): accumulate */
static PyObject *py_topk_mixture_backward(PyObject *self, PyObject *args) {
    PyObject *dl_obj, *dc_obj, *dt_obj, *i_obj, *w_obj, *c_obj;
    float tau;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOf", &dl_obj, &dc_obj, &dt_obj, &i_obj, &w_obj, &c_obj, &tau)) return NULL;
    PyArrayObject *dt = F32(dt_obj, "dt", 2, NULL, 0);
    PyArrayObject *C = dt ? check_codebook(c_obj, PyArray_DIM(dt, 1), 0) : NULL;
    PyArrayObject *idx = C ? I64(i_obj, "idx", 2, SHP(PyArray_DIM(dt, 0), -1)) : NULL;
    if (!idx) return NULL;
    const npy_intp R = PyArray_DIM(dt, 0), d = PyArray_DIM(dt, 1), K = PyArray_DIM(C, 0), k = PyArray_DIM(idx, 1);
    PyArrayObject *w = F32(w_obj, "w", 2, SHP(R, k), 0), *dl, *dc;
    if (!w || !check_topk(k, K, tau) || !check_index(idx, "idx", K) || !opt_f32(dl_obj, "dlogits", 2, SHP(R, K), &dl) ||
        !opt_f32(dc_obj, "dcodebook", 2, SHP(K, d), &dc))
        return NULL;
    float *pdl = data_or_null(dl), *pdc = data_or_null(dc);
    Py_BEGIN_ALLOW_THREADS
    pf_topk_mixture_backward(pdl, pdc, PyArray_DATA(dt), PyArray_DATA(idx), PyArray_DATA(w), PyArray_DATA(C), R, K, d,
                             k, tau);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* The EMA k-means state: codebook (K, d), ema_count (K), ema_sum (K, d), all writeable. */
static int check_ema_state(PyObject *c_obj, PyObject *n_obj, PyObject *s_obj, npy_intp d, PyArrayObject **C,
                           PyArrayObject **cnt, PyArrayObject **sum) {
    *C = check_codebook(c_obj, d, 1);
    *cnt = *C ? F32(n_obj, "ema_count", 1, SHP(PyArray_DIM(*C, 0)), 1) : NULL;
    *sum = *cnt ? F32(s_obj, "ema_sum", 2, SHP(PyArray_DIM(*C, 0), d), 1) : NULL;
    return *sum && check_finite(*cnt, "ema_count") && check_finite(*sum, "ema_sum");
}

/* codebook_ema(codebook, ema_count, ema_sum, x (R, d), assign (R), decay, eps): in place */
static PyObject *py_codebook_ema(PyObject *self, PyObject *args) {
    PyObject *c_obj, *n_obj, *s_obj, *x_obj, *a_obj;
    float decay, eps;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOff", &c_obj, &n_obj, &s_obj, &x_obj, &a_obj, &decay, &eps)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0), *C, *cnt, *sum;
    if (!x || !check_finite(x, "x") || !check_ema_state(c_obj, n_obj, s_obj, PyArray_DIM(x, 1), &C, &cnt, &sum))
        return NULL;
    PyArrayObject *a = I64(a_obj, "assign", 1, SHP(PyArray_DIM(x, 0)));
    if (!a || !check_index(a, "assign", PyArray_DIM(C, 0))) return NULL;
    if (!(decay > 0.0f && decay < 1.0f) || !(eps > 0.0f))
        return PyErr_Format(PyExc_ValueError, "decay must be in (0, 1) and eps positive, got %g, %g", (double)decay,
                            (double)eps);
    const npy_intp R = PyArray_DIM(x, 0), K = PyArray_DIM(C, 0), d = PyArray_DIM(x, 1);
    Py_BEGIN_ALLOW_THREADS
    pf_codebook_ema(PyArray_DATA(C), PyArray_DATA(cnt), PyArray_DATA(sum), PyArray_DATA(x), PyArray_DATA(a), R, K, d,
                    decay, eps);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* codebook_reseed(codebook, ema_count, ema_sum, x (R, d), threshold, key) -> codes re-seeded */
static PyObject *py_codebook_reseed(PyObject *self, PyObject *args) {
    PyObject *c_obj, *n_obj, *s_obj, *x_obj;
    float threshold;
    unsigned long long key;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOfK", &c_obj, &n_obj, &s_obj, &x_obj, &threshold, &key)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0), *C, *cnt, *sum;
    if (!x || !check_finite(x, "x") || !check_ema_state(c_obj, n_obj, s_obj, PyArray_DIM(x, 1), &C, &cnt, &sum))
        return NULL;
    if (PyArray_DIM(x, 0) < 1) return PyErr_Format(PyExc_ValueError, "x must have at least one row");
    const npy_intp R = PyArray_DIM(x, 0), K = PyArray_DIM(C, 0), d = PyArray_DIM(x, 1);
    int64_t n;
    Py_BEGIN_ALLOW_THREADS
    n = pf_codebook_reseed(PyArray_DATA(C), PyArray_DATA(cnt), PyArray_DATA(sum), PyArray_DATA(x), R, K, d, threshold,
                           key);
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(n);
}

/* codebook_init(codebook (K, d), x (R, d), kmeanspp, key): in place */
static PyObject *py_codebook_init(PyObject *self, PyObject *args) {
    PyObject *c_obj, *x_obj;
    int pp;
    unsigned long long key;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOpK", &c_obj, &x_obj, &pp, &key)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0);
    PyArrayObject *C = x && check_finite(x, "x") ? F32(c_obj, "codebook", 2, SHP(-1, PyArray_DIM(x, 1)), 1) : NULL;
    if (!C) return NULL;
    float *pc = PyArray_DATA(C);
    const float *px = PyArray_DATA(x);
    const npy_intp R = PyArray_DIM(x, 0), K = PyArray_DIM(C, 0), d = PyArray_DIM(x, 1);
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_codebook_init(pc, px, R, K, d, pp, key);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

/* Optional valid (B, T) uint8 rows mask. */
static int opt_valid(PyObject *obj, npy_intp B, npy_intp T, PyArrayObject **out) {
    *out = NULL;
    if (obj == Py_None) return 1;
    *out = check_arr(obj, "valid", NPY_UINT8, 2, SHP(B, T), 0, "");
    return *out != NULL;
}

/* affinity_loss_forward(ys (B, T, C), yt (B, T, C), valid (B, T) | None)
 *   -> (loss, diff (B, T, T), zs (B, T, C), norms (B, T)) */
static PyObject *py_affinity_loss_forward(PyObject *self, PyObject *args) {
    PyObject *s_obj, *t_obj, *v_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &s_obj, &t_obj, &v_obj)) return NULL;
    PyArrayObject *ys = F32(s_obj, "ys", 3, NULL, 0);
    if (!ys || !check_finite(ys, "ys")) return NULL;
    const npy_intp B = PyArray_DIM(ys, 0), T = PyArray_DIM(ys, 1), C = PyArray_DIM(ys, 2);
    PyArrayObject *yt = F32(t_obj, "yt", 3, SHP(B, T, C), 0), *valid;
    if (!yt || !check_finite(yt, "yt") || !opt_valid(v_obj, B, T, &valid)) return NULL;
    PyArrayObject *diff = new_f32(3, SHP(B, T, T), 0), *zs = new_f32(3, SHP(B, T, C), 0), *norms = new_f32(2, SHP(B, T), 0);
    if (!diff || !zs || !norms) {
        Py_XDECREF(diff), Py_XDECREF(zs), Py_XDECREF(norms);
        return NULL;
    }
    double loss = 0.0;
    float *pd = PyArray_DATA(diff), *pz = PyArray_DATA(zs), *pn = PyArray_DATA(norms);
    const float *ps = PyArray_DATA(ys), *pt = PyArray_DATA(yt);
    const uint8_t *pv = valid ? PyArray_DATA(valid) : NULL;
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_affinity_loss_forward(&loss, pd, pz, pn, ps, pt, pv, B, T, C);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) {
        Py_DECREF(diff), Py_DECREF(zs), Py_DECREF(norms);
        return raise_status(st);
    }
    return Py_BuildValue("(dNNN)", loss, diff, zs, norms);
}

/* affinity_loss_backward(dys (B, T, C), diff, zs, norms, valid | None, dloss): dys += */
static PyObject *py_affinity_loss_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *df_obj, *z_obj, *n_obj, *v_obj;
    float dloss;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOf", &d_obj, &df_obj, &z_obj, &n_obj, &v_obj, &dloss)) return NULL;
    PyArrayObject *dys = F32(d_obj, "dys", 3, NULL, 1);
    if (!dys) return NULL;
    const npy_intp B = PyArray_DIM(dys, 0), T = PyArray_DIM(dys, 1), C = PyArray_DIM(dys, 2);
    PyArrayObject *diff = F32(df_obj, "diff", 3, SHP(B, T, T), 0);
    PyArrayObject *zs = diff ? F32(z_obj, "zs", 3, SHP(B, T, C), 0) : NULL;
    PyArrayObject *norms = zs ? F32(n_obj, "norms", 2, SHP(B, T), 0) : NULL, *valid;
    if (!norms || !opt_valid(v_obj, B, T, &valid)) return NULL;
    float *pd = PyArray_DATA(dys);
    const float *pdf = PyArray_DATA(diff), *pz = PyArray_DATA(zs), *pn = PyArray_DATA(norms);
    const uint8_t *pv = valid ? PyArray_DATA(valid) : NULL;
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    st = pf_affinity_loss_backward(pd, pdf, pz, pn, pv, B, T, C, dloss);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

/* region_pool_forward(y (B, T, C), region (B, T), G) -> (out (B, G, C), count (B, G) int64) */
static PyObject *py_region_pool_forward(PyObject *self, PyObject *args) {
    PyObject *y_obj, *r_obj;
    long G;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOl", &y_obj, &r_obj, &G)) return NULL;
    PyArrayObject *y = F32(y_obj, "y", 3, NULL, 0);
    if (!y) return NULL;
    const npy_intp B = PyArray_DIM(y, 0), T = PyArray_DIM(y, 1), C = PyArray_DIM(y, 2);
    PyArrayObject *r = I64(r_obj, "region", 2, SHP(B, T));
    if (!r || G < 1 || !check_index(r, "region", G)) {
        if (r && G < 1) PyErr_Format(PyExc_ValueError, "G must be positive, got %ld", G);
        return NULL;
    }
    PyArrayObject *out = new_f32(3, SHP(B, G, C), 0);
    PyArrayObject *cnt = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(B, G), NPY_INT64, 0);
    if (!out || !cnt) {
        Py_XDECREF(out), Py_XDECREF(cnt);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    pf_region_pool_forward(PyArray_DATA(out), PyArray_DATA(cnt), PyArray_DATA(y), PyArray_DATA(r), B, T, C, G);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(NN)", out, cnt);
}

/* region_pool_backward(dy (B, T, C), dout (B, G, C), count (B, G), region (B, T)): dy += */
static PyObject *py_region_pool_backward(PyObject *self, PyObject *args) {
    PyObject *dy_obj, *do_obj, *c_obj, *r_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &dy_obj, &do_obj, &c_obj, &r_obj)) return NULL;
    PyArrayObject *dy = F32(dy_obj, "dy", 3, NULL, 1);
    if (!dy) return NULL;
    const npy_intp B = PyArray_DIM(dy, 0), T = PyArray_DIM(dy, 1), C = PyArray_DIM(dy, 2);
    PyArrayObject *dout = F32(do_obj, "dout", 3, SHP(B, -1, C), 0);
    if (!dout) return NULL;
    const npy_intp G = PyArray_DIM(dout, 1);
    PyArrayObject *cnt = I64(c_obj, "count", 2, SHP(B, G)), *r = cnt ? I64(r_obj, "region", 2, SHP(B, T)) : NULL;
    if (!r || !check_index(r, "region", G)) return NULL;
    const int64_t *pc = PyArray_DATA(cnt), *pr = PyArray_DATA(r);
    for (npy_intp i = 0; i < B * T; i++)
        if (pc[(i / T) * G + pr[i]] < 1)
            return PyErr_Format(PyExc_ValueError, "count is 0 for region %lld of image %zd", (long long)pr[i],
                                (Py_ssize_t)(i / T));
    Py_BEGIN_ALLOW_THREADS
    pf_region_pool_backward(PyArray_DATA(dy), PyArray_DATA(dout), pc, pr, B, T, C, G);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ema_update(dst (n), src (n), momentum): dst = m dst + (1 - m) src */
static PyObject *py_ema_update(PyObject *self, PyObject *args) {
    PyObject *d_obj, *s_obj;
    float m;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOf", &d_obj, &s_obj, &m)) return NULL;
    PyArrayObject *dst = F32(d_obj, "dst", 1, NULL, 1);
    PyArrayObject *src = dst ? F32(s_obj, "src", 1, SHP(PyArray_DIM(dst, 0)), 0) : NULL;
    if (!src || !check_finite(src, "src")) return NULL;
    if (!(m >= 0.0f && m <= 1.0f)) return PyErr_Format(PyExc_ValueError, "momentum must be in [0, 1], got %g", (double)m);
    if (overlaps(dst, src)) return PyErr_Format(PyExc_ValueError, "dst and src must not overlap");
    const npy_intp n = PyArray_DIM(dst, 0);
    Py_BEGIN_ALLOW_THREADS
    pf_ema_update(PyArray_DATA(dst), PyArray_DATA(src), n, m);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* profile(enable) -> None; profile_read() -> {name: (seconds, calls)}; profile_reset() */
static PyObject *py_profile(PyObject *self, PyObject *arg) {
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    pf_prof_enable(on);
    Py_RETURN_NONE;
}

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

static PyObject *py_profile_reset(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    pf_prof_reset();
    Py_RETURN_NONE;
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

/* ================================================================ masking (METHOD.md section 1) */

enum { MASK_RANDOM, MASK_BLOCK, MASK_STRUCTURED };

/* mask_<kind>(indices (B,) int64, grid, n_mask, seed, step[, regions (N,) | (B, N) int64])
 *   -> (mask (B, N) uint8, ids_keep (B, N - n_mask) int64, ids_restore (B, N) int64).
 * seed and step are taken modulo 2^64. */
static PyObject *mask_kind(PyObject *args, int kind) {
    static const char *fmts[] = {"OLLKK:mask_random", "OLLKK:mask_block", "OLLKKO:mask_structured"};
    PyObject *i_obj, *r_obj = NULL;
    long long grid, n_mask;
    unsigned long long seed, step;
    if (!PyArg_ParseTuple(args, fmts[kind], &i_obj, &grid, &n_mask, &seed, &step, &r_obj)) return NULL;
    PyArrayObject *idx = I64(i_obj, "indices", 1, NULL);
    if (!idx) return NULL;
    if (grid < 1 || grid > PF_MASK_MAX_GRID)
        return PyErr_Format(PyExc_ValueError, "grid must be in [1, %d], got %lld", PF_MASK_MAX_GRID, grid);
    const npy_intp B = PyArray_DIM(idx, 0), N = (npy_intp)(grid * grid);
    if (n_mask < 0 || n_mask > N)
        return PyErr_Format(PyExc_ValueError, "n_mask must be in [0, N = %lld], got %lld", (long long)N, n_mask);
    PyArrayObject *reg = NULL;
    if (kind == MASK_STRUCTURED) {
        reg = I64(r_obj, "regions", -1, NULL);
        if (!reg) return NULL;
        const int nd = PyArray_NDIM(reg);
        if (!((nd == 1 && PyArray_DIM(reg, 0) == N) || (nd == 2 && PyArray_DIM(reg, 0) == B && PyArray_DIM(reg, 1) == N)))
            return PyErr_Format(PyExc_ValueError, "regions must have shape (%lld,) or (%lld, %lld), got %s",
                                (long long)N, (long long)B, (long long)N, shape_str(reg));
    }
    PyArrayObject *mask = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(B, N), NPY_UINT8, 0);
    PyArrayObject *keep = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(B, N - n_mask), NPY_INT64, 0);
    PyArrayObject *restore = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(B, N), NPY_INT64, 0);
    if (!mask || !keep || !restore) {
        Py_XDECREF(mask), Py_XDECREF(keep), Py_XDECREF(restore);
        return NULL;
    }
    uint8_t *pm = PyArray_DATA(mask);
    int64_t *pk = PyArray_DATA(keep), *pr = PyArray_DATA(restore);
    const int64_t *pi = PyArray_DATA(idx), *pg = reg ? PyArray_DATA(reg) : NULL;
    const int per_image = reg && PyArray_NDIM(reg) == 2;
    pf_status st;
    Py_BEGIN_ALLOW_THREADS
    if (kind == MASK_RANDOM) st = pf_mask_random(pm, pk, pr, B, grid, n_mask, seed, step, pi);
    else if (kind == MASK_BLOCK) st = pf_mask_block(pm, pk, pr, B, grid, n_mask, seed, step, pi);
    else st = pf_mask_structured(pm, pk, pr, B, grid, n_mask, seed, step, pi, pg, per_image);
    Py_END_ALLOW_THREADS
    if (st != PF_OK) {
        Py_DECREF(mask), Py_DECREF(keep), Py_DECREF(restore);
        return raise_status(st);
    }
    return Py_BuildValue("(NNN)", mask, keep, restore);
}

static PyObject *py_mask_random(PyObject *self, PyObject *args) { (void)self; return mask_kind(args, MASK_RANDOM); }
static PyObject *py_mask_block(PyObject *self, PyObject *args) { (void)self; return mask_kind(args, MASK_BLOCK); }
static PyObject *py_mask_structured(PyObject *self, PyObject *args) {
    (void)self;
    return mask_kind(args, MASK_STRUCTURED);
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
    {"vit_create", (PyCFunction)(void (*)(void))py_vit_create, METH_VARARGS | METH_KEYWORDS, "vit_create(**config) -> model handle"},
    {"vit_tensors", py_vit_tensors, METH_O, "vit_tensors(model) -> [(name, shape, offset, numel, decay, trainable)]"},
    {"vit_params", py_vit_params, METH_O, "vit_params(model) -> flat float32 view of the parameters"},
    {"vit_grads", py_vit_grads, METH_O, "vit_grads(model) -> flat float32 view of the gradients"},
    {"vit_forward", py_vit_forward, METH_VARARGS, "vit_forward(model, images, ids_keep) -> MAE loss"},
    {"vit_backward", py_vit_backward, METH_O, "vit_backward(model): accumulate gradients of the last loss"},
    {"vit_encode", py_vit_encode, METH_VARARGS, "vit_encode(model, images) -> (B, 1+N, C)"},
    {"vit_forward_ex", py_vit_forward_ex, METH_VARARGS,
     "vit_forward_ex(model, images, ids_keep, target_images|None, weights|None) -> weighted reconstruction loss"},
    {"vit_backward_ex", py_vit_backward_ex, METH_VARARGS, "vit_backward_ex(model, dlatent|None, dcols|None)"},
    {"vit_latent", py_vit_latent, METH_O, "vit_latent(model) -> (B, 1+n, C) encoder output of the last forward"},
    {"vit_pred", py_vit_pred, METH_O, "vit_pred(model) -> (B, N, d) decoder prediction of the last forward"},
    {"vit_encode_ids", py_vit_encode_ids, METH_VARARGS, "vit_encode_ids(model, images, ids) -> (B, 1+n, C)"},
    {"vit_zero_grad", py_vit_zero_grad, METH_O, "vit_zero_grad(model)"},
    {"vit_encoder_backward", py_vit_encoder_backward, METH_VARARGS,
     "vit_encoder_backward(model, dout, dcols|None): gradients of the last encode from a gradient on its output"},
    {"adamw_update", py_adamw_update, METH_VARARGS, "adamw_update(params, grads, m, v, lr, b1, b2, eps, wd, bc1, bc2, scale, decay)"},
    {"softargmax_forward", py_softargmax_forward, METH_VARARGS, "softargmax_forward(logits, p) -> (coords, lse)"},
    {"softargmax_backward", py_softargmax_backward, METH_VARARGS, "softargmax_backward(dcoords, logits, lse, coords, p, dlogits)"},
    {"l1_points_forward", py_l1_points_forward, METH_VARARGS, "l1_points_forward(pred, target, weight|None, scale) -> loss"},
    {"l1_points_backward", py_l1_points_backward, METH_VARARGS, "l1_points_backward(pred, target, weight|None, scale, dloss, dpred)"},
    {"pixel_ce_forward", py_pixel_ce_forward, METH_VARARGS, "pixel_ce_forward(logits, labels, p, ignore) -> (loss, count)"},
    {"pixel_ce_backward", py_pixel_ce_backward, METH_VARARGS, "pixel_ce_backward(logits, labels, p, ignore, dloss, dlogits)"},
    {"upsample_patches", py_upsample_patches, METH_VARARGS, "upsample_patches(x, q, u) -> bilinear u-times upsampling, per-patch layout"},
    {"upsample_patches_backward", py_upsample_patches_backward, METH_VARARGS, "upsample_patches_backward(dout, q, u, dx)"},
    {"pixel_softmax", py_pixel_softmax, METH_VARARGS, "pixel_softmax(logits, p) -> probs (B, K, S, S)"},
    {"vit_set_dtype", py_vit_set_dtype, METH_VARARGS, "vit_set_dtype(model, 'fp32' | 'bf16')"},
    {"vit_acts_bytes", py_vit_acts_bytes, METH_O, "vit_acts_bytes(model) -> bytes of cached activations"},
    {"grad_norm", py_grad_norm, METH_O, "grad_norm(model) -> global l2 norm of trainable gradients"},
    {"adamw_step", (PyCFunction)(void (*)(void))py_adamw_step, METH_VARARGS | METH_KEYWORDS, "one AdamW step"},
    {"raster_faces", py_raster_faces, METH_VARARGS, "raster_faces(layers, offsets, params, background, keys, size)"},
    {"patch_stats", py_patch_stats, METH_O, "patch_stats(x (R, d)) -> (normalised, mu, sigma)"},
    {"substitute", py_substitute, METH_VARARGS, "substitute(images, t, mu, sigma, subst, p): in place"},
    {"substitute_backward", py_substitute_backward, METH_VARARGS, "substitute_backward(dt, dcols, sigma, pos, p)"},
    {"codebook_nearest", py_codebook_nearest, METH_VARARGS, "codebook_nearest(x, codebook) -> (idx, dist)"},
    {"topk_mixture_forward", py_topk_mixture_forward, METH_VARARGS,
     "topk_mixture_forward(logits, codebook, k, tau, hard) -> (t, idx, w)"},
    {"topk_mixture_backward", py_topk_mixture_backward, METH_VARARGS,
     "topk_mixture_backward(dlogits|None, dcodebook|None, dt, idx, w, codebook, tau)"},
    {"codebook_ema", py_codebook_ema, METH_VARARGS, "codebook_ema(codebook, ema_count, ema_sum, x, assign, decay, eps)"},
    {"codebook_reseed", py_codebook_reseed, METH_VARARGS,
     "codebook_reseed(codebook, ema_count, ema_sum, x, threshold, key) -> re-seeded codes"},
    {"codebook_init", py_codebook_init, METH_VARARGS, "codebook_init(codebook, x, kmeanspp, key)"},
    {"affinity_loss_forward", py_affinity_loss_forward, METH_VARARGS,
     "affinity_loss_forward(ys, yt, valid|None) -> (loss, diff, zs, norms)"},
    {"affinity_loss_backward", py_affinity_loss_backward, METH_VARARGS,
     "affinity_loss_backward(dys, diff, zs, norms, valid|None, dloss)"},
    {"region_pool_forward", py_region_pool_forward, METH_VARARGS, "region_pool_forward(y, region, G) -> (out, count)"},
    {"region_pool_backward", py_region_pool_backward, METH_VARARGS, "region_pool_backward(dy, dout, count, region)"},
    {"ema_update", py_ema_update, METH_VARARGS, "ema_update(dst, src, momentum)"},
    {"normalize", py_normalize, METH_VARARGS, "normalize(images, mean, std) -> (B, 3, H, W) float32"},
    {"color_jitter", py_color_jitter, METH_VARARGS, "color_jitter(images, params): in place"},
    {"add_noise", py_add_noise, METH_VARARGS, "add_noise(images, sigmas, keys): in place"},
    {"gaussian_blur", py_gaussian_blur, METH_VARARGS, "gaussian_blur(images, sigmas): in place"},
    {"warp", py_warp, METH_VARARGS, "warp(images, matrix, out_h, out_w, nearest, fill) -> uint8"},
    {"profile", py_profile, METH_O, "profile(on): time each layer kind"},
    {"profile_read", py_profile_read, METH_NOARGS, "profile_read() -> {layer kind: (seconds, calls)}"},
    {"profile_reset", py_profile_reset, METH_NOARGS, NULL},
    {"linear_forward", py_linear_forward, METH_VARARGS, NULL},
    {"linear_backward", py_linear_backward, METH_VARARGS, NULL},
    {"layernorm_forward", py_layernorm_forward, METH_VARARGS, NULL},
    {"layernorm_backward", py_layernorm_backward, METH_VARARGS, NULL},
    {"gelu_forward", py_gelu_forward, METH_O, NULL},
    {"gelu_backward", py_gelu_backward, METH_VARARGS, NULL},
    {"attention_forward", py_attention_forward, METH_VARARGS, NULL},
    {"attention_backward", py_attention_backward, METH_VARARGS, NULL},
    {"im2col", py_im2col, METH_VARARGS, NULL},
    {"patchify", py_patchify, METH_VARARGS, NULL},
    {"unpatchify", py_unpatchify, METH_VARARGS, NULL},
    {"tokens_forward", py_tokens_forward, METH_VARARGS, NULL},
    {"tokens_backward", py_tokens_backward, METH_VARARGS, NULL},
    {"unshuffle_forward", py_unshuffle_forward, METH_VARARGS, NULL},
    {"unshuffle_backward", py_unshuffle_backward, METH_VARARGS, NULL},
    {"norm_pix_target", py_norm_pix_target, METH_O, NULL},
    {"mae_loss_forward", py_mae_loss_forward, METH_VARARGS, NULL},
    {"mae_loss_backward", py_mae_loss_backward, METH_VARARGS, NULL},
    {"cross_entropy_forward", py_cross_entropy_forward, METH_VARARGS, NULL},
    {"cross_entropy_backward", py_cross_entropy_backward, METH_VARARGS, NULL},
    {"mse_forward", py_mse_forward, METH_VARARGS, NULL},
    {"mse_backward", py_mse_backward, METH_VARARGS, NULL},
    {"mask_random", py_mask_random, METH_VARARGS, "mask_random(indices, grid, n_mask, seed, step) -> (mask, ids_keep, ids_restore)"},
    {"mask_block", py_mask_block, METH_VARARGS, "mask_block(indices, grid, n_mask, seed, step) -> (mask, ids_keep, ids_restore)"},
    {"mask_structured", py_mask_structured, METH_VARARGS,
     "mask_structured(indices, grid, n_mask, seed, step, regions) -> (mask, ids_keep, ids_restore)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {PyModuleDef_HEAD_INIT, "pacofr._C",
                                       "pacofr's C core.", -1, methods};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    return PyModule_Create(&moduledef);
}
