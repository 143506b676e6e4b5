// Token plumbing for masking and the cls token, on [B, N, D] sequences:
//   gather_rows:      y[b, k] = x[b, idx[b, k]]            x [B, N, D], idx int32 [B, K] -> y [B, K, D]
//   scatter_add_rows: dx = 0; dx[b, idx[b, k]] += dy[b, k]  (the backward of gather_rows)
//   cat_tokens:       y = [a, b] along the token axis; a [Ba, Na, D], b [Bb, Nb, D], a batch of 1 broadcasts
//   slice_tokens:     y = x[:, start : start + len]
// Indices out of range throw before anything is written. Tensors may be float32 or bfloat16, each in its own dtype
// (rows copied, or converted where two dtypes meet, as the cls token joining bfloat16 patch tokens).
#include <cstring>
#include <string>
#include <vector>

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

namespace {
// n elements of src from src_at into dst from dst_at, converted when the dtypes differ
inline void copy_elems(const TensorView& src, int64_t src_at, const TensorView& dst, int64_t dst_at, int64_t n) {
  if (src.dtype == dst.dtype) {
    const size_t e = dtype_size(src.dtype);
    std::memcpy(static_cast<char*>(dst.data) + dst_at * e, static_cast<const char*>(src.data) + src_at * e, n * e);
  } else if (dst.dtype == DType::BF16) {
    to_bf16(src.f32() + src_at, bf16(dst) + dst_at, n);
  } else {
    to_f32(bf16(src) + src_at, dst.f32() + dst_at, n);
  }
}
}  // namespace

void gather_rows(const TensorView& x, const TensorView& idx, TensorView& y) {
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2), K = idx.dim(1);
  check_indices("index", idx, N);
  const int32_t* I = idx.i32();
#pragma omp parallel for schedule(static) if (B * K * D >= kParallelGrain)
  for (int64_t bk = 0; bk < B * K; bk++) {
    const int64_t b = bk / K;
    copy_elems(x, (b * N + I[bk]) * D, y, bk * D, D);
  }
}

void scatter_add_rows(const TensorView& dy, const TensorView& idx, TensorView& dx) {
  const int64_t B = dx.dim(0), N = dx.dim(1), D = dx.dim(2), K = idx.dim(1);
  check_indices("index", idx, N);
  const int32_t* I = idx.i32();
#pragma omp parallel if (B * N * D >= kParallelGrain)
  {
    std::vector<float> acc(dx.dtype == DType::F32 ? 0 : N * D), gb(D);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < B; b++) {
      float* DX = out_row(dx, b * N * D, acc.data());
      std::memset(DX, 0, N * D * sizeof(float));
      for (int64_t k = 0; k < K; k++) {
        float* dst = DX + I[b * K + k] * D;
        const float* src = in_row(dy, (b * K + k) * D, D, gb.data());
#pragma omp simd
        for (int64_t d = 0; d < D; d++) dst[d] += src[d];
      }
      out_row_done(dx, b * N * D, N * D, DX);
    }
  }
}

void cat_tokens(const TensorView& a, const TensorView& b, TensorView& y) {
  const int64_t B = y.dim(0), Na = a.dim(1), Nb = b.dim(1), D = y.dim(2);
  const bool a1 = a.dim(0) == 1, b1 = b.dim(0) == 1;
#pragma omp parallel for schedule(static) if (y.numel() >= kParallelGrain)
  for (int64_t i = 0; i < B; i++) {
    copy_elems(a, (a1 ? 0 : i) * Na * D, y, i * (Na + Nb) * D, Na * D);
    copy_elems(b, (b1 ? 0 : i) * Nb * D, y, i * (Na + Nb) * D + Na * D, Nb * D);
  }
}

void slice_tokens(const TensorView& x, int64_t start, TensorView& y) {
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2), len = y.dim(1);
#pragma omp parallel for schedule(static) if (y.numel() >= kParallelGrain)
  for (int64_t i = 0; i < B; i++) copy_elems(x, (i * N + start) * D, y, i * len * D, len * D);
}

}  // namespace mae::cpu
