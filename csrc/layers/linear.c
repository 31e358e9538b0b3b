/* linear.c: y = x W^T + b with timm's (out, in) weight layout.
 *
 * In bf16 the weight's bf16 copy (w16, made once per forward by the model) goes to the
 * GEMM as it is, the bias is added inside the GEMM, and backward converts dout to bf16
 * once for both of its products. */
#include <string.h>
#include "core/bf16.h"
#include "core/common.h"
#include "layers/linear.h"

/* out (rows, OC) = inp (rows, IC) @ weight (OC, IC)^T + bias (OC); bias may be NULL;
 * w16 / in16: weight's / inp's bf16 bits or NULL (read when dt is bf16). */
pf_status pf_linear_forward(float *out, const float *inp, const uint16_t *in16, const float *weight,
                            const uint16_t *w16, const float *bias, int64_t rows, int64_t IC, int64_t OC,
                            pf_dtype dt) {
    const int use16 = dt == PF_BF16 && w16, x16 = dt == PF_BF16 && in16;
    const pf_gemm_args g = {.M = rows, .N = OC, .K = IC, .trans_b = 1, .A = x16 ? (const void *)in16 : inp,
                            .a_bf16 = x16, .B = use16 ? (const void *)w16 : weight, .b_bf16 = use16,
                            .lda = IC, .ldb = IC, .alpha = 1.0f, .bias = bias, .C = out, .ldc = OC, .dtype = dt};
    return pf_gemm_ex(&g);
}

/* dbias[c0:c1] += column sums of dout's columns c0..c1 (at most 64) over all rows. */
PF_CLONES static void band_sums(float *dbias, const float *dout, int64_t rows, int64_t OC, int64_t c0, int64_t c1) {
    float acc[64] = {0};
    const int64_t w = c1 - c0;
    for (int64_t r = 0; r < rows; r++) {
        const float *d = dout + r * OC + c0;
#pragma omp simd
        for (int64_t c = 0; c < w; c++) acc[c] += d[c];
    }
    for (int64_t c = 0; c < w; c++) dbias[c0 + c] += acc[c];
}

/* band_sums that also writes the band of dout as bf16 bits into out16 (rows, OC): one pass
 * over dout where a conversion and the sums would take two. */
PF_CLONES static void band_sums16(float *dbias, uint16_t *out16, const float *dout, int64_t rows, int64_t OC,
                                  int64_t c0, int64_t c1) {
    float acc[64] = {0};
    const int64_t w = c1 - c0;
    for (int64_t r = 0; r < rows; r++) {
        const float *d = dout + r * OC + c0;
        uint16_t *o = out16 + r * OC + c0;
#pragma omp simd
        for (int64_t c = 0; c < w; c++) {
            acc[c] += d[c];
            o[c] = pf_bf16_bits(d[c]);
        }
    }
    for (int64_t c = 0; c < w; c++) dbias[c0 + c] += acc[c];
}

/* dbias (OC) += column sums of dout (rows, OC), and out16 (when not NULL) = dout as bf16
 * bits: each thread owns a band of columns. */
static void column_sums(float *dbias, uint16_t *out16, const float *dout, int64_t rows, int64_t OC) {
    const int64_t band = 64;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * OC > 65536)
    for (int64_t c0 = 0; c0 < OC; c0 += band) {
        if (out16) band_sums16(dbias, out16, dout, rows, OC, c0, pf_min64(OC, c0 + band));
        else band_sums(dbias, dout, rows, OC, c0, pf_min64(OC, c0 + band));
    }
}

/* dinp (rows, IC) += (or, PF_GRAD_SET, =) dout (rows, OC) @ weight (OC, IC);
 * dweight (OC, IC) += dout^T @ inp; dbias (OC) += sum over rows of dout. Any gradient
 * pointer may be NULL. dout16: dout already as bf16 bits (dt bf16; dout is then not read and
 * dbias must be NULL, its sums taken where dout16 was made), or NULL. */
pf_status pf_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const uint16_t *dout16,
                             const float *inp, const uint16_t *in16, const float *weight, const uint16_t *w16,
                             int64_t rows, int64_t IC, int64_t OC, pf_dtype dt, pf_grad_mode dmode) {
    const void *d = dout;
    int d16 = 0;
    if (dt == PF_BF16 && dout16) {
        if (dbias) return pf_fail(PF_EINVAL, "linear_backward: with dout16 the bias gradient is the caller's");
        d = dout16, d16 = 1;
    } else if (dt == PF_BF16 && dinp && dweight) { /* two products read dout: convert it once */
        uint16_t *buf = pf_tls_buffer(PF_TLS_LINEAR, (size_t)(rows * OC) * sizeof(uint16_t));
        if (!buf) return pf_fail(PF_ENOMEM, "linear_backward: out of memory for a bf16 copy of dout");
        if (dbias) column_sums(dbias, buf, dout, rows, OC), dbias = NULL; /* the bias sums ride along */
        else pf_to_bf16(dout, buf, rows * OC);
        d = buf, d16 = 1;
    }
    const int use16 = dt == PF_BF16 && w16;
    if (dinp) {
        const pf_gemm_args g = {.M = rows, .N = IC, .K = OC, .A = d, .a_bf16 = d16,
                                .B = use16 ? (const void *)w16 : weight, .b_bf16 = use16, .lda = OC, .ldb = IC,
                                .alpha = 1.0f, .beta = dmode == PF_GRAD_SET ? 0.0f : 1.0f, .C = dinp,
                                .ldc = IC, .dtype = dt};
        TRY(pf_gemm_ex(&g));
    }
    if (dweight) {
        const int x16 = dt == PF_BF16 && in16;
        const pf_gemm_args g = {.M = OC, .N = IC, .K = rows, .trans_a = 1, .A = d, .a_bf16 = d16,
                                .B = x16 ? (const void *)in16 : inp, .b_bf16 = x16, .lda = OC, .ldb = IC,
                                .alpha = 1.0f, .beta = 1.0f, .C = dweight, .ldc = IC, .dtype = dt};
        TRY(pf_gemm_ex(&g));
    }
    if (dbias) column_sums(dbias, NULL, dout, rows, OC);
    return PF_OK;
}
