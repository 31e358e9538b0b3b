/* vit.c: the MAE-style ViT encoder-decoder's compute: forward, backward, encode (its memory: vit_memory.c).
 *
 * Encoder (timm names): kept patches -> patch_embed -> + pos_embed -> [cls] -> blocks -> norm.
 * Decoder (MAE names): decoder_embed -> mask tokens at removed positions, grid order ->
 * + decoder_pos_embed -> decoder_blocks -> decoder_norm -> decoder_pred (p*p*3 per patch).
 * Loss: MAE's, mean squared error on removed patches against (normalised) pixel targets, or
 * PaCo-FR's weighted version over removed and substituted patches, against the clean
 * images' patches (or targets the caller patchified once). The PaCo-FR codebook and
 * belief MLP live in the same flat buffers (codebook.*, belief.*); csrc/paco/ uses them. */
#include <string.h>
#include "core/common.h"
#include "core/profile.h"
#include "layers/layers.h"
#include "model/vit_memory.h"

#define LN_EPS 1e-6f

/* ---------------------------------------------------------------- forward / backward */

/* cols -> patch embedding -> tokens -> blocks -> final norm into out (B, 1+n, C). */
static pf_status encoder_forward(pf_vit *m, const float *images, const int64_t *ids, int64_t B,
                                 int64_t n, float *out) {
    const pf_vit_config *c = &m->cfg;
    TRY(pf_vit_refresh_w16(m));
    const int64_t C = c->embed_dim, T = 1 + n;
    const pf_block_dims E = pf_vit_enc_dims(m, B, n);
    PROF(PF_PROF_TOKENS, pf_im2col(m->cols, images, ids, B, n, c->img_size, c->patch_size));
    const float *patch_w = m->P.patch_w;
    PROF(PF_PROF_LINEAR_FWD, TRY(pf_linear_forward(m->emb, m->cols, NULL, patch_w, pf_vit_w16(m, patch_w),
                                                   m->P.patch_b, B * n, m->d, C, m->dtype)));
    PROF(PF_PROF_TOKENS, pf_tokens_forward(m->x0, m->emb, m->P.cls, m->P.pos, ids, B, n, C));
    const float *x = m->x0;
    for (int l = 0; l < c->depth; l++) {
        TRY(pf_block_forward(&m->enc[l], x, &m->P.blocks[l], E, m->dtype));
        x = m->enc[l].out;
    }
    PROF(PF_PROF_LN_FWD,
         pf_layernorm_forward(out, m->norm_mean, m->norm_rstd, x, m->P.norm_w, m->P.norm_b, B * T, C, LN_EPS));
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

/* enc_out (B, 1+n, C) -> decoder_embed -> mask tokens, grid order -> blocks -> norm -> pred (B, 1+N, d).
 * Reads m->ids (B, n) and m->mask (B, N) of this forward. */
static pf_status decoder_forward(pf_vit *m, int64_t B, int64_t n) {
    const pf_vit_config *c = &m->cfg;
    const int64_t N = m->N, T = 1 + n, Cd = c->dec_embed_dim, N1 = 1 + N;
    const vit_ptrs *P = &m->P;
    PROF(PF_PROF_LINEAR_FWD, TRY(pf_linear_forward(m->dec_in, m->enc_out, NULL, P->dec_embed_w,
                                                   pf_vit_w16(m, P->dec_embed_w), P->dec_embed_b,
                                                   B * T, c->embed_dim, Cd, m->dtype)));
    PROF(PF_PROF_TOKENS,
         pf_unshuffle_forward(m->full0, m->dec_in, P->mask_token, P->dec_pos, m->ids, m->mask, B, n, N, Cd));
    const pf_block_dims D = pf_vit_dec_dims(m, B);
    const float *x = m->full0;
    for (int l = 0; l < c->dec_depth; l++) {
        TRY(pf_block_forward(&m->dec[l], x, &P->dec_blocks[l], D, m->dtype));
        x = m->dec[l].out;
    }
    PROF(PF_PROF_LN_FWD, pf_layernorm_forward(m->dn, m->dn_mean, m->dn_rstd, x, P->dec_norm_w, P->dec_norm_b,
                                              B * N1, Cd, LN_EPS));
    PROF(PF_PROF_LINEAR_FWD, TRY(pf_linear_forward(m->pred, m->dn, NULL, P->dec_pred_w, pf_vit_w16(m, P->dec_pred_w),
                                                   P->dec_pred_b, B * N1, Cd, m->d, m->dtype)));
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
    TRY(pf_vit_ensure_acts(m, B, n, 1));
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
    TRY(pf_vit_ensure_acts(m, B, n, 0));
    memcpy(m->ids, ids, (size_t)(B * n) * sizeof(int64_t));
    TRY(encoder_forward(m, images, m->ids, B, n, out));
    m->enc_all = 0, m->have_forward = FWD_ENCODER;
    return PF_OK;
}

/* Backward through a stack of blocks: dres (B, T, C) of dims, the gradient of the last block's
 * output, in *g -> the gradient of the first block's input x_in (B, T, C), returned in *g
 * (buffers are swapped); parameter gradients dP +=. */
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
    TRY(blocks_backward(m, &g, &spare, m->x0, m->enc, P->blocks, dP->blocks, (int)c->depth, pf_vit_enc_dims(m, B, n)));

    memset(spare, 0, (size_t)(B * n * C) * sizeof(float));
    PROF(PF_PROF_TOKENS, pf_tokens_backward(spare, dP->cls, c->learned_pos ? dP->pos : NULL, g, ids, B, n, C));
    PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(dcols, dP->patch_w, dP->patch_b, spare, NULL, m->cols, NULL,
                                                    P->patch_w, pf_vit_w16(m, P->patch_w), B * n, d, C, m->dtype,
                                                    PF_GRAD_ADD)));
    return PF_OK;
}

/* The last forward's loss -> gradients +=; dlatent (B, 1+n, C) | NULL added on the encoder's
 * output; dcols (B, n, d) | NULL += pixel gradients: decoder, then encoder_backward. */
pf_status pf_vit_backward(pf_vit *m, const float *dlatent, float *dcols) {
    if (m->have_forward != FWD_DECODER) return pf_fail(PF_EINVAL, "backward() needs a forward() first");
    const pf_vit_config *c = &m->cfg;
    const int64_t B = m->aB, n = m->an, N = m->N, T = 1 + n, N1 = 1 + N;
    const int64_t C = c->embed_dim, Cd = c->dec_embed_dim, d = m->d;
    const pf_block_dims D = pf_vit_dec_dims(m, B);
    vit_ptrs *P = &m->P, *dP = &m->dP;
    float *g = m->gA, *spare = m->gB;

    memset(g, 0, (size_t)(B * N1 * d) * sizeof(float));
    PROF(PF_PROF_LOSS, pf_patch_loss_backward(g, m->pred, m->target, m->weights, B, N, d, 1, 1.0f));
    PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(spare, dP->dec_pred_w, dP->dec_pred_b, g, NULL, m->dn, NULL,
                                                    P->dec_pred_w, pf_vit_w16(m, P->dec_pred_w), B * N1, Cd, d,
                                                    m->dtype, PF_GRAD_SET)));
    memset(g, 0, (size_t)(B * N1 * Cd) * sizeof(float));
    const float *dec_last = c->dec_depth ? m->dec[c->dec_depth - 1].out : m->full0;
    PROF(PF_PROF_LN_BWD, TRY(pf_layernorm_backward(g, dP->dec_norm_w, dP->dec_norm_b, spare, dec_last, P->dec_norm_w,
                                                   m->dn_mean, m->dn_rstd, B * N1, Cd)));
    TRY(blocks_backward(m, &g, &spare, m->full0, m->dec, P->dec_blocks, dP->dec_blocks, (int)c->dec_depth, D));

    memset(spare, 0, (size_t)(B * T * Cd) * sizeof(float));
    PROF(PF_PROF_TOKENS, pf_unshuffle_backward(spare, dP->mask_token, c->learned_pos ? dP->dec_pos : NULL, g,
                                               m->ids, m->mask, B, n, N, Cd));
    PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(g, dP->dec_embed_w, dP->dec_embed_b, spare, NULL, m->enc_out,
                                                    NULL, P->dec_embed_w, pf_vit_w16(m, P->dec_embed_w), B * T, C, Cd,
                                                    m->dtype, PF_GRAD_SET)));
    if (dlatent) pf_add_inplace(g, dlatent, B * T * C);
    return encoder_backward(m, g, spare, m->ids, dcols);
}

/* images (B, 3, S, S) -> out (B, 1+N, C): the encoder on every patch. */
pf_status pf_vit_encode(pf_vit *m, const float *images, int64_t B, float *out) {
    m->have_forward = FWD_NONE;
    TRY(pf_vit_ensure_acts(m, B, m->N, 0));
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
                       "encode() ran %lld of %lld", (long long)B, (long long)T, (long long)m->aB,
                       (long long)(1 + m->an));
    const int64_t n = m->aB * (1 + m->an) * m->cfg.embed_dim;
    memcpy(m->gA, dout, (size_t)n * sizeof(float));
    return encoder_backward(m, m->gA, m->gB, m->enc_all ? NULL : m->ids, dcols);
}
