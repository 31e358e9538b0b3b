/* patches.c: patch statistics and PaCo-FR's patch substitution P^ = mu + sigma * t. */
#include <string.h>
#include "core/common.h"
#include "layers/layers.h"
#include "paco/patches.h"

/* x (rows, d) -> xn (rows, d), mu (rows), sigma (rows): MAE's norm_pix_loss normalisation. */
void pf_patch_stats(float *xn, float *mu, float *sigma, const float *x, int64_t rows, int64_t d) {
    if (xn != x) memcpy(xn, x, (size_t)(rows * d) * sizeof(float));
    pf_norm_pix_target_stats(xn, mu, sigma, rows, d);
}

/* images (B, 3, S, S) in place; t (B, s, d) in (p, q, c) order; mu, sigma (B, s); subst (B, s). */
void pf_substitute(float *images, const float *t, const float *mu, const float *sigma,
                   const int64_t *subst, int64_t B, int64_t s, int64_t S, int64_t p) {
    const int64_t G = S / p, d = p * p * 3;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * s * d > 65536)
    for (int64_t bj = 0; bj < B * s; bj++) {
        const int64_t b = bj / s, g = subst[bj], gy = g / G, gx = g % G;
        const float *tv = t + bj * d;
        const float m = mu[bj], sd = sigma[bj];
        for (int64_t c = 0; c < 3; c++)
            for (int64_t i = 0; i < p; i++) {
                float *row = images + ((b * 3 + c) * S + gy * p + i) * S + gx * p;
                for (int64_t j = 0; j < p; j++) row[j] = m + sd * tv[(i * p + j) * 3 + c];
            }
    }
}

/* dt (B, s, d) += sigma * dcols[b, pos[b, j]] from (c, kh, kw) to (p, q, c) order; dcols (B, n, d). */
void pf_substitute_backward(float *dt, const float *dcols, const float *sigma, const int64_t *pos,
                            int64_t B, int64_t s, int64_t n, int64_t p) {
    const int64_t d = p * p * 3, pp = p * p;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * s * d > 65536)
    for (int64_t bj = 0; bj < B * s; bj++) {
        const int64_t b = bj / s;
        const float *dc = dcols + (b * n + pos[bj]) * d;
        float *o = dt + bj * d;
        const float sd = sigma[bj];
        for (int64_t c = 0; c < 3; c++)
            for (int64_t q = 0; q < pp; q++) o[q * 3 + c] += sd * dc[c * pp + q];
    }
}
