// AdamW, fused and in place, fp32, exactly PyTorch's torch.optim.AdamW update for step t (1-based):
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
// param, grad, m, v: same shape. The per-group lr scale and weight decay are applied by the caller.
#include <cmath>

#include "cpu.h"

namespace mae::cpu {

void adamw_step(TensorView& param, const TensorView& grad, TensorView& m, TensorView& v, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step) {
  const int64_t n = param.numel();
  float *P = param.f32(), *M = m.f32(), *V = v.f32();
  const float* G = grad.f32();
  const float bc1 = (float)(1.0 - std::pow((double)beta1, (double)step));
  const float bc2_sqrt = (float)std::sqrt(1.0 - std::pow((double)beta2, (double)step));
  const float step_size = lr / bc1, decay = 1.0f - lr * weight_decay;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float g = G[i];
    const float mi = beta1 * M[i] + (1.0f - beta1) * g;
    const float vi = beta2 * V[i] + (1.0f - beta2) * g * g;
    M[i] = mi;
    V[i] = vi;
    P[i] = P[i] * decay - step_size * mi / (std::sqrt(vi) / bc2_sqrt + eps);
  }
}

}  // namespace mae::cpu
