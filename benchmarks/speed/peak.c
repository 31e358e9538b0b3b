/* In-register peak of this CPU: fp32 FMA (AVX-512 and AVX2) and bf16 pair dot products
 * (vdpbf16ps), on 1..T OpenMP threads, in GFLOP/s. No memory traffic: 16 independent
 * accumulators so that latency hides behind throughput. bench_peak.py builds and runs it.
 *
 *   cc -O2 -fopenmp benchmarks/speed/peak.c -o peak && ./peak 2
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ACC 16

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* n rounds of ACC fp32 FMAs on 16 lanes -> a sum that keeps the loop alive */
__attribute__((target("avx512f"))) static float fma512(long n) {
    __m512 acc[ACC], a = _mm512_set1_ps(1e-9f), b = _mm512_set1_ps(1.0f);
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_setzero_ps();
    for (long k = 0; k < n; k++)
#pragma GCC unroll 16
        for (int i = 0; i < ACC; i++) acc[i] = _mm512_fmadd_ps(a, b, acc[i]);
    float s = 0;
    for (int i = 0; i < ACC; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}

/* n rounds of ACC fp32 FMAs on 8 lanes */
__attribute__((target("avx2,fma"))) static float fma256(long n) {
    __m256 acc[ACC], a = _mm256_set1_ps(1e-9f), b = _mm256_set1_ps(1.0f);
    for (int i = 0; i < ACC; i++) acc[i] = _mm256_setzero_ps();
    for (long k = 0; k < n; k++)
#pragma GCC unroll 16
        for (int i = 0; i < ACC; i++) acc[i] = _mm256_fmadd_ps(a, b, acc[i]);
    float s = 0, v[8];
    for (int i = 0; i < ACC; i++) {
        _mm256_storeu_ps(v, acc[i]);
        for (int j = 0; j < 8; j++) s += v[j];
    }
    return s;
}

/* n rounds of ACC vdpbf16ps: 16 lanes x 2 products x 2 flops each */
__attribute__((target("avx512f,avx512bf16"))) static float dpbf16(long n) {
    __m512 acc[ACC];
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3f80);
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_setzero_ps();
    for (long k = 0; k < n; k++)
#pragma GCC unroll 16
        for (int i = 0; i < ACC; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    float s = 0;
    for (int i = 0; i < ACC; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}

/* GFLOP/s of kernel on `threads` threads, each running n rounds of flops_per_round */
static double rate(float (*kernel)(long), long n, double flops_per_round, int threads) {
    volatile float sink = 0;
    kernel(n / 10); /* warm-up: clocks and the AVX-512 license */
    double t = seconds();
#pragma omp parallel num_threads(threads)
    {
        float s = kernel(n);
#pragma omp atomic
        sink += s;
    }
    return threads * n * flops_per_round / (seconds() - t) / 1e9;
}

int main(int argc, char **argv) {
    int max_threads = argc > 1 ? atoi(argv[1]) : omp_get_max_threads();
    long n = 50000000;
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f"), has_bf16 = __builtin_cpu_supports("avx512bf16");
    printf("{\"rows\": [\n");
    for (int t = 1; t <= max_threads; t++) {
        double f256 = rate(fma256, n, ACC * 8 * 2, t);
        double f512 = has512 ? rate(fma512, n, ACC * 16 * 2, t) : 0;
        double b16 = has_bf16 ? rate(dpbf16, n, ACC * 16 * 4, t) : 0;
        printf(" {\"threads\": %d, \"fp32_fma_avx2\": %.1f, \"fp32_fma_avx512\": %.1f, \"bf16_vdpbf16ps\": %.1f}%s\n",
               t, f256, f512, b16, t < max_threads ? "," : "");
    }
    printf("]}\n");
    return 0;
}
