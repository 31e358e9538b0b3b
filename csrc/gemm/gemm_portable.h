/* gemm_portable.h: the portable GEMM back end behind pf_gemm (same argument meaning as pf_gemm). */
#ifndef PF_GEMM_PORTABLE_H
#define PF_GEMM_PORTABLE_H

#include "pf.h"

/* nthreads: the threads a back end may use; 1 when pf_gemm is called inside a parallel
 * region (attention runs one small product per thread). */

/* Portable back end (gemm_portable.c): blocked, packed, OpenMP-parallel. round_bf16 rounds
 * A and B to bf16 while packing, which is exactly bf16 inputs with fp32 accumulation. */
pf_status pf_gemm_portable(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                           float alpha, const float *A, int64_t lda, const float *B,
                           int64_t ldb, float beta, float *C, int64_t ldc, int round_bf16,
                           int nthreads);

/* pf_gemm_ex's request on the portable back end: bf16 operands are widened to fp32 (exact)
 * before packing; g->bias is not read (pf_gemm_ex adds it after). */
pf_status pf_gemm_portable_ex(const pf_gemm_args *g, int nthreads);

#endif
