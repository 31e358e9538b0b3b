/* bf16.c: bulk fp32 -> bf16 conversion (round to nearest even), OpenMP-parallel, its loop
 * compiled for AVX-512, AVX2 and the baseline (PF_CLONES). */
#include "core/bf16.h"
#include "core/common.h"

/* Below this many elements a single thread is faster than waking a team. */
#define PF_BF16_PAR_MIN (1 << 16)
#define CHUNK 16384

/* x[i0:i1] -> y[i0:i1] bf16 bits (pf_bf16_bits is branch-free, so this vectorises). */
PF_CLONES static void to_bf16_range(const float *x, uint16_t *y, int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; i++) y[i] = pf_bf16_bits(x[i]);
}

/* x[n] -> y[n] (bf16 values held in fp32). */
void pf_round_bf16(const float *x, float *y, int64_t n) {
    int nt = n >= PF_BF16_PAR_MIN ? pf_get_num_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++) y[i] = pf_bf16_round(x[i]);
}

/* x[n] -> y[n] bf16 bit patterns. */
void pf_to_bf16(const float *x, uint16_t *y, int64_t n) {
    int nt = n >= PF_BF16_PAR_MIN ? pf_get_num_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) to_bf16_range(x, y, i0, pf_min64(n, i0 + CHUNK));
}
