/* attention.c: multi-head self-attention core (full, unmasked, scaled dot product).
 *
 * qkv (B, T, 3C) holds [q | k | v], each C wide with the NH heads contiguous (timm's fused
 * qkv). Work is split over (b, h) pairs across threads. Each pair runs fused: its q, k, v
 * are copied into padded tiles of the thread's workspace, and the scores go from the
 * product through the softmax to the value product without leaving cache; the
 * probabilities are written once to att for backward. Softmax and its gradient run in fp32;
 * the products too, except for a bf16 model on a CPU with AVX512-BF16, where they run in
 * vdpbf16ps (attention_bf16.inc) as the model's other products run in bf16. */
#include <math.h>
#include <string.h>
#include "core/common.h"
#include "layers/attention.h"
#include "core/bf16.h"
#include "layers/vecmath.h"

#define AK_MR 8 /* rows of a register block in the attention products */

/* One head's padded tiles inside a thread's workspace. Tx: T rounded up to a multiple of
 * the vector width and AK_MR; Tm: T rounded up to AK_MR; hx: hs rounded up to the width. */
typedef struct {
    int64_t Tx, Tm, hx, floats; /* floats: the workspace the tiles take */
    float *q, *k, *v, *dout, *o, *dv; /* Tx x hx */
    float *kt, *vt;                   /* hx x Tx */
    float *s, *dp;                    /* Tx x Tx */
} ak_tiles;

/* n rounded up to a multiple of m. */
static int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/* The tiles of a (T, hs) head for vectors of w floats, carved from ws (NULL: sizes only). */
static ak_tiles ak_layout(int64_t T, int64_t hs, int64_t w, float *ws) {
    ak_tiles t = {.Tx = round_up(T, w > AK_MR ? w : AK_MR), .Tm = round_up(T, AK_MR), .hx = round_up(hs, w)};
    const int64_t th = t.Tx * t.hx, tt = t.Tx * t.Tx;
    float **slots[] = {&t.q, &t.k, &t.v, &t.dout, &t.o, &t.dv, &t.kt, &t.vt, &t.s, &t.dp};
    const int64_t sizes[] = {th, th, th, th, th, th, th, th, tt, tt};
    int64_t used = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        *slots[i] = ws ? ws + used : NULL;
        used += round_up(sizes[i], 16); /* every tile starts on a cache line */
    }
    t.floats = used;
    return t;
}

#if defined(__x86_64__)
#define AK_SUFFIX avx512
#define AK_ATTR __attribute__((target("avx512f")))
#define AK_W 16
#define AK_NV 2
#include "attention_kernels.inc"
#if defined(__GNUC__) && (__GNUC__ >= 10 || defined(__clang__))
#define AK_HAVE_BF16 1
#include "attention_bf16.inc"
#endif
#define AK_SUFFIX avx2
#define AK_ATTR __attribute__((target("avx2,fma")))
#define AK_W 8
#define AK_NV 1
#include "attention_kernels.inc"
#endif
#define AK_SUFFIX generic
#define AK_ATTR
#define AK_W 4
#define AK_NV 1
#include "attention_kernels.inc"

typedef void (*head_fwd_fn)(float *, uint16_t *, void *, const float *, int64_t, int64_t, int64_t, float, float *);
typedef void (*head_bwd_fn)(float *, const float *, const float *, const void *, int64_t, int64_t,
                            int64_t, float, float *, int);
typedef struct {
    int64_t (*floats)(int64_t T, int64_t hs); /* the workspace of one head */
    int64_t att_bytes;                        /* per probability kept: 4 (fp32) or 2 (bf16) */
    head_fwd_fn fwd;
    head_bwd_fn bwd;
} ak_kernels;

/* Workspace floats of one head for the fp32 kernels of each vector width. */
static int64_t ak_floats16(int64_t T, int64_t hs) { return ak_layout(T, hs, 16, NULL).floats; }
static int64_t ak_floats8(int64_t T, int64_t hs) { return ak_layout(T, hs, 8, NULL).floats; }
static int64_t ak_floats4(int64_t T, int64_t hs) { return ak_layout(T, hs, 4, NULL).floats; }
#ifdef AK_HAVE_BF16
static int64_t ak_floats_bf16(int64_t T, int64_t hs) { return b16_layout(T, hs, NULL).floats; }
#endif

/* The head kernels of the best ISA this CPU runs: for a bf16 model, products in bf16 where
 * the CPU has AVX512-BF16; otherwise fp32. */
static ak_kernels ak_pick(pf_dtype dt) {
#if defined(__x86_64__)
#ifdef AK_HAVE_BF16
    if (dt == PF_BF16 && __builtin_cpu_supports("avx512bf16"))
        return (ak_kernels){ak_floats_bf16, 2, head_fwd_bf16, head_bwd_bf16};
#endif
    if (__builtin_cpu_supports("avx512f")) return (ak_kernels){ak_floats16, 4, head_fwd_avx512, head_bwd_avx512};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return (ak_kernels){ak_floats8, 4, head_fwd_avx2, head_bwd_avx2};
#endif
    (void)dt;
    return (ak_kernels){ak_floats4, 4, head_fwd_generic, head_bwd_generic};
}

/* What a pass over B * NH heads of (T, hs) runs with: the kernels, the threads, the scale
 * and nt workspaces of per floats (the calling thread's, kept between calls; NULL when out
 * of memory). */
typedef struct {
    ak_kernels ak;
    int nt;
    int64_t hs, per;
    float scale, *ws;
} ak_plan;

static ak_plan ak_plan_for(int64_t B, int64_t T, int64_t C, int64_t NH, pf_dtype dt) {
    ak_plan p = {.ak = ak_pick(dt), .nt = (int)pf_min64(pf_get_num_threads(), pf_max64(1, B * NH)), .hs = C / NH};
    p.scale = 1.0f / sqrtf((float)p.hs);
    p.per = p.ak.floats(T, p.hs);
    p.ws = pf_tls_buffer(PF_TLS_ATTENTION, (size_t)(p.nt * p.per) * sizeof(float));
    return p;
}

/* out (B, T, C) = concat_h softmax(q_h k_h^T / sqrt(hs)) v_h, as fp32 (out) or bf16 bits
 * (out16, when out is NULL); att (B, NH, T, T) keeps the probabilities for backward. */
static pf_status forward(float *out, uint16_t *out16, void *att, const float *qkv, int64_t B, int64_t T,
                         int64_t C, int64_t NH, pf_dtype dt) {
    const ak_plan p = ak_plan_for(B, T, C, NH, dt);
    if (!p.ws) return pf_fail(PF_ENOMEM, "attention_forward: out of memory");
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.nt)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        const int64_t b = bh / NH, h = bh % NH, o = b * T * C + h * p.hs;
        p.ak.fwd(out ? out + o : NULL, out ? NULL : out16 + o, (char *)att + bh * T * T * p.ak.att_bytes,
                 qkv + b * T * 3 * C + h * p.hs, T,
                 p.hs, C, p.scale, p.ws + pf_thread_num() * p.per);
    }
    return PF_OK;
}

/* out (B, T, C) = concat_h softmax(q_h k_h^T / sqrt(hs)) v_h; att (B, NH, T, T) keeps the
 * probabilities for backward: fp32, or bf16 bits where pf_attention_att16(dt) (dt PF_BF16 on
 * a CPU with AVX512-BF16, where the products run in bf16). */
pf_status pf_attention_forward(float *out, void *att, const float *qkv, int64_t B, int64_t T,
                               int64_t C, int64_t NH, pf_dtype dt) {
    return forward(out, NULL, att, qkv, B, T, C, NH, dt);
}

/* The same with out (B, T, C) written as bf16 bits, for a bf16 GEMM to read. */
pf_status pf_attention_forward16(uint16_t *out16, void *att, const float *qkv, int64_t B, int64_t T,
                                 int64_t C, int64_t NH, pf_dtype dt) {
    return forward(NULL, out16, att, qkv, B, T, C, NH, dt);
}

/* dqkv (B, T, 3C) += (PF_GRAD_SET: =) gradients of q, k, v from dout (B, T, C), using qkv
 * and att. Per (b, h), with P = att and dS the gradient of the pre-softmax scores:
 *   dP = dout_h v^T, dv = P^T dout_h, dS = P * (dP - rowsum(dP * P)),
 *   dq = scale dS k, dk = scale dS^T q. */
pf_status pf_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                const void *att, int64_t B, int64_t T, int64_t C, int64_t NH,
                                pf_dtype dt, pf_grad_mode dmode) {
    const ak_plan p = ak_plan_for(B, T, C, NH, dt);
    if (!p.ws) return pf_fail(PF_ENOMEM, "attention_backward: out of memory");
#pragma omp parallel for schedule(dynamic, 1) num_threads(p.nt)
    for (int64_t bh = 0; bh < B * NH; bh++) {
        const int64_t b = bh / NH, h = bh % NH, q = b * T * 3 * C + h * p.hs;
        p.ak.bwd(dqkv + q, dout + b * T * C + h * p.hs, qkv + q, (const char *)att + bh * T * T * p.ak.att_bytes,
                 T, p.hs, C, p.scale,
                 p.ws + pf_thread_num() * p.per, dmode == PF_GRAD_SET);
    }
    return PF_OK;
}

/* 1 when a bf16 model's attention products run in bf16 on this CPU (AVX512-BF16), else 0. */
int pf_attention_bf16_products(void) { return ak_pick(PF_BF16).fwd != ak_pick(PF_FP32).fwd; }

/* 1 when att holds bf16 bits for dtype dt (see pf_attention_forward), 0 when fp32. */
int pf_attention_att16(pf_dtype dt) { return ak_pick(dt).att_bytes == 2; }
