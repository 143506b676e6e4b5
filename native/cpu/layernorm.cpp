// LayerNorm over the last dimension, biased variance, as PyTorch:
//   forward:  x [R, D], w, b [D] -> y = (x - mean) * rstd * w + b [R, D]; mean, rstd [R] kept for backward
//   backward: xhat = (x - mean) * rstd, g = dy * w,
//             dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dw = sum_r dy * xhat, db = sum_r dy
// Rows are split across threads; dw and db are reduced from one partial row per thread.
#include <omp.h>

#include <cmath>
#include <vector>

#include "cpu.h"

namespace mae::cpu {

void layernorm_forward(const TensorView& x, const TensorView& w, const TensorView& b, float eps, TensorView& y,
                       TensorView& mean, TensorView& rstd) {
  const int64_t R = x.rows(), D = x.last();
  const float *X = x.f32(), *W = w.f32(), *B = b.f32();
  float *Y = y.f32(), *MEAN = mean.f32(), *RSTD = rstd.f32();
#pragma omp parallel for schedule(static) if (R * D >= kParallelGrain)
  for (int64_t r = 0; r < R; r++) {
    const float* xr = X + r * D;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < D; i++) s += xr[i];
    const float m = s / D;
    float v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int64_t i = 0; i < D; i++) v += (xr[i] - m) * (xr[i] - m);
    const float rs = 1.0f / std::sqrt(v / D + eps);
    float* yr = Y + r * D;
#pragma omp simd
    for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - m) * rs * W[i] + B[i];
    MEAN[r] = m;
    RSTD[r] = rs;
  }
}

void layernorm_backward(const TensorView& dy, const TensorView& x, const TensorView& w, const TensorView& mean,
                        const TensorView& rstd, TensorView& dx, TensorView& dw, TensorView& db) {
  const int64_t R = x.rows(), D = x.last();
  const float *DY = dy.f32(), *X = x.f32(), *W = w.f32(), *MEAN = mean.f32(), *RSTD = rstd.f32();
  float* DX = dx.f32();
  const int nt = omp_get_max_threads();
  std::vector<float> part(2 * nt * D, 0.0f);  // per thread: dw partial, then db partial
#pragma omp parallel if (R * D >= kParallelGrain)
  {
    float* pdw = part.data() + 2 * omp_get_thread_num() * D;
    float* pdb = pdw + D;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      const float *xr = X + r * D, *dyr = DY + r * D;
      const float m = MEAN[r], rs = RSTD[r];
      float sg = 0.0f, sgx = 0.0f;
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t i = 0; i < D; i++) {
        const float xhat = (xr[i] - m) * rs;
        const float g = dyr[i] * W[i];
        sg += g;
        sgx += g * xhat;
        pdw[i] += dyr[i] * xhat;
        pdb[i] += dyr[i];
      }
      sg /= D;
      sgx /= D;
      float* dxr = DX + r * D;
#pragma omp simd
      for (int64_t i = 0; i < D; i++) {
        const float xhat = (xr[i] - m) * rs;
        dxr[i] = rs * (dyr[i] * W[i] - sg - xhat * sgx);
      }
    }
  }
  float *DW = dw.f32(), *DB = db.f32();
  for (int64_t i = 0; i < D; i++) {
    float a = 0.0f, c = 0.0f;
    for (int t = 0; t < nt; t++) {
      a += part[2 * t * D + i];
      c += part[(2 * t + 1) * D + i];
    }
    DW[i] = a;
    DB[i] = c;
  }
}

}  // namespace mae::cpu
