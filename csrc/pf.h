/* pf.h: the public C API of the pacofr core.
 *
 * Every function returns a pf_status; on failure a message is kept per OS thread and
 * pf_last_error() returns it. Nothing here exits, aborts or prints: python/args.c turns
 * statuses into Python exceptions. Dimension letters are fixed in csrc/README.md. */
#ifndef PF_H
#define PF_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PF_OK = 0,
    PF_EINVAL = 1,       /* a bad argument: sizes, leading dimensions, names */
    PF_ENOMEM = 2,       /* an allocation failed */
    PF_EUNSUPPORTED = 3, /* asked for something this build or CPU cannot do */
    PF_EBACKEND = 4,     /* oneDNN reported an error */
} pf_status;

typedef enum { PF_FP32 = 0, PF_BF16 = 1 } pf_dtype;
/* How a layer's backward writes the gradient of its input: added to it, or written over it. */
typedef enum { PF_GRAD_ADD = 0, PF_GRAD_SET = 1 } pf_grad_mode;
typedef enum { PF_GEMM_DNNL = 0, PF_GEMM_PORTABLE = 1 } pf_gemm_backend;

/* One named tensor of a flat parameter buffer (model/vit.c's table, model/optim.c's loops). */
#define PF_NAME_MAX 64

typedef struct {
    char name[PF_NAME_MAX];
    int ndim;
    int64_t shape[4];
    int64_t offset, numel; /* in floats, within the flat parameter buffer */
    int decay;             /* AdamW weight decay applies (matrix weights only) */
    int trainable;         /* 0: fixed (sin-cos position embeddings) */
} pf_tensor;

/* ---- errors (common.c) ---- */
const char *pf_last_error(void);

/* Index of the first NaN or Inf in x[n], or -1 (common.c). */
int64_t pf_first_nonfinite(const float *x, int64_t n);

/* ---- threads (common.c) ----
 * One process-wide count used by every OpenMP region of the core and handed to oneDNN
 * (omp_set_num_threads in the calling thread right before each oneDNN call). */
pf_status pf_set_num_threads(int n);
int pf_get_num_threads(void);

/* ---- GEMM (gemm.c) ----
 * Row-major C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C.
 * A is M x K (lda >= K) or, with trans_a, stored K x M (lda >= M); B likewise.
 * beta == 0 never reads C (NaN in C does not propagate), as in BLAS.
 * dtype PF_BF16: A and B are rounded to bf16 (round to nearest even), products
 * accumulate in fp32, C is fp32. */
pf_status pf_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                  float beta, float *C, int64_t ldc, pf_dtype dtype);

/* The general form: operands may already be bf16 (bit patterns, uint16_t), a bias row may
 * be added, and dtype says how the product is computed (PF_FP32 needs fp32 operands).
 *   C[M,N] = alpha * op(A) @ op(B) + bias[N] (every row) + beta * C
 * bias needs alpha == 1. A bf16 operand is used as is; an fp32 one is rounded (PF_BF16). */
typedef struct {
    int64_t M, N, K;
    int trans_a, trans_b;
    const void *A, *B;  /* float *, or uint16_t * where a_bf16 / b_bf16 */
    int a_bf16, b_bf16;
    int64_t lda, ldb;
    float alpha, beta;
    const float *bias;  /* (N) or NULL */
    float *C;
    int64_t ldc;
    pf_dtype dtype;
} pf_gemm_args;
pf_status pf_gemm_ex(const pf_gemm_args *g);

pf_status pf_set_gemm_backend(pf_gemm_backend backend);
pf_gemm_backend pf_get_gemm_backend(void);
int pf_have_dnnl(void);

/* The portable back end's micro-kernels, best first; only those this CPU runs. */
int pf_portable_kernel_count(void);
const char *pf_portable_kernel_name(int i);
pf_status pf_set_portable_kernel(const char *name); /* NULL or "auto": the best one */
const char *pf_get_portable_kernel(void);

/* oneDNN facts for build_info(); NULL / empty strings when built without it. */
const char *pf_dnnl_version(void);                  /* "2.6.3" or NULL */
const char *pf_dnnl_isa(void);                      /* e.g. "avx512_core_amx" */
const char *pf_dnnl_matmul_impl(pf_dtype dtype);    /* e.g. "brg:avx512_core_amx_bf16" */
/* The bare oneDNN matmul for the benchmark: dst (M, N) = src (M, K) @ wei (K, N) (weights
 * stored (N, K) when trans_b), created once, buffers allocated once, run reps times;
 * *seconds gets the median time of one run. dst_bf16: a bf16 destination. */
pf_status pf_dnnl_bare_matmul(int64_t M, int64_t N, int64_t K, int trans_b, pf_dtype dtype,
                              int dst_bf16, int reps, double *seconds);

/* ---- bf16 (bf16.c) ----
 * x[n] -> y[n]: each value rounded to the nearest bf16 (ties to even) and widened back to
 * fp32; NaN stays NaN (quiet), overflow rounds to +-Inf as IEEE rounding does. */
void pf_round_bf16(const float *x, float *y, int64_t n);
/* x[n] -> y[n] bf16 bit patterns, same rounding. */
void pf_to_bf16(const float *x, uint16_t *y, int64_t n);

#endif
