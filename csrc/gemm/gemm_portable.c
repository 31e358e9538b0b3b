/* gemm_portable.c: the portable GEMM back end.
 *
 * The classic packed, blocked scheme (Goto / BLIS): B is packed kc x nc into NR-wide panels
 * shared by all threads; each thread packs an mc x kc block of A into MR-high panels that stay
 * in L2 and runs the ISA's micro-kernel over every MR x NR tile. Transposes are handled by the
 * packing, which reads through (row, column) strides, so all four cases share one path. */
#include <string.h>
#include "core/bf16.h"
#include "core/common.h"
#include "gemm/gemm.h"

#define KC 256  /* depth of a packed block: a kc x NR panel of B stays in L1 */
#define MC 96   /* rows of A per block (a multiple of every MR): mc x kc stays in L2 */
#define NC 4096 /* columns of B per packed block */

static int pf_kernel_index = -1; /* -1: not chosen yet */

static int best_kernel(void) {
    for (int i = 0; i < pf_ukernel_count; i++)
        if (pf_ukernels[i].supported()) return i;
    return pf_ukernel_count - 1;
}

static const pf_ukernel *current_kernel(void) {
    int i = __atomic_load_n(&pf_kernel_index, __ATOMIC_RELAXED);
    if (i < 0) {
        i = best_kernel();
        __atomic_store_n(&pf_kernel_index, i, __ATOMIC_RELAXED);
    }
    return &pf_ukernels[i];
}

int pf_portable_kernel_count(void) {
    int n = 0;
    for (int i = 0; i < pf_ukernel_count; i++) n += pf_ukernels[i].supported() != 0;
    return n;
}

const char *pf_portable_kernel_name(int i) {
    for (int j = 0; j < pf_ukernel_count; j++)
        if (pf_ukernels[j].supported() && i-- == 0) return pf_ukernels[j].name;
    return NULL;
}

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

pf_status pf_gemm_portable(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K,
                           float alpha, const float *A, int64_t lda, const float *B,
                           int64_t ldb, float beta, float *C, int64_t ldc, int round_bf16,
                           int nthreads) {
    const pf_ukernel *uk = current_kernel();
    const int mr = uk->mr, nr = uk->nr;
    const int64_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    const int64_t rsb = trans_b ? 1 : ldb, csb = trans_b ? ldb : 1;
    const int64_t kc_max = pf_min64(K, KC);
    const int64_t nc_max = pf_min64((N + nr - 1) / nr * nr, NC);
    const int64_t n_ic = (M + MC - 1) / MC;
    const int nt = (int)pf_min64(nthreads, pf_max64(1, M * N * K / (32 * 1024)));

    float *Bp = pf_malloc((size_t)(kc_max * nc_max) * sizeof(float));
    float *Ap = pf_malloc((size_t)(nt * MC * kc_max) * sizeof(float));
    if (!Bp || !Ap) {
        free(Bp);
        free(Ap);
        return pf_fail(PF_ENOMEM, "gemm: cannot allocate %lld bytes of packing buffers",
                       (long long)((kc_max * nc_max + nt * MC * kc_max) * 4));
    }

    for (int64_t jc = 0; jc < N; jc += NC) {
        const int64_t nc = pf_min64(NC, N - jc);
        const int64_t n_jr = (nc + nr - 1) / nr;
        /* With few row blocks, also split the columns so every thread has work. */
        const int64_t n_jchunk = n_ic >= 2 * nt ? 1 : pf_min64(n_jr, (2 * nt + n_ic - 1) / n_ic);
        const int64_t jr_per_chunk = (n_jr + n_jchunk - 1) / n_jchunk;
        for (int64_t pc = 0; pc < K; pc += KC) {
            const int64_t kc = pf_min64(KC, K - pc);
            const float beta_pc = pc == 0 ? beta : 1.0f;
#pragma omp parallel num_threads(nt)
            {
                const int tid = pf_thread_num();
                float *my_Ap = Ap + tid * MC * kc_max;
#pragma omp for schedule(static)
                for (int64_t p = 0; p < n_jr; p++)
                    pack_b_panel(B, rsb, csb, pc, kc, jc + p * nr, pf_min64(nr, nc - p * nr), nr,
                                 round_bf16, Bp + p * kc * nr);
#pragma omp for schedule(dynamic, 1)
                for (int64_t item = 0; item < n_ic * n_jchunk; item++) {
                    const int64_t ic = item / n_jchunk * MC, mc = pf_min64(MC, M - ic);
                    const int64_t jr0 = item % n_jchunk * jr_per_chunk;
                    const int64_t jr1 = pf_min64(n_jr, jr0 + jr_per_chunk);
                    if (jr0 >= jr1) continue;
                    pack_a(A, rsa, csa, ic, mc, pc, kc, mr, round_bf16, my_Ap);
                    for (int64_t jr = jr0; jr < jr1; jr++) {
                        const int n = (int)pf_min64(nr, nc - jr * nr);
                        for (int64_t ir = 0; ir < mc; ir += mr) {
                            const int m = (int)pf_min64(mr, mc - ir);
                            uk->fn(kc, my_Ap + ir * kc, Bp + jr * kc * nr,
                                   C + (ic + ir) * ldc + jc + jr * nr, ldc, alpha, beta_pc, m, n);
                        }
                    }
                }
            }
        }
    }
    free(Bp);
    free(Ap);
    return PF_OK;
}
