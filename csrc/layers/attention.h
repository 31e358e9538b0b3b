/* attention.h: multi-head self-attention over fused qkv (timm's [q|k|v] layout), forward and backward.
 * rows: the row count, C the width; backward functions accumulate (+=) into gradients (layers/layers.h). */
#ifndef PF_LAYERS_ATTENTION_H
#define PF_LAYERS_ATTENTION_H

#include <stdint.h>
#include "pf.h"

/* att (B, NH, T, T): the probabilities for backward, fp32 or, where pf_attention_att16(dt),
 * bf16 bits. */
pf_status pf_attention_forward(float *out, void *att, const float *qkv, int64_t B, int64_t T,
                               int64_t C, int64_t NH, pf_dtype dt);
/* The same with out (B, T, C) written as bf16 bits, for a bf16 GEMM to read. */
pf_status pf_attention_forward16(uint16_t *out16, void *att, const float *qkv, int64_t B, int64_t T,
                                 int64_t C, int64_t NH, pf_dtype dt);
/* dmode: dqkv += (PF_GRAD_ADD) or = (PF_GRAD_SET) the gradients of q, k, v. */
pf_status pf_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                const void *att, int64_t B, int64_t T, int64_t C, int64_t NH,
                                pf_dtype dt, pf_grad_mode dmode);
/* 1 when a bf16 model's attention products run in bf16 here (AVX512-BF16), else 0. */
int pf_attention_bf16_products(void);
/* 1 when att holds bf16 bits for dtype dt, 0 when it holds fp32. */
int pf_attention_att16(pf_dtype dt);

#endif
