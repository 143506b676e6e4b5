// Shared pieces of the CUDA backend: error checking, the per-device context (stream, cuBLASLt handle, workspace),
// scratch memory from the caching allocator, float32/bfloat16 element access, and warp/block reductions.
//
// Every op entry takes its device from the TensorViews it receives (view.device.index), makes that device current
// on the calling thread, and queues its kernels on the device's one stream. The caching allocator hands blocks back
// without synchronising; that is safe because every use of device memory (kernels, cuBLASLt, copies) is ordered
// on that same stream.
//
// Element types: float32 tensors and bfloat16 tensors may be mixed freely across the arguments of an op; each
// argument is read and written in its own dtype and all arithmetic is float32 (statistics, softmax and sums too).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../core/error.h"
#include "../core/ops.h"

namespace mae::cuda {

constexpr int kMaxDevices = 8;

// ---- errors ------------------------------------------------------------------------------------------------------

[[noreturn]] void throw_cuda(cudaError_t e, const char* what, const char* file, int line);

// For runtime API calls: throws mae::Error naming the call and the CUDA error.
#define MAE_CUDA_CHECK(expr)                                                    \
  do {                                                                          \
    cudaError_t mae_e_ = (expr);                                                \
    if (mae_e_ != cudaSuccess) ::mae::cuda::throw_cuda(mae_e_, #expr, __FILE__, __LINE__); \
  } while (0)

// After every kernel launch: throws mae::Error naming the kernel when the launch failed. With the environment
// variable MAE_CUDA_SYNC=1 it also waits for the kernel, so that a fault is reported by the kernel that caused it.
void check_launch(const char* kernel, cudaStream_t stream);
#define MAE_KERNEL_CHECK(name, stream) ::mae::cuda::check_launch(name, stream)

// ---- device context ----------------------------------------------------------------------------------------------

struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  void* cublaslt = nullptr;      // cublasLtHandle_t, created on first use (gemm.cu)
  void* workspace = nullptr;     // cuBLASLt workspace
  size_t workspace_bytes = 0;
  int sm_count = 0;
  int major = 0, minor = 0;
  size_t smem_optin = 0;         // the largest dynamic shared memory a block may opt into
};

// The context of `device`, created on first use (stream, kernel-image check); makes `device` current.
Context& context(int device);
// The context of the device a view lives on.
inline Context& context(const TensorView& v) { return context(v.device.index); }
// Makes `device` current on this thread (cheap when it already is).
void use_device(int device);

// ---- memory ------------------------------------------------------------------------------------------------------

void* device_alloc(int device, size_t bytes);
void device_free(int device, void* p, size_t bytes);
void device_empty_cache(int device);
AllocatorStats device_stats(int device);
Allocator allocator_for(int device);

// Temporary device memory for the duration of one op (returned to the cache when it goes out of scope; stream
// ordering makes the reuse safe).
struct Scratch {
  int device;
  void* ptr = nullptr;
  size_t bytes = 0;
  Scratch(int device_, size_t bytes_) : device(device_), bytes(bytes_) {
    if (bytes) ptr = device_alloc(device, bytes);
  }
  ~Scratch() {
    if (ptr) device_free(device, ptr, bytes);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};

// ---- element access ----------------------------------------------------------------------------------------------

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// A read-only float32 or bfloat16 array; the dtype test is uniform across a launch, so it costs a predicate.
struct Src {
  const void* p;
  int bf16;
  __device__ __forceinline__ float operator[](int64_t i) const {
    return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
  }
};

// A writable float32 or bfloat16 array.
struct Dst {
  void* p;
  int bf16;
  __device__ __forceinline__ void set(int64_t i, float v) const {
    if (bf16)
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
    else
      static_cast<float*>(p)[i] = v;
  }
  __device__ __forceinline__ float get(int64_t i) const {
    return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
  }
};

inline Src src(const TensorView& v) { return Src{v.data, v.dtype == DType::BF16 ? 1 : 0}; }
inline Dst dst(const TensorView& v) { return Dst{v.data, v.dtype == DType::BF16 ? 1 : 0}; }

// ---- reductions --------------------------------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result. `sh` holds 32 T.
template <typename T>
__device__ __forceinline__ T block_sum(T v, T* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // sh may still be read by a previous call
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  T r = lane < nw ? sh[lane] : T(0);
  return warp_sum(r);
}

// ---- launch shapes -----------------------------------------------------------------------------------------------

// Blocks for a grid-stride loop over n items with `threads` per block: enough to fill the device a few times over.
inline unsigned grid_for(int64_t n, int threads, const Context& c) {
  int64_t blocks = (n + threads - 1) / threads;
  const int64_t cap = (int64_t)c.sm_count * 32;
  if (blocks > cap) blocks = cap;
  return (unsigned)(blocks < 1 ? 1 : blocks);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---- shared kernels used by several op families (elementwise.cu) ----------------------------------------------

// y[j] = scale * sum_i x[i * n + j] for j < n, rows = x.numel / n, accumulated in float32 in a fixed order.
void column_sum(Context& c, Src x, int64_t rows, int64_t n, float scale, Dst y, const char* name);
// y[i, j] += b[j] for a [rows, n] matrix (the bias when cuBLASLt's epilogue cannot take it).
void add_bias_rows(Context& c, Dst y, Src b, int64_t rows, int64_t n);
// dst[i] = src[i], converting dtypes.
void convert_n(Context& c, Dst d, Src s, int64_t n);

// Whether gather/scatter indices and labels are checked on the host after the kernel (one synchronisation per
// call); MAE_CUDA_CHECK_INDICES=0 turns it off.
inline bool check_indices_on_host() {
  static const bool on = [] {
    const char* v = std::getenv("MAE_CUDA_CHECK_INDICES");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

}  // namespace mae::cuda
