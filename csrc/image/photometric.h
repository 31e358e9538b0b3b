/* photometric.h: in-place colour jitter / grayscale and Gaussian blur of uint8 batches. */
#ifndef PF_PHOTOMETRIC_H
#define PF_PHOTOMETRIC_H

#include <stdint.h>
#include "pf.h"

/* img (B, H, W, 3) uint8; params (B, 4): brightness, contrast, saturation, grayscale (0/1). */
void pf_color_jitter_u8(uint8_t *img, int64_t B, int64_t H, int64_t W, const float *params);
/* img (B, H, W, C) uint8; sigmas (B): 0 leaves an image as it is. */
pf_status pf_gaussian_blur_u8(uint8_t *img, int64_t B, int64_t H, int64_t W, int64_t C, const float *sigmas);

/* img (B, n) uint8 += Gaussian noise of sigmas[b], deterministic in keys[b]. */
void pf_add_noise_u8(uint8_t *img, int64_t B, int64_t n, const float *sigmas, const uint64_t *keys);

#endif
