// GELU in its exact erf form (PyTorch nn.GELU(), approximate='none'), elementwise on any shape:
//   y = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)),  dy/dx = Phi(x) + x exp(-x^2 / 2) / sqrt(2 pi)
// bias_gelu: the same on h = x + b, x [rows, N], b [N] (the MLP's first product without its bias); its backward
// also gives db = column sums of dx. x, dy, y and dx may each be float32 or bfloat16 (float32 arithmetic); b, db are
// float32.
// Phi is computed branch-free so that the loops vectorise (std::erf is a scalar libm call, about 25 ns an element):
//   Phi(x) = 0.5 erfc(z) for x < 0 and 1 - 0.5 erfc(z) for x >= 0, z = |x| / sqrt 2, with erfc from the Chebyshev
//   fit of Numerical Recipes (erfcc: fractional error below 1.2e-7 for every z >= 0). Working from erfc keeps the
//   relative accuracy of the negative tail, where 1 + erf(x) cancels (the std::erf form gives exactly 0 below
//   x = -5.54). Measured against the double-precision formula on a 1e-5 grid: forward relative error below 8.4e-7 on
//   |x| < 4, 2.1e-6 on |x| < 8, 7.5e-6 on |x| < 14 (y ~ 1e-30 there); derivative absolute error below 1.8e-7.
// bias_gelu with a bfloat16 result (y, or dx backward) runs in AVX-512 intrinsics where the CPU has AVX-512 (chosen at
// run time, so the AVX2 build of the prebuilt binary uses it too; with AVX512-BF16 rounding in registers), with erfc(z)
// = t q(t) exp(-z^2) and q a polynomial (normal_cdf16 below), so that the derivative's exp(-x^2 / 2) is the one exp of
// the element, taken as 2^(-x^2 log2(e) / 2) (exp2_16: fewer operations than a two-part ln 2 reduction; 10% off these
// kernels); 1 / (1 + z / 2) from vrcp14ps and one Newton step. Against the long-double formula on a 1e-4 grid: forward
// relative error below 8.1e-7 on |x| < 4, 2.8e-6 on |x| < 8, 7.5e-6 on |x| < 16; derivative 2.6e-6, 2.7e-6, 7.5e-6
// (where |x + 0.75| > 0.05, away from its zero), absolute 2e-7. float32 results keep the portable loop (their parity
// with the official code); for bfloat16 the difference is far below the rounding that follows (half a unit: 2e-3).
#include <algorithm>
#include <cmath>
#include <vector>

#include "avx512.h"
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

#if defined(__x86_64__)
// normal_cdf on 16 lanes, with e = exp(-x^2 / 2), which the derivative needs too. Here 0.5 erfc(z) = 0.5 t q(t) e:
// q(t) = erfc(z) exp(z^2) / t is smooth and between 0.28 and 1 (t = 1 / (1 + z / 2) as above), so a polynomial
// fits it to a small relative error: a least-squares fit of degree 8 on t in [0.15, 1] (|x| up to 16; e leaves
// float32's range at 13.2), relative error below 2.1e-7 evaluated in float32 on a 1e-4 grid of t. One exp an
// element, forward and backward, where the scalar formula's derivative takes two.
// Past |x| = 13.2, where exp(-x^2 / 2) leaves float32's range, e is 0 (exp2_16), so Phi is exactly 0 or 1 and the
// derivative x e exactly 0; z is capped at 10 (t in the fit's range) so that t stays finite for any x. A NaN x gives
// NaN results.
MAE_AVX512 inline __m512 normal_cdf16(__m512 x, __m512& e) {
  const __m512 z = _mm512_min_ps(_mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f)),
                                 _mm512_set1_ps(10.0f));
  const __m512 d = _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f));
  __m512 t = _mm512_rcp14_ps(d);
  t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
  const __m512 q = horner16(t, {0.282084763f, 0.282404214f, 0.2428931f, 0.203521401f, -0.02859951f, 0.280933619f,
                                 -0.48970592f, 0.285785288f, -0.0593170114f});
  e = exp2_16(_mm512_mul_ps(_mm512_mul_ps(x, x), _mm512_set1_ps(-0.72134752044448170f)));
  const __m512 half_erfc = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), t), q), e);
  const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(1.0f), half_erfc), half_erfc);
}

// 16 values of t (float32 or bfloat16) from element `at`: the lanes of k, the others 0
MAE_AVX512 inline __m512 load16(const TensorView& t, int64_t at, __mmask16 k) {
  return t.dtype == DType::BF16 ? load_bf16x16(bf16(t) + at, k) : _mm512_maskz_loadu_ps(k, t.f32() + at);
}

// Y[j] = gelu(x[at + j] + Bv[j]) for j < N
MAE_AVX512 inline __m512 bias_gelu16(const TensorView& x, int64_t at, const float* Bv, int64_t j, __mmask16 k) {
  const __m512 h = _mm512_add_ps(load16(x, at + j, k), _mm512_maskz_loadu_ps(k, Bv + j));
  __m512 e;
  return _mm512_mul_ps(h, normal_cdf16(h, e));
}
MAE_AVX512 void bias_gelu_row16(const TensorView& x, int64_t at, const float* Bv, float* Y, int64_t N) {
  for (int64_t j = 0; j < N; j += 16) {
    const __mmask16 k = tail16(j, N);
    _mm512_mask_storeu_ps(Y + j, k, bias_gelu16(x, at, Bv, j, k));
  }
}

// DX[j] = dy[at + j] gelu'(x[at + j] + Bv[j]) for j < N
MAE_AVX512 inline __m512 bias_gelu_grad16(const TensorView& x, const TensorView& dy, int64_t at, const float* Bv,
                                          int64_t j, __mmask16 k) {
  const __m512 h = _mm512_add_ps(load16(x, at + j, k), _mm512_maskz_loadu_ps(k, Bv + j));
  __m512 e;
  const __m512 cdf = normal_cdf16(h, e);
  const __m512 grad = _mm512_fmadd_ps(_mm512_mul_ps(h, _mm512_set1_ps(0.39894228040143268f)), e, cdf);
  return _mm512_mul_ps(load16(dy, at + j, k), grad);
}
MAE_AVX512 void bias_gelu_grad_row16(const TensorView& x, const TensorView& dy, int64_t at, const float* Bv, float* DX,
                                     int64_t N) {
  for (int64_t j = 0; j < N; j += 16) {
    const __mmask16 k = tail16(j, N);
    _mm512_mask_storeu_ps(DX + j, k, bias_gelu_grad16(x, dy, at, Bv, j, k));
  }
}

// the two rows above with bfloat16 results rounded in registers (vcvtneps2bf16: the bits of to_bf16), where the CPU
// has AVX512-BF16: no float32 row to write and convert after (a few % of these kernels, most in backward)
MAE_AVX512_BF16 void bias_gelu_row16_bf16(const TensorView& x, int64_t at, const float* Bv, uint16_t* Y, int64_t N) {
  for (int64_t j = 0; j < N; j += 16) {
    const __mmask16 k = tail16(j, N);
    store_bf16x16(Y + j, bias_gelu16(x, at, Bv, j, k), k);
  }
}
MAE_AVX512_BF16 void bias_gelu_grad_row16_bf16(const TensorView& x, const TensorView& dy, int64_t at, const float* Bv,
                                               uint16_t* DX, int64_t N) {
  for (int64_t j = 0; j < N; j += 16) {
    const __mmask16 k = tail16(j, N);
    store_bf16x16(DX + j, bias_gelu_grad16(x, dy, at, Bv, j, k), k);
  }
}
#endif

}  // namespace

void gelu_forward(const TensorView& x, TensorView& y) {
  map_elements(x, y, [](float v) { return v * normal_cdf(v); });
}

void gelu_backward(const TensorView& x, const TensorView& dy, TensorView& dx) {
  map_elements(x, dy, dx, [](float v, float g) { return g * gelu_grad(v); });
}

void bias_gelu_forward(const TensorView& x, const TensorView& b, TensorView& y) {
  const int64_t R = x.rows(), N = x.last();
  const float* Bv = b.f32();
#pragma omp parallel if (R * N >= kParallelGrain)
  {
    std::vector<float> xb(N), yb(N);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
#if defined(__x86_64__)
      if (use_avx512 && y.dtype == DType::BF16 && bf16_convert_native()) {
        bias_gelu_row16_bf16(x, r * N, Bv, bf16(y) + r * N, N);
        continue;
      }
#endif
      float* Y = out_row(y, r * N, yb.data());
#if defined(__x86_64__)
      if (use_avx512 && y.dtype == DType::BF16) {
        bias_gelu_row16(x, r * N, Bv, Y, N);
        out_row_done(y, r * N, N, Y);
        continue;
      }
#endif
      const float* X = in_row(x, r * N, N, xb.data());
#pragma omp simd
      for (int64_t j = 0; j < N; j++) {
        const float h = X[j] + Bv[j];
        Y[j] = h * normal_cdf(h);
      }
      out_row_done(y, r * N, N, Y);
    }
  }
}

void bias_gelu_backward(const TensorView& x, const TensorView& b, const TensorView& dy, TensorView& dx,
                        TensorView* db) {
  const int64_t R = x.rows(), N = x.last();
  const float* Bv = b.f32();
#pragma omp parallel if (R * N >= kParallelGrain)
  {
    std::vector<float> xb(N), gb(N), dxb(N);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
#if defined(__x86_64__)
      if (use_avx512 && dx.dtype == DType::BF16 && bf16_convert_native()) {
        bias_gelu_grad_row16_bf16(x, dy, r * N, Bv, bf16(dx) + r * N, N);
        continue;
      }
#endif
      float* DX = out_row(dx, r * N, dxb.data());
#if defined(__x86_64__)
      if (use_avx512 && dx.dtype == DType::BF16) {
        bias_gelu_grad_row16(x, dy, r * N, Bv, DX, N);
        out_row_done(dx, r * N, N, DX);
        continue;
      }
#endif
      const float *X = in_row(x, r * N, N, xb.data()), *DY = in_row(dy, r * N, N, gb.data());
#pragma omp simd
      for (int64_t j = 0; j < N; j++) DX[j] = DY[j] * gelu_grad(X[j] + Bv[j]);
      out_row_done(dx, r * N, N, DX);
    }
  }
  if (db) sum_to(dx, *db);
}

}  // namespace mae::cpu
