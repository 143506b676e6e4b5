// Fused multi-head self-attention on the packed output of the qkv Linear, as the official ViT Attention:
//   qkv [B, N, 3D]: q = qkv[..., 0:D], k = qkv[..., D:2D], v = qkv[..., 2D:3D]; head h owns columns h*hd .. h*hd+hd
//   of each block (hd = D / H). S = q k^T * hd^-0.5, P = softmax(S) by rows, out = P v, heads merged -> [B, N, D].
//   lse [B, H, N] = log sum_j exp(S_ij) is the only thing forward keeps; backward recomputes P = exp(S - lse):
//   dv = P^T dout, dP = dout v^T, dS = P * (dP - rowsum(dout * out)), dq = dS k * scale, dk = dS^T q * scale.
// One (batch, head) pair per task; each thread packs its head's q, k^T, v into contiguous scratch so the inner
// loops are unit-stride and vectorise.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu.h"

namespace mae::cpu {

namespace {

struct Head {
  int64_t N, D, hd;
  // q [N, hd] (scaled), k^T [hd, N], v [N, hd], s [N]; for backward also k [N, hd] and v^T [hd, N]
  std::vector<float> q, kt, v, s, k, vt;
  Head(int64_t N_, int64_t D_, int64_t hd_, bool backward)
      : N(N_), D(D_), hd(hd_), q(N * hd), kt(hd * N), v(N * hd), s(N), k(backward ? N * hd : 0), vt(backward ? hd * N : 0) {}

  // packs head h of one batch entry (base points at qkv[b, 0, 0])
  void pack(const float* base, int64_t h, float scale) {
    const bool backward = !k.empty();
    for (int64_t i = 0; i < N; i++) {
      const float* row = base + i * 3 * D + h * hd;
      for (int64_t d = 0; d < hd; d++) {
        q[i * hd + d] = row[d] * scale;
        kt[d * N + i] = row[D + d];
        v[i * hd + d] = row[2 * D + d];
        if (backward) {
          k[i * hd + d] = row[D + d];
          vt[d * N + i] = row[2 * D + d];
        }
      }
    }
  }

  // s = q_i k^T (already scaled)
  void scores(int64_t i) {
    float* S = s.data();
    for (int64_t j = 0; j < N; j++) S[j] = 0.0f;
    for (int64_t d = 0; d < hd; d++) {
      const float qd = q[i * hd + d];
      const float* kd = kt.data() + d * N;
#pragma omp simd
      for (int64_t j = 0; j < N; j++) S[j] += qd * kd[j];
    }
  }
};

}  // namespace

void attention_forward(const TensorView& qkv, int num_heads, TensorView& out, TensorView& lse) {
  const int64_t B = qkv.dim(0), N = qkv.dim(1), D = qkv.dim(2) / 3, H = num_heads, hd = D / H;
  const float scale = 1.0f / std::sqrt((float)hd);
  const float* QKV = qkv.f32();
  float *OUT = out.f32(), *LSE = lse.f32();
#pragma omp parallel
  {
    Head t(N, D, hd, false);
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < B * H; bh++) {
      const int64_t b = bh / H, h = bh % H;
      t.pack(QKV + b * N * 3 * D, h, scale);
      for (int64_t i = 0; i < N; i++) {
        t.scores(i);
        float* S = t.s.data();
        float m = -INFINITY;
        for (int64_t j = 0; j < N; j++) m = S[j] > m ? S[j] : m;
        float sum = 0.0f;
        for (int64_t j = 0; j < N; j++) {
          S[j] = std::exp(S[j] - m);
          sum += S[j];
        }
        const float inv = 1.0f / sum;
        float* o = OUT + (b * N + i) * D + h * hd;
        for (int64_t d = 0; d < hd; d++) o[d] = 0.0f;
        for (int64_t j = 0; j < N; j++) {
          const float p = S[j] * inv;
          const float* vj = t.v.data() + j * hd;
#pragma omp simd
          for (int64_t d = 0; d < hd; d++) o[d] += p * vj[d];
        }
        LSE[bh * N + i] = m + std::log(sum);
      }
    }
  }
}

void attention_backward(const TensorView& qkv, const TensorView& out, const TensorView& dout, const TensorView& lse,
                        int num_heads, TensorView& dqkv) {
  const int64_t B = qkv.dim(0), N = qkv.dim(1), D = qkv.dim(2) / 3, H = num_heads, hd = D / H;
  const float scale = 1.0f / std::sqrt((float)hd);
  const float *QKV = qkv.f32(), *OUT = out.f32(), *DOUT = dout.f32(), *LSE = lse.f32();
  float* DQKV = dqkv.f32();
#pragma omp parallel
  {
    Head t(N, D, hd, true);
    std::vector<float> dq(N * hd), dk(N * hd), dv(N * hd), dp(N), delta(N);
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < B * H; bh++) {
      const int64_t b = bh / H, h = bh % H;
      t.pack(QKV + b * N * 3 * D, h, scale);
      std::fill(dq.begin(), dq.end(), 0.0f);
      std::fill(dk.begin(), dk.end(), 0.0f);
      std::fill(dv.begin(), dv.end(), 0.0f);
      for (int64_t i = 0; i < N; i++) {
        const float *o = OUT + (b * N + i) * D + h * hd, *g = DOUT + (b * N + i) * D + h * hd;
        float acc = 0.0f;
        for (int64_t d = 0; d < hd; d++) acc += o[d] * g[d];
        delta[i] = acc;
      }
      for (int64_t i = 0; i < N; i++) {
        const float* g = DOUT + (b * N + i) * D + h * hd;
        t.scores(i);
        float* P = t.s.data();
        const float l = LSE[bh * N + i];
        for (int64_t j = 0; j < N; j++) P[j] = std::exp(P[j] - l);
        // dP_i = dout_i v^T
        for (int64_t j = 0; j < N; j++) dp[j] = 0.0f;
        for (int64_t d = 0; d < hd; d++) {
          const float gd = g[d];
          const float* vd = t.vt.data() + d * N;
#pragma omp simd
          for (int64_t j = 0; j < N; j++) dp[j] += gd * vd[j];
        }
        float* dqi = dq.data() + i * hd;
        const float* qi = t.q.data() + i * hd;  // scaled q: dk_j += dS_ij * q_i * scale = dS_ij * qi
        for (int64_t j = 0; j < N; j++) {
          const float pj = P[j];
          const float ds = pj * (dp[j] - delta[i]);
          float* dvj = dv.data() + j * hd;
          float* dkj = dk.data() + j * hd;
          const float* kj = t.k.data() + j * hd;
#pragma omp simd
          for (int64_t d = 0; d < hd; d++) {
            dvj[d] += pj * g[d];
            dkj[d] += ds * qi[d];
            dqi[d] += ds * kj[d];
          }
        }
        for (int64_t d = 0; d < hd; d++) dqi[d] *= scale;
      }
      for (int64_t i = 0; i < N; i++) {
        float* row = DQKV + (b * N + i) * 3 * D + h * hd;
        for (int64_t d = 0; d < hd; d++) {
          row[d] = dq[i * hd + d];
          row[D + d] = dk[i * hd + d];
          row[2 * D + d] = dv[i * hd + d];
        }
      }
    }
  }
}

}  // namespace mae::cpu
