/* gemm_dnnl.c: the oneDNN GEMM back end.
 *
 * fp32 and bf16 go through oneDNN's matmul primitive, created once per (shape, layout,
 * alpha, beta, bias, threads) and cached. Each calling thread keeps its own stream, and
 * its scratchpad and bf16 staging live in its pf_tls_buffer slots (grown when a bigger
 * product comes), so a call allocates nothing and several threads may run the same
 * primitive at once.
 * fp32 operands of a bf16 product are converted here (round to nearest even) into the
 * staging buffers; bf16 operands (a model's bf16 weights, say) go in as they are. The
 * output stays fp32. Following oneDNN's examples: one engine, primitives created once and
 * executed many times, every call checked. */
#include "core/common.h"
#include "core/bf16.h"
#include "gemm/gemm_dnnl.h"

#ifndef PF_HAVE_DNNL

/* Without oneDNN: no back end, no facts, every call PF_EUNSUPPORTED. */
int pf_have_dnnl(void) { return 0; }
/* oneDNN's version, "2.6.3". */
const char *pf_dnnl_version(void) { return NULL; }
/* The ISA oneDNN's kernels use on this CPU, e.g. "avx512_core_amx". */
const char *pf_dnnl_isa(void) { return NULL; }
const char *pf_dnnl_matmul_impl(pf_dtype dtype) { (void)dtype; return NULL; }

pf_status pf_gemm_dnnl(const pf_gemm_args *g, int nthreads) {
    (void)g, (void)nthreads;
    return pf_fail(PF_EUNSUPPORTED, "pacofr was built without oneDNN");
}

pf_status pf_dnnl_bare_matmul(int64_t M, int64_t N, int64_t K, int trans_b, pf_dtype dtype, int dst_bf16,
                              int reps, double *seconds) {
    (void)M, (void)N, (void)K, (void)trans_b, (void)dtype, (void)dst_bf16, (void)reps, (void)seconds;
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
    int dtype, trans_a, trans_b, nthreads, has_bias, dst_bf16;
    int64_t M, N, K, lda, ldb, ldc; /* lda, ldb: as the primitive reads its operands */
    float alpha, beta;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t prim;
    size_t scratch_bytes;
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
typedef const_dnnl_memory_desc_t const_md_t;
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
typedef const dnnl_memory_desc_t *const_md_t;
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
    md_t src = {0}, wei = {0}, dst = {0}, bia = {0};
    DNNL_TRY(md_make(&src, e->M, e->K, dt, e->trans_a ? 1 : e->lda, e->trans_a ? e->lda : 1));
    DNNL_TRY(md_make(&wei, e->K, e->N, dt, e->trans_b ? 1 : e->ldb, e->trans_b ? e->ldb : 1));
    DNNL_TRY(md_make(&dst, e->M, e->N, e->dst_bf16 ? dnnl_bf16 : dnnl_f32, e->ldc, 1));
    if (e->has_bias) DNNL_TRY(md_make(&bia, 1, e->N, dnnl_f32, e->N, 1));
#if DNNL_VERSION_MAJOR >= 3
    DNNL_TRY(dnnl_matmul_primitive_desc_create(pd, engine, src, wei, e->has_bias ? bia : NULL, dst, attr));
#else
    dnnl_matmul_desc_t desc;
    DNNL_TRY(dnnl_matmul_desc_init(&desc, &src, &wei, e->has_bias ? &bia : NULL, &dst));
    DNNL_TRY(dnnl_primitive_desc_create(pd, &desc, attr, engine, NULL));
#endif
done:
    md_free(src), md_free(wei), md_free(dst);
    if (e->has_bias) md_free(bia);
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
        e->scratch_bytes =
            dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(e->pd, dnnl_query_scratchpad_md, 0));
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
           a->beta == b->beta && a->has_bias == b->has_bias && a->dst_bf16 == b->dst_bf16;
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
    e->pd = NULL, e->prim = NULL, e->use_sgemm = 0, e->unsupported = 0, e->next = NULL, e->scratch_bytes = 0;
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

static pthread_key_t stream_key;
static pthread_once_t stream_once = PTHREAD_ONCE_INIT;

/* pthread key destructor: a thread's stream goes with the thread. */
static void stream_release(void *p) { dnnl_stream_destroy(p); }
static void stream_key_init(void) { (void)pthread_key_create(&stream_key, stream_release); }

/* The calling thread's stream, made on first use; NULL on failure. */
static dnnl_stream_t thread_stream(void) {
    pthread_once(&stream_once, stream_key_init);
    dnnl_stream_t s = pthread_getspecific(stream_key);
    if (s) return s;
    if (dnnl_stream_create(&s, engine, dnnl_stream_default_flags) != dnnl_success) return NULL;
    if (pthread_setspecific(stream_key, s) != 0) {
        dnnl_stream_destroy(s);
        return NULL;
    }
    return s;
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

/* Run e's primitive on (a, b, bias, c) on stream with the thread's scratchpad; a and b are
 * in the layout e was built for. Memory objects only wrap the caller's pointers. */
static pf_status execute(const entry *e, dnnl_stream_t stream, const void *a, const void *b, const float *bias,
                         float *c) {
    pf_status st = PF_OK;
    dnnl_memory_t mem[5] = {NULL};
    const int kinds[5] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_SCRATCHPAD, DNNL_ARG_BIAS};
    const dnnl_query_t queries[5] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md,
                                     dnnl_query_scratchpad_md, dnnl_query_weights_md};
    void *scratch = pf_tls_buffer(PF_TLS_GEMM_SCRATCH, e->scratch_bytes);
    if (!scratch) return pf_fail(PF_ENOMEM, "gemm: cannot allocate %zu bytes of oneDNN scratchpad", e->scratch_bytes);
    void *ptrs[5] = {(void *)a, (void *)b, c, scratch, (void *)bias};
    const int nargs = e->has_bias ? 5 : 4;
    dnnl_exec_arg_t args[5];
    for (int i = 0; i < nargs; i++) {
        const_md_t md = dnnl_primitive_desc_query_md(e->pd, queries[i], i == 4 ? 1 : 0);
        DNNL_TRY(dnnl_memory_create(&mem[i], md, engine, ptrs[i]));
        args[i] = (dnnl_exec_arg_t){kinds[i], mem[i]};
    }
    DNNL_TRY(dnnl_primitive_execute(e->prim, stream, nargs, args));
    DNNL_TRY(dnnl_stream_wait(stream));
done:
    for (int i = 0; i < 5; i++)
        if (mem[i]) dnnl_memory_destroy(mem[i]);
    return st;
}

/* op(X) of a bf16 product as the primitive reads it: X itself when already bf16, else a
 * dense bf16 copy in the thread's staging slot. *ld gets the leading dimension used. */
static const void *bf16_operand(int slot, const void *x, int is_bf16, int64_t rows, int64_t cols, int64_t ld_in,
                                int64_t *ld, pf_status *st) {
    *ld = is_bf16 ? ld_in : cols;
    if (is_bf16) return x;
    uint16_t *y = pf_tls_buffer(slot, (size_t)(rows * cols) * sizeof(uint16_t));
    if (!y) {
        *st = pf_fail(PF_ENOMEM, "gemm: cannot allocate a bf16 copy of %s", slot == PF_TLS_GEMM_A ? "A" : "B");
        return NULL;
    }
    to_bf16_dense(x, rows, cols, ld_in, y);
    return y;
}

/* pf_gemm_ex through the primitive cached for this shape, layout, dtype, alpha, beta and
 * bias (gemm_dnnl.h); fp32 operands of a bf16 product go through the staging buffers. */
pf_status pf_gemm_dnnl(const pf_gemm_args *g, int nthreads) {
    pf_status st = PF_OK;
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success)
        return pf_fail(PF_EBACKEND, "oneDNN: cannot create the CPU engine: %s", dnnl_status2str(engine_status));
    omp_set_num_threads(nthreads); /* oneDNN's OpenMP runtime reads the calling thread's count */
    dnnl_stream_t stream = thread_stream();
    if (!stream) return pf_fail(PF_EBACKEND, "oneDNN: cannot create a stream for this thread");

    const int bf = g->dtype == PF_BF16;
    const int64_t a_rows = g->trans_a ? g->K : g->M, a_cols = g->trans_a ? g->M : g->K;
    const int64_t b_rows = g->trans_b ? g->N : g->K, b_cols = g->trans_b ? g->K : g->N;
    entry key = {.dtype = g->dtype, .trans_a = g->trans_a, .trans_b = g->trans_b, .nthreads = nthreads,
                 .has_bias = g->bias != NULL, .M = g->M, .N = g->N, .K = g->K,
                 .lda = bf && !g->a_bf16 ? a_cols : g->lda, .ldb = bf && !g->b_bf16 ? b_cols : g->ldb,
                 .ldc = g->ldc, .alpha = g->alpha, .beta = g->beta};
    entry *e = NULL;
    int owned = 0;
    TRY(entry_get(&key, &e, &owned));
    if (e->unsupported) {
        st = pf_fail(PF_EUNSUPPORTED, "oneDNN has no fast %s matmul on this CPU", bf ? "bf16" : "fp32");
    } else if (e->use_sgemm && g->bias) {
        st = pf_fail(PF_EUNSUPPORTED, "dnnl_sgemm has no bias"); /* pf_gemm_ex falls back */
    } else if (e->use_sgemm) {
        dnnl_status_t s = dnnl_sgemm(g->trans_a ? 'T' : 'N', g->trans_b ? 'T' : 'N', g->M, g->N, g->K, g->alpha,
                                     g->A, g->lda, g->B, g->ldb, g->beta, g->C, g->ldc);
        if (s != dnnl_success) st = pf_fail(PF_EBACKEND, "oneDNN: dnnl_sgemm failed: %s", dnnl_status2str(s));
    } else {
        int64_t lda, ldb;
        const void *a = bf ? bf16_operand(PF_TLS_GEMM_A, g->A, g->a_bf16, a_rows, a_cols, g->lda, &lda, &st) : g->A;
        const void *b = bf && a ? bf16_operand(PF_TLS_GEMM_B, g->B, g->b_bf16, b_rows, b_cols, g->ldb, &ldb, &st)
                                : g->B;
        if (a && b) st = execute(e, stream, a, b, g->bias, g->C);
    }
    if (owned) entry_free(e);
    return st;
}

/* Fill n values of type dt (bf16 or f32) at p with small numbers. */
static void bare_fill(void *p, int64_t n, int bf) {
    for (int64_t i = 0; i < n; i++) {
        const float v = (float)((i * 7919) % 13) * 0.0625f - 0.375f;
        if (bf) ((uint16_t *)p)[i] = pf_bf16_bits(v);
        else ((float *)p)[i] = v;
    }
}

/* Median of n doubles (sorts them). */
static double median(double *x, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && x[j - 1] > x[j]; j--) {
            const double t = x[j];
            x[j] = x[j - 1], x[j - 1] = t;
        }
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* The bare primitive (pf.h): built once, buffers once, reps timed runs. */
pf_status pf_dnnl_bare_matmul(int64_t M, int64_t N, int64_t K, int trans_b, pf_dtype dtype, int dst_bf16,
                              int reps, double *seconds) {
    if (M < 1 || N < 1 || K < 1 || reps < 1 || reps > 1000)
        return pf_fail(PF_EINVAL, "bare_matmul: sizes must be >= 1 and 1 <= reps <= 1000");
    pthread_once(&engine_once, engine_init);
    if (engine_status != dnnl_success) return pf_fail(PF_EBACKEND, "oneDNN: no CPU engine");
    omp_set_num_threads(pf_get_num_threads());
    const int bf = dtype == PF_BF16, es = bf ? 2 : 4;
    entry e = {.dtype = dtype, .trans_b = trans_b != 0, .nthreads = pf_get_num_threads(), .dst_bf16 = dst_bf16 != 0,
               .M = M, .N = N, .K = K, .lda = K, .ldb = trans_b ? K : N, .ldc = N, .alpha = 1.0f};
    dnnl_stream_t stream = thread_stream();
    void *src = pf_malloc((size_t)(M * K * es)), *wei = pf_malloc((size_t)(K * N * es));
    void *dst = pf_malloc((size_t)(M * N * (dst_bf16 ? 2 : 4)));
    double *t = malloc((size_t)reps * sizeof(double));
    pf_status st = stream && src && wei && dst && t ? entry_build(&e)
                                                    : pf_fail(PF_ENOMEM, "bare_matmul: out of memory");
    if (st == PF_OK && !e.prim) st = pf_fail(PF_EUNSUPPORTED, "oneDNN has only its reference matmul here");
    if (st == PF_OK) {
        bare_fill(src, M * K, bf), bare_fill(wei, K * N, bf);
        st = execute(&e, stream, src, wei, NULL, dst); /* warm-up */
        for (int r = 0; r < reps && st == PF_OK; r++) {
            const double t0 = omp_get_wtime();
            st = execute(&e, stream, src, wei, NULL, dst);
            t[r] = omp_get_wtime() - t0;
        }
        if (st == PF_OK) *seconds = median(t, reps);
    }
    if (e.prim) dnnl_primitive_destroy(e.prim);
    if (e.pd) dnnl_primitive_desc_destroy(e.pd);
    free(src), free(wei), free(dst), free(t);
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

/* The implementation oneDNN picks for a 3200 x 192 x 768 matmul of this dtype, e.g.
 * "brg:avx512_core_amx_bf16"; "unavailable" when it has none. One buffer per dtype, so the
 * two answers can be held at once (build_info asks for both in one expression). */
const char *pf_dnnl_matmul_impl(pf_dtype dtype) {
    static _Thread_local char bufs[2][128];
    char *buf = bufs[dtype == PF_BF16];
    /* a ViT MLP product as the model runs it (x W^T with timm's (out, in) weights): small
     * probes can dispatch to another kernel than the shapes that matter */
    const entry key = {.dtype = dtype, .trans_b = 1, .M = 3200, .N = 768, .K = 192, .lda = 192, .ldb = 192,
                       .ldc = 768, .alpha = 1.0f, .nthreads = pf_get_num_threads()};
    dnnl_primitive_desc_t pd = NULL;
    const char *impl = NULL;
    snprintf(buf, sizeof bufs[0], "unavailable");
    pthread_once(&engine_once, engine_init);
    omp_set_num_threads(pf_get_num_threads());
    if (engine_status == dnnl_success && create_pd(&key, NULL, &pd) == PF_OK &&
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(buf, sizeof bufs[0], "%s", impl);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return buf;
}

#endif
