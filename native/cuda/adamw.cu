// AdamW over many tensors in one launch (the CUDA twin of native/cpu/adamw.cpp), exactly PyTorch's
// torch.optim.AdamW step t, for each tensor i with its own lr_i and wd_i:
//   p *= 1 - lr_i * wd_i;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr_i / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
// The moments and the arithmetic are float32; param, m and v are normally float32 (the master weights), the
// gradient may be bfloat16. The bias corrections are computed once on the host in double, as on the CPU. A tensor
// with a bf16 shadow gets the new parameter rounded to bfloat16 written there too (the bf16 products then read the
// shadow instead of converting the fp32 weight each time).
//
// Multi-tensor: every tensor is cut into chunks of kChunk elements; a table of the tensors (pointers, sizes,
// per-tensor step size and decay) and a table of the chunks (tensor, first element) are copied to the device
// through pinned staging memory (no wait), and one kernel runs a block per chunk. A whole model (hundreds of
// parameters) is one copy and one launch.
#include <cmath>
#include <vector>

#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

constexpr int64_t kChunk = 16384;
constexpr int kThreads = 256;

struct AdamWMeta {
  Dst p, m, v, shadow;  // shadow.p null: none
  Src g;
  int64_t n;
  float step_size, decay;
};

struct AdamWChunk {
  int32_t tensor;
  int64_t begin;
};

__global__ void adamw_kernel(const AdamWMeta* meta, const AdamWChunk* chunks, int64_t num_chunks, float beta1,
                             float beta2, float eps, float bc2_sqrt) {
  for (int64_t c = blockIdx.x; c < num_chunks; c += gridDim.x) {
    const AdamWChunk ch = chunks[c];
    const AdamWMeta t = meta[ch.tensor];
    const int64_t end = min(ch.begin + kChunk, t.n);
    for (int64_t i = ch.begin + threadIdx.x; i < end; i += blockDim.x) {
      const float gi = t.g[i];
      const float mi = beta1 * t.m.get(i) + (1.0f - beta1) * gi;
      const float vi = beta2 * t.v.get(i) + (1.0f - beta2) * gi * gi;
      t.m.set(i, mi);
      t.v.set(i, vi);
      const float pi = t.p.get(i) * t.decay - t.step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
      t.p.set(i, pi);
      if (t.shadow.p) t.shadow.set(i, pi);
    }
  }
}

}  // namespace

void adamw_step(const AdamWTensor* tensors, int64_t count, float beta1, float beta2, float eps, int64_t step) {
  if (count == 0) return;
  Context& c = context(tensors[0].param);
  const float bc1 = (float)(1.0 - std::pow((double)beta1, (double)step));
  const float bc2_sqrt = (float)std::sqrt(1.0 - std::pow((double)beta2, (double)step));
  std::vector<AdamWMeta> meta;
  std::vector<AdamWChunk> chunks;
  for (int64_t i = 0; i < count; i++) {
    const AdamWTensor& t = tensors[i];
    const int64_t n = t.param.numel();
    const Dst shadow = t.shadow.data ? dst(t.shadow) : Dst{nullptr, 0};
    meta.push_back({dst(t.param), dst(t.m), dst(t.v), shadow, src(t.grad), n, t.lr / bc1, 1.0f - t.lr * t.weight_decay});
    for (int64_t b = 0; b < n; b += kChunk) chunks.push_back({(int32_t)i, b});
  }
  const size_t meta_bytes = meta.size() * sizeof(AdamWMeta), chunk_bytes = chunks.size() * sizeof(AdamWChunk);
  Scratch table(c.device, meta_bytes + chunk_bytes);
  char* d = table.as<char>();
  upload(c, d, meta.data(), meta_bytes);
  upload(c, d + meta_bytes, chunks.data(), chunk_bytes);
  const int64_t num_chunks = (int64_t)chunks.size();
  const unsigned blocks = (unsigned)std::min<int64_t>(num_chunks, (int64_t)c.sm_count * 16);
  adamw_kernel<<<blocks, kThreads, 0, c.stream>>>(reinterpret_cast<const AdamWMeta*>(d),
                                                  reinterpret_cast<const AdamWChunk*>(d + meta_bytes), num_chunks,
                                                  beta1, beta2, eps, bc2_sqrt);
  MAE_KERNEL_CHECK("adamw_kernel", c.stream);
}

}  // namespace mae::cuda
