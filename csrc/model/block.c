/* block.c: one pre-norm transformer block (timm's Block), forward and backward.
 *   res1 = x + proj(attn(qkv(ln1(x))));  out = res1 + fc2(gelu(fc1(ln2(res1)))) */
#include <string.h>
#include "core/common.h"
#include "core/profile.h"
#include "layers/layers.h"
#include "model/block.h"

#define LN_EPS 1e-6f

/* Carve one block's activations from base (base NULL: only count). Returns the floats used.
 * ln1, atty, res1, ln2, out (BT, C); ln*_mean, ln*_rstd (BT); qkv (BT, 3C); att (B, NH, T, T);
 * fc1, gelu (BT, H). */
static int64_t carve(pf_block_acts *a, float *base, pf_block_dims d) {
    const int64_t BT = d.B * d.T, C = d.C;
    const int64_t sizes[] = {BT * C, BT, BT, BT * 3 * C, d.B * d.NH * d.T * d.T, BT * C, BT * C,
                             BT * C, BT, BT, BT * d.H, BT * d.H, BT * C};
    float **slots[] = {&a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->att, &a->atty, &a->res1,
                       &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fc1, &a->gelu, &a->out};
    int64_t used = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (base) *slots[i] = base + used;
        used += sizes[i];
    }
    return used;
}

/* Floats of one block's activations for shapes d. */
int64_t pf_block_acts_floats(pf_block_dims d) {
    pf_block_acts unused;
    return carve(&unused, NULL, d);
}

/* a's pointers -> consecutive slices of base (pf_block_acts_floats(d) floats). */
void pf_block_acts_bind(pf_block_acts *a, float *base, pf_block_dims d) { carve(a, base, d); }

/* In bf16 the GEMM inputs ln1, atty, ln2, gelu are kept as bf16 bits in their slots (half of
 * each slot): their producers write them so and their products (forward, and dW in backward)
 * read them so. This is that view of slot x (NULL in fp32). */
static uint16_t *as16(float *x, pf_dtype dt) { return dt == PF_BF16 ? (uint16_t *)x : NULL; }

/* x (BT, C) -> a->out (BT, C), caching what backward reads. */
pf_status pf_block_forward(pf_block_acts *a, const float *x, const pf_block_params *p,
                           pf_block_dims d, pf_dtype dt) {
    const int64_t BT = d.B * d.T, C = d.C;
    uint16_t *ln1 = as16(a->ln1, dt), *atty = as16(a->atty, dt);
    uint16_t *ln2 = as16(a->ln2, dt), *gelu = as16(a->gelu, dt);
    /* attention branch: res1 = x + proj(attn(qkv(ln1(x)))) */
    if (ln1)
        PROF(PF_PROF_LN_FWD, pf_layernorm_forward16(ln1, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, BT, C,
                                                    LN_EPS));
    else
        PROF(PF_PROF_LN_FWD, pf_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, p->ln1_w, p->ln1_b, BT, C,
                                                  LN_EPS));
    PROF(PF_PROF_LINEAR_FWD,
         TRY(pf_linear_forward(a->qkv, a->ln1, ln1, p->qkv_w, p->qkv_w16, p->qkv_b, BT, C, 3 * C, dt)));
    if (atty) PROF(PF_PROF_ATTN_FWD, TRY(pf_attention_forward16(atty, a->att, a->qkv, d.B, d.T, C, d.NH, dt)));
    else PROF(PF_PROF_ATTN_FWD, TRY(pf_attention_forward(a->atty, a->att, a->qkv, d.B, d.T, C, d.NH, dt)));
    PROF(PF_PROF_LINEAR_FWD,
         TRY(pf_linear_forward(a->res1, a->atty, atty, p->proj_w, p->proj_w16, p->proj_b, BT, C, C, dt)));
    PROF(PF_PROF_RESIDUAL, pf_add_inplace(a->res1, x, BT * C));
    /* MLP branch: out = res1 + fc2(gelu(fc1(ln2(res1)))) */
    if (ln2)
        PROF(PF_PROF_LN_FWD, pf_layernorm_forward16(ln2, a->ln2_mean, a->ln2_rstd, a->res1, p->ln2_w, p->ln2_b,
                                                    BT, C, LN_EPS));
    else
        PROF(PF_PROF_LN_FWD, pf_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res1, p->ln2_w, p->ln2_b,
                                                  BT, C, LN_EPS));
    PROF(PF_PROF_LINEAR_FWD,
         TRY(pf_linear_forward(a->fc1, a->ln2, ln2, p->fc1_w, p->fc1_w16, p->fc1_b, BT, C, d.H, dt)));
    if (gelu) PROF(PF_PROF_GELU_FWD, pf_gelu_forward16(gelu, a->fc1, BT * d.H));
    else PROF(PF_PROF_GELU_FWD, pf_gelu_forward(a->gelu, a->fc1, BT * d.H));
    PROF(PF_PROF_LINEAR_FWD,
         TRY(pf_linear_forward(a->out, a->gelu, gelu, p->fc2_w, p->fc2_w16, p->fc2_b, BT, d.H, C, dt)));
    PROF(PF_PROF_RESIDUAL, pf_add_inplace(a->out, a->res1, BT * C));
    return PF_OK;
}

/* Floats of backward's scratch: dln, reused as datty (BT, C), dh (BT, max(H, 3C)): dgelu,
 * then dfc1 in place (fp32), then dqkv; and dfc1 as bf16 bits (BT, H) for a bf16 model. */
int64_t pf_block_scratch_floats(pf_block_dims d) {
    const int64_t BT = d.B * d.T;
    return BT * d.C + BT * pf_max64(d.H, 3 * d.C) + (BT * d.H + 1) / 2;
}

/* dout (BT, C) -> dx (BT, C) = dL/dx; parameter gradients g +=. x is the block's input. No
 * buffer is zeroed: each input gradient is written over (PF_GRAD_SET) by the layer that
 * makes it, and dx doubles as the residual stream's gradient (dres1). */
pf_status pf_block_backward(float *dx, pf_block_params *g, const float *dout, const float *x,
                            const pf_block_acts *a, const pf_block_params *p, pf_block_dims d,
                            float *scratch, pf_dtype dt) {
    const int64_t BT = d.B * d.T, C = d.C, H = d.H;
    float *dln = scratch, *datty = scratch, *dh = scratch + BT * C;
    uint16_t *dfc1_16 = (uint16_t *)(dh + BT * pf_max64(H, 3 * C));
    const pf_grad_mode SET = PF_GRAD_SET;

    /* MLP branch: out = res1 + fc2(gelu(fc1(ln2(res1)))); dx holds dres1 until the end */
    memcpy(dx, dout, (size_t)(BT * C) * sizeof(float));
    PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(dh, g->fc2_w, g->fc2_b, dout, NULL, a->gelu, as16(a->gelu, dt),
                                                    p->fc2_w, p->fc2_w16, BT, H, C, dt, SET)));
    if (dt == PF_BF16) { /* dfc1 straight to bf16, fc1's bias gradient in the same pass */
        PROF(PF_PROF_GELU_BWD, TRY(pf_gelu_backward16(dfc1_16, g->fc1_b, a->fc1, dh, BT, H)));
        PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(dln, g->fc1_w, NULL, NULL, dfc1_16, a->ln2, as16(a->ln2, dt),
                                                        p->fc1_w, p->fc1_w16, BT, C, H, dt, SET)));
    } else {
        PROF(PF_PROF_GELU_BWD, pf_gelu_backward(dh, a->fc1, dh, BT * H, SET));
        PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(dln, g->fc1_w, g->fc1_b, dh, NULL, a->ln2, NULL, p->fc1_w,
                                                        NULL, BT, C, H, dt, SET)));
    }
    PROF(PF_PROF_LN_BWD, TRY(pf_layernorm_backward(dx, g->ln2_w, g->ln2_b, dln, a->res1, p->ln2_w,
                                                   a->ln2_mean, a->ln2_rstd, BT, C)));

    /* attention branch: res1 = x + proj(attn(qkv(ln1(x)))); dx += the ln1 path at the end */
    PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(datty, g->proj_w, g->proj_b, dx, NULL, a->atty, as16(a->atty, dt),
                                                    p->proj_w, p->proj_w16, BT, C, C, dt, SET)));
    PROF(PF_PROF_ATTN_BWD, TRY(pf_attention_backward(dh, datty, a->qkv, a->att, d.B, d.T, C, d.NH, dt, SET)));
    PROF(PF_PROF_LINEAR_BWD, TRY(pf_linear_backward(dln, g->qkv_w, g->qkv_b, dh, NULL, a->ln1, as16(a->ln1, dt),
                                                    p->qkv_w, p->qkv_w16, BT, C, 3 * C, dt, SET)));
    PROF(PF_PROF_LN_BWD, TRY(pf_layernorm_backward(dx, g->ln1_w, g->ln1_b, dln, x, p->ln1_w, a->ln1_mean,
                                                   a->ln1_rstd, BT, C)));
    return PF_OK;
}
