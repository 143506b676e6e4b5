// exp for the vectorised loops of the CPU kernels (gelu.cpp, attention.cpp). std::exp / std::erf are scalar libm
// calls that stop a loop from vectorising; this one is branch-free arithmetic, so `#pragma omp simd` loops around it
// compile to AVX2 / AVX-512 code (its 16-lane intrinsics twin, exp16, is in avx512.h).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace mae::cpu {

// exp(a) for a <= ~0 (softmax and Gaussian arguments; small positive rounding excess is fine up to a = 88):
// n = round(a / ln 2), r = a - n ln 2 (ln 2 in two parts), exp(r) by the degree-6 Cephes expf polynomial, times 2^n
// through the exponent bits; exactly 0 below -87.3, where float underflows. Relative error below 1e-7 (measured on
// [-87, 0] against double exp). A NaN argument gives NaN.
inline float exp_nonpositive(float a) {
  const bool under = a < -87.3f;
  a = under ? -87.3f : a;
  const float n = std::nearbyint(a * 1.44269504088896341f);
  const float r = (a - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // a NaN gives n = NaN, which may not be converted to an integer: any n in range will do, p is NaN already
  const float n_ok = n > -127.0f && n < 128.0f ? n : 0.0f;
  const uint32_t bits = (uint32_t)((int32_t)n_ok + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return under ? 0.0f : p * scale;
}

}  // namespace mae::cpu
