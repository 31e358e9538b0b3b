/* bind_heads.c: csrc/heads for Python: the downstream heads' ops on per-patch logits
 * (B, N, p*p*X), N = G*G: soft-argmax, L1 on points, pixel cross-entropy and softmax,
 * bilinear upsampling in the per-patch layout. */
#include "python/args.h"
#include "heads/heads.h"

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
        PyErr_Format(PyExc_ValueError, "%s must have shape (B, G*G, p*p*X) with p = %ld, got %s", name, p,
                     shape_str(z));
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
    PF_NOGIL(pf_softargmax_forward(PyArray_DATA(xy), PyArray_DATA(lse), PyArray_DATA(z), B, G, p, L));
    return Py_BuildValue("(NN)", xy, lse);
}

/* softargmax_backward(dcoords (B, L, 2), logits, lse (B, L), coords (B, L, 2), p, dlogits) -> None */
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
    PF_NOGIL(pf_softargmax_backward(PyArray_DATA(dz), PyArray_DATA(dxy), PyArray_DATA(z), PyArray_DATA(lse),
                                    PyArray_DATA(xy), B, G, p, L));
    Py_RETURN_NONE;
}

/* Point arrays of an L1 call: pred, target (B, L, 2), weight (B, L) | None; 0 on error. */
static int l1_args(PyObject *p_obj, PyObject *t_obj, PyObject *w_obj, PyArrayObject **pred,
                   PyArrayObject **target, PyArrayObject **weight) {
    *pred = F32(p_obj, "pred", 3, SHP(-1, -1, 2), 0);
    *target = *pred ? F32(t_obj, "target", 3, PyArray_DIMS(*pred), 0) : NULL;
    if (!*target || !opt_f32(w_obj, "weight", 2, SHP(PyArray_DIM(*pred, 0), PyArray_DIM(*pred, 1)), weight)) return 0;
    return check_finite(*pred, "pred") && check_finite(*target, "target")
           && (!*weight || check_finite(*weight, "weight"));
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
    double loss;
    PF_NOGIL(loss = pf_l1_points_forward(PyArray_DATA(pr), PyArray_DATA(t), data_or_null(w), PyArray_DIM(pr, 0),
                                         PyArray_DIM(pr, 1), scale));
    return PyFloat_FromDouble(loss);
}

/* l1_points_backward(pred, target, weight | None, scale, dloss, dpred (B, L, 2)) -> None: dpred += */
static PyObject *py_l1_points_backward(PyObject *self, PyObject *args) {
    PyObject *p_obj, *t_obj, *w_obj, *d_obj;
    float scale, dloss;
    PyArrayObject *pr, *t, *w, *d;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOffO:l1_points_backward", &p_obj, &t_obj, &w_obj, &scale, &dloss, &d_obj) ||
        !l1_args(p_obj, t_obj, w_obj, &pr, &t, &w) || !(d = F32(d_obj, "dpred", 3, PyArray_DIMS(pr), 1)))
        return NULL;
    PF_NOGIL(pf_l1_points_backward(PyArray_DATA(d), PyArray_DATA(pr), PyArray_DATA(t), data_or_null(w),
                                   PyArray_DIM(pr, 0), PyArray_DIM(pr, 1), scale, dloss));
    Py_RETURN_NONE;
}

/* Logits (B, N, p*p*K) and labels (B, S, S) int64 of a pixel cross-entropy call; returns K (0 on error). */
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
    PF_NOGIL(st = pf_pixel_ce_forward(&loss, &count, PyArray_DATA(z), PyArray_DATA(y), PyArray_DIM(z, 0), G, p, K,
                                      ignore));
    if (st != PF_OK) return raise_status(st);
    return Py_BuildValue("(dL)", loss, (long long)count);
}

/* pixel_ce_backward(logits, labels, p, ignore, dloss, dlogits (B, N, p*p*K)) -> None: dlogits += */
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
    PF_NOGIL(pf_pixel_ce_backward(PyArray_DATA(d), PyArray_DATA(z), PyArray_DATA(y), PyArray_DIM(z, 0), G, p, K,
                                  ignore, dloss));
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
    PF_NOGIL(pf_pixel_softmax(PyArray_DATA(out), PyArray_DATA(z), B, G, p, K));
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
    PF_NOGIL(pf_upsample_patches_forward(PyArray_DATA(out), PyArray_DATA(x), B, G, q, u, K));
    return (PyObject *)out;
}

/* upsample_patches_backward(dout (B, N, (q*u)^2*K), q, u, dx (B, N, q*q*K)) -> None: dx += */
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
    PF_NOGIL(pf_upsample_patches_backward(PyArray_DATA(dx), PyArray_DATA(d), B, G, q, u, K));
    Py_RETURN_NONE;
}

PyMethodDef pf_heads_methods[] = {
    {"softargmax_forward", py_softargmax_forward, METH_VARARGS,
     "softargmax_forward(logits, p) -> (coords (B, L, 2), lse (B, L))\n\n"
     "logits (B, G*G, p*p*L) float32: each landmark's soft-argmax (x, y) in pixels over its S*S heatmap;\n"
     "lse is the log-sum-exp kept for the backward."},
    {"softargmax_backward", py_softargmax_backward, METH_VARARGS,
     "softargmax_backward(dcoords, logits, lse, coords, p, dlogits) -> None\n\n"
     "dcoords (B, L, 2) -> dlogits (B, G*G, p*p*L) +=."},
    {"l1_points_forward", py_l1_points_forward, METH_VARARGS,
     "l1_points_forward(pred, target, weight, scale) -> float\n\n"
     "pred, target (B, L, 2), weight (B, L) | None: sum w (|dx| + |dy|) / (2 scale sum w); 0 without weight."},
    {"l1_points_backward", py_l1_points_backward, METH_VARARGS,
     "l1_points_backward(pred, target, weight, scale, dloss, dpred) -> None\n\n"
     "dpred (B, L, 2) += dloss * w sign(pred - target) / (2 scale sum w)."},
    {"pixel_ce_forward", py_pixel_ce_forward, METH_VARARGS,
     "pixel_ce_forward(logits, labels, p, ignore) -> (loss, count)\n\n"
     "logits (B, G*G, p*p*K), labels (B, S, S) int64 in [0, K) or ignore: the mean cross-entropy over the\n"
     "count labelled pixels."},
    {"pixel_ce_backward", py_pixel_ce_backward, METH_VARARGS,
     "pixel_ce_backward(logits, labels, p, ignore, dloss, dlogits) -> None\n\n"
     "dlogits (B, G*G, p*p*K) += dloss (softmax - onehot) / count on labelled pixels."},
    {"pixel_softmax", py_pixel_softmax, METH_VARARGS,
     "pixel_softmax(logits, p) -> probs (B, K, S, S) float32\n\n"
     "logits (B, G*G, p*p*K): the per-pixel softmax over K classes, un-patchified."},
    {"upsample_patches", py_upsample_patches, METH_VARARGS,
     "upsample_patches(x, q, u) -> (B, G*G, (q*u)^2*K) float32\n\n"
     "x (B, G*G, q*q*K): bilinear u-times upsampling (half-pixel centres, edge clamp), per-patch layout."},
    {"upsample_patches_backward", py_upsample_patches_backward, METH_VARARGS,
     "upsample_patches_backward(dout, q, u, dx) -> None\n\n"
     "dout (B, G*G, (q*u)^2*K) -> dx (B, G*G, q*q*K) += the adjoint of upsample_patches."},
    {NULL, NULL, 0, NULL},
};
