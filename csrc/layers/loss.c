/* loss.c: the reconstruction loss (MAE's norm_pix_loss), cross-entropy and MSE.
 * Sums run in double; the gradients are fp32. */
#include <math.h>
#include <stdlib.h>
#include "core/common.h"
#include "layers/loss.h"

/* target (rows, d) in place: each row minus its mean, divided by sqrt(var + 1e-6) with the
 * unbiased variance (divisor d - 1), exactly MAE's norm_pix_loss target; mu (rows) and sigma (rows)
 * receive each row's mean and that divisor when not NULL. */
void pf_norm_pix_target_stats(float *target, float *mu, float *sigma, int64_t rows, int64_t d) {
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * d > 65536)
    for (int64_t r = 0; r < rows; r++) {
        float *t = target + r * d;
        double s = 0.0, v = 0.0;
        for (int64_t i = 0; i < d; i++) s += t[i];
        const double m = s / d;
        for (int64_t i = 0; i < d; i++) v += (t[i] - m) * (t[i] - m);
        const double sd = sqrt(v / (d - 1) + 1e-6);
        const float inv = (float)(1.0 / sd);
        for (int64_t i = 0; i < d; i++) t[i] = (float)((t[i] - m) * inv);
        if (mu) mu[r] = (float)m;
        if (sigma) sigma[r] = (float)sd;
    }
}

/* target (rows, d) in place: pf_norm_pix_target_stats without the statistics. */
void pf_norm_pix_target(float *target, int64_t rows, int64_t d) {
    pf_norm_pix_target_stats(target, NULL, NULL, rows, d);
}

/* pred rows: pred_row0 leading rows per image are skipped (1 for a cls token), then N rows.
 * loss = sum_i w_i mean_d (pred_i - target_i)^2 / sum_i w_i over patches with w_i > 0
 * (w: weight (B, N)); 0 when no patch has weight. */
double pf_patch_loss_forward(const float *pred, const float *target, const float *weight,
                             int64_t B, int64_t N, int64_t d, int64_t pred_row0) {
    double total = 0.0, wsum = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total, wsum) num_threads(pf_get_num_threads())
    for (int64_t bi = 0; bi < B * N; bi++) {
        if (!(weight[bi] > 0.0f)) continue;
        const int64_t b = bi / N, i = bi % N;
        const float *pr = pred + (b * (N + pred_row0) + pred_row0 + i) * d, *t = target + bi * d;
        double s = 0.0;
        for (int64_t k = 0; k < d; k++) s += (double)(pr[k] - t[k]) * (pr[k] - t[k]);
        total += weight[bi] * s / d;
        wsum += weight[bi];
    }
    return wsum > 0.0 ? total / wsum : 0.0;
}

/* dpred (B, pred_row0 + N, d) += dloss * 2 w_i (pred - target) / (d * sum w) on weighted rows. */
void pf_patch_loss_backward(float *dpred, const float *pred, const float *target, const float *weight,
                            int64_t B, int64_t N, int64_t d, int64_t pred_row0, float dloss) {
    double wsum = 0.0;
    for (int64_t bi = 0; bi < B * N; bi++) wsum += weight[bi] > 0.0f ? weight[bi] : 0.0f;
    if (!(wsum > 0.0)) return;
    const float g = (float)(dloss * 2.0 / ((double)d * wsum));
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (B * N * d > 65536)
    for (int64_t bi = 0; bi < B * N; bi++) {
        if (!(weight[bi] > 0.0f)) continue;
        const int64_t b = bi / N, i = bi % N, row = b * (N + pred_row0) + pred_row0 + i;
        const float *pr = pred + row * d, *t = target + bi * d;
        float *dp = dpred + row * d;
        const float gw = g * weight[bi];
        for (int64_t k = 0; k < d; k++) dp[k] += gw * (pr[k] - t[k]);
    }
}

/* MAE's loss: weight 1 on removed patches (mask (B, N) = 1), 0 elsewhere. */
static float *mask_weights(const uint8_t *mask, int64_t n) {
    float *w = malloc((size_t)n * sizeof(float) + 1);
    if (w)
        for (int64_t i = 0; i < n; i++) w[i] = mask[i] ? 1.0f : 0.0f;
    return w;
}

/* pred (B, pred_row0 + N, d), target (B, N, d), mask (B, N) -> the mean error over removed patches. */
double pf_mae_loss_forward(const float *pred, const float *target, const uint8_t *mask, int64_t B, int64_t N,
                           int64_t d, int64_t pred_row0) {
    float *w = mask_weights(mask, B * N);
    const double loss = w ? pf_patch_loss_forward(pred, target, w, B, N, d, pred_row0) : NAN;
    free(w);
    return loss;
}

/* dpred (B, pred_row0 + N, d) += dloss * the gradient of pf_mae_loss_forward. */
void pf_mae_loss_backward(float *dpred, const float *pred, const float *target, const uint8_t *mask, int64_t B,
                          int64_t N, int64_t d, int64_t pred_row0, float dloss) {
    float *w = mask_weights(mask, B * N);
    if (w) pf_patch_loss_backward(dpred, pred, target, w, B, N, d, pred_row0, dloss);
    free(w);
}

/* Mean cross-entropy of logits (rows, K) against class indices targets (rows); probs (rows, K) keeps
 * the softmax for backward. Targets are checked by the caller (0 <= t < K). */
double pf_cross_entropy_forward(float *probs, const float *logits, const int64_t *targets,
                                int64_t rows, int64_t K) {
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) num_threads(pf_get_num_threads())
    for (int64_t r = 0; r < rows; r++) {
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
    return rows ? total / rows : 0.0;
}

/* dlogits (rows, K) += dloss * (probs - onehot(targets)) / rows. */
void pf_cross_entropy_backward(float *dlogits, const float *probs, const int64_t *targets,
                               int64_t rows, int64_t K, float dloss) {
    const float g = rows ? dloss / (float)rows : 0.0f;
#pragma omp parallel for schedule(static) num_threads(pf_get_num_threads()) if (rows * K > 65536)
    for (int64_t r = 0; r < rows; r++) {
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
