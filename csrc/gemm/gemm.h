/* gemm.h: the two GEMM back ends behind pf_gemm (gemm.c), same argument meaning. */
#ifndef PF_GEMM_H
#define PF_GEMM_H

#include "pf.h"

/* nthreads: the threads a back end may use; 1 when pf_gemm is called inside a parallel
 * region (attention runs one small product per thread). */

/* Portable back end (gemm_portable.c): blocked, packed, OpenMP-parallel. round_bf16 rounds
 * A and B to bf16 while packing, which is exactly bf16 inputs with fp32 accumulation. */
pf_status pf_gemm_portable(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                           float alpha, const float *A, int64_t lda, const float *B,
                           int64_t ldb, float beta, float *C, int64_t ldc, int round_bf16,
                           int nthreads);

/* oneDNN back end (gemm_dnnl.c): cached matmul primitives. Returns PF_EUNSUPPORTED when
 * oneDNN has no fast implementation for the request on this CPU (pf_gemm falls back). */
pf_status pf_gemm_dnnl(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                       float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                       float beta, float *C, int64_t ldc, pf_dtype dtype, int nthreads);

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
