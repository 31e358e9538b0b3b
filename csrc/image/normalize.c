/* normalize.c: uint8 HWC batches -> normalised float32 CHW batches, the network's input. */
#include "core/common.h"
#include "image/normalize.h"

/* in (B, S, S, 3) uint8 -> out (B, 3, S, S) float32: (x / 255 - mean[c]) / std[c]. */
void pf_normalize_u8(float *out, const uint8_t *in, int64_t B, int64_t H, int64_t W,
                     const float *mean, const float *std) {
    const float scale[3] = {1.0f / (255.0f * std[0]), 1.0f / (255.0f * std[1]), 1.0f / (255.0f * std[2])};
    const float shift[3] = {-mean[0] / std[0], -mean[1] / std[1], -mean[2] / std[2]};
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * H * W > 65536)
    for (int64_t bc = 0; bc < B * 3; bc++) {
        const int64_t b = bc / 3, c = bc % 3;
        const uint8_t *src = in + b * H * W * 3 + c;
        float *dst = out + bc * H * W;
        for (int64_t i = 0; i < H * W; i++) dst[i] = src[3 * i] * scale[c] + shift[c];
    }
}
