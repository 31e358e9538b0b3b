/* warp.c: affine warps of uint8 images and label maps (alignment, augmentation, inverse
 * warps of predictions). Pixel centres sit at integer coordinates; M maps a destination
 * pixel (x, y) to its source position: (M0 x + M1 y + M2, M3 x + M4 y + M5). */
#include <math.h>
#include "core/common.h"
#include "image/warp.h"

/* One image: src (sh, sw, C) -> dst (dh, dw, C); bilinear (rounded) or nearest; source
 * positions outside the image read `fill`. */
static void warp_one(uint8_t *dst, int64_t dh, int64_t dw, const uint8_t *src, int64_t sh,
                     int64_t sw, int64_t C, const double *M, int nearest, uint8_t fill) {
    for (int64_t y = 0; y < dh; y++) {
        uint8_t *row = dst + y * dw * C;
        for (int64_t x = 0; x < dw; x++) {
            const double sx = M[0] * x + M[1] * y + M[2], sy = M[3] * x + M[4] * y + M[5];
            uint8_t *o = row + x * C;
            if (!(sx > -1.0 && sx < (double)sw && sy > -1.0 && sy < (double)sh)) {
                /* every neighbour is outside (or the matrix sent it to NaN / far away): the fill,
                 * decided before any float -> int cast */
                for (int64_t c = 0; c < C; c++) o[c] = fill;
                continue;
            }
            if (nearest) {
                const int64_t ix = (int64_t)floor(sx + 0.5), iy = (int64_t)floor(sy + 0.5);
                const int inside = ix >= 0 && ix < sw && iy >= 0 && iy < sh;
                for (int64_t c = 0; c < C; c++) o[c] = inside ? src[(iy * sw + ix) * C + c] : fill;
                continue;
            }
            const double fx0 = floor(sx), fy0 = floor(sy);
            const int64_t x0 = (int64_t)fx0, y0 = (int64_t)fy0;
            const double ax = sx - fx0, ay = sy - fy0;
            const double w[4] = {(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay};
            const int64_t xs[4] = {x0, x0 + 1, x0, x0 + 1}, ys[4] = {y0, y0, y0 + 1, y0 + 1};
            for (int64_t c = 0; c < C; c++) {
                double acc = 0.0;
                for (int k = 0; k < 4; k++) {
                    const int inside = xs[k] >= 0 && xs[k] < sw && ys[k] >= 0 && ys[k] < sh;
                    acc += w[k] * (inside ? src[(ys[k] * sw + xs[k]) * C + c] : fill);
                }
                o[c] = (uint8_t)(acc + 0.5);
            }
        }
    }
}

/* B images of one size: src (B, sh, sw, C) -> dst (B, dh, dw, C), M (B, 2, 3). */
void pf_warp_u8(uint8_t *dst, int64_t B, int64_t dh, int64_t dw, const uint8_t *src, int64_t sh,
                int64_t sw, int64_t C, const double *M, int nearest, uint8_t fill) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(pf_get_num_threads()) if (B * dh * dw > 16384)
    for (int64_t b = 0; b < B; b++)
        warp_one(dst + b * dh * dw * C, dh, dw, src + b * sh * sw * C, sh, sw, C, M + 6 * b, nearest, fill);
}
