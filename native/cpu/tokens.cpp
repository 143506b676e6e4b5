// Token plumbing for masking and the cls token, on [B, N, D] sequences:
//   gather_rows:      y[b, k] = x[b, idx[b, k]]            x [B, N, D], idx int32 [B, K] -> y [B, K, D]
//   scatter_add_rows: dx = 0; dx[b, idx[b, k]] += dy[b, k]  (the backward of gather_rows)
//   cat_tokens:       y = [a, b] along the token axis; a [Ba, Na, D], b [Bb, Nb, D], a batch of 1 broadcasts
//   slice_tokens:     y = x[:, start : start + len]
// Indices out of range throw before anything is written.
#include <cstring>
#include <string>

#include "../core/error.h"
#include "cpu.h"

namespace mae::cpu {

namespace {
void check_indices(const char* what, const TensorView& idx, int64_t N) {
  const int32_t* I = idx.i32();
  for (int64_t i = 0; i < idx.numel(); i++)
    if (I[i] < 0 || I[i] >= N)
      throw Error(std::string(what) + " value " + std::to_string(I[i]) + " at position " + std::to_string(i) +
                  " is outside [0, " + std::to_string(N) + ")");
}
}  // namespace

void gather_rows(const TensorView& x, const TensorView& idx, TensorView& y) {
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2), K = idx.dim(1);
  check_indices("index", idx, N);
  const float* X = x.f32();
  const int32_t* I = idx.i32();
  float* Y = y.f32();
#pragma omp parallel for schedule(static) if (B * K * D >= kParallelGrain)
  for (int64_t bk = 0; bk < B * K; bk++) {
    const int64_t b = bk / K;
    std::memcpy(Y + bk * D, X + (b * N + I[bk]) * D, D * sizeof(float));
  }
}

void scatter_add_rows(const TensorView& dy, const TensorView& idx, TensorView& dx) {
  const int64_t B = dx.dim(0), N = dx.dim(1), D = dx.dim(2), K = idx.dim(1);
  check_indices("index", idx, N);
  const float* DY = dy.f32();
  const int32_t* I = idx.i32();
  float* DX = dx.f32();
#pragma omp parallel for schedule(static) if (B * N * D >= kParallelGrain)
  for (int64_t b = 0; b < B; b++) {
    std::memset(DX + b * N * D, 0, N * D * sizeof(float));
    for (int64_t k = 0; k < K; k++) {
      float* dst = DX + (b * N + I[b * K + k]) * D;
      const float* src = DY + (b * K + k) * D;
#pragma omp simd
      for (int64_t d = 0; d < D; d++) dst[d] += src[d];
    }
  }
}

void cat_tokens(const TensorView& a, const TensorView& b, TensorView& y) {
  const int64_t B = y.dim(0), Na = a.dim(1), Nb = b.dim(1), D = y.dim(2);
  const bool a1 = a.dim(0) == 1, b1 = b.dim(0) == 1;
#pragma omp parallel for schedule(static) if (y.numel() >= kParallelGrain)
  for (int64_t i = 0; i < B; i++) {
    float* dst = y.f32() + i * (Na + Nb) * D;
    std::memcpy(dst, a.f32() + (a1 ? 0 : i) * Na * D, Na * D * sizeof(float));
    std::memcpy(dst + Na * D, b.f32() + (b1 ? 0 : i) * Nb * D, Nb * D * sizeof(float));
  }
}

void slice_tokens(const TensorView& x, int64_t start, TensorView& y) {
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2), len = y.dim(1);
#pragma omp parallel for schedule(static) if (y.numel() >= kParallelGrain)
  for (int64_t i = 0; i < B; i++)
    std::memcpy(y.f32() + i * len * D, x.f32() + (i * N + start) * D, len * D * sizeof(float));
}

}  // namespace mae::cpu
