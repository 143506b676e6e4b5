// exp for the vectorised loops of the CPU kernels (gelu.cpp, attention.cpp). std::exp / std::erf are scalar libm
// calls that stop a loop from vectorising; this one is branch-free arithmetic, so `#pragma omp simd` loops around it
// compile to AVX2 / AVX-512 code. exp16: the same on 16 lanes of AVX-512, for the kernels that pick AVX-512 at run
// time (a binary built for AVX2 CPUs runs it only where the CPU has it).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() as the unused source of their masked builtins, which its
// -Wmaybe-uninitialized reports wherever they are inlined (a false positive: every lane is written)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#define MAE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#endif

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

#if defined(__x86_64__)
// exp_nonpositive on 16 lanes: the same range reduction and polynomial, 2^n applied by vscalefps (below -87.3 it
// gives 2^-126 p(r) instead of 0, far below what any caller keeps)
MAE_AVX512 inline __m512 exp16(__m512 a) {
  a = _mm512_max_ps(_mm512_set1_ps(-87.3f), a);  // a NaN stays NaN (the second operand is returned)
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), a);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}
#endif

}  // namespace mae::cpu
