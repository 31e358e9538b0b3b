/* bind_image.c: csrc/image for Python: batched affine warps, colour jitter, sensor noise,
 * Gaussian blur, uint8 -> normalised float32, and SynthFace's painter. */
#include "python/args.h"
#include "image/normalize.h"
#include "image/photometric.h"
#include "image/raster.h"
#include "image/warp.h"

/* warp(images (B, H, W, C) uint8, matrix (B, 2, 3) float64 dst->src, out_h, out_w, nearest, fill)
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
    PF_NOGIL(pf_warp_u8(po, B, oh, ow, ps, sh, sw, C, pm, nearest, (uint8_t)fill));
    return (PyObject *)out;
}

/* color_jitter(images (B, H, W, 3) uint8, params (B, 4) float32) -> None: in place */
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
    PF_NOGIL(pf_color_jitter_u8(pi, B, H, W, pp));
    Py_RETURN_NONE;
}

/* add_noise(images (B, ...) uint8, sigmas (B,) float32, keys (B,) int64) -> None: in place */
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
    PF_NOGIL(pf_add_noise_u8(pi, B, n, ps, pk));
    Py_RETURN_NONE;
}

/* gaussian_blur(images (B, H, W, C) uint8, sigmas (B,) float32 in [0, 20]) -> None: in place */
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
    PF_NOGIL(st = pf_gaussian_blur_u8(pi, B, H, W, C, ps));
    return none_or_raise(st);
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
    PF_NOGIL(pf_normalize_u8(po, pi, B, H, W, pm, ps));
    return (PyObject *)out;
}

/* The raster_faces inputs past their types: offsets (B+1) rise from 0 to L, params (B, NPARAM)
 * have positive head radii and texture sizes in [0, S]. 0 with ValueError otherwise. */
static int check_raster(const int64_t *off, npy_intp B, npy_intp L, const float *params, long S) {
    for (npy_intp b = 0; b <= B; b++)
        if (off[b] < 0 || off[b] > L || (b && off[b] < off[b - 1]) || (b == 0 && off[b] != 0)) {
            PyErr_Format(PyExc_ValueError, "offsets must rise from 0 to len(layers)");
            return 0;
        }
    for (npy_intp b = 0; b < B; b++) {
        const float *q = params + PF_RASTER_NPARAM * b;
        if (!(q[2] > 0 && q[3] > 0)) {
            PyErr_Format(PyExc_ValueError, "params[%zd]: head radii must be positive", (Py_ssize_t)b);
            return 0;
        }
        if (q[10] < 0 || q[13] < 0 || q[14] < 0 || q[10] > S || q[13] > S) {
            PyErr_Format(PyExc_ValueError, "params[%zd]: texture cells and stripe period must be in [0, size]",
                         (Py_ssize_t)b);
            return 0;
        }
    }
    return 1;
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
    const float *pp = PyArray_DATA(params);
    if (!check_raster(po, B, PyArray_DIM(layers, 0), pp, S)) return NULL;
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
    PF_NOGIL(st = pf_raster_faces(pi, pl, B, S, pla, po, pp, pb, pk));
    if (st != PF_OK) {
        Py_DECREF(img), Py_DECREF(lab);
        return raise_status(st);
    }
    return Py_BuildValue("(NN)", img, lab);
}

PyMethodDef pf_image_methods[] = {
    {"warp", py_warp, METH_VARARGS,
     "warp(images, matrix, out_h, out_w, nearest, fill) -> (B, out_h, out_w, C) uint8\n\n"
     "images (B, H, W, C) uint8, matrix (B, 2, 3) float64 mapping output to source pixels: bilinear\n"
     "(or nearest) affine warps, fill outside the source."},
    {"color_jitter", py_color_jitter, METH_VARARGS,
     "color_jitter(images, params) -> None\n\n"
     "images (B, H, W, 3) uint8 in place; params (B, 4) float32: brightness, contrast, saturation, grayscale."},
    {"add_noise", py_add_noise, METH_VARARGS,
     "add_noise(images, sigmas, keys) -> None\n\n"
     "images (B, ...) uint8 in place += Gaussian noise of sigmas (B,) float32, counter-based in keys (B,) int64."},
    {"gaussian_blur", py_gaussian_blur, METH_VARARGS,
     "gaussian_blur(images, sigmas) -> None\n\n"
     "images (B, H, W, C) uint8 in place; sigmas (B,) float32 in [0, 20] (0: unchanged)."},
    {"normalize", py_normalize, METH_VARARGS,
     "normalize(images, mean, std) -> (B, 3, H, W) float32\n\n"
     "images (B, H, W, 3) uint8 -> (x / 255 - mean) / std per channel; mean, std (3,) float32."},
    {"raster_faces", py_raster_faces, METH_VARARGS,
     "raster_faces(layers, offsets, params, background, keys, size) -> (images (B, S, S, 3) uint8,\n"
     "labels (B, S, S) uint8)\n\n"
     "SynthFace's painter: image b's layer records are layers[offsets[b]:offsets[b+1]] (float32),\n"
     "params (B, 16) float32, background (B, 6) float32, keys (B,) int64 seed the textures; S = size."},
    {NULL, NULL, 0, NULL},
};
