// GELU in its exact erf form (PyTorch nn.GELU(), approximate='none'), elementwise on any shape:
//   y = 0.5 x (1 + erf(x / sqrt 2)),  dy/dx = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)
#include <cmath>

#include "cpu.h"

namespace mae::cpu {

void gelu_forward(const TensorView& x, TensorView& y) {
  const int64_t n = x.numel();
  const float* X = x.f32();
  float* Y = y.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) Y[i] = 0.5f * X[i] * (1.0f + std::erf(X[i] * 0.70710678118654752f));
}

void gelu_backward(const TensorView& x, const TensorView& dy, TensorView& dx) {
  const int64_t n = x.numel();
  const float *X = x.f32(), *DY = dy.f32();
  float* DX = dx.f32();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float v = X[i];
    const float cdf = 0.5f * (1.0f + std::erf(v * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * std::exp(-0.5f * v * v);
    DX[i] = DY[i] * (cdf + v * pdf);
  }
}

}  // namespace mae::cpu
