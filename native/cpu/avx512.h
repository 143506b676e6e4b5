// AVX-512 pieces for the kernels that choose AVX-512 at run time (gelu.cpp, layernorm.cpp, attention.cpp), so that
// the x86-64-v3 (AVX2) build of the prebuilt binary runs them too where the CPU has them: a function that uses them
// carries MAE_AVX512 (or a wider target) and is called only after a check of the CPU.
//   exp2_16: 2^a on 16 lanes (zero outside a mask), the exp of softmaxes in base 2 and of GELU's exp(-x^2 / 2);
//   bf16 loads and stores of 16 values; the mask of a row's tail; pairs of bf16 rows as 32-bit words; a 16 x 16
//   transpose of 32-bit lanes.
// bf16 stores use vcvtneps2bf16 (AVX512-BF16): the same bits as to_bf16, whose fallback they are chosen against.
// MAE_CPU_AVX512=off in the environment (read once, at load) turns the kernels' own AVX-512 paths off (use_avx512,
// has_avx512_bf16_unless): the paths a CPU without AVX-512 runs, tested on one that has it. A source build
// (-march=native) may still hold AVX-512 code of the compiler's in the other paths; the prebuilt x86-64-v3 binary
// does not (npm run test:avx2 runs that one).
#pragma once
#if defined(__x86_64__)
#include <cstdint>
#include <cstdlib>
#include <strings.h>

// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() as the unused source of their masked builtins, which its
// -Wmaybe-uninitialized reports wherever they are inlined (a false positive: every lane is written)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define MAE_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define MAE_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))

namespace mae::cpu {
// whether MAE_CPU_AVX512 is set to off (in any case)
inline bool avx512_turned_off() {
  const char* env = std::getenv("MAE_CPU_AVX512");
  return env && strcasecmp(env, "off") == 0;
}

// whether the CPU has every feature MAE_AVX512 compiles for (the bf16 loads are AVX512BW / VL instructions)
inline const bool cpu_has_avx512 = [] {
  __builtin_cpu_init();  // this constant may be initialised before libgcc's own initialiser runs
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}();
inline const bool avx512_off = avx512_turned_off();
// whether the kernels take their AVX-512 paths
inline const bool use_avx512 = cpu_has_avx512 && !avx512_off;

// c[0] + c[1] r + ... + c[N - 1] r^(N - 1) on 16 lanes, by Horner's rule (one FMA a coefficient)
template <int N>
MAE_AVX512 inline __m512 horner16(__m512 r, const float (&c)[N]) {
  __m512 p = _mm512_set1_ps(c[N - 1]);
  for (int i = N - 2; i >= 0; i--) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c[i]));
  return p;
}

// 2^a on 16 lanes (a <= ~0: softmax arguments in base 2, GELU's -x^2 log2(e) / 2): n = round(a), r = a - n in
// [-1/2, 1/2] (exact), 2^r by a degree-6 polynomial (coefficients fitted for relative error on [-1/2, 1/2]: below
// 1 ulp of float32 with fused multiply-adds), 2^n applied by vscalefps; exactly 0 below -126 (a caller may multiply
// the result by a large value: GELU's derivative takes x exp(-x^2 / 2)) and in the lanes outside `keep`; a NaN stays
// NaN
MAE_AVX512 inline __m512 exp2_16(__m512 a, __mmask16 keep = 0xffff) {
  keep &= _mm512_cmp_ps_mask(a, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);
  const __m512 n = _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(a, n);
  const __m512 p = horner16(r, {1.0f, 6.9314718246e-1f, 2.4022647738e-1f, 5.5503323674e-2f, 9.6184369177e-3f,
                                 1.3398875017e-3f, 1.5353361960e-4f});
  return _mm512_maskz_scalef_ps(keep, p, n);
}

// the lanes of elements j0 .. j0 + 15 that are below n
inline __mmask16 tail16(int64_t j0, int64_t n) {
  return n - j0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j0)) - 1);
}

// pairs (a[c], b[c]) of two rows of 16 bfloat16
MAE_AVX512 inline __m512i pairs16(__m256i a, __m256i b) {
  return _mm512_or_si512(_mm512_cvtepu16_epi32(a), _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
}

// r[0..15] (rows of 16 32-bit lanes) becomes its transpose: lane c of row i moves to lane i of row c
MAE_AVX512 inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // then r[4i + k] holds, in its 128-bit lane L, column 4L + k of rows 4i .. 4i + 3
  for (int i = 0; i < 4; i++) {
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  // column 4L + k: lane L of r[k], r[4 + k], r[8 + k], r[12 + k]
  for (int k = 0; k < 4; k++) {
    const __m512i a = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x88), b = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xdd);
    const __m512i c = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x88);
    const __m512i d = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xdd);
    t[k] = _mm512_shuffle_i32x4(a, c, 0x88);
    t[4 + k] = _mm512_shuffle_i32x4(b, d, 0x88);
    t[8 + k] = _mm512_shuffle_i32x4(a, c, 0xdd);
    t[12 + k] = _mm512_shuffle_i32x4(b, d, 0xdd);
  }
  for (int i = 0; i < 16; i++) r[i] = t[i];
}

// 16 bfloat16 widened to float32 (exact: a bfloat16 is the high half of a float32)
MAE_AVX512 inline __m512 widen_bf16x16(__m256i x) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16));
}
// the same from memory: the lanes of k, the others 0
MAE_AVX512 inline __m512 load_bf16x16(const uint16_t* p, __mmask16 k = 0xffff) {
  return widen_bf16x16(_mm256_maskz_loadu_epi16(k, p));
}
// 16 float32 as bfloat16 (round to nearest even, as to_bf16)
MAE_AVX512_BF16 inline __m256i bf16x16(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }
MAE_AVX512_BF16 inline void store_bf16x16(uint16_t* p, __m512 x, __mmask16 k = 0xffff) {
  _mm256_mask_storeu_epi16(p, k, bf16x16(x));
}

}  // namespace mae::cpu
#endif
