/* gemm_portable.c: the portable GEMM back end.
 *
 * The classic packed, blocked scheme (Goto / BLIS): B is packed kc x nc into NR-wide panels
 * shared by all threads; each thread packs an mc x kc block of A into MR-high panels that stay
 * in L2 and runs the ISA's micro-kernel over every MR x NR tile. Transposes are handled by the
 * packing, which reads through (row, column) strides, so all four cases share one path. */
#include <string.h>
#include "core/bf16.h"
#include "core/common.h"
#include "gemm/gemm_kernels.h"
#include "gemm/gemm_portable.h"

#define KC 256  /* depth of a packed block: a kc x NR panel of B stays in L1 */
#define MC 96   /* rows of A per block (a multiple of every MR): mc x kc stays in L2 */
#define NC 4096 /* columns of B per packed block */

static int pf_kernel_index = -1; /* -1: not chosen yet */

/* The index of the first (best) micro-kernel this CPU runs. */
static int best_kernel(void) {
    for (int i = 0; i < pf_ukernel_count; i++)
        if (pf_ukernels[i].supported()) return i;
    return pf_ukernel_count - 1;
}

/* The micro-kernel in use, choosing the best one on first call. */
static const pf_ukernel *current_kernel(void) {
    int i = __atomic_load_n(&pf_kernel_index, __ATOMIC_RELAXED);
    if (i < 0) {
        i = best_kernel();
        __atomic_store_n(&pf_kernel_index, i, __ATOMIC_RELAXED);
    }
    return &pf_ukernels[i];
}

/* How many micro-kernels this CPU runs. */
int pf_portable_kernel_count(void) {
    int n = 0;
    for (int i = 0; i < pf_ukernel_count; i++) n += pf_ukernels[i].supported() != 0;
    return n;
}

/* The name of the i-th kernel this CPU runs, best first; NULL past the end. */
const char *pf_portable_kernel_name(int i) {
    for (int j = 0; j < pf_ukernel_count; j++)
        if (pf_ukernels[j].supported() && i-- == 0) return pf_ukernels[j].name;
    return NULL;
}

/* name (or NULL / "auto": the best) -> the kernel in use. */
pf_status pf_set_portable_kernel(const char *name) {
    if (name == NULL || strcmp(name, "auto") == 0) {
        __atomic_store_n(&pf_kernel_index, best_kernel(), __ATOMIC_RELAXED);
        return PF_OK;
    }
    for (int i = 0; i < pf_ukernel_count; i++) {
        if (strcmp(pf_ukernels[i].name, name) != 0) continue;
        if (!pf_ukernels[i].supported())
            return pf_fail(PF_EUNSUPPORTED, "portable kernel '%s' needs an ISA this CPU lacks", name);
        __atomic_store_n(&pf_kernel_index, i, __ATOMIC_RELAXED);
        return PF_OK;
    }
    return pf_fail(PF_EINVAL, "unknown portable kernel '%s'", name);
}

/* The name of the kernel in use. */
const char *pf_get_portable_kernel(void) { return current_kernel()->name; }

/* A block (rows i0.., depth k0..) -> Ap[ceil(mc/mr)][kc][mr], zero-padded rows.
 * Element (i, k) of op(A) sits at A[i * rs + k * cs]. */
static void pack_a(const float *A, int64_t rs, int64_t cs, int64_t i0, int64_t mc, int64_t k0,
                   int64_t kc, int mr, int round_bf16, float *Ap) {
    for (int64_t ir = 0; ir < mc; ir += mr) {
        int64_t m = pf_min64(mr, mc - ir);
        for (int64_t k = 0; k < kc; k++) {
            const float *src = A + (i0 + ir) * rs + (k0 + k) * cs;
            float *dst = Ap + ir * kc + k * mr;
            for (int64_t r = 0; r < m; r++) dst[r] = src[r * rs];
            for (int64_t r = m; r < mr; r++) dst[r] = 0.0f;
            if (round_bf16)
                for (int64_t r = 0; r < m; r++) dst[r] = pf_bf16_round(dst[r]);
        }
    }
}

/* One NR-wide panel of B (depth k0.., columns j0..) -> Bp[kc][nr], zero-padded columns.
 * Element (k, j) of op(B) sits at B[k * rs + j * cs]. */
static void pack_b_panel(const float *B, int64_t rs, int64_t cs, int64_t k0, int64_t kc,
                         int64_t j0, int64_t n, int nr, int round_bf16, float *Bp) {
    for (int64_t k = 0; k < kc; k++) {
        const float *src = B + (k0 + k) * rs + j0 * cs;
        float *dst = Bp + k * nr;
        if (cs == 1) {
            memcpy(dst, src, (size_t)n * sizeof(float));
        } else {
            for (int64_t j = 0; j < n; j++) dst[j] = src[j * cs];
        }
        for (int64_t j = n; j < nr; j++) dst[j] = 0.0f;
        if (round_bf16)
            for (int64_t j = 0; j < n; j++) dst[j] = pf_bf16_round(dst[j]);
    }
}

/* One product's operands and blocking, shared by its column blocks. */
typedef struct {
    const pf_ukernel *uk;
    const float *A, *B;
    float *C;
    int64_t M, K, ldc, rsa, csa, rsb, csb, kc_max, n_ic;
    float alpha, beta;
    int round_bf16, nt;
    float *Ap, *Bp; /* packing buffers: nt x MC x kc_max for A, kc_max x nc_max for B */
} gemm_job;

/* Columns [jc, jc + nc) of C, depth block [pc, pc + kc): pack B's panels, then each thread packs
 * its row blocks of A and runs the micro-kernel over their MR x NR tiles. beta_pc: beta for the
 * first depth block, 1 after (accumulate). */
static void gemm_block(const gemm_job *g, int64_t jc, int64_t nc, int64_t pc, int64_t kc, float beta_pc) {
    const int mr = g->uk->mr, nr = g->uk->nr, nt = g->nt;
    const int64_t n_jr = (nc + nr - 1) / nr, n_ic = g->n_ic;
    /* With few row blocks, also split the columns so every thread has work. */
    const int64_t n_jchunk = n_ic >= 2 * nt ? 1 : pf_min64(n_jr, (2 * nt + n_ic - 1) / n_ic);
    const int64_t jr_per_chunk = (n_jr + n_jchunk - 1) / n_jchunk;
#pragma omp parallel num_threads(nt)
    {
        float *my_Ap = g->Ap + pf_thread_num() * MC * g->kc_max;
#pragma omp for schedule(static)
        for (int64_t p = 0; p < n_jr; p++)
            pack_b_panel(g->B, g->rsb, g->csb, pc, kc, jc + p * nr, pf_min64(nr, nc - p * nr), nr, g->round_bf16,
                         g->Bp + p * kc * nr);
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < n_ic * n_jchunk; item++) {
            const int64_t ic = item / n_jchunk * MC, mc = pf_min64(MC, g->M - ic);
            const int64_t jr0 = item % n_jchunk * jr_per_chunk;
            const int64_t jr1 = pf_min64(n_jr, jr0 + jr_per_chunk);
            if (jr0 >= jr1) continue;
            pack_a(g->A, g->rsa, g->csa, ic, mc, pc, kc, mr, g->round_bf16, my_Ap);
            for (int64_t jr = jr0; jr < jr1; jr++) {
                const int n = (int)pf_min64(nr, nc - jr * nr);
                for (int64_t ir = 0; ir < mc; ir += mr) {
                    const int m = (int)pf_min64(mr, mc - ir);
                    g->uk->fn(kc, my_Ap + ir * kc, g->Bp + jr * kc * nr, g->C + (ic + ir) * g->ldc + jc + jr * nr,
                              g->ldc, g->alpha, beta_pc, m, n);
                }
            }
        }
    }
}

/* C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C (pf.h): the packing buffers, then the
 * (NC columns) x (KC depth) blocks in order. */
pf_status pf_gemm_portable(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                           float alpha, const float *A, int64_t lda, const float *B,
                           int64_t ldb, float beta, float *C, int64_t ldc, int round_bf16,
                           int nthreads) {
    const pf_ukernel *uk = current_kernel();
    const int64_t kc_max = pf_min64(K, KC);
    const int64_t nc_max = pf_min64((N + uk->nr - 1) / uk->nr * uk->nr, NC);
    const int nt = (int)pf_min64(nthreads, pf_max64(1, M * N * K / (32 * 1024)));
    gemm_job g = {.uk = uk, .A = A, .B = B, .C = C, .M = M, .K = K, .ldc = ldc,
                  .rsa = trans_a ? 1 : lda, .csa = trans_a ? lda : 1, .rsb = trans_b ? 1 : ldb,
                  .csb = trans_b ? ldb : 1, .kc_max = kc_max, .n_ic = (M + MC - 1) / MC, .alpha = alpha,
                  .beta = beta, .round_bf16 = round_bf16, .nt = nt};
    g.Bp = pf_malloc((size_t)(kc_max * nc_max) * sizeof(float));
    g.Ap = pf_malloc((size_t)(nt * MC * kc_max) * sizeof(float));
    if (!g.Bp || !g.Ap) {
        free(g.Bp);
        free(g.Ap);
        return pf_fail(PF_ENOMEM, "gemm: cannot allocate %lld bytes of packing buffers",
                       (long long)((kc_max * nc_max + nt * MC * kc_max) * 4));
    }
    for (int64_t jc = 0; jc < N; jc += NC)
        for (int64_t pc = 0; pc < K; pc += KC)
            gemm_block(&g, jc, pf_min64(NC, N - jc), pc, pf_min64(KC, K - pc), pc == 0 ? beta : 1.0f);
    free(g.Bp);
    free(g.Ap);
    return PF_OK;
}

/* rows x cols bf16 bits (row stride ld) -> dense fp32 (exact). */
static void widen(const uint16_t *x, int64_t rows, int64_t cols, int64_t ld, float *y) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * cols > 65536)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            const uint32_t u = (uint32_t)x[r * ld + c] << 16;
            memcpy(y + r * cols + c, &u, sizeof u);
        }
}

/* pf_gemm_ex on the portable back end without its bias (gemm_portable.h). */
pf_status pf_gemm_portable_ex(const pf_gemm_args *g, int nthreads) {
    const int64_t a_rows = g->trans_a ? g->K : g->M, a_cols = g->trans_a ? g->M : g->K;
    const int64_t b_rows = g->trans_b ? g->N : g->K, b_cols = g->trans_b ? g->K : g->N;
    float *a32 = g->a_bf16 ? pf_malloc((size_t)(a_rows * a_cols) * sizeof(float)) : NULL;
    float *b32 = g->b_bf16 ? pf_malloc((size_t)(b_rows * b_cols) * sizeof(float)) : NULL;
    pf_status st = PF_OK;
    if ((g->a_bf16 && !a32) || (g->b_bf16 && !b32)) {
        st = pf_fail(PF_ENOMEM, "gemm: cannot allocate fp32 copies of bf16 operands");
        goto done;
    }
    if (a32) widen(g->A, a_rows, a_cols, g->lda, a32);
    if (b32) widen(g->B, b_rows, b_cols, g->ldb, b32);
    st = pf_gemm_portable(g->trans_a, g->trans_b, g->M, g->N, g->K, g->alpha, a32 ? a32 : g->A,
                          a32 ? a_cols : g->lda, b32 ? b32 : g->B, b32 ? b_cols : g->ldb, g->beta, g->C,
                          g->ldc, g->dtype == PF_BF16, nthreads);
done:
    free(a32);
    free(b32);
    return st;
}
