// BatchNorm1d without affine over the batch axis (the CUDA twin of native/cpu/batchnorm.cpp):
//   x [B, F]. training: mean, var (biased) over B; y = (x - mean) * rstd, rstd = 1 / sqrt(var + eps);
//   running_mean/var <- (1 - momentum) * running + momentum * (mean, var * B / (B - 1)), as PyTorch.
//   eval: y = (x - running_mean) / sqrt(running_var + eps).
//   backward, training: dx = rstd * (dy - mean_B(dy) - y * mean_B(dy * y)); eval: dx = dy * rstd.
// One block of (32 features x 8 row lanes) per 32 features; the statistics are accumulated in double, as on the CPU.
#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

// sum over the 8 row lanes of a (32, 8) block; every thread of column threadIdx.x gets the total
__device__ __forceinline__ double column_total(double v, double (*sh)[33]) {
  __syncthreads();
  sh[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  double s = 0.0;
#pragma unroll
  for (int k = 0; k < 8; k++) s += sh[k][threadIdx.x];
  return s;
}

__global__ void batchnorm_forward_kernel(Src x, Dst rm, Dst rv, bool training, float momentum, float eps, Dst y,
                                         Dst rstd, int64_t B, int64_t F) {
  __shared__ double sh[8][33];
  const int64_t f = blockIdx.x * 32 + threadIdx.x;
  const bool on = f < F;
  double mean = 0.0, var = 0.0;
  if (training) {
    double s = 0.0;
    if (on)
      for (int64_t b = threadIdx.y; b < B; b += 8) s += x[b * F + f];
    mean = column_total(s, sh) / (double)B;
    double q = 0.0;
    if (on)
      for (int64_t b = threadIdx.y; b < B; b += 8) {
        const double d = x[b * F + f] - mean;
        q += d * d;
      }
    var = column_total(q, sh) / (double)B;
    if (on && threadIdx.y == 0) {
      const double unbiased = B > 1 ? var * B / (B - 1) : var;
      rm.set(f, (float)((1.0 - momentum) * rm.get(f) + momentum * mean));
      rv.set(f, (float)((1.0 - momentum) * rv.get(f) + momentum * unbiased));
    }
  } else if (on) {
    mean = rm.get(f);
    var = rv.get(f);
  }
  if (!on) return;
  const float rs = (float)(1.0 / sqrt(var + (double)eps));
  if (threadIdx.y == 0) rstd.set(f, rs);
  for (int64_t b = threadIdx.y; b < B; b += 8) y.set(b * F + f, (float)((x[b * F + f] - mean) * (double)rs));
}

__global__ void batchnorm_backward_kernel(Src dy, Src y, Src rstd, bool training, Dst dx, int64_t B, int64_t F) {
  __shared__ double sh[8][33];
  const int64_t f = blockIdx.x * 32 + threadIdx.x;
  const bool on = f < F;
  double mdy = 0.0, mdyy = 0.0;
  if (training) {
    double s = 0.0, sy = 0.0;
    if (on)
      for (int64_t b = threadIdx.y; b < B; b += 8) {
        const double g = dy[b * F + f];
        s += g;
        sy += g * (double)y[b * F + f];
      }
    mdy = column_total(s, sh) / (double)B;
    mdyy = column_total(sy, sh) / (double)B;
  }
  if (!on) return;
  const double rs = rstd[f];
  for (int64_t b = threadIdx.y; b < B; b += 8) {
    const int64_t i = b * F + f;
    dx.set(i, (float)(rs * ((double)dy[i] - mdy - (double)y[i] * mdyy)));
  }
}

}  // namespace

void batchnorm_forward(const TensorView& x, TensorView& running_mean, TensorView& running_var, bool training,
                       float momentum, float eps, TensorView& y, TensorView& rstd) {
  Context& c = context(x);
  const int64_t B = x.dim(0), F = x.dim(1);
  batchnorm_forward_kernel<<<(unsigned)ceil_div(F, 32), dim3(32, 8), 0, c.stream>>>(
      src(x), dst(running_mean), dst(running_var), training, momentum, eps, dst(y), dst(rstd), B, F);
  MAE_KERNEL_CHECK("batchnorm_forward_kernel", c.stream);
}

void batchnorm_backward(const TensorView& dy, const TensorView& y, const TensorView& rstd, bool training,
                        TensorView& dx) {
  Context& c = context(dy);
  const int64_t B = dy.dim(0), F = dy.dim(1);
  batchnorm_backward_kernel<<<(unsigned)ceil_div(F, 32), dim3(32, 8), 0, c.stream>>>(src(dy), src(y), src(rstd),
                                                                                     training, dst(dx), B, F);
  MAE_KERNEL_CHECK("batchnorm_backward_kernel", c.stream);
}

}  // namespace mae::cuda
