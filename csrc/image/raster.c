/* raster.c: anti-aliased polygon painting for SynthFace, back to front, with labels.
 *
 * An image is a background (a vertical gradient with value-noise texture and optional stripes)
 * and a list of layers; each layer is a polygon (ellipses arrive as polygons) with a colour, a
 * label and shading flags. Rows are scan-converted at two sub-rows with the even-odd rule; each
 * pixel's coverage comes from a 2 x 2 sub-sample grid. A layer blends its colour by coverage
 * and takes the pixel's label where it covers at least half of it. A layer may be restricted to
 * pixels already carrying one label (an iris inside its eye).
 *
 * Layer record (floats): label (-1 keeps labels), only_label (-1: anywhere), r, g, b (0..255),
 * shade flags (raster.h), n, then n vertices x, y (pixel centres at integers). Lit layers take
 * Lambert + Blinn-Phong shading from the head ellipsoid's normal; textured layers multiply their
 * colour by (1 + value noise) from fields that are pure functions of the image's key. */
#include <math.h>
#include <string.h>
#include "core/common.h"
#include "image/raster.h"

#define MAX_VERTS 256

/* v clamped to [lo, hi]. */
static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* A lattice value in [-1, 1] at integer (ix, iy) for this key. */
static inline float lattice(uint64_t key, int64_t ix, int64_t iy) {
    const uint64_t h = pf_mix64(key ^ ((uint64_t)ix * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)iy * 0xC2B2AE3D27D4EB4Full));
    return (float)(h >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

/* field (S, S) += amp * value noise with cells of cx x cy pixels: hashed lattice values
 * interpolated bilinearly with smoothstep weights. lat: scratch of (S + 3)^2 floats. */
static void add_value_noise(float *field, int64_t S, uint64_t key, float cx, float cy, float amp, float *lat) {
    if (amp == 0.0f) return;
    cx = fmaxf(cx, 1.0f), cy = fmaxf(cy, 1.0f);
    const int64_t gx = (int64_t)(S / cx) + 2, gy = (int64_t)(S / cy) + 2;
    for (int64_t j = 0; j < gy; j++)
        for (int64_t i = 0; i < gx; i++) lat[j * gx + i] = lattice(key, i, j);
    for (int64_t y = 0; y < S; y++) {
        const float fy = (float)y / cy;
        const int64_t j = (int64_t)fy;
        float ty = fy - (float)j;
        ty = ty * ty * (3.0f - 2.0f * ty);
        const float *r0 = lat + j * gx, *r1 = r0 + gx;
        for (int64_t x = 0; x < S; x++) {
            const float fx = (float)x / cx;
            const int64_t i = (int64_t)fx;
            float tx = fx - (float)i;
            tx = tx * tx * (3.0f - 2.0f * tx);
            const float top = r0[i] + tx * (r0[i + 1] - r0[i]), bot = r1[i] + tx * (r1[i + 1] - r1[i]);
            field[y * S + x] += amp * (top + ty * (bot - top));
        }
    }
}

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
                /* clamp in float before the cast: a far-away vertex must not overflow int64 */
                const float fx0 = fmaxf(0.0f, ceilf(xs[k] - off));
                const float fx1 = fminf((float)(W - 1), ceilf(xs[k + 1] - off) - 1.0f);
                if (!(fx0 <= fx1)) continue;
                for (int64_t x = (int64_t)fx0; x <= (int64_t)fx1; x++) coverage[x]++;
            }
        }
    }
}

/* The colour factor and additive highlight of a lit layer at pixel (x, y). p: image params. */
static inline void lighting(const float *p, float x, float y, float *factor, float *highlight) {
    const float nx = (x - p[0]) / p[2], ny = (y - p[1]) / p[3];
    const float nz = sqrtf(fmaxf(0.0f, 1.0f - nx * nx - ny * ny));
    const float diffuse = fmaxf(0.0f, nx * p[4] + ny * p[5] + nz * p[6]);
    *factor = p[7] + (1.0f - p[7]) * diffuse;
    /* half vector between the light and the viewer (0, 0, 1) */
    float hx = p[4], hy = p[5], hz = p[6] + 1.0f;
    const float hn = sqrtf(hx * hx + hy * hy + hz * hz);
    const float nh = fmaxf(0.0f, (nx * hx + ny * hy + nz * hz) / (hn > 0.0f ? hn : 1.0f));
    const float n2 = nh * nh, n4 = n2 * n2, n8 = n4 * n4;
    *highlight = p[8] * 160.0f * n8 * n8;
}

/* Paint one image's layers into img (S, S, 3) float and labels (S, S). skin, hair: (S, S)
 * texture fields. */
static void paint(float *img, uint8_t *labels, int64_t S, const float *rec, int64_t len, const float *p,
                  const float *skin, const float *hair, uint8_t *coverage) {
    int64_t at = 0;
    while (at + 7 <= len) {
        const int label = (int)rec[at], only = (int)rec[at + 1], shade = (int)rec[at + 5];
        const float col[3] = {clampf(rec[at + 2], 0.0f, 255.0f), clampf(rec[at + 3], 0.0f, 255.0f),
                             clampf(rec[at + 4], 0.0f, 255.0f)};
        int n = (int)rec[at + 6];
        const float *v = rec + at + 7;
        at += 7 + 2 * (int64_t)n;
        if (n < 3 || n > MAX_VERTS || at > len) continue;
        float ymin = v[1], ymax = v[1];
        for (int i = 1; i < n; i++) ymin = fminf(ymin, v[2 * i + 1]), ymax = fmaxf(ymax, v[2 * i + 1]);
        const float fy0 = fmaxf(0.0f, floorf(ymin)), fy1 = fminf((float)(S - 1), ceilf(ymax));
        if (!(fy0 <= fy1)) continue; /* off the image (or NaN): clamped in float, never cast out of range */
        for (int64_t y = (int64_t)fy0; y <= (int64_t)fy1; y++) {
            cover_row(coverage, S, y, v, n);
            for (int64_t x = 0; x < S; x++) {
                if (!coverage[x]) continue;
                const int64_t px = y * S + x;
                if (only >= 0 && labels[px] != only) continue;
                const float a = coverage[x] * 0.25f;
                float factor = 1.0f, highlight = 0.0f;
                if (shade & PF_SHADE_LIT) lighting(p, (float)x, (float)y, &factor, &highlight);
                if (shade & PF_SHADE_SKIN) factor *= 1.0f + skin[px];
                if (shade & PF_SHADE_HAIR) factor *= 1.0f + hair[px];
                for (int c = 0; c < 3; c++) img[3 * px + c] += a * (col[c] * factor + highlight - img[3 * px + c]);
                if (label >= 0 && coverage[x] >= 2) labels[px] = (uint8_t)label;
            }
        }
    }
}

/* img (S, S, 3) = background: vertical gradient, value-noise texture, optional stripes. */
static void background_fill(float *img, int64_t S, const float *bg, const float *p, uint64_t key, float *field,
                            float *lat) {
    memset(field, 0, (size_t)(S * S) * sizeof(float));
    add_value_noise(field, S, key ^ 0xB6ull, p[13], p[13], p[12], lat);
    add_value_noise(field, S, key ^ 0xB7ull, 0.3f * p[13], 0.3f * p[13], 0.35f * p[12], lat);
    const float w = p[14] > 0.0f ? 6.2831853f / p[14] : 0.0f, ca = cosf(p[15]), sa = sinf(p[15]);
    for (int64_t y = 0; y < S; y++) {
        const float t = S > 1 ? (float)y / (float)(S - 1) : 0.0f;
        for (int64_t x = 0; x < S; x++) {
            float d = field[y * S + x];
            if (w > 0.0f) d += 0.5f * p[12] * sinf(w * ((float)x * ca + (float)y * sa));
            for (int c = 0; c < 3; c++) img[3 * (y * S + x) + c] = bg[c] + t * (bg[3 + c] - bg[c]) + d;
        }
    }
}

/* layers[offsets[b]:offsets[b+1]], params (B, NPARAM), background (B, 6), keys (B)
 * -> out (B, S, S, 3) uint8 and labels (B, S, S) uint8, the images spread over the threads. */
pf_status pf_raster_faces(uint8_t *out, uint8_t *labels, int64_t B, int64_t S, const float *layers,
                          const int64_t *offsets, const float *params, const float *background,
                          const uint64_t *keys) {
    const int nt = pf_get_num_threads();
    /* per thread: image (S*S*3) + 3 fields (S*S) + lattice ((S+3)^2) floats, coverage S bytes */
    const size_t per = ((size_t)(S * S * 6 + (S + 3) * (S + 3)) * sizeof(float) + (size_t)S + 63) / 64 * 64;
    char *scratch = pf_malloc((size_t)nt * per);
    if (!scratch) return pf_fail(PF_ENOMEM, "raster: out of memory");
#pragma omp parallel num_threads(nt)
    {
        float *img = (float *)(scratch + (size_t)pf_thread_num() * per);
        float *skin = img + S * S * 3, *hair = skin + S * S, *field = hair + S * S, *lat = field + S * S;
        uint8_t *coverage = (uint8_t *)(lat + (S + 3) * (S + 3));
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++) {
            const float *p = params + b * PF_RASTER_NPARAM;
            const uint64_t key = pf_mix64(keys[b]);
            const float unit = (float)S / 112.0f;
            background_fill(img, S, background + b * 6, p, key, field, lat);
            memset(skin, 0, (size_t)(S * S) * sizeof(float));
            add_value_noise(skin, S, key ^ 0x51ull, p[10], p[10], 0.6f * p[9], lat);
            add_value_noise(skin, S, key ^ 0x52ull, 4.0f * p[10], 4.0f * p[10], 0.4f * p[9], lat);
            memset(hair, 0, (size_t)(S * S) * sizeof(float));
            add_value_noise(hair, S, key ^ 0x4Aull, 1.3f * unit, 9.0f * unit, p[11], lat);
            memset(labels + b * S * S, 0, (size_t)(S * S));
            paint(img, labels + b * S * S, S, layers + offsets[b], offsets[b + 1] - offsets[b], p, skin, hair,
                  coverage);
            uint8_t *o = out + b * S * S * 3;
            for (int64_t i = 0; i < S * S * 3; i++) o[i] = (uint8_t)(clampf(img[i], 0.0f, 255.0f) + 0.5f);
        }
    }
    free(scratch);
    return PF_OK;
}
