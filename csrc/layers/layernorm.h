/* layernorm.h: LayerNorm over the last dimension C of each row, forward and backward.
 * rows: the row count, C the width; backward functions accumulate (+=) into gradients (layers/layers.h). */
#ifndef PF_LAYERS_LAYERNORM_H
#define PF_LAYERS_LAYERNORM_H

#include <stdint.h>
#include "pf.h"

void pf_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, int64_t rows, int64_t C, float eps);
/* The same with the output as bf16 bits (out16), for a bf16 GEMM to read. */
void pf_layernorm_forward16(uint16_t *out16, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int64_t rows, int64_t C, float eps);
pf_status pf_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                                const float *inp, const float *w, const float *mean,
                                const float *rstd, int64_t rows, int64_t C);

#endif
