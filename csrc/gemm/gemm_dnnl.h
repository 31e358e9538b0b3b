/* gemm_dnnl.h: the oneDNN GEMM back end behind pf_gemm (same argument meaning as pf_gemm). */
#ifndef PF_GEMM_DNNL_H
#define PF_GEMM_DNNL_H

#include "pf.h"

/* nthreads: the threads a back end may use; 1 when pf_gemm is called inside a parallel
 * region (attention runs one small product per thread). */

/* oneDNN back end (gemm_dnnl.c): cached matmul primitives. Returns PF_EUNSUPPORTED when
 * oneDNN has no fast implementation for the request on this CPU (pf_gemm falls back). */
pf_status pf_gemm_dnnl(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                       float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                       float beta, float *C, int64_t ldc, pf_dtype dtype, int nthreads);

#endif
