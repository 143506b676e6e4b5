// Shared pieces of the CUDA backend: error checking, the per-device context (stream, cuBLASLt handle, workspace),
// scratch memory from the caching allocator, the host's waits and copies, device-side fault records, float32/bfloat16
// element access (scalar and 8 at a time), warp/block reductions and environment switches.
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

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <mutex>
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

// ---- environment switches -----------------------------------------------------------------------------------------
// Read at every call (a getenv costs far less than a launch), so a program can switch them for a part of its run.

// whether `name` is set to something other than "" and "0"
inline bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}
// whether `name` is not set to "0" (a switch that is on by default)
inline bool env_not_off(const char* name) {
  const char* v = std::getenv(name);
  return !(v && std::strcmp(v, "0") == 0);
}
// MAE_CUDA_CHECK_INDICES=1: an op that received a bad index or label waits for its kernel and throws at once
inline bool check_indices_now() { return env_on("MAE_CUDA_CHECK_INDICES"); }
// MAE_CUDA_VECTOR=0: the scalar (64-bit indexed) elementwise, token and patch kernels instead of the 16-byte ones
inline bool vector_enabled() { return env_not_off("MAE_CUDA_VECTOR"); }
// MAE_FUSED=0: the unfused paths (bias added after the product, db by a column sum; lib/ also stops using the fused
// ops), kept selectable until the fused kernels have passed on a GPU
inline bool fused_enabled() { return env_not_off("MAE_FUSED"); }

// ---- device faults -----------------------------------------------------------------------------------------------
// A bad index or label found by a kernel is recorded in the device's fault record (the first one wins) instead of
// being read back at once: the op never waits for the device. The record travels with the next read of device data
// (copy_to_host, synchronize, and an asynchronous read, whose block carries a copy of it after the bytes), which then throws mae::Error describing it; MAE_CUDA_CHECK_INDICES=1 makes the op
// that received the bad value wait and throw itself (for debugging).

struct Fault {
  unsigned long long key;  // kNoFault, or (position << 32) | (uint32_t) value
  int n;                   // the valid range is [0, n)
  int op;                  // FaultOp
};
enum FaultOp : int { kFaultGather = 0, kFaultScatter = 1, kFaultLabel = 2 };
constexpr unsigned long long kNoFault = ~0ull;

__host__ __device__ __forceinline__ void record_fault(Fault* f, int op, int64_t pos, int32_t value, int64_t n) {
  const unsigned long long key = ((unsigned long long)(uint32_t)pos << 32) | (uint32_t)value;
#ifdef __CUDA_ARCH__
  const bool first = atomicCAS(&f->key, kNoFault, key) == kNoFault;
#else
  const bool first = f->key == kNoFault;  // host emulation: one lane at a time
  if (first) f->key = key;
#endif
  if (first) {
    f->n = (int)n;
    f->op = op;
  }
}

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
  Fault* fault = nullptr;        // the device's fault record (device memory)
  Fault* fault_host = nullptr;   // pinned host copy of it, read with every copy_to_host
  std::mutex read_mu;            // one copy_to_host at a time (they share fault_host)
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

// ---- host waits and copies (runtime.cu) ------------------------------------------------------------------------------
// Every wait of the host for the device goes through wait_stream(_of) or wait_event, which count it (sync_count): a test
// counts the waits of a training step, and a scan of native/cuda checks that nothing else waits.

void wait_stream(Context& c, const char* what);
// the same for another stream of `device` (the NCCL communicator's)
void wait_stream_of(int device, cudaStream_t stream, const char* what);
void wait_event(int device, cudaEvent_t e, const char* what);
uint64_t sync_count(int device);
// dst (host) = src (device) after the queued work; waits, and throws the pending device fault if there is one
void download(Context& c, void* dst, const void* src, size_t bytes);
// dst (device) = src (host): src goes into pinned staging memory first, so this returns at once and src may be
// reused; the copy is queued on the stream (no wait)
void upload(Context& c, void* dst, const void* src, size_t bytes);
// the asynchronous read of mae::Ops (read_begin queues the copy into pinned memory; read_end waits for it)
void* read_begin(int device, const void* src, size_t bytes);
void read_end(void* handle, void* dst);
// after an op whose kernels may record a fault: with MAE_CUDA_CHECK_INDICES=1 waits and throws it now
void check_fault_now(Context& c);

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

// A read-only float32 or bfloat16 array; the dtype test is uniform across a launch, so it costs a predicate.
struct Src {
  const void* p;
  int bf16;
  __host__ __device__ __forceinline__ float operator[](int64_t i) const {
    return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
  }
};

// A writable float32 or bfloat16 array.
struct Dst {
  void* p;
  int bf16;
  __host__ __device__ __forceinline__ void set(int64_t i, float v) const {
    if (bf16)
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
    else
      static_cast<float*>(p)[i] = v;
  }
  __host__ __device__ __forceinline__ float get(int64_t i) const {
    return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
  }
};

inline Src src(const TensorView& v) { return Src{v.data, v.dtype == DType::BF16 ? 1 : 0}; }
inline Dst dst(const TensorView& v) { return Dst{v.data, v.dtype == DType::BF16 ? 1 : 0}; }

// ---- typed element access, 1 or 8 at a time (host and device: tools emulate the kernels built on them) ---------------
// The vectorised kernels are templates over the element types (float or __nv_bfloat16): 8 consecutive elements
// move as one 16-byte access (bfloat16) or two (float32). Their pointers must be 16-byte aligned at element indices
// that are multiples of 8, which holds for tensors (cudaMalloc'd, whole) when the row length is a multiple of 8;
// the host side checks this before choosing a vectorised kernel.

using bf16_t = __nv_bfloat16;

__host__ __device__ __forceinline__ float bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

__host__ __device__ __forceinline__ float ld(const float* p, uint32_t i) { return p[i]; }
__host__ __device__ __forceinline__ float ld(const bf16_t* p, uint32_t i) { return __bfloat162float(p[i]); }
__host__ __device__ __forceinline__ void st(float* p, uint32_t i, float v) { p[i] = v; }
__host__ __device__ __forceinline__ void st(bf16_t* p, uint32_t i, float v) { p[i] = __float2bfloat16_rn(v); }

__host__ __device__ __forceinline__ void load8(const float* p, float v[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__host__ __device__ __forceinline__ void load8(const bf16_t* p, float v[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
  for (int k = 0; k < 4; k++) {
    v[2 * k] = bits_float(w[k] << 16);  // the element at the lower address is the low half (little endian)
    v[2 * k + 1] = bits_float(w[k] & 0xffff0000u);
  }
}
__host__ __device__ __forceinline__ void store8(float* p, const float v[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
__host__ __device__ __forceinline__ void store8(bf16_t* p, const float v[8]) {
  uint32_t w[4];
  for (int k = 0; k < 4; k++)
    w[k] = (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(v[2 * k])) |
           ((uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(v[2 * k + 1])) << 16);
  *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
}

// The threads of a 1-D launch as a grid-stride loop sees them: this thread's index and the thread count. Kernel
// bodies take it as an argument (kernel: lanes_of_launch()), so a host program can run a body for every lane.
struct Lanes {
  uint32_t first, stride;
};
#ifdef __CUDACC__
__device__ __forceinline__ Lanes lanes_of_launch() {
  return Lanes{blockIdx.x * blockDim.x + threadIdx.x, gridDim.x * blockDim.x};
}
#endif

// whether a pointer may be read or written 8 elements at a time from element 0
inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
// counts that 32-bit indexing covers (with room for i + stride)
inline bool fits32(int64_t n) { return n >= 0 && n < (int64_t)1 << 31; }

// whether the 16-byte kernels may run over n elements of these arrays
inline bool vec_ok(int64_t n, std::initializer_list<const void*> ps) {
  if (!vector_enabled() || !fits32(n)) return false;
  for (const void* p : ps)
    if (!aligned16(p)) return false;
  return true;
}

// Calls f(T{}) with T = float or __nv_bfloat16 for a dtype (float32 or bfloat16).
template <typename F>
void with_type(DType t, F&& f) {
  if (t == DType::BF16)
    f(bf16_t{});
  else
    f(float{});
}

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

// The row chunks of a two-stage column reduction (stage 1: a block per chunk of rows and 32 or 256 columns writes
// partial sums; stage 2 adds the chunks in order): enough blocks to fill the device, at most 65535 chunks, `per`
// rows in each but the last.
struct RowChunks {
  int64_t chunks, per;
};
inline RowChunks row_chunks(const Context& c, int64_t rows, int64_t col_blocks) {
  int64_t chunks = ceil_div(4 * (int64_t)c.sm_count, col_blocks);
  chunks = std::max<int64_t>(1, std::min<int64_t>(std::min<int64_t>(chunks, ceil_div(rows, 32)), 65535));
  const int64_t per = ceil_div(rows, chunks);
  return {ceil_div(rows, per), per};
}

// ---- shared kernels used by several op families (elementwise.cu) ----------------------------------------------

// y[j] = scale * sum_i x[i * n + j] for j < n, rows = x.numel / n, accumulated in float32 in a fixed order.
void column_sum(Context& c, Src x, int64_t rows, int64_t n, float scale, Dst y, const char* name);
// y[i, j] += b[j] for a [rows, n] matrix (the bias when cuBLASLt's epilogue cannot take it).
void add_bias_rows(Context& c, Dst y, Src b, int64_t rows, int64_t n);
// dst[i] = src[i], converting dtypes.
void convert_n(Context& c, Dst d, Src s, int64_t n);
// stage 2 of a column reduction: y[j] = scale * sum_k partial[k * n + j] over the chunks k in order.
void sum_partials(Context& c, const float* partial, int64_t chunks, int64_t n, float scale, Dst y, const char* name);

}  // namespace mae::cuda
