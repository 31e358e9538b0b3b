/* attention.c: multi-head self-attention core (full, unmasked, scaled dot product).
 *
 * qkv (B, T, 3C) holds [q | k | v], each C wide with the NH heads contiguous (timm's fused
 * qkv). Work is split over (b, h) pairs across threads; each pair's products are small
 * single-threaded GEMMs (pf_gemm runs on one thread inside a parallel region). */
#include <math.h>
#include <string.h>
#include "core/common.h"
#include "layers/attention.h"
#include "layers/vec_kernels.h"

/* out (B, T, C) = concat_h softmax(q_h k_h^T / sqrt(hs)) v_h; att (B, NH, T, T) keeps the
 * probabilities for backward. */
pf_status pf_attention_forward(float *out, float *att, const float *qkv, int64_t B, int64_t T,
                               int64_t C, int64_t NH, pf_dtype dt) {
    const int64_t hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const pf_vec_kernels *vk = pf_vec();
    int failed = 0;
    pf_status st = PF_OK;
#pragma omp parallel for schedule(dynamic, 1) num_threads(pf_get_num_threads())
    for (int64_t bh = 0; bh < B * NH; bh++) {
        const int64_t b = bh / NH, h = bh % NH;
        const float *q = qkv + b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
        float *a = att + bh * T * T;
        pf_status s = pf_gemm(0, 1, T, T, hs, scale, q, C3, k, C3, 0.0f, a, T, dt);
        if (s == PF_OK) {
            vk->softmax_rows(a, T, T);
            s = pf_gemm(0, 0, T, hs, T, 1.0f, a, T, v, C3, 0.0f, out + b * T * C + h * hs, C, dt);
        }
        if (s != PF_OK) {
#pragma omp critical(pf_attention_error)
            if (!failed) failed = 1, st = s;
        }
    }
    return st;
}

/* dqkv (B, T, 3C) += gradients of q, k, v from dout (B, T, C), using qkv and att.
 * Per (b, h), with P = att and dS the gradient of the pre-softmax scores:
 *   dP = dout_h v^T, dv += P^T dout_h, dS = P * (dP - rowsum(dP * P)),
 *   dq += scale dS k, dk += scale dS^T q. */
pf_status pf_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                const float *att, int64_t B, int64_t T, int64_t C, int64_t NH,
                                pf_dtype dt) {
    const int64_t hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    const int nt = pf_get_num_threads();
    float *scratch = pf_malloc((size_t)nt * T * T * sizeof(float));
    if (!scratch) return pf_fail(PF_ENOMEM, "attention_backward: out of memory");
    int failed = 0;
    pf_status st = PF_OK;
#pragma omp parallel num_threads(nt)
    {
        const int tid = pf_thread_num();
        float *dP = scratch + (size_t)tid * T * T;
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < B * NH; bh++) {
            const int64_t b = bh / NH, h = bh % NH;
            const float *q = qkv + b * T * C3 + h * hs, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + b * T * C3 + h * hs, *dk = dq + C, *dv = dq + 2 * C;
            const float *P = att + bh * T * T, *dO = dout + b * T * C + h * hs;
            pf_status s = pf_gemm(0, 1, T, T, hs, 1.0f, dO, C, v, C3, 0.0f, dP, T, dt);
            if (s == PF_OK) s = pf_gemm(1, 0, T, hs, T, 1.0f, P, T, dO, C, 1.0f, dv, C3, dt);
            if (s == PF_OK) {
                for (int64_t i = 0; i < T; i++) {
                    float *dpr = dP + i * T;
                    const float *pr = P + i * T;
                    float dot = 0.0f;
                    for (int64_t j = 0; j < T; j++) dot += dpr[j] * pr[j];
                    for (int64_t j = 0; j < T; j++) dpr[j] = pr[j] * (dpr[j] - dot);
                }
                s = pf_gemm(0, 0, T, hs, T, scale, dP, T, k, C3, 1.0f, dq, C3, dt);
            }
            if (s == PF_OK) s = pf_gemm(1, 0, T, hs, T, scale, dP, T, q, C3, 1.0f, dk, C3, dt);
            if (s != PF_OK) {
#pragma omp critical(pf_attention_error)
                if (!failed) failed = 1, st = s;
            }
        }
    }
    free(scratch);
    return st;
}
