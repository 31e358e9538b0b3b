/* gelu.c: exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as timm and PyTorch's default use; the
 * loops live in vec_kernels.c (vectorised erf / exp, ~3 ulp). */
#include "core/common.h"
#include "layers/gelu.h"
#include "layers/vec_kernels.h"

#define CHUNK 16384 /* elements per task: big enough to amortise, small enough to balance */

/* out (n) = gelu(inp). */
void pf_gelu_forward(float *out, const float *inp, int64_t n) {
    const pf_vec_kernels *k = pf_vec();
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 2 * CHUNK)
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) k->gelu_fwd(out, inp, i0, pf_min64(n, i0 + CHUNK));
}

/* out16 (n) = gelu(inp) as bf16 bits (the next consumer is a bf16 GEMM). */
void pf_gelu_forward16(uint16_t *out16, const float *inp, int64_t n) {
    const pf_vec_kernels *k = pf_vec();
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 2 * CHUNK)
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) k->gelu_fwd16(out16, inp, i0, pf_min64(n, i0 + CHUNK));
}

/* dinp (n) += (or, PF_GRAD_SET, =) dout * gelu'(inp), gelu'(x) = Phi(x) + x phi(x). */
void pf_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n, pf_grad_mode dmode) {
    const pf_vec_kernels *k = pf_vec();
    const int set = dmode == PF_GRAD_SET;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 2 * CHUNK)
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) k->gelu_bwd(dinp, inp, dout, i0, pf_min64(n, i0 + CHUNK), set);
}

/* The bf16 model's MLP backward between fc2 and fc1: dinp16 (rows, H) = dout * gelu'(inp) as
 * bf16 bits (what fc1's bf16 products read) and dbias (H) += their column sums in fp32 (fc1's
 * bias gradient), in one pass; each thread owns a band of 64 columns. */
void pf_gelu_backward16(uint16_t *dinp16, float *dbias, const float *inp, const float *dout, int64_t rows,
                        int64_t H) {
    const pf_vec_kernels *k = pf_vec();
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * H > 2 * CHUNK)
    for (int64_t c0 = 0; c0 < H; c0 += 64) k->gelu_bwd16(dinp16, dbias, inp, dout, rows, H, c0, pf_min64(H, c0 + 64));
}
