/* vec_kernels.c: element-wise kernels (GELU, softmax) compiled for AVX-512, AVX2+FMA and the
 * baseline; pf_vec() hands out the best set this CPU runs. erf and exp come from vecmath.h. */
#include "core/bf16.h"
#include "core/common.h"
#include "layers/vec_kernels.h"
#include "layers/vecmath.h"

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT2PI 0.39894228040143267794f

#if defined(__x86_64__)
#define VK_SUFFIX avx512
#define VK_ATTR __attribute__((target("avx512f")))
#include "vec_kernels.inc"
#define VK_SUFFIX avx2
#define VK_ATTR __attribute__((target("avx2,fma")))
#include "vec_kernels.inc"
#endif
#define VK_SUFFIX generic
#define VK_ATTR
#include "vec_kernels.inc"

#if defined(__x86_64__)
static const pf_vec_kernels avx512 = {"avx512", gelu_fwd_avx512, gelu_fwd16_avx512, gelu_bwd_avx512,
                                      gelu_bwd16_avx512, softmax_rows_avx512};
static const pf_vec_kernels avx2 = {"avx2", gelu_fwd_avx2, gelu_fwd16_avx2, gelu_bwd_avx2, gelu_bwd16_avx2,
                                    softmax_rows_avx2};
#endif
static const pf_vec_kernels generic = {"generic", gelu_fwd_generic, gelu_fwd16_generic, gelu_bwd_generic,
                                       gelu_bwd16_generic, softmax_rows_generic};

/* The element-wise kernels of the best ISA this CPU runs (chosen once). */
const pf_vec_kernels *pf_vec(void) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) return &avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &avx2;
#endif
    return &generic;
}
