/* gemm_dnnl.h: the oneDNN GEMM back end behind pf_gemm (same argument meaning as pf_gemm). */
#ifndef PF_GEMM_DNNL_H
#define PF_GEMM_DNNL_H

#include "pf.h"

/* nthreads: the threads a back end may use; 1 when pf_gemm is called inside a parallel
 * region (attention runs one small product per thread). */

/* oneDNN back end (gemm_dnnl.c): cached matmul primitives. Returns PF_EUNSUPPORTED when
 * oneDNN has no fast implementation for the request on this CPU (pf_gemm falls back). */
pf_status pf_gemm_dnnl(const pf_gemm_args *g, int nthreads);

#endif
