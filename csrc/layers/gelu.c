/* gelu.c: exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as timm and PyTorch's default use.
 * erf and exp come from vecmath.h (vectorisable, ~3 ulp); the loops are compiled for
 * AVX-512, AVX2+FMA and the baseline, and the best one for this CPU runs. */
#include "../common.h"
#include "layers.h"
#include "vecmath.h"

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT2PI 0.39894228040143267794f
#define CHUNK 16384 /* elements per task: big enough to amortise, small enough to balance */

#if defined(__x86_64__)
#define GK_SUFFIX avx512
#define GK_ATTR __attribute__((target("avx512f")))
#include "gelu_kernel.inc"
#define GK_SUFFIX avx2
#define GK_ATTR __attribute__((target("avx2,fma")))
#include "gelu_kernel.inc"
#endif
#define GK_SUFFIX generic
#define GK_ATTR
#include "gelu_kernel.inc"

typedef void (*fwd_fn)(float *, const float *, int64_t, int64_t);
typedef void (*bwd_fn)(float *, const float *, const float *, int64_t, int64_t);

static void pick(fwd_fn *f, bwd_fn *b) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) {
        *f = gelu_fwd_avx512, *b = gelu_bwd_avx512;
        return;
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        *f = gelu_fwd_avx2, *b = gelu_bwd_avx2;
        return;
    }
#endif
    *f = gelu_fwd_generic, *b = gelu_bwd_generic;
}

/* out (n) = gelu(inp). */
void pf_gelu_forward(float *out, const float *inp, int64_t n) {
    fwd_fn f;
    bwd_fn b;
    pick(&f, &b);
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 2 * CHUNK)
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) f(out, inp, i0, pf_min64(n, i0 + CHUNK));
}

/* dinp (n) += dout * gelu'(inp), gelu'(x) = Phi(x) + x phi(x). */
void pf_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
    fwd_fn f;
    bwd_fn b;
    pick(&f, &b);
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 2 * CHUNK)
    for (int64_t i0 = 0; i0 < n; i0 += CHUNK) b(dinp, inp, dout, i0, pf_min64(n, i0 + CHUNK));
}
