/* common.h: internal helpers shared by the C core (errors, allocation, OpenMP). */
#ifndef PF_COMMON_H
#define PF_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include "pf.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Keep a printf-style message for pf_last_error() and return the status. */
pf_status pf_fail(pf_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* TRY(expr): propagate a non-OK status to the caller. */
#define TRY(expr)                                   \
    do {                                            \
        pf_status pf_try_status_ = (expr);          \
        if (pf_try_status_ != PF_OK) return pf_try_status_; \
    } while (0)

#define PF_ALIGN 64

/* 64-byte aligned allocation of n bytes (n may be 0); free with free(). */
static inline void *pf_malloc(size_t n) {
    size_t rounded = (n + PF_ALIGN - 1) / PF_ALIGN * PF_ALIGN;
    return aligned_alloc(PF_ALIGN, rounded ? rounded : PF_ALIGN);
}

/* Per-calling-thread scratch buffers, kept between calls and grown on demand (a fresh
 * megabyte per call costs page faults): slot's buffer of at least bytes, 64-byte aligned,
 * valid until the same thread asks for that slot again; NULL when out of memory. */
enum { PF_TLS_ATTENTION, PF_TLS_LINEAR, PF_TLS_GEMM_A, PF_TLS_GEMM_B, PF_TLS_GEMM_SCRATCH, PF_TLS_SLOTS };
void *pf_tls_buffer(int slot, size_t bytes);

/* A function compiled for AVX-512, AVX2 and the baseline, the best picked at load time
 * (plain loops that the compiler vectorises; not under ASan, whose build skips ifuncs). */
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define PF_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PF_CLONES
#endif

/* This thread's number inside an OpenMP team (0 outside one, or without OpenMP). */
static inline int pf_thread_num(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* splitmix64 finaliser: a counter-based generator, (key ^ counter) -> 64 random bits. */
static inline uint64_t pf_mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* min and max of two int64. */
static inline int64_t pf_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t pf_max64(int64_t a, int64_t b) { return a > b ? a : b; }

#endif
