/* patch.c: images <-> patches. Two orders, kept explicit:
 *   im2col for the patch-embedding conv: (c, kh, kw), timm's weight (C, 3, p, p) flattened;
 *   patchify for MAE's reconstruction target: (p, q, c) = (kh, kw, c). */
#include "core/common.h"
#include "layers/patch.h"

/* images (B, 3, S, S) -> cols (B, n, 3*p*p) in (c, kh, kw) order for patches ids[b, j]
 * (row-major grid index; ids NULL: all G*G patches in grid order, n = G*G). */
void pf_im2col(float *cols, const float *images, const int64_t *ids, int64_t B, int64_t n,
               int64_t S, int64_t p) {
    const int64_t G = S / p, d = 3 * p * p;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * n * d > 65536)
    for (int64_t bj = 0; bj < B * n; bj++) {
        const int64_t b = bj / n, j = bj % n;
        const int64_t id = ids ? ids[bj] : j, gy = id / G, gx = id % G;
        float *col = cols + bj * d;
        for (int64_t c = 0; c < 3; c++)
            for (int64_t kh = 0; kh < p; kh++) {
                const float *src = images + ((b * 3 + c) * S + gy * p + kh) * S + gx * p;
                for (int64_t kw = 0; kw < p; kw++) *col++ = src[kw];
            }
    }
}

/* images (B, 3, S, S) -> out (B, G*G, p*p*3) in (p, q, c) order (MAE's patchify). */
void pf_patchify(float *out, const float *images, int64_t B, int64_t S, int64_t p) {
    const int64_t G = S / p, N = G * G, d = 3 * p * p;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * N * d > 65536)
    for (int64_t bi = 0; bi < B * N; bi++) {
        const int64_t b = bi / N, i = bi % N, gy = i / G, gx = i % G;
        float *o = out + bi * d;
        for (int64_t kh = 0; kh < p; kh++)
            for (int64_t kw = 0; kw < p; kw++)
                for (int64_t c = 0; c < 3; c++)
                    *o++ = images[((b * 3 + c) * S + gy * p + kh) * S + gx * p + kw];
    }
}

/* patches (B, G*G, p*p*3) in (p, q, c) order -> images (B, 3, S, S): the inverse of patchify. */
void pf_unpatchify(float *images, const float *patches, int64_t B, int64_t S, int64_t p) {
    const int64_t G = S / p, N = G * G, d = 3 * p * p;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * N * d > 65536)
    for (int64_t bi = 0; bi < B * N; bi++) {
        const int64_t b = bi / N, i = bi % N, gy = i / G, gx = i % G;
        const float *src = patches + bi * d;
        for (int64_t kh = 0; kh < p; kh++)
            for (int64_t kw = 0; kw < p; kw++)
                for (int64_t c = 0; c < 3; c++)
                    images[((b * 3 + c) * S + gy * p + kh) * S + gx * p + kw] = *src++;
    }
}
