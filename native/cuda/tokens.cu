// Token plumbing on [B, N, D] sequences (the CUDA twin of native/cpu/tokens.cpp):
//   gather_rows:      y[b, k] = x[b, idx[b, k]]            x [B, N, D], idx int32 [B, K] -> y [B, K, D]
//   scatter_add_rows: dx = 0; dx[b, idx[b, k]] += dy[b, k]  (the backward of gather_rows)
//   cat_tokens:       y = [a, b] along the token axis; a batch of 1 broadcasts
//   slice_tokens:     y = x[:, start : start + len]
// Indices live on the device, so they are checked there: a kernel never reads or writes outside its tensors (a
// bad index gives a zero row / is skipped) and records the first bad position; the op then reads that record back
// (one small synchronous copy) and throws mae::Error as the CPU does. MAE_CUDA_CHECK_INDICES=0 skips the read-back.
// scatter_add_rows walks k in order for each (b, column): no atomics, deterministic, the CPU's summation order.
#include <climits>
#include <cstdlib>
#include <cstring>

#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

__global__ void gather_rows_kernel(Src x, const int32_t* idx, Dst y, int64_t B, int64_t N, int64_t D, int64_t K,
                                   int* bad) {
  const int64_t total = B * K * D;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bk = e / D, d = e % D, b = bk / K;
    const int32_t r = idx[bk];
    if (r < 0 || r >= N) {
      if (d == 0) atomicMin(bad, (int)bk);
      y.set(e, 0.0f);
    } else {
      y.set(e, x[(b * N + r) * D + d]);
    }
  }
}

__global__ void scatter_add_rows_kernel(Src dy, const int32_t* idx, Dst dx, int64_t B, int64_t N, int64_t D,
                                        int64_t K, int* bad) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < B * D; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = e / D, d = e % D;
    for (int64_t k = 0; k < K; k++) {
      const int32_t r = idx[b * K + k];
      if (r < 0 || r >= N) {
        if (d == 0) atomicMin(bad, (int)(b * K + k));
        continue;
      }
      const int64_t o = (b * N + r) * D + d;
      dx.set(o, dx.get(o) + dy[(b * K + k) * D + d]);
    }
  }
}

__global__ void cat_tokens_kernel(Src a, Src bsrc, Dst y, int64_t B, int64_t Na, int64_t Nb, int64_t D, bool a1,
                                  bool b1) {
  const int64_t N = Na + Nb, total = B * N * D;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t d = e % D, t = (e / D) % N, b = e / (N * D);
    y.set(e, t < Na ? a[((a1 ? 0 : b) * Na + t) * D + d] : bsrc[((b1 ? 0 : b) * Nb + (t - Na)) * D + d]);
  }
}

__global__ void slice_tokens_kernel(Src x, Dst y, int64_t B, int64_t N, int64_t D, int64_t start, int64_t len) {
  const int64_t total = B * len * D;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t d = e % D, t = (e / D) % len, b = e / (len * D);
    y.set(e, x[(b * N + start + t) * D + d]);
  }
}

// A device int set to kNone; after the kernel, throws if a kernel lowered it to a bad position.
struct BadIndex {
  Context& c;
  Scratch s;
  static constexpr int kNone = 0x7f7f7f7f;  // what a memset of 0x7f bytes leaves; larger than any position here
  explicit BadIndex(Context& c_) : c(c_), s(c_.device, sizeof(int)) {
    MAE_CUDA_CHECK(cudaMemsetAsync(s.ptr, 0x7f, sizeof(int), c.stream));
  }
  int* ptr() { return s.as<int>(); }
  void check(const int32_t* idx, int64_t N) {
    if (!check_indices_on_host()) return;
    int pos = kNone;
    MAE_CUDA_CHECK(cudaMemcpyAsync(&pos, s.ptr, sizeof pos, cudaMemcpyDeviceToHost, c.stream));
    MAE_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    if (pos == kNone) return;
    int32_t value = 0;
    MAE_CUDA_CHECK(cudaMemcpyAsync(&value, idx + pos, sizeof value, cudaMemcpyDeviceToHost, c.stream));
    MAE_CUDA_CHECK(cudaStreamSynchronize(c.stream));
    throw Error("index value " + std::to_string(value) + " at position " + std::to_string(pos) + " is outside [0, " +
                std::to_string(N) + ")");
  }
};

}  // namespace

void gather_rows(const TensorView& x, const TensorView& idx, TensorView& y) {
  Context& c = context(x);
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2), K = idx.dim(1);
  BadIndex bad(c);
  gather_rows_kernel<<<grid_for(B * K * D, 256, c), 256, 0, c.stream>>>(src(x), idx.i32(), dst(y), B, N, D, K,
                                                                        bad.ptr());
  MAE_KERNEL_CHECK("gather_rows_kernel", c.stream);
  bad.check(idx.i32(), N);
}

void scatter_add_rows(const TensorView& dy, const TensorView& idx, TensorView& dx) {
  Context& c = context(dy);
  const int64_t B = dx.dim(0), N = dx.dim(1), D = dx.dim(2), K = idx.dim(1);
  BadIndex bad(c);
  MAE_CUDA_CHECK(cudaMemsetAsync(dx.data, 0, (size_t)dx.numel() * dtype_size(dx.dtype), c.stream));
  scatter_add_rows_kernel<<<grid_for(B * D, 128, c), 128, 0, c.stream>>>(src(dy), idx.i32(), dst(dx), B, N, D, K,
                                                                         bad.ptr());
  MAE_KERNEL_CHECK("scatter_add_rows_kernel", c.stream);
  bad.check(idx.i32(), N);
}

void cat_tokens(const TensorView& a, const TensorView& b, TensorView& y) {
  Context& c = context(a);
  const int64_t B = y.dim(0), Na = a.dim(1), Nb = b.dim(1), D = y.dim(2);
  cat_tokens_kernel<<<grid_for(B * (Na + Nb) * D, 256, c), 256, 0, c.stream>>>(src(a), src(b), dst(y), B, Na, Nb, D,
                                                                              a.dim(0) == 1, b.dim(0) == 1);
  MAE_KERNEL_CHECK("cat_tokens_kernel", c.stream);
}

void slice_tokens(const TensorView& x, int64_t start, TensorView& y) {
  Context& c = context(x);
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2), len = y.dim(1);
  slice_tokens_kernel<<<grid_for(B * len * D, 256, c), 256, 0, c.stream>>>(src(x), dst(y), B, N, D, start, len);
  MAE_KERNEL_CHECK("slice_tokens_kernel", c.stream);
}

}  // namespace mae::cuda
