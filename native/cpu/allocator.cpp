// CPU caching allocator: 64-byte aligned blocks, sizes rounded up to a size class (multiples of 256 bytes up to
// 1 MiB, then of 1/8 of the next power of two), freed blocks kept per size class and handed out again. A mutex
// makes it safe from worker threads. Also the CPU's host copies (plain memcpy) and its read_begin/read_end.
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "../core/error.h"
#include "cpu.h"

namespace mae::cpu {
namespace {

// size class -> free blocks. Never destroyed: a Storage can be freed while the process exits, after the static
// destructors ran (one left in the shared-tensor table, bindings/share.cpp), so the cache must outlive them all;
// its blocks go back to the system with the process.
std::mutex mu;
std::map<size_t, std::vector<void*>>& cache = *new std::map<size_t, std::vector<void*>>;
AllocatorStats st;

size_t size_class(size_t bytes) {
  if (bytes <= (1u << 20)) return (bytes + 255) / 256 * 256;
  size_t p = 1;
  while (p < bytes) p <<= 1;
  size_t step = p / 8;
  return (bytes + step - 1) / step * step;
}

void* cpu_alloc(size_t bytes) {
  size_t cls = size_class(bytes == 0 ? 1 : bytes);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(cls);
    if (it != cache.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      st.cached_bytes -= cls;
      st.allocated_bytes += cls;
      if (st.allocated_bytes > st.peak_bytes) st.peak_bytes = st.allocated_bytes;
      return p;
    }
  }
  void* p = std::aligned_alloc(64, cls);
  if (!p) {
    // give the cache back to the system and try once more
    cpu::allocator.empty_cache();
    p = std::aligned_alloc(64, cls);
  }
  if (!p) throw Error("out of memory: could not allocate " + std::to_string(cls) + " bytes on the CPU");
  std::lock_guard<std::mutex> lock(mu);
  st.allocated_bytes += cls;
  if (st.allocated_bytes > st.peak_bytes) st.peak_bytes = st.allocated_bytes;
  return p;
}

void cpu_free(void* p, size_t bytes) {
  if (!p) return;
  blocked_weights_forget(p);
  size_t cls = size_class(bytes == 0 ? 1 : bytes);
  std::lock_guard<std::mutex> lock(mu);
  cache[cls].push_back(p);
  st.allocated_bytes -= cls;
  st.cached_bytes += cls;
}

void cpu_empty_cache() {
  std::lock_guard<std::mutex> lock(mu);
  for (auto& [cls, blocks] : cache)
    for (void* p : blocks) std::free(p);
  cache.clear();
  st.cached_bytes = 0;
}

AllocatorStats cpu_stats() {
  std::lock_guard<std::mutex> lock(mu);
  return st;
}

}  // namespace

const Allocator allocator = {cpu_alloc, cpu_free, cpu_empty_cache, cpu_stats};

// (an empty host buffer may be a null pointer, which memcpy may not be given even for 0 bytes)
void copy_bytes(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

// CPU work is finished when an op returns, so the asynchronous read copies at once into a buffer of its own
namespace {
struct HostRead {
  size_t bytes;
  std::vector<unsigned char> data;
};
}  // namespace

void* read_begin(const void* src, size_t bytes) {
  auto* r = new HostRead{bytes, std::vector<unsigned char>(bytes)};
  if (bytes) std::memcpy(r->data.data(), src, bytes);
  return r;
}

void read_end(void* handle, void* dst) {
  auto* r = static_cast<HostRead*>(handle);
  if (r->bytes) std::memcpy(dst, r->data.data(), r->bytes);
  delete r;
}

}  // namespace mae::cpu
