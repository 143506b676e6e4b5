// NCCL for the gradient all-reduce of GPU ranks (see nccl.h): NCCL opened at run time, a communicator per process
// with its own stream, and the bucket all-reduce ordered against the device's stream by events:
//   device stream:  ... backward of the bucket's layers | pack grads -> buffer | record ready | ... rest of backward
//   comm stream:                                          wait ready | ncclAllReduce(buffer, avg) | record done
//   device stream (finish):                                  wait done | unpack buffer -> grads | optimizer step
// The buffer is float32, or bfloat16 when the run computes in bf16 (half the bytes; gradients are converted on the
// way in and out). Our own minimal declarations of the NCCL API (nccl.h of NCCL 2.10+; these values are its ABI):
//   ncclResult_t ncclSuccess 0, ncclInProgress 7; ncclDataType_t ncclFloat32 7, ncclBfloat16 9; ncclRedOp_t ncclAvg 4;
//   ncclUniqueId is 128 bytes passed by value; ncclComm_t an opaque pointer.
#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "common.cuh"
#include "nccl.h"

namespace mae::cuda {

typedef int ncclResult_t;
typedef struct ncclComm* ncclComm_t;

namespace {

struct ncclUniqueId {
  char internal[128];
};
constexpr ncclResult_t ncclSuccess = 0;
constexpr int ncclFloat32 = 7;
constexpr int ncclBfloat16 = 9;
constexpr int ncclAvg = 4;

struct Nccl {
  ncclResult_t (*GetVersion)(int*);
  ncclResult_t (*GetUniqueId)(ncclUniqueId*);
  ncclResult_t (*CommInitRank)(ncclComm_t*, int nranks, ncclUniqueId id, int rank);
  ncclResult_t (*AllReduce)(const void*, void*, size_t count, int datatype, int op, ncclComm_t, cudaStream_t);
  ncclResult_t (*CommAbort)(ncclComm_t);
  ncclResult_t (*CommGetAsyncError)(ncclComm_t, ncclResult_t*);
  const char* (*GetErrorString)(ncclResult_t);
};

Nccl g_nccl{};
MaeNcclApi g_api{};
std::string g_path, g_reason;
int g_rc = -1;
std::once_flag g_once;

std::string nccl_error(ncclResult_t r) {
  const char* s = g_nccl.GetErrorString ? g_nccl.GetErrorString(r) : nullptr;
  return s ? std::string(s) : "ncclResult " + std::to_string(r);
}

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw Error(std::string("NCCL ") + what + " failed: " + nccl_error(r));
}

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

}  // namespace mae::cuda

struct MaeNcclComm {
  int device = 0;
  mae::cuda::ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
};

struct MaeNcclWork {
  std::vector<mae::TensorView> grads;
  void* buffer = nullptr;
  size_t bytes = 0;
  bool bf16 = false;
  cudaEvent_t ready = nullptr, done = nullptr;
  bool finished = false;  // the unpack is queued on the device stream
};

namespace mae::cuda {

namespace {

void api_unique_id(char id[128]) {
  ncclUniqueId u;
  check(g_nccl.GetUniqueId(&u), "ncclGetUniqueId");
  std::memcpy(id, u.internal, 128);
}

MaeNcclComm* api_comm_init(int device, int nranks, int rank, const char id[128]) {
  context(device);  // makes the device current and checks that this build can run on it
  auto* c = new MaeNcclComm();
  c->device = device;
  ncclUniqueId u;
  std::memcpy(u.internal, id, 128);
  try {
    MAE_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    check(g_nccl.CommInitRank(&c->comm, nranks, u, rank), "ncclCommInitRank");
  } catch (...) {
    if (c->stream) cudaStreamDestroy(c->stream);
    delete c;
    throw;
  }
  return c;
}

// copies `n` elements of src into dst, converting float32 <-> bfloat16 when the dtypes differ (device stream)
void copy_elements(Context& ctx, void* d, bool d_bf16, const void* s, bool s_bf16, int64_t n) {
  if (d_bf16 == s_bf16)
    MAE_CUDA_CHECK(cudaMemcpyAsync(d, s, (size_t)n * (d_bf16 ? 2 : 4), cudaMemcpyDeviceToDevice, ctx.stream));
  else
    convert_n(ctx, Dst{d, d_bf16 ? 1 : 0}, Src{s, s_bf16 ? 1 : 0}, n);
}

MaeNcclWork* api_allreduce_start(MaeNcclComm* c, const TensorView* grads, int count, int bf16) {
  Context& ctx = context(c->device);
  auto* w = new MaeNcclWork();
  w->grads.assign(grads, grads + count);
  w->bf16 = bf16 != 0;
  const size_t esz = w->bf16 ? 2 : 4;
  int64_t total = 0;
  for (const TensorView& g : w->grads) {
    if (g.device.type != DeviceType::CUDA || g.device.index != c->device)
      throw Error("NCCL all-reduce: a gradient is on another device than the communicator's cuda:" + std::to_string(c->device));
    total += g.numel();
  }
  try {
    w->bytes = (size_t)total * esz;
    w->buffer = device_alloc(c->device, w->bytes);
    int64_t off = 0;
    for (const TensorView& g : w->grads) {
      copy_elements(ctx, static_cast<char*>(w->buffer) + off * esz, w->bf16, g.data, g.dtype == DType::BF16, g.numel());
      off += g.numel();
    }
    MAE_CUDA_CHECK(cudaEventCreateWithFlags(&w->ready, cudaEventDisableTiming));
    MAE_CUDA_CHECK(cudaEventCreateWithFlags(&w->done, cudaEventDisableTiming));
    MAE_CUDA_CHECK(cudaEventRecord(w->ready, ctx.stream));
    MAE_CUDA_CHECK(cudaStreamWaitEvent(c->stream, w->ready, 0));
    check(g_nccl.AllReduce(w->buffer, w->buffer, (size_t)total, w->bf16 ? ncclBfloat16 : ncclFloat32, ncclAvg, c->comm, c->stream),
          "ncclAllReduce");
    MAE_CUDA_CHECK(cudaEventRecord(w->done, c->stream));
  } catch (...) {
    // the buffer goes back to the cache in the device stream's order; an all-reduce already queued on the
    // communicator's stream is waited for first
    try {
      wait_stream_of(c->device, c->stream, "NCCL all-reduce (after a failed start)");
    } catch (...) {
      // the first error is the one reported
    }
    if (w->buffer) device_free(c->device, w->buffer, w->bytes);
    if (w->ready) cudaEventDestroy(w->ready);
    if (w->done) cudaEventDestroy(w->done);
    delete w;
    throw;
  }
  return w;
}

int api_query(MaeNcclComm* c, MaeNcclWork* w) {
  use_device(c->device);
  ncclResult_t async = ncclSuccess;
  if (g_nccl.CommGetAsyncError(c->comm, &async) == ncclSuccess && async != ncclSuccess && async != 7 /* in progress */)
    throw Error("NCCL communicator on cuda:" + std::to_string(c->device) + " failed: " + nccl_error(async));
  const cudaError_t e = cudaEventQuery(w->done);
  if (e == cudaSuccess) return 1;
  if (e == cudaErrorNotReady) {
    cudaGetLastError();
    return 0;
  }
  throw_cuda(e, "cudaEventQuery (NCCL all-reduce)", __FILE__, __LINE__);
}

void api_finish(MaeNcclComm* c, MaeNcclWork* w) {
  Context& ctx = context(c->device);
  MAE_CUDA_CHECK(cudaStreamWaitEvent(ctx.stream, w->done, 0));
  const size_t esz = w->bf16 ? 2 : 4;
  int64_t off = 0;
  for (const TensorView& g : w->grads) {
    copy_elements(ctx, g.data, g.dtype == DType::BF16, static_cast<const char*>(w->buffer) + off * esz, w->bf16, g.numel());
    off += g.numel();
  }
  w->finished = true;
}

void api_release(MaeNcclComm* c, MaeNcclWork* w) {
  use_device(c->device);
  // the buffer's last use (the unpack) is queued on the device stream, so the caching allocator may hand it out
  // again in that stream's order; without finish the all-reduce may still be running and the stream is waited for
  if (!w->finished) {
    try {
      wait_stream_of(c->device, c->stream, "NCCL all-reduce (released unfinished)");
    } catch (...) {
      // a failed all-reduce was reported by api_query; the work is released all the same
    }
  }
  device_free(c->device, w->buffer, w->bytes);
  cudaEventDestroy(w->ready);
  cudaEventDestroy(w->done);
  cudaGetLastError();
  delete w;
}

void api_abort(MaeNcclComm* c) {
  use_device(c->device);
  if (c->comm) g_nccl.CommAbort(c->comm);
  c->comm = nullptr;
}

template <typename F>
void sym(void* h, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  if (!*out) *missing += (missing->empty() ? "" : ", ") + std::string(name);
}

void do_load(const char* given) {
  const char* env = std::getenv("MAE_NCCL_LIB");
  std::string file = given && *given ? std::string(given) : (env && *env ? std::string(env) : std::string("libnccl.so.2"));
  if (is_dir(file)) file += (file.back() == '/' ? "" : "/") + std::string("libnccl.so.2");
  void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    g_rc = 2;
    g_reason = "NCCL was not found (tried:\n  " + file + ": " + (e ? e : "not found") +
               ")\nInstall NVIDIA's libnccl2 package, or pip install nvidia-nccl-cu12 and set MAE_NCCL_LIB (--nccl-lib) "
               "to the nvidia/nccl/lib folder of that Python environment.";
    return;
  }
  std::string missing;
  sym(h, "ncclGetVersion", &g_nccl.GetVersion, &missing);
  sym(h, "ncclGetUniqueId", &g_nccl.GetUniqueId, &missing);
  sym(h, "ncclCommInitRank", &g_nccl.CommInitRank, &missing);
  sym(h, "ncclAllReduce", &g_nccl.AllReduce, &missing);
  sym(h, "ncclCommAbort", &g_nccl.CommAbort, &missing);
  sym(h, "ncclCommGetAsyncError", &g_nccl.CommGetAsyncError, &missing);
  sym(h, "ncclGetErrorString", &g_nccl.GetErrorString, &missing);
  Dl_info info;
  g_path = (g_nccl.GetVersion && dladdr(reinterpret_cast<void*>(g_nccl.GetVersion), &info) && info.dli_fname)
               ? info.dli_fname
               : file;
  if (!missing.empty()) {
    g_rc = 3;
    g_reason = "NCCL at " + g_path + " lacks " + missing;
    return;
  }
  int v = 0;
  g_nccl.GetVersion(&v);
  // 2.9 and newer report major * 10000 + minor * 100 + patch; older ones major * 1000 + minor * 100 + patch
  if (v < 21000) {
    g_rc = 4;
    g_reason = "NCCL at " + g_path + " is version " + std::to_string(v) + "; 2.10 or newer is needed (ncclAvg, bfloat16)";
    return;
  }
  g_api.abi_version = MAE_NCCL_ABI_VERSION;
  g_api.version = v;
  g_api.path = g_path.c_str();
  g_api.unique_id = api_unique_id;
  g_api.comm_init = api_comm_init;
  g_api.allreduce_start = api_allreduce_start;
  g_api.query = api_query;
  g_api.finish = api_finish;
  g_api.release = api_release;
  g_api.abort = api_abort;
  g_rc = 0;  // the library stays open for the life of the process
}

}  // namespace

}  // namespace mae::cuda

extern "C" __attribute__((visibility("default"))) int mae_cuda_nccl(int abi_version, const char* path,
                                                                    const MaeNcclApi** api, char* err, size_t errlen) {
  using namespace mae::cuda;
  auto fail = [&](int rc, const std::string& msg) {
    if (err && errlen) std::snprintf(err, errlen, "%s", msg.c_str());
    return rc;
  };
  if (abi_version != MAE_NCCL_ABI_VERSION)
    return fail(1, "libmae_cuda.so's NCCL entry speaks ABI version " + std::to_string(MAE_NCCL_ABI_VERSION) +
                       " but the addon expects " + std::to_string(abi_version) + "; rebuild both together");
  std::call_once(g_once, do_load, path);
  if (g_rc != 0) return fail(g_rc, g_reason);
  if (api) *api = &g_api;
  return 0;
}
