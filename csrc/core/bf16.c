/* bf16.c: bulk fp32 -> bf16 conversion (round to nearest even), OpenMP-parallel, the loop
 * compiled for AVX-512, AVX2 and the baseline (branch-free, so it vectorises). */
#include "core/bf16.h"
#include "core/common.h"

/* Below this many elements a single thread is faster than waking a team. */
#define PF_BF16_PAR_MIN (1 << 16)
#define CHUNK 16384

/* x[i0:i1] -> y[i0:i1] bf16 bits: the rounding of pf_bf16_bits, written without branches. */
#define TO_BF16_LOOP                                                                  \
    _Pragma("omp simd") for (int64_t i = i0; i < i1; i++) {                           \
        uint32_t u;                                                                   \
        memcpy(&u, &x[i], sizeof u);                                                  \
        const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;              \
        const uint32_t quiet = (u >> 16) | 0x0040u;                                   \
        y[i] = (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);         \
    }

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw"))) static void range_avx512(const float *x, uint16_t *y, int64_t i0, int64_t i1) {
    TO_BF16_LOOP
}
__attribute__((target("avx2"))) static void range_avx2(const float *x, uint16_t *y, int64_t i0, int64_t i1) {
    TO_BF16_LOOP
}
#endif
static void range_generic(const float *x, uint16_t *y, int64_t i0, int64_t i1) { TO_BF16_LOOP }

typedef void (*range_fn)(const float *, uint16_t *, int64_t, int64_t);

/* The conversion loop of the best ISA this CPU runs. */
static range_fn pick(void) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return range_avx512;
    if (__builtin_cpu_supports("avx2")) return range_avx2;
#endif
    return range_generic;
}

/* x[n] -> y[n] (bf16 values held in fp32). */
void pf_round_bf16(const float *x, float *y, int64_t n) {
    int nt = n >= PF_BF16_PAR_MIN ? pf_get_num_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; i++) y[i] = pf_bf16_round(x[i]);
}

/* x[n] -> y[n] bf16 bit patterns. */
void pf_to_bf16(const float *x, uint16_t *y, int64_t n) {
    const range_fn f = pick();
    int nt = n >= PF_BF16_PAR_MIN ? pf_get_num_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) f(x, y, i0, pf_min64(n, i0 + CHUNK));
}
