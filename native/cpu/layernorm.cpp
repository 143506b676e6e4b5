// LayerNorm over the last dimension, biased variance, as PyTorch:
//   forward:  x [R, D], w, b [D] -> y = (x - mean) * rstd * w + b [R, D]; mean, rstd [R] kept for backward
//   backward: xhat = (x - mean) * rstd, g = dy * w,
//             dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) [+ dres], dw = sum_r dy * xhat, db = sum_r dy
//   add_layernorm_forward: s = x + r, then the forward on s (the residual add of a transformer block fused in)
// Rows are split across threads; dw and db are reduced from one partial row per thread. x, r, s, y, dy, dres and dx
// may each be float32 or bfloat16 (rows widened to float32, results rounded once); w, b, mean, rstd, dw and db are
// float32, and all arithmetic is float32.
// With every row tensor bfloat16, a width that is a multiple of 16 and a CPU with AVX512-BF16 (chosen at run time),
// add_layernorm_forward and layernorm_backward run AVX-512 rows that widen and round in registers (the portable rows
// call the converters once per row and pass, which cost more than the arithmetic at ViT widths of 128 to 768); the
// same formulas, sums in another order.
#include <omp.h>

#include <cmath>
#include <vector>

#include "avx512.h"
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

#if defined(__x86_64__)
bool use_rows16(std::initializer_list<const TensorView*> ts, int64_t D) {
  return all_bf16(ts) && D % 16 == 0 && bf16_convert_native();
}

// s = x + r rounded to bf16, then the forward on s as stored: y (bf16), mean, rstd; sb holds s's row in float32
MAE_AVX512_BF16 void add_layernorm_row16(const uint16_t* X, const uint16_t* Rr, const float* W, const float* B,
                                         int64_t D, float eps, uint16_t* S, uint16_t* Y, float* sb, float* mean,
                                         float* rstd) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < D; i += 16) {
    const __m256i s16 = bf16x16(_mm512_add_ps(load_bf16x16(X + i), load_bf16x16(Rr + i)));
    _mm256_storeu_si256((__m256i*)(S + i), s16);
    const __m512 s = widen_bf16x16(s16);
    _mm512_storeu_ps(sb + i, s);
    acc = _mm512_add_ps(acc, s);
  }
  const float m = _mm512_reduce_add_ps(acc) / D;
  const __m512 vm = _mm512_set1_ps(m);
  __m512 var = _mm512_setzero_ps();
  for (int64_t i = 0; i < D; i += 16) {
    const __m512 c = _mm512_sub_ps(_mm512_loadu_ps(sb + i), vm);
    var = _mm512_fmadd_ps(c, c, var);
  }
  const float rs = 1.0f / std::sqrt(_mm512_reduce_add_ps(var) / D + eps);
  const __m512 vr = _mm512_set1_ps(rs);
  for (int64_t i = 0; i < D; i += 16) {
    const __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(sb + i), vm), vr);
    store_bf16x16(Y + i, _mm512_fmadd_ps(xhat, _mm512_loadu_ps(W + i), _mm512_loadu_ps(B + i)));
  }
  *mean = m;
  *rstd = rs;
}

// one row of the backward: dx (bf16, plus dres when given), and this row's dw, db added to pdw, pdb; xb, gb scratch
MAE_AVX512_BF16 void layernorm_backward_row16(const uint16_t* DY, const uint16_t* X, const uint16_t* DRES,
                                              const float* W, float m, float rs, int64_t D, uint16_t* DX, float* pdw,
                                              float* pdb, float* xb, float* gb) {
  const __m512 vm = _mm512_set1_ps(m), vr = _mm512_set1_ps(rs);
  __m512 sg = _mm512_setzero_ps(), sgx = _mm512_setzero_ps();
  for (int64_t i = 0; i < D; i += 16) {
    const __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(load_bf16x16(X + i), vm), vr);
    const __m512 dy = load_bf16x16(DY + i);
    const __m512 g = _mm512_mul_ps(dy, _mm512_loadu_ps(W + i));
    sg = _mm512_add_ps(sg, g);
    sgx = _mm512_fmadd_ps(g, xhat, sgx);
    _mm512_storeu_ps(pdw + i, _mm512_fmadd_ps(dy, xhat, _mm512_loadu_ps(pdw + i)));
    _mm512_storeu_ps(pdb + i, _mm512_add_ps(dy, _mm512_loadu_ps(pdb + i)));
    _mm512_storeu_ps(xb + i, xhat);
    _mm512_storeu_ps(gb + i, g);
  }
  const __m512 mg = _mm512_set1_ps(_mm512_reduce_add_ps(sg) / D);
  const __m512 mgx = _mm512_set1_ps(_mm512_reduce_add_ps(sgx) / D);
  for (int64_t i = 0; i < D; i += 16) {
    const __m512 inner = _mm512_fnmadd_ps(_mm512_loadu_ps(xb + i), mgx, _mm512_sub_ps(_mm512_loadu_ps(gb + i), mg));
    __m512 dx = _mm512_mul_ps(vr, inner);
    if (DRES) dx = _mm512_add_ps(dx, load_bf16x16(DRES + i));
    store_bf16x16(DX + i, dx);
  }
}
#endif

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
#if defined(__x86_64__)
  const bool rows16 = use_rows16({&x, &res, &s, &y}, D);
#endif
#pragma omp parallel if (R * D >= kParallelGrain)
  {
    std::vector<float> xb(D), rb(D), sb(D), yb(D);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
#if defined(__x86_64__)
      if (rows16) {
        add_layernorm_row16(bf16(x) + r * D, bf16(res) + r * D, W, B, D, eps, bf16(s) + r * D, bf16(y) + r * D,
                            sb.data(), MEAN + r, RSTD + r);
        continue;
      }
#endif
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
#if defined(__x86_64__)
  const bool rows16 = use_rows16({&dy, &x, dres, &dx}, D);
#endif
#pragma omp parallel if (R * D >= kParallelGrain)
  {
    float* pdw = part.data() + 2 * omp_get_thread_num() * D;
    float* pdb = pdw + D;
    std::vector<float> xb(D), dyb(D), rb(D), dxb(D);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; r++) {
#if defined(__x86_64__)
      if (rows16) {
        layernorm_backward_row16(bf16(dy) + r * D, bf16(x) + r * D, dres ? bf16(*dres) + r * D : nullptr, W, MEAN[r],
                                 RSTD[r], D, bf16(dx) + r * D, pdw, pdb, xb.data(), dyb.data());
        continue;
      }
#endif
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
