/* bind_layers.c: csrc/layers' compute layers for Python (linear, layernorm, GELU, attention),
 * one forward/backward pair at a time (the tests check each against its NumPy / PyTorch twin).
 * Backward bindings accumulate into the given gradient arrays, as the C functions do, unless
 * told to overwrite. Patches, tokens and losses: bind_tokens.c. */
#include <string.h>
#include "python/args.h"
#include "layers/layers.h"

/* 1 when nh >= 1 divides the width C; else 0 with ValueError. */
static int check_heads(npy_intp C, long nh) {
    if (nh < 1 || C % nh) {
        PyErr_Format(PyExc_ValueError, "num_heads must divide the width %zd, got %ld", (Py_ssize_t)C, nh);
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- linear, layernorm, gelu */

/* linear_forward(inp (rows, IC), weight (OC, IC), bias (OC) | None, dtype) -> out (rows, OC) */
static PyObject *py_linear_forward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *w_obj, *b_obj, *dt_obj;
    pf_dtype dt;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &x_obj, &w_obj, &b_obj, &dt_obj) || !parse_dtype(dt_obj, &dt)) return NULL;
    PyArrayObject *x = F32(x_obj, "inp", 2, NULL, 0);
    PyArrayObject *w = x ? F32(w_obj, "weight", 2, SHP(-1, PyArray_DIM(x, 1)), 0) : NULL;
    PyArrayObject *bias = NULL;
    if (!w || (b_obj != Py_None && !(bias = F32(b_obj, "bias", 1, SHP(PyArray_DIM(w, 0)), 0)))) return NULL;
    const npy_intp rows = PyArray_DIM(x, 0), IC = PyArray_DIM(x, 1), OC = PyArray_DIM(w, 0);
    PyArrayObject *out = new_f32(2, SHP(rows, OC), 0);
    if (!out) return NULL;
    float *pb = data_or_null(bias);
    pf_status st;
    PF_NOGIL(st = pf_linear_forward(PyArray_DATA(out), PyArray_DATA(x), NULL, PyArray_DATA(w), NULL, pb, rows, IC, OC,
                                   dt));
    if (st != PF_OK) {
        Py_DECREF(out);
        return raise_status(st);
    }
    return (PyObject *)out;
}

/* linear_backward(dout (rows, OC), inp (rows, IC), weight (OC, IC), dinp | None, dweight | None,
 * dbias | None, dtype, overwrite=False) -> None; overwrite: dinp = rather than +=; dout may be
 * uint16 bf16 bits for dtype bf16 (dbias None) */
static PyObject *py_linear_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *x_obj, *w_obj, *dx_obj, *dw_obj, *db_obj, *dt_obj;
    pf_dtype dt;
    int set = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOO|p", &d_obj, &x_obj, &w_obj, &dx_obj, &dw_obj, &db_obj, &dt_obj, &set) ||
        !parse_dtype(dt_obj, &dt))
        return NULL;
    PyArrayObject *x = F32(x_obj, "inp", 2, NULL, 0);
    PyArrayObject *w = x ? F32(w_obj, "weight", 2, SHP(-1, PyArray_DIM(x, 1)), 0) : NULL;
    if (!w) return NULL;
    const npy_intp rows = PyArray_DIM(x, 0), IC = PyArray_DIM(x, 1), OC = PyArray_DIM(w, 0);
    const int d16 = PyArray_Check(d_obj) && PyArray_TYPE((PyArrayObject *)d_obj) == NPY_UINT16;
    if (d16 && (dt != PF_BF16 || db_obj != Py_None))
        return PyErr_Format(PyExc_ValueError, "a uint16 (bf16 bits) dout needs dtype 'bf16' and dbias None");
    PyArrayObject *d = check_arr(d_obj, "dout", d16 ? NPY_UINT16 : NPY_FLOAT32, 2, SHP(rows, OC), 0, ""), *dx, *dw, *db;
    if (!d || !opt_f32(dx_obj, "dinp", 2, SHP(rows, IC), &dx) || !opt_f32(dw_obj, "dweight", 2, SHP(OC, IC), &dw) ||
        !opt_f32(db_obj, "dbias", 1, SHP(OC), &db))
        return NULL;
    float *pdx = data_or_null(dx), *pdw = data_or_null(dw), *pdb = data_or_null(db);
    const float *pd = d16 ? NULL : PyArray_DATA(d);
    const uint16_t *pd16 = d16 ? PyArray_DATA(d) : NULL;
    pf_status st;
    PF_NOGIL(st = pf_linear_backward(pdx, pdw, pdb, pd, pd16, PyArray_DATA(x), NULL, PyArray_DATA(w), NULL, rows, IC,
                                    OC,
                                     dt, set ? PF_GRAD_SET : PF_GRAD_ADD));
    return none_or_raise(st);
}

/* A new array of nd dims: uint16 (bf16 bits) when bf16, else float32. */
static PyArrayObject *new_out(int nd, const npy_intp *dims, int bf16) {
    return (PyArrayObject *)PyArray_EMPTY(nd, (npy_intp *)dims, bf16 ? NPY_UINT16 : NPY_FLOAT32, 0);
}

/* layernorm_forward(x (rows, C), w (C), b (C), eps, bf16_out=False) -> (out (rows, C), mean (rows), rstd (rows)) */
static PyObject *py_layernorm_forward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *w_obj, *b_obj;
    float eps;
    int bf16 = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOf|p", &x_obj, &w_obj, &b_obj, &eps, &bf16)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0);
    if (!x) return NULL;
    const npy_intp rows = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    PyArrayObject *w = F32(w_obj, "weight", 1, SHP(C), 0), *b = w ? F32(b_obj, "bias", 1, SHP(C), 0) : NULL;
    if (!b) return NULL;
    PyArrayObject *out = new_out(2, SHP(rows, C), bf16), *mean = new_f32(1, SHP(rows), 0);
    PyArrayObject *rstd = new_f32(1, SHP(rows), 0);
    if (!out || !mean || !rstd) {
        Py_XDECREF(out), Py_XDECREF(mean), Py_XDECREF(rstd);
        return NULL;
    }
    if (bf16)
        PF_NOGIL(pf_layernorm_forward16(PyArray_DATA(out), PyArray_DATA(mean), PyArray_DATA(rstd), PyArray_DATA(x),
                                        PyArray_DATA(w), PyArray_DATA(b), rows, C, eps));
    else
        PF_NOGIL(pf_layernorm_forward(PyArray_DATA(out), PyArray_DATA(mean), PyArray_DATA(rstd), PyArray_DATA(x),
                                      PyArray_DATA(w), PyArray_DATA(b), rows, C, eps));
    return Py_BuildValue("(NNN)", out, mean, rstd);
}

/* layernorm_backward(dout (rows, C), x (rows, C), w (C), mean (rows), rstd (rows), dx | None, dw | None,
 * db | None) -> None */
static PyObject *py_layernorm_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *x_obj, *w_obj, *m_obj, *r_obj, *dx_obj, *dw_obj, *db_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOO", &d_obj, &x_obj, &w_obj, &m_obj, &r_obj, &dx_obj, &dw_obj, &db_obj))
        return NULL;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0);
    if (!x) return NULL;
    const npy_intp rows = PyArray_DIM(x, 0), C = PyArray_DIM(x, 1);
    PyArrayObject *d = F32(d_obj, "dout", 2, SHP(rows, C), 0), *w = d ? F32(w_obj, "weight", 1, SHP(C), 0) : NULL;
    PyArrayObject *mean = w ? F32(m_obj, "mean", 1, SHP(rows), 0) : NULL;
    PyArrayObject *rstd = mean ? F32(r_obj, "rstd", 1, SHP(rows), 0) : NULL, *dx, *dw, *db;
    if (!rstd || !opt_f32(dx_obj, "dx", 2, SHP(rows, C), &dx) || !opt_f32(dw_obj, "dweight", 1, SHP(C), &dw) ||
        !opt_f32(db_obj, "dbias", 1, SHP(C), &db))
        return NULL;
    pf_status st;
    PF_NOGIL(st = pf_layernorm_backward(data_or_null(dx), data_or_null(dw), data_or_null(db), PyArray_DATA(d),
                                        PyArray_DATA(x), PyArray_DATA(w), PyArray_DATA(mean), PyArray_DATA(rstd),
                                        rows, C));
    return none_or_raise(st);
}

/* gelu_forward(x any shape, bf16_out=False) -> out (x's shape) */
static PyObject *py_gelu_forward(PyObject *self, PyObject *args) {
    PyObject *x_obj;
    int bf16 = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "O|p", &x_obj, &bf16)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", -1, NULL, 0);
    if (!x) return NULL;
    PyArrayObject *out = new_out(PyArray_NDIM(x), PyArray_DIMS(x), bf16);
    if (out && bf16) PF_NOGIL(pf_gelu_forward16(PyArray_DATA(out), PyArray_DATA(x), PyArray_SIZE(x)));
    else if (out) PF_NOGIL(pf_gelu_forward(PyArray_DATA(out), PyArray_DATA(x), PyArray_SIZE(x)));
    return (PyObject *)out;
}

/* gelu_backward(x, dout, dx all one shape, overwrite=False) -> None: dx += dout * gelu'(x), or
 * with overwrite dx = (dx may then be dout itself) */
static PyObject *py_gelu_backward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *d_obj, *dx_obj;
    int set = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO|p", &x_obj, &d_obj, &dx_obj, &set)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", -1, NULL, 0);
    PyArrayObject *d = x ? F32(d_obj, "dout", PyArray_NDIM(x), PyArray_DIMS(x), 0) : NULL;
    PyArrayObject *dx = d ? F32(dx_obj, "dx", PyArray_NDIM(x), PyArray_DIMS(x), 1) : NULL;
    if (!dx) return NULL;
    PF_NOGIL(pf_gelu_backward(PyArray_DATA(dx), PyArray_DATA(x), PyArray_DATA(d), PyArray_SIZE(x),
                              set ? PF_GRAD_SET : PF_GRAD_ADD));
    Py_RETURN_NONE;
}

/* gelu_backward16(x (rows, H), dout (rows, H), dbias (H) float32) -> dx (rows, H) uint16:
 * dx = bf16 bits of dout * gelu'(x), dbias += their column sums */
static PyObject *py_gelu_backward16(PyObject *self, PyObject *args) {
    PyObject *x_obj, *d_obj, *db_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOO", &x_obj, &d_obj, &db_obj)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0);
    PyArrayObject *d = x ? F32(d_obj, "dout", 2, PyArray_DIMS(x), 0) : NULL;
    PyArrayObject *db = d ? F32(db_obj, "dbias", 1, SHP(PyArray_DIM(x, 1)), 1) : NULL;
    PyArrayObject *dx = db ? new_out(2, PyArray_DIMS(x), 1) : NULL;
    if (!dx) return NULL;
    pf_status st;
    PF_NOGIL(st = pf_gelu_backward16(PyArray_DATA(dx), PyArray_DATA(db), PyArray_DATA(x), PyArray_DATA(d),
                                     PyArray_DIM(x, 0), PyArray_DIM(x, 1)));
    if (st != PF_OK) {
        Py_DECREF(dx);
        return raise_status(st);
    }
    return (PyObject *)dx;
}

/* ---------------------------------------------------------------- attention */

/* attention_forward(qkv (B, T, 3C), num_heads, dtype, bf16_out=False) -> (out (B, T, C), att (B, NH, T, T));
 * att is uint16 bf16 bits where pf_attention_att16(dtype), else float32 */
static PyObject *py_attention_forward(PyObject *self, PyObject *args) {
    PyObject *q_obj, *dt_obj;
    long nh;
    pf_dtype dt;
    int bf16 = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OlO|p", &q_obj, &nh, &dt_obj, &bf16) || !parse_dtype(dt_obj, &dt)) return NULL;
    PyArrayObject *qkv = F32(q_obj, "qkv", 3, NULL, 0);
    if (!qkv) return NULL;
    const npy_intp B = PyArray_DIM(qkv, 0), T = PyArray_DIM(qkv, 1), C = PyArray_DIM(qkv, 2) / 3;
    if (PyArray_DIM(qkv, 2) % 3) return PyErr_Format(PyExc_ValueError, "qkv's last dimension must be 3*C");
    if (!check_heads(C, nh)) return NULL;
    PyArrayObject *out = new_out(3, SHP(B, T, C), bf16), *att = new_out(4, SHP(B, nh, T, T), pf_attention_att16(dt));
    if (!out || !att) {
        Py_XDECREF(out), Py_XDECREF(att);
        return NULL;
    }
    const float *pq = PyArray_DATA(qkv);
    void *pa = PyArray_DATA(att);
    pf_status st;
    if (bf16) PF_NOGIL(st = pf_attention_forward16(PyArray_DATA(out), pa, pq, B, T, C, nh, dt));
    else PF_NOGIL(st = pf_attention_forward(PyArray_DATA(out), pa, pq, B, T, C, nh, dt));
    if (st != PF_OK) {
        Py_DECREF(out), Py_DECREF(att);
        return raise_status(st);
    }
    return Py_BuildValue("(NN)", out, att);
}

/* attention_backward(dout (B, T, C), qkv (B, T, 3C), att (B, NH, T, T), dqkv (B, T, 3C), dtype,
 * overwrite=False) -> None; overwrite: dqkv = rather than += */
static PyObject *py_attention_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *q_obj, *a_obj, *dq_obj, *dt_obj;
    pf_dtype dt;
    int set = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO|p", &d_obj, &q_obj, &a_obj, &dq_obj, &dt_obj, &set) || !parse_dtype(dt_obj, &dt))
        return NULL;
    PyArrayObject *qkv = F32(q_obj, "qkv", 3, NULL, 0);
    if (!qkv) return NULL;
    const npy_intp B = PyArray_DIM(qkv, 0), T = PyArray_DIM(qkv, 1), C = PyArray_DIM(qkv, 2) / 3;
    const int att16 = pf_attention_att16(dt); /* att as attention_forward returned it for dt */
    PyArrayObject *att = check_arr(a_obj, "att", att16 ? NPY_UINT16 : NPY_FLOAT32, 4, SHP(B, -1, T, T), 0,
                                   att16 ? " (bf16 bits, as attention_forward returns them for this dtype)" : "");
    if (!att || !check_heads(C, (long)PyArray_DIM(att, 1))) return NULL;
    PyArrayObject *d = F32(d_obj, "dout", 3, SHP(B, T, C), 0);
    PyArrayObject *dq = d ? F32(dq_obj, "dqkv", 3, SHP(B, T, 3 * C), 1) : NULL;
    if (!dq) return NULL;
    const npy_intp NH = PyArray_DIM(att, 1);
    pf_status st;
    PF_NOGIL(st = pf_attention_backward(PyArray_DATA(dq), PyArray_DATA(d), PyArray_DATA(qkv), PyArray_DATA(att), B,
                                        T, C, NH, dt, set ? PF_GRAD_SET : PF_GRAD_ADD));
    return none_or_raise(st);
}

PyMethodDef pf_layers_methods[] = {
    {"linear_forward", py_linear_forward, METH_VARARGS,
     "linear_forward(inp, weight, bias, dtype) -> out (rows, OC) float32\n\n"
     "inp (rows, IC), weight (OC, IC), bias (OC,) | None, dtype 'fp32' | 'bf16': inp @ weight.T + bias."},
    {"linear_backward", py_linear_backward, METH_VARARGS,
     "linear_backward(dout, inp, weight, dinp, dweight, dbias, dtype, overwrite=False) -> None\n\n"
     "dout (rows, OC) -> dinp (rows, IC), dweight (OC, IC), dbias (OC,) +=, each optional (None: skipped).\n"
     "overwrite: dinp is written (=), never read. dout may be uint16 bf16 bits for dtype 'bf16' (dbias None)."},
    {"layernorm_forward", py_layernorm_forward, METH_VARARGS,
     "layernorm_forward(x, weight, bias, eps, bf16_out=False) -> (out (rows, C), mean (rows,), rstd (rows,))\n\n"
     "x (rows, C), weight, bias (C,): LayerNorm over each row; mean and rstd kept for the backward.\n"
     "bf16_out: out is uint16 bf16 bits (what a bf16 model hands its next product)."},
    {"layernorm_backward", py_layernorm_backward, METH_VARARGS,
     "layernorm_backward(dout, x, weight, mean, rstd, dx, dweight, dbias) -> None\n\n"
     "dout (rows, C) -> dx (rows, C), dweight, dbias (C,) +=, each optional (None: skipped)."},
    {"gelu_forward", py_gelu_forward, METH_VARARGS,
     "gelu_forward(x, bf16_out=False) -> out of x's shape\n\nExact (erf) GELU, element-wise; float32, or uint16\n"
     "bf16 bits with bf16_out."},
    {"gelu_backward", py_gelu_backward, METH_VARARGS,
     "gelu_backward(x, dout, dx, overwrite=False) -> None\n\nx, dout, dx of one shape: dx += dout * gelu'(x);\n"
     "overwrite: dx = (dx may be dout itself)."},
    {"gelu_backward16", py_gelu_backward16, METH_VARARGS,
     "gelu_backward16(x, dout, dbias) -> dx (rows, H) uint16\n\nx, dout (rows, H), dbias (H,) float32: dx = dout *\n"
     "gelu'(x) as bf16 bits, dbias += the fp32 column sums (a bf16 model's fc1 backward input and bias)."},
    {"attention_forward", py_attention_forward, METH_VARARGS,
     "attention_forward(qkv, num_heads, dtype, bf16_out=False) -> (out (B, T, C), att (B, NH, T, T))\n\n"
     "qkv (B, T, 3C) laid out [q|k|v]: multi-head softmax attention; att holds the probabilities, float32,\n"
     "or uint16 bf16 bits for dtype 'bf16' where the products run in bf16 (attention_bf16_products()).\n"
     "bf16_out: out is uint16 bf16 bits."},
    {"attention_backward", py_attention_backward, METH_VARARGS,
     "attention_backward(dout, qkv, att, dqkv, dtype, overwrite=False) -> None\n\n"
     "dout (B, T, C), qkv (B, T, 3C), att (B, NH, T, T) -> dqkv (B, T, 3C) +=; overwrite=True: =."},
    {NULL, NULL, 0, NULL},
};
