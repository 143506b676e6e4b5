// Token plumbing on [B, N, D] sequences (the CUDA twin of native/cpu/tokens.cpp):
//   gather_rows:      y[b, k] = x[b, idx[b, k]]            x [B, N, D], idx int32 [B, K] -> y [B, K, D]
//   scatter_add_rows: dx = 0; dx[b, idx[b, k]] += dy[b, k]  (the backward of gather_rows)
//   cat_tokens:       y = [a, b] along the token axis; a batch of 1 broadcasts
//   slice_tokens:     y = x[:, start : start + len]
// Indices live on the device, so they are checked there: a kernel never reads or writes outside its tensors (a bad
// index gives a zero row / is skipped) and records the bad value in the device's fault record, which the next read
// of device data reports as mae::Error (common.cuh; MAE_CUDA_CHECK_INDICES=1: the op itself waits and throws).
// scatter_add_rows walks k in order for each (b, column): no atomics, deterministic, the CPU's summation order, and
// it accumulates in float32 (into a float32 scratch copy when dx is bfloat16, converted at the end).
// Rows of D a multiple of 8 move with 16-byte accesses and 32-bit indices (8 columns per step); other widths, or
// MAE_CUDA_VECTOR=0, take the scalar kernels with 64-bit indices.
#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

constexpr int kThreads = 256;

// ---- scalar kernels ----------------------------------------------------------------------------------------------

__global__ void gather_rows_kernel(Src x, const int32_t* idx, Dst y, int64_t B, int64_t N, int64_t D, int64_t K,
                                   Fault* fault) {
  const int64_t total = B * K * D;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t bk = e / D, d = e % D, b = bk / K;
    const int32_t r = idx[bk];
    if (r < 0 || r >= N) {
      if (d == 0) record_fault(fault, kFaultGather, bk, r, N);
      y.set(e, 0.0f);
    } else {
      y.set(e, x[(b * N + r) * D + d]);
    }
  }
}

// dx (float32 accumulator, zeroed) += dy rows at idx
__global__ void scatter_add_rows_kernel(Src dy, const int32_t* idx, float* acc, int64_t B, int64_t N, int64_t D,
                                        int64_t K, Fault* fault) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < B * D; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = e / D, d = e % D;
    for (int64_t k = 0; k < K; k++) {
      const int32_t r = idx[b * K + k];
      if (r < 0 || r >= N) {
        if (d == 0) record_fault(fault, kFaultScatter, b * K + k, r, N);
        continue;
      }
      acc[(b * N + r) * D + d] += dy[(b * K + k) * D + d];
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

// ---- 16-byte kernels: one step = 8 columns of one row; D8 = D / 8 ------------------------------------------------

template <typename TX, typename TY>
__host__ __device__ void gather_rows_vec_body(Lanes L, const TX* x, const int32_t* idx, TY* y, uint32_t N,
                                              uint32_t D8, uint32_t BK, uint32_t K, Fault* fault) {
  for (uint32_t g = L.first; g < BK * D8; g += L.stride) {
    const uint32_t bk = g / D8, d8 = g % D8, b = bk / K;
    const int32_t r = idx[bk];
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (r < 0 || (uint32_t)r >= N) {
      if (d8 == 0) record_fault(fault, kFaultGather, bk, r, N);
    } else {
      load8(x + ((b * N + (uint32_t)r) * D8 + d8) * 8, v);
    }
    store8(y + (size_t)g * 8, v);
  }
}

template <typename TX, typename TY>
__global__ void gather_rows_vec_kernel(const TX* x, const int32_t* idx, TY* y, uint32_t N, uint32_t D8, uint32_t BK,
                                       uint32_t K, Fault* fault) {
  gather_rows_vec_body(lanes_of_launch(), x, idx, y, N, D8, BK, K, fault);
}

// acc [B, N, D] float32 (zeroed) += dy [B, K, D] rows at idx; one lane per (b, 8 columns), k in order
template <typename TD>
__host__ __device__ void scatter_add_rows_vec_body(Lanes L, const TD* dy, const int32_t* idx, float* acc, uint32_t B,
                                                   uint32_t N, uint32_t D8, uint32_t K, Fault* fault) {
  for (uint32_t g = L.first; g < B * D8; g += L.stride) {
    const uint32_t b = g / D8, d8 = g % D8;
    for (uint32_t k = 0; k < K; k++) {
      const int32_t r = idx[b * K + k];
      if (r < 0 || (uint32_t)r >= N) {
        if (d8 == 0) record_fault(fault, kFaultScatter, b * K + k, r, N);
        continue;
      }
      float v[8], a[8];
      load8(dy + ((b * K + k) * D8 + d8) * 8, v);
      float* out = acc + ((b * N + (uint32_t)r) * D8 + d8) * 8;
      load8(out, a);
      for (int j = 0; j < 8; j++) a[j] += v[j];
      store8(out, a);
    }
  }
}

template <typename TD>
__global__ void scatter_add_rows_vec_kernel(const TD* dy, const int32_t* idx, float* acc, uint32_t B, uint32_t N,
                                            uint32_t D8, uint32_t K, Fault* fault) {
  scatter_add_rows_vec_body(lanes_of_launch(), dy, idx, acc, B, N, D8, K, fault);
}

// y [B, Na + Nb, D] = [a, b]; a1 / b1: that operand has a batch of 1 (broadcast)
template <typename TA, typename TB, typename TY>
__host__ __device__ void cat_tokens_vec_body(Lanes L, const TA* a, const TB* bsrc, TY* y, uint32_t B, uint32_t Na,
                                             uint32_t Nb, uint32_t D8, bool a1, bool b1) {
  const uint32_t N = Na + Nb;
  for (uint32_t g = L.first; g < B * N * D8; g += L.stride) {
    const uint32_t d8 = g % D8, t = (g / D8) % N, b = g / (N * D8);
    float v[8];
    if (t < Na)
      load8(a + (((a1 ? 0 : b) * Na + t) * D8 + d8) * 8, v);
    else
      load8(bsrc + (((b1 ? 0 : b) * Nb + (t - Na)) * D8 + d8) * 8, v);
    store8(y + (size_t)g * 8, v);
  }
}

template <typename TA, typename TB, typename TY>
__global__ void cat_tokens_vec_kernel(const TA* a, const TB* bsrc, TY* y, uint32_t B, uint32_t Na, uint32_t Nb,
                                      uint32_t D8, bool a1, bool b1) {
  cat_tokens_vec_body(lanes_of_launch(), a, bsrc, y, B, Na, Nb, D8, a1, b1);
}

// y [B, len, D] = x [B, N, D] tokens start .. start + len
template <typename TX, typename TY>
__host__ __device__ void slice_tokens_vec_body(Lanes L, const TX* x, TY* y, uint32_t B, uint32_t N, uint32_t D8,
                                               uint32_t start, uint32_t len) {
  for (uint32_t g = L.first; g < B * len * D8; g += L.stride) {
    const uint32_t d8 = g % D8, t = (g / D8) % len, b = g / (len * D8);
    float v[8];
    load8(x + ((b * N + start + t) * D8 + d8) * 8, v);
    store8(y + (size_t)g * 8, v);
  }
}

template <typename TX, typename TY>
__global__ void slice_tokens_vec_kernel(const TX* x, TY* y, uint32_t B, uint32_t N, uint32_t D8, uint32_t start,
                                        uint32_t len) {
  slice_tokens_vec_body(lanes_of_launch(), x, y, B, N, D8, start, len);
}

unsigned vec_grid(int64_t groups, const Context& c) { return grid_for(groups, kThreads, c); }

}  // namespace

void gather_rows(const TensorView& x, const TensorView& idx, TensorView& y) {
  Context& c = context(x);
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2), K = idx.dim(1);
  if (D % 8 == 0 && vec_ok(std::max(B * N * D, B * K * D), {x.data, y.data})) {
    with_type(x.dtype, [&](auto tx) {
      with_type(y.dtype, [&](auto ty) {
        using TX = decltype(tx);
        using TY = decltype(ty);
        gather_rows_vec_kernel<TX, TY><<<vec_grid(B * K * D / 8, c), kThreads, 0, c.stream>>>(
            static_cast<const TX*>(x.data), idx.i32(), static_cast<TY*>(y.data), (uint32_t)N, (uint32_t)(D / 8),
            (uint32_t)(B * K), (uint32_t)K, c.fault);
      });
    });
  } else {
    gather_rows_kernel<<<grid_for(B * K * D, kThreads, c), kThreads, 0, c.stream>>>(src(x), idx.i32(), dst(y), B, N,
                                                                                    D, K, c.fault);
  }
  MAE_KERNEL_CHECK("gather_rows", c.stream);
  check_fault_now(c);
}

void scatter_add_rows(const TensorView& dy, const TensorView& idx, TensorView& dx) {
  Context& c = context(dy);
  const int64_t B = dx.dim(0), N = dx.dim(1), D = dx.dim(2), K = idx.dim(1);
  const bool f32 = dx.dtype == DType::F32;
  Scratch tmp(c.device, f32 ? 0 : (size_t)dx.numel() * sizeof(float));  // the float32 accumulator for a bf16 dx
  float* acc = f32 ? dx.f32() : tmp.as<float>();
  MAE_CUDA_CHECK(cudaMemsetAsync(acc, 0, (size_t)dx.numel() * sizeof(float), c.stream));
  if (D % 8 == 0 && vec_ok(std::max(B * N * D, B * K * D), {dy.data, acc})) {
    with_type(dy.dtype, [&](auto td) {
      using TD = decltype(td);
      scatter_add_rows_vec_kernel<TD><<<vec_grid(B * D / 8, c), kThreads, 0, c.stream>>>(
          static_cast<const TD*>(dy.data), idx.i32(), acc, (uint32_t)B, (uint32_t)N, (uint32_t)(D / 8), (uint32_t)K,
          c.fault);
    });
  } else {
    scatter_add_rows_kernel<<<grid_for(B * D, 128, c), 128, 0, c.stream>>>(src(dy), idx.i32(), acc, B, N, D, K,
                                                                           c.fault);
  }
  MAE_KERNEL_CHECK("scatter_add_rows", c.stream);
  if (!f32) convert_n(c, dst(dx), Src{acc, 0}, dx.numel());
  check_fault_now(c);
}

void cat_tokens(const TensorView& a, const TensorView& b, TensorView& y) {
  Context& c = context(a);
  const int64_t B = y.dim(0), Na = a.dim(1), Nb = b.dim(1), D = y.dim(2);
  if (D % 8 == 0 && vec_ok(y.numel(), {a.data, b.data, y.data})) {
    with_type(a.dtype, [&](auto ta) {
      with_type(b.dtype, [&](auto tb) {
        with_type(y.dtype, [&](auto ty) {
          using TA = decltype(ta);
          using TB = decltype(tb);
          using TY = decltype(ty);
          cat_tokens_vec_kernel<TA, TB, TY><<<vec_grid(y.numel() / 8, c), kThreads, 0, c.stream>>>(
              static_cast<const TA*>(a.data), static_cast<const TB*>(b.data), static_cast<TY*>(y.data), (uint32_t)B,
              (uint32_t)Na, (uint32_t)Nb, (uint32_t)(D / 8), a.dim(0) == 1, b.dim(0) == 1);
        });
      });
    });
  } else {
    cat_tokens_kernel<<<grid_for(B * (Na + Nb) * D, kThreads, c), kThreads, 0, c.stream>>>(
        src(a), src(b), dst(y), B, Na, Nb, D, a.dim(0) == 1, b.dim(0) == 1);
  }
  MAE_KERNEL_CHECK("cat_tokens", c.stream);
}

void slice_tokens(const TensorView& x, int64_t start, TensorView& y) {
  Context& c = context(x);
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2), len = y.dim(1);
  if (D % 8 == 0 && vec_ok(x.numel(), {x.data, y.data})) {
    with_type(x.dtype, [&](auto tx) {
      with_type(y.dtype, [&](auto ty) {
        using TX = decltype(tx);
        using TY = decltype(ty);
        slice_tokens_vec_kernel<TX, TY><<<vec_grid(y.numel() / 8, c), kThreads, 0, c.stream>>>(
            static_cast<const TX*>(x.data), static_cast<TY*>(y.data), (uint32_t)B, (uint32_t)N, (uint32_t)(D / 8),
            (uint32_t)start, (uint32_t)len);
      });
    });
  } else {
    slice_tokens_kernel<<<grid_for(B * len * D, kThreads, c), kThreads, 0, c.stream>>>(src(x), dst(y), B, N, D,
                                                                                       start, len);
  }
  MAE_KERNEL_CHECK("slice_tokens", c.stream);
}

}  // namespace mae::cuda
