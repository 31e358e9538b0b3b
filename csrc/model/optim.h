/* optim.h: AdamW and gradient clipping over a flat buffer described by a tensor table. */
#ifndef PF_OPTIM_H
#define PF_OPTIM_H

#include "pf.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    float bias_correction1, bias_correction2; /* 1 - beta^step, computed in double by the caller */
    float grad_scale;                         /* 1, or max_norm / (norm + 1e-6) when clipping */
} pf_adamw_args;

/* sqrt of the sum of squares of every trainable tensor's gradient (double accumulation). */
double pf_grad_norm(const float *grads, const pf_tensor *tensors, int ntensors);
/* p, g, m, v (n): one update of one tensor; decay: apply weight decay; lr_scale: lr factor. */
void pf_adamw_update(float *p, const float *g, float *m, float *v, int64_t n, int decay, float lr_scale,
                     const pf_adamw_args *a);
/* Every trainable tensor of a flat buffer; lr_scale (ntensors) or NULL (all 1). */
void pf_adamw_step(float *params, const float *grads, float *m, float *v,
                   const pf_tensor *tensors, int ntensors, const float *lr_scale, const pf_adamw_args *a);

#endif
