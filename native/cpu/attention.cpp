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
// dv = P^T dout written straight into dqkv. Where the CPU has AVX512-BF16 the passes over the score rows are AVX-512
// in base 2 (S comes out times log2(e), exps by exp2_16, bf16 rounding in registers): ViT-B's decoder attention on
// one thread 18% faster forward, 28% backward than with the portable rows.
//
// bf16 fused, on CPUs with AVX512-BF16 (qkv, out, dout and dqkv bfloat16, head dim a multiple of 16, at most
// kFusedTokens tokens, and below kAmxTokens on CPUs with AMX; MAE_CPU_ATTENTION=onednn in the environment turns it off,
// =fused keeps it on AMX too): one (batch, head) pair per task, every product on vdpbf16ps (pairs of bf16 multiplied
// and summed into float32 lanes) over operands packed into per-thread scratch that stays in L2 (N = 197, hd 32: about
// 760 KB backward). The same arithmetic as the oneDNN path: float32 scores and softmax statistics, P and dS rounded to
// bf16 for their products, float32 accumulation; it leaves out oneDNN's per-call cost and the trip of the scores
// through memory, which dominate ViT-sized heads (N = 13 to 197, head dim 32 or 64) where oneDNN's products run on
// vdpbf16ps too. The softmax works in base 2 (log2(e) goes into the scores' product, the exps are 2^x: fewer operations
// each), and forward rounds the unnormalised exps to bf16 for P v and divides its rows by the sums when they are stored
// (one pass over the scores less; the same size of rounding error as rounding P).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.h"
#include "avx512.h"
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

bool use_onednn(std::initializer_list<const TensorView*> ts) { return all_bf16(ts) && dnnl_info().bf16_products; }

// the softmaxes of the AVX-512 row passes here and of the fused kernel below work in base 2: the scores come out of
// their product times log2(e) (in its alpha), exp is exp2_16
constexpr double kLog2eD = 1.44269504088896341;
constexpr float kLog2e = float(kLog2eD), kLn2 = 0.693147180559945309f;

#if defined(__x86_64__)
// The passes over score rows between oneDNN's products, on AVX-512 where the CPU has AVX512-BF16 (where oneDNN's bf16
// products are native: AVX512-BF16 or AMX): widening, exps and rounding in registers, scores in base 2. Elsewhere
// the portable rows (softmax_row, exp_nonpositive, to_bf16 per row). MAE_CPU_BF16=fallback turns them off as it
// turns off vcvtneps2bf16 in to_bf16 (read here: convert.cpp's own flag may not be initialised yet).
const bool rows16 = has_avx512_bf16_unless("MAE_CPU_BF16", "fallback");

// the largest of N scores (masked loads: nothing past the row is read)
MAE_AVX512 float row_max16(const float* S, int64_t N) {
  __m512 mx = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < N; j += 16) {
    const __mmask16 k = tail16(j, N);
    mx = _mm512_mask_max_ps(mx, k, mx, _mm512_maskz_loadu_ps(k, S + j));
  }
  return _mm512_reduce_max_ps(mx);
}

// P = softmax of a row of N scores in base 2, rounded to bf16 into P (the exps go through S); returns the row's lse
MAE_AVX512_BF16 float softmax_row16(float* S, int64_t N, uint16_t* P) {
  const float m = row_max16(S, N);
  const __m512 vm = _mm512_set1_ps(m);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < N; j += 16) {
    const __mmask16 k = tail16(j, N);
    const __m512 e = exp2_16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, S + j), vm), k);
    _mm512_mask_storeu_ps(S + j, k, e);
    sum = _mm512_add_ps(sum, e);
  }
  const float total = _mm512_reduce_add_ps(sum);
  const __m512 inv = _mm512_set1_ps(1.0f / total);
  for (int64_t j = 0; j < N; j += 16) {
    const __mmask16 k = tail16(j, N);
    store_bf16x16(P + j, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, S + j), inv), k);
  }
  return m * kLn2 + std::log(total);
}

// dout_i . out_i over n values (bf16)
MAE_AVX512 float dot_bf16(const uint16_t* a, const uint16_t* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t d = 0; d < n; d += 16) {
    const __mmask16 k = tail16(d, n);
    acc = _mm512_fmadd_ps(load_bf16x16(a + d, k), load_bf16x16(b + d, k), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// one row of backward: P = 2^(S - l2) (S and l2 = lse log2(e) in base 2), dS = P (dP - delta), both rounded to bf16
MAE_AVX512_BF16 void grad_row16(const float* S, const float* dP, int64_t N, float l2, float delta, uint16_t* P,
                                uint16_t* dS) {
  const __m512 vl = _mm512_set1_ps(l2), vd = _mm512_set1_ps(delta);
  for (int64_t j = 0; j < N; j += 16) {
    const __mmask16 k = tail16(j, N);
    const __m512 p = exp2_16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, S + j), vl), k);
    store_bf16x16(P + j, p, k);
    store_bf16x16(dS + j, _mm512_mul_ps(p, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dP + j), vd)), k);
  }
}
#else
constexpr bool rows16 = false;
#endif

// batch entries per chunk: [nb, H, N, N] float32 scores of at most 1M elements (4 MB), so that they are still in
// cache when the softmax pass reads them (ViT-B's decoder, 16 x 197 x 197 per entry: one entry at a time; 16 MB
// chunks made its bf16 attention 1.6x slower on the 2-core Zen 5)
int64_t chunk_of(int64_t B, int64_t H, int64_t N) { return std::max<int64_t>(1, std::min(B, (int64_t(1) << 20) / (H * N * N))); }

bool attention_forward_onednn(const TensorView& qkv, int64_t H, TensorView& out, TensorView& lse) {
  const int64_t B = qkv.dim(0), N = qkv.dim(1), D = qkv.dim(2) / 3, hd = D / H, nb = chunk_of(B, H, N);
  const float scale = 1.0f / std::sqrt((float)hd), alpha = rows16 ? scale * kLog2e : scale;
  Scratch S(nb * H * N * N, 4), P(nb * H * N * N, 2);
  for (int64_t b0 = 0; b0 < B; b0 += nb) {
    const int64_t n = std::min(nb, B - b0), rows = n * H * N;
    const uint16_t* base = bf16(qkv) + b0 * N * 3 * D;
    const MatDesc q = view4(n, H, N, hd, N * 3 * D, hd, 3 * D, 1, DType::BF16),
                  kt = view4(n, H, hd, N, N * 3 * D, hd, 1, 3 * D, DType::BF16),
                  s = view4(n, H, N, N, H * N * N, N * N, N, 1, DType::F32),
                  p = view4(n, H, N, N, H * N * N, N * N, N, 1, DType::BF16),
                  o = view4(n, H, N, hd, N * D, hd, D, 1, DType::BF16);
    if (!matmul(q, base, kt, base + D, nullptr, alpha, s, S.p)) return false;
    float* LSE = lse.f32() + b0 * H * N;
#pragma omp parallel if (rows * N >= kParallelGrain)
    {
      std::vector<float> e(rows16 ? 0 : N);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; r++) {
#if defined(__x86_64__)
        if (rows16) {
          LSE[r] = softmax_row16(S.f32() + r * N, N, P.bf16() + r * N);
          continue;
        }
#endif
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
  const float scale = 1.0f / std::sqrt((float)hd), alpha = rows16 ? scale * kLog2e : scale;
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
    if (!matmul(tok, base, tokT, base + D, nullptr, alpha, sq, S.p)) return false;
    if (!matmul(go, g, tokT, base + 2 * D, nullptr, 1.0f, sq, dP.p)) return false;
    const float* LSE = lse.f32() + b0 * H * N;
#pragma omp parallel if (rows * N >= kParallelGrain)
    {
      const int64_t n_rows = rows16 ? 0 : N, n_hd = rows16 ? 0 : hd;  // the portable rows' buffers
      std::vector<float> pr(n_rows), ds(n_rows), ob(n_hd), gb(n_hd);
#pragma omp for schedule(static)
      for (int64_t r = 0; r < rows; r++) {
        // row r = (batch b, head h, query i); delta = dout_i . out_i over this head
        const int64_t b = r / (H * N), h = (r / N) % H, i = r % N;
        const int64_t at = ((b0 + b) * N + i) * D + h * hd;
#if defined(__x86_64__)
        if (rows16) {
          grad_row16(S.f32() + r * N, dP.f32() + r * N, N, float(LSE[r] * kLog2eD),
                     dot_bf16(bf16(out) + at, bf16(dout) + at, hd), P.bf16() + r * N, dS.bf16() + r * N);
          continue;
        }
#endif
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


// ---- bf16 fused on AVX512-BF16 ------------------------------------------------------------------------------------

// Up to this many tokens the fused kernel: past L2 (its O(N^2) scratch, 2.6 MB a score block at N = 800) it still
// beats oneDNN's products with the AVX-512 row passes (Zen 4, 1 thread, fwd / bwd: N 257 even, N 401 and 577
// 1.2-1.45x, N 785 1.3-1.5x; at N 1025 backward 0.9x); above it the oneDNN path, which chunks its scores.
constexpr int64_t kFusedTokens = 800;

// From this many tokens a head goes to oneDNN's products instead on CPUs with AMX (oneDNN 2.6 runs these strided
// batched products as "gemm:jit", whose bf16 GEMM takes AMX kernels there: tiles of 16 x 32 by 32 x 16 bf16 per
// instruction, several times the rate of vdpbf16ps, on which the fused kernel spends about half of ViT-B's decoder
// attention). Below it what the fused kernel leaves out (oneDNN's buffers and copies per head, the scores' trip
// through memory) weighs more: on Zen 4 (2 threads, batch 64, forward + backward) the fused kernel is 3.7-4x faster
// at 13 tokens, 1.25-1.36x at 50, 1.16-1.20x at 197. Not yet measured on an AMX CPU: `npm run bench` times both
// kernels there (benchmarks/kernels.ts); MAE_CPU_ATTENTION=fused or =onednn forces one.
constexpr int64_t kAmxTokens = 128;

const char* const attention_env = std::getenv("MAE_CPU_ATTENTION");  // unset, "fused" or "onednn"
const bool fused_available = has_avx512_bf16_unless("MAE_CPU_ATTENTION", "onednn");

bool attention_env_valid() {
  return !attention_env || std::strcmp(attention_env, "fused") == 0 || std::strcmp(attention_env, "onednn") == 0;
}

std::string attention_env_problem() {
  return std::string("MAE_CPU_ATTENTION must be fused or onednn (or unset), got \"") + attention_env + "\"";
}

bool use_fused(std::initializer_list<const TensorView*> ts, int64_t N, int64_t D, int64_t H) {
  if (!all_bf16(ts)) return false;
  if (!attention_env_valid()) throw Error(attention_env_problem());
  if (!fused_available || (D / H) % 16 != 0 || N > kFusedTokens) return false;
  return attention_env || N < kAmxTokens || !dnnl_info().amx;
}

#if defined(__x86_64__)
// The operands hold pairs of bfloat16 as 32-bit words (low half first), as vdpbf16ps reads them: lane c of
// dpbf16(acc, a, b) adds a.lo b[c].lo + a.hi b[c].hi to acc[c] in float32.
// C[r][c] = alpha sum_p A[r][p] . B[p][c] for R rows and 16 V columns: A(r, p) at A[r * sar + p * sap], B row stride
// ldb (in words).
template <int R, int V>
MAE_AVX512_BF16 inline void dp_tile(const uint32_t* A, int64_t sar, int64_t sap, const uint32_t* B, int64_t ldb,
                                    int64_t K2, float* C, int64_t ldc, float alpha) {
  __m512 acc[R][V];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = 0; p < K2; p++) {
    __m512bh b[V];
    for (int v = 0; v < V; v++) b[v] = (__m512bh)_mm512_loadu_si512(B + p * ldb + 16 * v);
    for (int r = 0; r < R; r++) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32((int)A[r * sar + p * sap]);
      for (int v = 0; v < V; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
    }
  }
  const __m512 s = _mm512_set1_ps(alpha);
  for (int r = 0; r < R; r++)
    for (int v = 0; v < V; v++) _mm512_storeu_ps(C + r * ldc + 16 * v, _mm512_mul_ps(acc[r][v], s));
}

// C [m, n] = alpha A [m, K2 pairs] B [K2 pairs, n], A(r, p) at A[r * sar + p * sap] (rows of pairs: sar = K2, sap =
// 1; a transposed A: sar = 1); m a multiple of 8 and n of 16 (the scratch is padded to them)
MAE_AVX512_BF16 void dp(int64_t m, int64_t n, int64_t K2, const uint32_t* A, int64_t sar, int64_t sap,
                        const uint32_t* B, int64_t ldb, float* C, int64_t ldc, float alpha) {
  for (int64_t i = 0; i < m; i += 8) {
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) dp_tile<8, 2>(A + i * sar, sar, sap, B + j, ldb, K2, C + i * ldc + j, ldc, alpha);
    if (j < n) dp_tile<8, 1>(A + i * sar, sar, sap, B + j, ldb, K2, C + i * ldc + j, ldc, alpha);
  }
}

// two rows of 16 float32 as bfloat16 (round to nearest even): words 0-15 a, 16-31 b
MAE_AVX512_BF16 inline __m512i bf16x32(__m512 a, __m512 b) { return (__m512i)_mm512_cvtne2ps_pbh(b, a); }
// the word indices that interleave the halves of bf16x32: word 2c <- c, 2c + 1 <- 16 + c, pairs (a[c], b[c])
MAE_AVX512_BF16 inline __m512i interleave_halves() {
  alignas(64) static const uint16_t idx[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                               8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_load_si512(idx);
}

inline int64_t round_to(int64_t n, int64_t k) { return (n + k - 1) / k * k; }

// asks for n rows of `bytes` each, from x with a stride of `stride` elements, to be brought into cache: the next head's
// rows while this one computes (a head's rows are scattered over the tensor, and waiting for them one by one cost
// more than the products of the small heads)
inline void prefetch_rows(const uint16_t* x, int64_t n, int64_t stride, int64_t bytes) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t c = 0; c < bytes; c += 64) _mm_prefetch(reinterpret_cast<const char*>(x + i * stride) + c, _MM_HINT_T0);
}

// One head's operands in pair layouts, in per-thread scratch. N tokens, hd head dim (h2 = hd / 2 pairs); np = N
// rounded up to 16 (score columns), mp = N rounded up to 8 (rows of the products), w = N / 2 rounded up (pairs of
// tokens). Everything past N stays zero.
struct FusedHead {
  int64_t N, hd, h2, np, mp, w;
  std::vector<uint32_t> q, kp, vp;  // q [mp, h2] rows; kp [h2, np]: kp[c][j] = pair c of k_j; vp [w, hd]: (v_2m, v_2m+1)
  std::vector<float> s, o;          // scores [mp, np] (in base 2: times log2(e)); a [mp, hd] result
  std::vector<uint16_t> p;          // P or dS [mp, np] rows in bf16
  // backward only: dout rows and v^T as q and kp; k, q and dout by token pairs as vp; P and dS by row pairs [w, np]
  // (read transposed for dv and dk); dP [mp, np]; dk and dv [np, hd]; delta [mp]
  std::vector<uint32_t> g, vt, kj, qj, gj, pp, dsp;
  std::vector<float> dP, dk, dv, delta;
  std::vector<float> inv;           // forward only: 1 / the sum of row i's exps [mp]

  FusedHead(int64_t N_, int64_t hd_, bool backward)
      : N(N_), hd(hd_), h2(hd_ / 2), np(round_to(N_, 16)), mp(round_to(N_, 8)), w((N_ + 1) / 2), q(mp * h2, 0),
        kp(h2 * np, 0), vp(backward ? 0 : w * hd, 0), s(mp * np, 0.0f), o(mp * hd, 0.0f), p(mp * np, 0) {
    if (!backward) {
      inv.assign(mp, 0.0f);
      return;
    }
    g.assign(mp * h2, 0);
    vt.assign(h2 * np, 0);
    kj.assign(w * hd, 0);
    qj.assign(w * hd, 0);
    gj.assign(w * hd, 0);
    pp.assign(w * np, 0);
    dsp.assign(w * np, 0);
    dP.assign(mp * np, 0.0f);
    dk.assign(np * hd, 0.0f);
    dv.assign(np * hd, 0.0f);
    delta.assign(mp, 0.0f);
  }

  // dst [N, h2]: the head's token rows (row i of x at x + i * stride, bf16)
  void rows(const uint16_t* x, int64_t stride, std::vector<uint32_t>& dst) const {
    for (int64_t i = 0; i < N; i++) std::memcpy(&dst[i * h2], x + i * stride, hd * 2);
  }
  // dst [h2, np]: dst[c][j] = pair c of token j, 16 x 16 blocks transposed in registers
  MAE_AVX512_BF16 void transposed(const uint16_t* x, int64_t stride, std::vector<uint32_t>& dst) const {
    for (int64_t j0 = 0; j0 < N; j0 += 16)
      for (int64_t c0 = 0; c0 < h2; c0 += 16) {
        const __mmask16 lanes = tail16(c0, h2);
        __m512i r[16];
        for (int64_t t = 0; t < 16; t++)
          r[t] = j0 + t < N ? _mm512_maskz_loadu_epi32(lanes, x + (j0 + t) * stride + 2 * c0) : _mm512_setzero_si512();
        transpose16(r);
        for (int64_t c = 0; c < 16 && c0 + c < h2; c++) _mm512_storeu_si512(&dst[(c0 + c) * np + j0], r[c]);
      }
  }
  // the pair of tokens 2m, 2m + 1 at column d of x (bf16 token rows), 16 columns from d; zero for a token past N
  MAE_AVX512_BF16 __m512i token_pair(const uint16_t* x, int64_t stride, int64_t m, int64_t d) const {
    const uint16_t* a = x + 2 * m * stride + d;
    const __m256i lo = _mm256_loadu_si256((const __m256i*)a);
    return pairs16(lo, 2 * m + 1 < N ? _mm256_loadu_si256((const __m256i*)(a + stride)) : _mm256_setzero_si256());
  }
  // dst [w, hd]: dst[m][d] = (token 2m, token 2m + 1) of column d
  MAE_AVX512_BF16 void token_pairs(const uint16_t* x, int64_t stride, std::vector<uint32_t>& dst) const {
    for (int64_t m = 0; m < w; m++)
      for (int64_t d = 0; d < hd; d += 16) _mm512_storeu_si512(&dst[m * hd + d], token_pair(x, stride, m, d));
  }
  // rows i < N of a float32 result [mp or np, hd], as bf16 token rows (row i at out + i * stride), row i times
  // row_scale[i] where given
  MAE_AVX512_BF16 void store_rows(const std::vector<float>& src, uint16_t* out, int64_t stride,
                                  const float* row_scale = nullptr) const {
    for (int64_t i = 0; i < N; i++) {
      const __m512 c = _mm512_set1_ps(row_scale ? row_scale[i] : 1.0f);
      for (int64_t d = 0; d < hd; d += 16)
        store_bf16x16(out + i * stride + d, _mm512_mul_ps(_mm512_loadu_ps(&src[i * hd + d]), c));
    }
  }
  // S = alpha q k^T over the packed q and kp
  MAE_AVX512_BF16 void scores(float alpha) { dp(mp, np, h2, q.data(), h2, 1, kp.data(), np, s.data(), np, alpha); }
  const uint32_t* prow() const { return reinterpret_cast<const uint32_t*>(p.data()); }
};

MAE_AVX512_BF16 void attention_forward_fused(const TensorView& qkv, int64_t H, TensorView& out, TensorView& lse) {
  const int64_t B = qkv.dim(0), N = qkv.dim(1), D = qkv.dim(2) / 3, hd = D / H;
  const float scale2 = kLog2e / std::sqrt((float)hd);
  const uint16_t* X = bf16(qkv);
  uint16_t* O = bf16(out);
  float* LSE = lse.f32();
#pragma omp parallel
  {
    FusedHead t(N, hd, false);
    const int64_t np = t.np;
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; bh++) {
      const int64_t b = bh / H, h = bh % H;
      const uint16_t* base = X + b * N * 3 * D + h * hd;
      if (bh + 1 < B * H) {
        const uint16_t* next = X + (bh + 1) / H * N * 3 * D + (bh + 1) % H * hd;
        for (int64_t part = 0; part < 3; part++) prefetch_rows(next + part * D, N, 3 * D, hd * 2);
      }
      t.rows(base, 3 * D, t.q);
      t.transposed(base + D, 3 * D, t.kp);
      t.token_pairs(base + 2 * D, 3 * D, t.vp);
      t.scores(scale2);
      // softmax by rows in base 2: the max m, then E = 2^(S - m) in bf16 (zero past N) and the float32 sum of the
      // unrounded values; P = E / sum is applied to P v's rows (the same rounding error as rounding P itself)
      for (int64_t i = 0; i < N; i++) {
        const float* S = t.s.data() + i * np;
        const float m = row_max16(S, N);
        const __m512 vm = _mm512_set1_ps(m);
        __m512 sum = _mm512_setzero_ps();
        for (int64_t j = 0; j < N; j += 16) {
          const __m512 e = exp2_16(_mm512_sub_ps(_mm512_loadu_ps(S + j), vm), tail16(j, N));
          _mm256_storeu_si256((__m256i*)(t.p.data() + i * np + j), bf16x16(e));
          sum = _mm512_add_ps(sum, e);
        }
        const float total = _mm512_reduce_add_ps(sum);
        LSE[bh * N + i] = m * kLn2 + std::log(total);
        t.inv[i] = 1.0f / total;
      }
      // out = (E v) / sum: E's rows as pairs of keys, vp as pairs of value rows
      dp(t.mp, hd, t.w, t.prow(), np / 2, 1, t.vp.data(), hd, t.o.data(), hd, 1.0f);
      t.store_rows(t.o, O + b * N * D + h * hd, D, t.inv.data());
    }
  }
}

MAE_AVX512_BF16 void attention_backward_fused(const TensorView& qkv, const TensorView& out, const TensorView& dout,
                                             const TensorView& lse, int64_t H, TensorView& dqkv) {
  const int64_t B = qkv.dim(0), N = qkv.dim(1), D = qkv.dim(2) / 3, hd = D / H;
  const float scale = 1.0f / std::sqrt((float)hd), scale2 = kLog2e * scale;
  const uint16_t *X = bf16(qkv), *Og = bf16(out), *G = bf16(dout);
  uint16_t* DX = bf16(dqkv);
  const float* LSE = lse.f32();
#pragma omp parallel
  {
    FusedHead t(N, hd, true);
    const int64_t np = t.np, w = t.w;
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; bh++) {
      const int64_t b = bh / H, h = bh % H;
      const uint16_t *base = X + b * N * 3 * D + h * hd, *gbase = G + b * N * D + h * hd,
                     *obase = Og + b * N * D + h * hd;
      if (bh + 1 < B * H) {
        const int64_t nb = (bh + 1) / H, nh = (bh + 1) % H;
        for (int64_t part = 0; part < 3; part++) prefetch_rows(X + nb * N * 3 * D + nh * hd + part * D, N, 3 * D, hd * 2);
        prefetch_rows(G + nb * N * D + nh * hd, N, D, hd * 2);
        prefetch_rows(Og + nb * N * D + nh * hd, N, D, hd * 2);
      }
      // delta_i = dout_i . out_i
      for (int64_t i = 0; i < N; i++) t.delta[i] = dot_bf16(obase + i * D, gbase + i * D, hd);
      t.rows(base, 3 * D, t.q);
      t.transposed(base + D, 3 * D, t.kp);
      t.rows(gbase, D, t.g);
      t.transposed(base + 2 * D, 3 * D, t.vt);
      t.token_pairs(base + D, 3 * D, t.kj);
      t.token_pairs(base, 3 * D, t.qj);
      t.token_pairs(gbase, D, t.gj);
      t.scores(scale2);
      dp(t.mp, np, t.h2, t.g.data(), t.h2, 1, t.vt.data(), np, t.dP.data(), np, 1.0f);  // dP = dout v^T
      // rows 2m and 2m + 1 together: P = 2^(S - lse log2(e)) (S in base 2, as forward's), dS = P (dP - delta); dS
      // rows in bf16 for dq, and P and dS by row pairs for dv^T and dk^T (a row past N is zero)
      const __m512i pairs = interleave_halves();
      for (int64_t m = 0; m < w; m++) {
        const int64_t i0 = 2 * m, i1 = 2 * m + 1;
        const bool two = i1 < N;
        const __m512 l0 = _mm512_set1_ps(float(LSE[bh * N + i0] * kLog2eD));
        const __m512 l1 = _mm512_set1_ps(two ? float(LSE[bh * N + i1] * kLog2eD) : 0.0f);
        const __m512 d0 = _mm512_set1_ps(t.delta[i0]), d1 = _mm512_set1_ps(t.delta[i1]);
        for (int64_t j = 0; j < np; j += 16) {
          const __mmask16 k = tail16(j, N), k1 = two ? k : 0;
          const __m512 p0 = exp2_16(_mm512_sub_ps(_mm512_loadu_ps(&t.s[i0 * np + j]), l0), k);
          const __m512 p1 = exp2_16(_mm512_sub_ps(_mm512_loadu_ps(&t.s[i1 * np + j]), l1), k1);
          const __m512 s0 = _mm512_mul_ps(p0, _mm512_sub_ps(_mm512_loadu_ps(&t.dP[i0 * np + j]), d0));
          const __m512 s1 = _mm512_mul_ps(p1, _mm512_sub_ps(_mm512_loadu_ps(&t.dP[i1 * np + j]), d1));
          const __m512i ds = bf16x32(s0, s1);
          _mm256_storeu_si256((__m256i*)&t.p[i0 * np + j], _mm512_castsi512_si256(ds));
          _mm256_storeu_si256((__m256i*)&t.p[i1 * np + j], _mm512_extracti64x4_epi64(ds, 1));
          _mm512_storeu_si512(&t.dsp[m * np + j], _mm512_permutexvar_epi16(pairs, ds));
          _mm512_storeu_si512(&t.pp[m * np + j], _mm512_permutexvar_epi16(pairs, bf16x32(p0, p1)));
        }
      }
      dp(t.mp, hd, w, t.prow(), np / 2, 1, t.kj.data(), hd, t.o.data(), hd, scale);  // dq = scale dS k
      dp(np, hd, w, t.dsp.data(), 1, np, t.qj.data(), hd, t.dk.data(), hd, scale);  // dk = scale dS^T q
      dp(np, hd, w, t.pp.data(), 1, np, t.gj.data(), hd, t.dv.data(), hd, 1.0f);    // dv = P^T dout
      uint16_t* dbase = DX + b * N * 3 * D + h * hd;
      t.store_rows(t.o, dbase, 3 * D);
      t.store_rows(t.dk, dbase + D, 3 * D);
      t.store_rows(t.dv, dbase + 2 * D, 3 * D);
    }
  }
}
#endif

}  // namespace

std::string bf16_attention_kernel() {
  if (!attention_env_valid()) return "none: " + attention_env_problem();
  const std::string others = dnnl_info().bf16_products ? "oneDNN batched products" : "float32 tiles";
  if (!fused_available) return others;
  const std::string amx = !attention_env && dnnl_info().amx
                              ? "; from " + std::to_string(kAmxTokens) + " tokens oneDNN's products on AMX"
                              : "";
  return "fused avx512_bf16 (head dim a multiple of 16, up to " + std::to_string(kFusedTokens) + " tokens" + amx +
         "), else " + others;
}

void attention_forward(const TensorView& qkv, int num_heads, TensorView& out, TensorView& lse) {
#if defined(__x86_64__)
  if (use_fused({&qkv, &out}, qkv.dim(1), qkv.dim(2) / 3, num_heads))
    return attention_forward_fused(qkv, num_heads, out, lse);
#endif
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
#if defined(__x86_64__)
  if (use_fused({&qkv, &out, &dout, &dqkv}, qkv.dim(1), qkv.dim(2) / 3, num_heads))
    return attention_backward_fused(qkv, out, dout, lse, num_heads, dqkv);
#endif
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
