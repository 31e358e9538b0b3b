/* bind_paco.c: csrc/paco for Python: masks, patch statistics and substitution, the codebook,
 * the spatial consistency loss and the EMA teacher update. */
#include <limits.h>
#include <math.h>
#include "python/args.h"
#include "paco/codebook.h"
#include "paco/consistency.h"
#include "paco/masking.h"
#include "paco/patches.h"

/* ---------------------------------------------------------------- masking (docs/method.md section 1) */

/* regions of mask_sample: int64 (N,) shared by the batch, or (B, N); NULL with an exception. */
static PyArrayObject *mask_regions(PyObject *obj, npy_intp B, npy_intp N) {
    PyArrayObject *reg = I64(obj, "regions", -1, NULL);
    if (!reg) return NULL;
    const int nd = PyArray_NDIM(reg);
    if (!((nd == 1 && PyArray_DIM(reg, 0) == N) ||
          (nd == 2 && PyArray_DIM(reg, 0) == B && PyArray_DIM(reg, 1) == N))) {
        PyErr_Format(PyExc_ValueError, "regions must have shape (%lld,) or (%lld, %lld), got %s", (long long)N,
                     (long long)B, (long long)N, shape_str(reg));
        return NULL;
    }
    return reg;
}

/* A kind argument: a name of the kind table (ValueError naming the kinds when it is none) or an
 * int id, passed on as is for pf_mask_sample to check (-1 when it does not fit an int).
 * Returns 0 with *kind set, or -1 with an exception. */
static int mask_kind_arg(PyObject *obj, int *kind) {
    if (PyUnicode_Check(obj)) {
        const char *name = PyUnicode_AsUTF8(obj);
        if (!name) return -1;
        if ((*kind = pf_get_mask_kind(name)) >= 0) return 0;
        char known[256] = "";
        for (int k = 0, n = 0; k < PF_MASK_NUM_KINDS && n < (int)sizeof known; k++) {
            const char *s = pf_get_mask_kind_name(k);
            n += snprintf(known + n, sizeof known - (size_t)n, "%s'%s'", k ? ", " : "", s ? s : "?");
        }
        PyErr_Format(PyExc_ValueError, "kind must be one of %s, got %R", known, obj);
        return -1;
    }
    if (!PyLong_Check(obj) || PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "kind must be a kind name (str) or id (int), got %s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow = 0;
    const long long id = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (id == -1 && PyErr_Occurred()) return -1;
    *kind = overflow || id < INT_MIN || id > INT_MAX ? -1 : (int)id;
    return 0;
}

/* mask_sample(kind, indices (B,) int64, grid, n_mask, seed, step[, regions (N,) | (B, N) int64 | None[, n_region]])
 *   -> (mask (B, N) uint8, ids_keep (B, N - n_mask) int64, ids_restore (B, N) int64).
 * seed and step are taken modulo 2^64; whether the kind needs regions, pf_mask_sample decides. */
static PyObject *py_mask_sample(PyObject *self, PyObject *args) {
    PyObject *k_obj, *i_obj, *r_obj = Py_None;
    long long grid, n_mask, n_region = 0;
    unsigned long long seed, step;
    int kind;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOLLKK|OL:mask_sample", &k_obj, &i_obj, &grid, &n_mask, &seed, &step, &r_obj,
                          &n_region) || mask_kind_arg(k_obj, &kind) < 0)
        return NULL;
    PyArrayObject *idx = I64(i_obj, "indices", 1, NULL);
    if (!idx) return NULL;
    if (grid < 1 || grid > PF_MASK_MAX_GRID)
        return PyErr_Format(PyExc_ValueError, "grid must be in [1, %d], got %lld", PF_MASK_MAX_GRID, grid);
    const npy_intp B = PyArray_DIM(idx, 0), N = (npy_intp)(grid * grid);
    if (n_mask < 0 || n_mask > N)
        return PyErr_Format(PyExc_ValueError, "n_mask must be in [0, N = %lld], got %lld", (long long)N, n_mask);
    PyArrayObject *reg = NULL;
    if (r_obj != Py_None && !(reg = mask_regions(r_obj, B, N))) return NULL;
    PyArrayObject *mask = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(B, N), NPY_UINT8, 0);
    PyArrayObject *keep = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(B, N - n_mask), NPY_INT64, 0);
    PyArrayObject *restore = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(B, N), NPY_INT64, 0);
    if (!mask || !keep || !restore) {
        Py_XDECREF(mask), Py_XDECREF(keep), Py_XDECREF(restore);
        return NULL;
    }
    const pf_mask_request req = {B, grid, n_mask, n_region, seed, step, PyArray_DATA(idx),
                                 reg ? PyArray_DATA(reg) : NULL, reg && PyArray_NDIM(reg) == 2};
    uint8_t *pm = PyArray_DATA(mask);
    int64_t *pk = PyArray_DATA(keep), *pr = PyArray_DATA(restore);
    pf_status st;
    PF_NOGIL(st = pf_mask_sample(kind, &req, pm, pk, pr));
    if (st != PF_OK) {
        Py_DECREF(mask), Py_DECREF(keep), Py_DECREF(restore);
        return raise_status(st);
    }
    return Py_BuildValue("(NNN)", mask, keep, restore);
}

/* mask_kinds() -> tuple of str: the kind names of pf_mask_kind, in enum order (id = position). */
static PyObject *py_mask_kinds(PyObject *self, PyObject *unused) {
    (void)self, (void)unused;
    PyObject *names = PyTuple_New(PF_MASK_NUM_KINDS);
    for (int k = 0; names && k < PF_MASK_NUM_KINDS; k++) {
        const char *s = pf_get_mask_kind_name(k);
        PyObject *name = s ? PyUnicode_FromString(s) : PyErr_Format(PyExc_SystemError, "mask kind %d has no name", k);
        if (!name) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, k, name);
    }
    return names;
}

/* subst_positions(seed, step, indices (B,) int64, n_keep, s) -> (B, s) int64: s distinct places in
 * [0, n_keep) per row, ascending; seed and step are taken modulo 2^64. */
static PyObject *py_subst_positions(PyObject *self, PyObject *args) {
    PyObject *i_obj;
    unsigned long long seed, step;
    long long n_keep, s;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKOLL:subst_positions", &seed, &step, &i_obj, &n_keep, &s)) return NULL;
    PyArrayObject *idx = I64(i_obj, "indices", 1, NULL);
    if (!idx) return NULL;
    if (n_keep < 0 || n_keep > PF_SUBST_MAX_KEEP)
        return PyErr_Format(PyExc_ValueError, "n_keep must be in [0, %lld], got %lld", (long long)PF_SUBST_MAX_KEEP,
                            n_keep);
    if (s < 0 || s > n_keep)
        return PyErr_Format(PyExc_ValueError, "s must be in [0, n_keep = %lld], got %lld", n_keep, s);
    const npy_intp B = PyArray_DIM(idx, 0);
    PyArrayObject *out = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(B, s), NPY_INT64, 0);
    if (!out) return NULL;
    const int64_t *pi = PyArray_DATA(idx);
    int64_t *po = PyArray_DATA(out);
    pf_status st;
    PF_NOGIL(st = pf_subst_positions(seed, step, pi, B, n_keep, s, po));
    if (st != PF_OK) {
        Py_DECREF(out);
        return raise_status(st);
    }
    return (PyObject *)out;
}

/* ---------------------------------------------------------------- patch statistics and substitution */

/* patch_stats(x (rows, d)) -> (xn (rows, d), mu (rows), sigma (rows)): MAE's norm_pix normalisation */
static PyObject *py_patch_stats(PyObject *self, PyObject *x_obj) {
    (void)self;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0);
    if (!x || !check_finite(x, "x")) return NULL;
    const npy_intp rows = PyArray_DIM(x, 0), d = PyArray_DIM(x, 1);
    if (d < 2) return PyErr_Format(PyExc_ValueError, "x rows need at least 2 values, got %zd", (Py_ssize_t)d);
    PyArrayObject *xn = new_f32(2, SHP(rows, d), 0), *mu = new_f32(1, SHP(rows), 0), *sd = new_f32(1, SHP(rows), 0);
    if (!xn || !mu || !sd) {
        Py_XDECREF(xn), Py_XDECREF(mu), Py_XDECREF(sd);
        return NULL;
    }
    PF_NOGIL(pf_patch_stats(PyArray_DATA(xn), PyArray_DATA(mu), PyArray_DATA(sd), PyArray_DATA(x), rows, d));
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
    PF_NOGIL(pf_substitute(PyArray_DATA(im), PyArray_DATA(t), PyArray_DATA(mu), PyArray_DATA(sd), PyArray_DATA(g), B, s,
                           S, p));
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
    PF_NOGIL(pf_substitute_backward(PyArray_DATA(dt), PyArray_DATA(dc), PyArray_DATA(sd), PyArray_DATA(pos), B, s, n,
                                    p));
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

/* codebook_nearest(x (rows, d), codebook (K, d)) -> (idx (rows,) int64, dist (rows,)) */
static PyObject *py_codebook_nearest(PyObject *self, PyObject *args) {
    PyObject *x_obj, *c_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OO", &x_obj, &c_obj)) return NULL;
    PyArrayObject *x = F32(x_obj, "x", 2, NULL, 0);
    PyArrayObject *C = x && check_finite(x, "x") ? check_codebook(c_obj, PyArray_DIM(x, 1), 0) : NULL;
    if (!C) return NULL;
    const npy_intp rows = PyArray_DIM(x, 0), K = PyArray_DIM(C, 0), d = PyArray_DIM(x, 1);
    PyArrayObject *idx = (PyArrayObject *)PyArray_EMPTY(1, (npy_intp *)SHP(rows), NPY_INT64, 0);
    PyArrayObject *dist = new_f32(1, SHP(rows), 0);
    if (!idx || !dist) {
        Py_XDECREF(idx), Py_XDECREF(dist);
        return NULL;
    }
    int64_t *pi = PyArray_DATA(idx);
    float *pd = PyArray_DATA(dist);
    const float *px = PyArray_DATA(x), *pc = PyArray_DATA(C);
    pf_status st;
    PF_NOGIL(st = pf_codebook_nearest(pi, pd, px, pc, rows, K, d));
    if (st != PF_OK) {
        Py_DECREF(idx), Py_DECREF(dist);
        return raise_status(st);
    }
    return Py_BuildValue("(NN)", idx, dist);
}

/* k in [1, min(64, K)], tau positive and finite; 0 with ValueError otherwise. */
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

/* topk_mixture_forward(logits (rows, K), codebook (K, d), k, tau, hard) -> (t (rows, d), idx (rows, k), w (rows, k)) */
static PyObject *py_topk_mixture_forward(PyObject *self, PyObject *args) {
    PyObject *l_obj, *c_obj;
    long k;
    float tau;
    int hard;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOlfp", &l_obj, &c_obj, &k, &tau, &hard)) return NULL;
    PyArrayObject *l = F32(l_obj, "logits", 2, NULL, 0);
    if (!l || !check_finite(l, "logits")) return NULL;
    const npy_intp rows = PyArray_DIM(l, 0), K = PyArray_DIM(l, 1);
    PyArrayObject *C = F32(c_obj, "codebook", 2, SHP(K, -1), 0);
    if (!C || !check_finite(C, "codebook") || !check_topk(k, K, tau)) return NULL;
    const npy_intp d = PyArray_DIM(C, 1);
    PyArrayObject *t = new_f32(2, SHP(rows, d), 0), *w = new_f32(2, SHP(rows, k), 0);
    PyArrayObject *idx = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(rows, k), NPY_INT64, 0);
    if (!t || !w || !idx) {
        Py_XDECREF(t), Py_XDECREF(w), Py_XDECREF(idx);
        return NULL;
    }
    PF_NOGIL(pf_topk_mixture_forward(PyArray_DATA(t), PyArray_DATA(idx), PyArray_DATA(w), PyArray_DATA(l),
                                     PyArray_DATA(C), rows, K, d, k, tau, hard));
    return Py_BuildValue("(NNN)", t, idx, w);
}

/* topk_mixture_backward(dlogits (rows, K) | None, dcodebook (K, d) | None, dt (rows, d), idx (rows, k),
 * w (rows, k), codebook (K, d), tau): accumulate */
static PyObject *py_topk_mixture_backward(PyObject *self, PyObject *args) {
    PyObject *dl_obj, *dc_obj, *dt_obj, *i_obj, *w_obj, *c_obj;
    float tau;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOf", &dl_obj, &dc_obj, &dt_obj, &i_obj, &w_obj, &c_obj, &tau)) return NULL;
    PyArrayObject *dt = F32(dt_obj, "dt", 2, NULL, 0);
    PyArrayObject *C = dt ? check_codebook(c_obj, PyArray_DIM(dt, 1), 0) : NULL;
    PyArrayObject *idx = C ? I64(i_obj, "idx", 2, SHP(PyArray_DIM(dt, 0), -1)) : NULL;
    if (!idx) return NULL;
    const npy_intp rows = PyArray_DIM(dt, 0), d = PyArray_DIM(dt, 1), K = PyArray_DIM(C, 0), k = PyArray_DIM(idx, 1);
    PyArrayObject *w = F32(w_obj, "w", 2, SHP(rows, k), 0), *dl, *dc;
    if (!w || !check_topk(k, K, tau) || !check_index(idx, "idx", K) ||
        !opt_f32(dl_obj, "dlogits", 2, SHP(rows, K), &dl) || !opt_f32(dc_obj, "dcodebook", 2, SHP(K, d), &dc))
        return NULL;
    float *pdl = data_or_null(dl), *pdc = data_or_null(dc);
    PF_NOGIL(pf_topk_mixture_backward(pdl, pdc, PyArray_DATA(dt), PyArray_DATA(idx), PyArray_DATA(w), PyArray_DATA(C),
                                      rows, K, d, k, tau));
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

/* codebook_ema(codebook, ema_count, ema_sum, x (rows, d), assign (rows), decay, eps): in place */
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
    const npy_intp rows = PyArray_DIM(x, 0), K = PyArray_DIM(C, 0), d = PyArray_DIM(x, 1);
    PF_NOGIL(pf_codebook_ema(PyArray_DATA(C), PyArray_DATA(cnt), PyArray_DATA(sum), PyArray_DATA(x), PyArray_DATA(a),
                             rows, K, d, decay, eps));
    Py_RETURN_NONE;
}

/* codebook_reseed(codebook, ema_count, ema_sum, x (rows, d), threshold, key) -> codes re-seeded */
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
    const npy_intp rows = PyArray_DIM(x, 0), K = PyArray_DIM(C, 0), d = PyArray_DIM(x, 1);
    int64_t n;
    PF_NOGIL(n = pf_codebook_reseed(PyArray_DATA(C), PyArray_DATA(cnt), PyArray_DATA(sum), PyArray_DATA(x), rows, K, d,
                                    threshold, key));
    return PyLong_FromLongLong(n);
}

/* codebook_init(codebook (K, d), x (rows, d), kmeanspp, key): in place */
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
    const npy_intp rows = PyArray_DIM(x, 0), K = PyArray_DIM(C, 0), d = PyArray_DIM(x, 1);
    pf_status st;
    PF_NOGIL(st = pf_codebook_init(pc, px, rows, K, d, pp, key));
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
    PyArrayObject *diff = new_f32(3, SHP(B, T, T), 0), *zs = new_f32(3, SHP(B, T, C), 0);
    PyArrayObject *norms = new_f32(2, SHP(B, T), 0);
    if (!diff || !zs || !norms) {
        Py_XDECREF(diff), Py_XDECREF(zs), Py_XDECREF(norms);
        return NULL;
    }
    double loss = 0.0;
    float *pd = PyArray_DATA(diff), *pz = PyArray_DATA(zs), *pn = PyArray_DATA(norms);
    const float *ps = PyArray_DATA(ys), *pt = PyArray_DATA(yt);
    const uint8_t *pv = valid ? PyArray_DATA(valid) : NULL;
    pf_status st;
    PF_NOGIL(st = pf_affinity_loss_forward(&loss, pd, pz, pn, ps, pt, pv, B, T, C));
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
    PF_NOGIL(st = pf_affinity_loss_backward(pd, pdf, pz, pn, pv, B, T, C, dloss));
    if (st != PF_OK) return raise_status(st);
    Py_RETURN_NONE;
}

/* region_pool_forward(y (B, T, C), region (B, T), R) -> (out (B, R, C), count (B, R) int64) */
static PyObject *py_region_pool_forward(PyObject *self, PyObject *args) {
    PyObject *y_obj, *r_obj;
    long R;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOl", &y_obj, &r_obj, &R)) return NULL;
    PyArrayObject *y = F32(y_obj, "y", 3, NULL, 0);
    if (!y) return NULL;
    const npy_intp B = PyArray_DIM(y, 0), T = PyArray_DIM(y, 1), C = PyArray_DIM(y, 2);
    PyArrayObject *r = I64(r_obj, "region", 2, SHP(B, T));
    if (!r || R < 1 || !check_index(r, "region", R)) {
        if (r && R < 1) PyErr_Format(PyExc_ValueError, "R must be positive, got %ld", R);
        return NULL;
    }
    PyArrayObject *out = new_f32(3, SHP(B, R, C), 0);
    PyArrayObject *cnt = (PyArrayObject *)PyArray_EMPTY(2, (npy_intp *)SHP(B, R), NPY_INT64, 0);
    if (!out || !cnt) {
        Py_XDECREF(out), Py_XDECREF(cnt);
        return NULL;
    }
    PF_NOGIL(pf_region_pool_forward(PyArray_DATA(out), PyArray_DATA(cnt), PyArray_DATA(y), PyArray_DATA(r), B, T, C,
                                    R));
    return Py_BuildValue("(NN)", out, cnt);
}

/* region_pool_backward(dy (B, T, C), dout (B, R, C), count (B, R), region (B, T)): dy += */
static PyObject *py_region_pool_backward(PyObject *self, PyObject *args) {
    PyObject *dy_obj, *do_obj, *c_obj, *r_obj;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOO", &dy_obj, &do_obj, &c_obj, &r_obj)) return NULL;
    PyArrayObject *dy = F32(dy_obj, "dy", 3, NULL, 1);
    if (!dy) return NULL;
    const npy_intp B = PyArray_DIM(dy, 0), T = PyArray_DIM(dy, 1), C = PyArray_DIM(dy, 2);
    PyArrayObject *dout = F32(do_obj, "dout", 3, SHP(B, -1, C), 0);
    if (!dout) return NULL;
    const npy_intp R = PyArray_DIM(dout, 1);
    PyArrayObject *cnt = I64(c_obj, "count", 2, SHP(B, R)), *r = cnt ? I64(r_obj, "region", 2, SHP(B, T)) : NULL;
    if (!r || !check_index(r, "region", R)) return NULL;
    const int64_t *pc = PyArray_DATA(cnt), *pr = PyArray_DATA(r);
    for (npy_intp i = 0; i < B * T; i++)
        if (pc[(i / T) * R + pr[i]] < 1)
            return PyErr_Format(PyExc_ValueError, "count is 0 for region %lld of image %zd", (long long)pr[i],
                                (Py_ssize_t)(i / T));
    PF_NOGIL(pf_region_pool_backward(PyArray_DATA(dy), PyArray_DATA(dout), pc, pr, B, T, C, R));
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
    if (!(m >= 0.0f && m <= 1.0f))
        return PyErr_Format(PyExc_ValueError, "momentum must be in [0, 1], got %g", (double)m);
    if (overlaps(dst, src)) return PyErr_Format(PyExc_ValueError, "dst and src must not overlap");
    const npy_intp n = PyArray_DIM(dst, 0);
    PF_NOGIL(pf_ema_update(PyArray_DATA(dst), PyArray_DATA(src), n, m));
    Py_RETURN_NONE;
}

PyMethodDef pf_paco_methods[] = {
    {"mask_sample", py_mask_sample, METH_VARARGS,
     "mask_sample(kind, indices, grid, n_mask, seed, step, regions=None, n_region=0)\n"
     "    -> (mask (B, N) uint8, ids_keep (B, N - n_mask) int64, ids_restore (B, N) int64)\n\n"
     "kind: a name of mask_kinds() or its id; indices (B,) int64 sample indices, N = grid * grid:\n"
     "n_mask patches removed per row (mask 1 = removed; ids_keep ascending; ids_restore MAE's inverse\n"
     "permutation). regions ((N,) shared or (B, N) int64 component ids in [0, 13)) for the kinds that\n"
     "read a region map (ValueError without), ignored by the others; n_region in [0, n_mask], the\n"
     "budget of whole components of 'facial'. Row b is a pure function of (kind, seed, step,\n"
     "indices[b]) and its region map; seed and step are taken modulo 2^64. An unknown kind: ValueError."},
    {"mask_kinds", py_mask_kinds, METH_NOARGS,
     "mask_kinds() -> tuple of str\n\nThe masking kinds of the C core (csrc/paco/masking.h), in id order."},
    {"subst_positions", py_subst_positions, METH_VARARGS,
     "subst_positions(seed, step, indices, n_keep, s) -> (B, s) int64\n\n"
     "indices (B,) int64 sample indices: for each, s distinct places in [0, n_keep) (within that image's\n"
     "ids_keep) of the patches PaCo-FR substitutes, ascending, uniform over the s-subsets; row b is a pure\n"
     "function of (seed, step, indices[b]) (its own stream, not the masks'); seed and step modulo 2^64."},
    {"patch_stats", py_patch_stats, METH_O,
     "patch_stats(x) -> (xn (rows, d), mu (rows,), sigma (rows,)) float32\n\n"
     "x (rows, d): xn = (x - mu) / sigma per row, sigma = sqrt(unbiased var + 1e-6) (MAE's norm_pix)."},
    {"substitute", py_substitute, METH_VARARGS,
     "substitute(images, t, mu, sigma, subst, p) -> None\n\n"
     "images (B, 3, S, S) in place: patch subst[b, j] (grid index) = mu[b, j] + sigma[b, j] * t[b, j];\n"
     "t (B, s, 3*p*p) in (p, q, c) order, mu, sigma (B, s) float32, subst (B, s) int64."},
    {"substitute_backward", py_substitute_backward, METH_VARARGS,
     "substitute_backward(dt, dcols, sigma, pos, p) -> None\n\n"
     "dt (B, s, 3*p*p) += sigma[b, j] * dcols[b, pos[b, j]] reordered from (c, kh, kw) to (p, q, c);\n"
     "dcols (B, n, 3*p*p), sigma (B, s), pos (B, s) int64 places within ids_keep."},
    {"codebook_nearest", py_codebook_nearest, METH_VARARGS,
     "codebook_nearest(x, codebook) -> (idx (rows,) int64, dist (rows,) float32)\n\n"
     "x (rows, d), codebook (K, d): each row's nearest code and squared distance (ties to the lower index)."},
    {"topk_mixture_forward", py_topk_mixture_forward, METH_VARARGS,
     "topk_mixture_forward(logits, codebook, k, tau, hard) -> (t (rows, d), idx (rows, k) int64, w (rows, k))\n\n"
     "logits (rows, K), codebook (K, d): the k largest logits, w = softmax(top / tau), t = sum w C[idx]\n"
     "(hard: t = C[idx[:, 0]], straight-through)."},
    {"topk_mixture_backward", py_topk_mixture_backward, METH_VARARGS,
     "topk_mixture_backward(dlogits, dcodebook, dt, idx, w, codebook, tau) -> None\n\n"
     "dt (rows, d) -> dlogits (rows, K) | None, dcodebook (K, d) | None += through the soft mixture."},
    {"codebook_ema", py_codebook_ema, METH_VARARGS,
     "codebook_ema(codebook, ema_count, ema_sum, x, assign, decay, eps) -> None\n\n"
     "EMA k-means in place: codebook (K, d), ema_count (K,), ema_sum (K, d) from x (rows, d) and assign (rows,)\n"
     "int64; codebook = ema_sum / Laplace-smoothed ema_count."},
    {"codebook_reseed", py_codebook_reseed, METH_VARARGS,
     "codebook_reseed(codebook, ema_count, ema_sum, x, threshold, key) -> int\n\n"
     "Codes whose ema_count < threshold * sum(ema_count) take a random row of x (rows, d) (chosen from key);\n"
     "returns how many were re-seeded."},
    {"codebook_init", py_codebook_init, METH_VARARGS,
     "codebook_init(codebook, x, kmeanspp, key) -> None\n\n"
     "codebook (K, d) in place from rows of x (rows, d): K random distinct rows, or k-means++ seeding."},
    {"affinity_loss_forward", py_affinity_loss_forward, METH_VARARGS,
     "affinity_loss_forward(ys, yt, valid) -> (loss, diff (B, T, T), zs (B, T, C), norms (B, T))\n\n"
     "ys, yt (B, T, C) student and teacher tokens, valid (B, T) uint8 | None: mean over images of the mean\n"
     "squared difference of the cosine affinity matrices; diff, zs, norms kept for the backward."},
    {"affinity_loss_backward", py_affinity_loss_backward, METH_VARARGS,
     "affinity_loss_backward(dys, diff, zs, norms, valid, dloss) -> None\n\ndys (B, T, C) += dloss * dL/dys."},
    {"region_pool_forward", py_region_pool_forward, METH_VARARGS,
     "region_pool_forward(y, region, R) -> (out (B, R, C), count (B, R) int64)\n\n"
     "y (B, T, C), region (B, T) int64 in [0, R): the mean of each region's rows (0 where absent)."},
    {"region_pool_backward", py_region_pool_backward, METH_VARARGS,
     "region_pool_backward(dy, dout, count, region) -> None\n\ndy (B, T, C) += dout[b, region[b, t]] / count."},
    {"ema_update", py_ema_update, METH_VARARGS,
     "ema_update(dst, src, momentum) -> None\n\ndst, src (n,) float32: dst = m dst + (1 - m) src in place."},
    {NULL, NULL, 0, NULL},
};
