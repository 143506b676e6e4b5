// The C entry point of libmae_cuda.so, shared by the library and the addon's loader (bindings/cuda_loader.cpp).
// The addon opens the library with dlopen at run time and calls mae_cuda_init once; on success it receives an
// MaeCudaApi: one op table per visible CUDA device (native/core/ops.h) plus the few device services that are not
// ops (device-to-device copies, dtype conversion, synchronisation, device facts). On failure mae_cuda_init writes
// the reason (no driver, driver too old, no device, cuBLASLt not found, ...) into err.
//
// This header must compile without the CUDA toolkit: the addon includes it with the plain C++ compiler.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../core/ops.h"

#define MAE_CUDA_ABI_VERSION 3

struct MaeCudaDevice {
  int index;
  char name[256];
  int major, minor;          // compute capability
  uint64_t total_memory;     // bytes
  int multiprocessors;
  int usable;                // 1 when this build has kernels for it (compute capability 8.0 or newer)
};

struct MaeCudaApi {
  int abi_version;           // MAE_CUDA_ABI_VERSION
  int device_count;          // visible devices (usable or not)
  int driver_version;        // e.g. 13000 for CUDA 13.0 (cudaDriverGetVersion)
  int runtime_version;       // the CUDA runtime this library was linked with (static)
  const char* cublaslt_path; // the cuBLASLt library that was opened
  size_t cublaslt_version;   // cublasLtGetVersion(), e.g. 130000
  const char* archs;         // the GPU architectures compiled in, e.g. "sm_80 sm_86 sm_90 compute_90"
  // The op table of device i (0 <= i < device_count). Throws mae::Error when the device is not usable.
  const mae::Ops* (*ops)(int device);
  // Device facts; returns 0 on success.
  int (*device_info)(int device, MaeCudaDevice* out);
  // dst = src, both on `device`, ordered on the device's stream. Throws mae::Error.
  void (*copy_device)(int device, void* dst, const void* src, size_t bytes);
  // dst[i] = (dst_type) src[i] for n elements of float32/bfloat16 on `device`; int32 only to int32. Throws.
  void (*convert)(int device, void* dst, mae::DType dst_type, const void* src, mae::DType src_type, size_t n);
  // Waits for all work queued on the device's stream; throws mae::Error with the first pending kernel error.
  void (*synchronize)(int device);
  // GPU time of queued work: timer_start records an event on the device's stream; timer_stop records a second one,
  // waits for it and returns the milliseconds between the two (cudaEventElapsedTime). Throws mae::Error.
  void (*timer_start)(int device);
  double (*timer_stop)(int device);
  // How many times the host has waited for the device (stream or event synchronisations, copies to the host)
  // since the library started.
  uint64_t (*sync_count)(int device);
};

extern "C" {
// Returns 0 and sets *api on success; otherwise a non-zero code and a message in err (always NUL-terminated).
// Safe to call more than once (later calls return the same api or the same error).
int mae_cuda_init(int abi_version, const MaeCudaApi** api, char* err, size_t errlen);
typedef int (*mae_cuda_init_fn)(int, const MaeCudaApi**, char*, size_t);
}
