// The allocator interface every backend provides: a caching allocator that keeps freed blocks in size classes and
// hands them out again, so a training step that frees and re-creates the same activations stops calling the
// system allocator after the first step. Out-of-memory throws mae::Error with the requested size.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mae {

struct AllocatorStats {
  int64_t allocated_bytes = 0;  // handed out and not yet returned
  int64_t cached_bytes = 0;     // returned and kept for reuse
  int64_t peak_bytes = 0;       // highest allocated_bytes seen
};

struct Allocator {
  void* (*alloc)(size_t bytes);
  void (*free)(void* ptr, size_t bytes);
  void (*empty_cache)();
  AllocatorStats (*stats)();
};

}  // namespace mae
