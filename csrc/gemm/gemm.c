/* gemm.c: pf_gemm, the one GEMM entry point: argument checks and back-end choice. */
#include "core/common.h"
#include "gemm/gemm_dnnl.h"
#include "gemm/gemm_portable.h"

#ifdef PF_HAVE_DNNL
static int pf_backend = PF_GEMM_DNNL;
#else
static int pf_backend = PF_GEMM_PORTABLE;
#endif

/* backend -> the one pf_gemm uses; PF_EUNSUPPORTED for oneDNN in a build without it. */
pf_status pf_set_gemm_backend(pf_gemm_backend backend) {
    if (backend != PF_GEMM_DNNL && backend != PF_GEMM_PORTABLE)
        return pf_fail(PF_EINVAL, "unknown GEMM back end %d", (int)backend);
    if (backend == PF_GEMM_DNNL && !pf_have_dnnl())
        return pf_fail(PF_EUNSUPPORTED, "the 'dnnl' back end is not available: pacofr was built "
                                        "without oneDNN (apt-get install libdnnl-dev, then reinstall)");
    __atomic_store_n(&pf_backend, (int)backend, __ATOMIC_RELAXED);
    return PF_OK;
}

/* The back end pf_gemm uses (oneDNN when built with it, else portable). */
pf_gemm_backend pf_get_gemm_backend(void) {
    return (pf_gemm_backend)__atomic_load_n(&pf_backend, __ATOMIC_RELAXED);
}

/* C[M,N] *= beta (C = 0 when beta == 0, whatever C held): the K == 0 case. */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

/* C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C: checks, back-end choice, fallback (pf.h). */
pf_status pf_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc, pf_dtype dtype) {
    if (M < 0 || N < 0 || K < 0)
        return pf_fail(PF_EINVAL, "gemm: negative size M=%lld N=%lld K=%lld", (long long)M,
                       (long long)N, (long long)K);
    if (dtype != PF_FP32 && dtype != PF_BF16) return pf_fail(PF_EINVAL, "gemm: unknown dtype %d", (int)dtype);
    if (lda < pf_max64(1, trans_a ? M : K))
        return pf_fail(PF_EINVAL, "gemm: lda=%lld is smaller than %s=%lld", (long long)lda,
                       trans_a ? "M" : "K", (long long)(trans_a ? M : K));
    if (ldb < pf_max64(1, trans_b ? K : N))
        return pf_fail(PF_EINVAL, "gemm: ldb=%lld is smaller than %s=%lld", (long long)ldb,
                       trans_b ? "K" : "N", (long long)(trans_b ? K : N));
    if (ldc < pf_max64(1, N))
        return pf_fail(PF_EINVAL, "gemm: ldc=%lld is smaller than N=%lld", (long long)ldc, (long long)N);
    if (M == 0 || N == 0) return PF_OK;
    if (K == 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return PF_OK;
    }
    trans_a = trans_a != 0, trans_b = trans_b != 0;
    int nt = pf_get_num_threads();
#ifdef _OPENMP
    if (omp_in_parallel()) nt = 1;
#endif
    if (pf_get_gemm_backend() == PF_GEMM_DNNL) {
        pf_status st = pf_gemm_dnnl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                                    dtype, nt);
        if (st != PF_EUNSUPPORTED) return st;
        /* oneDNN has no fast kernel for this on this CPU: the portable one computes the same. */
    }
    return pf_gemm_portable(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                            dtype == PF_BF16, nt);
}
