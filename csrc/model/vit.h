/* vit.h: the MAE-style ViT encoder-decoder (llm.c layout: flat parameter, gradient and
 * activation buffers carved by a sizes table). Names: encoder timm's, decoder MAE's. */
#ifndef PF_VIT_H
#define PF_VIT_H

#include <stdint.h>
#include "pf.h"

typedef struct {
    int64_t img_size, patch_size, embed_dim, depth, num_heads, mlp_hidden;
    int64_t dec_embed_dim, dec_depth, dec_num_heads, dec_mlp_hidden;
    int encoder_only;  /* no decoder parameters: encode only */
    int learned_pos;   /* position embeddings trained (else fixed 2-D sin-cos, no gradient) */
    int norm_pix_loss; /* per-patch normalised targets (MAE's norm_pix_loss) */
    int64_t codebook_size; /* K codes of length p*p*3 (PaCo-FR, codebook.weight); 0: none */
    int64_t belief_hidden; /* hidden width of the belief MLP (belief.fc1 / belief.fc2) */
} pf_vit_config;

typedef struct pf_vit pf_vit;

pf_status pf_vit_create(const pf_vit_config *cfg, pf_vit **out);
void pf_vit_free(pf_vit *m);
const pf_vit_config *pf_vit_get_config(const pf_vit *m);
int pf_vit_num_tensors(const pf_vit *m);
const pf_tensor *pf_vit_tensor(const pf_vit *m, int i);
int64_t pf_vit_num_params(const pf_vit *m);
float *pf_vit_params(pf_vit *m);
float *pf_vit_grads(pf_vit *m);
void pf_vit_zero_grad(pf_vit *m);
void pf_vit_set_dtype(pf_vit *m, pf_dtype dt);
int64_t pf_vit_acts_bytes(const pf_vit *m);

/* images (B, 3, S, S), ids_keep (B, n) distinct grid indices per row -> *loss, keeping the
 * activations for pf_vit_backward. The encoder sees images (which may carry substituted patches).
 *   ids_restore (B, N) int64 or NULL: MAE's inverse permutation of ids_keep (checked); when given,
 *       the removed patches are those with ids_restore >= n.
 *   target (B, N, d) or NULL: the reconstruction targets as clean patches in MAE's (kh, kw, c)
 *       order (what pf_patchify gives); NULL: the patches of images.
 *   weights (B, N) or NULL: the loss is sum_i w_i mse_i / sum_i w_i over every patch with
 *       w_i > 0; NULL: w = 1 on removed patches (MAE's loss). */
pf_status pf_vit_forward(pf_vit *m, const float *images, const int64_t *ids_keep, int64_t B, int64_t n,
                         const int64_t *ids_restore, const float *target, const float *weights, double *loss);
/* Gradients of the last forward's loss, accumulated into pf_vit_grads. dlatent (B, 1+n, C) or
 * NULL: the gradient of another loss with respect to the encoder's output tokens
 * (pf_vit_latent), added in; dcols (B, n, 3*p*p) or NULL: += the gradient with respect to the
 * kept patches' pixels, in im2col (c, kh, kw) order. */
pf_status pf_vit_backward(pf_vit *m, const float *dlatent, float *dcols);
/* The encoder's output of the last forward (B, 1+n, C), after its final norm; NULL before. */
const float *pf_vit_latent(const pf_vit *m, int64_t *B, int64_t *T, int64_t *C);
/* The decoder's prediction of the last forward (B, 1+N, d), row 0 of each image for the cls
 * token, then N patches in grid order; NULL before. */
const float *pf_vit_pred(const pf_vit *m, int64_t *B, int64_t *N, int64_t *d);
/* images (B, 3, S, S) -> out (B, 1+n, C): the encoder alone on the kept patches ids (B, n). */
pf_status pf_vit_encode_ids(pf_vit *m, const float *images, const int64_t *ids, int64_t B, int64_t n,
                            float *out);
/* images (B, 3, S, S) -> out (B, 1+N, C): the encoder on all patches, after its final norm.
 * pf_vit_encode and pf_vit_encode_ids keep their activations for pf_vit_encoder_backward. */
pf_status pf_vit_encode(pf_vit *m, const float *images, int64_t B, float *out);
/* dout (B, T = 1+n, C): the gradient on the output of the last encode / encode_ids -> parameter
 * gradients += (fine-tuning), and dcols (B, n, 3*p*p) += pixel gradients when not NULL. */
pf_status pf_vit_encoder_backward(pf_vit *m, const float *dout, int64_t B, int64_t T, float *dcols);

#endif
