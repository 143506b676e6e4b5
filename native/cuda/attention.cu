// Fused multi-head self-attention in the FlashAttention manner (the CUDA twin of native/cpu/attention.cpp):
//   qkv [B, N, 3D]: q = qkv[..., 0:D], k = qkv[..., D:2D], v = qkv[..., 2D:3D]; head h owns columns h*hd .. h*hd+hd
//   of each block (hd = D / H). S = q k^T * hd^-0.5, P = softmax(S) by rows, out = P v -> [B, N, D];
//   lse [B, H, N] = log sum_j exp(S_ij) is all forward keeps. Backward recomputes P = exp(S - lse):
//   delta_i = rowsum(dout_i * out_i), dv = P^T dout, dP = dout v^T, dS = P * (dP - delta), dq = dS k * scale,
//   dk = dS^T q * scale.
// Tiles of q, k, v live in shared memory; the softmax is computed online (running max and sum per query row), so
// the N x N score matrix never exists. Backward runs two kernels, one per query tile (dq) and one per key tile
// (dk, dv), both recomputing P from lse: every output element is written once, no atomics, deterministic.
//
// Two implementations:
//  * SIMT fp32 (any dtype in, head dims up to 128): tiles converted to float in shared memory, fp32 FMAs. A warp
//    owns RW rows of its block's tile; lane j owns key (or query) j of the other operand's 32-row tile.
//  * bf16 tensor cores (qkv in bfloat16, head dim a multiple of 16 up to 128): the same tiling with the two
//    products of each step on wmma 16x16x16 bf16 fragments with fp32 accumulation. The output accumulator stays in
//    shared memory as fp32 (wmma does not expose which row a fragment element belongs to, and the online softmax
//    must rescale rows), softmax statistics are fp32 in registers, P and dS are rounded to bf16 for the products.
// MAE_ATTENTION_SIMT=1 forces the SIMT kernels and MAE_ATTENTION_WARPS=2 the 2-warp tensor-core layout (which
// otherwise runs only where 4 warps' shared memory does not fit), for comparisons on the GPU.
#include <mma.h>

#include <map>
#include <mutex>
#include <utility>

#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

using bf16 = __nv_bfloat16;

struct Dims {
  int64_t B, N, D, H;
  int hd;
  float scale;
};

__device__ __forceinline__ int64_t qkv_at(const Dims& a, int64_t b, int64_t i, int which, int64_t h, int d) {
  return (b * a.N + i) * 3 * a.D + which * a.D + h * a.hd + d;
}
__device__ __forceinline__ int64_t out_at(const Dims& a, int64_t b, int64_t i, int64_t h, int d) {
  return (b * a.N + i) * a.D + h * a.hd + d;
}

// delta[(b*H + h)*N + i] = sum_d out * dout over head h of row (b, i); one warp per (b, i, h)
__global__ void attn_delta_kernel(Src out, Src dout, float* delta, Dims a) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = a.B * a.N * a.H, warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  for (int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) {
    const int64_t h = r % a.H, bi = r / a.H, b = bi / a.N, i = bi % a.N;
    float acc = 0.0f;
    for (int d = lane; d < a.hd; d += 32) {
      const int64_t o = out_at(a, b, i, h, d);
      acc += out[o] * dout[o];
    }
    acc = warp_sum(acc);
    if (lane == 0) delta[(b * a.H + h) * a.N + i] = acc;
  }
}

// =====================================================================================================================
// SIMT fp32 kernels. Block = 8 warps. T = ceil(hd / 32) output columns per lane.
// =====================================================================================================================

constexpr int kSimtWarps = 8;
constexpr int kTile = 32;  // rows of the streamed operand per step (one per lane)

template <int RW>
size_t simt_fwd_smem(int hd, int T) {
  const int BQ = kSimtWarps * RW;
  return sizeof(float) * ((size_t)BQ * hd + (size_t)kTile * (hd + 1) + (size_t)kTile * 32 * T + (size_t)BQ * 32);
}

template <int T, int RW>
__global__ void __launch_bounds__(kSimtWarps * 32) attn_fwd_simt(Src qkv, Dst out, Dst lse, Dims a) {
  extern __shared__ float sm_f[];
  constexpr int BQ = kSimtWarps * RW, HDV = 32 * T;
  const int hd = a.hd, HDK = hd + 1;
  float* Qs = sm_f;                 // [BQ][hd], scaled
  float* Ks = Qs + BQ * hd;         // [32][hd + 1]
  float* Vs = Ks + kTile * HDK;     // [32][32 T], zero beyond hd
  float* Ps = Vs + kTile * HDV;     // [BQ][32]
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int64_t b = blockIdx.x / a.H, h = blockIdx.x % a.H, q0 = (int64_t)blockIdx.y * BQ;

  for (int e = threadIdx.x; e < BQ * hd; e += blockDim.x) {
    const int r = e / hd, d = e % hd;
    const int64_t i = q0 + r;
    Qs[e] = i < a.N ? qkv[qkv_at(a, b, i, 0, h, d)] * a.scale : 0.0f;
  }
  float m[RW], l[RW], o[RW][T];
#pragma unroll
  for (int r = 0; r < RW; r++) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
#pragma unroll
    for (int t = 0; t < T; t++) o[r][t] = 0.0f;
  }

  for (int64_t k0 = 0; k0 < a.N; k0 += kTile) {
    __syncthreads();
    for (int e = threadIdx.x; e < kTile * HDV; e += blockDim.x) {
      const int j = e / HDV, d = e % HDV;
      const int64_t key = k0 + j;
      const bool ok = key < a.N && d < hd;
      Vs[e] = ok ? qkv[qkv_at(a, b, key, 2, h, d)] : 0.0f;
      if (d < hd) Ks[j * HDK + d] = ok ? qkv[qkv_at(a, b, key, 1, h, d)] : 0.0f;
    }
    __syncthreads();

    float s[RW];
#pragma unroll
    for (int r = 0; r < RW; r++) s[r] = 0.0f;
    for (int d = 0; d < hd; d++) {
      const float kd = Ks[lane * HDK + d];
#pragma unroll
      for (int r = 0; r < RW; r++) s[r] += Qs[(w * RW + r) * hd + d] * kd;
    }
    const bool valid = k0 + lane < a.N;
#pragma unroll
    for (int r = 0; r < RW; r++) {
      const float sv = valid ? s[r] : -INFINITY;
      const float mn = fmaxf(m[r], warp_max(sv));
      const float alpha = expf(m[r] - mn);
      const float p = valid ? expf(sv - mn) : 0.0f;
      l[r] = l[r] * alpha + warp_sum(p);
      m[r] = mn;
#pragma unroll
      for (int t = 0; t < T; t++) o[r][t] *= alpha;
      Ps[(w * RW + r) * 32 + lane] = p;
    }
    __syncwarp();
    for (int j = 0; j < kTile; j++) {
#pragma unroll
      for (int r = 0; r < RW; r++) {
        const float pj = Ps[(w * RW + r) * 32 + j];
#pragma unroll
        for (int t = 0; t < T; t++) o[r][t] += pj * Vs[j * HDV + lane + 32 * t];
      }
    }
  }

#pragma unroll
  for (int r = 0; r < RW; r++) {
    const int64_t i = q0 + w * RW + r;
    if (i >= a.N) continue;
    const float inv = 1.0f / l[r];
#pragma unroll
    for (int t = 0; t < T; t++) {
      const int d = lane + 32 * t;
      if (d < hd) out.set(out_at(a, b, i, h, d), o[r][t] * inv);
    }
    if (lane == 0) lse.set((b * a.H + h) * a.N + i, m[r] + logf(l[r]));
  }
}

template <int RW>
size_t simt_dq_smem(int hd) {
  const int BQ = kSimtWarps * RW;
  return sizeof(float) * (2 * (size_t)BQ * hd + 2 * (size_t)kTile * (hd + 1) + (size_t)BQ * 32 + 2 * (size_t)BQ);
}

// dq for a tile of BQ queries, streaming all keys
template <int T, int RW>
__global__ void __launch_bounds__(kSimtWarps * 32)
    attn_dq_simt(Src qkv, Src dout, Src lse, const float* delta, Dst dqkv, Dims a) {
  extern __shared__ float sm_f[];
  constexpr int BQ = kSimtWarps * RW;
  const int hd = a.hd, HDK = hd + 1;
  float* Qs = sm_f;               // [BQ][hd], scaled
  float* dOs = Qs + BQ * hd;      // [BQ][hd]
  float* Ks = dOs + BQ * hd;      // [32][hd + 1]
  float* Vs = Ks + kTile * HDK;   // [32][hd + 1]
  float* Ps = Vs + kTile * HDK;   // [BQ][32]: dS
  float* Ls = Ps + BQ * 32;       // [BQ] lse
  float* Dl = Ls + BQ;            // [BQ] delta
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int64_t b = blockIdx.x / a.H, h = blockIdx.x % a.H, q0 = (int64_t)blockIdx.y * BQ;
  const int64_t row0 = (b * a.H + h) * a.N;

  for (int e = threadIdx.x; e < BQ * hd; e += blockDim.x) {
    const int r = e / hd, d = e % hd;
    const int64_t i = q0 + r;
    const bool ok = i < a.N;
    Qs[e] = ok ? qkv[qkv_at(a, b, i, 0, h, d)] * a.scale : 0.0f;
    dOs[e] = ok ? dout[out_at(a, b, i, h, d)] : 0.0f;
  }
  for (int r = threadIdx.x; r < BQ; r += blockDim.x) {
    const bool ok = q0 + r < a.N;
    Ls[r] = ok ? lse[row0 + q0 + r] : 0.0f;
    Dl[r] = ok ? delta[row0 + q0 + r] : 0.0f;
  }
  float dq[RW][T];
#pragma unroll
  for (int r = 0; r < RW; r++)
#pragma unroll
    for (int t = 0; t < T; t++) dq[r][t] = 0.0f;

  for (int64_t k0 = 0; k0 < a.N; k0 += kTile) {
    __syncthreads();
    for (int e = threadIdx.x; e < kTile * hd; e += blockDim.x) {
      const int j = e / hd, d = e % hd;
      const int64_t key = k0 + j;
      const bool ok = key < a.N;
      Ks[j * HDK + d] = ok ? qkv[qkv_at(a, b, key, 1, h, d)] : 0.0f;
      Vs[j * HDK + d] = ok ? qkv[qkv_at(a, b, key, 2, h, d)] : 0.0f;
    }
    __syncthreads();
    float s[RW], dp[RW];
#pragma unroll
    for (int r = 0; r < RW; r++) s[r] = dp[r] = 0.0f;
    for (int d = 0; d < hd; d++) {
      const float kd = Ks[lane * HDK + d], vd = Vs[lane * HDK + d];
#pragma unroll
      for (int r = 0; r < RW; r++) {
        s[r] += Qs[(w * RW + r) * hd + d] * kd;
        dp[r] += dOs[(w * RW + r) * hd + d] * vd;
      }
    }
    const bool valid = k0 + lane < a.N;
#pragma unroll
    for (int r = 0; r < RW; r++) {
      const int rr = w * RW + r;
      const float p = valid ? expf(s[r] - Ls[rr]) : 0.0f;
      Ps[rr * 32 + lane] = p * (dp[r] - Dl[rr]);
    }
    __syncwarp();
    for (int j = 0; j < kTile; j++) {
#pragma unroll
      for (int r = 0; r < RW; r++) {
        const float dsj = Ps[(w * RW + r) * 32 + j];
#pragma unroll
        for (int t = 0; t < T; t++) {
          const int d = lane + 32 * t;
          if (d < hd) dq[r][t] += dsj * Ks[j * HDK + d];
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < RW; r++) {
    const int64_t i = q0 + w * RW + r;
    if (i >= a.N) continue;
#pragma unroll
    for (int t = 0; t < T; t++) {
      const int d = lane + 32 * t;
      if (d < hd) dqkv.set(qkv_at(a, b, i, 0, h, d), dq[r][t] * a.scale);
    }
  }
}

template <int RW>
size_t simt_dkv_smem(int hd) {
  const int BK = kSimtWarps * RW;
  return sizeof(float) * (2 * (size_t)BK * hd + 2 * (size_t)kTile * (hd + 1) + 2 * (size_t)BK * 32 + 2 * kTile);
}

// dk, dv for a tile of BK keys, streaming all queries
template <int T, int RW>
__global__ void __launch_bounds__(kSimtWarps * 32)
    attn_dkv_simt(Src qkv, Src dout, Src lse, const float* delta, Dst dqkv, Dims a) {
  extern __shared__ float sm_f[];
  constexpr int BK = kSimtWarps * RW;
  const int hd = a.hd, HDK = hd + 1;
  float* Ks = sm_f;                // [BK][hd]
  float* Vs = Ks + BK * hd;        // [BK][hd]
  float* Qs = Vs + BK * hd;        // [32][hd + 1], scaled
  float* dOs = Qs + kTile * HDK;   // [32][hd + 1]
  float* Ps = dOs + kTile * HDK;   // [BK][32]
  float* DSs = Ps + BK * 32;       // [BK][32]
  float* Ls = DSs + BK * 32;       // [32]
  float* Dl = Ls + kTile;          // [32]
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  const int64_t b = blockIdx.x / a.H, h = blockIdx.x % a.H, k0 = (int64_t)blockIdx.y * BK;
  const int64_t row0 = (b * a.H + h) * a.N;

  for (int e = threadIdx.x; e < BK * hd; e += blockDim.x) {
    const int r = e / hd, d = e % hd;
    const int64_t key = k0 + r;
    const bool ok = key < a.N;
    Ks[e] = ok ? qkv[qkv_at(a, b, key, 1, h, d)] : 0.0f;
    Vs[e] = ok ? qkv[qkv_at(a, b, key, 2, h, d)] : 0.0f;
  }
  float dk[RW][T], dv[RW][T];
#pragma unroll
  for (int r = 0; r < RW; r++)
#pragma unroll
    for (int t = 0; t < T; t++) dk[r][t] = dv[r][t] = 0.0f;

  for (int64_t q0 = 0; q0 < a.N; q0 += kTile) {
    __syncthreads();
    for (int e = threadIdx.x; e < kTile * hd; e += blockDim.x) {
      const int i = e / hd, d = e % hd;
      const int64_t q = q0 + i;
      const bool ok = q < a.N;
      Qs[i * HDK + d] = ok ? qkv[qkv_at(a, b, q, 0, h, d)] * a.scale : 0.0f;
      dOs[i * HDK + d] = ok ? dout[out_at(a, b, q, h, d)] : 0.0f;
    }
    for (int i = threadIdx.x; i < kTile; i += blockDim.x) {
      const bool ok = q0 + i < a.N;
      Ls[i] = ok ? lse[row0 + q0 + i] : 0.0f;
      Dl[i] = ok ? delta[row0 + q0 + i] : 0.0f;
    }
    __syncthreads();
    float s[RW], dp[RW];
#pragma unroll
    for (int r = 0; r < RW; r++) s[r] = dp[r] = 0.0f;
    for (int d = 0; d < hd; d++) {
      const float qd = Qs[lane * HDK + d], gd = dOs[lane * HDK + d];
#pragma unroll
      for (int r = 0; r < RW; r++) {
        s[r] += Ks[(w * RW + r) * hd + d] * qd;
        dp[r] += Vs[(w * RW + r) * hd + d] * gd;
      }
    }
    const bool valid = q0 + lane < a.N;
#pragma unroll
    for (int r = 0; r < RW; r++) {
      const int rr = w * RW + r;
      const float p = valid ? expf(s[r] - Ls[lane]) : 0.0f;
      Ps[rr * 32 + lane] = p;
      DSs[rr * 32 + lane] = p * (dp[r] - Dl[lane]);
    }
    __syncwarp();
    for (int i = 0; i < kTile; i++) {
#pragma unroll
      for (int r = 0; r < RW; r++) {
        const float pv = Ps[(w * RW + r) * 32 + i], dsv = DSs[(w * RW + r) * 32 + i];
#pragma unroll
        for (int t = 0; t < T; t++) {
          const int d = lane + 32 * t;
          if (d < hd) {
            dv[r][t] += pv * dOs[i * HDK + d];
            dk[r][t] += dsv * Qs[i * HDK + d];
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < RW; r++) {
    const int64_t key = k0 + w * RW + r;
    if (key >= a.N) continue;
#pragma unroll
    for (int t = 0; t < T; t++) {
      const int d = lane + 32 * t;
      if (d < hd) {
        dqkv.set(qkv_at(a, b, key, 1, h, d), dk[r][t]);
        dqkv.set(qkv_at(a, b, key, 2, h, d), dv[r][t]);
      }
    }
  }
}

// =====================================================================================================================
// bf16 tensor-core kernels (wmma 16x16x16, fp32 accumulation). Block = NW warps, each owning 16 rows; the
// streamed operand comes in tiles of 32 rows. Shared-memory rows are padded (bf16: hd + 8, fp32: hd + 4 or 36) so
// that every fragment pointer stays 32-byte aligned and the leading dimensions are legal for wmma.
// =====================================================================================================================

namespace wmma = nvcuda::wmma;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBc = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragBr = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

constexpr int kWT = 32;          // streamed tile rows
constexpr int kSP = kWT + 4;     // fp32 score row stride
constexpr int kPP = kWT + 8;     // bf16 probability row stride

// A carve-up of dynamic shared memory into 128-byte aligned regions.
struct Carve {
  size_t off = 0;
  template <typename T>
  __host__ __device__ size_t take(size_t count) {
    const size_t at = off;
    off = (off + count * sizeof(T) + 127) / 128 * 128;
    return at;
  }
};

struct FwdLayout {
  size_t q, k, v, s, p, o, bytes;
  __host__ __device__ FwdLayout(int hd, int nw) {
    const int HDP = hd + 8, OP = hd + 4, BQ = 16 * nw;
    Carve c;
    q = c.take<bf16>((size_t)BQ * HDP);
    k = c.take<bf16>((size_t)kWT * HDP);
    v = c.take<bf16>((size_t)kWT * HDP);
    s = c.take<float>((size_t)BQ * kSP);
    p = c.take<bf16>((size_t)BQ * kPP);
    o = c.take<float>((size_t)BQ * OP);
    bytes = c.off;
  }
};

struct DqLayout {
  size_t q, go, k, v, s, dp, ds, dq, bytes;
  __host__ __device__ DqLayout(int hd, int nw) {
    const int HDP = hd + 8, OP = hd + 4, BQ = 16 * nw;
    Carve c;
    q = c.take<bf16>((size_t)BQ * HDP);
    go = c.take<bf16>((size_t)BQ * HDP);
    k = c.take<bf16>((size_t)kWT * HDP);
    v = c.take<bf16>((size_t)kWT * HDP);
    s = c.take<float>((size_t)BQ * kSP);
    dp = c.take<float>((size_t)BQ * kSP);
    ds = c.take<bf16>((size_t)BQ * kPP);
    dq = c.take<float>((size_t)BQ * OP);
    bytes = c.off;
  }
};

struct DkvLayout {
  size_t k, v, q, go, st, dpt, pt, dst, dk, dv, ls, dl, bytes;
  __host__ __device__ DkvLayout(int hd, int nw) {
    const int HDP = hd + 8, OP = hd + 4, BK = 16 * nw;
    Carve c;
    k = c.take<bf16>((size_t)BK * HDP);
    v = c.take<bf16>((size_t)BK * HDP);
    q = c.take<bf16>((size_t)kWT * HDP);
    go = c.take<bf16>((size_t)kWT * HDP);
    st = c.take<float>((size_t)BK * kSP);
    dpt = c.take<float>((size_t)BK * kSP);
    pt = c.take<bf16>((size_t)BK * kPP);
    dst = c.take<bf16>((size_t)BK * kPP);
    dk = c.take<float>((size_t)BK * OP);
    dv = c.take<float>((size_t)BK * OP);
    ls = c.take<float>(kWT);
    dl = c.take<float>(kWT);
    bytes = c.off;
  }
};

// rows [r0, r0 + rows) of block `which` (0 q, 1 k, 2 v) of head h into smem [rows][HDP] as bf16, 16-byte vectors;
// rows past N are zero
__device__ __forceinline__ void load_bf16_rows(bf16* s, int HDP, const bf16* qkv, const Dims& a, int64_t b,
                                               int64_t h, int which, int64_t r0, int rows) {
  const int vec = a.hd / 8;
  for (int e = threadIdx.x; e < rows * vec; e += blockDim.x) {
    const int r = e / vec, c = (e % vec) * 8;
    const int64_t i = r0 + r;
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (i < a.N) v = *reinterpret_cast<const uint4*>(qkv + qkv_at(a, b, i, which, h, c));
    *reinterpret_cast<uint4*>(s + r * HDP + c) = v;
  }
}

// rows of dout (any dtype) for head h into smem as bf16
__device__ __forceinline__ void load_dout_rows(bf16* s, int HDP, Src dout, const Dims& a, int64_t b, int64_t h,
                                               int64_t r0, int rows) {
  for (int e = threadIdx.x; e < rows * a.hd; e += blockDim.x) {
    const int r = e / a.hd, d = e % a.hd;
    const int64_t i = r0 + r;
    s[r * HDP + d] = __float2bfloat16_rn(i < a.N ? dout[out_at(a, b, i, h, d)] : 0.0f);
  }
}

template <int NW>
__global__ void __launch_bounds__(NW * 32) attn_fwd_wmma(const bf16* qkv, Dst out, Dst lse, Dims a) {
  extern __shared__ __align__(128) unsigned char sm_b[];
  constexpr int BQ = 16 * NW;
  const int hd = a.hd, HDP = hd + 8, OP = hd + 4;
  const FwdLayout L(hd, NW);
  bf16* Qs = reinterpret_cast<bf16*>(sm_b + L.q);
  bf16* Ks = reinterpret_cast<bf16*>(sm_b + L.k);
  bf16* Vs = reinterpret_cast<bf16*>(sm_b + L.v);
  float* Ss = reinterpret_cast<float*>(sm_b + L.s);
  bf16* Ps = reinterpret_cast<bf16*>(sm_b + L.p);
  float* Os = reinterpret_cast<float*>(sm_b + L.o);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, rr = lane >> 1, half = lane & 1;
  const int64_t b = blockIdx.x / a.H, h = blockIdx.x % a.H, q0 = (int64_t)blockIdx.y * BQ;

  load_bf16_rows(Qs, HDP, qkv, a, b, h, 0, q0, BQ);
  for (int e = lane; e < 16 * OP; e += 32) Os[w * 16 * OP + e] = 0.0f;
  float m_r = -INFINITY, l_r = 0.0f;
  float* srow = Ss + (w * 16 + rr) * kSP;
  bf16* prow = Ps + (w * 16 + rr) * kPP;
  float* orow = Os + (w * 16 + rr) * OP;

  for (int64_t k0 = 0; k0 < a.N; k0 += kWT) {
    __syncthreads();
    load_bf16_rows(Ks, HDP, qkv, a, b, h, 1, k0, kWT);
    load_bf16_rows(Vs, HDP, qkv, a, b, h, 2, k0, kWT);
    __syncthreads();
    // S_w = Q_w K^T  (16 x 32)
#pragma unroll
    for (int nb = 0; nb < kWT / 16; nb++) {
      FragC acc;
      wmma::fill_fragment(acc, 0.0f);
      for (int kb = 0; kb < hd / 16; kb++) {
        FragA fa;
        FragBc fb;
        wmma::load_matrix_sync(fa, Qs + (w * 16) * HDP + kb * 16, HDP);
        wmma::load_matrix_sync(fb, Ks + (nb * 16) * HDP + kb * 16, HDP);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(Ss + (w * 16) * kSP + nb * 16, acc, kSP, wmma::mem_row_major);
    }
    __syncwarp();
    // online softmax: lanes 2r and 2r+1 share row r, 16 columns each
    float sv[16];
    float mt = -INFINITY;
#pragma unroll
    for (int c = 0; c < 16; c++) {
      const int col = half * 16 + c;
      sv[c] = k0 + col < a.N ? srow[col] * a.scale : -INFINITY;
      mt = fmaxf(mt, sv[c]);
    }
    mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
    const float mn = fmaxf(m_r, mt);
    const float alpha = expf(m_r - mn);
    float ps = 0.0f;
#pragma unroll
    for (int c = 0; c < 16; c++) {
      const float p = expf(sv[c] - mn);
      prow[half * 16 + c] = __float2bfloat16_rn(p);
      ps += p;
    }
    ps += __shfl_xor_sync(0xffffffffu, ps, 1);
    l_r = l_r * alpha + ps;
    m_r = mn;
    for (int d = half; d < hd; d += 2) orow[d] *= alpha;
    __syncwarp();
    // O_w += P_w V  (16 x hd)
    for (int db = 0; db < hd / 16; db++) {
      FragC acc;
      wmma::load_matrix_sync(acc, Os + (w * 16) * OP + db * 16, OP, wmma::mem_row_major);
#pragma unroll
      for (int kb = 0; kb < kWT / 16; kb++) {
        FragA fa;
        FragBr fb;
        wmma::load_matrix_sync(fa, Ps + (w * 16) * kPP + kb * 16, kPP);
        wmma::load_matrix_sync(fb, Vs + (kb * 16) * HDP + db * 16, HDP);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(Os + (w * 16) * OP + db * 16, acc, OP, wmma::mem_row_major);
    }
    __syncwarp();
  }
  const int64_t i = q0 + w * 16 + rr;
  if (i < a.N) {
    const float inv = 1.0f / l_r;
    for (int d = half; d < hd; d += 2) out.set(out_at(a, b, i, h, d), orow[d] * inv);
    if (half == 0) lse.set((b * a.H + h) * a.N + i, m_r + logf(l_r));
  }
}

template <int NW>
__global__ void __launch_bounds__(NW * 32)
    attn_dq_wmma(const bf16* qkv, Src dout, Src lse, const float* delta, Dst dqkv, Dims a) {
  extern __shared__ __align__(128) unsigned char sm_b[];
  constexpr int BQ = 16 * NW;
  const int hd = a.hd, HDP = hd + 8, OP = hd + 4;
  const DqLayout L(hd, NW);
  bf16* Qs = reinterpret_cast<bf16*>(sm_b + L.q);
  bf16* dOs = reinterpret_cast<bf16*>(sm_b + L.go);
  bf16* Ks = reinterpret_cast<bf16*>(sm_b + L.k);
  bf16* Vs = reinterpret_cast<bf16*>(sm_b + L.v);
  float* Ss = reinterpret_cast<float*>(sm_b + L.s);
  float* dPs = reinterpret_cast<float*>(sm_b + L.dp);
  bf16* dSs = reinterpret_cast<bf16*>(sm_b + L.ds);
  float* dQs = reinterpret_cast<float*>(sm_b + L.dq);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, rr = lane >> 1, half = lane & 1;
  const int64_t b = blockIdx.x / a.H, h = blockIdx.x % a.H, q0 = (int64_t)blockIdx.y * BQ;
  const int64_t i = q0 + w * 16 + rr;
  const int64_t row0 = (b * a.H + h) * a.N;

  load_bf16_rows(Qs, HDP, qkv, a, b, h, 0, q0, BQ);
  load_dout_rows(dOs, HDP, dout, a, b, h, q0, BQ);
  for (int e = lane; e < 16 * OP; e += 32) dQs[w * 16 * OP + e] = 0.0f;
  const float lse_r = i < a.N ? lse[row0 + i] : 0.0f;
  const float dl_r = i < a.N ? delta[row0 + i] : 0.0f;
  float* srow = Ss + (w * 16 + rr) * kSP;
  float* dprow = dPs + (w * 16 + rr) * kSP;
  bf16* dsrow = dSs + (w * 16 + rr) * kPP;

  for (int64_t k0 = 0; k0 < a.N; k0 += kWT) {
    __syncthreads();
    load_bf16_rows(Ks, HDP, qkv, a, b, h, 1, k0, kWT);
    load_bf16_rows(Vs, HDP, qkv, a, b, h, 2, k0, kWT);
    __syncthreads();
#pragma unroll
    for (int nb = 0; nb < kWT / 16; nb++) {
      FragC s, dp;
      wmma::fill_fragment(s, 0.0f);
      wmma::fill_fragment(dp, 0.0f);
      for (int kb = 0; kb < hd / 16; kb++) {
        FragA fa;
        FragBc fb;
        wmma::load_matrix_sync(fa, Qs + (w * 16) * HDP + kb * 16, HDP);
        wmma::load_matrix_sync(fb, Ks + (nb * 16) * HDP + kb * 16, HDP);
        wmma::mma_sync(s, fa, fb, s);
        wmma::load_matrix_sync(fa, dOs + (w * 16) * HDP + kb * 16, HDP);
        wmma::load_matrix_sync(fb, Vs + (nb * 16) * HDP + kb * 16, HDP);
        wmma::mma_sync(dp, fa, fb, dp);
      }
      wmma::store_matrix_sync(Ss + (w * 16) * kSP + nb * 16, s, kSP, wmma::mem_row_major);
      wmma::store_matrix_sync(dPs + (w * 16) * kSP + nb * 16, dp, kSP, wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int c = 0; c < 16; c++) {
      const int col = half * 16 + c;
      const float p = k0 + col < a.N ? expf(srow[col] * a.scale - lse_r) : 0.0f;
      dsrow[col] = __float2bfloat16_rn(p * (dprow[col] - dl_r));
    }
    __syncwarp();
    // dQ_w += dS_w K
    for (int db = 0; db < hd / 16; db++) {
      FragC acc;
      wmma::load_matrix_sync(acc, dQs + (w * 16) * OP + db * 16, OP, wmma::mem_row_major);
#pragma unroll
      for (int kb = 0; kb < kWT / 16; kb++) {
        FragA fa;
        FragBr fb;
        wmma::load_matrix_sync(fa, dSs + (w * 16) * kPP + kb * 16, kPP);
        wmma::load_matrix_sync(fb, Ks + (kb * 16) * HDP + db * 16, HDP);
        wmma::mma_sync(acc, fa, fb, acc);
      }
      wmma::store_matrix_sync(dQs + (w * 16) * OP + db * 16, acc, OP, wmma::mem_row_major);
    }
    __syncwarp();
  }
  if (i < a.N) {
    const float* row = dQs + (w * 16 + rr) * OP;
    for (int d = half; d < hd; d += 2) dqkv.set(qkv_at(a, b, i, 0, h, d), row[d] * a.scale);
  }
}

template <int NW>
__global__ void __launch_bounds__(NW * 32)
    attn_dkv_wmma(const bf16* qkv, Src dout, Src lse, const float* delta, Dst dqkv, Dims a) {
  extern __shared__ __align__(128) unsigned char sm_b[];
  constexpr int BK = 16 * NW;
  const int hd = a.hd, HDP = hd + 8, OP = hd + 4;
  const DkvLayout L(hd, NW);
  bf16* Ks = reinterpret_cast<bf16*>(sm_b + L.k);
  bf16* Vs = reinterpret_cast<bf16*>(sm_b + L.v);
  bf16* Qs = reinterpret_cast<bf16*>(sm_b + L.q);
  bf16* dOs = reinterpret_cast<bf16*>(sm_b + L.go);
  float* St = reinterpret_cast<float*>(sm_b + L.st);
  float* dPt = reinterpret_cast<float*>(sm_b + L.dpt);
  bf16* Pt = reinterpret_cast<bf16*>(sm_b + L.pt);
  bf16* dSt = reinterpret_cast<bf16*>(sm_b + L.dst);
  float* dKs = reinterpret_cast<float*>(sm_b + L.dk);
  float* dVs = reinterpret_cast<float*>(sm_b + L.dv);
  float* Ls = reinterpret_cast<float*>(sm_b + L.ls);
  float* Dl = reinterpret_cast<float*>(sm_b + L.dl);
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, rr = lane >> 1, half = lane & 1;
  const int64_t b = blockIdx.x / a.H, h = blockIdx.x % a.H, k0 = (int64_t)blockIdx.y * BK;
  const int64_t row0 = (b * a.H + h) * a.N;

  load_bf16_rows(Ks, HDP, qkv, a, b, h, 1, k0, BK);
  load_bf16_rows(Vs, HDP, qkv, a, b, h, 2, k0, BK);
  for (int e = lane; e < 16 * OP; e += 32) {
    dKs[w * 16 * OP + e] = 0.0f;
    dVs[w * 16 * OP + e] = 0.0f;
  }
  float* strow = St + (w * 16 + rr) * kSP;
  float* dptrow = dPt + (w * 16 + rr) * kSP;
  bf16* ptrow = Pt + (w * 16 + rr) * kPP;
  bf16* dstrow = dSt + (w * 16 + rr) * kPP;

  for (int64_t q0 = 0; q0 < a.N; q0 += kWT) {
    __syncthreads();
    load_bf16_rows(Qs, HDP, qkv, a, b, h, 0, q0, kWT);
    load_dout_rows(dOs, HDP, dout, a, b, h, q0, kWT);
    for (int t = threadIdx.x; t < kWT; t += blockDim.x) {
      const bool ok = q0 + t < a.N;
      Ls[t] = ok ? lse[row0 + q0 + t] : 0.0f;
      Dl[t] = ok ? delta[row0 + q0 + t] : 0.0f;
    }
    __syncthreads();
    // S^T_w = K_w Q^T, dP^T_w = V_w dO^T  (16 keys x 32 queries)
#pragma unroll
    for (int nb = 0; nb < kWT / 16; nb++) {
      FragC s, dp;
      wmma::fill_fragment(s, 0.0f);
      wmma::fill_fragment(dp, 0.0f);
      for (int kb = 0; kb < hd / 16; kb++) {
        FragA fa;
        FragBc fb;
        wmma::load_matrix_sync(fa, Ks + (w * 16) * HDP + kb * 16, HDP);
        wmma::load_matrix_sync(fb, Qs + (nb * 16) * HDP + kb * 16, HDP);
        wmma::mma_sync(s, fa, fb, s);
        wmma::load_matrix_sync(fa, Vs + (w * 16) * HDP + kb * 16, HDP);
        wmma::load_matrix_sync(fb, dOs + (nb * 16) * HDP + kb * 16, HDP);
        wmma::mma_sync(dp, fa, fb, dp);
      }
      wmma::store_matrix_sync(St + (w * 16) * kSP + nb * 16, s, kSP, wmma::mem_row_major);
      wmma::store_matrix_sync(dPt + (w * 16) * kSP + nb * 16, dp, kSP, wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int c = 0; c < 16; c++) {
      const int col = half * 16 + c;
      const float p = q0 + col < a.N ? expf(strow[col] * a.scale - Ls[col]) : 0.0f;
      ptrow[col] = __float2bfloat16_rn(p);
      dstrow[col] = __float2bfloat16_rn(p * (dptrow[col] - Dl[col]));
    }
    __syncwarp();
    // dV_w += P^T_w dO, dK_w += dS^T_w Q
    for (int db = 0; db < hd / 16; db++) {
      FragC av, ak;
      wmma::load_matrix_sync(av, dVs + (w * 16) * OP + db * 16, OP, wmma::mem_row_major);
      wmma::load_matrix_sync(ak, dKs + (w * 16) * OP + db * 16, OP, wmma::mem_row_major);
#pragma unroll
      for (int kb = 0; kb < kWT / 16; kb++) {
        FragA fa;
        FragBr fb;
        wmma::load_matrix_sync(fa, Pt + (w * 16) * kPP + kb * 16, kPP);
        wmma::load_matrix_sync(fb, dOs + (kb * 16) * HDP + db * 16, HDP);
        wmma::mma_sync(av, fa, fb, av);
        wmma::load_matrix_sync(fa, dSt + (w * 16) * kPP + kb * 16, kPP);
        wmma::load_matrix_sync(fb, Qs + (kb * 16) * HDP + db * 16, HDP);
        wmma::mma_sync(ak, fa, fb, ak);
      }
      wmma::store_matrix_sync(dVs + (w * 16) * OP + db * 16, av, OP, wmma::mem_row_major);
      wmma::store_matrix_sync(dKs + (w * 16) * OP + db * 16, ak, OP, wmma::mem_row_major);
    }
    __syncwarp();
  }
  const int64_t key = k0 + w * 16 + rr;
  if (key < a.N) {
    const float* krow = dKs + (w * 16 + rr) * OP;
    const float* vrow = dVs + (w * 16 + rr) * OP;
    for (int d = half; d < hd; d += 2) {
      dqkv.set(qkv_at(a, b, key, 1, h, d), krow[d] * a.scale);
      dqkv.set(qkv_at(a, b, key, 2, h, d), vrow[d]);
    }
  }
}

// =====================================================================================================================
// host side
// =====================================================================================================================

Dims dims_of(const TensorView& qkv, int H) {
  Dims a;
  a.B = qkv.dim(0);
  a.N = qkv.dim(1);
  a.D = qkv.dim(2) / 3;
  a.H = H;
  a.hd = (int)(a.D / H);
  a.scale = 1.0f / sqrtf((float)a.hd);
  return a;
}

bool force_simt() { return env_on("MAE_ATTENTION_SIMT"); }

// the largest dynamic shared memory each kernel has been allowed so far, per device: cudaFuncSetAttribute runs only
// when a call needs more than that (once per kernel and size in a training run, not once per call)
std::mutex g_smem_mu;
std::map<std::pair<const void*, int>, size_t> g_smem_set;

// launches `kernel` with `smem` bytes of dynamic shared memory, opting in above the 48 KiB default
template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Context& c, const char* name,
            Args&&... args) {
  if (smem > c.smem_optin)
    throw Error(std::string(name) + " needs " + std::to_string(smem) + " bytes of shared memory; cuda:" +
                std::to_string(c.device) + " allows " + std::to_string(c.smem_optin));
  if (smem > 48 * 1024) {
    std::lock_guard<std::mutex> lock(g_smem_mu);
    size_t& allowed = g_smem_set[{reinterpret_cast<const void*>(kernel), c.device}];
    if (smem > allowed) {
      MAE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
      allowed = smem;
    }
  }
  kernel<<<grid, block, smem, c.stream>>>(std::forward<Args>(args)...);
  MAE_KERNEL_CHECK(name, c.stream);
}

void check_head_dim(const Dims& a) {
  if (a.hd > 128)
    throw Error("attention: head dim " + std::to_string(a.hd) +
                " (dim / num_heads) is larger than the CUDA kernels support (128)");
}

// 4 warps when the device has the shared memory for it (and MAE_ATTENTION_WARPS is not 2), else 2, else 0 (no
// tensor-core path)
template <typename Layout>
int wmma_warps(int hd, const Context& c) {
  const char* w = std::getenv("MAE_ATTENTION_WARPS");
  const bool two = w && std::strcmp(w, "2") == 0;
  if (!two && Layout(hd, 4).bytes <= c.smem_optin) return 4;
  if (Layout(hd, 2).bytes <= c.smem_optin) return 2;
  return 0;
}

bool use_wmma(const TensorView& qkv, const Dims& a, const Context& c) {
  return qkv.dtype == DType::BF16 && a.hd % 16 == 0 && a.hd <= 128 && c.major >= 8 && !force_simt();
}

}  // namespace

void attention_forward(const TensorView& qkv, int num_heads, TensorView& out, TensorView& lse) {
  Context& c = context(qkv);
  const Dims a = dims_of(qkv, num_heads);
  check_head_dim(a);
  const unsigned bh = (unsigned)(a.B * a.H);
  if (use_wmma(qkv, a, c)) {
    const auto* q = static_cast<const bf16*>(qkv.data);
    const int nw = wmma_warps<FwdLayout>(a.hd, c);
    if (nw == 4) {
      launch(attn_fwd_wmma<4>, dim3(bh, (unsigned)ceil_div(a.N, 64)), dim3(128), FwdLayout(a.hd, 4).bytes, c,
             "attn_fwd_wmma<4>", q, dst(out), dst(lse), a);
      return;
    }
    if (nw == 2) {
      launch(attn_fwd_wmma<2>, dim3(bh, (unsigned)ceil_div(a.N, 32)), dim3(64), FwdLayout(a.hd, 2).bytes, c,
             "attn_fwd_wmma<2>", q, dst(out), dst(lse), a);
      return;
    }
  }
  const dim3 grid(bh, (unsigned)ceil_div(a.N, kSimtWarps * 8)), block(kSimtWarps * 32);
  const int T = (a.hd + 31) / 32;
  const size_t smem = simt_fwd_smem<8>(a.hd, T);
  switch (T) {
    case 1: launch(attn_fwd_simt<1, 8>, grid, block, smem, c, "attn_fwd_simt<1>", src(qkv), dst(out), dst(lse), a); break;
    case 2: launch(attn_fwd_simt<2, 8>, grid, block, smem, c, "attn_fwd_simt<2>", src(qkv), dst(out), dst(lse), a); break;
    case 3: launch(attn_fwd_simt<3, 8>, grid, block, smem, c, "attn_fwd_simt<3>", src(qkv), dst(out), dst(lse), a); break;
    default: launch(attn_fwd_simt<4, 8>, grid, block, smem, c, "attn_fwd_simt<4>", src(qkv), dst(out), dst(lse), a); break;
  }
}

void attention_backward(const TensorView& qkv, const TensorView& out, const TensorView& dout, const TensorView& lse,
                        int num_heads, TensorView& dqkv) {
  Context& c = context(qkv);
  const Dims a = dims_of(qkv, num_heads);
  check_head_dim(a);
  const unsigned bh = (unsigned)(a.B * a.H);
  Scratch delta(c.device, (size_t)(a.B * a.H * a.N) * sizeof(float));
  {
    const int64_t rows = a.B * a.N * a.H;
    const unsigned g = (unsigned)std::max<int64_t>(1, std::min<int64_t>(ceil_div(rows, 8), (int64_t)c.sm_count * 16));
    attn_delta_kernel<<<g, 256, 0, c.stream>>>(src(out), src(dout), delta.as<float>(), a);
    MAE_KERNEL_CHECK("attn_delta_kernel", c.stream);
  }
  const float* dl = delta.as<float>();
  if (use_wmma(qkv, a, c)) {
    const auto* q = static_cast<const bf16*>(qkv.data);
    const int nq = wmma_warps<DqLayout>(a.hd, c), nk = wmma_warps<DkvLayout>(a.hd, c);
    if (nq && nk) {
      if (nq == 4)
        launch(attn_dq_wmma<4>, dim3(bh, (unsigned)ceil_div(a.N, 64)), dim3(128), DqLayout(a.hd, 4).bytes, c,
               "attn_dq_wmma<4>", q, src(dout), src(lse), dl, dst(dqkv), a);
      else
        launch(attn_dq_wmma<2>, dim3(bh, (unsigned)ceil_div(a.N, 32)), dim3(64), DqLayout(a.hd, 2).bytes, c,
               "attn_dq_wmma<2>", q, src(dout), src(lse), dl, dst(dqkv), a);
      if (nk == 4)
        launch(attn_dkv_wmma<4>, dim3(bh, (unsigned)ceil_div(a.N, 64)), dim3(128), DkvLayout(a.hd, 4).bytes, c,
               "attn_dkv_wmma<4>", q, src(dout), src(lse), dl, dst(dqkv), a);
      else
        launch(attn_dkv_wmma<2>, dim3(bh, (unsigned)ceil_div(a.N, 32)), dim3(64), DkvLayout(a.hd, 2).bytes, c,
               "attn_dkv_wmma<2>", q, src(dout), src(lse), dl, dst(dqkv), a);
      return;
    }
  }
  constexpr int RW = 4;
  const int T = (a.hd + 31) / 32;
  const dim3 gq(bh, (unsigned)ceil_div(a.N, kSimtWarps * RW)), block(kSimtWarps * 32);
  const size_t sq = simt_dq_smem<RW>(a.hd), sk = simt_dkv_smem<RW>(a.hd);
  const Src s_qkv = src(qkv), s_dout = src(dout), s_lse = src(lse);
  const Dst d_dqkv = dst(dqkv);
  switch (T) {
    case 1:
      launch(attn_dq_simt<1, RW>, gq, block, sq, c, "attn_dq_simt<1>", s_qkv, s_dout, s_lse, dl, d_dqkv, a);
      launch(attn_dkv_simt<1, RW>, gq, block, sk, c, "attn_dkv_simt<1>", s_qkv, s_dout, s_lse, dl, d_dqkv, a);
      break;
    case 2:
      launch(attn_dq_simt<2, RW>, gq, block, sq, c, "attn_dq_simt<2>", s_qkv, s_dout, s_lse, dl, d_dqkv, a);
      launch(attn_dkv_simt<2, RW>, gq, block, sk, c, "attn_dkv_simt<2>", s_qkv, s_dout, s_lse, dl, d_dqkv, a);
      break;
    case 3:
      launch(attn_dq_simt<3, RW>, gq, block, sq, c, "attn_dq_simt<3>", s_qkv, s_dout, s_lse, dl, d_dqkv, a);
      launch(attn_dkv_simt<3, RW>, gq, block, sk, c, "attn_dkv_simt<3>", s_qkv, s_dout, s_lse, dl, d_dqkv, a);
      break;
    default:
      launch(attn_dq_simt<4, RW>, gq, block, sq, c, "attn_dq_simt<4>", s_qkv, s_dout, s_lse, dl, d_dqkv, a);
      launch(attn_dkv_simt<4, RW>, gq, block, sk, c, "attn_dkv_simt<4>", s_qkv, s_dout, s_lse, dl, d_dqkv, a);
      break;
  }
}

}  // namespace mae::cuda
