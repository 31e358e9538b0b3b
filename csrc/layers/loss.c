/* loss.c: the reconstruction loss (MAE's norm_pix_loss), cross-entropy and MSE.
 * Sums run in double; the gradients are fp32. */
#include <math.h>
#include "../common.h"
#include "layers.h"

/* target (R, d) in place: each row minus its mean, divided by sqrt(var + 1e-6) with the
 * unbiased variance (divisor d - 1), exactly MAE's norm_pix_loss target. */
void pf_norm_pix_target(float *target, int64_t R, int64_t d) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (R * d > 65536)
    for (int64_t r = 0; r < R; r++) {
        float *t = target + r * d;
        double s = 0.0, v = 0.0;
        for (int64_t i = 0; i < d; i++) s += t[i];
        const double m = s / d;
        for (int64_t i = 0; i < d; i++) v += (t[i] - m) * (t[i] - m);
        const float inv = (float)(1.0 / sqrt(v / (d - 1) + 1e-6));
        for (int64_t i = 0; i < d; i++) t[i] = (float)((t[i] - m) * inv);
    }
}

/* pred rows: pred_row0 leading rows per image are skipped (1 for a cls token), then N rows.
 * loss = sum over removed patches (mask = 1) of mean_d (pred - target)^2, / number removed. */
double pf_mae_loss_forward(const float *pred, const float *target, const uint8_t *mask,
                           int64_t B, int64_t N, int64_t d, int64_t pred_row0) {
    double total = 0.0;
    int64_t count = 0;
#pragma omp parallel for schedule(static) reduction(+ : total, count) num_threads(pf_get_num_threads())
    for (int64_t bi = 0; bi < B * N; bi++) {
        if (!mask[bi]) continue;
        const int64_t b = bi / N, i = bi % N;
        const float *pr = pred + (b * (N + pred_row0) + pred_row0 + i) * d, *t = target + bi * d;
        double s = 0.0;
        for (int64_t k = 0; k < d; k++) s += (double)(pr[k] - t[k]) * (pr[k] - t[k]);
        total += s / d;
        count++;
    }
    return count ? total / count : 0.0;
}

/* dpred (B, pred_row0 + N, d) += dloss * 2 (pred - target) / (d * removed) on removed rows. */
void pf_mae_loss_backward(float *dpred, const float *pred, const float *target,
                          const uint8_t *mask, int64_t B, int64_t N, int64_t d,
                          int64_t pred_row0, float dloss) {
    int64_t count = 0;
    for (int64_t bi = 0; bi < B * N; bi++) count += mask[bi] != 0;
    if (!count) return;
    const float g = dloss * 2.0f / (float)(d * count);
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * N * d > 65536)
    for (int64_t bi = 0; bi < B * N; bi++) {
        if (!mask[bi]) continue;
        const int64_t b = bi / N, i = bi % N, row = b * (N + pred_row0) + pred_row0 + i;
        const float *pr = pred + row * d, *t = target + bi * d;
        float *dp = dpred + row * d;
        for (int64_t k = 0; k < d; k++) dp[k] += g * (pr[k] - t[k]);
    }
}

/* Mean cross-entropy of logits (R, K) against class indices targets (R); probs (R, K) keeps
 * the softmax for backward. Targets are checked by the caller (0 <= t < K). */
double pf_cross_entropy_forward(float *probs, const float *logits, const int64_t *targets,
                                int64_t R, int64_t K) {
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) num_threads(pf_get_num_threads())
    for (int64_t r = 0; r < R; r++) {
        const float *l = logits + r * K;
        float *p = probs + r * K;
        float mx = -INFINITY;
        for (int64_t k = 0; k < K; k++) mx = l[k] > mx ? l[k] : mx;
        double sum = 0.0;
        for (int64_t k = 0; k < K; k++) {
            p[k] = expf(l[k] - mx);
            sum += p[k];
        }
        for (int64_t k = 0; k < K; k++) p[k] = (float)(p[k] / sum);
        total += log(sum) + mx - l[targets[r]];
    }
    return R ? total / R : 0.0;
}

/* dlogits (R, K) += dloss * (probs - onehot(targets)) / R. */
void pf_cross_entropy_backward(float *dlogits, const float *probs, const int64_t *targets,
                               int64_t R, int64_t K, float dloss) {
    const float g = R ? dloss / (float)R : 0.0f;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (R * K > 65536)
    for (int64_t r = 0; r < R; r++) {
        float *d = dlogits + r * K;
        const float *p = probs + r * K;
        for (int64_t k = 0; k < K; k++) d[k] += g * p[k];
        d[targets[r]] -= g;
    }
}

/* Mean of (x - target)^2 over n elements. */
double pf_mse_forward(const float *x, const float *target, int64_t n) {
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) num_threads(pf_get_num_threads())
    for (int64_t i = 0; i < n; i++) total += (double)(x[i] - target[i]) * (x[i] - target[i]);
    return n ? total / n : 0.0;
}

/* dx (n) += dloss * 2 (x - target) / n. */
void pf_mse_backward(float *dx, const float *x, const float *target, int64_t n, float dloss) {
    const float g = n ? 2.0f * dloss / (float)n : 0.0f;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dx[i] += g * (x[i] - target[i]);
}
