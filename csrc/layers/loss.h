/* loss.h: reconstruction and classification losses: norm-pix targets, weighted patch MSE, MAE's loss,
 * cross-entropy, MSE.
 * rows: the row count, C the width; backward functions accumulate (+=) into gradients (layers/layers.h). */
#ifndef PF_LAYERS_LOSS_H
#define PF_LAYERS_LOSS_H

#include <stdint.h>
#include "pf.h"

void pf_norm_pix_target(float *target, int64_t rows, int64_t d);
void pf_norm_pix_target_stats(float *target, float *mu, float *sigma, int64_t rows, int64_t d);
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
                                int64_t rows, int64_t K);
void pf_cross_entropy_backward(float *dlogits, const float *probs, const int64_t *targets,
                               int64_t rows, int64_t K, float dloss);
double pf_mse_forward(const float *x, const float *target, int64_t n);
void pf_mse_backward(float *dx, const float *x, const float *target, int64_t n, float dloss);

#endif
