// Fused multi-head self-attention on the packed output of the qkv Linear, as the official ViT Attention:
//   qkv [B, N, 3D]: q = qkv[..., 0:D], k = qkv[..., D:2D], v = qkv[..., 2D:3D]; head h owns columns h*hd .. h*hd+hd
//   of each block (hd = D / H). S = q k^T * hd^-0.5, P = softmax(S) by rows, out = P v, heads merged -> [B, N, D].
//   lse [B, H, N] = log sum_j exp(S_ij) is the only thing forward keeps; backward recomputes P = exp(S - lse):
//   dv = P^T dout, dP = dout v^T, dS = P * (dP - rowsum(dout * out)), dq = dS k * scale, dk = dS^T q * scale.
// One (batch, head) pair per task. Each thread packs its head into zero-padded scratch (row widths rounded up to 16
// floats) and runs the five products through one register-blocked micro-kernel (8 rows x 16 columns of accumulators
// with AVX-512, 4 x 16 with AVX2; a broadcast operand times a contiguous row), which the compiler vectorises.
// Queries go in blocks of at most 64 rows, so scratch stays O(64 N) per thread; exp is the vectorised one of vexp.h.
// qkv, out, dout and dqkv may each be float32 or bfloat16: packing widens a head's rows to float32 and the results
// are rounded once when written, so every product accumulates in float32 and the softmax statistics (lse, float32)
// come from float32 scores.
//
// bf16 with oneDNN (qkv, out, dout and dqkv bfloat16, and oneDNN has bf16 kernels here: AMX or AVX512-BF16): the
// five products run as oneDNN batched matmuls over [batch, head] on strided views of qkv, out and dqkv (no copies),
// a chunk of batch entries at a time so that the [b, H, N, N] scores stay within 4 MB: S = scale q k^T in float32,
// softmax rows in float32 (lse kept), P rounded to bfloat16 for out = P v; backward recomputes S and P = exp(S - lse),
// dP = dout v^T (float32), dS = P (dP - delta) rounded to bfloat16, then dq = scale dS k, dk = scale dS^T q and
// dv = P^T dout written straight into dqkv.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu.h"
#include "vexp.h"

namespace mae::cpu {

namespace {

constexpr int64_t kVec = 16;   // columns per accumulator row (one AVX-512 register, two AVX2 ones)
#ifdef __AVX512F__
constexpr int64_t kRows = 8;   // accumulator rows: 8 zmm registers, enough independent FMA chains to fill 2 FMA units
#else
constexpr int64_t kRows = 4;   // accumulator rows: 8 ymm registers (of 16)
#endif
constexpr int64_t kBlock = 64; // query rows per block

inline int64_t round_up(int64_t n) { return (n + kVec - 1) / kVec * kVec; }

// P = softmax(S) over one row of N scores (P may be S), in float32; returns the row's log-sum-exp
inline float softmax_row(const float* S, int64_t N, float* P) {
  float mx = -INFINITY;
  // a compare-select, not std::max: GCC turns this one into vmaxps, std::max into a loop 6x slower
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < N; j++) mx = mx > S[j] ? mx : S[j];
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < N; j++) {
    P[j] = exp_nonpositive(S[j] - mx);
    sum += P[j];
  }
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j < N; j++) P[j] *= inv;
  return mx + std::log(sum);
}

// C[i][0:n] (+)= sum_k A(i, k) * Bm[k][0:n] for i < m, with A(i, k) = A[i * sai + k * sak]; n is a multiple of kVec,
// Bm has row stride ldb, C row stride ldc. accumulate: add to C instead of overwriting it.
template <int R>
inline void tile(int64_t i, int64_t j, int64_t K, const float* A, int64_t sai, int64_t sak, const float* Bm,
                 int64_t ldb, float* C, int64_t ldc, bool accumulate) {
  float acc[R][kVec];
  for (int r = 0; r < R; r++)
#pragma omp simd
    for (int64_t c = 0; c < kVec; c++) acc[r][c] = accumulate ? C[(i + r) * ldc + j + c] : 0.0f;
  for (int64_t k = 0; k < K; k++) {
    const float* b = Bm + k * ldb + j;
    for (int r = 0; r < R; r++) {
      const float a = A[(i + r) * sai + k * sak];
#pragma omp simd
      for (int64_t c = 0; c < kVec; c++) acc[r][c] += a * b[c];
    }
  }
  for (int r = 0; r < R; r++)
#pragma omp simd
    for (int64_t c = 0; c < kVec; c++) C[(i + r) * ldc + j + c] = acc[r][c];
}

void matmul(int64_t m, int64_t n, int64_t K, const float* A, int64_t sai, int64_t sak, const float* Bm, int64_t ldb,
            float* C, int64_t ldc, bool accumulate) {
  int64_t i = 0;
  for (; i + kRows <= m; i += kRows)
    for (int64_t j = 0; j < n; j += kVec) tile<kRows>(i, j, K, A, sai, sak, Bm, ldb, C, ldc, accumulate);
  // the remaining rows (fewer than kRows) in tiles of 4, 2, 1
  if (kRows > 4 && i + 4 <= m) {
    for (int64_t j = 0; j < n; j += kVec) tile<4>(i, j, K, A, sai, sak, Bm, ldb, C, ldc, accumulate);
    i += 4;
  }
  if (i + 2 <= m) {
    for (int64_t j = 0; j < n; j += kVec) tile<2>(i, j, K, A, sai, sak, Bm, ldb, C, ldc, accumulate);
    i += 2;
  }
  if (i < m)
    for (int64_t j = 0; j < n; j += kVec) tile<1>(i, j, K, A, sai, sak, Bm, ldb, C, ldc, accumulate);
}

// Per-thread scratch for one head: rows padded to hp = round_up(hd) (q, k, v, dout, dq, dk, dv, o) and to
// np = round_up(N) (k^T, v^T and the score blocks). Padding stays zero, so padded columns of products are zero.
struct Head {
  int64_t N, D, hd, hp, np;
  std::vector<float> q, k, v, kt, vt, g, dq, dk, dv, s, p, o;
  Head(int64_t N_, int64_t D_, int64_t hd_, bool backward)
      : N(N_), D(D_), hd(hd_), hp(round_up(hd_)), np(round_up(N_)),
        q(N * hp, 0.0f), k(backward ? N * hp : 0, 0.0f), v(N * hp, 0.0f), kt(hp * np, 0.0f),
        vt(backward ? hp * np : 0, 0.0f), g(backward ? N * hp : 0, 0.0f), dq(backward ? kBlock * hp : 0, 0.0f),
        dk(backward ? N * hp : 0, 0.0f), dv(backward ? N * hp : 0, 0.0f), s(kBlock * np, 0.0f),
        p(backward ? kBlock * np : 0, 0.0f), o(backward ? 0 : kBlock * hp, 0.0f) {}

  std::vector<float> row = std::vector<float>(3 * hp);  // one token's q, k, v of this head in float32

  // packs head h of batch entry b of qkv [B, N, 3D]; q is pre-scaled
  void pack(const TensorView& qkv, int64_t b, int64_t h, float scale) {
    const bool backward = !k.empty();
    for (int64_t i = 0; i < N; i++) {
      const int64_t at = (b * N + i) * 3 * D + h * hd;
      const float *rq = in_row(qkv, at, hd, row.data()), *rk = in_row(qkv, at + D, hd, row.data() + hp),
                  *rv = in_row(qkv, at + 2 * D, hd, row.data() + 2 * hp);
      for (int64_t d = 0; d < hd; d++) {
        q[i * hp + d] = rq[d] * scale;
        kt[d * np + i] = rk[d];
        v[i * hp + d] = rv[d];
      }
      if (backward)
        for (int64_t d = 0; d < hd; d++) {
          k[i * hp + d] = rk[d];
          vt[d * np + i] = rv[d];
        }
    }
  }

  // scores of query rows i0 .. i0 + m into s [m, np]: s = q k^T (q already scaled)
  void scores(int64_t i0, int64_t m) { matmul(m, np, hd, q.data() + i0 * hp, hp, 1, kt.data(), np, s.data(), np, false); }
};

// ---- bf16 through oneDNN ------------------------------------------------------------------------------------------

// a [nb, H, rows, cols] view: batch stride sb, head stride sh, row stride sr, column stride sc
MatDesc view4(int64_t nb, int64_t H, int64_t rows, int64_t cols, int64_t sb, int64_t sh, int64_t sr, int64_t sc,
              DType t) {
  return MatDesc{4, {nb, H, rows, cols}, {sb, sh, sr, sc}, t};
}

// scratch of n elements of `bytes` each from the CPU allocator, freed with this object
struct Scratch {
  void* p;
  size_t bytes;
  Scratch(int64_t n, size_t elem) : p(allocator.alloc(n * elem)), bytes(n * elem) {}
  ~Scratch() { allocator.free(p, bytes); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* f32() const { return static_cast<float*>(p); }
  uint16_t* bf16() const { return static_cast<uint16_t*>(p); }
};

bool use_onednn(std::initializer_list<const TensorView*> ts) {
  for (const TensorView* t : ts)
    if (t->dtype != DType::BF16) return false;
  return dnnl_info().bf16_matmul;
}

// batch entries per chunk: [nb, H, N, N] float32 scores of at most 1M elements (4 MB), so that they are still in
// cache when the softmax pass reads them (ViT-B's decoder, 16 x 197 x 197 per entry: one entry at a time; 16 MB
// chunks made its bf16 attention 1.6x slower on the 2-core Zen 5)
int64_t chunk_of(int64_t B, int64_t H, int64_t N) { return std::max<int64_t>(1, std::min(B, (int64_t(1) << 20) / (H * N * N))); }

bool attention_forward_onednn(const TensorView& qkv, int64_t H, TensorView& out, TensorView& lse) {
  const int64_t B = qkv.dim(0), N = qkv.dim(1), D = qkv.dim(2) / 3, hd = D / H, nb = chunk_of(B, H, N);
  const float scale = 1.0f / std::sqrt((float)hd);
  Scratch S(nb * H * N * N, 4), P(nb * H * N * N, 2);
  for (int64_t b0 = 0; b0 < B; b0 += nb) {
    const int64_t n = std::min(nb, B - b0), rows = n * H * N;
    const uint16_t* base = bf16(qkv) + b0 * N * 3 * D;
    const MatDesc q = view4(n, H, N, hd, N * 3 * D, hd, 3 * D, 1, DType::BF16),
                  kt = view4(n, H, hd, N, N * 3 * D, hd, 1, 3 * D, DType::BF16),
                  s = view4(n, H, N, N, H * N * N, N * N, N, 1, DType::F32),
                  p = view4(n, H, N, N, H * N * N, N * N, N, 1, DType::BF16),
                  o = view4(n, H, N, hd, N * D, hd, D, 1, DType::BF16);
    if (!matmul(q, base, kt, base + D, nullptr, scale, s, S.p)) return false;
    float* LSE = lse.f32() + b0 * H * N;
#pragma omp parallel if (rows * N >= kParallelGrain)
    {
      std::vector<float> e(N);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; r++) {
        LSE[r] = softmax_row(S.f32() + r * N, N, e.data());
        to_bf16(e.data(), P.bf16() + r * N, N);
      }
    }
    if (!matmul(p, P.p, view4(n, H, N, hd, N * 3 * D, hd, 3 * D, 1, DType::BF16), base + 2 * D, nullptr, 1.0f, o,
                bf16(out) + b0 * N * D))
      return false;
  }
  return true;
}

bool attention_backward_onednn(const TensorView& qkv, const TensorView& out, const TensorView& dout,
                               const TensorView& lse, int64_t H, TensorView& dqkv) {
  const int64_t B = qkv.dim(0), N = qkv.dim(1), D = qkv.dim(2) / 3, hd = D / H, nb = chunk_of(B, H, N);
  const float scale = 1.0f / std::sqrt((float)hd);
  Scratch S(nb * H * N * N, 4), P(nb * H * N * N, 2), dP(nb * H * N * N, 4), dS(nb * H * N * N, 2);
  for (int64_t b0 = 0; b0 < B; b0 += nb) {
    const int64_t n = std::min(nb, B - b0), rows = n * H * N;
    const uint16_t* base = bf16(qkv) + b0 * N * 3 * D;
    const uint16_t* g = bf16(dout) + b0 * N * D;
    uint16_t* dbase = bf16(dqkv) + b0 * N * 3 * D;
    // [n, H, N, hd] views of q, k, v (and of their gradients in dqkv), of dout, and their transposes
    const MatDesc tok = view4(n, H, N, hd, N * 3 * D, hd, 3 * D, 1, DType::BF16),
                  tokT = view4(n, H, hd, N, N * 3 * D, hd, 1, 3 * D, DType::BF16),
                  go = view4(n, H, N, hd, N * D, hd, D, 1, DType::BF16),
                  sq = view4(n, H, N, N, H * N * N, N * N, N, 1, DType::F32),
                  sqb = view4(n, H, N, N, H * N * N, N * N, N, 1, DType::BF16),
                  sqbT = view4(n, H, N, N, H * N * N, N * N, 1, N, DType::BF16);
    if (!matmul(tok, base, tokT, base + D, nullptr, scale, sq, S.p)) return false;
    if (!matmul(go, g, tokT, base + 2 * D, nullptr, 1.0f, sq, dP.p)) return false;
    const float* LSE = lse.f32() + b0 * H * N;
#pragma omp parallel if (rows * N >= kParallelGrain)
    {
      std::vector<float> pr(N), ds(N), ob(hd), gb(hd);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; r++) {
        // row r = (batch b, head h, query i); delta = dout_i . out_i over this head
        const int64_t b = r / (H * N), h = (r / N) % H, i = r % N;
        const int64_t at = ((b0 + b) * N + i) * D + h * hd;
        const float *o = in_row(out, at, hd, ob.data()), *gi = in_row(dout, at, hd, gb.data());
        float delta = 0.0f;
        for (int64_t d = 0; d < hd; d++) delta += o[d] * gi[d];
        const float *Sr = S.f32() + r * N, *dPr = dP.f32() + r * N;
        const float l = LSE[r];
#pragma omp simd
        for (int64_t j = 0; j < N; j++) {
          pr[j] = exp_nonpositive(Sr[j] - l);
          ds[j] = pr[j] * (dPr[j] - delta);
        }
        to_bf16(pr.data(), P.bf16() + r * N, N);
        to_bf16(ds.data(), dS.bf16() + r * N, N);
      }
    }
    if (!matmul(sqb, dS.p, tok, base + D, nullptr, scale, tok, dbase) ||         // dq = scale dS k
        !matmul(sqbT, dS.p, tok, base, nullptr, scale, tok, dbase + D) ||        // dk = scale dS^T q
        !matmul(sqbT, P.p, go, g, nullptr, 1.0f, tok, dbase + 2 * D))            // dv = P^T dout
      return false;
  }
  return true;
}

}  // namespace

void attention_forward(const TensorView& qkv, int num_heads, TensorView& out, TensorView& lse) {
  if (use_onednn({&qkv, &out}) && attention_forward_onednn(qkv, num_heads, out, lse)) return;
  const int64_t B = qkv.dim(0), N = qkv.dim(1), D = qkv.dim(2) / 3, H = num_heads, hd = D / H;
  const float scale = 1.0f / std::sqrt((float)hd);
  float* LSE = lse.f32();
#pragma omp parallel
  {
    Head t(N, D, hd, false);
    const int64_t np = t.np, hp = t.hp;
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < B * H; bh++) {
      const int64_t b = bh / H, h = bh % H;
      t.pack(qkv, b, h, scale);
      for (int64_t i0 = 0; i0 < N; i0 += kBlock) {
        const int64_t m = std::min(kBlock, N - i0);
        t.scores(i0, m);
        // softmax by rows, in place: s becomes P (zero in the padding)
        for (int64_t r = 0; r < m; r++) {
          float* S = t.s.data() + r * np;
          LSE[bh * N + i0 + r] = softmax_row(S, N, S);
          for (int64_t j = N; j < np; j++) S[j] = 0.0f;
        }
        // o = P v
        matmul(m, hp, N, t.s.data(), np, 1, t.v.data(), hp, t.o.data(), hp, false);
        for (int64_t r = 0; r < m; r++) {
          const int64_t at = (b * N + i0 + r) * D + h * hd;
          float* src = t.o.data() + r * hp;
          float* dst = out_row(out, at, src);
          if (dst != src)
            for (int64_t d = 0; d < hd; d++) dst[d] = src[d];
          out_row_done(out, at, hd, src);
        }
      }
    }
  }
}

void attention_backward(const TensorView& qkv, const TensorView& out, const TensorView& dout, const TensorView& lse,
                        int num_heads, TensorView& dqkv) {
  if (use_onednn({&qkv, &out, &dout, &dqkv}) && attention_backward_onednn(qkv, out, dout, lse, num_heads, dqkv)) return;
  const int64_t B = qkv.dim(0), N = qkv.dim(1), D = qkv.dim(2) / 3, H = num_heads, hd = D / H;
  const float scale = 1.0f / std::sqrt((float)hd);
  const float* LSE = lse.f32();
#pragma omp parallel
  {
    Head t(N, D, hd, true);
    const int64_t np = t.np, hp = t.hp;
    std::vector<float> delta(N), ob(hd), gb(hd), rowb(3 * hd);
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < B * H; bh++) {
      const int64_t b = bh / H, h = bh % H;
      t.pack(qkv, b, h, scale);
      for (int64_t i = 0; i < N; i++) {
        const float *o = in_row(out, (b * N + i) * D + h * hd, hd, ob.data()),
                    *g = in_row(dout, (b * N + i) * D + h * hd, hd, gb.data());
        float acc = 0.0f;
        for (int64_t d = 0; d < hd; d++) {
          acc += o[d] * g[d];
          t.g[i * hp + d] = g[d];
        }
        delta[i] = acc;
      }
      std::fill(t.dk.begin(), t.dk.end(), 0.0f);
      std::fill(t.dv.begin(), t.dv.end(), 0.0f);
      for (int64_t i0 = 0; i0 < N; i0 += kBlock) {
        const int64_t m = std::min(kBlock, N - i0);
        t.scores(i0, m);
        // P = exp(S - lse) into s (zero in the padding)
        for (int64_t r = 0; r < m; r++) {
          float* S = t.s.data() + r * np;
          const float l = LSE[bh * N + i0 + r];
#pragma omp simd
          for (int64_t j = 0; j < N; j++) S[j] = exp_nonpositive(S[j] - l);
          for (int64_t j = N; j < np; j++) S[j] = 0.0f;
        }
        // dP = dout v^T into p
        matmul(m, np, hd, t.g.data() + i0 * hp, hp, 1, t.vt.data(), np, t.p.data(), np, false);
        // dv += P^T dout (rows j of dv, summed over this block's queries)
        matmul(N, hp, m, t.s.data(), 1, np, t.g.data() + i0 * hp, hp, t.dv.data(), hp, true);
        // dS = P * (dP - delta) into p
        for (int64_t r = 0; r < m; r++) {
          const float* P = t.s.data() + r * np;
          float* dS = t.p.data() + r * np;
          const float dl = delta[i0 + r];
#pragma omp simd
          for (int64_t j = 0; j < np; j++) dS[j] = P[j] * (dS[j] - dl);
        }
        // dq = dS k * scale; dk += dS^T q (q holds q * scale)
        matmul(m, hp, N, t.p.data(), np, 1, t.k.data(), hp, t.dq.data(), hp, false);
        matmul(N, hp, m, t.p.data(), 1, np, t.q.data() + i0 * hp, hp, t.dk.data(), hp, true);
        for (int64_t r = 0; r < m; r++) {
          const int64_t at = (b * N + i0 + r) * 3 * D + h * hd;
          float* row = out_row(dqkv, at, rowb.data());
          const float* dq = t.dq.data() + r * hp;
          for (int64_t d = 0; d < hd; d++) row[d] = dq[d] * scale;
          out_row_done(dqkv, at, hd, row);
        }
      }
      for (int64_t i = 0; i < N; i++) {
        const int64_t at = (b * N + i) * 3 * D + h * hd;
        float *rk = out_row(dqkv, at + D, rowb.data()), *rv = out_row(dqkv, at + 2 * D, rowb.data() + hd);
        for (int64_t d = 0; d < hd; d++) {
          rk[d] = t.dk[i * hp + d];
          rv[d] = t.dv[i * hp + d];
        }
        out_row_done(dqkv, at + D, hd, rk);
        out_row_done(dqkv, at + 2 * D, hd, rv);
      }
    }
  }
}

}  // namespace mae::cpu
