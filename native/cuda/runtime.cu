// The CUDA runtime side of the backend: errors, per-device contexts, the caching device allocator, the host's waits
// (counted) and copies (pinned staging), device faults, and the C entry point mae_cuda_init that the addon calls
// after dlopen (see mae_cuda.h).
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "common.cuh"
#include "cublaslt.h"
#include "mae_cuda.h"

#ifndef MAE_CUDA_ARCH_LIST
#define MAE_CUDA_ARCH_LIST "unknown"
#endif

namespace mae::cuda {

const Ops* ops_for(int device);  // ops_table.cu

// ---- errors ------------------------------------------------------------------------------------------------------

void throw_cuda(cudaError_t e, const char* what, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so that it is not reported again by the next launch check
  const char* base = std::strrchr(file, '/');
  throw Error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " + what +
              " [" + (base ? base + 1 : file) + ":" + std::to_string(line) + "]");
}

// ---- host waits ----------------------------------------------------------------------------------------------------
// The only places in native/cuda where the host waits for the device (test/cuda/syncs.test.ts scans for others).

namespace {
std::atomic<uint64_t> g_syncs[kMaxDevices];
int current_device() {
  int d = 0;
  cudaGetDevice(&d);
  return d;
}
}  // namespace

uint64_t sync_count(int device) { return device >= 0 && device < kMaxDevices ? g_syncs[device].load() : 0; }

void wait_stream_of(int device, cudaStream_t stream, const char* what) {
  g_syncs[device]++;
  const cudaError_t e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(std::string(what) + " on cuda:" + std::to_string(device) + ": " + cudaGetErrorName(e) + " (" +
                cudaGetErrorString(e) + ")");
  }
}

void wait_stream(Context& c, const char* what) { wait_stream_of(c.device, c.stream, what); }

void wait_event(int device, cudaEvent_t ev, const char* what) {
  g_syncs[device]++;
  const cudaError_t e = cudaEventSynchronize(ev);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw Error(std::string(what) + " on cuda:" + std::to_string(device) + ": " + cudaGetErrorName(e) + " (" +
                cudaGetErrorString(e) + ")");
  }
}

void check_launch(const char* kernel, cudaStream_t stream) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw Error(std::string("CUDA kernel ") + kernel + " failed to launch: " + cudaGetErrorName(e) + " (" +
                cudaGetErrorString(e) + ")");
  // MAE_CUDA_SYNC=1 waits after every launch, so that a fault is reported by the kernel that caused it
  if (env_on("MAE_CUDA_SYNC")) wait_stream(context(current_device()), (std::string("CUDA kernel ") + kernel).c_str());
}

// ---- contexts ----------------------------------------------------------------------------------------------------

namespace {

__global__ void probe_kernel(int* p) {
  if (p) *p = 1;
}

std::mutex g_ctx_mu;
Context* g_ctx[kMaxDevices] = {};
thread_local int t_current = -1;
int g_device_count = 0;

}  // namespace

void use_device(int device) {
  if (t_current != device) {
    MAE_CUDA_CHECK(cudaSetDevice(device));
    t_current = device;
  }
}

Context& context(int device) {
  if (device < 0 || device >= g_device_count || device >= kMaxDevices)
    throw Error("cuda:" + std::to_string(device) + " does not exist (" + std::to_string(g_device_count) +
                " CUDA device(s) visible)");
  use_device(device);
  Context* c = __atomic_load_n(&g_ctx[device], __ATOMIC_ACQUIRE);
  if (c) return *c;
  std::lock_guard<std::mutex> lock(g_ctx_mu);
  if (g_ctx[device]) return *g_ctx[device];
  auto* n = new Context();  // never freed: contexts live as long as the process
  n->device = device;
  cudaDeviceProp prop;
  MAE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  n->sm_count = prop.multiProcessorCount;
  n->major = prop.major;
  n->minor = prop.minor;
  n->smem_optin = prop.sharedMemPerBlockOptin;
  cudaFuncAttributes fa;
  cudaError_t e = cudaFuncGetAttributes(&fa, probe_kernel);
  if (e != cudaSuccess) {
    cudaGetLastError();
    delete n;
    throw Error(std::string("cuda:") + std::to_string(device) + " (" + prop.name + ", sm_" +
                std::to_string(prop.major) + std::to_string(prop.minor) +
                ") cannot run this build of libmae_cuda.so (compiled for " MAE_CUDA_ARCH_LIST "): " +
                cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  }
  MAE_CUDA_CHECK(cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking));
  MAE_CUDA_CHECK(cudaMalloc(&n->fault, sizeof(Fault)));
  MAE_CUDA_CHECK(cudaMemsetAsync(n->fault, 0xff, sizeof(Fault), n->stream));
  MAE_CUDA_CHECK(cudaHostAlloc(&n->fault_host, sizeof(Fault), cudaHostAllocDefault));
  __atomic_store_n(&g_ctx[device], n, __ATOMIC_RELEASE);
  return *n;
}

// ---- faults ------------------------------------------------------------------------------------------------------

namespace {

// throws the fault f (the device's record, just read back) if there is one, after clearing the device's record
void throw_fault(Context& c, const Fault f, bool deferred) {
  if (f.key == kNoFault) return;
  MAE_CUDA_CHECK(cudaMemsetAsync(c.fault, 0xff, sizeof(Fault), c.stream));
  const int64_t pos = (int64_t)(f.key >> 32);
  const int32_t value = (int32_t)(uint32_t)(f.key & 0xffffffffu);
  const std::string range = "[0, " + std::to_string(f.n) + ")";
  std::string msg = f.op == kFaultLabel
                        ? "label " + std::to_string(value) + " of row " + std::to_string(pos) + " is outside " + range
                        : "index value " + std::to_string(value) + " at position " + std::to_string(pos) +
                              " is outside " + range;
  if (deferred)
    msg = std::string("an earlier ") + (f.op == kFaultGather ? "gatherRows" : f.op == kFaultScatter ? "scatterAddRows" : "crossEntropy") +
          " call on cuda:" + std::to_string(c.device) + " received a bad value: " + msg +
          " (found at this read of device data; MAE_CUDA_CHECK_INDICES=1 makes the call itself throw)";
  throw Error(msg);
}

}  // namespace

void check_fault_now(Context& c) {
  if (!check_indices_now()) return;
  std::lock_guard<std::mutex> lock(c.read_mu);
  MAE_CUDA_CHECK(cudaMemcpyAsync(c.fault_host, c.fault, sizeof(Fault), cudaMemcpyDeviceToHost, c.stream));
  wait_stream(c, "checking indices");
  throw_fault(c, *c.fault_host, false);
}

void download(Context& c, void* dst, const void* src, size_t bytes) {
  std::lock_guard<std::mutex> lock(c.read_mu);
  if (bytes) MAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c.stream));
  MAE_CUDA_CHECK(cudaMemcpyAsync(c.fault_host, c.fault, sizeof(Fault), cudaMemcpyDeviceToHost, c.stream));
  wait_stream(c, "copy to the host");
  throw_fault(c, *c.fault_host, true);
}

// ---- caching allocator -------------------------------------------------------------------------------------------
// Blocks come from cudaMalloc (256-byte aligned, which cuBLASLt's default alignment preference expects) and are
// rounded up to a size class: multiples of 512 bytes up to 1 MiB, then of max(1 MiB, 1/8 of the next power of two).
// Freed blocks are kept per class and handed out again without synchronising (see common.cuh). When cudaMalloc
// fails, the cache is released and the allocation tried once more; then mae::Error("CUDA out of memory ...").
// MAE_CUDA_DEBUG_ALLOC=1 (read once): every new block and every freed block is filled with 0xff bytes (NaN in float32
// and bfloat16) on the stream, so that an output element a kernel never writes reads back as NaN.

namespace {

struct Pool {
  std::mutex mu;
  std::map<size_t, std::vector<void*>> cache;
  AllocatorStats st;
};
Pool g_pool[kMaxDevices];

size_t size_class(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes <= (1u << 20)) return (bytes + 511) / 512 * 512;
  size_t p = 1;
  while (p < bytes) p <<= 1;
  size_t step = p / 8 > (1u << 20) ? p / 8 : (1u << 20);
  return (bytes + step - 1) / step * step;
}

std::string mib(double b) {
  char s[64];
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(s, sizeof s, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else
    std::snprintf(s, sizeof s, "%.1f MiB", b / (1024.0 * 1024));
  return s;
}

bool debug_alloc() {
  static const bool on = env_on("MAE_CUDA_DEBUG_ALLOC");
  return on;
}

void poison(int device, void* p, size_t bytes) {
  MAE_CUDA_CHECK(cudaMemsetAsync(p, 0xff, bytes, context(device).stream));
}

void release_cache(int device, Pool& pool) {
  // caller holds pool.mu
  if (pool.cache.empty()) return;
  use_device(device);
  g_syncs[device]++;  // cudaFree waits for the device
  for (auto& [cls, blocks] : pool.cache)
    for (void* p : blocks) cudaFree(p);  // cudaFree waits for the device: no queued kernel still uses p
  cudaGetLastError();
  pool.cache.clear();
  pool.st.cached_bytes = 0;
}

}  // namespace

void* device_alloc(int device, size_t bytes) {
  Pool& pool = g_pool[device];
  const size_t cls = size_class(bytes);
  std::lock_guard<std::mutex> lock(pool.mu);
  auto it = pool.cache.find(cls);
  if (it != pool.cache.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    pool.st.cached_bytes -= cls;
    pool.st.allocated_bytes += cls;
    if (pool.st.allocated_bytes > pool.st.peak_bytes) pool.st.peak_bytes = pool.st.allocated_bytes;
    return p;
  }
  use_device(device);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, cls);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    release_cache(device, pool);
    e = cudaMalloc(&p, cls);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    cudaGetLastError();
    if (e == cudaErrorMemoryAllocation)
      throw Error("CUDA out of memory on cuda:" + std::to_string(device) + ": could not allocate " + mib((double)cls) +
                  " (tensors hold " + mib((double)pool.st.allocated_bytes) + "; the device has " +
                  mib((double)free_b) + " free of " + mib((double)total_b) +
                  "). Use a smaller batch, dispose tensors sooner, or free other processes' GPU memory.");
    throw Error("cudaMalloc of " + mib((double)cls) + " on cuda:" + std::to_string(device) + " failed: " +
                cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  }
  pool.st.allocated_bytes += cls;
  if (pool.st.allocated_bytes > pool.st.peak_bytes) pool.st.peak_bytes = pool.st.allocated_bytes;
  if (debug_alloc()) poison(device, p, cls);
  return p;
}

void device_free(int device, void* p, size_t bytes) {
  if (!p) return;
  Pool& pool = g_pool[device];
  const size_t cls = size_class(bytes);
  if (debug_alloc()) poison(device, p, cls);
  std::lock_guard<std::mutex> lock(pool.mu);
  pool.cache[cls].push_back(p);
  pool.st.allocated_bytes -= cls;
  pool.st.cached_bytes += cls;
}

void device_empty_cache(int device) {
  Pool& pool = g_pool[device];
  std::lock_guard<std::mutex> lock(pool.mu);
  release_cache(device, pool);
}

AllocatorStats device_stats(int device) {
  Pool& pool = g_pool[device];
  std::lock_guard<std::mutex> lock(pool.mu);
  return pool.st;
}

namespace {
template <int D>
void* alloc_d(size_t b) {
  return device_alloc(D, b);
}
template <int D>
void free_d(void* p, size_t b) {
  device_free(D, p, b);
}
template <int D>
void empty_d() {
  device_empty_cache(D);
}
template <int D>
AllocatorStats stats_d() {
  return device_stats(D);
}
template <int D>
Allocator alloc_table() {
  return Allocator{alloc_d<D>, free_d<D>, empty_d<D>, stats_d<D>};
}
}  // namespace

Allocator allocator_for(int device) {
  static_assert(kMaxDevices == 8, "allocator_for lists 8 devices");
  switch (device) {
    case 0: return alloc_table<0>();
    case 1: return alloc_table<1>();
    case 2: return alloc_table<2>();
    case 3: return alloc_table<3>();
    case 4: return alloc_table<4>();
    case 5: return alloc_table<5>();
    case 6: return alloc_table<6>();
    case 7: return alloc_table<7>();
  }
  throw Error("cuda:" + std::to_string(device) + ": at most 8 devices are supported");
}

// ---- pinned staging ----------------------------------------------------------------------------------------------
// Host-to-device copies go through page-locked blocks: the source is copied into a block on the host, the block is
// copied to the device on the stream and an event recorded after it; the block is free again once its event has
// completed (cudaEventQuery: no wait). Reads (read_begin) hold their block until read_end; the block also takes the
// device's fault record, copied after the bytes, which read_end checks as copy_to_host does. Blocks are sized as the
// device allocator's size classes and kept for reuse; when the pool passes kPinnedCap, an upload waits for a busy
// block rather than pin more memory. Where page-locked memory cannot be had, an upload copies from the caller's
// memory directly (the driver stages it) and a read copies at once into memory of its own.

namespace {

constexpr size_t kPinnedCap = (size_t)2 << 30;

struct HostBlock {
  void* p = nullptr;
  size_t bytes = 0;
  cudaEvent_t done = nullptr;
  bool reading = false;  // held by a read until read_end
};

struct Staging {
  std::mutex mu;
  std::vector<HostBlock*> blocks;
  size_t total = 0;
};
Staging g_staging[kMaxDevices];

// a block of at least `bytes` that no copy uses any more (its event done), marked for the caller, or null when no
// page-locked memory can be had; caller holds mu
HostBlock* take_block(Context& c, Staging& st, size_t bytes, bool reading) {
  HostBlock* best = nullptr;
  for (HostBlock* b : st.blocks) {
    if (b->reading || b->bytes < bytes || (best && best->bytes <= b->bytes)) continue;
    const cudaError_t q = cudaEventQuery(b->done);
    if (q == cudaSuccess)
      best = b;
    else if (q != cudaErrorNotReady)
      MAE_CUDA_CHECK(q);
    else
      cudaGetLastError();
  }
  if (!best && st.total + size_class(bytes) > kPinnedCap) {
    for (HostBlock* b : st.blocks)
      if (!b->reading && b->bytes >= bytes) {
        wait_event(c.device, b->done, "waiting for a pinned staging block");
        best = b;
        break;
      }
  }
  if (!best) {
    void* p = nullptr;
    const size_t cls = size_class(bytes);
    if (cudaHostAlloc(&p, cls, cudaHostAllocDefault) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    best = new HostBlock();
    best->p = p;
    best->bytes = cls;
    MAE_CUDA_CHECK(cudaEventCreateWithFlags(&best->done, cudaEventDisableTiming));
    st.blocks.push_back(best);
    st.total += best->bytes;
  }
  best->reading = reading;
  return best;
}

struct PendingRead {
  int device;
  HostBlock* block;          // null: the bytes were copied at read_begin into `copy`
  size_t bytes;
  std::vector<unsigned char> copy;
};

// where a read's block holds the device's fault record, after the bytes read
size_t fault_offset(size_t bytes) { return (bytes + alignof(Fault) - 1) / alignof(Fault) * alignof(Fault); }

}  // namespace

void upload(Context& c, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  Staging& st = g_staging[c.device];
  std::lock_guard<std::mutex> lock(st.mu);
  HostBlock* b = take_block(c, st, bytes, false);
  if (!b) {  // from pageable memory: the driver stages it before the call returns
    MAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c.stream));
    return;
  }
  std::memcpy(b->p, src, bytes);
  MAE_CUDA_CHECK(cudaMemcpyAsync(dst, b->p, bytes, cudaMemcpyHostToDevice, c.stream));
  MAE_CUDA_CHECK(cudaEventRecord(b->done, c.stream));
}

void* read_begin(int device, const void* src, size_t bytes) {
  Context& c = context(device);
  Staging& st = g_staging[device];
  std::unique_lock<std::mutex> lock(st.mu);
  // the bytes, then the fault record as it stands after the ops before this read, in the same pinned block
  HostBlock* b = take_block(c, st, fault_offset(bytes) + sizeof(Fault), true);
  if (!b) {
    lock.unlock();
    auto* r = new PendingRead{device, nullptr, bytes, std::vector<unsigned char>(bytes)};
    try {
      download(c, r->copy.data(), src, bytes);
    } catch (...) {
      delete r;
      throw;
    }
    return r;
  }
  try {
    if (bytes) MAE_CUDA_CHECK(cudaMemcpyAsync(b->p, src, bytes, cudaMemcpyDeviceToHost, c.stream));
    MAE_CUDA_CHECK(cudaMemcpyAsync(static_cast<unsigned char*>(b->p) + fault_offset(bytes), c.fault, sizeof(Fault),
                                   cudaMemcpyDeviceToHost, c.stream));
    MAE_CUDA_CHECK(cudaEventRecord(b->done, c.stream));
  } catch (...) {
    b->reading = false;
    throw;
  }
  return new PendingRead{device, b, bytes, {}};
}

void read_end(void* handle, void* dst) {
  auto* r = static_cast<PendingRead*>(handle);
  if (!r->block) {
    if (r->bytes) std::memcpy(dst, r->copy.data(), r->bytes);
    delete r;
    return;
  }
  use_device(r->device);
  struct Release {  // the block goes back to the pool whatever happens
    PendingRead* r;
    ~Release() {
      std::lock_guard<std::mutex> lock(g_staging[r->device].mu);
      r->block->reading = false;
      delete r;
    }
  } release{r};
  wait_event(r->device, r->block->done, "reading a tensor");
  // a bad index or label given to an op before this read: its output read here is not what was asked for
  Fault f;
  std::memcpy(&f, static_cast<unsigned char*>(r->block->p) + fault_offset(r->bytes), sizeof(Fault));
  throw_fault(context(r->device), f, true);
  if (r->bytes) std::memcpy(dst, r->block->p, r->bytes);
}

// ---- services of the API table ------------------------------------------------------------------------------------

namespace {

void api_copy_device(int device, void* dst, const void* src, size_t bytes) {
  Context& c = context(device);
  if (bytes == 0 || dst == src) return;
  MAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c.stream));
}

void api_convert(int device, void* d, DType dt, const void* s, DType st, size_t n) {
  Context& c = context(device);
  if (n == 0) return;
  if (dt == st) {
    MAE_CUDA_CHECK(cudaMemcpyAsync(d, s, n * dtype_size(dt), cudaMemcpyDeviceToDevice, c.stream));
    return;
  }
  if (dt == DType::I32 || st == DType::I32)
    throw Error(std::string("cannot convert ") + dtype_name(st) + " to " + dtype_name(dt));
  convert_n(c, Dst{d, dt == DType::BF16}, Src{s, st == DType::BF16}, (int64_t)n);
}

void api_synchronize(int device) {
  Context& c = context(device);
  download(c, nullptr, nullptr, 0);  // waits, and reports a pending device fault
}

// the two events of each device's timer, created on first use
cudaEvent_t g_timer[kMaxDevices][2] = {};

void api_timer_start(int device) {
  Context& c = context(device);
  for (cudaEvent_t& e : g_timer[device])
    if (!e) MAE_CUDA_CHECK(cudaEventCreate(&e));
  MAE_CUDA_CHECK(cudaEventRecord(g_timer[device][0], c.stream));
}

double api_timer_stop(int device) {
  Context& c = context(device);
  if (!g_timer[device][0]) throw Error("timer_stop on cuda:" + std::to_string(device) + " without timer_start");
  MAE_CUDA_CHECK(cudaEventRecord(g_timer[device][1], c.stream));
  wait_event(device, g_timer[device][1], "timer_stop");
  float ms = 0;
  MAE_CUDA_CHECK(cudaEventElapsedTime(&ms, g_timer[device][0], g_timer[device][1]));
  return ms;
}

std::vector<MaeCudaDevice> g_devices;

int api_device_info(int device, MaeCudaDevice* out) {
  if (device < 0 || device >= (int)g_devices.size() || !out) return 1;
  *out = g_devices[device];
  return 0;
}

const Ops* api_ops(int device) {
  if (device < 0 || device >= (int)g_devices.size())
    throw Error("cuda:" + std::to_string(device) + " does not exist (" + std::to_string(g_devices.size()) +
                " CUDA device(s) visible)");
  const MaeCudaDevice& d = g_devices[device];
  if (!d.usable)
    throw Error(std::string("cuda:") + std::to_string(device) + " (" + d.name + ", compute capability " +
                std::to_string(d.major) + "." + std::to_string(d.minor) +
                ") is not supported: the CUDA backend needs compute capability 8.0 or newer");
  return ops_for(device);
}

MaeCudaApi g_api;
int g_init_rc = -1;
std::string g_init_err;
std::once_flag g_init_once;

std::string version_str(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

void do_init() {
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  cudaGetLastError();
  if (drv == 0) {
    g_init_rc = 2;
    g_init_err = "no NVIDIA driver was found (libcuda.so.1 could not be loaded); install the NVIDIA driver to use a GPU";
    return;
  }
  if (drv / 1000 < rt / 1000) {
    g_init_rc = 3;
    g_init_err = "the NVIDIA driver is too old: it supports CUDA " + version_str(drv) +
                 ", this build of libmae_cuda.so needs CUDA " + version_str(rt) +
                 " (driver major version " + std::to_string(rt / 1000) +
                 ".x). Update the driver, or rebuild native/cuda with a CUDA toolkit no newer than the driver "
                 "(cmake -S native/cuda -B build-cuda-local && cmake --build build-cuda-local, then set MAE_CUDA_LIB)";
    return;
  }
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    g_init_rc = e == cudaErrorNoDevice ? 4 : 5;
    g_init_err = e == cudaErrorNoDevice
                     ? std::string("no CUDA device is visible (cudaErrorNoDevice; check CUDA_VISIBLE_DEVICES)")
                     : std::string("the CUDA driver could not be initialised: ") + cudaGetErrorName(e) + " (" +
                           cudaGetErrorString(e) + ")";
    return;
  }
  if (n <= 0) {
    g_init_rc = 4;
    g_init_err = "no CUDA device is visible";
    return;
  }
  if (n > kMaxDevices) n = kMaxDevices;
  g_devices.clear();
  int usable = 0;
  for (int i = 0; i < n; i++) {
    cudaDeviceProp p;
    MaeCudaDevice d{};
    d.index = i;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      cudaGetLastError();
      std::snprintf(d.name, sizeof d.name, "unknown device");
    } else {
      std::snprintf(d.name, sizeof d.name, "%s", p.name);
      d.major = p.major;
      d.minor = p.minor;
      d.total_memory = p.totalGlobalMem;
      d.multiprocessors = p.multiProcessorCount;
      d.usable = p.major >= 8 ? 1 : 0;
    }
    usable += d.usable;
    g_devices.push_back(d);
  }
  g_device_count = n;
  if (!usable) {
    g_init_rc = 6;
    g_init_err = std::string("no usable CUDA device: ") + g_devices[0].name + " has compute capability " +
                 std::to_string(g_devices[0].major) + "." + std::to_string(g_devices[0].minor) +
                 "; the CUDA backend needs 8.0 (Ampere) or newer";
    return;
  }
  std::string why;
  if (!lt::load(&why)) {
    g_init_rc = 7;
    g_init_err = why;
    return;
  }
  g_api.abi_version = MAE_CUDA_ABI_VERSION;
  g_api.device_count = n;
  g_api.driver_version = drv;
  g_api.runtime_version = rt;
  g_api.cublaslt_path = lt::path().c_str();
  g_api.cublaslt_version = lt::api().GetVersion();
  g_api.archs = MAE_CUDA_ARCH_LIST;
  g_api.ops = api_ops;
  g_api.device_info = api_device_info;
  g_api.copy_device = api_copy_device;
  g_api.convert = api_convert;
  g_api.synchronize = api_synchronize;
  g_api.timer_start = api_timer_start;
  g_api.timer_stop = api_timer_stop;
  g_api.sync_count = sync_count;
  g_init_rc = 0;
}

}  // namespace

}  // namespace mae::cuda

extern "C" __attribute__((visibility("default"))) int mae_cuda_init(int abi_version, const MaeCudaApi** api,
                                                                    char* err, size_t errlen) {
  using namespace mae::cuda;
  auto fail = [&](int rc, const std::string& msg) {
    if (err && errlen) {
      std::snprintf(err, errlen, "%s", msg.c_str());
    }
    return rc;
  };
  if (abi_version != MAE_CUDA_ABI_VERSION)
    return fail(1, "libmae_cuda.so speaks ABI version " + std::to_string(MAE_CUDA_ABI_VERSION) +
                       " but the addon expects " + std::to_string(abi_version) + "; rebuild both together");
  try {
    std::call_once(g_init_once, do_init);
  } catch (const std::exception& e) {
    return fail(8, std::string("CUDA initialisation failed: ") + e.what());
  }
  if (g_init_rc != 0) return fail(g_init_rc, g_init_err);
  if (api) *api = &g_api;
  return 0;
}
