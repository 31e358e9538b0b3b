/* bind_model.c: csrc/model for Python: the ViT behind a capsule handle (create, parameter
 * table and buffers, forward / backward, encode, fine-tuning backward) and AdamW. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "python/args.h"
#include "model/optim.h"
#include "model/vit.h"

/* ---------------------------------------------------------------- the model handle */

typedef struct {
    pf_vit *m;
    int busy; /* the GIL is released during compute: one call at a time per model */
} model_box;

#define MODEL_CAPSULE "pacofr._C.vit"

/* The capsule's destructor. */
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

/* Mark a model taken by box() free again. */
static void unbox(model_box *b) { __atomic_store_n(&b->busy, 0, __ATOMIC_RELEASE); }

/* images must be float32 (B, 3, S, S), finite. */
static PyArrayObject *check_images(PyObject *obj, const pf_vit *m) {
    const npy_intp S = pf_vit_get_config(m)->img_size;
    PyArrayObject *im = F32(obj, "images", 4, SHP(-1, 3, S, S), 0);
    if (im && !check_finite(im, "images")) return NULL;
    return im;
}

/* One field of pf_vit_config, read from the config dict by its Python name. */
typedef struct {
    const char *name;
    size_t offset;
    int is_bool; /* an int (pf_vit_config's int flags) from a Python bool; else an int64 from a Python int */
} config_field;

#define INT_FIELD(py, c) {py, offsetof(pf_vit_config, c), 0}
#define BOOL_FIELD(py, c) {py, offsetof(pf_vit_config, c), 1}
static const config_field CONFIG_FIELDS[] = {
    INT_FIELD("img_size", img_size), INT_FIELD("patch_size", patch_size), INT_FIELD("embed_dim", embed_dim),
    INT_FIELD("depth", depth), INT_FIELD("num_heads", num_heads), INT_FIELD("mlp_hidden", mlp_hidden),
    INT_FIELD("decoder_embed_dim", dec_embed_dim), INT_FIELD("decoder_depth", dec_depth),
    INT_FIELD("decoder_num_heads", dec_num_heads), INT_FIELD("decoder_mlp_hidden", dec_mlp_hidden),
    BOOL_FIELD("encoder_only", encoder_only), BOOL_FIELD("learned_pos", learned_pos),
    BOOL_FIELD("norm_pix_loss", norm_pix_loss), INT_FIELD("codebook_size", codebook_size),
    INT_FIELD("belief_hidden", belief_hidden),
};
#define NUM_CONFIG_FIELDS ((Py_ssize_t)(sizeof CONFIG_FIELDS / sizeof CONFIG_FIELDS[0]))

/* v (a config dict's value for f) -> f's slot in c; 0 with a TypeError / OverflowError naming f. */
static int set_config_field(pf_vit_config *c, const config_field *f, PyObject *v) {
    char *slot = (char *)c + f->offset;
    if (f->is_bool) {
        if (!PyBool_Check(v)) {
            PyErr_Format(PyExc_TypeError, "vit_create: config['%s'] must be a bool, got %s", f->name,
                         Py_TYPE(v)->tp_name);
            return 0;
        }
        *(int *)slot = v == Py_True;
        return 1;
    }
    if (!PyLong_Check(v) || PyBool_Check(v)) {
        PyErr_Format(PyExc_TypeError, "vit_create: config['%s'] must be an int, got %s", f->name, Py_TYPE(v)->tp_name);
        return 0;
    }
    const long long x = PyLong_AsLongLong(v);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Format(PyExc_OverflowError, "vit_create: config['%s'] does not fit in 64 bits", f->name);
        return 0;
    }
    *(int64_t *)slot = x;
    return 1;
}

/* config (a dict with exactly the keys of CONFIG_FIELDS) -> *c; 0 with a TypeError naming the
 * missing, unknown or wrongly typed field. */
static int parse_config(PyObject *config, pf_vit_config *c) {
    if (!PyDict_Check(config)) {
        PyErr_Format(PyExc_TypeError, "vit_create: config must be a dict, got %s", Py_TYPE(config)->tp_name);
        return 0;
    }
    memset(c, 0, sizeof *c);
    for (Py_ssize_t i = 0; i < NUM_CONFIG_FIELDS; i++) {
        PyObject *v = PyDict_GetItemString(config, CONFIG_FIELDS[i].name); /* borrowed */
        if (!v) {
            PyErr_Format(PyExc_TypeError, "vit_create: config is missing the field '%s'", CONFIG_FIELDS[i].name);
            return 0;
        }
        if (!set_config_field(c, &CONFIG_FIELDS[i], v)) return 0;
    }
    if (PyDict_Size(config) == NUM_CONFIG_FIELDS) return 1;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(config, &pos, &key, &value)) {
        int known = 0;
        for (Py_ssize_t i = 0; i < NUM_CONFIG_FIELDS && !known; i++)
            known = PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(key, CONFIG_FIELDS[i].name) == 0;
        if (!known) {
            PyErr_Format(PyExc_TypeError, "vit_create: config has an unknown field %R", key);
            return 0;
        }
    }
    return 1;
}

/* vit_create(config) -> handle */
static PyObject *py_vit_create(PyObject *self, PyObject *config) {
    (void)self;
    pf_vit_config c;
    if (!parse_config(config, &c)) return NULL;
    model_box *b = calloc(1, sizeof *b);
    if (!b) return PyErr_NoMemory();
    pf_status st;
    PF_NOGIL(st = pf_vit_create(&c, &b->m));
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

/* vit_tensors(h) -> [(name, shape, offset, numel, decay, trainable)] */
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

/* A flat float32 view (nparams) of the model's parameter or gradient buffer, keeping the model alive. */
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

/* vit_params(h), vit_grads(h) -> (nparams,) float32 views */
static PyObject *py_vit_params(PyObject *self, PyObject *cap) { (void)self; return buffer_view(cap, 0); }
static PyObject *py_vit_grads(PyObject *self, PyObject *cap) { (void)self; return buffer_view(cap, 1); }

/* vit_zero_grad(h) -> None */
static PyObject *py_vit_zero_grad(PyObject *self, PyObject *cap) {
    (void)self;
    model_box *b = box(cap);
    if (!b) return NULL;
    pf_vit *m = b->m;
    PF_NOGIL(pf_vit_zero_grad(m));
    unbox(b);
    Py_RETURN_NONE;
}

/* vit_set_dtype(h, 'fp32' | 'bf16') -> None */
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

/* vit_acts_bytes(h) -> int */
static PyObject *py_vit_acts_bytes(PyObject *self, PyObject *cap) {
    (void)self;
    model_box *b = box(cap);
    if (!b) return NULL;
    long long n = pf_vit_acts_bytes(b->m);
    unbox(b);
    return PyLong_FromLongLong(n);
}

/* ---------------------------------------------------------------- forward / backward */

/* weights (B, N) float32, finite, >= 0; NULL with ValueError / TypeError otherwise. */
static PyArrayObject *check_weights(PyObject *obj, npy_intp B, npy_intp N) {
    PyArrayObject *w = F32(obj, "weights", 2, SHP(B, N), 0);
    if (!w || !check_finite(w, "weights")) return NULL;
    const float *pw = PyArray_DATA(w);
    for (npy_intp i = 0; i < B * N; i++)
        if (pw[i] < 0.0f) {
            PyErr_Format(PyExc_ValueError, "weights must be >= 0, got %g at %zd", (double)pw[i], (Py_ssize_t)i);
            return NULL;
        }
    return w;
}

/* The optional arrays of vit_forward for B images of N patches of length d: ids_restore (B, N)
 * int64, target (B, N, d) float32 (finite), weights (B, N) float32 (finite, >= 0); None -> NULL.
 * 0 with an exception on a bad one. */
static int forward_options(PyObject *r_obj, PyObject *t_obj, PyObject *w_obj, npy_intp B, npy_intp N, npy_intp d,
                           PyArrayObject **restore, PyArrayObject **target, PyArrayObject **weights) {
    *restore = *target = *weights = NULL;
    if (r_obj != Py_None && !(*restore = I64(r_obj, "ids_restore", 2, SHP(B, N)))) return 0;
    if (t_obj != Py_None && !((*target = F32(t_obj, "target", 3, SHP(B, N, d), 0)) && check_finite(*target, "target")))
        return 0;
    if (w_obj != Py_None && !(*weights = check_weights(w_obj, B, N))) return 0;
    return 1;
}

/* vit_forward(h, images (B, 3, S, S), ids_keep (B, n), ids_restore (B, N) | None = None,
 * target (B, N, d) | None = None, weights (B, N) | None = None) -> float */
static PyObject *py_vit_forward(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"h", "images", "ids_keep", "ids_restore", "target", "weights", NULL};
    PyObject *cap, *im_obj, *ids_obj, *r_obj = Py_None, *t_obj = Py_None, *w_obj = Py_None;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|OOO:vit_forward", kw, &cap, &im_obj, &ids_obj, &r_obj, &t_obj,
                                     &w_obj))
        return NULL;
    model_box *b = box(cap);
    if (!b) return NULL;
    PyObject *result = NULL;
    PyArrayObject *im = check_images(im_obj, b->m), *ids, *restore, *target, *weights;
    if (!im) goto done;
    const pf_vit_config *c = pf_vit_get_config(b->m);
    const npy_intp B = PyArray_DIM(im, 0), G = c->img_size / c->patch_size, d = 3 * c->patch_size * c->patch_size;
    if (!(ids = I64(ids_obj, "ids_keep", 2, SHP(B, -1))) ||
        !forward_options(r_obj, t_obj, w_obj, B, G * G, d, &restore, &target, &weights))
        goto done;
    const float *pim = PyArray_DATA(im), *pt = data_or_null(target), *pw = data_or_null(weights);
    const int64_t *pids = PyArray_DATA(ids), *pr = restore ? PyArray_DATA(restore) : NULL;
    const npy_intp n = PyArray_DIM(ids, 1);
    double loss = 0.0;
    pf_status st;
    pf_vit *m = b->m;
    PF_NOGIL(st = pf_vit_forward(m, pim, pids, B, n, pr, pt, pw, &loss));
    result = st == PF_OK ? PyFloat_FromDouble(loss) : raise_status(st);
done:
    unbox(b);
    return result;
}

/* vit_backward(h, dlatent (B, 1+n, C) | None = None, dcols (B, n, 3*p*p) | None = None) -> None */
static PyObject *py_vit_backward(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"h", "dlatent", "dcols", NULL};
    PyObject *cap, *dl_obj = Py_None, *dc_obj = Py_None;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|OO:vit_backward", kw, &cap, &dl_obj, &dc_obj)) return NULL;
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
    pf_vit *m = b->m;
    PF_NOGIL(st = pf_vit_backward(m, pdl, pdc));
    result = none_or_raise(st);
done:
    unbox(b);
    return result;
}

/* vit_latent(h) -> (B, 1+n, C) copy of the last forward's encoder output;
 * vit_pred(h) -> (B, N, d) copy of its decoder prediction (cls row dropped). */
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
        const int64_t skip = pred ? C : 0, stride = pred ? (T + 1) * C : T * C;
        PF_NOGIL(for (int64_t i = 0; i < B; i++)
                     memcpy(o + i * T * C, src + i * stride + skip, (size_t)(T * C) * sizeof(float)));
    }
    unbox(b);
    return (PyObject *)out;
}

/* vit_latent(h), vit_pred(h): latent_or_pred. */
static PyObject *py_vit_latent(PyObject *self, PyObject *cap) { (void)self; return latent_or_pred(cap, 0); }
static PyObject *py_vit_pred(PyObject *self, PyObject *cap) { (void)self; return latent_or_pred(cap, 1); }

/* ---------------------------------------------------------------- encoder alone */

/* The encoder's output for B images of T tokens: a new (B, T, C) array, or NULL. */
static PyArrayObject *new_tokens(const pf_vit *m, npy_intp B, npy_intp T) {
    return new_f32(3, SHP(B, T, pf_vit_get_config(m)->embed_dim), 0);
}

/* vit_encode(h, images (B, 3, S, S), ids (B, n) | None = None) -> (B, 1+N, C) on every patch, or
 * (B, 1+n, C) on the patches ids only */
static PyObject *py_vit_encode(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"h", "images", "ids", NULL};
    PyObject *cap, *im_obj, *ids_obj = Py_None;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:vit_encode", kw, &cap, &im_obj, &ids_obj)) return NULL;
    model_box *b = box(cap);
    if (!b) return NULL;
    PyObject *result = NULL;
    PyArrayObject *im = check_images(im_obj, b->m), *ids = NULL, *out = NULL;
    if (!im) goto done;
    const pf_vit_config *c = pf_vit_get_config(b->m);
    const npy_intp B = PyArray_DIM(im, 0), G = c->img_size / c->patch_size;
    if (ids_obj != Py_None && !(ids = I64(ids_obj, "ids", 2, SHP(B, -1)))) goto done;
    const npy_intp n = ids ? PyArray_DIM(ids, 1) : G * G;
    if (!(out = new_tokens(b->m, B, 1 + n))) goto done;
    const float *pim = PyArray_DATA(im);
    const int64_t *pids = ids ? PyArray_DATA(ids) : NULL;
    float *pout = PyArray_DATA(out);
    pf_status st;
    pf_vit *m = b->m;
    PF_NOGIL(st = pids ? pf_vit_encode_ids(m, pim, pids, B, n, pout) : pf_vit_encode(m, pim, B, pout));
    if (st != PF_OK) {
        Py_CLEAR(out);
        raise_status(st);
    }
    result = (PyObject *)out;
done:
    unbox(b);
    return result;
}

/* vit_encoder_backward(h, dout (B, 1+n, C), dcols (B, n, 3*p*p) | None) -> None: gradients of
 * the last vit_encode from a gradient on its output (fine-tuning). */
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
    pf_vit *m = b->m;
    PF_NOGIL(st = pf_vit_encoder_backward(m, pd, B, T, pdc));
    result = none_or_raise(st);
done:
    unbox(b);
    return result;
}

/* ---------------------------------------------------------------- optimizer */

/* grad_norm(h) -> float: the l2 norm of every trainable gradient */
static PyObject *py_grad_norm(PyObject *self, PyObject *cap) {
    (void)self;
    model_box *b = box(cap);
    if (!b) return NULL;
    double norm;
    pf_vit *m = b->m;
    PF_NOGIL(norm = pf_grad_norm(pf_vit_grads(m), pf_vit_tensor(m, 0), pf_vit_num_tensors(m)));
    unbox(b);
    return PyFloat_FromDouble(norm);
}

/* adamw_step(h, m (nparams), v (nparams), lr, ..., grad_scale, lr_scale (ntensors) | None) -> None */
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
    PF_NOGIL(pf_adamw_step(pf_vit_params(model), pf_vit_grads(model), pm, pv, pf_vit_tensor(model, 0),
                           pf_vit_num_tensors(model), psc, &a));
    result = Py_None;
    Py_INCREF(result);
done:
    unbox(b);
    return result;
}

/* adamw_update(params (n), grads (n), m (n), v (n), lr, beta1, beta2, eps, weight_decay, bc1,
 * bc2, grad_scale, decay) -> None: one AdamW update of one flat tensor (the heads' parameters). */
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
    PF_NOGIL(pf_adamw_update(pp, pg, pm, pv, n, decay, 1.0f, &a));
    Py_RETURN_NONE;
}

PyMethodDef pf_model_methods[] = {
    {"vit_create", py_vit_create, METH_O,
     "vit_create(config) -> handle\n\n"
     "A new ViT (MAE encoder-decoder, or encoder only) with zeroed parameters and gradients. config: a dict\n"
     "with exactly these fields: img_size, patch_size, embed_dim, depth, num_heads, mlp_hidden,\n"
     "decoder_embed_dim, decoder_depth, decoder_num_heads, decoder_mlp_hidden, codebook_size, belief_hidden\n"
     "(ints) and encoder_only, learned_pos, norm_pix_loss (bools); ViTConfig.c_kwargs() gives it."},
    {"vit_tensors", py_vit_tensors, METH_O,
     "vit_tensors(h) -> list of (name, shape, offset, numel, decay, trainable)\n\n"
     "The parameter table in MAE's state-dict order; offset and numel in floats of the flat buffers."},
    {"vit_params", py_vit_params, METH_O,
     "vit_params(h) -> (nparams,) float32\n\nA writeable view of the flat parameter buffer (keeps the model alive)."},
    {"vit_grads", py_vit_grads, METH_O,
     "vit_grads(h) -> (nparams,) float32\n\nA writeable view of the flat gradient buffer (keeps the model alive)."},
    {"vit_zero_grad", py_vit_zero_grad, METH_O, "vit_zero_grad(h) -> None\n\nZero the flat gradient buffer."},
    {"vit_set_dtype", py_vit_set_dtype, METH_VARARGS,
     "vit_set_dtype(h, dtype) -> None\n\ndtype 'fp32' or 'bf16': the matrix products' input precision."},
    {"vit_acts_bytes", py_vit_acts_bytes, METH_O,
     "vit_acts_bytes(h) -> int\n\nBytes of the activations cached by the last forward / encode."},
    {"vit_forward", (PyCFunction)(void (*)(void))py_vit_forward, METH_VARARGS | METH_KEYWORDS,
     "vit_forward(h, images, ids_keep, ids_restore=None, target=None, weights=None) -> float\n\n"
     "The reconstruction loss, keeping the activations for vit_backward. images (B, 3, S, S) float32 (the\n"
     "encoder's input, which may carry substituted patches), ids_keep (B, n) int64 kept grid indices;\n"
     "ids_restore (B, N) int64: MAE's inverse permutation of ids_keep (checked), removed = ids_restore >= n;\n"
     "target (B, N, 3*p*p) float32: the clean patches in (kh, kw, c) order (_C.patchify), None = patches\n"
     "of images; weights (B, N) float32 >= 0: sum w mse / sum w over patches, None = 1 on removed (MAE)."},
    {"vit_backward", (PyCFunction)(void (*)(void))py_vit_backward, METH_VARARGS | METH_KEYWORDS,
     "vit_backward(h, dlatent=None, dcols=None) -> None\n\n"
     "Accumulate the gradients of the last forward's loss into vit_grads(h). dlatent (B, 1+n, C) float32:\n"
     "another loss's gradient on the encoder output (vit_latent), added in; dcols (B, n, 3*p*p) float32\n"
     "+= the kept patches' pixel gradients in im2col (c, kh, kw) order."},
    {"vit_latent", py_vit_latent, METH_O,
     "vit_latent(h) -> (B, 1+n, C) float32\n\nA copy of the last forward's encoder output (after its norm)."},
    {"vit_pred", py_vit_pred, METH_O,
     "vit_pred(h) -> (B, N, d) float32\n\nA copy of the last forward's decoder prediction, grid order, no cls row."},
    {"vit_encode", (PyCFunction)(void (*)(void))py_vit_encode, METH_VARARGS | METH_KEYWORDS,
     "vit_encode(h, images, ids=None) -> (B, 1+N, C) or (B, 1+n, C) float32\n\n"
     "images (B, 3, S, S): the encoder, after its norm, on every patch, or on the patches ids (B, n) int64\n"
     "only. The activations stay for vit_encoder_backward."},
    {"vit_encoder_backward", py_vit_encoder_backward, METH_VARARGS,
     "vit_encoder_backward(h, dout, dcols) -> None\n\n"
     "dout (B, 1+n, C): the gradient on the last vit_encode output -> parameter gradients +=;\n"
     "dcols (B, n, 3*p*p) | None += the patches' pixel gradients in im2col (c, kh, kw) order."},
    {"grad_norm", py_grad_norm, METH_O,
     "grad_norm(h) -> float\n\nThe global l2 norm of every trainable gradient (double accumulation)."},
    {"adamw_step", (PyCFunction)(void (*)(void))py_adamw_step, METH_VARARGS | METH_KEYWORDS,
     "adamw_step(model, m, v, lr, beta1, beta2, eps, weight_decay, bias_correction1, bias_correction2,\n"
     "           grad_scale, lr_scale=None) -> None\n\n"
     "One AdamW step of every trainable tensor; m, v (nparams,) float32 moments, lr_scale (ntensors,) | None."},
    {"adamw_update", py_adamw_update, METH_VARARGS,
     "adamw_update(params, grads, m, v, lr, beta1, beta2, eps, weight_decay, bias_correction1,\n"
     "             bias_correction2, grad_scale, decay) -> None\n\n"
     "One AdamW update of one flat float32 tensor, all (n,); params, m, v in place."},
    {NULL, NULL, 0, NULL},
};
