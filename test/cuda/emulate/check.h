// A small checker for the host emulation of CUDA kernel bodies (mae_cuda_emulate): each test runs a kernel's body
// for every lane of a grid-stride launch on the host and compares the result with a plain loop of the definition.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../../native/cuda/common.cuh"

namespace emu {

inline int g_failed = 0;     // checks that failed in the current test
inline int g_tests_failed = 0;
inline int g_tests = 0;

// bitwise equality of two floats (NaN equals NaN), reported with the element index on failure (the first 5)
inline void same(float got, float want, const std::string& what, size_t i) {
  uint32_t a, b;
  std::memcpy(&a, &got, 4);
  std::memcpy(&b, &want, 4);
  if (a == b || (got != got && want != want)) return;
  if (++g_failed <= 5) std::printf("  %s[%zu]: got %.9g, want %.9g\n", what.c_str(), i, got, want);
}

inline void expect(bool ok, const std::string& what) {
  if (!ok && ++g_failed <= 5) std::printf("  %s\n", what.c_str());
}

// runs one named test and prints "ok <name>" or "FAIL <name>"
template <typename F>
void test(const std::string& name, F&& f) {
  g_failed = 0;
  g_tests++;
  f();
  if (g_failed) g_tests_failed++;
  std::printf("%s %s\n", g_failed ? "FAIL" : "ok", name.c_str());
}

// a host buffer of n elements of T, 64-byte aligned (as the vector loads require), filled by a fixed pattern
template <typename T>
struct Buf {
  T* p;
  size_t n;
  explicit Buf(size_t n_, uint32_t seed = 1) : n(n_) {
    p = static_cast<T*>(std::aligned_alloc(64, ((n * sizeof(T) + 63) / 64) * 64 + 64));
    uint32_t s = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
      s = s * 1664525u + 1013904223u;
      mae::cuda::st(p, (uint32_t)i, ((float)(s >> 8) / 16777216.0f - 0.5f) * 4.0f);
    }
  }
  ~Buf() { std::free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  float operator[](size_t i) const { return mae::cuda::ld(p, (uint32_t)i); }
  void fill(float v) {
    for (size_t i = 0; i < n; i++) mae::cuda::st(p, (uint32_t)i, v);
  }
};

// every lane of a launch with `stride` threads
template <typename F>
void lanes(uint32_t stride, F&& body) {
  for (uint32_t t = 0; t < stride; t++) body(mae::cuda::Lanes{t, stride});
}

inline const char* tname(float) { return "f32"; }
inline const char* tname(mae::cuda::bf16_t) { return "bf16"; }

}  // namespace emu
