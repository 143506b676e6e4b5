// GELU in its exact erf form (PyTorch nn.GELU(), approximate='none'), elementwise on any shape:
//   y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),  dy/dx = Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi)
// bias_gelu: the same on h = x + b, x [rows, N], b [N] (the MLP's first product without its bias); its backward
// also gives db = column sums of dx.
// Phi is computed branch-free so that the loops vectorise (std::erf is a scalar libm call, about 25 ns an element):
//   Phi(x) = 0.5 erfc(z) for x < 0 and 1 - 0.5 erfc(z) for x >= 0, z = |x| / sqrt 2, with erfc from the Chebyshev
//   fit of Numerical Recipes (erfcc: fractional error below 1.2e-7 for every z >= 0). Working from erfc keeps the
//   relative accuracy of the negative tail, where 1 + erf(x) cancels (the std::erf form gives exactly 0 below
//   x = -5.54). Measured against the double-precision formula on a 1e-5 grid: forward relative error below 8.4e-7 on
//   |x| < 4, 2.1e-6 on |x| < 8, 7.5e-6 on |x| < 14 (y ~ 1e-30 there); derivative absolute error below 1.8e-7.
#include <cmath>

#include "cpu.h"
#include "vexp.h"

namespace mae::cpu {

namespace {

// the standard normal CDF
inline float normal_cdf(float x) {
  const float z = std::fabs(x) * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  // 0.5 erfc(z) = 0.5 t exp(-z^2 + p(t)), -z^2 = -x^2 / 2
  const float half_erfc = 0.5f * t * exp_nonpositive(p - 0.5f * x * x);
  return x < 0.0f ? half_erfc : 1.0f - half_erfc;
}

// dy/dx of gelu at v
inline float gelu_grad(float v) {
  const float pdf = 0.39894228040143268f * exp_nonpositive(-0.5f * v * v);
  return normal_cdf(v) + v * pdf;
}

}  // namespace

void gelu_forward(const TensorView& x, TensorView& y) {
  const int64_t n = x.numel();
  const float* X = x.f32();
  float* Y = y.f32();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; i++) Y[i] = X[i] * normal_cdf(X[i]);
}

void gelu_backward(const TensorView& x, const TensorView& dy, TensorView& dx) {
  const int64_t n = x.numel();
  const float *X = x.f32(), *DY = dy.f32();
  float* DX = dx.f32();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; i++) DX[i] = DY[i] * gelu_grad(X[i]);
}

void bias_gelu_forward(const TensorView& x, const TensorView& b, TensorView& y) {
  const int64_t R = x.rows(), N = x.last();
  const float *X = x.f32(), *Bv = b.f32();
  float* Y = y.f32();
#pragma omp parallel for schedule(static) if (R * N >= kParallelGrain)
  for (int64_t r = 0; r < R; r++) {
#pragma omp simd
    for (int64_t j = 0; j < N; j++) {
      const float h = X[r * N + j] + Bv[j];
      Y[r * N + j] = h * normal_cdf(h);
    }
  }
}

void bias_gelu_backward(const TensorView& x, const TensorView& b, const TensorView& dy, TensorView& dx,
                        TensorView* db) {
  const int64_t R = x.rows(), N = x.last();
  const float *X = x.f32(), *Bv = b.f32(), *DY = dy.f32();
  float* DX = dx.f32();
#pragma omp parallel for schedule(static) if (R * N >= kParallelGrain)
  for (int64_t r = 0; r < R; r++) {
#pragma omp simd
    for (int64_t j = 0; j < N; j++) DX[r * N + j] = DY[r * N + j] * gelu_grad(X[r * N + j] + Bv[j]);
  }
  if (db) sum_to(dx, *db);
}

}  // namespace mae::cpu
