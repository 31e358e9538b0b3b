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

/* C[M,N] += bias[N] on every row. */
static void add_bias(int64_t M, int64_t N, const float *bias, float *C, int64_t ldc) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (M * N > 65536)
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] += bias[j];
}

/* g's sizes, leading dimensions and flags are consistent (pf.h), else PF_EINVAL. */
static pf_status check_args(const pf_gemm_args *g) {
    if (g->M < 0 || g->N < 0 || g->K < 0)
        return pf_fail(PF_EINVAL, "gemm: negative size M=%lld N=%lld K=%lld", (long long)g->M,
                       (long long)g->N, (long long)g->K);
    if (g->dtype != PF_FP32 && g->dtype != PF_BF16) return pf_fail(PF_EINVAL, "gemm: unknown dtype %d", (int)g->dtype);
    if (g->dtype == PF_FP32 && (g->a_bf16 || g->b_bf16))
        return pf_fail(PF_EINVAL, "gemm: bf16 operands need dtype bf16");
    if (g->bias && g->alpha != 1.0f) return pf_fail(PF_EINVAL, "gemm: a bias needs alpha == 1");
    if (g->lda < pf_max64(1, g->trans_a ? g->M : g->K))
        return pf_fail(PF_EINVAL, "gemm: lda=%lld is smaller than %s=%lld", (long long)g->lda,
                       g->trans_a ? "M" : "K", (long long)(g->trans_a ? g->M : g->K));
    if (g->ldb < pf_max64(1, g->trans_b ? g->K : g->N))
        return pf_fail(PF_EINVAL, "gemm: ldb=%lld is smaller than %s=%lld", (long long)g->ldb,
                       g->trans_b ? "K" : "N", (long long)(g->trans_b ? g->K : g->N));
    if (g->ldc < pf_max64(1, g->N))
        return pf_fail(PF_EINVAL, "gemm: ldc=%lld is smaller than N=%lld", (long long)g->ldc, (long long)g->N);
    return PF_OK;
}

/* The general GEMM (pf.h): checks, the trivial cases, back-end choice, fallback. */
pf_status pf_gemm_ex(const pf_gemm_args *g_in) {
    TRY(check_args(g_in));
    pf_gemm_args g = *g_in;
    if (g.M == 0 || g.N == 0) return PF_OK;
    if (g.K == 0 || g.alpha == 0.0f) {
        scale_c(g.M, g.N, g.beta, g.C, g.ldc);
        if (g.bias) add_bias(g.M, g.N, g.bias, g.C, g.ldc);
        return PF_OK;
    }
    g.trans_a = g.trans_a != 0, g.trans_b = g.trans_b != 0;
    int nt = pf_get_num_threads();
#ifdef _OPENMP
    if (omp_in_parallel()) nt = 1;
#endif
    if (pf_get_gemm_backend() == PF_GEMM_DNNL) {
        pf_status st = pf_gemm_dnnl(&g, nt);
        if (st != PF_EUNSUPPORTED) return st;
        /* oneDNN has no fast kernel for this on this CPU: the portable one computes the same
         * (its bias added here). */
    }
    TRY(pf_gemm_portable_ex(&g, nt));
    if (g.bias) add_bias(g.M, g.N, g.bias, g.C, g.ldc);
    return PF_OK;
}

/* C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C on fp32 operands (pf.h). */
pf_status pf_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc, pf_dtype dtype) {
    const pf_gemm_args g = {.M = M, .N = N, .K = K, .trans_a = trans_a, .trans_b = trans_b, .A = A,
                            .B = B, .lda = lda, .ldb = ldb, .alpha = alpha, .beta = beta, .C = C,
                            .ldc = ldc, .dtype = dtype};
    return pf_gemm_ex(&g);
}
