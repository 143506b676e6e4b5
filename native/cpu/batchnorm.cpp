// BatchNorm1d without affine over the batch axis (the linear-probing head's BatchNorm):
//   x [B, F]. training: mean, var (biased) over B; y = (x - mean) * rstd, rstd = 1 / sqrt(var + eps);
//   running_mean/var <- (1 - momentum) * running + momentum * (mean, var * B / (B - 1)), as PyTorch.
//   eval: y = (x - running_mean) / sqrt(running_var + eps).
//   backward, training: dx = rstd * (dy - mean_B(dy) - y * mean_B(dy * y)); eval: dx = dy * rstd.
// x, y, dy and dx may be float32 or bfloat16 (widened to a float32 copy; the head's features are small).
#include <cmath>
#include <vector>

#include "cpu.h"

namespace mae::cpu {

void batchnorm_forward(const TensorView& x, TensorView& running_mean, TensorView& running_var, bool training,
                       float momentum, float eps, TensorView& y, TensorView& rstd) {
  const int64_t B = x.dim(0), F = x.dim(1);
  std::vector<float> xb(x.dtype == DType::F32 ? 0 : B * F), yb(y.dtype == DType::F32 ? 0 : B * F);
  const float* X = in_row(x, 0, B * F, xb.data());
  float *Y = out_row(y, 0, yb.data()), *RS = rstd.f32(), *RM = running_mean.f32(), *RV = running_var.f32();
  std::vector<double> mean(F, 0.0), var(F, 0.0);
  if (training) {
    for (int64_t b = 0; b < B; b++)
      for (int64_t f = 0; f < F; f++) mean[f] += X[b * F + f];
    for (int64_t f = 0; f < F; f++) mean[f] /= B;
    for (int64_t b = 0; b < B; b++)
      for (int64_t f = 0; f < F; f++) var[f] += (X[b * F + f] - mean[f]) * (X[b * F + f] - mean[f]);
    for (int64_t f = 0; f < F; f++) {
      var[f] /= B;
      const double unbiased = B > 1 ? var[f] * B / (B - 1) : var[f];
      RM[f] = (float)((1.0 - momentum) * RM[f] + momentum * mean[f]);
      RV[f] = (float)((1.0 - momentum) * RV[f] + momentum * unbiased);
    }
  } else {
    for (int64_t f = 0; f < F; f++) {
      mean[f] = RM[f];
      var[f] = RV[f];
    }
  }
  for (int64_t f = 0; f < F; f++) RS[f] = (float)(1.0 / std::sqrt(var[f] + eps));
#pragma omp parallel for schedule(static) if (B * F >= kParallelGrain)
  for (int64_t b = 0; b < B; b++)
    for (int64_t f = 0; f < F; f++) Y[b * F + f] = (float)((X[b * F + f] - mean[f]) * RS[f]);
  out_row_done(y, 0, B * F, Y);
}

void batchnorm_backward(const TensorView& dy, const TensorView& y, const TensorView& rstd, bool training,
                        TensorView& dx) {
  const int64_t B = dy.dim(0), F = dy.dim(1);
  std::vector<float> gb(dy.dtype == DType::F32 ? 0 : B * F), yb(y.dtype == DType::F32 ? 0 : B * F),
      dxb(dx.dtype == DType::F32 ? 0 : B * F);
  const float *DY = in_row(dy, 0, B * F, gb.data()), *Y = in_row(y, 0, B * F, yb.data()), *RS = rstd.f32();
  float* DX = out_row(dx, 0, dxb.data());
  std::vector<double> mdy(F, 0.0), mdyy(F, 0.0);
  if (training) {
    for (int64_t b = 0; b < B; b++)
      for (int64_t f = 0; f < F; f++) {
        mdy[f] += DY[b * F + f];
        mdyy[f] += DY[b * F + f] * Y[b * F + f];
      }
    for (int64_t f = 0; f < F; f++) {
      mdy[f] /= B;
      mdyy[f] /= B;
    }
  }
#pragma omp parallel for schedule(static) if (B * F >= kParallelGrain)
  for (int64_t b = 0; b < B; b++)
    for (int64_t f = 0; f < F; f++) {
      const int64_t i = b * F + f;
      DX[i] = (float)(RS[f] * (DY[i] - mdy[f] - Y[i] * mdyy[f]));
    }
  out_row_done(dx, 0, B * F, DX);
}

}  // namespace mae::cpu
