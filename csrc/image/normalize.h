/* normalize.h: uint8 (B, H, W, 3) -> float32 (B, 3, H, W) with per-channel mean / std. */
#ifndef PF_NORMALIZE_H
#define PF_NORMALIZE_H

#include <stdint.h>

void pf_normalize_u8(float *out, const uint8_t *in, int64_t B, int64_t H, int64_t W,
                     const float *mean, const float *std);

#endif
