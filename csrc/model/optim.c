/* optim.c: AdamW over the flat parameter buffer (PyTorch's AdamW arithmetic, decoupled
 * weight decay) and the global gradient norm used for clipping. */
#include <math.h>
#include "core/common.h"
#include "core/profile.h"
#include "model/optim.h"

/* grads (flat) -> sqrt of the sum of squares over every trainable tensor, in double. */
double pf_grad_norm(const float *grads, const pf_tensor *tensors, int ntensors) {
    double total = 0.0;
    for (int t = 0; t < ntensors; t++) {
        if (!tensors[t].trainable) continue;
        const float *g = grads + tensors[t].offset;
        const int64_t n = tensors[t].numel;
        double s = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : s) num_threads(pf_get_num_threads()) if (n > 65536)
        for (int64_t i = 0; i < n; i++) s += (double)g[i] * g[i];
        total += s;
    }
    return sqrt(total);
}

/* One AdamW update of n contiguous parameters p with gradients g and moments m, v (n each).
 * The gradient is multiplied by a->grad_scale first (clipping); lr_scale multiplies the
 * learning rate (layer-wise decay). Per element, as torch.optim.AdamW:
 *   p *= 1 - lr*wd (decay only); m += (1-b1)(g - m); v = b2 v + (1-b2) g^2;
 *   p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), bc_i = 1 - b_i^step. */
void pf_adamw_update(float *p, const float *g, float *m, float *v, int64_t n, int decay, float lr_scale,
                     const pf_adamw_args *a) {
    const float lr = a->lr * lr_scale;
    const float step_size = lr / a->bias_correction1;
    const float bc2_sqrt = sqrtf(a->bias_correction2);
    const float shrink = decay ? 1.0f - lr * a->weight_decay : 1.0f;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i] * a->grad_scale;
        p[i] *= shrink;
        m[i] += (1.0f - a->beta1) * (gi - m[i]);
        v[i] = v[i] * a->beta2 + (1.0f - a->beta2) * gi * gi;
        p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + a->eps);
    }
}

/* One AdamW step over every trainable tensor of a flat buffer; m, v (nparams) are the
 * moments; lr_scale (ntensors) or NULL: a learning-rate factor per tensor. */
void pf_adamw_step(float *params, const float *grads, float *m, float *v,
                   const pf_tensor *tensors, int ntensors, const float *lr_scale, const pf_adamw_args *a) {
    const double t0 = pf_prof_on ? pf_wtime() : 0.0;
    for (int t = 0; t < ntensors; t++) {
        if (!tensors[t].trainable) continue;
        const int64_t off = tensors[t].offset;
        pf_adamw_update(params + off, grads + off, m + off, v + off, tensors[t].numel, tensors[t].decay,
                        lr_scale ? lr_scale[t] : 1.0f, a);
    }
    if (pf_prof_on) pf_prof_add(PF_PROF_OPTIM, pf_wtime() - t0);
}
