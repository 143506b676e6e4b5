// Losses.
// masked_mse: the MAE reconstruction loss (official forward_loss).
//   pred, target [B, L, P], mask [B, L] (1 = removed). With norm_pix each target patch becomes
//   (t - mean) / sqrt(var + 1e-6), var unbiased over its P values. per_patch = mean_P (pred - t)^2;
//   loss = sum(per_patch * mask) / sum(mask); with no masked patch at all, the mean of per_patch over all patches.
//   backward: dpred = dloss * w * 2 (pred - t) / P, w = mask / sum(mask) (or 1 / (B L)).
// cross_entropy: logits [B, C]; target int32 labels [B] or float32 soft targets [B, C]; q = (1 - s) t + s / C;
//   loss = mean_b sum_c q_c (logsumexp(z) - z_c); dz = (softmax(z) sum_c q_c - q) * dloss / B.
// pred, target, logits, soft targets and the input gradients may be float32 or bfloat16 (rows widened; float32 and
// double arithmetic); mask, dloss and the losses are float32.
#include <cmath>
#include <string>
#include <vector>

#include "../core/error.h"
#include "cpu.h"

namespace mae::cpu {

namespace {

// the (normalised) target patch into t
inline void target_patch(const float* tg, int64_t P, bool norm_pix, float* t) {
  if (!norm_pix) {
    for (int64_t k = 0; k < P; k++) t[k] = tg[k];
    return;
  }
  double s = 0.0;
  for (int64_t k = 0; k < P; k++) s += tg[k];
  const double m = s / P;
  double v = 0.0;
  for (int64_t k = 0; k < P; k++) v += (tg[k] - m) * (tg[k] - m);
  const double rs = 1.0 / std::sqrt(v / (P - 1) + 1e-6);
  for (int64_t k = 0; k < P; k++) t[k] = (float)((tg[k] - m) * rs);
}

// per-patch weights: mask / sum(mask), or 1 / (B L) when nothing is masked
double weight_denominator(const float* M, int64_t BL, bool* all_patches) {
  double s = 0.0;
  for (int64_t i = 0; i < BL; i++) s += M[i];
  *all_patches = (s == 0.0);
  return *all_patches ? (double)BL : s;
}

}  // namespace

void masked_mse_forward(const TensorView& pred, const TensorView& target, const TensorView& mask, bool norm_pix,
                        TensorView& loss) {
  const int64_t BL = mask.numel(), P = pred.last();
  const float* M = mask.f32();
  bool all;
  const double denom = weight_denominator(M, BL, &all);
  // per-patch errors in parallel, then summed in a fixed order so the loss does not depend on thread timing
  std::vector<double> per_patch(BL, 0.0);
#pragma omp parallel
  {
    std::vector<float> t(P), tb(P), pb(P);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < BL; i++) {
      const double w = all ? 1.0 : M[i];
      if (w == 0.0) continue;
      target_patch(in_row(target, i * P, P, tb.data()), P, norm_pix, t.data());
      const float* pr = in_row(pred, i * P, P, pb.data());
      double e = 0.0;
      for (int64_t k = 0; k < P; k++) e += (double)(pr[k] - t[k]) * (pr[k] - t[k]);
      per_patch[i] = w * e / P;
    }
  }
  double total = 0.0;
  for (int64_t i = 0; i < BL; i++) total += per_patch[i];
  loss.f32()[0] = (float)(total / denom);
}

void masked_mse_backward(const TensorView& pred, const TensorView& target, const TensorView& mask, bool norm_pix,
                         const TensorView& dloss, TensorView& dpred) {
  const int64_t BL = mask.numel(), P = pred.last();
  const float* M = mask.f32();
  bool all;
  const double denom = weight_denominator(M, BL, &all);
  const double g = dloss.f32()[0];
#pragma omp parallel
  {
    std::vector<float> t(P), tb(P), pb(P), db(P);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < BL; i++) {
      const float c = (float)(g * (all ? 1.0 : M[i]) / denom * 2.0 / P);
      float* dp = out_row(dpred, i * P, db.data());
      if (c == 0.0f) {
        for (int64_t k = 0; k < P; k++) dp[k] = 0.0f;
      } else {
        target_patch(in_row(target, i * P, P, tb.data()), P, norm_pix, t.data());
        const float* pr = in_row(pred, i * P, P, pb.data());
        for (int64_t k = 0; k < P; k++) dp[k] = c * (pr[k] - t[k]);
      }
      out_row_done(dpred, i * P, P, dp);
    }
  }
}

namespace {

// q (the smoothed target row) into q, returns its sum
inline float target_row(const TensorView& target, int64_t b, int64_t C, float smoothing, float* q) {
  if (target.dtype == DType::I32) {
    const int32_t y = target.i32()[b];
    if (y < 0 || y >= C)
      throw Error("label " + std::to_string(y) + " of row " + std::to_string(b) +
                  " is outside [0, " + std::to_string(C) + ")");
    for (int64_t c = 0; c < C; c++) q[c] = smoothing / C + (c == y ? 1.0f - smoothing : 0.0f);
  } else {
    const float* t = in_row(target, b * C, C, q);
    for (int64_t c = 0; c < C; c++) q[c] = (1.0f - smoothing) * t[c] + smoothing / C;
  }
  float s = 0.0f;
  for (int64_t c = 0; c < C; c++) s += q[c];
  return s;
}

inline float logsumexp(const float* z, int64_t C) {
  float m = -INFINITY;
  for (int64_t c = 0; c < C; c++) m = z[c] > m ? z[c] : m;
  double s = 0.0;
  for (int64_t c = 0; c < C; c++) s += std::exp((double)(z[c] - m));
  return m + (float)std::log(s);
}

}  // namespace

void cross_entropy_forward(const TensorView& logits, const TensorView& target, float smoothing, TensorView& loss) {
  const int64_t B = logits.dim(0), C = logits.dim(1);
  std::vector<float> q(C), zb(C);
  double total = 0.0;
  for (int64_t b = 0; b < B; b++) {
    const float* z = in_row(logits, b * C, C, zb.data());
    target_row(target, b, C, smoothing, q.data());
    const float lse = logsumexp(z, C);
    for (int64_t c = 0; c < C; c++) total += (double)q[c] * (lse - z[c]);
  }
  loss.f32()[0] = (float)(total / B);
}

void cross_entropy_backward(const TensorView& logits, const TensorView& target, float smoothing,
                            const TensorView& dloss, TensorView& dlogits) {
  const int64_t B = logits.dim(0), C = logits.dim(1);
  const float g = dloss.f32()[0] / B;
  std::vector<float> q(C), zb(C), db(C);
  for (int64_t b = 0; b < B; b++) {
    const float* z = in_row(logits, b * C, C, zb.data());
    float* dz = out_row(dlogits, b * C, db.data());
    const float qs = target_row(target, b, C, smoothing, q.data());
    const float lse = logsumexp(z, C);
    for (int64_t c = 0; c < C; c++) dz[c] = g * (std::exp(z[c] - lse) * qs - q[c]);
    out_row_done(dlogits, b * C, C, dz);
  }
}

}  // namespace mae::cpu
