/* gelu.c: exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as timm and PyTorch's default use; the
 * loops live in vec_kernels.c (vectorised erf / exp, ~3 ulp). */
#include <stdlib.h>
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
 * bias gradient), in one pass. Threads take row ranges with their own sums, added in thread
 * order (deterministic for a thread count). */
pf_status pf_gelu_backward16(uint16_t *dinp16, float *dbias, const float *inp, const float *dout, int64_t rows,
                             int64_t H) {
    const pf_vec_kernels *k = pf_vec();
    const int nt = rows * H > 2 * CHUNK ? pf_get_num_threads() : 1;
    float *acc = calloc((size_t)(nt * H), sizeof(float));
    if (!acc) return pf_fail(PF_ENOMEM, "gelu_backward16: out of memory for %d x %lld sums", nt, (long long)H);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int t = 0; t < nt; t++) /* one row range and one row of sums per part */
        k->gelu_bwd16(dinp16, acc + (int64_t)t * H, inp, dout, rows * t / nt, rows * (t + 1) / nt, H);
    for (int t = 0; t < nt; t++)
        for (int64_t c = 0; c < H; c++) dbias[c] += acc[(int64_t)t * H + c];
    free(acc);
    return PF_OK;
}
