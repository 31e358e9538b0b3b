/* vit_memory.c: the ViT's memory: the parameter table (every tensor's name, shape and offset in
 * MAE's state-dict order, walked once to size and again to carve the flat parameter and gradient
 * buffers), create / free and the accessors, the activations' sizes table and carving, and the
 * bf16 copy of the weights. The compute that uses them is vit.c. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "core/bf16.h"
#include "core/common.h"
#include "model/vit_memory.h"

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

/* Every activation for B images, n kept patches (T = 1+n tokens), with or without the decoder,
 * plus the gradient buffers backward needs. Returns the floats used. Encoder: cols (B, n, d),
 * emb (B, n, C), x0 and enc_out (B, T, C), norm_mean / norm_rstd (B, T), each block's acts (B, T, C
 * and wider). Decoder: dec_in (B, T, Cd), full0 and dn (B, 1+N, Cd), dn_mean / dn_rstd (B, 1+N),
 * pred (B, 1+N, d), target (B, N, d). gA, gB: the largest gradient of either; scratch: one block's. */
static int64_t carve_acts(pf_vit *m, carver *k, int64_t B, int64_t n, int dec) {
    const pf_vit_config *c = &m->cfg;
    const pf_block_dims E = pf_vit_enc_dims(m, B, n), D = pf_vit_dec_dims(m, B);
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
pf_status pf_vit_ensure_acts(pf_vit *m, int64_t B, int64_t n, int dec) {
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

/* ---------------------------------------------------------------- bf16 weight cache */

/* bf16: every weight converted once for this forward and its backward (not per GEMM). */
pf_status pf_vit_refresh_w16(pf_vit *m) {
    if (m->dtype != PF_BF16) return PF_OK;
    if (!m->params16 && !(m->params16 = pf_malloc((size_t)m->nparams * sizeof(uint16_t))))
        return pf_fail(PF_ENOMEM, "vit: out of memory for the bf16 weights");
    pf_to_bf16(m->params, m->params16, m->nparams);
    const int nb = m->cfg.depth + (m->cfg.encoder_only ? 0 : m->cfg.dec_depth);
    for (int i = 0; i < nb; i++) {
        pf_block_params *b = &m->P.blocks[i];
        b->qkv_w16 = pf_vit_w16(m, b->qkv_w), b->proj_w16 = pf_vit_w16(m, b->proj_w);
        b->fc1_w16 = pf_vit_w16(m, b->fc1_w), b->fc2_w16 = pf_vit_w16(m, b->fc2_w);
    }
    return PF_OK;
}