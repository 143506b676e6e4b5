// Elementwise ops and reductions on contiguous tensors, each argument float32 or bfloat16 (float32 arithmetic; the
// results of sum_to and sum are float32):
//   add, mul:      y = a (+|*) b, b repeating over a (b.numel divides a.numel: a bias [D] or a table [1, L, D])
//   sum_to:        y[j] = sum_i x[i * n + j], n = y.numel (the gradient of a repeated operand)
//   axpby:         y = alpha x + beta y (beta = 0 overwrites, so garbage in y never leaks through)
//   sum:           y[0] = scale * sum(x), accumulated in double in a fixed order
//   mean_tokens:   x [B, N, D] -> y [B, D], the mean over N; backward spreads dy / N over the N tokens
//   fill:          y = value
#include <algorithm>
#include <vector>

#include "cpu.h"

namespace mae::cpu {

namespace {
template <typename F>
void broadcast(const TensorView& a, const TensorView& b, TensorView& y, F f) {
  const int64_t n = a.numel(), nb = b.numel();
  if (nb == n) {
    map_elements(a, b, y, f);
    return;
  }
  const int64_t outer = n / nb;
#pragma omp parallel if (n >= kParallelGrain)
  {
    std::vector<float> ab(nb), bb(nb), yb(nb);
    const float* Bp = in_row(b, 0, nb, bb.data());
#pragma omp for schedule(static)
    for (int64_t o = 0; o < outer; o++) {
      const float* ar = in_row(a, o * nb, nb, ab.data());
      float* yr = out_row(y, o * nb, yb.data());
#pragma omp simd
      for (int64_t j = 0; j < nb; j++) yr[j] = f(ar[j], Bp[j]);
      out_row_done(y, o * nb, nb, yr);
    }
  }
}
}  // namespace

void add(const TensorView& a, const TensorView& b, TensorView& y) {
  broadcast(a, b, y, [](float u, float v) { return u + v; });
}

void mul(const TensorView& a, const TensorView& b, TensorView& y) {
  broadcast(a, b, y, [](float u, float v) { return u * v; });
}

void column_sums(const TensorView& x, int64_t rows, int64_t n, int64_t j0, int64_t j1, float* y) {
  // 64 columns at a time, each walking all rows in order: the sums do not depend on how columns are split. bfloat16
  // is widened in the loop (a call per 64 values cost more than the sums: db of ViT-B's fc1 took 7 ms of 15)
  for (int64_t b0 = j0; b0 < j1; b0 += 64) {
    const int64_t w = b0 + 64 < j1 ? 64 : j1 - b0;
    float acc[64] = {0};
    if (x.dtype == DType::F32) {
      for (int64_t o = 0; o < rows; o++) {
        const float* row = x.f32() + o * n + b0;
#pragma omp simd
        for (int64_t j = 0; j < w; j++) acc[j] += row[j];
      }
    } else {
      for (int64_t o = 0; o < rows; o++) {
        const uint16_t* row = bf16(x) + o * n + b0;
#pragma omp simd
        for (int64_t j = 0; j < w; j++) acc[j] += from_bf16(row[j]);
      }
    }
    for (int64_t j = 0; j < w; j++) y[b0 + j] = acc[j];
  }
}

void sum_to(const TensorView& x, TensorView& y) {
  const int64_t n = y.numel(), rows = x.numel() / n, nblk = (n + 63) / 64;
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelGrain)
  for (int64_t blk = 0; blk < nblk; blk++) column_sums(x, rows, n, blk * 64, std::min(n, blk * 64 + 64), y.f32());
}

void axpby(float alpha, const TensorView& x, float beta, TensorView& y) {
  const int64_t n = x.numel();
#pragma omp parallel if (n >= kParallelGrain)
  {
    float xb[kChunk], yb[kChunk];
#pragma omp for schedule(static)
    for (int64_t c = 0; c < n; c += kChunk) {
      const int64_t m = std::min(kChunk, n - c);
      const float* X = in_row(x, c, m, xb);
      float* Y;
      if (beta == 0.0f) {
        Y = out_row(y, c, yb);
#pragma omp simd
        for (int64_t i = 0; i < m; i++) Y[i] = alpha * X[i];
      } else {
        Y = const_cast<float*>(in_row(y, c, m, yb));
#pragma omp simd
        for (int64_t i = 0; i < m; i++) Y[i] = alpha * X[i] + beta * Y[i];
      }
      out_row_done(y, c, m, Y);
    }
  }
}

void sum(const TensorView& x, float scale, TensorView& y) {
  // fixed blocks summed in a fixed order: the result does not depend on the thread count or timing
  const int64_t n = x.numel(), block = 4096, nblk = (n + block - 1) / block;
  std::vector<double> part(nblk, 0.0);
#pragma omp parallel if (n >= kParallelGrain)
  {
    std::vector<float> xb(block);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nblk; b++) {
      const int64_t i0 = b * block, i1 = (b + 1) * block < n ? (b + 1) * block : n;
      const float* X = in_row(x, i0, i1 - i0, xb.data());
      double s = 0.0;
      for (int64_t i = 0; i < i1 - i0; i++) s += X[i];
      part[b] = s;
    }
  }
  double s = 0.0;
  for (double p : part) s += p;
  y.f32()[0] = (float)(s * scale);
}

void mean_tokens(const TensorView& x, TensorView& y) {
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2);
#pragma omp parallel if (B * N * D >= kParallelGrain)
  {
    std::vector<float> acc(D), xb(D);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; b++) {
      float* yr = out_row(y, b * D, acc.data());
      for (int64_t d = 0; d < D; d++) yr[d] = 0.0f;
      for (int64_t n = 0; n < N; n++) {
        const float* xr = in_row(x, (b * N + n) * D, D, xb.data());
#pragma omp simd
        for (int64_t d = 0; d < D; d++) yr[d] += xr[d];
      }
      for (int64_t d = 0; d < D; d++) yr[d] /= N;
      out_row_done(y, b * D, D, yr);
    }
  }
}

void mean_tokens_backward(const TensorView& dy, TensorView& dx) {
  const int64_t B = dx.dim(0), N = dx.dim(1), D = dx.dim(2);
  const float inv = 1.0f / N;
#pragma omp parallel if (B * N * D >= kParallelGrain)
  {
    std::vector<float> gb(D), db(D);
#pragma omp for schedule(static)
    for (int64_t bn = 0; bn < B * N; bn++) {
      const float* g = in_row(dy, (bn / N) * D, D, gb.data());
      float* dst = out_row(dx, bn * D, db.data());
#pragma omp simd
      for (int64_t d = 0; d < D; d++) dst[d] = g[d] * inv;
      out_row_done(dx, bn * D, D, dst);
    }
  }
}

void fill(TensorView& y, float value) {
  const int64_t n = y.numel();
#pragma omp parallel if (n >= kParallelGrain)
  {
    float yb[kChunk];
#pragma omp for schedule(static)
    for (int64_t c = 0; c < n; c += kChunk) {
      const int64_t m = std::min(kChunk, n - c);
      float* Y = out_row(y, c, yb);
      for (int64_t i = 0; i < m; i++) Y[i] = value;
      out_row_done(y, c, m, Y);
    }
  }
}

}  // namespace mae::cpu
