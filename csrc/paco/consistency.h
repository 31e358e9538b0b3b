/* consistency.h: PaCo-FR's spatial consistency (docs/method.md §4): the affinity-matrix loss and
 * its backward, region pooling, and the EMA teacher update.
 *
 * Conventions as csrc/layers: row-major, backward functions ACCUMULATE (+=), a NULL gradient
 * pointer is skipped. Patch vectors are in (p, q, c) order, length d = p*p*3. */
#ifndef PF_CONSISTENCY_H
#define PF_CONSISTENCY_H

#include <stdint.h>
#include "pf.h"

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
/* Region embeddings: out (B, R, C) = mean of the rows of y (B, T, C) whose region (B, T) is r;
 * count (B, R) rows per region (0: absent, out row 0). */
void pf_region_pool_forward(float *out, int64_t *count, const float *y, const int64_t *region, int64_t B,
                            int64_t T, int64_t C, int64_t R);
/* dy (B, T, C) += dout[b, region[b, t]] / count. */
void pf_region_pool_backward(float *dy, const float *dout, const int64_t *count, const int64_t *region,
                             int64_t B, int64_t T, int64_t C, int64_t R);
/* dst (n) = m * dst + (1 - m) * src: the EMA teacher. */
void pf_ema_update(float *dst, const float *src, int64_t n, float m);

#endif
