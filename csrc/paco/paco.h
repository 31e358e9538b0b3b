/* paco.h: PaCo-FR's pieces beside the ViT (METHOD.md §2 and §4): patch statistics and
 * substitution, the codebook (nearest codes through GEMM, top-k mixture, EMA k-means,
 * initialisation, dead-code re-seeding) and the spatial consistency (affinity) loss.
 *
 * Conventions as csrc/layers: row-major, backward functions ACCUMULATE (+=), a NULL gradient
 * pointer is skipped. Patch vectors are in (p, q, c) order, length d = p*p*3. */
#ifndef PF_PACO_H
#define PF_PACO_H

#include <stdint.h>
#include "../pf.h"

/* ---- patches.c ---- */
/* x (R, d) -> xn (R, d) = (x - mu) / sigma, mu (R), sigma (R) = sqrt(unbiased var + 1e-6). */
void pf_patch_stats(float *xn, float *mu, float *sigma, const float *x, int64_t R, int64_t d);
/* images (B, 3, S, S) in place: patch subst[b, j] (grid index) = mu[b, j] + sigma[b, j] * t[b, j]
 * for t (B, s, d) in (p, q, c) order. */
void pf_substitute(float *images, const float *t, const float *mu, const float *sigma,
                   const int64_t *subst, int64_t B, int64_t s, int64_t S, int64_t p);
/* dt (B, s, d) += sigma[b, j] * dcols[b, pos[b, j]] reordered from im2col (c, kh, kw) to
 * (p, q, c); dcols (B, n, d); pos (B, s): each substituted patch's place in ids_keep. */
void pf_substitute_backward(float *dt, const float *dcols, const float *sigma, const int64_t *pos,
                            int64_t B, int64_t s, int64_t n, int64_t p);

/* ---- codebook.c ---- */
/* idx (R), dist (R) = the nearest code of each row of x (R, d) among C (K, d) and its squared
 * distance, through GEMM (|x|^2 - 2 x C^T + |C|^2) in row blocks; ties to the lower index. */
pf_status pf_codebook_nearest(int64_t *idx, float *dist, const float *x, const float *C, int64_t R,
                              int64_t K, int64_t d);
/* Top-k mixture: idx (R, k) the k largest logits (R, K) in descending order (ties to the lower
 * index), w (R, k) = softmax(top / tau), t (R, d) = sum_j w_j C[idx_j]; hard: t = C[idx_0]
 * (the backward still uses the soft mixture: straight-through). */
void pf_topk_mixture_forward(float *t, int64_t *idx, float *w, const float *logits, const float *C,
                             int64_t R, int64_t K, int64_t d, int64_t k, float tau, int hard);
/* dlogits (R, K) +=, dC (K, d) += from dt (R, d) through the soft mixture. */
void pf_topk_mixture_backward(float *dlogits, float *dC, const float *dt, const int64_t *idx,
                              const float *w, const float *C, int64_t R, int64_t K, int64_t d,
                              int64_t k, float tau);
/* EMA k-means: counts of assign (R) into ema_count (K), sums of x (R, d) into ema_sum (K, d),
 * both decayed; C (K, d) = ema_sum / Laplace-smoothed ema_count. */
void pf_codebook_ema(float *C, float *ema_count, float *ema_sum, const float *x, const int64_t *assign,
                     int64_t R, int64_t K, int64_t d, float decay, float eps);
/* Codes whose ema_count is below threshold * sum(ema_count) take a random row of x (R, d)
 * (chosen from key); their EMA state restarts at the mean count. Returns how many. */
int64_t pf_codebook_reseed(float *C, float *ema_count, float *ema_sum, const float *x, int64_t R,
                           int64_t K, int64_t d, float threshold, uint64_t key);
/* C (K, d) from rows of x (R, d): kmeanspp 0 = K random distinct rows (with repeats only when
 * R < K), 1 = k-means++ seeding (D^2 sampling). */
pf_status pf_codebook_init(float *C, const float *x, int64_t R, int64_t K, int64_t d, int kmeanspp,
                           uint64_t key);

/* ---- consistency.c ---- */
/* Spatial consistency. ys, yt (B, T, C): student and teacher tokens; valid (B, T) or NULL:
 * rows that take part. z = y / |y| per row, A = z z^T over valid rows, per image
 * L_b = mean over valid (i, j) of (A_ij - At_ij)^2; returns the mean of L_b over images with
 * a valid row. diff (B, T, T) keeps A - At for backward; zs (B, T, C) the student's z;
 * norms (B, T) the student's |y|. */
pf_status pf_affinity_loss_forward(double *loss, float *diff, float *zs, float *norms, const float *ys,
                                   const float *yt, const uint8_t *valid, int64_t B, int64_t T, int64_t C);
/* dys (B, T, C) += dloss * dL/dys. */
pf_status pf_affinity_loss_backward(float *dys, const float *diff, const float *zs, const float *norms,
                                    const uint8_t *valid, int64_t B, int64_t T, int64_t C, float dloss);
/* Region embeddings: out (B, G, C) = mean of the rows of y (B, T, C) whose region (B, T) is g;
 * count (B, G) rows per region (0: absent, out row 0). */
void pf_region_pool_forward(float *out, int64_t *count, const float *y, const int64_t *region, int64_t B,
                            int64_t T, int64_t C, int64_t G);
/* dy (B, T, C) += dout[b, region[b, t]] / count. */
void pf_region_pool_backward(float *dy, const float *dout, const int64_t *count, const int64_t *region,
                             int64_t B, int64_t T, int64_t C, int64_t G);
/* dst (n) = m * dst + (1 - m) * src: the EMA teacher. */
void pf_ema_update(float *dst, const float *src, int64_t n, float m);

#endif
