/* gelu.c: exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as timm and PyTorch's default use. */
#include <math.h>
#include "../common.h"
#include "layers.h"

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT2PI 0.39894228040143267794f

/* out (n) = gelu(inp). */
void pf_gelu_forward(float *out, const float *inp, int64_t n) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 65536)
    for (int64_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * INV_SQRT2));
}

/* dinp (n) += dout * gelu'(inp), gelu'(x) = Phi(x) + x phi(x). */
void pf_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        const float x = inp[i];
        const float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
        const float pdf = INV_SQRT2PI * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}
