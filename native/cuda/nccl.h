// The gradient all-reduce of GPU ranks, over NCCL, as a second C entry point of libmae_cuda.so (beside
// mae_cuda_init): the addon's communicator (bindings/comm.cpp) finds mae_cuda_nccl with dlsym in the library it
// already opened and receives an MaeNcclApi. NCCL itself (libnccl.so.2, 2.10 or newer, for ncclAvg and bfloat16) is
// opened with dlopen inside: the given path, $MAE_NCCL_LIB (a file, or a folder holding libnccl.so.2), then the
// loader's search path; so neither the addon nor the CUDA library links it.
//
// One bucket of gradients (all on the communicator's device):
//   allreduce_start  packs the gradients into one buffer (float32, or bfloat16 to halve the bytes) on the device's
//                    stream, records an event there, and queues ncclAllReduce(avg) of the buffer on the
//                    communicator's own stream after that event: the device stream goes on with backward.
//   query            whether the all-reduce has finished on the device (never blocks; the watchdog uses it).
//   finish           orders the device stream after the all-reduce (an event, no host wait) and copies the averages
//                    back into the gradients, so the optimizer step that follows sees them.
//   release          frees the buffer and events once query said done and finish was called.
// Every function throws mae::Error naming the NCCL or CUDA error; abort ends the communicator's pending work
// (ncclCommAbort) so that a device stream waiting on it can go on.
//
// This header must compile without the CUDA toolkit: the addon includes it with the plain C++ compiler.
#pragma once
#include <cstddef>

#include "../core/tensor.h"

#define MAE_NCCL_ABI_VERSION 1

struct MaeNcclWork;
struct MaeNcclComm;

struct MaeNcclApi {
  int abi_version;   // MAE_NCCL_ABI_VERSION
  int version;       // ncclGetVersion(), e.g. 22105 for 2.21.5
  const char* path;  // the libnccl.so.2 that was opened
  // ncclGetUniqueId: 128 bytes for rank 0 to give every rank
  void (*unique_id)(char id[128]);
  // ncclCommInitRank on `device` (made current), with its own stream
  MaeNcclComm* (*comm_init)(int device, int nranks, int rank, const char id[128]);
  MaeNcclWork* (*allreduce_start)(MaeNcclComm* comm, const mae::TensorView* grads, int count, int bf16);
  int (*query)(MaeNcclComm* comm, MaeNcclWork* work);  // 1 done, 0 pending
  void (*finish)(MaeNcclComm* comm, MaeNcclWork* work);
  void (*release)(MaeNcclComm* comm, MaeNcclWork* work);
  void (*abort)(MaeNcclComm* comm);
};

extern "C" {
// Opens NCCL (once; `path` may be null). Returns 0 and sets *api, or a non-zero code and the reason in err.
int mae_cuda_nccl(int abi_version, const char* path, const MaeNcclApi** api, char* err, size_t errlen);
typedef int (*mae_cuda_nccl_fn)(int, const char*, const MaeNcclApi**, char*, size_t);
}
