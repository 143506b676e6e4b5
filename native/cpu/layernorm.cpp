// LayerNorm over the last dimension, biased variance, as PyTorch:
//   forward:  x [R, D], w, b [D] -> y = (x - mean) * rstd * w + b [R, D]; mean, rstd [R] kept for backward
//   backward: xhat = (x - mean) * rstd, g = dy * w,
//             dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) [+ dres], dw = sum_r dy * xhat, db = sum_r dy
//   add_layernorm_forward: s = x + r, then the forward on s (the residual add of a transformer block fused in)
// Rows are split across threads; dw and db are reduced from one partial row per thread. x, r, s, y, dy, dres and dx
// may each be float32 or bfloat16 (rows widened to float32, results rounded once); w, b, mean, rstd, dw and db are
// float32, and all arithmetic is float32.
#include <omp.h>

#include <cmath>
#include <vector>

#include "cpu.h"

namespace mae::cpu {

namespace {

// the forward of one row xr [D] into yr, its mean and rstd
inline void normalize_row(const float* xr, const float* W, const float* B, int64_t D, float eps, float* yr,
                          float* mean, float* rstd) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < D; i++) s += xr[i];
  const float m = s / D;
  float v = 0.0f;
#pragma omp simd reduction(+ : v)
  for (int64_t i = 0; i < D; i++) v += (xr[i] - m) * (xr[i] - m);
  const float rs = 1.0f / std::sqrt(v / D + eps);
#pragma omp simd
  for (int64_t i = 0; i < D; i++) yr[i] = (xr[i] - m) * rs * W[i] + B[i];
  *mean = m;
  *rstd = rs;
}

}  // namespace

void layernorm_forward(const TensorView& x, const TensorView& w, const TensorView& b, float eps, TensorView& y,
                       TensorView& mean, TensorView& rstd) {
  const int64_t R = x.rows(), D = x.last();
  const float *W = w.f32(), *B = b.f32();
  float *MEAN = mean.f32(), *RSTD = rstd.f32();
#pragma omp parallel if (R * D >= kParallelGrain)
  {
    std::vector<float> xb(D), yb(D);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      float* yr = out_row(y, r * D, yb.data());
      normalize_row(in_row(x, r * D, D, xb.data()), W, B, D, eps, yr, MEAN + r, RSTD + r);
      out_row_done(y, r * D, D, yr);
    }
  }
}

void add_layernorm_forward(const TensorView& x, const TensorView& res, const TensorView& w, const TensorView& b,
                           float eps, TensorView& s, TensorView& y, TensorView& mean, TensorView& rstd) {
  const int64_t R = x.rows(), D = x.last();
  const float *W = w.f32(), *B = b.f32();
  float *MEAN = mean.f32(), *RSTD = rstd.f32();
#pragma omp parallel if (R * D >= kParallelGrain)
  {
    std::vector<float> xb(D), rb(D), sb(D), yb(D);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      const float *xr = in_row(x, r * D, D, xb.data()), *rr = in_row(res, r * D, D, rb.data());
      float* sr = out_row(s, r * D, sb.data());
#pragma omp simd
      for (int64_t i = 0; i < D; i++) sr[i] = xr[i] + rr[i];
      out_row_done(s, r * D, D, sr);
      // the statistics of s as stored (rounded when s is bfloat16), so that backward, which reads s, agrees
      const float* sv = in_row(s, r * D, D, sb.data());
      float* yr = out_row(y, r * D, yb.data());
      normalize_row(sv, W, B, D, eps, yr, MEAN + r, RSTD + r);
      out_row_done(y, r * D, D, yr);
    }
  }
}

void layernorm_backward(const TensorView& dy, const TensorView& x, const TensorView& w, const TensorView& mean,
                        const TensorView& rstd, const TensorView* dres, TensorView& dx, TensorView& dw,
                        TensorView& db) {
  const int64_t R = x.rows(), D = x.last();
  const float *W = w.f32(), *MEAN = mean.f32(), *RSTD = rstd.f32();
  const int nt = omp_get_max_threads();
  std::vector<float> part(2 * nt * D, 0.0f);  // per thread: dw partial, then db partial
#pragma omp parallel if (R * D >= kParallelGrain)
  {
    float* pdw = part.data() + 2 * omp_get_thread_num() * D;
    float* pdb = pdw + D;
    std::vector<float> xb(D), dyb(D), rb(D), dxb(D);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
      const float *xr = in_row(x, r * D, D, xb.data()), *dyr = in_row(dy, r * D, D, dyb.data());
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
      float* dxr = out_row(dx, r * D, dxb.data());
#pragma omp simd
      for (int64_t i = 0; i < D; i++) {
        const float xhat = (xr[i] - m) * rs;
        dxr[i] = rs * (dyr[i] * W[i] - sg - xhat * sgx);
      }
      if (dres) {
        const float* rr = in_row(*dres, r * D, D, rb.data());
#pragma omp simd
        for (int64_t i = 0; i < D; i++) dxr[i] += rr[i];
      }
      out_row_done(dx, r * D, D, dxr);
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
