/* residual.c: element-wise adds of the residual stream. */
#include "core/common.h"
#include "layers/residual.h"

/* out (n) = a + b. */
void pf_add_forward(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 65536)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* acc (n) += x. */
void pf_add_inplace(float *acc, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 65536)
    for (int64_t i = 0; i < n; i++) acc[i] += x[i];
}
