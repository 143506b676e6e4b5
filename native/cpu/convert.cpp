// float32 <-> bfloat16 conversions of contiguous arrays, the only way CPU kernels read and write bfloat16.
//   to_f32:  exact (a bfloat16 is the high half of a float32)
//   to_bf16: round to nearest even; NaN stays a quiet NaN; denormal inputs become zero of the same sign.
// to_bf16 runs on vcvtneps2bf16 (AVX512-BF16) when the CPU has it, chosen at run time, so a binary built for any
// x86-64 CPU never executes it elsewhere; otherwise integer arithmetic that the compiler vectorises. The instruction
// treats denormal inputs as zero, and the fallback does the same, so both give the same bits on every CPU.
// to_bf16_stream: the same bits, with the whole 64-byte lines of dst written past the caches where the instruction
// runs (for an array that is not read again soon, such as AdamW's bf16 weights: no read of each line before it is
// written); the caller fences (_mm_sfence) before another thread reads them.
// MAE_CPU_BF16=fallback in the environment (read once) forces the fallback (to test it on a CPU with the instruction).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "avx512.h"
#include "cpu.h"

namespace mae::cpu {

namespace {

void to_bf16_fallback(const float* src, uint16_t* dst, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, &src[i], 4);
    const uint32_t mag = u & 0x7fffffffu;
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t r = mag > 0x7f800000u ? ((u >> 16) | 0x40u)             // NaN: quiet
                       : mag < 0x00800000u ? ((u >> 16) & 0x8000u)        // zero or denormal: signed zero
                                          : rounded;
    dst[i] = (uint16_t)r;
  }
}

#if defined(__x86_64__)
// a few values, 16 at a time with masks
MAE_AVX512_BF16 void to_bf16_short(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail16(i, n);
    store_bf16x16(dst + i, _mm512_maskz_loadu_ps(k, src + i), k);
  }
}

// stream: the 64-byte lines of dst are written past the caches (the caller fences)
template <bool stream>
MAE_AVX512_BF16 void to_bf16_avx512(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  if (stream) {  // up to dst's first 64-byte boundary as usual
    i = std::min<int64_t>(n, (64 - reinterpret_cast<uintptr_t>(dst) % 64) % 64 / 2);
    to_bf16_short(src, dst, i);
  }
  for (; i + 32 <= n; i += 32) {
    const __m512i r = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    if (stream)
      _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), r);
    else
      _mm512_storeu_si512(reinterpret_cast<void*>(dst + i), r);
  }
  to_bf16_short(src + i, dst + i, n - i);
}
#endif

const bool use_native = has_avx512_bf16_unless("MAE_CPU_BF16", "fallback");

}  // namespace

bool has_avx512_bf16_unless(const char* var, const char* value) {
  const char* env = std::getenv(var);
  if (env && std::strcmp(env, value) == 0) return false;
#if defined(__x86_64__)
  if (avx512_turned_off()) return false;
  // every feature of MAE_AVX512_BF16 (a CPU with AVX512-BF16 has the others, but a hypervisor may hide some), asked
  // here and not through use_avx512, which may not be initialised yet either
  __builtin_cpu_init();  // callers initialise namespace-scope constants, possibly before libgcc's own initialiser
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

bool bf16_convert_native() { return use_native; }

const char* avx512_kernels() {
#if defined(__x86_64__)
  if (!cpu_has_avx512) return "none: the CPU lacks AVX-512 F, BW, VL or DQ";
  return avx512_off ? "off (MAE_CPU_AVX512=off)" : "on";
#else
  return "none: not an x86-64 CPU";
#endif
}

void to_bf16(const float* src, uint16_t* dst, int64_t n) {
#if defined(__x86_64__)
  if (use_native) return to_bf16_avx512<false>(src, dst, n);
#endif
  to_bf16_fallback(src, dst, n);
}

void to_bf16_stream(const float* src, uint16_t* dst, int64_t n) {
#if defined(__x86_64__)
  if (use_native) return to_bf16_avx512<true>(src, dst, n);
#endif
  to_bf16_fallback(src, dst, n);
}

void to_f32(const uint16_t* src, float* dst, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) dst[i] = from_bf16(src[i]);
}

void convert(const TensorView& x, TensorView& y) {
  const int64_t n = x.numel(), chunk = 4096;
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t c = 0; c < n; c += chunk) {
    const int64_t m = n - c < chunk ? n - c : chunk;
    if (x.dtype == y.dtype)
      std::memcpy(static_cast<char*>(y.data) + c * dtype_size(y.dtype),
                  static_cast<const char*>(x.data) + c * dtype_size(x.dtype), m * dtype_size(x.dtype));
    else if (y.dtype == DType::BF16)
      to_bf16(x.f32() + c, bf16(y) + c, m);
    else
      to_f32(bf16(x) + c, y.f32() + c, m);
  }
}

}  // namespace mae::cpu
