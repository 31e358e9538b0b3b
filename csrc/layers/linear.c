/* linear.c: y = x W^T + b with timm's (out, in) weight layout. */
#include <string.h>
#include "core/common.h"
#include "layers/linear.h"

/* out (rows, OC) = inp (rows, IC) @ weight (OC, IC)^T + bias (OC); bias may be NULL. */
pf_status pf_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                            int64_t rows, int64_t IC, int64_t OC, pf_dtype dt) {
    TRY(pf_gemm(0, 1, rows, OC, IC, 1.0f, inp, IC, weight, IC, 0.0f, out, OC, dt));
    if (bias) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * OC > 65536)
        for (int64_t r = 0; r < rows; r++) {
            float *o = out + r * OC;
            for (int64_t c = 0; c < OC; c++) o[c] += bias[c];
        }
    }
    return PF_OK;
}

/* dbias (OC) += column sums of dout (rows, OC): each thread owns a band of columns. */
static void column_sums(float *dbias, const float *dout, int64_t rows, int64_t OC) {
    const int64_t band = 64;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * OC > 65536)
    for (int64_t c0 = 0; c0 < OC; c0 += band) {
        const int64_t c1 = pf_min64(OC, c0 + band);
        float acc[64] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *d = dout + r * OC;
            for (int64_t c = c0; c < c1; c++) acc[c - c0] += d[c];
        }
        for (int64_t c = c0; c < c1; c++) dbias[c] += acc[c - c0];
    }
}

/* dinp (rows, IC) += dout (rows, OC) @ weight (OC, IC); dweight (OC, IC) += dout^T @ inp;
 * dbias (OC) += sum over rows of dout. Any gradient pointer may be NULL. */
pf_status pf_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, int64_t rows, int64_t IC,
                             int64_t OC, pf_dtype dt) {
    if (dinp) TRY(pf_gemm(0, 0, rows, IC, OC, 1.0f, dout, OC, weight, IC, 1.0f, dinp, IC, dt));
    if (dweight) TRY(pf_gemm(1, 0, OC, IC, rows, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC, dt));
    if (dbias) column_sums(dbias, dout, rows, OC);
    return PF_OK;
}
