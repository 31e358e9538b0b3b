/* vit.c: the MAE-style ViT encoder-decoder: parameter table, activations, forward, backward.
 *
 * Encoder (timm names): kept patches -> patch_embed -> + pos_embed -> [cls] -> blocks -> norm.
 * Decoder (MAE names): decoder_embed -> mask tokens at removed positions, grid order ->
 * + decoder_pos_embed -> decoder_blocks -> decoder_norm -> decoder_pred (p*p*3 per patch).
 * Loss: MAE's, mean squared error on removed patches against (normalised) pixel targets, or
 * PaCo-FR's weighted version over removed and substituted patches, against the clean
 * images' patches (or targets the caller patchified once). The PaCo-FR codebook and
 * belief MLP live in the same flat buffers (codebook.*, belief.*); csrc/paco/ uses them. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "core/bf16.h"
#include "core/common.h"
#include "core/profile.h"
#include "layers/layers.h"
#include "model/block.h"
#include "model/vit.h"

#define LN_EPS 1e-6f

typedef struct {
    float *patch_w, *patch_b, *cls, *pos, *norm_w, *norm_b;
    pf_block_params *blocks;
    float *dec_embed_w, *dec_embed_b, *mask_token, *dec_pos, *dec_norm_w, *dec_norm_b;
    float *dec_pred_w, *dec_pred_b;
    pf_block_params *dec_blocks;
    float *codebook, *belief_fc1_w, *belief_fc1_b, *belief_fc2_w, *belief_fc2_b; /* PaCo-FR */
} vit_ptrs;

struct pf_vit {
    pf_vit_config cfg;
    int64_t G, N, d; /* grid side, patches, patch length p*p*3 */
    pf_tensor *tensors;
    int ntensors;
    int64_t nparams;
    float *params, *grads;
    uint16_t *params16; /* bf16 copy of params, refreshed by every forward in bf16 */
    vit_ptrs P, dP;
    pf_dtype dtype;
    /* activations of the last call, laid out for (aB, an, adec) */
    float *acts;
    int64_t acts_floats, aB, an;
    int adec;
    int64_t *ids;
    uint8_t *mask;
    float *weights; /* (B, N) loss weights of the last forward */
    float *cols, *emb, *x0, *enc_out, *norm_mean, *norm_rstd;
    pf_block_acts *enc, *dec;
    float *dec_in, *full0, *dn, *dn_mean, *dn_rstd, *pred, *target;
    float *gA, *gB, *scratch;
    int have_forward; /* FWD_*: what the cached activations belong to */
    int enc_all;      /* the last encode ran on every patch (ids NULL) */
};

enum { FWD_NONE, FWD_DECODER, FWD_ENCODER };

/* ---------------------------------------------------------------- parameter table */

typedef struct {
    pf_tensor *tab; /* NULL: only count */
    int n;
    int64_t off;
    float *base; /* NULL: no pointers */
} layout_ctx;

/* Add one tensor of shape (ndim) named by fmt to L: its table row and/or its pointer. */
static float *add(layout_ctx *L, int decay, int trainable, int ndim, const int64_t *shape,
                  const char *fmt, ...) {
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    if (L->tab) {
        pf_tensor *t = &L->tab[L->n];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->name, sizeof t->name, fmt, ap);
        va_end(ap);
        t->ndim = ndim;
        for (int i = 0; i < 4; i++) t->shape[i] = i < ndim ? shape[i] : 1;
        t->offset = L->off, t->numel = numel, t->decay = decay, t->trainable = trainable;
    }
    float *p = L->base ? L->base + L->off : NULL;
    L->n++;
    L->off += numel;
    return p;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define ADD(decay, trainable, shape_args, ...) \
    add(L, decay, trainable, NDIM shape_args, SHAPE shape_args, __VA_ARGS__)

/* Block i's twelve tensors (timm names under prefix), C wide, H hidden. */
static void layout_block(layout_ctx *L, pf_block_params *b, const char *prefix, int i, int64_t C,
                         int64_t H) {
    b->ln1_w = ADD(0, 1, (C), "%s.%d.norm1.weight", prefix, i);
    b->ln1_b = ADD(0, 1, (C), "%s.%d.norm1.bias", prefix, i);
    b->qkv_w = ADD(1, 1, (3 * C, C), "%s.%d.attn.qkv.weight", prefix, i);
    b->qkv_b = ADD(0, 1, (3 * C), "%s.%d.attn.qkv.bias", prefix, i);
    b->proj_w = ADD(1, 1, (C, C), "%s.%d.attn.proj.weight", prefix, i);
    b->proj_b = ADD(0, 1, (C), "%s.%d.attn.proj.bias", prefix, i);
    b->ln2_w = ADD(0, 1, (C), "%s.%d.norm2.weight", prefix, i);
    b->ln2_b = ADD(0, 1, (C), "%s.%d.norm2.bias", prefix, i);
    b->fc1_w = ADD(1, 1, (H, C), "%s.%d.mlp.fc1.weight", prefix, i);
    b->fc1_b = ADD(0, 1, (H), "%s.%d.mlp.fc1.bias", prefix, i);
    b->fc2_w = ADD(1, 1, (C, H), "%s.%d.mlp.fc2.weight", prefix, i);
    b->fc2_b = ADD(0, 1, (C), "%s.%d.mlp.fc2.bias", prefix, i);
}

/* Walk every tensor in MAE's state-dict order, filling L's table and/or pointers in v. */
static void layout(const pf_vit *m, layout_ctx *L, vit_ptrs *v) {
    const pf_vit_config *c = &m->cfg;
    const int64_t C = c->embed_dim, p = c->patch_size, N = m->N, lp = c->learned_pos;
    v->cls = ADD(0, 1, (1, 1, C), "cls_token");
    v->pos = ADD(0, lp, (1, 1 + N, C), "pos_embed");
    v->patch_w = ADD(1, 1, (C, 3, p, p), "patch_embed.proj.weight");
    v->patch_b = ADD(0, 1, (C), "patch_embed.proj.bias");
    for (int i = 0; i < c->depth; i++) layout_block(L, &v->blocks[i], "blocks", i, C, c->mlp_hidden);
    v->norm_w = ADD(0, 1, (C), "norm.weight");
    v->norm_b = ADD(0, 1, (C), "norm.bias");
    if (c->encoder_only) return;
    const int64_t Cd = c->dec_embed_dim;
    v->mask_token = ADD(0, 1, (1, 1, Cd), "mask_token");
    v->dec_pos = ADD(0, lp, (1, 1 + N, Cd), "decoder_pos_embed");
    v->dec_embed_w = ADD(1, 1, (Cd, C), "decoder_embed.weight");
    v->dec_embed_b = ADD(0, 1, (Cd), "decoder_embed.bias");
    for (int i = 0; i < c->dec_depth; i++)
        layout_block(L, &v->dec_blocks[i], "decoder_blocks", i, Cd, c->dec_mlp_hidden);
    v->dec_norm_w = ADD(0, 1, (Cd), "decoder_norm.weight");
    v->dec_norm_b = ADD(0, 1, (Cd), "decoder_norm.bias");
    v->dec_pred_w = ADD(1, 1, (m->d, Cd), "decoder_pred.weight");
    v->dec_pred_b = ADD(0, 1, (m->d), "decoder_pred.bias");
    if (c->codebook_size < 1) return;
    const int64_t K = c->codebook_size, H = c->belief_hidden;
    v->codebook = ADD(0, 1, (K, m->d), "codebook.weight");
    v->belief_fc1_w = ADD(1, 1, (H, m->d), "belief.fc1.weight");
    v->belief_fc1_b = ADD(0, 1, (H), "belief.fc1.bias");
    v->belief_fc2_w = ADD(1, 1, (K, H), "belief.fc2.weight");
    v->belief_fc2_b = ADD(0, 1, (K), "belief.fc2.bias");
}

/* Sizes that make a model: positive, divisible, a decoder where the codebook needs one. */
static pf_status check_config(const pf_vit_config *c) {
    if (c->img_size < 1 || c->patch_size < 1 || c->img_size % c->patch_size)
        return pf_fail(PF_EINVAL, "img_size %lld must be a positive multiple of patch_size %lld",
                       (long long)c->img_size, (long long)c->patch_size);
    if (c->embed_dim < 1 || c->depth < 0 || c->num_heads < 1 || c->embed_dim % c->num_heads || c->mlp_hidden < 1)
        return pf_fail(PF_EINVAL, "encoder: embed_dim %lld must be a positive multiple of num_heads %lld "
                       "(depth %lld, mlp_hidden %lld)", (long long)c->embed_dim, (long long)c->num_heads,
                       (long long)c->depth, (long long)c->mlp_hidden);
    if (!c->encoder_only && (c->dec_embed_dim < 1 || c->dec_depth < 0 || c->dec_num_heads < 1 ||
                             c->dec_embed_dim % c->dec_num_heads || c->dec_mlp_hidden < 1))
        return pf_fail(PF_EINVAL, "decoder: decoder_embed_dim %lld must be a positive multiple of "
                       "decoder_num_heads %lld", (long long)c->dec_embed_dim, (long long)c->dec_num_heads);
    if (c->codebook_size < 0 || (c->codebook_size > 0 && (c->belief_hidden < 1 || c->encoder_only)))
        return pf_fail(PF_EINVAL, "codebook_size %lld needs a decoder and belief_hidden >= 1 (got %lld)",
                       (long long)c->codebook_size, (long long)c->belief_hidden);
    return PF_OK;
}

/* cfg -> *out: a model with its tensor table and zeroed parameter and gradient buffers. */
pf_status pf_vit_create(const pf_vit_config *cfg, pf_vit **out) {
    *out = NULL;
    TRY(check_config(cfg));
    pf_vit *m = calloc(1, sizeof *m);
    if (!m) return pf_fail(PF_ENOMEM, "vit: out of memory");
    m->cfg = *cfg;
    m->G = cfg->img_size / cfg->patch_size;
    m->N = m->G * m->G;
    m->d = cfg->patch_size * cfg->patch_size * 3;
    const int64_t nblocks = cfg->depth + (cfg->encoder_only ? 0 : cfg->dec_depth);
    m->P.blocks = calloc((size_t)(nblocks + 1), sizeof(pf_block_params));
    m->dP.blocks = calloc((size_t)(nblocks + 1), sizeof(pf_block_params));
    if (!m->P.blocks || !m->dP.blocks) goto oom;
    m->P.dec_blocks = m->P.blocks + cfg->depth;
    m->dP.dec_blocks = m->dP.blocks + cfg->depth;

    layout_ctx count = {0};
    vit_ptrs scratch_ptrs = m->P;
    layout(m, &count, &scratch_ptrs);
    m->ntensors = count.n;
    m->nparams = count.off;
    m->tensors = calloc((size_t)m->ntensors, sizeof(pf_tensor));
    m->params = pf_malloc((size_t)m->nparams * sizeof(float));
    m->grads = pf_malloc((size_t)m->nparams * sizeof(float));
    if (!m->tensors || !m->params || !m->grads) goto oom;
    memset(m->params, 0, (size_t)m->nparams * sizeof(float));
    memset(m->grads, 0, (size_t)m->nparams * sizeof(float));
    layout_ctx lp = {.tab = m->tensors, .base = m->params};
    layout(m, &lp, &m->P);
    layout_ctx lg = {.base = m->grads};
    layout(m, &lg, &m->dP);
    m->dtype = PF_FP32;
    *out = m;
    return PF_OK;
oom:
    pf_vit_free(m);
    return pf_fail(PF_ENOMEM, "vit: out of memory for the parameters");
}

/* Release the activations of the last call (they are re-carved on the next). */
static void free_acts(pf_vit *m) {
    free(m->acts);
    free(m->ids);
    free(m->mask);
    free(m->weights);
    free(m->enc);
    free(m->dec);
    m->acts = NULL, m->ids = NULL, m->mask = NULL, m->weights = NULL, m->enc = NULL, m->dec = NULL;
    m->acts_floats = 0, m->aB = 0, m->an = 0, m->adec = 0;
    m->have_forward = 0;
}

/* Release a model and everything it owns (NULL: nothing). */
void pf_vit_free(pf_vit *m) {
    if (!m) return;
    free_acts(m);
    free(m->tensors);
    free(m->params);
    free(m->params16);
    free(m->grads);
    free(m->P.blocks);
    free(m->dP.blocks);
    free(m);
}

/* Accessors: config, tensor table, flat buffers (nparams floats each), dtype, activation bytes. */
const pf_vit_config *pf_vit_get_config(const pf_vit *m) { return &m->cfg; }
int pf_vit_num_tensors(const pf_vit *m) { return m->ntensors; }
const pf_tensor *pf_vit_tensor(const pf_vit *m, int i) { return &m->tensors[i]; }
int64_t pf_vit_num_params(const pf_vit *m) { return m->nparams; }
float *pf_vit_params(pf_vit *m) { return m->params; }
float *pf_vit_grads(pf_vit *m) { return m->grads; }
void pf_vit_zero_grad(pf_vit *m) { memset(m->grads, 0, (size_t)m->nparams * sizeof(float)); }
/* A new dtype drops the cached forward: its activations are laid out for the old one. */
void pf_vit_set_dtype(pf_vit *m, pf_dtype dt) {
    if (dt != m->dtype) m->have_forward = FWD_NONE;
    m->dtype = dt;
}
int64_t pf_vit_acts_bytes(const pf_vit *m) { return m->acts_floats * (int64_t)sizeof(float); }

/* ---------------------------------------------------------------- activations */

/* Encoder block shapes for B images of 1 + n tokens. */
static pf_block_dims enc_dims(const pf_vit *m, int64_t B, int64_t n) {
    return (pf_block_dims){B, 1 + n, m->cfg.embed_dim, m->cfg.num_heads, m->cfg.mlp_hidden};
}

/* Decoder block shapes for B images of 1 + N tokens. */
static pf_block_dims dec_dims(const pf_vit *m, int64_t B) {
    return (pf_block_dims){B, 1 + m->N, m->cfg.dec_embed_dim, m->cfg.dec_num_heads, m->cfg.dec_mlp_hidden};
}

/* The sizes table of the activations: hands out consecutive slices of one buffer, or with
 * base NULL only counts them, so one walk both sizes and carves the buffer. */
typedef struct {
    float *base;
    int64_t used;
} carver;

/* The next n floats of k's buffer (NULL when only counting). */
static float *take(carver *k, int64_t n) {
    float *p = k->base ? k->base + k->used : NULL;
    k->used += n;
    return p;
}

/* Every activation for B images, n kept patches, with or without the decoder, plus the
 * gradient buffers backward needs. Returns the floats used. */
static int64_t carve_acts(pf_vit *m, carver *k, int64_t B, int64_t n, int dec) {
    const pf_vit_config *c = &m->cfg;
    const pf_block_dims E = enc_dims(m, B, n), D = dec_dims(m, B);
    const int64_t T = 1 + n, C = c->embed_dim, Cd = c->dec_embed_dim, N1 = 1 + m->N;
    m->cols = take(k, B * n * m->d);
    m->emb = take(k, B * n * C);
    m->x0 = take(k, B * T * C);
    for (int i = 0; i < c->depth; i++) {
        float *p = take(k, pf_block_acts_floats(E));
        if (p) pf_block_acts_bind(&m->enc[i], p, E);
    }
    m->enc_out = take(k, B * T * C);
    m->norm_mean = take(k, B * T);
    m->norm_rstd = take(k, B * T);
    int64_t g = pf_max64(B * T * C, B * n * C), sc = pf_block_scratch_floats(E);
    if (dec) {
        m->dec_in = take(k, B * T * Cd);
        m->full0 = take(k, B * N1 * Cd);
        for (int i = 0; i < c->dec_depth; i++) {
            float *p = take(k, pf_block_acts_floats(D));
            if (p) pf_block_acts_bind(&m->dec[i], p, D);
        }
        m->dn = take(k, B * N1 * Cd);
        m->dn_mean = take(k, B * N1);
        m->dn_rstd = take(k, B * N1);
        m->pred = take(k, B * N1 * m->d);
        m->target = take(k, B * m->N * m->d);
        g = pf_max64(g, pf_max64(B * N1 * Cd, pf_max64(B * N1 * m->d, B * T * Cd)));
        sc = pf_max64(sc, pf_block_scratch_floats(D));
    }
    m->gA = take(k, g); /* two ping-pong gradient buffers and one block's scratch */
    m->gB = take(k, g);
    m->scratch = take(k, sc);
    return k->used;
}

/* Make the activations fit (B, n, dec), reallocating only when that changed. */
static pf_status ensure_acts(pf_vit *m, int64_t B, int64_t n, int dec) {
    if (m->acts && m->aB == B && m->an == n && m->adec == dec) return PF_OK;
    free_acts(m);
    const pf_vit_config *c = &m->cfg;
    carver count = {NULL, 0};
    const int64_t total = carve_acts(m, &count, B, n, dec);
    m->acts = pf_malloc((size_t)total * sizeof(float));
    m->ids = malloc((size_t)(B * n) * sizeof(int64_t) + 1);
    m->mask = malloc((size_t)(B * m->N) + 1);
    m->weights = malloc((size_t)(B * m->N) * sizeof(float) + 1);
    m->enc = calloc((size_t)c->depth + 1, sizeof(pf_block_acts));
    m->dec = calloc((size_t)(dec ? c->dec_depth : 0) + 1, sizeof(pf_block_acts));
    if (!m->acts || !m->ids || !m->mask || !m->weights || !m->enc || !m->dec) {
        free_acts(m);
        return pf_fail(PF_ENOMEM, "vit: cannot allocate %.1f MiB of activations for batch %lld",
                       total * 4.0 / (1 << 20), (long long)B);
    }
    carver carve = {m->acts, 0};
    carve_acts(m, &carve, B, n, dec);
    m->acts_floats = total, m->aB = B, m->an = n, m->adec = dec;
    return PF_OK;
}

/* ---------------------------------------------------------------- forward / backward */

/* w's bf16 copy when the model runs in bf16, else NULL. */
static const uint16_t *w16(const pf_vit *m, const float *w) {
    return m->dtype == PF_BF16 && m->params16 ? m->params16 + (w - m->params) : NULL;
}

/* bf16: every weight converted once for this forward and its backward (not per GEMM). */
static pf_status refresh_w16(pf_vit *m) {
    if (m->dtype != PF_BF16) return PF_OK;
    if (!m->params16 && !(m->params16 = pf_malloc((size_t)m->nparams * sizeof(uint16_t))))
        return pf_fail(PF_ENOMEM, "vit: out of memory for the bf16 weights");
    pf_to_bf16(m->params, m->params16, m->nparams);
    const int nb = m->cfg.depth + (m->cfg.encoder_only ? 0 : m->cfg.dec_depth);
    for (int i = 0; i < nb; i++) {
        pf_block_params *b = &m->P.blocks[i];
        b->qkv_w16 = w16(m, b->qkv_w), b->proj_w16 = w16(m, b->proj_w);
        b->fc1_w16 = w16(m, b->fc1_w), b->fc2_w16 = w16(m, b->fc2_w);
    }
    return PF_OK;
}

/* cols -> patch embedding -> tokens -> blocks -> final norm into out (B, 1+n, C). */
static pf_status encoder_forward(pf_vit *m, const float *images, const int64_t *ids, int64_t B,
                                 int64_t n, float *out) {
    const pf_vit_config *c = &m->cfg;
    TRY(refresh_w16(m));
    const int64_t C = c->embed_dim, T = 1 + n;
    const pf_block_dims E = enc_dims(m, B, n);
    PROF(PF_PROF_TOKENS, pf_im2col(m->cols, images, ids, B, n, c->img_size, c->patch_size));
    PROF(PF_PROF_LINEAR_FWD, TRY(pf_linear_forward(m->emb, m->cols, NULL, m->P.patch_w, w16(m, m->P.patch_w), m->P.patch_b, B * n, m->d, C, m->dtype)));
    PROF(PF_PROF_TOKENS, pf_tokens_forward(m->x0, m->emb, m->P.cls, m->P.pos, ids, B, n, C));
    const float *x = m->x0;
    for (int l = 0; l < c->depth; l++) {
        TRY(pf_block_forward(&m->enc[l], x, &m->P.blocks[l], E, m->dtype));
        x = m->enc[l].out;
    }
    PROF(PF_PROF_LN_FWD, pf_layernorm_forward(out, m->norm_mean, m->norm_rstd, x, m->P.norm_w, m->P.norm_b, B * T, C, LN_EPS));
    return PF_OK;
}

/* ids_keep (B, n): every value in [0, N), no repeats within a row. */
static pf_status check_ids(const pf_vit *m, const int64_t *ids, int64_t B, int64_t n) {
    if (n < 1 || n > m->N)
        return pf_fail(PF_EINVAL, "ids_keep must keep between 1 and %lld patches, got %lld",
                       (long long)m->N, (long long)n);
    uint8_t *seen = calloc((size_t)m->N, 1);
    if (!seen) return pf_fail(PF_ENOMEM, "vit: out of memory");
    pf_status st = PF_OK;
    for (int64_t b = 0; b < B && st == PF_OK; b++) {
        memset(seen, 0, (size_t)m->N);
        for (int64_t j = 0; j < n; j++) {
            const int64_t id = ids[b * n + j];
            if (id < 0 || id >= m->N) {
                st = pf_fail(PF_EINVAL, "ids_keep[%lld, %lld] = %lld is outside [0, %lld)",
                             (long long)b, (long long)j, (long long)id, (long long)m->N);
                break;
            }
            if (seen[id]++) {
                st = pf_fail(PF_EINVAL, "ids_keep[%lld] keeps patch %lld twice", (long long)b, (long long)id);
                break;
            }
        }
    }
    free(seen);
    return st;
}

/* ids_restore (B, N): MAE's inverse permutation of ids_keep (B, n), i.e. each row a permutation
 * of [0, N) with ids_restore[b, ids_keep[b, i]] == i, so that ids_restore[b, j] < n exactly for
 * the kept patches j. */
static pf_status check_restore(const pf_vit *m, const int64_t *ids_restore, const int64_t *ids_keep, int64_t B,
                               int64_t n) {
    const int64_t N = m->N;
    uint8_t *seen = malloc((size_t)N);
    if (!seen) return pf_fail(PF_ENOMEM, "vit: out of memory");
    pf_status st = PF_OK;
    for (int64_t b = 0; b < B && st == PF_OK; b++) {
        memset(seen, 0, (size_t)N);
        for (int64_t j = 0; j < N && st == PF_OK; j++) {
            const int64_t r = ids_restore[b * N + j];
            if (r < 0 || r >= N)
                st = pf_fail(PF_EINVAL, "ids_restore[%lld, %lld] = %lld is outside [0, %lld)", (long long)b,
                             (long long)j, (long long)r, (long long)N);
            else if (seen[r]++)
                st = pf_fail(PF_EINVAL, "ids_restore[%lld] holds %lld twice: not a permutation", (long long)b,
                             (long long)r);
            else if (r < n && ids_keep[b * n + r] != j)
                st = pf_fail(PF_EINVAL, "ids_restore does not match ids_keep: ids_restore[%lld, %lld] = %lld, but "
                             "ids_keep[%lld, %lld] = %lld (want ids_restore[b, ids_keep[b, i]] == i)", (long long)b,
                             (long long)j, (long long)r, (long long)b, (long long)r, (long long)ids_keep[b * n + r]);
        }
    }
    free(seen);
    return st;
}

/* The last forward's mask (B, N), 1 = removed, from ids_restore (B, N) when given (>= n) or
 * else from ids_keep (B, n); and its loss weights (B, N): weights, or the mask (MAE's loss). */
static void set_loss_mask(pf_vit *m, const int64_t *ids_keep, const int64_t *ids_restore, const float *weights,
                          int64_t B, int64_t n) {
    const int64_t N = m->N;
    if (ids_restore) {
        for (int64_t i = 0; i < B * N; i++) m->mask[i] = ids_restore[i] >= n;
    } else {
        memset(m->mask, 1, (size_t)(B * N));
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < n; j++) m->mask[b * N + ids_keep[b * n + j]] = 0;
    }
    for (int64_t i = 0; i < B * N; i++) m->weights[i] = weights ? weights[i] : (float)m->mask[i];
}

/* enc_out (B, 1+n, C) -> decoder_embed -> mask tokens, grid order -> blocks -> norm -> pred (B, 1+N, d). */
static pf_status decoder_forward(pf_vit *m, int64_t B, int64_t n) {
    const pf_vit_config *c = &m->cfg;
    const int64_t N = m->N, T = 1 + n, Cd = c->dec_embed_dim, N1 = 1 + N;
    PROF(PF_PROF_LINEAR_FWD, TRY(pf_linear_forward(m->dec_in, m->enc_out, NULL, m->P.dec_embed_w, w16(m, m->P.dec_embed_w), m->P.dec_embed_b,
                                                   B * T, c->embed_dim, Cd, m->dtype)));
    PROF(PF_PROF_TOKENS, pf_unshuffle_forward(m->full0, m->dec_in, m->P.mask_token, m->P.dec_pos, m->ids, m->mask, B, n, N, Cd));
    const pf_block_dims D = dec_dims(m, B);
    const float *x = m->full0;
    for (int l = 0; l < c->dec_depth; l++) {
        TRY(pf_block_forward(&m->dec[l], x, &m->P.dec_blocks[l], D, m->dtype));
        x = m->dec[l].out;
    }
    PROF(PF_PROF_LN_FWD, pf_layernorm_forward(m->dn, m->dn_mean, m->dn_rstd, x, m->P.dec_norm_w, m->P.dec_norm_b, B * N1, Cd, LN_EPS));
    PROF(PF_PROF_LINEAR_FWD, TRY(pf_linear_forward(m->pred, m->dn, NULL, m->P.dec_pred_w, w16(m, m->P.dec_pred_w), m->P.dec_pred_b, B * N1, Cd, m->d, m->dtype)));
    return PF_OK;
}

/* images (B, 3, S, S), ids_keep (B, n), ids_restore (B, N) | NULL, target (B, N, d) | NULL,
 * weights (B, N) | NULL -> *loss; phases: checks, loss mask, encoder, decoder, loss (vit.h). */
pf_status pf_vit_forward(pf_vit *m, const float *images, const int64_t *ids_keep, int64_t B, int64_t n,
                         const int64_t *ids_restore, const float *target, const float *weights, double *loss) {
    const pf_vit_config *c = &m->cfg;
    m->have_forward = FWD_NONE; /* a failed forward leaves nothing for backward */
    if (c->encoder_only)
        return pf_fail(PF_EUNSUPPORTED, "this model is an encoder only: it has no decoder for the MAE loss");
    TRY(check_ids(m, ids_keep, B, n));
    if (ids_restore) TRY(check_restore(m, ids_restore, ids_keep, B, n));
    TRY(ensure_acts(m, B, n, 1));
    const int64_t N = m->N;
    memcpy(m->ids, ids_keep, (size_t)(B * n) * sizeof(int64_t));
    set_loss_mask(m, ids_keep, ids_restore, weights, B, n);

    TRY(encoder_forward(m, images, m->ids, B, n, m->enc_out));
    TRY(decoder_forward(m, B, n));
    PROF(PF_PROF_LOSS, {
        if (target) memcpy(m->target, target, (size_t)(B * N * m->d) * sizeof(float));
        else pf_patchify(m->target, images, B, c->img_size, c->patch_size);
        if (c->norm_pix_loss) pf_norm_pix_target(m->target, B * N, m->d);
        *loss = pf_patch_loss_forward(m->pred, m->target, m->weights, B, N, m->d, 1);
    });
    m->have_forward = FWD_DECODER;
    return PF_OK;
}

/* The last forward's encoder output (B, 1+n, C); NULL before one. */
const float *pf_vit_latent(const pf_vit *m, int64_t *B, int64_t *T, int64_t *C) {
    if (m->have_forward != FWD_DECODER) return NULL;
    *B = m->aB, *T = 1 + m->an, *C = m->cfg.embed_dim;
    return m->enc_out;
}

/* The last forward's prediction (B, 1+N, d), cls row first; NULL before one. */
const float *pf_vit_pred(const pf_vit *m, int64_t *B, int64_t *N, int64_t *d) {
    if (m->have_forward != FWD_DECODER) return NULL;
    *B = m->aB, *N = m->N, *d = m->d;
    return m->pred;
}

/* images (B, 3, S, S), ids (B, n) -> out (B, 1+n, C): the encoder on the kept patches. */
pf_status pf_vit_encode_ids(pf_vit *m, const float *images, const int64_t *ids, int64_t B, int64_t n,
                            float *out) {
    m->have_forward = FWD_NONE;
    TRY(check_ids(m, ids, B, n));
    TRY(ensure_acts(m, B, n, 0));
    memcpy(m->ids, ids, (size_t)(B * n) * sizeof(int64_t));
    TRY(encoder_forward(m, images, m->ids, B, n, out));
    m->enc_all = 0, m->have_forward = FWD_ENCODER;
    return PF_OK;
}

/* Backward through a stack of blocks: dres (the gradient of the last block's output) in *g
 * -> the gradient of the first block's input, returned in *g (buffers are swapped). */
static pf_status blocks_backward(pf_vit *m, float **g, float **spare, const float *x_in,
                                 pf_block_acts *acts, pf_block_params *P, pf_block_params *dP,
                                 int depth, pf_block_dims dims) {
    for (int l = depth - 1; l >= 0; l--) {
        const float *x = l ? acts[l - 1].out : x_in;
        TRY(pf_block_backward(*spare, &dP[l], *g, x, &acts[l], &P[l], dims, m->scratch, m->dtype));
        float *t = *g;
        *g = *spare, *spare = t;
    }
    return PF_OK;
}

/* g (B, 1+n, C): the gradient on the encoder's output (after its final norm) -> parameter
 * gradients +=, and dcols (B, n, d) += the kept patches' pixel gradients when not NULL.
 * g and spare are the two ping-pong buffers; ids as in the forward (NULL: every patch). */
static pf_status encoder_backward(pf_vit *m, float *g, float *spare, const int64_t *ids, float *dcols) {
    const pf_vit_config *c = &m->cfg;
    const int64_t B = m->aB, n = m->an, T = 1 + n, C = c->embed_dim, d = m->d;
    vit_ptrs *P = &m->P, *dP = &m->dP;
    memset(spare, 0, (size_t)(B * T * C) * sizeof(float));
    const float *enc_last = c->depth ? m->enc[c->depth - 1].out : m->x0;
    PROF(PF_PROF_LN_BWD, TRY(pf_layernorm_backward(spare, dP->norm_w, dP->norm_b, g, enc_last, P->norm_w, m->norm_mean,
                                                   m->norm_rstd, B * T, C)));
    float *t = g;
    g = spare, spare = t;
    TRY(blocks_backward(m, &g, &spare, m->x0, m->enc, P->blocks, dP->blocks, (int)c->depth, enc_dims(m, B, n)));

    memset(spare, 0, (size_t)(B * n * C) * sizeof(float));
    PROF(PF_PROF_TOKENS, pf_tokens_backward(spare, dP->cls, c->learned_pos ? dP->pos : NULL, g, ids, B, n, C));
    PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(dcols, dP->patch_w, dP->patch_b, spare, NULL, m->cols, NULL, P->patch_w, w16(m, P->patch_w), B * n, d, C, m->dtype, PF_GRAD_ADD)));
    return PF_OK;
}

/* The last forward's loss -> gradients +=; dlatent (B, 1+n, C) | NULL added on the encoder's
 * output; dcols (B, n, d) | NULL += pixel gradients: decoder, then encoder_backward. */
pf_status pf_vit_backward(pf_vit *m, const float *dlatent, float *dcols) {
    if (m->have_forward != FWD_DECODER) return pf_fail(PF_EINVAL, "backward() needs a forward() first");
    const pf_vit_config *c = &m->cfg;
    const int64_t B = m->aB, n = m->an, N = m->N, T = 1 + n, N1 = 1 + N;
    const int64_t C = c->embed_dim, Cd = c->dec_embed_dim, d = m->d;
    const pf_block_dims D = dec_dims(m, B);
    vit_ptrs *P = &m->P, *dP = &m->dP;
    float *g = m->gA, *spare = m->gB;

    memset(g, 0, (size_t)(B * N1 * d) * sizeof(float));
    PROF(PF_PROF_LOSS, pf_patch_loss_backward(g, m->pred, m->target, m->weights, B, N, d, 1, 1.0f));
    PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(spare, dP->dec_pred_w, dP->dec_pred_b, g, NULL, m->dn, NULL, P->dec_pred_w, w16(m, P->dec_pred_w), B * N1, Cd, d, m->dtype, PF_GRAD_SET)));
    memset(g, 0, (size_t)(B * N1 * Cd) * sizeof(float));
    const float *dec_last = c->dec_depth ? m->dec[c->dec_depth - 1].out : m->full0;
    PROF(PF_PROF_LN_BWD, TRY(pf_layernorm_backward(g, dP->dec_norm_w, dP->dec_norm_b, spare, dec_last, P->dec_norm_w,
                                                   m->dn_mean, m->dn_rstd, B * N1, Cd)));
    TRY(blocks_backward(m, &g, &spare, m->full0, m->dec, P->dec_blocks, dP->dec_blocks, (int)c->dec_depth, D));

    memset(spare, 0, (size_t)(B * T * Cd) * sizeof(float));
    PROF(PF_PROF_TOKENS, pf_unshuffle_backward(spare, dP->mask_token, c->learned_pos ? dP->dec_pos : NULL, g,
                                               m->ids, m->mask, B, n, N, Cd));
    PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(g, dP->dec_embed_w, dP->dec_embed_b, spare, NULL, m->enc_out, NULL, P->dec_embed_w, w16(m, P->dec_embed_w), B * T, C, Cd, m->dtype, PF_GRAD_SET)));
    if (dlatent) pf_add_inplace(g, dlatent, B * T * C);
    return encoder_backward(m, g, spare, m->ids, dcols);
}

/* images (B, 3, S, S) -> out (B, 1+N, C): the encoder on every patch. */
pf_status pf_vit_encode(pf_vit *m, const float *images, int64_t B, float *out) {
    m->have_forward = FWD_NONE;
    TRY(ensure_acts(m, B, m->N, 0));
    TRY(encoder_forward(m, images, NULL, B, m->N, out));
    m->enc_all = 1, m->have_forward = FWD_ENCODER;
    return PF_OK;
}

/* dout (B, T, C) on the last encode's output -> gradients +=, dcols (B, T-1, d) | NULL +=. */
pf_status pf_vit_encoder_backward(pf_vit *m, const float *dout, int64_t B, int64_t T, float *dcols) {
    if (m->have_forward != FWD_ENCODER)
        return pf_fail(PF_EINVAL, "encoder_backward() needs an encode() first");
    if (B != m->aB || T != 1 + m->an)
        return pf_fail(PF_EINVAL, "encoder_backward(): the gradient is for %lld images of %lld tokens, the last "
                       "encode() ran %lld of %lld", (long long)B, (long long)T, (long long)m->aB, (long long)(1 + m->an));
    const int64_t n = m->aB * (1 + m->an) * m->cfg.embed_dim;
    memcpy(m->gA, dout, (size_t)n * sizeof(float));
    return encoder_backward(m, m->gA, m->gB, m->enc_all ? NULL : m->ids, dcols);
}
