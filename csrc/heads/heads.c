/* heads.c: soft-argmax landmarks, L1 on coordinates and pixel cross-entropy on per-patch
 * logits (layout in heads.h). Sums run in double; gradients are fp32. */
#include <math.h>
#include "core/common.h"
#include "heads/heads.h"
#include "layers/vecmath.h"

/* A heatmap value more than SA_CUT below its landmark's maximum gets probability 0: e^-60 is
 * under 1e-26 of the peak's, and dropping it keeps the backward's products out of denormal
 * floats, which cost a hundred cycles each. */
#define SA_CUT (-60.0f)

/* mx (L) = max(mx, z (L)): one pixel's heatmap values. */
PF_CLONES static void sa_row_max(float *restrict mx, const float *restrict z, int64_t L) {
    for (int64_t l = 0; l < L; l++) mx[l] = z[l] > mx[l] ? z[l] : mx[l];
}

/* ps, pxs, pys (L) += e, e x, e y with e = exp(z - mx) (L): one pixel at (x, y). */
PF_CLONES static void sa_row_sums(float *restrict ps, float *restrict pxs, float *restrict pys,
                                  const float *restrict z, const float *restrict mx, float x, float y,
                                  int64_t L) {
    for (int64_t l = 0; l < L; l++) {
        const float v = z[l] - mx[l];
        const float e = v > SA_CUT ? pf_expf(v) : 0.0f;
        ps[l] += e, pxs[l] += e * x, pys[l] += e * y;
    }
}

/* dz (L) += exp(z - lse) ((x - cx) dcx + (y - cy) dcy), all (L): one pixel at (x, y). */
PF_CLONES static void sa_row_grad(float *restrict dz, const float *restrict z, const float *restrict lse,
                                  const float *restrict cx, const float *restrict cy, const float *restrict dcx,
                                  const float *restrict dcy, float x, float y, int64_t L) {
    for (int64_t l = 0; l < L; l++) {
        const float v = z[l] - lse[l];
        const float prob = v > SA_CUT ? pf_expf(v) : 0.0f;
        dz[l] += prob * ((x - cx[l]) * dcx[l] + (y - cy[l]) * dcy[l]);
    }
}

/* The pixel coordinates of pixel q of patch i (G patches a row, p pixels a patch row). */
static inline float sa_x(int64_t i, int64_t q, int64_t G, int64_t p) { return (float)((i % G) * p + q % p); }
static inline float sa_y(int64_t i, int64_t q, int64_t G, int64_t p) { return (float)((i / G) * p + q / p); }

/* Pixel-major walks keep the L heatmap values of a pixel contiguous, so the per-pixel loops
 * over landmarks vectorise; per-patch partial sums in float are flushed into double. */
void pf_softargmax_forward(float *coords, float *lse, const float *logits, int64_t B, int64_t G,
                           int64_t p, int64_t L) {
    const int64_t N = G * G, pp = p * p, img = N * pp * L;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads())
    for (int64_t b = 0; b < B; b++) {
        const float *z = logits + b * img;
        float mx[L], ps[L], pxs[L], pys[L];
        double sum[L], sx[L], sy[L];
        for (int64_t l = 0; l < L; l++) mx[l] = -INFINITY, sum[l] = sx[l] = sy[l] = 0.0;
        for (int64_t o = 0; o < N * pp; o++) sa_row_max(mx, z + o * L, L);
        for (int64_t i = 0; i < N; i++) {
            for (int64_t l = 0; l < L; l++) ps[l] = pxs[l] = pys[l] = 0.0f;
            for (int64_t q = 0; q < pp; q++)
                sa_row_sums(ps, pxs, pys, z + (i * pp + q) * L, mx, sa_x(i, q, G, p), sa_y(i, q, G, p), L);
            for (int64_t l = 0; l < L; l++) sum[l] += ps[l], sx[l] += pxs[l], sy[l] += pys[l];
        }
        for (int64_t l = 0; l < L; l++) {
            coords[(b * L + l) * 2] = (float)(sx[l] / sum[l]);
            coords[(b * L + l) * 2 + 1] = (float)(sy[l] / sum[l]);
            lse[b * L + l] = (float)(mx[l] + log(sum[l]));
        }
    }
}

/* dcoords (B, L, 2) -> dlogits (B, G*G, p*p*L) +=, from the logits and the forward's lse, coords. */
void pf_softargmax_backward(float *dlogits, const float *dcoords, const float *logits, const float *lse,
                            const float *coords, int64_t B, int64_t G, int64_t p, int64_t L) {
    const int64_t N = G * G, pp = p * p, img = N * pp * L;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads())
    for (int64_t b = 0; b < B; b++) {
        float cx[L], cy[L], dcx[L], dcy[L];
        for (int64_t l = 0; l < L; l++) {
            cx[l] = coords[(b * L + l) * 2], cy[l] = coords[(b * L + l) * 2 + 1];
            dcx[l] = dcoords[(b * L + l) * 2], dcy[l] = dcoords[(b * L + l) * 2 + 1];
        }
        for (int64_t o = 0; o < N * pp; o++)
            sa_row_grad(dlogits + b * img + o * L, logits + b * img + o * L, lse + b * L, cx, cy, dcx, dcy,
                        sa_x(o / pp, o % pp, G, p), sa_y(o / pp, o % pp, G, p), L);
    }
}

/* pred, target (B, L, 2), weight (B, L) or NULL -> sum w (|dx| + |dy|) / (2 scale sum w). */
double pf_l1_points_forward(const float *pred, const float *target, const float *weight, int64_t B,
                            int64_t L, float scale) {
    double total = 0.0, wsum = 0.0;
    for (int64_t i = 0; i < B * L; i++) {
        const double w = weight ? weight[i] : 1.0;
        if (!(w > 0.0)) continue;
        total += w * (fabs((double)pred[2 * i] - target[2 * i]) + fabs((double)pred[2 * i + 1] - target[2 * i + 1]));
        wsum += w;
    }
    return wsum > 0.0 ? total / (2.0 * scale * wsum) : 0.0;
}

/* -1, 0 or 1. */
static inline float signf(float v) { return (float)((v > 0.0f) - (v < 0.0f)); }

/* dpred (B, L, 2) += dloss w sign(pred - target) / (2 scale sum w). */
void pf_l1_points_backward(float *dpred, const float *pred, const float *target, const float *weight,
                           int64_t B, int64_t L, float scale, float dloss) {
    double wsum = 0.0;
    for (int64_t i = 0; i < B * L; i++) wsum += weight ? (weight[i] > 0.0f ? weight[i] : 0.0f) : 1.0;
    if (!(wsum > 0.0)) return;
    const float g = (float)(dloss / (2.0 * scale * wsum));
    for (int64_t i = 0; i < B * L; i++) {
        const float w = weight ? weight[i] : 1.0f;
        if (!(w > 0.0f)) continue;
        for (int k = 0; k < 2; k++) dpred[2 * i + k] += g * w * signf(pred[2 * i + k] - target[2 * i + k]);
    }
}

/* The label of pixel q of patch row r (b, i) of the (B, G*G, p*p) logits layout. */
static inline int64_t label_at(const int64_t *labels, int64_t r, int64_t q, int64_t G, int64_t p) {
    const int64_t N = G * G, S = G * p, b = r / N, i = r % N;
    const int64_t y = (i / G) * p + q / p, x = (i % G) * p + q % p;
    return labels[(b * S + y) * S + x];
}

/* e (K) = exp(z - max z) of one pixel's K logits (0 below SA_CUT) -> their sum; *mx = max z. */
PF_CLONES static float pixel_exp(float *restrict e, const float *restrict z, int64_t K, float *mx) {
    float m = -INFINITY, sum = 0.0f;
    for (int64_t k = 0; k < K; k++) m = z[k] > m ? z[k] : m;
    for (int64_t k = 0; k < K; k++) {
        const float v = z[k] - m;
        e[k] = v > SA_CUT ? pf_expf(v) : 0.0f;
        sum += e[k];
    }
    *mx = m;
    return sum;
}

/* logits (B, G*G, p*p*K), labels (B, S, S) -> *loss mean cross-entropy over *count labelled pixels. */
pf_status pf_pixel_ce_forward(double *loss, int64_t *count, const float *logits, const int64_t *labels,
                              int64_t B, int64_t G, int64_t p, int64_t K, int64_t ignore) {
    const int64_t S = G * p;
    for (int64_t i = 0; i < B * S * S; i++)
        if (labels[i] != ignore && (labels[i] < 0 || labels[i] >= K))
            return pf_fail(PF_EINVAL, "labels[%lld] = %lld is outside [0, %lld) and is not the ignore "
                           "index %lld", (long long)i, (long long)labels[i], (long long)K, (long long)ignore);
    const int64_t BN = B * G * G, pp = p * p;
    double total = 0.0;
    int64_t n = 0;
#pragma omp parallel for schedule(static) reduction(+ : total, n) num_threads(pf_get_num_threads())
    for (int64_t r = 0; r < BN; r++) {
        float e[K], mx;
        for (int64_t q = 0; q < pp; q++) {
            const int64_t t = label_at(labels, r, q, G, p);
            if (t == ignore) continue;
            const float *z = logits + (r * pp + q) * K;
            const float sum = pixel_exp(e, z, K, &mx);
            total += mx + log((double)sum) - z[t];
            n++;
        }
    }
    *count = n;
    *loss = n ? total / (double)n : 0.0;
    return PF_OK;
}

/* dlogits (B, G*G, p*p*K) += dloss (softmax - onehot) / count on labelled pixels. */
void pf_pixel_ce_backward(float *dlogits, const float *logits, const int64_t *labels, int64_t B, int64_t G,
                          int64_t p, int64_t K, int64_t ignore, float dloss) {
    const int64_t BN = B * G * G, pp = p * p, S = G * p;
    int64_t n = 0;
    for (int64_t i = 0; i < B * S * S; i++) n += labels[i] != ignore;
    if (!n) return;
    const float g = dloss / (float)n;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads())
    for (int64_t r = 0; r < BN; r++) {
        float e[K], mx;
        for (int64_t q = 0; q < pp; q++) {
            const int64_t t = label_at(labels, r, q, G, p);
            if (t == ignore) continue;
            float *dz = dlogits + (r * pp + q) * K;
            const float scale = g / pixel_exp(e, logits + (r * pp + q) * K, K, &mx);
            for (int64_t k = 0; k < K; k++) dz[k] += scale * e[k];
            dz[t] -= g;
        }
    }
}

/* logits (B, G*G, p*p*K) -> probs (B, K, S, S), S = G*p. */
void pf_pixel_softmax(float *probs, const float *logits, int64_t B, int64_t G, int64_t p, int64_t K) {
    const int64_t BN = B * G * G, pp = p * p, N = G * G, S = G * p;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads())
    for (int64_t r = 0; r < BN; r++) {
        float e[K], mx;
        for (int64_t q = 0; q < pp; q++) {
            const int64_t b = r / N, i = r % N, y = (i / G) * p + q / p, x = (i % G) * p + q % p;
            const float inv = 1.0f / pixel_exp(e, logits + (r * pp + q) * K, K, &mx);
            for (int64_t k = 0; k < K; k++) probs[((b * K + k) * S + y) * S + x] = e[k] * inv;
        }
    }
}

/* The offset of pixel (y, x) of one image's (G*G, p*p*K) per-patch block. */
static inline int64_t patch_pixel(int64_t y, int64_t x, int64_t G, int64_t p, int64_t K) {
    return (((y / p) * G + x / p) * p * p + (y % p) * p + x % p) * K;
}

/* Source row/column of output pixel o (bilinear, half-pixel centres, clamped): i0, i1, w1. */
static inline void bilinear_src(int64_t o, int64_t u, int64_t n, int64_t *i0, int64_t *i1, float *w1) {
    float s = ((float)o + 0.5f) / (float)u - 0.5f;
    if (s < 0.0f) s = 0.0f;
    int64_t a = (int64_t)s;
    if (a > n - 1) a = n - 1;
    *i0 = a, *i1 = a + 1 < n ? a + 1 : n - 1, *w1 = s - (float)a;
}

/* in (B, G*G, q*q*K) -> out (B, G*G, p*p*K), p = q*u: bilinear, per-patch layout. */
void pf_upsample_patches_forward(float *out, const float *in, int64_t B, int64_t G, int64_t q, int64_t u,
                                 int64_t K) {
    const int64_t p = q * u, S = G * p, Sc = G * q, img = G * G * p * p * K, imgc = G * G * q * q * K;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads())
    for (int64_t by = 0; by < B * S; by++) {
        const int64_t b = by / S, y = by % S;
        int64_t y0, y1, x0, x1;
        float wy, wx;
        bilinear_src(y, u, Sc, &y0, &y1, &wy);
        const float *src = in + b * imgc;
        for (int64_t x = 0; x < S; x++) {
            bilinear_src(x, u, Sc, &x0, &x1, &wx);
            const float *a = src + patch_pixel(y0, x0, G, q, K), *c = src + patch_pixel(y0, x1, G, q, K);
            const float *d = src + patch_pixel(y1, x0, G, q, K), *e = src + patch_pixel(y1, x1, G, q, K);
            float *o = out + b * img + patch_pixel(y, x, G, p, K);
            const float w00 = (1 - wy) * (1 - wx), w01 = (1 - wy) * wx, w10 = wy * (1 - wx), w11 = wy * wx;
            for (int64_t k = 0; k < K; k++) o[k] = w00 * a[k] + w01 * c[k] + w10 * d[k] + w11 * e[k];
        }
    }
}

/* dout (B, G*G, p*p*K) -> din (B, G*G, q*q*K) += the adjoint of the forward. */
void pf_upsample_patches_backward(float *din, const float *dout, int64_t B, int64_t G, int64_t q, int64_t u,
                                  int64_t K) {
    const int64_t p = q * u, S = G * p, Sc = G * q, img = G * G * p * p * K, imgc = G * G * q * q * K;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads())
    for (int64_t b = 0; b < B; b++) {
        float *dst = din + b * imgc;
        for (int64_t y = 0; y < S; y++) {
            int64_t y0, y1, x0, x1;
            float wy, wx;
            bilinear_src(y, u, Sc, &y0, &y1, &wy);
            for (int64_t x = 0; x < S; x++) {
                bilinear_src(x, u, Sc, &x0, &x1, &wx);
                const float *g = dout + b * img + patch_pixel(y, x, G, p, K);
                float *a = dst + patch_pixel(y0, x0, G, q, K), *c = dst + patch_pixel(y0, x1, G, q, K);
                float *d = dst + patch_pixel(y1, x0, G, q, K), *e = dst + patch_pixel(y1, x1, G, q, K);
                const float w00 = (1 - wy) * (1 - wx), w01 = (1 - wy) * wx, w10 = wy * (1 - wx), w11 = wy * wx;
                for (int64_t k = 0; k < K; k++) {
                    a[k] += w00 * g[k], c[k] += w01 * g[k];
                    d[k] += w10 * g[k], e[k] += w11 * g[k];
                }
            }
        }
    }
}
