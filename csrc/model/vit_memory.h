/* vit_memory.h: the ViT's memory, shared by vit_memory.c (which sizes and carves it) and vit.c
 * (which computes with it): the model struct, the parameter table, the activation buffers and
 * the bf16 weight cache. Private to csrc/model/: callers use vit.h. */
#ifndef PF_VIT_MEMORY_H
#define PF_VIT_MEMORY_H

#include <stdint.h>
#include "model/block.h"
#include "model/vit.h"

/* Pointers into one flat buffer (parameters or gradients), one per tensor of the table. */
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

/* Encoder block shapes for B images of 1 + n tokens. */
static inline pf_block_dims pf_vit_enc_dims(const pf_vit *m, int64_t B, int64_t n) {
    return (pf_block_dims){B, 1 + n, m->cfg.embed_dim, m->cfg.num_heads, m->cfg.mlp_hidden};
}

/* Decoder block shapes for B images of 1 + N tokens. */
static inline pf_block_dims pf_vit_dec_dims(const pf_vit *m, int64_t B) {
    return (pf_block_dims){B, 1 + m->N, m->cfg.dec_embed_dim, m->cfg.dec_num_heads, m->cfg.dec_mlp_hidden};
}

/* w (a tensor in m->params) -> its bf16 copy in m->params16 when the model runs in bf16, else NULL. */
static inline const uint16_t *pf_vit_w16(const pf_vit *m, const float *w) {
    return m->dtype == PF_BF16 && m->params16 ? m->params16 + (w - m->params) : NULL;
}

/* Make the activations fit B images, n kept patches, with (dec 1) or without the decoder:
 * every (B, T, C) buffer of the encoder, (B, 1+N, Cd) of the decoder, the gradient ping-pong
 * pair and one block's scratch, carved from one buffer; reallocated only when (B, n, dec) changed. */
pf_status pf_vit_ensure_acts(pf_vit *m, int64_t B, int64_t n, int dec);

/* params (nparams) -> params16 (nparams) bf16, and each block's w16 pointers into it, when the
 * model runs in bf16 (nothing in fp32): once per forward, shared by its backward. */
pf_status pf_vit_refresh_w16(pf_vit *m);

#endif
