/* codebook.h: the PaCo-FR codebook (docs/method.md §2): nearest codes through GEMM, the top-k
 * mixture forward/backward, EMA k-means, initialisation and dead-code re-seeding.
 *
 * Conventions as csrc/layers: row-major, backward functions ACCUMULATE (+=), a NULL gradient
 * pointer is skipped. Patch vectors are in (p, q, c) order, length d = p*p*3. */
#ifndef PF_CODEBOOK_H
#define PF_CODEBOOK_H

#include <stdint.h>
#include "pf.h"

/* idx (rows), dist (rows) = the nearest code of each row of x (rows, d) among C (K, d) and its squared
 * distance, through GEMM (|x|^2 - 2 x C^T + |C|^2) in row blocks; ties to the lower index. */
pf_status pf_codebook_nearest(int64_t *idx, float *dist, const float *x, const float *C, int64_t rows,
                              int64_t K, int64_t d);
/* Top-k mixture: idx (rows, k) the k largest logits (rows, K) in descending order (ties to the lower
 * index), w (rows, k) = softmax(top / tau), t (rows, d) = sum_j w_j C[idx_j]; hard: t = C[idx_0]
 * (the backward still uses the soft mixture: straight-through). */
void pf_topk_mixture_forward(float *t, int64_t *idx, float *w, const float *logits, const float *C,
                             int64_t rows, int64_t K, int64_t d, int64_t k, float tau, int hard);
/* dlogits (rows, K) +=, dC (K, d) += from dt (rows, d) through the soft mixture. */
void pf_topk_mixture_backward(float *dlogits, float *dC, const float *dt, const int64_t *idx,
                              const float *w, const float *C, int64_t rows, int64_t K, int64_t d,
                              int64_t k, float tau);
/* EMA k-means: counts of assign (rows) into ema_count (K), sums of x (rows, d) into ema_sum (K, d),
 * both decayed; C (K, d) = ema_sum / Laplace-smoothed ema_count. */
void pf_codebook_ema(float *C, float *ema_count, float *ema_sum, const float *x, const int64_t *assign,
                     int64_t rows, int64_t K, int64_t d, float decay, float eps);
/* Codes whose ema_count is below threshold * sum(ema_count) take a random row of x (rows, d)
 * (chosen from key); their EMA state restarts at the mean count. Returns how many. */
int64_t pf_codebook_reseed(float *C, float *ema_count, float *ema_sum, const float *x, int64_t rows,
                           int64_t K, int64_t d, float threshold, uint64_t key);
/* C (K, d) from rows of x (rows, d): kmeanspp 0 = K random distinct rows (with repeats only when
 * rows < K), 1 = k-means++ seeding (D^2 sampling). */
pf_status pf_codebook_init(float *C, const float *x, int64_t rows, int64_t K, int64_t d, int kmeanspp,
                           uint64_t key);

#endif
