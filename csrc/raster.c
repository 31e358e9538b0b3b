/* raster.c: anti-aliased polygon painting for SynthFace, back to front, with labels.
 *
 * An image is a list of layers; each layer is a polygon (ellipses arrive as polygons) with a
 * colour, a label and a shading mode. Rows are scan-converted at two sub-rows with the
 * even-odd rule; each pixel's coverage comes from a 2 x 2 sub-sample grid. A layer blends its
 * colour by coverage and takes the pixel's label where it covers at least half of it. A layer
 * may be restricted to pixels already carrying one label (an iris inside its eye).
 *
 * Layer record (floats): label (-1 keeps labels), only_label (-1: anywhere), r, g, b (0..255),
 * shade (0 flat, 1 lit by the head ellipsoid), n, then n vertices x, y (pixel centres at
 * integers). Per-image params (floats): head cx, cy, rx, ry; light lx, ly, lz, ambient. */
#include <math.h>
#include <string.h>
#include "common.h"
#include "raster.h"

#define MAX_VERTS 256

static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* coverage[x] (0..4) of one pixel row y by the polygon, via 2 sub-rows x 2 sub-columns. */
static void cover_row(uint8_t *coverage, int64_t W, int64_t y, const float *v, int n) {
    memset(coverage, 0, (size_t)W);
    for (int sub = 0; sub < 2; sub++) {
        const float sy = (float)y - 0.25f + 0.5f * sub;
        float xs[MAX_VERTS];
        int m = 0;
        for (int i = 0, j = n - 1; i < n; j = i++) {
            const float yi = v[2 * i + 1], yj = v[2 * j + 1];
            if ((yi > sy) != (yj > sy)) xs[m++] = v[2 * i] + (sy - yi) / (yj - yi) * (v[2 * j] - v[2 * i]);
        }
        for (int a = 1; a < m; a++) /* insertion sort: m is small */
            for (int b = a; b > 0 && xs[b] < xs[b - 1]; b--) {
                const float t = xs[b];
                xs[b] = xs[b - 1], xs[b - 1] = t;
            }
        for (int k = 0; k + 1 < m; k += 2) {
            /* sub-columns at x - 0.25 and x + 0.25 inside [xs[k], xs[k+1]) */
            for (int sc = 0; sc < 2; sc++) {
                const float off = -0.25f + 0.5f * sc;
                int64_t x0 = (int64_t)ceilf(xs[k] - off), x1 = (int64_t)ceilf(xs[k + 1] - off) - 1;
                if (x0 < 0) x0 = 0;
                if (x1 > W - 1) x1 = W - 1;
                for (int64_t x = x0; x <= x1; x++) coverage[x]++;
            }
        }
    }
}

/* Paint one image's layers into img (S, S, 3) float and labels (S, S). */
static void paint(float *img, uint8_t *labels, int64_t S, const float *rec, int64_t len,
                  const float *p, uint8_t *coverage) {
    int64_t at = 0;
    while (at + 7 <= len) {
        const int label = (int)rec[at], only = (int)rec[at + 1], shade = (int)rec[at + 5];
        const float col[3] = {rec[at + 2], rec[at + 3], rec[at + 4]};
        int n = (int)rec[at + 6];
        const float *v = rec + at + 7;
        at += 7 + 2 * (int64_t)n;
        if (n < 3 || n > MAX_VERTS || at > len) continue;
        float ymin = v[1], ymax = v[1];
        for (int i = 1; i < n; i++) ymin = fminf(ymin, v[2 * i + 1]), ymax = fmaxf(ymax, v[2 * i + 1]);
        const int64_t y0 = (int64_t)fmaxf(0.0f, floorf(ymin)), y1 = (int64_t)fminf((float)(S - 1), ceilf(ymax));
        for (int64_t y = y0; y <= y1; y++) {
            cover_row(coverage, S, y, v, n);
            for (int64_t x = 0; x < S; x++) {
                if (!coverage[x]) continue;
                const int64_t px = y * S + x;
                if (only >= 0 && labels[px] != only) continue;
                const float a = coverage[x] * 0.25f;
                float light = 1.0f;
                if (shade == 1) {
                    const float nx = (x - p[0]) / p[2], ny = (y - p[1]) / p[3];
                    const float nz = sqrtf(fmaxf(0.0f, 1.0f - nx * nx - ny * ny));
                    light = p[7] + (1.0f - p[7]) * fmaxf(0.0f, nx * p[4] + ny * p[5] + nz * p[6]);
                }
                for (int c = 0; c < 3; c++) img[3 * px + c] += a * (col[c] * light - img[3 * px + c]);
                if (label >= 0 && coverage[x] >= 2) labels[px] = (uint8_t)label;
            }
        }
    }
}

pf_status pf_raster_faces(uint8_t *out, uint8_t *labels, int64_t B, int64_t S, const float *layers,
                          const int64_t *offsets, const float *params, const float *background) {
    const int nt = pf_get_num_threads();
    float *scratch = pf_malloc((size_t)nt * (S * S * 3 * sizeof(float) + S));
    if (!scratch) return pf_fail(PF_ENOMEM, "raster: out of memory");
#pragma omp parallel num_threads(nt)
    {
        const int tid = pf_thread_num();
        float *img = (float *)((char *)scratch + (size_t)tid * (S * S * 3 * sizeof(float) + S));
        uint8_t *coverage = (uint8_t *)(img + S * S * 3);
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++) {
            const float *bg = background + b * 6; /* top colour, bottom colour */
            for (int64_t y = 0; y < S; y++) {
                const float t = S > 1 ? (float)y / (S - 1) : 0.0f;
                for (int64_t x = 0; x < S; x++)
                    for (int c = 0; c < 3; c++) img[3 * (y * S + x) + c] = bg[c] + t * (bg[3 + c] - bg[c]);
            }
            memset(labels + b * S * S, 0, (size_t)(S * S));
            paint(img, labels + b * S * S, S, layers + offsets[b], offsets[b + 1] - offsets[b], params + 8 * b, coverage);
            uint8_t *o = out + b * S * S * 3;
            for (int64_t i = 0; i < S * S * 3; i++) o[i] = (uint8_t)(clampf(img[i], 0.0f, 255.0f) + 0.5f);
        }
    }
    free(scratch);
    return PF_OK;
}
