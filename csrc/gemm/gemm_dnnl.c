/* gemm_dnnl.c: the oneDNN GEMM back end.
 *
 * fp32 and bf16 go through oneDNN's matmul primitive, created once per (shape, layout,
 * alpha, beta, threads) and cached; bf16 inputs are converted here (round to nearest even)
 * into dense buffers, never through NumPy; the output stays fp32. Following oneDNN's
 * examples: one engine, primitives created once and executed many times, every call
 * checked. The scratchpad is owned by the caller (user mode) and a stream is made per call,
 * so several threads may run the same primitive at once. */
#include "core/common.h"
#include "gemm/gemm_dnnl.h"

#ifndef PF_HAVE_DNNL

/* Without oneDNN: no back end, no facts, every call PF_EUNSUPPORTED. */
int pf_have_dnnl(void) { return 0; }
/* oneDNN's version, "2.6.3". */
const char *pf_dnnl_version(void) { return NULL; }
/* The ISA oneDNN's kernels use on this CPU, e.g. "avx512_core_amx". */
const char *pf_dnnl_isa(void) { return NULL; }
const char *pf_dnnl_matmul_impl(pf_dtype dtype) { (void)dtype; return NULL; }

pf_status pf_gemm_dnnl(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc, pf_dtype dtype, int nthreads) {
    (void)nthreads, (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda;
    (void)B, (void)ldb, (void)beta, (void)C, (void)ldc, (void)dtype;
    return pf_fail(PF_EUNSUPPORTED, "pacofr was built without oneDNN");
}

#else

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <dnnl.h>
#include <dnnl_debug.h>

#define MAX_CACHED 1024 /* primitives kept; beyond this a call builds and frees its own */

typedef struct entry {
    int dtype, trans_a, trans_b, nthreads;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    int use_sgemm;   /* oneDNN offers only its reference matmul here: dnnl_sgemm is faster */
    int unsupported; /* no fast oneDNN kernel (bf16 without AVX-512): pf_gemm falls back */
    struct entry *next;
} entry;

static dnnl_engine_t engine;
static dnnl_status_t engine_status = dnnl_runtime_error;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *cache;
static int cache_size;

/* pthread_once: the process's one oneDNN CPU engine. */
static void engine_init(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

#define DNNL_TRY(call)                                                                   \
    do {                                                                                 \
        dnnl_status_t s_ = (call);                                                       \
        if (s_ != dnnl_success) {                                                        \
            st = pf_fail(s_ == dnnl_unimplemented ? PF_EUNSUPPORTED : PF_EBACKEND,       \
                         "oneDNN: %s failed: %s", #call, dnnl_status2str(s_));           \
            goto done;                                                                   \
        }                                                                                \
    } while (0)

#if DNNL_VERSION_MAJOR >= 3
typedef dnnl_memory_desc_t md_t; /* an opaque handle in 3.x */
#define MD(md) (md)
/* A rows x cols memory descriptor of type dt with row / column strides rs, cs. */
static dnnl_status_t md_make(md_t *md, int64_t rows, int64_t cols, dnnl_data_type_t dt,
                             int64_t rs, int64_t cs) {
    dnnl_dims_t dims = {rows, cols}, strides = {rs, cs};
    return dnnl_memory_desc_create_with_strides(md, 2, dims, dt, strides);
}
/* Release a descriptor made by md_make. */
static void md_free(md_t md) { if (md) dnnl_memory_desc_destroy(md); }
#else
typedef dnnl_memory_desc_t md_t; /* a plain struct in 2.x */
#define MD(md) (&(md))
/* The same two for oneDNN 2.x. */
static dnnl_status_t md_make(md_t *md, int64_t rows, int64_t cols, dnnl_data_type_t dt,
                             int64_t rs, int64_t cs) {
    dnnl_dims_t dims = {rows, cols}, strides = {rs, cs};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}
static void md_free(md_t md) { (void)md; }
#endif

/* The matmul primitive descriptor for e's shape and layout under attr (may be NULL). */
static pf_status create_pd(const entry *e, const_dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd) {
    pf_status st = PF_OK;
    dnnl_data_type_t dt = e->dtype == PF_BF16 ? dnnl_bf16 : dnnl_f32;
    md_t src = {0}, wei = {0}, dst = {0};
    DNNL_TRY(md_make(&src, e->M, e->K, dt, e->trans_a ? 1 : e->lda, e->trans_a ? e->lda : 1));
    DNNL_TRY(md_make(&wei, e->K, e->N, dt, e->trans_b ? 1 : e->ldb, e->trans_b ? e->ldb : 1));
    DNNL_TRY(md_make(&dst, e->M, e->N, dnnl_f32, e->ldc, 1));
#if DNNL_VERSION_MAJOR >= 3
    DNNL_TRY(dnnl_matmul_primitive_desc_create(pd, engine, src, wei, NULL, dst, attr));
#else
    dnnl_matmul_desc_t desc;
    DNNL_TRY(dnnl_matmul_desc_init(&desc, &src, &wei, NULL, &dst));
    DNNL_TRY(dnnl_primitive_desc_create(pd, &desc, attr, engine, NULL));
#endif
done:
    md_free(src), md_free(wei), md_free(dst);
    return st;
}

/* Build the primitive for e's key: dst = alpha * src @ weights (+ beta * dst), done as an
 * eltwise-linear post-op then a sum post-op, which both oneDNN 2.x and 3.x accept. */
static pf_status entry_build(entry *e) {
    pf_status st = PF_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    const char *impl = NULL;

    DNNL_TRY(dnnl_primitive_attr_create(&attr));
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    DNNL_TRY(dnnl_post_ops_create(&ops));
#if DNNL_VERSION_MAJOR >= 3
    if (e->alpha != 1.0f) DNNL_TRY(dnnl_post_ops_append_eltwise(ops, dnnl_eltwise_linear, e->alpha, 0.0f));
    if (e->beta != 0.0f) DNNL_TRY(dnnl_post_ops_append_sum(ops, e->beta, 0, dnnl_data_type_undef));
#else
    if (e->alpha != 1.0f) DNNL_TRY(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_linear, e->alpha, 0.0f));
    if (e->beta != 0.0f) DNNL_TRY(dnnl_post_ops_append_sum(ops, e->beta));
#endif
    DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, ops));
    st = create_pd(e, attr, &e->pd);
    if (st != PF_OK) goto done;
    DNNL_TRY(dnnl_primitive_desc_query(e->pd, dnnl_query_impl_info_str, 0, &impl));
    if (impl && strncmp(impl, "ref", 3) == 0) {
        if (e->dtype == PF_BF16)
            e->unsupported = 1;
        else
            e->use_sgemm = 1;
    } else {
        DNNL_TRY(dnnl_primitive_create(&e->prim, e->pd));
    }
done:
    if (st != PF_OK && e->pd) {
        dnnl_primitive_desc_destroy(e->pd);
        e->pd = NULL;
    }
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return st;
}

/* Destroy a cache entry's primitive and descriptor, then the entry. */
static void entry_free(entry *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->pd) dnnl_primitive_desc_destroy(e->pd);
    free(e);
}

/* 1 when two entries describe the same matmul (shape, layout, dtype, alpha, beta, threads). */
static int same_key(const entry *a, const entry *b) {
    return a->dtype == b->dtype && a->trans_a == b->trans_a && a->trans_b == b->trans_b &&
           a->nthreads == b->nthreads && a->M == b->M && a->N == b->N && a->K == b->K &&
           a->lda == b->lda && a->ldb == b->ldb && a->ldc == b->ldc && a->alpha == b->alpha &&
           a->beta == b->beta;
}

/* The cached primitive for key (built on first use). *owned = 1 when the cache is full and
 * the caller must free the returned entry itself. */
static pf_status entry_get(const entry *key, entry **out, int *owned) {
    pf_status st = PF_OK;
    *owned = 0;
    pthread_mutex_lock(&cache_lock);
    for (entry *e = cache; e; e = e->next)
        if (same_key(e, key)) {
            *out = e;
            goto unlock;
        }
    entry *e = malloc(sizeof *e);
    if (!e) {
        st = pf_fail(PF_ENOMEM, "gemm: out of memory for a oneDNN primitive");
        goto unlock;
    }
    *e = *key;
    e->pd = NULL, e->prim = NULL, e->use_sgemm = 0, e->unsupported = 0, e->next = NULL;
    st = entry_build(e);
    if (st == PF_EUNSUPPORTED) { /* remember the refusal: asking oneDNN again costs time */
        e->unsupported = 1;
        st = PF_OK;
    }
    if (st != PF_OK) {
        free(e);
        goto unlock;
    }
    if (cache_size < MAX_CACHED) {
        e->next = cache;
        cache = e;
        cache_size++;
    } else {
        *owned = 1;
    }
    *out = e;
unlock:
    pthread_mutex_unlock(&cache_lock);
    return st;
}

/* rows x cols fp32 (row stride ld) -> dense rows x cols bf16. */
static void to_bf16_dense(const float *x, int64_t rows, int64_t cols, int64_t ld, uint16_t *y) {
    if (ld == cols) {
        pf_to_bf16(x, y, rows * cols);
        return;
    }
    int nt = rows * cols >= (1 << 16) ? pf_get_num_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows; r++) pf_to_bf16(x + r * ld, y + r * cols, cols);
}

/* Run e's primitive on (a, b, c); a and b are in the layout e was built for. */
static pf_status execute(const entry *e, const void *a, const void *b, float *c) {
    pf_status st = PF_OK;
    dnnl_memory_t msrc = NULL, mwei = NULL, mdst = NULL, mscr = NULL;
    dnnl_stream_t stream = NULL;
    void *scratch = NULL;
    const_dnnl_primitive_desc_t pd = e->pd;
    size_t scratch_bytes =
        dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));

    if (scratch_bytes && !(scratch = pf_malloc(scratch_bytes))) {
        st = pf_fail(PF_ENOMEM, "gemm: cannot allocate %zu bytes of oneDNN scratchpad", scratch_bytes);
        goto done;
    }
    DNNL_TRY(dnnl_memory_create(&msrc, dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), engine, (void *)a));
    DNNL_TRY(dnnl_memory_create(&mwei, dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), engine, (void *)b));
    DNNL_TRY(dnnl_memory_create(&mdst, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0), engine, c));
    DNNL_TRY(dnnl_memory_create(&mscr, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), engine, scratch));
    DNNL_TRY(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, msrc}, {DNNL_ARG_WEIGHTS, mwei},
                              {DNNL_ARG_DST, mdst}, {DNNL_ARG_SCRATCHPAD, mscr}};
    DNNL_TRY(dnnl_primitive_execute(e->prim, stream, 4, args));
    DNNL_TRY(dnnl_stream_wait(stream));
done:
    if (stream) dnnl_stream_destroy(stream);
    if (mscr) dnnl_memory_destroy(mscr);
    if (mdst) dnnl_memory_destroy(mdst);
    if (mwei) dnnl_memory_destroy(mwei);
    if (msrc) dnnl_memory_destroy(msrc);
    free(scratch);
    return st;
}

/* C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C through the primitive cached for this shape,
 * layout, dtype, alpha and beta (gemm_dnnl.h); bf16 operands go through dense bf16 copies. */
pf_status pf_gemm_dnnl(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc, pf_dtype dtype, int nthreads) {
    pf_status st = PF_OK;
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success)
        return pf_fail(PF_EBACKEND, "oneDNN: cannot create the CPU engine: %s", dnnl_status2str(engine_status));

    const int nt = nthreads;
    omp_set_num_threads(nt); /* oneDNN's OpenMP runtime reads the calling thread's count */

    /* bf16 operands are converted into dense buffers, so the primitive sees dense strides. */
    const int64_t a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    const int64_t b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    entry key = {.dtype = dtype, .trans_a = trans_a, .trans_b = trans_b, .nthreads = nt,
                 .M = M, .N = N, .K = K, .lda = dtype == PF_BF16 ? a_cols : lda,
                 .ldb = dtype == PF_BF16 ? b_cols : ldb, .ldc = ldc, .alpha = alpha, .beta = beta};
    entry *e = NULL;
    int owned = 0;
    uint16_t *a16 = NULL, *b16 = NULL;

    TRY(entry_get(&key, &e, &owned));
    if (e->unsupported) {
        st = pf_fail(PF_EUNSUPPORTED, "oneDNN has no fast %s matmul on this CPU",
                     dtype == PF_BF16 ? "bf16" : "fp32");
        goto done;
    }
    if (e->use_sgemm) {
        dnnl_status_t s = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha,
                                     A, lda, B, ldb, beta, C, ldc);
        if (s != dnnl_success) st = pf_fail(PF_EBACKEND, "oneDNN: dnnl_sgemm failed: %s", dnnl_status2str(s));
        goto done;
    }
    if (dtype == PF_BF16) {
        a16 = pf_malloc((size_t)(M * K) * sizeof(uint16_t));
        b16 = pf_malloc((size_t)(K * N) * sizeof(uint16_t));
        if (!a16 || !b16) {
            st = pf_fail(PF_ENOMEM, "gemm: cannot allocate bf16 copies of A and B");
            goto done;
        }
        to_bf16_dense(A, a_rows, a_cols, lda, a16);
        to_bf16_dense(B, b_rows, b_cols, ldb, b16);
        st = execute(e, a16, b16, C);
    } else {
        st = execute(e, A, B, C);
    }
done:
    free(a16);
    free(b16);
    if (owned) entry_free(e);
    return st;
}

/* With oneDNN: 1, its version "2.6.3" and the effective ISA's name. */
int pf_have_dnnl(void) { return 1; }

const char *pf_dnnl_version(void) {
    static char buf[32];
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "%d.%d.%d", v->major, v->minor, v->patch);
    return buf;
}

const char *pf_dnnl_isa(void) {
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
#if DNNL_VERSION_MAJOR >= 3
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_amx_fp16: return "avx512_core_amx_fp16";
#else
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
#endif
    default: return "other";
    }
}

/* The implementation oneDNN picks for a 64 x 64 x 64 matmul of this dtype, e.g.
 * "brg:avx512_core_amx_bf16"; "unavailable" when it has none. */
const char *pf_dnnl_matmul_impl(pf_dtype dtype) {
    static _Thread_local char buf[128];
    const entry key = {.dtype = dtype, .M = 64, .N = 64, .K = 64, .lda = 64, .ldb = 64, .ldc = 64};
    dnnl_primitive_desc_t pd = NULL;
    const char *impl = NULL;
    snprintf(buf, sizeof buf, "unavailable");
    pthread_once(&engine_once, engine_init);
    omp_set_num_threads(pf_get_num_threads());
    if (engine_status == dnnl_success && create_pd(&key, NULL, &pd) == PF_OK &&
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(buf, sizeof buf, "%s", impl);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return buf;
}

#endif
