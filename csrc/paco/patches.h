/* patches.h: PaCo-FR patch statistics and substitution (docs/method.md §2): per-patch
 * normalisation, P^ = mu + sigma t written into the images, and its backward.
 *
 * Conventions as csrc/layers: row-major, backward functions ACCUMULATE (+=), a NULL gradient
 * pointer is skipped. Patch vectors are in (p, q, c) order, length d = p*p*3. */
#ifndef PF_PATCHES_H
#define PF_PATCHES_H

#include <stdint.h>
#include "pf.h"

/* x (rows, d) -> xn (rows, d) = (x - mu) / sigma, mu (rows), sigma (rows) = sqrt(unbiased var + 1e-6). */
void pf_patch_stats(float *xn, float *mu, float *sigma, const float *x, int64_t rows, int64_t d);
/* images (B, 3, S, S) in place: patch subst[b, j] (grid index) = mu[b, j] + sigma[b, j] * t[b, j]
 * for t (B, s, d) in (p, q, c) order. */
void pf_substitute(float *images, const float *t, const float *mu, const float *sigma,
                   const int64_t *subst, int64_t B, int64_t s, int64_t S, int64_t p);
/* dt (B, s, d) += sigma[b, j] * dcols[b, pos[b, j]] reordered from im2col (c, kh, kw) to
 * (p, q, c); dcols (B, n, d); pos (B, s): each substituted patch's place in ids_keep. */
void pf_substitute_backward(float *dt, const float *dcols, const float *sigma, const int64_t *pos,
                            int64_t B, int64_t s, int64_t n, int64_t p);

#endif
