// AdamW, fused and in place (the CUDA twin of native/cpu/adamw.cpp), exactly PyTorch's torch.optim.AdamW step t:
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)
// The moments and the arithmetic are float32; param, m and v are normally float32 (the master weights), the
// gradient may be bfloat16. The bias corrections are computed once on the host in double, as on the CPU.
// One launch per tensor: the op table has no multi-tensor entry (a list of tensors per call would need one in
// native/core/ops.h); each launch is a single pass over the four arrays.
#include <cmath>

#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

__global__ void adamw_kernel(Dst p, Src g, Dst m, Dst v, int64_t n, float beta1, float beta2, float eps,
                             float step_size, float decay, float bc2_sqrt) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float gi = g[i];
    const float mi = beta1 * m.get(i) + (1.0f - beta1) * gi;
    const float vi = beta2 * v.get(i) + (1.0f - beta2) * gi * gi;
    m.set(i, mi);
    v.set(i, vi);
    p.set(i, p.get(i) * decay - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps));
  }
}

}  // namespace

void adamw_step(TensorView& param, const TensorView& grad, TensorView& m, TensorView& v, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step) {
  Context& c = context(param);
  const int64_t n = param.numel();
  const float bc1 = (float)(1.0 - std::pow((double)beta1, (double)step));
  const float bc2_sqrt = (float)std::sqrt(1.0 - std::pow((double)beta2, (double)step));
  const float step_size = lr / bc1, decay = 1.0f - lr * weight_decay;
  adamw_kernel<<<grid_for(n, 256, c), 256, 0, c.stream>>>(dst(param), src(grad), dst(m), dst(v), n, beta1, beta2,
                                                          eps, step_size, decay, bc2_sqrt);
  MAE_KERNEL_CHECK("adamw_kernel", c.stream);
}

}  // namespace mae::cuda
