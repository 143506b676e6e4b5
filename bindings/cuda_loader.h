// Run-time loading of the CUDA backend: libmae_cuda.so (native/cuda) is opened with dlopen from the folder that
// holds mae.node (or from $MAE_CUDA_LIB), only if it is there, and asked for its op tables. Whatever goes wrong
// (library not built, no driver, driver too old, no device, cuBLASLt not found) is recorded as a reason that
// info() reports and that every request for a CUDA device throws. Nothing here needs the CUDA toolkit.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "../native/core/ops.h"
#include "../native/cuda/mae_cuda.h"

namespace mae {

struct CudaDeviceFacts {
  int index = 0;
  std::string name;
  int major = 0, minor = 0;
  double total_memory = 0;
  int multiprocessors = 0;
  bool usable = false;
};

struct CudaState {
  bool library_found = false;  // libmae_cuda.so exists where we looked
  bool available = false;      // loaded, initialised, at least one usable device
  std::string reason;          // why not available
  std::string library;         // where we looked for / found libmae_cuda.so
  int driver_version = 0, runtime_version = 0;
  std::string cublaslt_path;
  size_t cublaslt_version = 0;
  std::string archs;
  std::vector<CudaDeviceFacts> devices;
  const MaeCudaApi* api = nullptr;
  void* handle = nullptr;      // the dlopen handle of libmae_cuda.so (kept when its init fails: NCCL is found through it)
};

// Loads and initialises the CUDA backend on first use (thread-safe); later calls return the same state.
const CudaState& cuda_state();

// "cpu", "cuda" (device 0) or "cuda:N"; throws mae::Error for anything else.
Device parse_device(const std::string& s);

// The op table for a device: the CPU table, or the CUDA table of that device. For CUDA, throws mae::Error saying
// why CUDA is unavailable or why that device cannot be used.
const Ops& ops_for_device(Device d);

// The CUDA services (copies, conversions, synchronisation); throws mae::Error with the reason when unavailable.
const MaeCudaApi& cuda_api();

// Copies src into dst (same shape), across devices and between float32 and bfloat16 (int32 only to int32).
void copy_tensor(const TensorView& src, const Ops& src_ops, TensorView& dst, const Ops& dst_ops);

// info().cuda: { available, reason?, library, driverVersion?, runtimeVersion?, cublasLt?, archs?, devices? }
Napi::Object cuda_info(Napi::Env env);

// Adds the device entry points to the module: to(x, device, dtype?), synchronize(device?), timerStart/timerStop,
// syncCount(device).
void register_cuda(Napi::Env env, Napi::Object exports);

}  // namespace mae
