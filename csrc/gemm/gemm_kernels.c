/* gemm_kernels.c: the portable back end's micro-kernels, one per ISA, chosen at run time.
 * Compiled without -march flags: each kernel carries its own target attribute, so one build
 * runs on any x86-64 and uses AVX-512 or AVX2 where the CPU has them. */
#include <string.h>
#include "gemm/gemm_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#define PF_X86 1
#endif

#ifdef PF_X86
/* 12 x 32 tile: 24 zmm accumulators, 2 for B, 1 broadcast. */
#define UK_FN pf_ukernel_avx512
#define UK_V pf_v16_t
#define UK_MR 12
#define UK_VL 16
#define UK_NV 2
#define UK_ATTR __attribute__((target("avx512f")))
#include "gemm_ukernel.inc"

/* 6 x 16 tile: 12 ymm accumulators, 2 for B, 1 broadcast. */
#define UK_FN pf_ukernel_avx2
#define UK_V pf_v8_t
#define UK_MR 6
#define UK_VL 8
#define UK_NV 2
#define UK_ATTR __attribute__((target("avx2,fma")))
#include "gemm_ukernel.inc"

/* Whether this CPU runs each kernel (the generic one always). */
static int have_avx512(void) { return __builtin_cpu_supports("avx512f"); }
static int have_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

/* 6 x 8 tile of 128-bit vectors: SSE2 on x86-64, NEON on arm64, scalar code elsewhere. */
#define UK_FN pf_ukernel_generic
#define UK_V pf_v4_t
#define UK_MR 6
#define UK_VL 4
#define UK_NV 2
#define UK_ATTR
#include "gemm_ukernel.inc"

static int always(void) { return 1; }

const pf_ukernel pf_ukernels[] = {
#ifdef PF_X86
    {"avx512", 12, 32, pf_ukernel_avx512, have_avx512},
    {"avx2", 6, 16, pf_ukernel_avx2, have_avx2},
#endif
    {"generic", 6, 8, pf_ukernel_generic, always},
};
const int pf_ukernel_count = (int)(sizeof pf_ukernels / sizeof pf_ukernels[0]);
