// AdamW over many tensors, fused and in place, fp32, exactly PyTorch's torch.optim.AdamW update for step t
// (1-based), for each tensor i with its own lr_i and wd_i:
//   p *= 1 - lr_i * wd_i;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr_i / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
// tensors[i]: param, grad, m, v of one shape, and optionally a bfloat16 shadow that receives the new parameter
// rounded to bfloat16 (nearest even, convert.cpp; the CUDA step writes the same but for denormals, which CUDA keeps),
// streamed past the caches (the next step's products read it long after). The elements of all tensors are split
// evenly over the threads in one parallel region, so a model of hundreds of small parameters costs one fork/join, not
// one per parameter. A shadow written here is registered for blocked copies, which are now stale (blocked.cpp).
#include <omp.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu.h"

namespace mae::cpu {

namespace {

void adamw_range(const AdamWTensor& t, int64_t begin, int64_t end, float beta1, float beta2, float eps,
                 float bc1, float bc2_sqrt) {
  float *P = t.param.f32(), *M = t.m.f32(), *V = t.v.f32();
  const float* G = t.grad.f32();
  const float step_size = t.lr / bc1, decay = 1.0f - t.lr * t.weight_decay;
  // in chunks, so that the bf16 copy reads the new parameters from cache rather than from memory a second time
  for (int64_t c = begin; c < end; c += kChunk) {
    const int64_t ce = std::min(end, c + kChunk);
#pragma omp simd
    for (int64_t i = c; i < ce; i++) {
      const float g = G[i];
      const float mi = beta1 * M[i] + (1.0f - beta1) * g;
      const float vi = beta2 * V[i] + (1.0f - beta2) * g * g;
      M[i] = mi;
      V[i] = vi;
      P[i] = P[i] * decay - step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
    }
    if (t.shadow.data) to_bf16_stream(P + c, bf16(t.shadow) + c, ce - c);
  }
}

}  // namespace

void adamw_step(const AdamWTensor* tensors, int64_t count, float beta1, float beta2, float eps, int64_t step) {
  const float bc1 = (float)(1.0 - std::pow((double)beta1, (double)step));
  const float bc2_sqrt = (float)std::sqrt(1.0 - std::pow((double)beta2, (double)step));
  // offset[i]: where tensor i starts in the concatenation of all elements
  std::vector<int64_t> offset(count + 1, 0);
  for (int64_t i = 0; i < count; i++) offset[i + 1] = offset[i] + tensors[i].param.numel();
  const int64_t total = offset[count];
#pragma omp parallel
  {
    const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t begin = total * id / nt, end = total * (id + 1) / nt;
    for (int64_t i = 0; i < count; i++) {
      const int64_t lo = std::max(begin, offset[i]), hi = std::min(end, offset[i + 1]);
      if (lo < hi) adamw_range(tensors[i], lo - offset[i], hi - offset[i], beta1, beta2, eps, bc1, bc2_sqrt);
    }
#if defined(__x86_64__)
    _mm_sfence();  // this thread's streamed shadows are in memory before anything reads them
#endif
  }
  for (int64_t i = 0; i < count; i++)
    if (tensors[i].shadow.data) blocked_weights_stale(tensors[i].shadow.data);
}

}  // namespace mae::cpu
