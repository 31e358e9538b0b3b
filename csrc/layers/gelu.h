/* gelu.h: exact (erf) GELU, elementwise, forward and backward.
 * rows: the row count, C the width; backward functions accumulate (+=) into gradients (layers/layers.h). */
#ifndef PF_LAYERS_GELU_H
#define PF_LAYERS_GELU_H

#include <stdint.h>
#include "pf.h"

void pf_gelu_forward(float *out, const float *inp, int64_t n);
/* The same with the output as bf16 bits, for a bf16 GEMM to read. */
void pf_gelu_forward16(uint16_t *out16, const float *inp, int64_t n);
/* dinp += (PF_GRAD_ADD) or = (PF_GRAD_SET; dinp may then be dout itself) dout * gelu'(inp). */
void pf_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n, pf_grad_mode dmode);
/* dinp16 (rows, H) = dout * gelu'(inp) as bf16 bits; dbias (H) += their fp32 column sums. */
pf_status pf_gelu_backward16(uint16_t *dinp16, float *dbias, const float *inp, const float *dout, int64_t rows,
                             int64_t H);

#endif
