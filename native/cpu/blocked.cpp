// bf16 weight shadows in the blocked layouts of oneDNN's bf16 products (dnnl.cpp, matmul_weight).
//
// oneDNN's bf16 kernels (AVX512-BF16 and AMX alike) read the B operand in a blocked layout with pairs of bf16 along
// the product's K (on Zen 4 with oneDNN 2.6: BA16a64b2a); given a plain B they copy it into that layout inside every
// call. A Linear's weight W [N, K] is the B of two products a step, y = x W^T (fwd: B = W^T [K, N]) and dx = dy W
// (dx: B = W [N, K]), so the copies here are made once per optimizer step instead: AdamW registers each bf16 shadow
// it rewrites and marks its copies stale (blocked_weights_stale), and the next product of each role packs the shadow
// into the layout its primitive asks for (blocked_weights). benchmarks/README.md section 13 has the numbers.
//
// A layout comes as offsets (BlockedLayout, from the oneDNN memory descriptor): element (i, j) of B is at
// row_off[i] + col_off[j], which holds for every blocked layout (each block index belongs to one dimension).
// Packing writes every element of W; the layout's padding (K or N rounded up to a block) is zeroed when the copy is
// allocated and never written. On AVX-512 CPUs it moves tiles: for fwd, 16 rows of W by 16 pairs of columns
// transposed in registers, where the layout puts the 16 rows' words of a pair of k side by side; for dx, two rows of
// W interleaved 16 columns at a time, where it puts pairs of rows side by side and 16 columns in 16 words. oneDNN 2.6's
// AMX brgemm asks for the same bf16 layouts (BA16a64b2a, or 48, 32, 16 columns a block; the shapes it declines go to
// the AVX512-BF16 brgemm, same layouts), so the tiles serve there too; any other layout takes the element loop, which
// is right for all. Copies of 1 MiB and more are written past the caches (kStreamBytes).
//
// Entries are keyed by the shadow's data pointer and only AdamW registers one, so a product with any other bf16
// weight reads it plain. The allocator forgets a pointer when its block is freed (blocked_weights_forget), and the
// bindings' in-place writers that take bf16 tensors (fill, axpby) forget the tensors they write. The copies live
// outside the CPU allocator (2 bytes per weight and role; memoryStats' blockedWeightBytes) and go with their entry.
// MAE_CPU_BLOCKED_WEIGHTS=0 in the environment turns them off (every product reads its weight plain).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "../core/error.h"
#include "avx512.h"
#include "cpu.h"

namespace mae::cpu {

namespace {

struct Copy {
  std::shared_ptr<const BlockedLayout> layout;
  void* data = nullptr;
  bool stale = true;
};

struct Entry {
  int64_t N = 0, K = 0;
  Copy role[2];  // 0: fwd (B = W^T), 1: dx (B = W)
  Entry() = default;
  Entry(const Entry&) = delete;
  Entry& operator=(const Entry&) = delete;
  ~Entry() {
    for (Copy& c : role) std::free(c.data);
  }
};

const bool enabled = [] {
  const char* e = std::getenv("MAE_CPU_BLOCKED_WEIGHTS");
  return !(e && std::strcmp(e, "0") == 0);
}();

std::mutex mu;
// never destroyed, like the allocator's cache, whose free calls blocked_weights_forget even while the process exits
std::unordered_map<const void*, Entry>& entries = *new std::unordered_map<const void*, Entry>;
std::atomic<bool> any{false};  // whether an entry was ever made (the allocator's free skips the lock until then)

bool same(const BlockedLayout& a, const BlockedLayout& b) {
  return a.bytes == b.bytes && a.row_off == b.row_off && a.col_off == b.col_off;
}

#if defined(__x86_64__)
// Copies above this size are written past the caches (a larger one is read back from memory by its product anyway,
// and plain stores read every line before writing it: a third more time packing ViT-B's weights); smaller ones stay
// in the caches for their product.
constexpr size_t kStreamBytes = size_t(1) << 20;

// 64 bytes of a tile at p; streamed past the caches when `stream` and they fill one cache line
MAE_AVX512 inline void store_line(uint16_t* p, __m512i v, bool stream) {
  if (stream && reinterpret_cast<uintptr_t>(p) % 64 == 0)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(p), v);
  else
    _mm512_storeu_si512(p, v);
}

// fwd, rows n0 .. n0 + 15 of W: B[k][n] = W[n][k] at ok[k] + on[n]. Full tiles of 32 columns where the layout has
// the 16 rows' words of each pair of k side by side; returns the first column not done.
MAE_AVX512 int64_t fwd_tiles(const uint16_t* W, int64_t K, int64_t n0, const int64_t* on, const int64_t* ok,
                             uint16_t* dst, bool stream) {
  for (int i = 1; i < 16; i++)
    if (on[n0 + i] != on[n0] + 2 * i) return 0;
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    for (int p = 0; p < 16; p++)
      if (ok[k + 2 * p + 1] != ok[k + 2 * p] + 1) return k;
    __m512i r[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(W + (n0 + i) * K + k);
    transpose16(r);  // r[p]: the pair (k + 2p, k + 2p + 1) of the 16 rows
    for (int p = 0; p < 16; p++) store_line(dst + on[n0] + ok[k + 2 * p], r[p], stream);
  }
  return k;
}

// dx, rows n0 .. n1 of W by pairs: B[n][k] = W[n][k] at on[n] + ok[k]. Full tiles of 16 columns where the layout
// has the two rows' values of each k side by side and 16 consecutive k in 16 consecutive words, a tile of every
// pair before the next tile (the copies of one row lie a block's stride apart, a power of two that would make the
// writes of one row at a time fight for the same cache sets); returns the first column not done.
MAE_AVX512 int64_t dx_tiles(const uint16_t* W, int64_t K, int64_t n0, int64_t n1, const int64_t* on, const int64_t* ok,
                            uint16_t* dst, bool stream) {
  for (int64_t n = n0; n + 1 < n1; n += 2)
    if (on[n + 1] != on[n] + 1) return 0;
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    for (int i = 1; i < 16; i++)
      if (ok[k + i] != ok[k] + 2 * i) return k;
    for (int64_t n = n0; n + 1 < n1; n += 2) {
      const __m256i a = _mm256_loadu_si256((const __m256i*)(W + n * K + k));
      const __m256i b = _mm256_loadu_si256((const __m256i*)(W + (n + 1) * K + k));
      store_line(dst + on[n] + ok[k], pairs16(a, b), stream);
    }
  }
  return k;
}
#endif

// rows n0 .. n0 + 15 (or to N) of the shadow W [N, K] into dst: W[n][k] at on[n] + ok[k]
void pack_panel(const uint16_t* W, int64_t N, int64_t K, bool fwd, const int64_t* on, const int64_t* ok, uint16_t* dst,
                int64_t n0, bool stream) {
  const int64_t n1 = std::min(N, n0 + 16);
  int64_t done[16] = {0};  // row n0 + i: the tiles wrote its columns below done[i]
#if defined(__x86_64__)
  if (use_avx512 && fwd && n1 - n0 == 16) std::fill(done, done + 16, fwd_tiles(W, K, n0, on, ok, dst, stream));
  if (use_avx512 && !fwd) std::fill(done, done + (n1 - n0) / 2 * 2, dx_tiles(W, K, n0, n1, on, ok, dst, stream));
#endif
  for (int64_t n = n0; n < n1; n++)
    for (int64_t k = done[n - n0]; k < K; k++) dst[on[n] + ok[k]] = W[n * K + k];
}

// the shadow W [N, K] (bf16, row-major) into dst in layout L, as B of the role
void pack(const uint16_t* W, int64_t N, int64_t K, bool fwd, const BlockedLayout& L, uint16_t* dst) {
  const int64_t* on = fwd ? L.col_off.data() : L.row_off.data();  // the offset term of W's row index
  const int64_t* ok = fwd ? L.row_off.data() : L.col_off.data();  // and of its column index
#pragma omp parallel if (N * K >= kParallelGrain)
  {
#pragma omp for schedule(static)
    for (int64_t n0 = 0; n0 < N; n0 += 16) pack_panel(W, N, K, fwd, on, ok, dst, n0, L.bytes >= kStreamBytes);
#if defined(__x86_64__)
    _mm_sfence();  // this thread's streamed lines are in memory before the product reads them
#endif
  }
}

}  // namespace

void blocked_weights_stale(const void* shadow) {
  if (!enabled) return;
  std::lock_guard<std::mutex> lock(mu);
  Entry& e = entries[shadow];
  for (Copy& c : e.role) c.stale = true;
  any = true;
}

void blocked_weights_forget(const void* data) {
  if (!any) return;
  std::lock_guard<std::mutex> lock(mu);
  entries.erase(data);
}

bool blocked_weights_registered(const void* shadow) {
  if (!any) return false;
  std::lock_guard<std::mutex> lock(mu);
  return entries.count(shadow) > 0;
}

BlockedStats blocked_weights_stats() {
  std::lock_guard<std::mutex> lock(mu);
  BlockedStats st;
  for (const auto& [ptr, e] : entries)
    for (const Copy& c : e.role)
      if (c.data) {
        st.copies++;
        st.bytes += c.layout->bytes;
      }
  return st;
}

const void* blocked_weights(const void* shadow, int64_t N, int64_t K, bool fwd,
                            const std::shared_ptr<const BlockedLayout>& layout) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = entries.find(shadow);
  if (it == entries.end()) return nullptr;
  Entry& e = it->second;
  if (e.N != N || e.K != K) {
    e.N = N;
    e.K = K;
    for (Copy& c : e.role) c.stale = true;
  }
  Copy& c = e.role[fwd ? 0 : 1];
  if (c.layout != layout) {
    if (!c.layout || !same(*c.layout, *layout)) {
      std::free(c.data);
      c.data = nullptr;
    }
    if (!c.data) {
      c.data = std::aligned_alloc(64, (layout->bytes + 63) / 64 * 64);
      if (!c.data) throw Error("out of memory: could not allocate " + std::to_string(layout->bytes) +
                               " bytes for a blocked copy of a bf16 weight");
      std::memset(c.data, 0, layout->bytes);
      c.stale = true;
    }
    c.layout = layout;
  }
  if (c.stale) {
    pack(static_cast<const uint16_t*>(shadow), N, K, fwd, *layout, static_cast<uint16_t*>(c.data));
    c.stale = false;
  }
  return c.data;
}

}  // namespace mae::cpu
