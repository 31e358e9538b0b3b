/* consistency.c: PaCo-FR's spatial consistency constraint (docs/method.md §4): the affinity-matrix
 * loss between the student's and the EMA teacher's l2-normalised tokens (or region
 * embeddings), its backward, region pooling and the EMA update. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "paco/consistency.h"

#define NORM_EPS 1e-12 /* as torch.nn.functional.normalize */

/* z (T, C) = valid rows of y scaled to unit length (other rows 0); norms (T) = max(|y|, eps). */
static int64_t normalise_rows(float *z, float *norms, const float *y, const uint8_t *valid, int64_t T, int64_t C) {
    int64_t m = 0;
    for (int64_t i = 0; i < T; i++) {
        double s = 0.0;
        for (int64_t c = 0; c < C; c++) s += (double)y[i * C + c] * y[i * C + c];
        const double nrm = fmax(sqrt(s), NORM_EPS);
        const int on = !valid || valid[i];
        if (norms) norms[i] = (float)nrm;
        for (int64_t c = 0; c < C; c++) z[i * C + c] = on ? (float)(y[i * C + c] / nrm) : 0.0f;
        m += on;
    }
    return m;
}

/* Per image: diff = zs zs^T - zt zt^T (T, T); returns the loss over images with valid rows. */
pf_status pf_affinity_loss_forward(double *loss, float *diff, float *zs, float *norms, const float *ys,
                                   const float *yt, const uint8_t *valid, int64_t B, int64_t T, int64_t C) {
    const int nt = pf_get_num_threads();
    float *scratch = pf_malloc((size_t)nt * (size_t)(T * C + T * T) * sizeof(float));
    if (!scratch) return pf_fail(PF_ENOMEM, "affinity loss: out of memory");
    double total = 0.0;
    int64_t images = 0;
    pf_status st = PF_OK;
#pragma omp parallel num_threads(nt) reduction(+ : total, images)
    {
        float *zt = scratch + (size_t)pf_thread_num() * (size_t)(T * C + T * T), *At = zt + T * C;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            const uint8_t *v = valid ? valid + b * T : NULL;
            float *z = zs + b * T * C, *D = diff + b * T * T;
            const int64_t m = normalise_rows(z, norms + b * T, ys + b * T * C, v, T, C);
            normalise_rows(zt, NULL, yt + b * T * C, v, T, C);
            pf_status s1 = pf_gemm(0, 1, T, T, C, 1.0f, z, C, z, C, 0.0f, D, T, PF_FP32);
            pf_status s2 = pf_gemm(0, 1, T, T, C, 1.0f, zt, C, zt, C, 0.0f, At, T, PF_FP32);
            if (s1 != PF_OK || s2 != PF_OK) {
#pragma omp critical
                st = s1 != PF_OK ? s1 : s2;
                continue;
            }
            double s = 0.0;
            for (int64_t i = 0; i < T * T; i++) {
                D[i] -= At[i];
                s += (double)D[i] * D[i];
            }
            if (m > 0) total += s / ((double)m * m), images++;
        }
    }
    free(scratch);
    *loss = images ? total / images : 0.0;
    /* a worker thread's own message stays in that thread: say it here */
    return st == PF_OK ? PF_OK : pf_fail(st, "affinity loss: a matrix product failed in a worker thread");
}

/* dys (B, T, C) += dloss * d loss / d ys through A = z z^T and z = y / |y|. */
pf_status pf_affinity_loss_backward(float *dys, const float *diff, const float *zs, const float *norms,
                                    const uint8_t *valid, int64_t B, int64_t T, int64_t C, float dloss) {
    int64_t images = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t m = 0;
        for (int64_t i = 0; i < T; i++) m += !valid || valid[b * T + i];
        images += m > 0;
    }
    if (!images) return PF_OK;
    const int nt = pf_get_num_threads();
    float *scratch = pf_malloc((size_t)nt * (size_t)(T * C) * sizeof(float));
    if (!scratch) return pf_fail(PF_ENOMEM, "affinity loss: out of memory");
    pf_status st = PF_OK;
#pragma omp parallel num_threads(nt)
    {
        float *dz = scratch + (size_t)pf_thread_num() * (size_t)(T * C);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            int64_t m = 0;
            for (int64_t i = 0; i < T; i++) m += !valid || valid[b * T + i];
            if (!m) continue;
            const float *z = zs + b * T * C;
            /* d/dz sum (A - At)^2 = 4 (A - At) z, diff symmetric */
            const float g = (float)(dloss * 4.0 / ((double)m * m * images));
            pf_status s = pf_gemm(0, 0, T, C, T, g, diff + b * T * T, T, z, C, 0.0f, dz, C, PF_FP32);
            if (s != PF_OK) {
#pragma omp critical
                st = s;
                continue;
            }
            for (int64_t i = 0; i < T; i++) {
                if (valid && !valid[b * T + i]) continue;
                const float *zi = z + i * C, *gi = dz + i * C;
                double dot = 0.0;
                for (int64_t c = 0; c < C; c++) dot += (double)zi[c] * gi[c];
                const float inv = 1.0f / norms[b * T + i];
                float *o = dys + (b * T + i) * C;
                for (int64_t c = 0; c < C; c++) o[c] += (gi[c] - (float)dot * zi[c]) * inv;
            }
        }
    }
    free(scratch);
    return st == PF_OK ? PF_OK : pf_fail(st, "affinity loss backward: a matrix product failed in a worker thread");
}

/* out (B, R, C) = per-region means of y (B, T, C); count (B, R). */
void pf_region_pool_forward(float *out, int64_t *count, const float *y, const int64_t *region, int64_t B,
                            int64_t T, int64_t C, int64_t R) {
    memset(out, 0, (size_t)(B * R * C) * sizeof(float));
    memset(count, 0, (size_t)(B * R) * sizeof(int64_t));
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * T * C > 65536)
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < T; t++) {
            const int64_t r = region[b * T + t];
            float *o = out + (b * R + r) * C;
            const float *yr = y + (b * T + t) * C;
            for (int64_t c = 0; c < C; c++) o[c] += yr[c];
            count[b * R + r]++;
        }
        for (int64_t r = 0; r < R; r++) {
            const int64_t n = count[b * R + r];
            if (n > 1)
                for (int64_t c = 0; c < C; c++) out[(b * R + r) * C + c] /= (float)n;
        }
    }
}

/* dy (B, T, C) += dout (B, R, C)[region] / count. */
void pf_region_pool_backward(float *dy, const float *dout, const int64_t *count, const int64_t *region,
                             int64_t B, int64_t T, int64_t C, int64_t R) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * T * C > 65536)
    for (int64_t bt = 0; bt < B * T; bt++) {
        const int64_t b = bt / T, r = region[bt];
        const float inv = 1.0f / (float)count[b * R + r];
        const float *d = dout + (b * R + r) * C;
        float *o = dy + bt * C;
        for (int64_t c = 0; c < C; c++) o[c] += d[c] * inv;
    }
}

/* dst (n) = m dst + (1 - m) src. */
void pf_ema_update(float *dst, const float *src, int64_t n, float m) {
    const float a = 1.0f - m;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dst[i] = m * dst[i] + a * src[i];
}
