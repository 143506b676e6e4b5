// Elementwise ops and reductions on contiguous float32 tensors:
//   add, mul:      y = a (+|*) b, b repeating over a (b.numel divides a.numel: a bias [D] or a table [1, L, D])
//   sum_to:        y[j] = sum_i x[i * n + j], n = y.numel (the gradient of a repeated operand)
//   axpby:         y = alpha x + beta y (beta = 0 overwrites, so garbage in y never leaks through)
//   sum:           y[0] = scale * sum(x), accumulated in double in a fixed order
//   mean_tokens:   x [B, N, D] -> y [B, D], the mean over N; backward spreads dy / N over the N tokens
//   fill:          y = value
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu.h"

namespace mae::cpu {

namespace {
template <typename F>
void broadcast(const TensorView& a, const TensorView& b, TensorView& y, F f) {
  const int64_t n = a.numel(), nb = b.numel();
  const float *A = a.f32(), *Bp = b.f32();
  float* Y = y.f32();
  if (nb == n) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; i++) Y[i] = f(A[i], Bp[i]);
    return;
  }
  const int64_t outer = n / nb;
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t o = 0; o < outer; o++) {
    const float* ar = A + o * nb;
    float* yr = Y + o * nb;
#pragma omp simd
    for (int64_t j = 0; j < nb; j++) yr[j] = f(ar[j], Bp[j]);
  }
}
}  // namespace

void add(const TensorView& a, const TensorView& b, TensorView& y) {
  broadcast(a, b, y, [](float u, float v) { return u + v; });
}

void mul(const TensorView& a, const TensorView& b, TensorView& y) {
  broadcast(a, b, y, [](float u, float v) { return u * v; });
}

void column_sums(const float* x, int64_t rows, int64_t n, int64_t j0, int64_t j1, float* y) {
  // 64 columns at a time, each walking all rows in order: the sums do not depend on how columns are split
  for (int64_t b0 = j0; b0 < j1; b0 += 64) {
    const int64_t b1 = b0 + 64 < j1 ? b0 + 64 : j1;
    float acc[64] = {0};
    for (int64_t o = 0; o < rows; o++) {
      const float* row = x + o * n;
#pragma omp simd
      for (int64_t j = b0; j < b1; j++) acc[j - b0] += row[j];
    }
    for (int64_t j = b0; j < b1; j++) y[j] = acc[j - b0];
  }
}

void sum_to(const TensorView& x, TensorView& y) {
  const int64_t n = y.numel(), rows = x.numel() / n, nblk = (n + 63) / 64;
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelGrain)
  for (int64_t blk = 0; blk < nblk; blk++)
    column_sums(x.f32(), rows, n, blk * 64, std::min(n, blk * 64 + 64), y.f32());
}

void axpby(float alpha, const TensorView& x, float beta, TensorView& y) {
  const int64_t n = x.numel();
  const float* X = x.f32();
  float* Y = y.f32();
  if (beta == 0.0f) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; i++) Y[i] = alpha * X[i];
  } else {
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
    for (int64_t i = 0; i < n; i++) Y[i] = alpha * X[i] + beta * Y[i];
  }
}

void sum(const TensorView& x, float scale, TensorView& y) {
  // fixed blocks summed in a fixed order: the result does not depend on the thread count or timing
  const int64_t n = x.numel(), block = 4096, nblk = (n + block - 1) / block;
  const float* X = x.f32();
  std::vector<double> part(nblk, 0.0);
#pragma omp parallel for schedule(static) if (n >= kParallelGrain)
  for (int64_t b = 0; b < nblk; b++) {
    const int64_t i1 = (b + 1) * block < n ? (b + 1) * block : n;
    double s = 0.0;
    for (int64_t i = b * block; i < i1; i++) s += X[i];
    part[b] = s;
  }
  double s = 0.0;
  for (double p : part) s += p;
  y.f32()[0] = (float)(s * scale);
}

void mean_tokens(const TensorView& x, TensorView& y) {
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2);
#pragma omp parallel for schedule(static) if (B * N * D >= kParallelGrain)
  for (int64_t b = 0; b < B; b++) {
    float* yr = y.f32() + b * D;
    for (int64_t d = 0; d < D; d++) yr[d] = 0.0f;
    for (int64_t n = 0; n < N; n++) {
      const float* xr = x.f32() + (b * N + n) * D;
#pragma omp simd
      for (int64_t d = 0; d < D; d++) yr[d] += xr[d];
    }
    for (int64_t d = 0; d < D; d++) yr[d] /= N;
  }
}

void mean_tokens_backward(const TensorView& dy, TensorView& dx) {
  const int64_t B = dx.dim(0), N = dx.dim(1), D = dx.dim(2);
  const float inv = 1.0f / N;
#pragma omp parallel for schedule(static) if (B * N * D >= kParallelGrain)
  for (int64_t bn = 0; bn < B * N; bn++) {
    const float* g = dy.f32() + (bn / N) * D;
    float* dst = dx.f32() + bn * D;
#pragma omp simd
    for (int64_t d = 0; d < D; d++) dst[d] = g[d] * inv;
  }
}

void fill(TensorView& y, float value) {
  const int64_t n = y.numel();
  float* Y = y.f32();
#pragma omp parallel for simd schedule(static) if (n >= kParallelGrain)
  for (int64_t i = 0; i < n; i++) Y[i] = value;
}

}  // namespace mae::cpu
