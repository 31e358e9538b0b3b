/* linear.h: fully connected layer: out (rows, OC) = inp (rows, IC) W^T + b, and its backward.
 * rows: the row count, C the width; backward functions accumulate (+=) into gradients (layers/layers.h). */
#ifndef PF_LAYERS_LINEAR_H
#define PF_LAYERS_LINEAR_H

#include <stdint.h>
#include "pf.h"

/* w16: the weight's bf16 bit patterns (used when dt is bf16), or NULL: the GEMM rounds weight.
 * in16: the input as bf16 bits (dt bf16; inp is then not read), or NULL. */
pf_status pf_linear_forward(float *out, const float *inp, const uint16_t *in16, const float *weight,
                            const uint16_t *w16, const float *bias, int64_t rows, int64_t IC, int64_t OC,
                            pf_dtype dt);
/* dmode: dinp += (PF_GRAD_ADD) or dinp = (PF_GRAD_SET) the input's gradient. dout16: dout as
 * bf16 bits already (dt bf16, dbias NULL), or NULL. */
pf_status pf_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const uint16_t *dout16,
                             const float *inp, const uint16_t *in16, const float *weight, const uint16_t *w16,
                             int64_t rows, int64_t IC, int64_t OC, pf_dtype dt, pf_grad_mode dmode);

#endif
