/* layers.h: forward/backward pairs of every ViT layer.
 *
 * Conventions (csrc/README.md): row-major; R = rows (B*T), C = width. Backward functions
 * ACCUMULATE (+=) into every gradient buffer; the caller zeroes them once. A NULL gradient
 * pointer means "not needed" and is skipped. Matrix products go through pf_gemm with the
 * layer's dtype (PF_BF16: bf16 inputs, fp32 accumulation). */
#ifndef PF_LAYERS_H
#define PF_LAYERS_H

#include <stdint.h>
#include "pf.h"

/* ---- linear.c ---- */
pf_status pf_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                            int64_t R, int64_t IC, int64_t OC, pf_dtype dt);
pf_status pf_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, int64_t R, int64_t IC,
                             int64_t OC, pf_dtype dt);

/* ---- layernorm.c ---- */
void pf_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, int64_t R, int64_t C, float eps);
pf_status pf_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                                const float *inp, const float *w, const float *mean,
                                const float *rstd, int64_t R, int64_t C);

/* ---- gelu.c (exact, erf) ---- */
void pf_gelu_forward(float *out, const float *inp, int64_t n);
void pf_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n);

/* ---- attention.c ---- */
pf_status pf_attention_forward(float *out, float *att, const float *qkv, int64_t B, int64_t T,
                               int64_t C, int64_t NH, pf_dtype dt);
pf_status pf_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                const float *att, int64_t B, int64_t T, int64_t C, int64_t NH,
                                pf_dtype dt);

/* ---- residual.c ---- */
void pf_add_forward(float *out, const float *a, const float *b, int64_t n);
void pf_add_inplace(float *acc, const float *x, int64_t n);

/* ---- patch.c ---- */
void pf_im2col(float *cols, const float *images, const int64_t *ids, int64_t B, int64_t n,
               int64_t S, int64_t p);
void pf_patchify(float *out, const float *images, int64_t B, int64_t S, int64_t p);
void pf_unpatchify(float *images, const float *patches, int64_t B, int64_t S, int64_t p);

/* ---- tokens.c ---- */
void pf_tokens_forward(float *x, const float *emb, const float *cls, const float *pos,
                       const int64_t *ids, int64_t B, int64_t n, int64_t C);
void pf_tokens_backward(float *demb, float *dcls, float *dpos, const float *dx,
                        const int64_t *ids, int64_t B, int64_t n, int64_t C);
void pf_unshuffle_forward(float *full, const float *x, const float *mask_token, const float *pos,
                          const int64_t *ids_keep, const uint8_t *mask, int64_t B, int64_t n,
                          int64_t N, int64_t C);
void pf_unshuffle_backward(float *dx, float *dmask_token, float *dpos, const float *dfull,
                           const int64_t *ids_keep, const uint8_t *mask, int64_t B, int64_t n,
                           int64_t N, int64_t C);

/* ---- loss.c ---- */
void pf_norm_pix_target(float *target, int64_t R, int64_t d);
void pf_norm_pix_target_stats(float *target, float *mu, float *sigma, int64_t R, int64_t d);
double pf_patch_loss_forward(const float *pred, const float *target, const float *weight,
                             int64_t B, int64_t N, int64_t d, int64_t pred_row0);
void pf_patch_loss_backward(float *dpred, const float *pred, const float *target, const float *weight,
                            int64_t B, int64_t N, int64_t d, int64_t pred_row0, float dloss);
/* MAE's: weight 1 on removed patches (mask = 1); NaN / no-op when out of memory. */
double pf_mae_loss_forward(const float *pred, const float *target, const uint8_t *mask,
                           int64_t B, int64_t N, int64_t d, int64_t pred_row0);
void pf_mae_loss_backward(float *dpred, const float *pred, const float *target,
                          const uint8_t *mask, int64_t B, int64_t N, int64_t d,
                          int64_t pred_row0, float dloss);
double pf_cross_entropy_forward(float *probs, const float *logits, const int64_t *targets,
                                int64_t R, int64_t K);
void pf_cross_entropy_backward(float *dlogits, const float *probs, const int64_t *targets,
                               int64_t R, int64_t K, float dloss);
double pf_mse_forward(const float *x, const float *target, int64_t n);
void pf_mse_backward(float *dx, const float *x, const float *target, int64_t n, float dloss);

#endif
