// GELU in its exact erf form (the CUDA twin of native/cpu/gelu.cpp), elementwise on any shape:
//   y = 0.5 x (1 + erf(x / sqrt 2)),  dy/dx = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)
// Never the tanh approximation (which is what cuBLASLt's GELU epilogue computes).
#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

__global__ void gelu_forward_kernel(Src x, Dst y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float v = x[i];
    y.set(i, 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
  }
}

__global__ void gelu_backward_kernel(Src x, Src dy, Dst dx, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float v = x[i];
    const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
    dx.set(i, dy[i] * (cdf + v * pdf));
  }
}

}  // namespace

void gelu_forward(const TensorView& x, TensorView& y) {
  Context& c = context(x);
  const int64_t n = x.numel();
  gelu_forward_kernel<<<grid_for(n, 256, c), 256, 0, c.stream>>>(src(x), dst(y), n);
  MAE_KERNEL_CHECK("gelu_forward_kernel", c.stream);
}

void gelu_backward(const TensorView& x, const TensorView& dy, TensorView& dx) {
  Context& c = context(x);
  const int64_t n = x.numel();
  gelu_backward_kernel<<<grid_for(n, 256, c), 256, 0, c.stream>>>(src(x), src(dy), dst(dx), n);
  MAE_KERNEL_CHECK("gelu_backward_kernel", c.stream);
}

}  // namespace mae::cuda
