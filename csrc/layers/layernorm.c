/* layernorm.c: LayerNorm over the last dimension (timm: eps 1e-6, biased variance). */
#include <math.h>
#include <string.h>
#include "core/bf16.h"
#include "core/common.h"
#include "layers/layernorm.h"

/* One row: x (C) -> o or o16 (C), its mean and rstd; fp32 two-pass statistics, vectorised
 * for the best ISA this CPU runs. */
PF_CLONES static void row_forward(float *o, uint16_t *o16, float *mean, float *rstd, const float *x,
                                  const float *w, const float *b, int64_t C, float eps) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < C; c++) s += x[c];
    const float m = s / (float)C;
    float v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int64_t c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
    const float rs = 1.0f / sqrtf(v / (float)C + eps);
    if (o) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) o[c] = (x[c] - m) * rs * w[c] + b[c];
    } else {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) o16[c] = pf_bf16_bits((x[c] - m) * rs * w[c] + b[c]);
    }
    *mean = m, *rstd = rs;
}

/* out (rows, C) = (inp - mean) * rstd * w + b, written as fp32 (out) or as bf16 bits (out16,
 * when out is NULL); mean, rstd (rows) are kept for backward. */
static void forward(float *out, uint16_t *out16, float *mean, float *rstd, const float *inp, const float *w,
                    const float *b, int64_t rows, int64_t C, float eps) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * C > 32768)
    for (int64_t r = 0; r < rows; r++)
        row_forward(out ? out + r * C : NULL, out ? NULL : out16 + r * C, mean + r, rstd + r, inp + r * C, w, b,
                    C, eps);
}

/* out (rows, C) = (inp - mean) * rstd * w + b; mean, rstd (rows) are kept for backward. */
void pf_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, int64_t rows, int64_t C, float eps) {
    forward(out, NULL, mean, rstd, inp, w, b, rows, C, eps);
}

/* The same, the output written as bf16 bits (the next consumer is a bf16 GEMM). */
void pf_layernorm_forward16(uint16_t *out16, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int64_t rows, int64_t C, float eps) {
    forward(NULL, out16, mean, rstd, inp, w, b, rows, C, eps);
}

/* One row of backward: dinp (C) += dL/dx (when given); pw, pb (C) += this row's dw, db terms. */
PF_CLONES static void row_backward(float *di, float *pw, float *pb, const float *d, const float *x, const float *w,
                                   float m, float rs, int64_t C) {
    float g_mean = 0.0f, gx_mean = 0.0f;
#pragma omp simd reduction(+ : g_mean, gx_mean)
    for (int64_t c = 0; c < C; c++) {
        const float xhat = (x[c] - m) * rs, g = d[c] * w[c];
        g_mean += g;
        gx_mean += g * xhat;
        pw[c] += d[c] * xhat;
        pb[c] += d[c];
    }
    g_mean /= (float)C;
    gx_mean /= (float)C;
    if (!di) return;
#pragma omp simd
    for (int64_t c = 0; c < C; c++) di[c] += rs * (d[c] * w[c] - g_mean - (x[c] - m) * rs * gx_mean);
}

/* dinp (rows, C) += dL/dinp; dw, db (C) += sums over rows (per-thread partials, then reduced).
 * With xhat = (x - mean) * rstd and g = dout * w:
 *   dinp = rstd * (g - mean(g) - xhat * mean(g * xhat)). */
pf_status pf_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                                const float *inp, const float *w, const float *mean,
                                const float *rstd, int64_t rows, int64_t C) {
    const int nt = rows * C > 32768 ? pf_get_num_threads() : 1;
    float *partial = calloc((size_t)nt * 2 * C, sizeof(float));
    if (!partial) return pf_fail(PF_ENOMEM, "layernorm_backward: out of memory");
#pragma omp parallel num_threads(nt)
    {
        const int tid = pf_thread_num();
        float *pw = partial + (size_t)tid * 2 * C, *pb = pw + C;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            row_backward(dinp ? dinp + r * C : NULL, pw, pb, dout + r * C, inp + r * C, w, mean[r], rstd[r], C);
    }
    for (int t = 0; t < nt; t++)
        for (int64_t c = 0; c < C; c++) {
            if (dw) dw[c] += partial[(size_t)t * 2 * C + c];
            if (db) db[c] += partial[(size_t)t * 2 * C + C + c];
        }
    free(partial);
    return PF_OK;
}
