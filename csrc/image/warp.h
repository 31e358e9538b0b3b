/* warp.h: batched affine warps of uint8 images / label maps (warp.c). */
#ifndef PF_WARP_H
#define PF_WARP_H

#include <stdint.h>

void pf_warp_u8(uint8_t *dst, int64_t B, int64_t dh, int64_t dw, const uint8_t *src, int64_t sh,
                int64_t sw, int64_t C, const double *M, int nearest, uint8_t fill);

#endif
