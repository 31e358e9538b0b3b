/* In-register peak of this CPU: fp32 FMA (AVX-512 and AVX2) and bf16 pair dot products
 * (vdpbf16ps), on 1..T OpenMP threads, in GFLOP/s. No memory traffic: 16 independent
 * accumulators so that latency hides behind throughput. bench_peak.py builds and runs it.
 *
 *   cc -O2 -fopenmp benchmarks/speed/peak.c -o peak && ./peak 2 [rounds]
 *
 * Every operand is 1.0, read from a volatile at run time (so the compiler cannot fold the
 * products away): each accumulator lane gains exactly 1 per FMA and 2 per vdpbf16ps, so a
 * kernel's sum is half the flops it was charged with, exactly while the sums stay below 2^24.
 * The "checks" rows give that sum for a short run on every thread count; the timed runs'
 * sums saturate in fp32 and are only kept alive.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ACC 16
#define CHECK_ROUNDS 1000

static volatile float one = 1.0f;
static volatile short one_bf16 = 0x3f80;

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* n rounds of ACC fp32 FMAs on 16 lanes -> the sum of the accumulators */
__attribute__((target("avx512f"))) static float fma512(long n) {
    __m512 acc[ACC], a = _mm512_set1_ps(one), b = _mm512_set1_ps(one);
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
    __m256 acc[ACC], a = _mm256_set1_ps(one), b = _mm256_set1_ps(one);
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
    __m512bh a = (__m512bh)_mm512_set1_epi16(one_bf16), b = (__m512bh)_mm512_set1_epi16(one_bf16);
    for (int i = 0; i < ACC; i++) acc[i] = _mm512_setzero_ps();
    for (long k = 0; k < n; k++)
#pragma GCC unroll 16
        for (int i = 0; i < ACC; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    float s = 0;
    for (int i = 0; i < ACC; i++) s += _mm512_reduce_add_ps(acc[i]);
    return s;
}

/* The sum of kernel's results over `threads` threads, each running n rounds */
static double total(float (*kernel)(long), long n, int threads) {
    double sink = 0;
#pragma omp parallel num_threads(threads)
    {
        float s = kernel(n);
#pragma omp atomic
        sink += s;
    }
    return sink;
}

/* GFLOP/s of kernel on `threads` threads, each running n rounds of flops_per_round */
static double rate(float (*kernel)(long), long n, double flops_per_round, int threads) {
    volatile double sink;
    kernel(n / 10); /* warm-up: clocks and the AVX-512 license */
    double t = seconds();
    sink = total(kernel, n, threads);
    (void)sink;
    return threads * n * flops_per_round / (seconds() - t) / 1e9;
}

static void check(const char *name, float (*kernel)(long), double flops_per_round, int t, int last) {
    printf(" {\"kernel\": \"%s\", \"threads\": %d, \"rounds\": %d, \"sum\": %.1f, \"flops\": %.1f}%s\n", name, t,
           CHECK_ROUNDS, total(kernel, CHECK_ROUNDS, t), t * (double)CHECK_ROUNDS * flops_per_round, last ? "" : ",");
}

int main(int argc, char **argv) {
    int max_threads = argc > 1 ? atoi(argv[1]) : omp_get_max_threads();
    long n = argc > 2 ? atol(argv[2]) : 50000000;
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f"), has_bf16 = __builtin_cpu_supports("avx512bf16");
    printf("{\"checks\": [\n");
    for (int t = 1; t <= max_threads; t++) {
        check("fp32_fma_avx2", fma256, ACC * 8 * 2, t, t == max_threads && !has512);
        if (has512) check("fp32_fma_avx512", fma512, ACC * 16 * 2, t, t == max_threads && !has_bf16);
        if (has_bf16) check("bf16_vdpbf16ps", dpbf16, ACC * 16 * 4, t, t == max_threads);
    }
    printf("],\n\"rows\": [\n");
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
