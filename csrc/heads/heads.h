/* heads.h: the losses of the downstream heads (docs/evaluation.md), on per-patch linear outputs laid out
 * (B, N, p*p*X) with each patch's p*p pixels in row-major (py, px) order and X values per
 * pixel: X = L landmark heatmaps (alignment) or K class logits (parsing). Pixel (py, px) of
 * patch i = gy*G + gx sits at image row gy*p + py, column gx*p + px. Coordinates are in pixels
 * with pixel centres at 0..S-1. Backward functions accumulate (+=). */
#ifndef PF_HEADS_H
#define PF_HEADS_H

#include <stdint.h>
#include "pf.h"

/* logits (B, G*G, p*p*L) -> coords (B, L, 2): each landmark's soft-argmax, the mean (x, y)
 * under the softmax of its heatmap over all S*S pixels; lse (B, L): log-sum-exp, kept for the
 * backward. */
void pf_softargmax_forward(float *coords, float *lse, const float *logits, int64_t B, int64_t G,
                           int64_t p, int64_t L);
/* dcoords (B, L, 2) -> dlogits (B, G*G, p*p*L) +=: d x_bar / d logit_j = prob_j (x_j - x_bar). */
void pf_softargmax_backward(float *dlogits, const float *dcoords, const float *logits, const float *lse,
                            const float *coords, int64_t B, int64_t G, int64_t p, int64_t L);

/* pred, target (B, L, 2); weight (B, L) or NULL (all 1) -> the mean absolute coordinate error
 * over weighted points, divided by scale: sum w (|dx| + |dy|) / (2 scale sum w); 0 when no
 * point has weight. */
double pf_l1_points_forward(const float *pred, const float *target, const float *weight, int64_t B,
                            int64_t L, float scale);
/* dpred (B, L, 2) += dloss * w sign(pred - target) / (2 scale sum w). */
void pf_l1_points_backward(float *dpred, const float *pred, const float *target, const float *weight,
                           int64_t B, int64_t L, float scale, float dloss);

/* logits (B, G*G, p*p*K), labels (B, S, S) in [0, K) or == ignore -> *loss = mean over the
 * labelled pixels of -log softmax(logits)[label]; *count = labelled pixels. Fails on a label
 * outside [0, K) that is not ignore. */
pf_status pf_pixel_ce_forward(double *loss, int64_t *count, const float *logits, const int64_t *labels,
                              int64_t B, int64_t G, int64_t p, int64_t K, int64_t ignore);
/* dlogits (B, G*G, p*p*K) += dloss (softmax - onehot) / count on labelled pixels. */
void pf_pixel_ce_backward(float *dlogits, const float *logits, const int64_t *labels, int64_t B, int64_t G,
                          int64_t p, int64_t K, int64_t ignore, float dloss);
/* logits (B, G*G, p*p*K) -> probs (B, K, S, S): the per-pixel softmax, un-patchified. */
void pf_pixel_softmax(float *probs, const float *logits, int64_t B, int64_t G, int64_t p, int64_t K);

/* in (B, G*G, q*q*K) coarse per-patch logits -> out (B, G*G, p*p*K), p = q*u: the coarse map
 * (S/u side) upsampled u times, bilinear with half-pixel centres and edge clamping
 * (torch.nn.functional.interpolate, align_corners=False); both in the per-patch layout. */
void pf_upsample_patches_forward(float *out, const float *in, int64_t B, int64_t G, int64_t q, int64_t u,
                                 int64_t K);
/* dout (B, G*G, p*p*K) -> din (B, G*G, q*q*K) += the adjoint of the upsampling. */
void pf_upsample_patches_backward(float *din, const float *dout, int64_t B, int64_t G, int64_t q, int64_t u,
                                  int64_t K);

#endif
