/* codebook.c: PaCo-FR's patch codebook (docs/method.md §2): nearest codes through GEMM, the top-k
 * candidate mixture and its backward, EMA k-means, dead-code re-seeding, initialisation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/common.h"
#include "paco/codebook.h"

#define NEAREST_ROWS 256 /* rows per GEMM block when scoring codes */

/* sq (n) = squared norms of the rows of a (n, d). */
static void row_sq(float *sq, const float *a, int64_t n, int64_t d) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n * d > 65536)
    for (int64_t i = 0; i < n; i++) {
        double s = 0.0;
        for (int64_t k = 0; k < d; k++) s += (double)a[i * d + k] * a[i * d + k];
        sq[i] = (float)s;
    }
}

/* idx (rows), dist (rows): nearest of C (K, d) to each row of x (rows, d). */
pf_status pf_codebook_nearest(int64_t *idx, float *dist, const float *x, const float *C, int64_t rows,
                              int64_t K, int64_t d) {
    float *cn = pf_malloc((size_t)K * sizeof(float));
    float *xn = pf_malloc((size_t)rows * sizeof(float));
    float *sc = pf_malloc((size_t)(NEAREST_ROWS * K) * sizeof(float));
    pf_status st = PF_OK;
    if (!cn || !xn || !sc) {
        st = pf_fail(PF_ENOMEM, "codebook: out of memory");
        goto done;
    }
    row_sq(cn, C, K, d);
    row_sq(xn, x, rows, d);
    for (int64_t r0 = 0; r0 < rows && st == PF_OK; r0 += NEAREST_ROWS) {
        const int64_t rb = pf_min64(NEAREST_ROWS, rows - r0);
        st = pf_gemm(0, 1, rb, K, d, 1.0f, x + r0 * d, d, C, d, 0.0f, sc, K, PF_FP32); /* x C^T */
        if (st != PF_OK) break;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rb * K > 65536)
        for (int64_t r = 0; r < rb; r++) {
            const float *s = sc + r * K;
            int64_t best = 0;
            float bd = INFINITY;
            for (int64_t k = 0; k < K; k++) {
                const float dk = cn[k] - 2.0f * s[k];
                if (dk < bd) bd = dk, best = k;
            }
            idx[r0 + r] = best;
            if (dist) dist[r0 + r] = fmaxf(0.0f, bd + xn[r0 + r]);
        }
    }
done:
    free(cn), free(xn), free(sc);
    return st;
}

/* t (rows, d), idx (rows, k), w (rows, k) from logits (rows, K) and C (K, d). */
void pf_topk_mixture_forward(float *t, int64_t *idx, float *w, const float *logits, const float *C,
                             int64_t rows, int64_t K, int64_t d, int64_t k, float tau, int hard) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * K > 65536)
    for (int64_t r = 0; r < rows; r++) {
        const float *l = logits + r * K;
        int64_t *ix = idx + r * k;
        float *wr = w + r * k;
        int64_t m = 0; /* the top m so far, descending; strict > keeps the lower index on ties */
        for (int64_t c = 0; c < K; c++) {
            if (m == k && !(l[c] > l[ix[k - 1]])) continue;
            int64_t at = m < k ? m++ : k - 1;
            while (at > 0 && l[c] > l[ix[at - 1]]) {
                ix[at] = ix[at - 1];
                at--;
            }
            ix[at] = c;
        }
        double z = 0.0;
        const float top = l[ix[0]];
        for (int64_t j = 0; j < k; j++) z += wr[j] = expf((l[ix[j]] - top) / tau);
        for (int64_t j = 0; j < k; j++) wr[j] = (float)(wr[j] / z);
        float *tr = t + r * d;
        if (hard) {
            memcpy(tr, C + ix[0] * d, (size_t)d * sizeof(float));
            continue;
        }
        memset(tr, 0, (size_t)d * sizeof(float));
        for (int64_t j = 0; j < k; j++) {
            const float *cj = C + ix[j] * d;
            for (int64_t q = 0; q < d; q++) tr[q] += wr[j] * cj[q];
        }
    }
}

/* dlogits (rows, K) +=, dC (K, d) += from dt (rows, d) through t = sum_j w_j C[idx_j]. */
void pf_topk_mixture_backward(float *dlogits, float *dC, const float *dt, const int64_t *idx,
                              const float *w, const float *C, int64_t rows, int64_t K, int64_t d,
                              int64_t k, float tau) {
    if (dlogits) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * k * d > 65536)
        for (int64_t r = 0; r < rows; r++) {
            const float *g = dt + r * d, *wr = w + r * k;
            const int64_t *ix = idx + r * k;
            double dw[64], s = 0.0; /* k <= 64, checked by the caller */
            for (int64_t j = 0; j < k; j++) {
                const float *cj = C + ix[j] * d;
                double acc = 0.0;
                for (int64_t q = 0; q < d; q++) acc += (double)g[q] * cj[q];
                dw[j] = acc;
                s += wr[j] * acc;
            }
            for (int64_t j = 0; j < k; j++) dlogits[r * K + ix[j]] += (float)(wr[j] * (dw[j] - s) / tau);
        }
    }
    if (dC) /* rows may share codes: one pass, in order, keeps it deterministic */
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < k; j++) {
                float *cj = dC + idx[r * k + j] * d;
                const float wj = w[r * k + j];
                const float *g = dt + r * d;
                for (int64_t q = 0; q < d; q++) cj[q] += wj * g[q];
            }
}

/* C (K, d), ema_count (K), ema_sum (K, d) updated from x (rows, d) and assign (rows). */
void pf_codebook_ema(float *C, float *ema_count, float *ema_sum, const float *x, const int64_t *assign,
                     int64_t rows, int64_t K, int64_t d, float decay, float eps) {
    for (int64_t i = 0; i < K * d; i++) ema_sum[i] *= decay;
    for (int64_t k = 0; k < K; k++) ema_count[k] *= decay;
    const float a = 1.0f - decay;
    for (int64_t r = 0; r < rows; r++) {
        float *sum = ema_sum + assign[r] * d;
        const float *xr = x + r * d;
        ema_count[assign[r]] += a;
        for (int64_t q = 0; q < d; q++) sum[q] += a * xr[q];
    }
    double n = 0.0;
    for (int64_t k = 0; k < K; k++) n += ema_count[k];
    for (int64_t k = 0; k < K; k++) {
        const double smoothed = (ema_count[k] + eps) / (n + K * (double)eps) * n;
        if (!(smoothed > 0.0)) continue;
        const float inv = (float)(1.0 / smoothed);
        for (int64_t q = 0; q < d; q++) C[k * d + q] = ema_sum[k * d + q] * inv;
    }
}

/* Re-seed codes with ema_count < threshold * sum(ema_count) from rows of x (rows, d). */
int64_t pf_codebook_reseed(float *C, float *ema_count, float *ema_sum, const float *x, int64_t rows,
                           int64_t K, int64_t d, float threshold, uint64_t key) {
    double n = 0.0;
    for (int64_t k = 0; k < K; k++) n += ema_count[k];
    const float mean = (float)(n / K), floor_count = (float)(threshold * n);
    int64_t done = 0;
    for (int64_t k = 0; k < K; k++) {
        if (!(ema_count[k] < floor_count) || rows < 1) continue;
        const float *xr = x + (int64_t)(pf_mix64(key ^ (uint64_t)k) % (uint64_t)rows) * d;
        for (int64_t q = 0; q < d; q++) C[k * d + q] = xr[q], ema_sum[k * d + q] = xr[q] * mean;
        ema_count[k] = mean;
        done++;
    }
    return done;
}

/* C (K, d) from x (rows, d): distinct random rows, or k-means++ (D^2 sampling). */
pf_status pf_codebook_init(float *C, const float *x, int64_t rows, int64_t K, int64_t d, int kmeanspp,
                           uint64_t key) {
    if (rows < 1) return pf_fail(PF_EINVAL, "codebook init needs at least one patch");
    if (!kmeanspp) {
        int64_t *perm = malloc((size_t)rows * sizeof(int64_t));
        if (!perm) return pf_fail(PF_ENOMEM, "codebook: out of memory");
        for (int64_t i = 0; i < rows; i++) perm[i] = i;
        for (int64_t k = 0; k < K; k++) { /* partial Fisher-Yates; wraps when rows < K */
            const int64_t i = k % rows, j = i + (int64_t)(pf_mix64(key ^ (uint64_t)k) % (uint64_t)(rows - i));
            const int64_t tmp = perm[i];
            perm[i] = perm[j], perm[j] = tmp;
            memcpy(C + k * d, x + perm[i] * d, (size_t)d * sizeof(float));
        }
        free(perm);
        return PF_OK;
    }
    double *d2 = malloc((size_t)rows * sizeof(double));
    if (!d2) return pf_fail(PF_ENOMEM, "codebook: out of memory");
    for (int64_t k = 0; k < K; k++) {
        int64_t pick = 0;
        const uint64_t h = pf_mix64(key ^ (uint64_t)k);
        if (k == 0) {
            pick = (int64_t)(h % (uint64_t)rows);
        } else {
            double total = 0.0;
            for (int64_t r = 0; r < rows; r++) total += d2[r];
            if (total > 0.0) {
                double u = (double)(h >> 11) * (1.0 / 9007199254740992.0) * total, acc = 0.0;
                pick = rows - 1;
                for (int64_t r = 0; r < rows; r++)
                    if ((acc += d2[r]) > u) {
                        pick = r;
                        break;
                    }
            } else {
                pick = (int64_t)(h % (uint64_t)rows);
            }
        }
        const float *c = x + pick * d;
        memcpy(C + k * d, c, (size_t)d * sizeof(float));
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * d > 65536)
        for (int64_t r = 0; r < rows; r++) {
            double s = 0.0;
            for (int64_t q = 0; q < d; q++) s += ((double)x[r * d + q] - c[q]) * ((double)x[r * d + q] - c[q]);
            if (k == 0 || s < d2[r]) d2[r] = s;
        }
    }
    free(d2);
    return PF_OK;
}
