/* layers.h: every ViT layer's forward/backward pair, one header per file (linear.h, ...).
 *
 * Conventions (csrc/README.md): row-major; rows = the row count (B*T), C = width. Backward functions
 * ACCUMULATE (+=) into every parameter gradient; the caller zeroes them once. The gradient of a
 * layer's input is added too (PF_GRAD_ADD) or, where a pf_grad_mode says PF_GRAD_SET, written
 * over without being read, so a model needs no zeroing pass before each layer. A NULL gradient
 * pointer means "not needed" and is skipped. Matrix products go through pf_gemm with the
 * layer's dtype (PF_BF16: bf16 inputs, fp32 accumulation). */
#ifndef PF_LAYERS_H
#define PF_LAYERS_H

#include "layers/linear.h"
#include "layers/layernorm.h"
#include "layers/gelu.h"
#include "layers/attention.h"
#include "layers/residual.h"
#include "layers/patch.h"
#include "layers/tokens.h"
#include "layers/loss.h"

#endif
