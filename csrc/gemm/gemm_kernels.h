/* gemm_kernels.h: the portable back end's micro-kernels, chosen at run time. */
#ifndef PF_GEMM_KERNELS_H
#define PF_GEMM_KERNELS_H

#include "pf.h"
#include <stdint.h>

/* A micro-kernel: C[m,n] = alpha * Ap^T Bp + beta * C over one MR x NR tile, m <= MR, n <= NR.
 * Ap[kc][MR] and Bp[kc][NR] are packed panels (k-major); beta == 0 never reads C. */
typedef void (*pf_ukernel_fn)(int64_t kc, const float *Ap, const float *Bp, float *C,
                              int64_t ldc, float alpha, float beta, int m, int n);

typedef struct {
    const char *name;
    int mr, nr;
    pf_ukernel_fn fn;
    int (*supported)(void);
} pf_ukernel;

/* Every compiled micro-kernel, best first (gemm_kernels.c). */
extern const pf_ukernel pf_ukernels[];
extern const int pf_ukernel_count;

#endif
