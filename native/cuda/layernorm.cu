// LayerNorm over the last dimension, biased variance, as PyTorch (the CUDA twin of native/cpu/layernorm.cpp):
//   forward:  x [R, D], w, b [D] -> y = (x - mean) * rstd * w + b; mean, rstd [R] kept for backward (float32)
//   backward: xhat = (x - mean) * rstd, g = dy * w,
//             dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) [+ dres], dw = sum_r dy * xhat, db = sum_r dy
//   add_layernorm_forward: s = x + r written, and the forward on s, in one pass (a transformer block's residual add);
//   the statistics and y are those of s as stored (rounded when s is bfloat16), as on the CPU, so that the backward,
//   which reads s, agrees with them
// One warp per row; for D <= 1024 the row stays in registers (V values per lane), wider rows are re-read (L1; the
// fused add re-reads x and r).
// dw and db: a two-stage column reduction (blocks of 32 columns x a chunk of rows write partial sums, a second
// kernel adds the chunks in order), so the result is deterministic.
#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

constexpr int kWarps = 8;  // rows per block

// v as s holds it once written (rounded to bfloat16 when s is bfloat16)
__device__ __forceinline__ float as_stored(const Dst& s, float v) {
  return s.bf16 ? __bfloat162float(__float2bfloat16_rn(v)) : v;
}

// ADD: the row is x + r as written to s (x, r, s [R, D]); otherwise the row is x
template <int V, bool ADD>
__global__ void ln_forward_kernel(Src x, Src r, Dst s, Src w, Src b, float eps, Dst y, Dst mean, Dst rstd, int64_t R,
                                  int D) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * kWarps;
  for (int64_t row = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5); row < R; row += warps) {
    const int64_t base = row * D;
    float m, rs;
    if constexpr (V > 0) {
      float v[V];
      float sum = 0.0f;
#pragma unroll
      for (int k = 0; k < V; k++) {
        const int c = lane + 32 * k;
        v[k] = c < D ? (ADD ? x[base + c] + r[base + c] : x[base + c]) : 0.0f;
        if (ADD && c < D) {
          s.set(base + c, v[k]);
          v[k] = as_stored(s, v[k]);
        }
        sum += v[k];
      }
      m = warp_sum(sum) / (float)D;
      float q = 0.0f;
#pragma unroll
      for (int k = 0; k < V; k++) {
        const int c = lane + 32 * k;
        if (c < D) q += (v[k] - m) * (v[k] - m);
      }
      rs = 1.0f / sqrtf(warp_sum(q) / (float)D + eps);
#pragma unroll
      for (int k = 0; k < V; k++) {
        const int c = lane + 32 * k;
        if (c < D) y.set(base + c, (v[k] - m) * rs * w[c] + b[c]);
      }
    } else {
      // the row as float32 values: x + r as stored in s (recomputed in each pass, rounded as s rounds it) or x
      auto at = [&](int c) { return ADD ? as_stored(s, x[base + c] + r[base + c]) : x[base + c]; };
      float sum = 0.0f;
      for (int c = lane; c < D; c += 32) {
        if (ADD) s.set(base + c, x[base + c] + r[base + c]);
        sum += at(c);
      }
      m = warp_sum(sum) / (float)D;
      float q = 0.0f;
      for (int c = lane; c < D; c += 32) {
        const float d = at(c) - m;
        q += d * d;
      }
      rs = 1.0f / sqrtf(warp_sum(q) / (float)D + eps);
      for (int c = lane; c < D; c += 32) y.set(base + c, (at(c) - m) * rs * w[c] + b[c]);
    }
    if (lane == 0) {
      mean.set(row, m);
      rstd.set(row, rs);
    }
  }
}

// RES: dx also gets dres (a gradient reaching x by another path)
template <int V, bool RES>
__global__ void ln_backward_dx_kernel(Src dy, Src x, Src w, Src mean, Src rstd, Src dres, Dst dx, int64_t R, int D) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (int64_t)gridDim.x * kWarps;
  for (int64_t r = (int64_t)blockIdx.x * kWarps + (threadIdx.x >> 5); r < R; r += warps) {
    const int64_t base = r * D;
    const float m = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    if constexpr (V > 0) {
      float g[V], xh[V];
#pragma unroll
      for (int k = 0; k < V; k++) {
        const int c = lane + 32 * k;
        g[k] = c < D ? dy[base + c] * w[c] : 0.0f;
        xh[k] = c < D ? (x[base + c] - m) * rs : 0.0f;
        sg += g[k];
        sgx += g[k] * xh[k];
      }
      sg = warp_sum(sg) / (float)D;
      sgx = warp_sum(sgx) / (float)D;
#pragma unroll
      for (int k = 0; k < V; k++) {
        const int c = lane + 32 * k;
        if (c < D) dx.set(base + c, rs * (g[k] - sg - xh[k] * sgx) + (RES ? dres[base + c] : 0.0f));
      }
    } else {
      for (int c = lane; c < D; c += 32) {
        const float g = dy[base + c] * w[c], xh = (x[base + c] - m) * rs;
        sg += g;
        sgx += g * xh;
      }
      sg = warp_sum(sg) / (float)D;
      sgx = warp_sum(sgx) / (float)D;
      for (int c = lane; c < D; c += 32) {
        const float xh = (x[base + c] - m) * rs;
        dx.set(base + c, rs * (dy[base + c] * w[c] - sg - xh * sgx) + (RES ? dres[base + c] : 0.0f));
      }
    }
  }
}

// stage 1 of dw, db: block (32, 8) covers 32 columns and rows [r0, r1)
__global__ void ln_dwdb_partial_kernel(Src dy, Src x, Src mean, Src rstd, int64_t R, int D, int64_t rows_per_chunk,
                                       float* pdw, float* pdb) {
  __shared__ float sw[8][33], sb[8][33];
  const int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk, r1 = min(R, r0 + rows_per_chunk);
  float aw = 0.0f, ab = 0.0f;
  if (c < D)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const float g = dy[r * D + c];
      aw += g * (x[r * D + c] - mean[r]) * rstd[r];
      ab += g;
    }
  sw[threadIdx.y][threadIdx.x] = aw;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && c < D) {
    float a = 0.0f, bb = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
      a += sw[k][threadIdx.x];
      bb += sb[k][threadIdx.x];
    }
    pdw[(int64_t)blockIdx.y * D + c] = a;
    pdb[(int64_t)blockIdx.y * D + c] = bb;
  }
}

__global__ void ln_dwdb_final_kernel(const float* pdw, const float* pdb, int64_t chunks, int D, Dst dw, Dst db) {
  for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < D; c += (int64_t)gridDim.x * blockDim.x) {
    float a = 0.0f, bb = 0.0f;
    for (int64_t k = 0; k < chunks; k++) {
      a += pdw[k * D + c];
      bb += pdb[k * D + c];
    }
    dw.set(c, a);
    db.set(c, bb);
  }
}

unsigned row_blocks(int64_t R, const Context& c) {
  int64_t blocks = ceil_div(R, kWarps);
  const int64_t cap = (int64_t)c.sm_count * 16;
  return (unsigned)std::max<int64_t>(1, std::min(blocks, cap));
}

template <bool ADD>
void ln_forward(const TensorView& x, const TensorView* r, TensorView* sum, const TensorView& w, const TensorView& b,
                float eps, TensorView& y, TensorView& mean, TensorView& rstd) {
  Context& c = context(x);
  const int64_t R = x.rows();
  const int D = (int)x.last();
  const unsigned g = row_blocks(R, c);
  const int t = kWarps * 32;
  const Src sr = r ? src(*r) : Src{nullptr, 0};
  const Dst ds = sum ? dst(*sum) : Dst{nullptr, 0};
  if (D <= 128)
    ln_forward_kernel<4, ADD><<<g, t, 0, c.stream>>>(src(x), sr, ds, src(w), src(b), eps, dst(y), dst(mean), dst(rstd), R, D);
  else if (D <= 256)
    ln_forward_kernel<8, ADD><<<g, t, 0, c.stream>>>(src(x), sr, ds, src(w), src(b), eps, dst(y), dst(mean), dst(rstd), R, D);
  else if (D <= 512)
    ln_forward_kernel<16, ADD><<<g, t, 0, c.stream>>>(src(x), sr, ds, src(w), src(b), eps, dst(y), dst(mean), dst(rstd), R, D);
  else if (D <= 1024)
    ln_forward_kernel<32, ADD><<<g, t, 0, c.stream>>>(src(x), sr, ds, src(w), src(b), eps, dst(y), dst(mean), dst(rstd), R, D);
  else
    ln_forward_kernel<0, ADD><<<g, t, 0, c.stream>>>(src(x), sr, ds, src(w), src(b), eps, dst(y), dst(mean), dst(rstd), R, D);
  MAE_KERNEL_CHECK(ADD ? "add_layernorm_forward (ln_forward_kernel)" : "layernorm_forward (ln_forward_kernel)", c.stream);
}

template <bool RES>
void ln_backward_dx(Context& c, const TensorView& dy, const TensorView& x, const TensorView& w, const TensorView& mean,
                    const TensorView& rstd, const TensorView* dres, TensorView& dx) {
  const int64_t R = x.rows();
  const int D = (int)x.last();
  const unsigned g = row_blocks(R, c);
  const int t = kWarps * 32;
  const Src sr = dres ? src(*dres) : Src{nullptr, 0};
  if (D <= 128)
    ln_backward_dx_kernel<4, RES><<<g, t, 0, c.stream>>>(src(dy), src(x), src(w), src(mean), src(rstd), sr, dst(dx), R, D);
  else if (D <= 256)
    ln_backward_dx_kernel<8, RES><<<g, t, 0, c.stream>>>(src(dy), src(x), src(w), src(mean), src(rstd), sr, dst(dx), R, D);
  else if (D <= 512)
    ln_backward_dx_kernel<16, RES><<<g, t, 0, c.stream>>>(src(dy), src(x), src(w), src(mean), src(rstd), sr, dst(dx), R, D);
  else if (D <= 1024)
    ln_backward_dx_kernel<32, RES><<<g, t, 0, c.stream>>>(src(dy), src(x), src(w), src(mean), src(rstd), sr, dst(dx), R, D);
  else
    ln_backward_dx_kernel<0, RES><<<g, t, 0, c.stream>>>(src(dy), src(x), src(w), src(mean), src(rstd), sr, dst(dx), R, D);
  MAE_KERNEL_CHECK("layernorm_backward (ln_backward_dx_kernel)", c.stream);
}

}  // namespace

void layernorm_forward(const TensorView& x, const TensorView& w, const TensorView& b, float eps, TensorView& y,
                       TensorView& mean, TensorView& rstd) {
  ln_forward<false>(x, nullptr, nullptr, w, b, eps, y, mean, rstd);
}

void add_layernorm_forward(const TensorView& x, const TensorView& r, const TensorView& w, const TensorView& b,
                           float eps, TensorView& s, TensorView& y, TensorView& mean, TensorView& rstd) {
  ln_forward<true>(x, &r, &s, w, b, eps, y, mean, rstd);
}

void layernorm_backward(const TensorView& dy, const TensorView& x, const TensorView& w, const TensorView& mean,
                        const TensorView& rstd, const TensorView* dres, TensorView& dx, TensorView& dw,
                        TensorView& db) {
  Context& c = context(x);
  const int64_t R = x.rows();
  const int D = (int)x.last();
  if (dres)
    ln_backward_dx<true>(c, dy, x, w, mean, rstd, dres, dx);
  else
    ln_backward_dx<false>(c, dy, x, w, mean, rstd, nullptr, dx);

  const int64_t col_blocks = ceil_div(D, 32);
  const RowChunks rc = row_chunks(c, R, col_blocks);
  Scratch part(c.device, (size_t)(2 * rc.chunks * D) * sizeof(float));
  float* pdw = part.as<float>();
  float* pdb = pdw + rc.chunks * D;
  ln_dwdb_partial_kernel<<<dim3((unsigned)col_blocks, (unsigned)rc.chunks), dim3(32, 8), 0, c.stream>>>(
      src(dy), src(x), src(mean), src(rstd), R, D, rc.per, pdw, pdb);
  MAE_KERNEL_CHECK("ln_dwdb_partial_kernel", c.stream);
  ln_dwdb_final_kernel<<<grid_for(D, 256, c), 256, 0, c.stream>>>(pdw, pdb, rc.chunks, D, dst(dw), dst(db));
  MAE_KERNEL_CHECK("ln_dwdb_final_kernel", c.stream);
}

}  // namespace mae::cuda
