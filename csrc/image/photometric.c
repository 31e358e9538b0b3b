/* photometric.c: colour jitter, grayscale and Gaussian blur of uint8 RGB batches, in place.
 * Per image: brightness, contrast and saturation factors, a grayscale flag and a blur sigma. */
#include <math.h>
#include <string.h>
#include "core/common.h"
#include "image/photometric.h"

/* One RGB pixel's luma (ITU-R BT.601 weights, PIL's grayscale). */
static inline float luma(const uint8_t *p) { return 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2]; }

/* v -> uint8, rounded half up and clamped to [0, 255]. */
static inline uint8_t to_u8(float v) { return (uint8_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v + 0.5f); }

/* img (H, W, 3): x <- ((x * brightness) - m) * contrast + m with m the mean luma after
 * brightness, then x <- g + (x - g) * saturation with g the pixel's luma, or x <- g when
 * grayscale; values are clamped to [0, 255] and rounded once at the end. */
static void jitter_one(uint8_t *img, int64_t HW, const float *p) {
    const float bright = p[0], contrast = p[1], sat = p[2];
    const int gray = p[3] != 0.0f;
    double mean = 0.0;
    for (int64_t i = 0; i < HW; i++) mean += luma(img + 3 * i);
    const float m = (float)(mean / (double)(HW ? HW : 1)) * bright;
    for (int64_t i = 0; i < HW; i++) {
        uint8_t *px = img + 3 * i;
        float v[3];
        for (int c = 0; c < 3; c++) v[c] = (px[c] * bright - m) * contrast + m;
        const float g = 0.299f * v[0] + 0.587f * v[1] + 0.114f * v[2];
        for (int c = 0; c < 3; c++) px[c] = to_u8(gray ? g : g + (v[c] - g) * sat);
    }
}

/* img (B, H, W, 3) in place; params (B, 4): brightness, contrast, saturation, grayscale. */
void pf_color_jitter_u8(uint8_t *img, int64_t B, int64_t H, int64_t W, const float *params) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * H * W > 16384)
    for (int64_t b = 0; b < B; b++) jitter_one(img + b * H * W * 3, H * W, params + 4 * b);
}

/* One 1-D pass of the kernel k (2r + 1 taps) along x (horizontal) or y over in (H, W, C),
 * edges mirrored (..., 2, 1, | 0, 1, 2, ...) and clamped for images smaller than the kernel. */
static void blur_pass(float *out, const float *in, int64_t H, int64_t W, int64_t C, int horizontal,
                      const float *k, int64_t r) {
    const int64_t n = horizontal ? W : H, step = horizontal ? C : W * C;
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
            const int64_t pos = horizontal ? x : y, base = (y * W + x) * C - pos * step;
            for (int64_t c = 0; c < C; c++) {
                float acc = 0.0f;
                for (int64_t i = -r; i <= r; i++) {
                    int64_t q = pos + i;
                    q = q < 0 ? -q : q >= n ? 2 * n - 2 - q : q;
                    q = q < 0 ? 0 : q >= n ? n - 1 : q;
                    acc += k[i + r] * in[base + q * step + c];
                }
                out[(y * W + x) * C + c] = acc;
            }
        }
}

/* Separable Gaussian blur of one (H, W, C) image with radius ceil(3 sigma); tmp holds
 * 2 * H * W * C floats. */
static void blur_one(uint8_t *img, int64_t H, int64_t W, int64_t C, float sigma, float *tmp) {
    if (!(sigma > 0.0f)) return;
    int64_t r = (int64_t)ceilf(3.0f * sigma);
    if (r > 64) r = 64;
    float k[129], sum = 0.0f;
    for (int64_t i = -r; i <= r; i++) sum += k[i + r] = expf(-0.5f * (float)(i * i) / (sigma * sigma));
    for (int64_t i = 0; i <= 2 * r; i++) k[i] /= sum;
    const int64_t n = H * W * C;
    float *a = tmp, *b = tmp + n;
    for (int64_t i = 0; i < n; i++) a[i] = img[i];
    blur_pass(b, a, H, W, C, 1, k, r);
    blur_pass(a, b, H, W, C, 0, k, r);
    for (int64_t i = 0; i < n; i++) img[i] = to_u8(a[i]);
}

/* img (B, H, W, C) in place, image b blurred with sigmas[b] (0: left as is). */
pf_status pf_gaussian_blur_u8(uint8_t *img, int64_t B, int64_t H, int64_t W, int64_t C,
                              const float *sigmas) {
    const int nt = pf_get_num_threads();
    float *tmp = pf_malloc((size_t)nt * 2 * H * W * C * sizeof(float));
    if (!tmp) return pf_fail(PF_ENOMEM, "blur: out of memory");
#pragma omp parallel num_threads(nt)
    {
        const int tid = pf_thread_num();
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++)
            blur_one(img + b * H * W * C, H, W, C, sigmas[b], tmp + (size_t)tid * 2 * H * W * C);
    }
    free(tmp);
    return PF_OK;
}

/* img (B, n) uint8 += round(sigma_b * z) per element, clamped, z ~ N(0, 1) approximated by the
 * Irwin-Hall sum of four 16-bit uniforms from one hash (mean 0, variance 1, |z| <= 2 sqrt 3),
 * which is all sensor noise needs; image b's noise is a pure function of keys[b] (the caller's
 * (seed, index)), whatever the batch or thread count. */
void pf_add_noise_u8(uint8_t *img, int64_t B, int64_t n, const float *sigmas, const uint64_t *keys) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * n > 65536)
    for (int64_t b = 0; b < B; b++) {
        if (!(sigmas[b] > 0.0f)) continue;
        uint8_t *p = img + b * n;
        const uint64_t key = pf_mix64(keys[b]);
        const float k = sigmas[b] * 1.7320508f / 65536.0f; /* sd of the sum is 2^16 / sqrt 3 */
        for (int64_t i = 0; i < n; i++) {
            const uint64_t r = pf_mix64(key ^ (uint64_t)i);
            const float s = (float)((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48));
            p[i] = to_u8(p[i] + k * (s - 131070.0f));
        }
    }
}
