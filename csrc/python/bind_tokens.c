/* bind_tokens.c: csrc/layers' data-shaping layers and losses for Python: patches (im2col,
 * patchify), token assembly and the mask-token unshuffle, and the losses, each checked by the
 * tests against its NumPy twin. Backward bindings accumulate into the given gradient arrays. */
#include <stdlib.h>
#include <string.h>
#include "python/args.h"
#include "layers/layers.h"

/* ids (B, n) int64 in [0, N), or None (*out = NULL); 0 with an exception otherwise. */
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

/* mask (B, N) from ids_keep (B, n): 1 = removed; also checks ids are distinct. free() it. */
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

/* ---------------------------------------------------------------- patches */

/* images (B, 3, S, S) float32 with p dividing S; NULL with an exception otherwise. */
static PyArrayObject *check_square_images(PyObject *obj, long p, int writeable) {
    PyArrayObject *im = F32(obj, "images", 4, SHP(-1, 3, -1, -1), writeable);
    if (!im || !check_patch(PyArray_DIM(im, 2), p)) return NULL;
    if (PyArray_DIM(im, 3) != PyArray_DIM(im, 2)) {
        PyErr_Format(PyExc_ValueError, "images must be square");
        return NULL;
    }
    return im;
}

/* im2col(images (B, 3, S, S), ids (B, n) | None, p) -> cols (B, n, 3*p*p) in (c, kh, kw) */
static PyObject *py_im2col(PyObject *self, PyObject *args) {
    PyObject *im_obj, *ids_obj;
    long p;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOl", &im_obj, &ids_obj, &p)) return NULL;
    PyArrayObject *im = check_square_images(im_obj, p, 0), *ids;
    if (!im) return NULL;
    const npy_intp B = PyArray_DIM(im, 0), S = PyArray_DIM(im, 2), G = S / p;
    if (!opt_ids(ids_obj, B, G * G, &ids)) return NULL;
    const npy_intp n = ids ? PyArray_DIM(ids, 1) : G * G;
    PyArrayObject *cols = new_f32(3, SHP(B, n, 3 * p * p), 0);
    const int64_t *pids = ids ? PyArray_DATA(ids) : NULL;
    if (cols) PF_NOGIL(pf_im2col(PyArray_DATA(cols), PyArray_DATA(im), pids, B, n, S, p));
    return (PyObject *)cols;
}

/* patchify(images (B, 3, S, S), p) -> (B, G*G, p*p*3) in (p, q, c) */
static PyObject *py_patchify(PyObject *self, PyObject *args) {
    PyObject *im_obj;
    long p;
    (void)self;
    if (!PyArg_ParseTuple(args, "Ol", &im_obj, &p)) return NULL;
    PyArrayObject *im = check_square_images(im_obj, p, 0);
    if (!im) return NULL;
    const npy_intp B = PyArray_DIM(im, 0), S = PyArray_DIM(im, 2), G = S / p;
    PyArrayObject *out = new_f32(3, SHP(B, G * G, p * p * 3), 0);
    if (out) PF_NOGIL(pf_patchify(PyArray_DATA(out), PyArray_DATA(im), B, S, p));
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
    if (out) PF_NOGIL(pf_unpatchify(PyArray_DATA(out), PyArray_DATA(x), B, G * p, p));
    return (PyObject *)out;
}

/* ---------------------------------------------------------------- tokens */

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
        return PyErr_Format(PyExc_ValueError,
                            "ids must have shape (B, n) matching emb, and pos 1+n rows when ids is None");
    PyArrayObject *x = new_f32(3, SHP(B, n + 1, C), 0);
    const int64_t *pids = ids ? PyArray_DATA(ids) : NULL;
    if (x) PF_NOGIL(pf_tokens_forward(PyArray_DATA(x), PyArray_DATA(e), PyArray_DATA(cls), PyArray_DATA(pos), pids,
                                      B, n, C));
    return (PyObject *)x;
}

/* tokens_backward(dx (B, 1+n, C), ids | None, demb (B, n, C), dcls (C), dpos (1+N, C) | None) -> None */
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
    const int64_t *pids = ids ? PyArray_DATA(ids) : NULL;
    PF_NOGIL(pf_tokens_backward(PyArray_DATA(de), PyArray_DATA(dc), data_or_null(dpos), PyArray_DATA(d), pids, B, n,
                                C));
    Py_RETURN_NONE;
}

/* ids_keep (B, n) of an unshuffle call, required; NULL with an exception otherwise. */
static PyArrayObject *keep_ids(PyObject *obj, npy_intp B, npy_intp N) {
    PyArrayObject *ids;
    if (!opt_ids(obj, B, N, &ids)) return NULL;
    if (!ids) PyErr_Format(PyExc_TypeError, "ids_keep is required");
    return ids;
}

/* unshuffle_forward(x (B, 1+n, C), mask_token (C), pos (1+N, C), ids_keep (B, n)) -> (B, 1+N, C) */
static PyObject *py_unshuffle_forward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *t_obj, *p_obj, *ids_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &x_obj, &t_obj, &p_obj, &ids_obj)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", 3, NULL, 0), *ids;
    if (!x) return NULL;
    const npy_intp B = PyArray_DIM(x, 0), n = PyArray_DIM(x, 1) - 1, C = PyArray_DIM(x, 2);
    PyArrayObject *tok = F32(t_obj, "mask_token", 1, SHP(C), 0);
    PyArrayObject *pos = tok ? F32(p_obj, "pos", 2, SHP(-1, C), 0) : NULL;
    if (!pos) return NULL;
    const npy_intp N = PyArray_DIM(pos, 0) - 1;
    if (!(ids = keep_ids(ids_obj, B, N))) return NULL;
    if (PyArray_DIM(ids, 1) != n) return PyErr_Format(PyExc_ValueError, "ids_keep must have shape (B, n)");
    uint8_t *mask = mask_from_ids(ids, N);
    if (!mask) return NULL;
    PyArrayObject *full = new_f32(3, SHP(B, N + 1, C), 0);
    if (full) PF_NOGIL(pf_unshuffle_forward(PyArray_DATA(full), PyArray_DATA(x), PyArray_DATA(tok), PyArray_DATA(pos),
                                            PyArray_DATA(ids), mask, B, n, N, C));
    free(mask);
    return (PyObject *)full;
}

/* unshuffle_backward(dfull (B, 1+N, C), ids_keep (B, n), dx (B, 1+n, C), dmask_token (C),
 * dpos (1+N, C) | None) -> None */
static PyObject *py_unshuffle_backward(PyObject *self, PyObject *args) {
    PyObject *d_obj, *ids_obj, *dx_obj, *dt_obj, *dp_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOO", &d_obj, &ids_obj, &dx_obj, &dt_obj, &dp_obj)) return NULL;
    PyArrayObject *d = F32(d_obj, "dfull", 3, NULL, 0), *ids, *dpos;
    if (!d) return NULL;
    const npy_intp B = PyArray_DIM(d, 0), N = PyArray_DIM(d, 1) - 1, C = PyArray_DIM(d, 2);
    if (!(ids = keep_ids(ids_obj, B, N))) return NULL;
    const npy_intp n = PyArray_DIM(ids, 1);
    PyArrayObject *dx = F32(dx_obj, "dx", 3, SHP(B, n + 1, C), 1);
    PyArrayObject *dt = dx ? F32(dt_obj, "dmask_token", 1, SHP(C), 1) : NULL;
    if (!dt || !opt_f32(dp_obj, "dpos", 2, SHP(N + 1, C), &dpos)) return NULL;
    uint8_t *mask = mask_from_ids(ids, N);
    if (!mask) return NULL;
    PF_NOGIL(pf_unshuffle_backward(PyArray_DATA(dx), PyArray_DATA(dt), data_or_null(dpos), PyArray_DATA(d),
                                   PyArray_DATA(ids), mask, B, n, N, C));
    free(mask);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- losses */

/* norm_pix_target(target (rows, d), d >= 2) -> a copy with each row normalised (MAE's norm_pix_loss) */
static PyObject *py_norm_pix_target(PyObject *self, PyObject *x_obj) {
    (void)self;
    PyArrayObject *x = F32(x_obj, "target", 2, NULL, 0);
    if (!x) return NULL;
    if (PyArray_DIM(x, 1) < 2) return PyErr_Format(PyExc_ValueError, "target rows need at least 2 values");
    PyArrayObject *out = (PyArrayObject *)PyArray_NewCopy(x, NPY_CORDER);
    if (out) PF_NOGIL(pf_norm_pix_target(PyArray_DATA(out), PyArray_DIM(x, 0), PyArray_DIM(x, 1)));
    return (PyObject *)out;
}

/* The arrays of a MAE loss call: pred (B, row0 + N, d), target (B, N, d), mask (B, N) uint8. */
static int mae_args(PyObject *p_obj, PyObject *t_obj, PyObject *m_obj, long row0, PyArrayObject **pred,
                    PyArrayObject **target, PyArrayObject **mask) {
    *target = F32(t_obj, "target", 3, NULL, 0);
    if (!*target) return 0;
    const npy_intp B = PyArray_DIM(*target, 0), N = PyArray_DIM(*target, 1), d = PyArray_DIM(*target, 2);
    *pred = F32(p_obj, "pred", 3, SHP(B, N + row0, d), 0);
    *mask = *pred ? check_arr(m_obj, "mask", NPY_UINT8, 2, SHP(B, N), 0, "") : NULL;
    return *mask != NULL;
}

/* mae_loss_forward(pred (B, row0 + N, d), target (B, N, d), mask (B, N) uint8, row0) -> float */
static PyObject *py_mae_loss_forward(PyObject *self, PyObject *args) {
    PyObject *p_obj, *t_obj, *m_obj;
    long row0;
    PyArrayObject *pred, *target, *mask;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOl", &p_obj, &t_obj, &m_obj, &row0)
        || !mae_args(p_obj, t_obj, m_obj, row0, &pred, &target, &mask))
        return NULL;
    const npy_intp B = PyArray_DIM(target, 0), N = PyArray_DIM(target, 1), d = PyArray_DIM(target, 2);
    double loss;
    PF_NOGIL(loss = pf_mae_loss_forward(PyArray_DATA(pred), PyArray_DATA(target), PyArray_DATA(mask), B, N, d, row0));
    return PyFloat_FromDouble(loss);
}

/* mae_loss_backward(pred, target, mask, row0, dloss, dpred (B, row0 + N, d)) -> None: dpred += */
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
    const npy_intp B = PyArray_DIM(target, 0), N = PyArray_DIM(target, 1), d = PyArray_DIM(target, 2);
    PF_NOGIL(pf_mae_loss_backward(PyArray_DATA(dpred), PyArray_DATA(pred), PyArray_DATA(target), PyArray_DATA(mask),
                                  B, N, d, row0, dloss));
    Py_RETURN_NONE;
}

/* targets (rows) int64 in [0, K) of a cross-entropy call; 0 with an exception otherwise. */
static int ce_targets(PyObject *obj, npy_intp rows, npy_intp K, PyArrayObject **out) {
    *out = I64(obj, "targets", 1, SHP(rows));
    if (!*out) return 0;
    const int64_t *t = PyArray_DATA(*out);
    for (npy_intp i = 0; i < rows; i++)
        if (t[i] < 0 || t[i] >= K) {
            PyErr_Format(PyExc_ValueError, "targets[%zd] = %lld is outside [0, %zd)", (Py_ssize_t)i,
                         (long long)t[i], (Py_ssize_t)K);
            return 0;
        }
    return 1;
}

/* cross_entropy_forward(logits (rows, K), targets (rows) int64) -> (loss, probs (rows, K)) */
static PyObject *py_cross_entropy_forward(PyObject *self, PyObject *args) {
    PyObject *l_obj, *t_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &l_obj, &t_obj)) return NULL;
    PyArrayObject *l = F32(l_obj, "logits", 2, NULL, 0), *t;
    if (!l || !ce_targets(t_obj, PyArray_DIM(l, 0), PyArray_DIM(l, 1), &t)) return NULL;
    PyArrayObject *probs = new_f32(2, PyArray_DIMS(l), 0);
    if (!probs) return NULL;
    double loss;
    PF_NOGIL(loss = pf_cross_entropy_forward(PyArray_DATA(probs), PyArray_DATA(l), PyArray_DATA(t), PyArray_DIM(l, 0),
                                             PyArray_DIM(l, 1)));
    return Py_BuildValue("(dN)", loss, probs);
}

/* cross_entropy_backward(probs (rows, K), targets (rows), dloss, dlogits (rows, K)) -> None: dlogits += */
static PyObject *py_cross_entropy_backward(PyObject *self, PyObject *args) {
    PyObject *p_obj, *t_obj, *d_obj;
    float dloss;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOfO", &p_obj, &t_obj, &dloss, &d_obj)) return NULL;
    PyArrayObject *p = F32(p_obj, "probs", 2, NULL, 0), *t;
    if (!p || !ce_targets(t_obj, PyArray_DIM(p, 0), PyArray_DIM(p, 1), &t)) return NULL;
    PyArrayObject *d = F32(d_obj, "dlogits", 2, PyArray_DIMS(p), 1);
    if (!d) return NULL;
    PF_NOGIL(pf_cross_entropy_backward(PyArray_DATA(d), PyArray_DATA(p), PyArray_DATA(t), PyArray_DIM(p, 0),
                                       PyArray_DIM(p, 1), dloss));
    Py_RETURN_NONE;
}

/* mse_forward(x, target of x's shape) -> float */
static PyObject *py_mse_forward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *t_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &x_obj, &t_obj)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", -1, NULL, 0);
    PyArrayObject *t = x ? F32(t_obj, "target", PyArray_NDIM(x), PyArray_DIMS(x), 0) : NULL;
    if (!t) return NULL;
    double loss;
    PF_NOGIL(loss = pf_mse_forward(PyArray_DATA(x), PyArray_DATA(t), PyArray_SIZE(x)));
    return PyFloat_FromDouble(loss);
}

/* mse_backward(x, target, dloss, dx, all one shape) -> None: dx += */
static PyObject *py_mse_backward(PyObject *self, PyObject *args) {
    PyObject *x_obj, *t_obj, *d_obj;
    float dloss;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOfO", &x_obj, &t_obj, &dloss, &d_obj)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", -1, NULL, 0);
    PyArrayObject *t = x ? F32(t_obj, "target", PyArray_NDIM(x), PyArray_DIMS(x), 0) : NULL;
    PyArrayObject *d = t ? F32(d_obj, "dx", PyArray_NDIM(x), PyArray_DIMS(x), 1) : NULL;
    if (!d) return NULL;
    PF_NOGIL(pf_mse_backward(PyArray_DATA(d), PyArray_DATA(x), PyArray_DATA(t), PyArray_SIZE(x), dloss));
    Py_RETURN_NONE;
}

PyMethodDef pf_tokens_methods[] = {
    {"im2col", py_im2col, METH_VARARGS,
     "im2col(images, ids, p) -> cols (B, n, 3*p*p) float32\n\n"
     "images (B, 3, S, S), ids (B, n) int64 grid indices | None (every patch, n = G*G): the patches'\n"
     "pixels in the patch-embedding conv's (c, kh, kw) order."},
    {"patchify", py_patchify, METH_VARARGS,
     "patchify(images, p) -> (B, G*G, p*p*3) float32\n\nimages (B, 3, S, S): every patch in MAE's (p, q, c) order."},
    {"unpatchify", py_unpatchify, METH_VARARGS,
     "unpatchify(patches, p) -> images (B, 3, S, S) float32\n\npatches (B, G*G, p*p*3) in (p, q, c) order."},
    {"tokens_forward", py_tokens_forward, METH_VARARGS,
     "tokens_forward(emb, cls, pos, ids) -> x (B, 1+n, C) float32\n\n"
     "emb (B, n, C), cls (C,), pos (1+N, C), ids (B, n) | None: [cls + pos[0], emb + pos[1 + ids]]."},
    {"tokens_backward", py_tokens_backward, METH_VARARGS,
     "tokens_backward(dx, ids, demb, dcls, dpos) -> None\n\n"
     "dx (B, 1+n, C) -> demb (B, n, C), dcls (C,), dpos (1+N, C) | None +=."},
    {"unshuffle_forward", py_unshuffle_forward, METH_VARARGS,
     "unshuffle_forward(x, mask_token, pos, ids_keep) -> (B, 1+N, C) float32\n\n"
     "x (B, 1+n, C), mask_token (C,), pos (1+N, C), ids_keep (B, n): kept tokens at their grid places,\n"
     "mask_token elsewhere, + pos (MAE's gather with ids_restore)."},
    {"unshuffle_backward", py_unshuffle_backward, METH_VARARGS,
     "unshuffle_backward(dfull, ids_keep, dx, dmask_token, dpos) -> None\n\n"
     "dfull (B, 1+N, C) -> dx (B, 1+n, C), dmask_token (C,), dpos (1+N, C) | None +=."},
    {"norm_pix_target", py_norm_pix_target, METH_O,
     "norm_pix_target(target) -> (rows, d) float32\n\n"
     "target (rows, d): a copy with each row (x - mean) / sqrt(unbiased var + 1e-6) (MAE's norm_pix_loss)."},
    {"mae_loss_forward", py_mae_loss_forward, METH_VARARGS,
     "mae_loss_forward(pred, target, mask, row0) -> float\n\n"
     "pred (B, row0 + N, d), target (B, N, d), mask (B, N) uint8 (1 = removed): mean squared error over\n"
     "the removed patches."},
    {"mae_loss_backward", py_mae_loss_backward, METH_VARARGS,
     "mae_loss_backward(pred, target, mask, row0, dloss, dpred) -> None\n\ndpred (B, row0 + N, d) +=."},
    {"cross_entropy_forward", py_cross_entropy_forward, METH_VARARGS,
     "cross_entropy_forward(logits, targets) -> (loss, probs (rows, K))\n\n"
     "logits (rows, K), targets (rows,) int64 in [0, K): the mean cross-entropy and the softmax."},
    {"cross_entropy_backward", py_cross_entropy_backward, METH_VARARGS,
     "cross_entropy_backward(probs, targets, dloss, dlogits) -> None\n\n"
     "dlogits (rows, K) += dloss (probs - onehot) / rows."},
    {"mse_forward", py_mse_forward, METH_VARARGS,
     "mse_forward(x, target) -> float\n\nx, target of one shape: the mean squared difference."},
    {"mse_backward", py_mse_backward, METH_VARARGS,
     "mse_backward(x, target, dloss, dx) -> None\n\ndx (x's shape) += dloss * 2 (x - target) / x.size."},
    {NULL, NULL, 0, NULL},
};
