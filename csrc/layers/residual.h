/* residual.h: residual additions.
 * rows: the row count, C the width; backward functions accumulate (+=) into gradients (layers/layers.h). */
#ifndef PF_LAYERS_RESIDUAL_H
#define PF_LAYERS_RESIDUAL_H

#include <stdint.h>
#include "pf.h"

void pf_add_forward(float *out, const float *a, const float *b, int64_t n);
void pf_add_inplace(float *acc, const float *x, int64_t n);

#endif
