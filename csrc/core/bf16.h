/* bf16.h: fp32 <-> bf16 rounding, inline so packing loops can use it. */
#ifndef PF_BF16_H
#define PF_BF16_H

#include <stdint.h>
#include <string.h>

/* fp32 bits -> bf16 bits, round to nearest, ties to even; NaN stays a quiet NaN. Written
 * without branches, so loops that call it vectorise. */
static inline uint16_t pf_bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t quiet = (u >> 16) | 0x0040u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
}

/* fp32 -> nearest bf16, widened back to fp32 (exactly representable). */
static inline float pf_bf16_round(float x) {
    uint32_t u = (uint32_t)pf_bf16_bits(x) << 16;
    float y;
    memcpy(&y, &u, sizeof y);
    return y;
}

#endif
