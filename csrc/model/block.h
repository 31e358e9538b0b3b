/* block.h: one pre-norm transformer block (timm's Block): its parameters, cached activations
 * and shapes, forward and backward (block.c). vit.c stacks them for the encoder and decoder. */
#ifndef PF_BLOCK_H
#define PF_BLOCK_H

#include <stdint.h>
#include "pf.h"

/* One transformer block's parameters (or gradients: same layout). The *_w16 are the matrix
 * weights' bf16 copies, set by the model in bf16 (NULL otherwise, and in gradients). */
typedef struct {
    float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    const uint16_t *qkv_w16, *proj_w16, *fc1_w16, *fc2_w16;
} pf_block_params;

/* One block's cached activations, BT = B*T rows of width C (hidden H = mlp width). */
typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd; /* (BT, C), (BT), (BT) */
    float *qkv;                       /* (BT, 3C) */
    float *att;                       /* (B, NH, T, T) softmax probabilities */
    float *atty;                      /* (BT, C) attention output before proj */
    float *res1;                      /* (BT, C) x + proj(atty) */
    float *ln2, *ln2_mean, *ln2_rstd; /* (BT, C), (BT), (BT) */
    float *fc1, *gelu;                /* (BT, H), (BT, H) */
    float *out;                       /* (BT, C) res1 + fc2(gelu) */
} pf_block_acts;

/* Shapes of one stack of blocks. */
typedef struct {
    int64_t B, T, C, NH, H;
} pf_block_dims;

/* block.c: x (BT, C) -> a->out; backward: dout (BT, C) -> dx (BT, C) = (not added), grads g +=.
 * scratch: pf_block_scratch_floats(d) floats. */
int64_t pf_block_acts_floats(pf_block_dims d);
void pf_block_acts_bind(pf_block_acts *a, float *base, pf_block_dims d);
int64_t pf_block_scratch_floats(pf_block_dims d);
pf_status pf_block_forward(pf_block_acts *a, const float *x, const pf_block_params *p,
                           pf_block_dims d, pf_dtype dt);
pf_status pf_block_backward(float *dx, pf_block_params *g, const float *dout, const float *x,
                            const pf_block_acts *a, const pf_block_params *p, pf_block_dims d,
                            float *scratch, pf_dtype dt);

#endif
