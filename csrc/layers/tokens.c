/* tokens.c: assembling token sequences.
 *   encoder input: [cls + pos[0], emb_j + pos[1 + ids_j]] (MAE: embed, add pos, keep a subset);
 *   decoder input: the kept tokens put back at their grid positions, mask tokens elsewhere. */
#include <string.h>
#include "core/common.h"
#include "layers/tokens.h"

/* x (B, 1+n, C): x[b,0] = cls + pos[0]; x[b,1+j] = emb[b,j] + pos[1 + ids[b,j]].
 * emb (B, n, C); cls (C); pos (1+N, C); ids (B, n) grid indices (NULL: j itself). */
void pf_tokens_forward(float *x, const float *emb, const float *cls, const float *pos,
                       const int64_t *ids, int64_t B, int64_t n, int64_t C) {
    const int64_t T = n + 1;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * T * C > 65536)
    for (int64_t bt = 0; bt < B * T; bt++) {
        const int64_t b = bt / T, t = bt % T;
        float *o = x + bt * C;
        if (t == 0) {
            for (int64_t c = 0; c < C; c++) o[c] = cls[c] + pos[c];
        } else {
            const int64_t j = t - 1, id = ids ? ids[b * n + j] : j;
            const float *e = emb + (b * n + j) * C, *pp = pos + (1 + id) * C;
            for (int64_t c = 0; c < C; c++) o[c] = e[c] + pp[c];
        }
    }
}

/* From dx (B, 1+n, C): demb (B, n, C) += dx[:, 1:]; dcls (C) += sum_b dx[b, 0];
 * dpos (1+N, C) += the same scattered to the positions used (dpos NULL: fixed embedding). */
void pf_tokens_backward(float *demb, float *dcls, float *dpos, const float *dx,
                        const int64_t *ids, int64_t B, int64_t n, int64_t C) {
    const int64_t T = n + 1;
    if (demb) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * n * C > 65536)
        for (int64_t bj = 0; bj < B * n; bj++) {
            const int64_t b = bj / n, j = bj % n;
            const float *g = dx + (b * T + 1 + j) * C;
            float *e = demb + bj * C;
            for (int64_t c = 0; c < C; c++) e[c] += g[c];
        }
    }
    for (int64_t b = 0; b < B; b++) { /* serial: several tokens may share a position */
        const float *g0 = dx + b * T * C;
        for (int64_t c = 0; c < C; c++) {
            if (dcls) dcls[c] += g0[c];
            if (dpos) dpos[c] += g0[c];
        }
        if (!dpos) continue;
        for (int64_t j = 0; j < n; j++) {
            const int64_t id = ids ? ids[b * n + j] : j;
            const float *g = dx + (b * T + 1 + j) * C;
            float *pp = dpos + (1 + id) * C;
            for (int64_t c = 0; c < C; c++) pp[c] += g[c];
        }
    }
}

/* full (B, 1+N, C): full[b,0] = x[b,0] + pos[0]; full[b, 1+ids_keep[b,j]] = x[b,1+j] + pos[..];
 * every removed position (mask[b,i] = 1) = mask_token + pos[1+i]. x (B, 1+n, C). */
void pf_unshuffle_forward(float *full, const float *x, const float *mask_token, const float *pos,
                          const int64_t *ids_keep, const uint8_t *mask, int64_t B, int64_t n,
                          int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * N * C > 65536)
    for (int64_t b = 0; b < B; b++) {
        float *f = full + b * (1 + N) * C;
        const float *xb = x + b * (1 + n) * C;
        for (int64_t c = 0; c < C; c++) f[c] = xb[c] + pos[c];
        for (int64_t i = 0; i < N; i++)
            if (mask[b * N + i]) {
                float *o = f + (1 + i) * C;
                const float *pp = pos + (1 + i) * C;
                for (int64_t c = 0; c < C; c++) o[c] = mask_token[c] + pp[c];
            }
        for (int64_t j = 0; j < n; j++) {
            const int64_t i = ids_keep[b * n + j];
            float *o = f + (1 + i) * C;
            const float *xi = xb + (1 + j) * C, *pp = pos + (1 + i) * C;
            for (int64_t c = 0; c < C; c++) o[c] = xi[c] + pp[c];
        }
    }
}

/* Backward of pf_unshuffle_forward: dx (B, 1+n, C) +=, dmask_token (C) +=, dpos (1+N, C) +=
 * (dpos NULL: fixed embedding). */
void pf_unshuffle_backward(float *dx, float *dmask_token, float *dpos, const float *dfull,
                           const int64_t *ids_keep, const uint8_t *mask, int64_t B, int64_t n,
                           int64_t N, int64_t C) {
    for (int64_t b = 0; b < B; b++) {
        const float *f = dfull + b * (1 + N) * C;
        float *xb = dx + b * (1 + n) * C;
        for (int64_t c = 0; c < C; c++) xb[c] += f[c];
        for (int64_t j = 0; j < n; j++) {
            const float *g = f + (1 + ids_keep[b * n + j]) * C;
            float *o = xb + (1 + j) * C;
            for (int64_t c = 0; c < C; c++) o[c] += g[c];
        }
        if (dmask_token)
            for (int64_t i = 0; i < N; i++)
                if (mask[b * N + i]) {
                    const float *g = f + (1 + i) * C;
                    for (int64_t c = 0; c < C; c++) dmask_token[c] += g[c];
                }
        if (dpos)
            for (int64_t i = 0; i < (1 + N) * C; i++) dpos[i] += f[i];
    }
}
