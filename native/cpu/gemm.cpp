// Linear layer through the BLAS (sgemm): y = x W^T + b, W stored [out, in] as in PyTorch.
//   forward:  x [M, K], w [N, K], b [N] -> y [M, N]
//   backward: dx = dy W [M, K], dW = dy^T x [N, K], db = column sums of dy [N]
// M is every leading dimension of x flattened.
//
// Threads: the BLAS runs single-threaded (set_num_threads in ops_table.cpp) and each OpenMP thread calls it on its
// own block of the output, so one thread team does all the work of a step. A multi-threaded OpenBLAS keeps a second
// pool of threads that competes with the OpenMP team for the same cores at every op boundary: inside a training
// step its sgemms ran at ~180 GFLOP/s on 2 cores, these blocks at ~220 (benchmarks/README.md).
//
// bfloat16: a product with a bfloat16 operand (x, dy, or w: the bf16 weight shadow the bindings pass in its place)
// runs in bfloat16 through oneDNN's matmul (dnnl.cpp; AMX or AVX512-BF16 where the CPU has them), accumulating in
// float32: y and dx in their own dtype (bfloat16 activations), dW float32 (the master weights' gradient), the bias
// fused into the forward product; db is summed in float32 from dy. A float32 operand of such a product is rounded
// to bfloat16 first (a weight without a shadow). Where oneDNN has no native bf16 kernel (not loaded; a CPU below
// AVX-512, for which oneDNN 2.x has no bf16 matmul; or AVX-512 without AVX512-BF16 or AMX, where oneDNN would emulate
// bf16 at 0.4x the BLAS's float32 rate) the same product, bf16 operands with float32 sums, runs through the BLAS on
// widened copies: about the float32 speed, the same meaning. A bf16 weight that AdamW keeps as a shadow is read by the
// forward and dx products from its blocked copy (matmul_weight, blocked.cpp) rather than copied into oneDNN's layout
// each call.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "cpu.h"

namespace mae::cpu {

namespace {

// Products with fewer multiply-adds than this (about 16 us on one core) run on the calling thread.
constexpr int64_t kGemmGrain = int64_t(1) << 20;

// This thread's part of [0, len): equal parts, multiples of 16, one per thread of the team; empty for the last
// threads when the team has more threads than parts.
struct Part {
  int64_t lo, hi;
};

Part thread_part(int64_t len) {
  const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
  const int64_t part = ((len + nt - 1) / nt + 15) / 16 * 16;
  const int64_t lo = std::min(len, t * part);
  return {lo, std::min(len, lo + part)};
}

// This thread's block of an [M, N] output: its part of the rows or of the columns, whichever is longer.
struct Block {
  int64_t r0, r1, c0, c1;
};

Block thread_block(int64_t M, int64_t N) {
  if (M >= N) {
    const Part p = thread_part(M);
    return {p.lo, p.hi, 0, N};
  }
  const Part p = thread_part(N);
  return {0, M, p.lo, p.hi};
}

// C[r0:r1, c0:c1] = op(A) op(B) + beta C over the whole K, row-major as cblas_sgemm.
void sgemm_block(const Block& k, bool ta, bool tb, int64_t K, const float* A, int64_t lda, const float* B,
                 int64_t ldb, float beta, float* C, int64_t ldc) {
  if (k.r1 <= k.r0 || k.c1 <= k.c0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, k.r1 - k.r0,
              k.c1 - k.c0, K, 1.0f, ta ? A + k.r0 : A + k.r0 * lda, lda, tb ? B + k.c0 * ldb : B + k.c0, ldb, beta,
              C + k.r0 * ldc + k.c0, ldc);
}

// A buffer from the CPU allocator, freed with this object.
struct Buffer {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Buffer(size_t n) : p(n ? allocator.alloc(n) : nullptr), bytes(n) {}
  ~Buffer() {
    if (p) allocator.free(p, bytes);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// t as a bfloat16 operand: t's memory, or a copy rounded to bfloat16
struct Bf16 {
  Buffer copy;
  const void* p;
  explicit Bf16(const TensorView& t) : copy(t.dtype == DType::BF16 ? 0 : t.numel() * 2), p(t.data) {
    if (!copy.p) return;
    TensorView v{copy.p, t.shape, DType::BF16, t.device};
    convert(t, v);
    p = copy.p;
  }
};

// t as a float32 operand of the BLAS with the values a bf16 product sees: widened from bfloat16, or rounded to
// bfloat16 and widened when t is float32
struct Widened {
  Buffer copy;
  const float* p;
  explicit Widened(const TensorView& t) : copy(t.numel() * 4), p(static_cast<float*>(copy.p)) {
    TensorView v{copy.p, t.shape, DType::F32, t.device};
    if (t.dtype == DType::BF16) {
      convert(t, v);
    } else {
      const Bf16 r(t);
      TensorView rv{const_cast<void*>(r.p), t.shape, DType::BF16, t.device};
      convert(rv, v);
    }
  }
};

// an output for the BLAS: t's memory when it is float32, else a float32 buffer that done() rounds into t
struct Output {
  TensorView& t;
  Buffer copy;
  float* p;
  explicit Output(TensorView& t_)
      : t(t_), copy(t_.dtype == DType::F32 ? 0 : t_.numel() * 4), p(copy.p ? static_cast<float*>(copy.p) : t_.f32()) {}
  void done() {
    if (copy.p) convert(TensorView{copy.p, t.shape, DType::F32, t.device}, t);
  }
};

// MAE_FP32_GEMM=onednn (read at each call, for benchmarks/matmul.ts): float32 products through oneDNN's matmul
// instead of the BLAS blocks, to compare the two in one process (benchmarks/README.md has the numbers)
bool fp32_onednn() {
  const char* e = std::getenv("MAE_FP32_GEMM");
  return e && std::strcmp(e, "onednn") == 0;
}

bool any_bf16(std::initializer_list<const TensorView*> ts) {
  for (const TensorView* t : ts)
    if (t->dtype == DType::BF16) return true;
  return false;
}

// the float32 products through the BLAS blocks
void sgemm_forward(int64_t M, int64_t N, int64_t K, const float* X, const float* W, const float* Bias, float* Y) {
#pragma omp parallel if (M * N * K >= kGemmGrain)
  {
    const Block k = thread_block(M, N);
    if (Bias)
      for (int64_t i = k.r0; i < k.r1; i++) std::memcpy(Y + i * N + k.c0, Bias + k.c0, (k.c1 - k.c0) * sizeof(float));
    sgemm_block(k, false, true, K, X, K, W, K, Bias ? 1.0f : 0.0f, Y, N);
  }
}

void sgemm_backward(int64_t M, int64_t N, int64_t K, const float* X, const float* W, const float* DY, float* DX,
                    float* DW, const TensorView& dy, float* DB) {
#pragma omp parallel if (M * N * K >= kGemmGrain)
  {
    if (DX) sgemm_block(thread_block(M, K), false, false, N, DY, N, W, K, 0.0f, DX, K);
    sgemm_block(thread_block(N, K), true, false, M, DY, N, X, K, 0.0f, DW, K);
    if (DB) {
      const Part p = thread_part(N);
      column_sums(dy, M, N, p.lo, p.hi, DB);
    }
  }
}

}  // namespace

void linear_forward(const TensorView& x, const TensorView& w, const TensorView* b, TensorView& y) {
  const int64_t M = x.rows(), K = x.last(), N = w.dim(0);
  const float* Bias = b ? b->f32() : nullptr;
  if (!any_bf16({&x, &w})) {
    if (fp32_onednn() && matmul(mat(M, K, false, DType::F32), x.data, mat(K, N, true, DType::F32), w.data, Bias, 1.0f,
                                mat(M, N, false, DType::F32), y.data))
      return;
    return sgemm_forward(M, N, K, x.f32(), w.f32(), Bias, y.f32());
  }
  {
    const Bf16 X(x), W(w);
    const MatDesc xm = mat(M, K, false, DType::BF16), ym = mat(M, N, false, y.dtype);
    if (w.dtype == DType::BF16 && matmul_weight(xm, X.p, w.data, N, K, true, Bias, ym, y.data)) return;
    if (matmul(xm, X.p, mat(K, N, true, DType::BF16), W.p, Bias, 1.0f, ym, y.data)) return;
  }
  // no oneDNN kernel here: the same bf16 product (bf16 operands, float32 sums) through the BLAS
  const Widened X(x), W(w);
  Output Y(y);
  sgemm_forward(M, N, K, X.p, W.p, Bias, Y.p);
  Y.done();
}

void linear_backward(const TensorView& x, const TensorView& w, const TensorView& dy, TensorView* dx, TensorView& dw,
                     TensorView* db) {
  const int64_t M = x.rows(), K = x.last(), N = w.dim(0);
  float* DB = db ? db->f32() : nullptr;
  if (!any_bf16({&x, &w, &dy})) {
    if (fp32_onednn()) {
      const MatDesc dym = mat(M, N, false, DType::F32);
      if (dx) matmul(dym, dy.data, mat(N, K, false, DType::F32), w.data, nullptr, 1.0f, mat(M, K, false, DType::F32), dx->data);
      if (matmul(mat(N, M, true, DType::F32), dy.data, mat(M, K, false, DType::F32), x.data, nullptr, 1.0f,
                 mat(N, K, false, DType::F32), dw.data)) {
        if (DB) {
#pragma omp parallel if (M * N >= kParallelGrain)
          {
            const Part p = thread_part(N);
            column_sums(dy, M, N, p.lo, p.hi, DB);
          }
        }
        return;
      }
    }
    return sgemm_backward(M, N, K, x.f32(), w.f32(), dy.f32(), dx ? dx->f32() : nullptr, dw.f32(), dy, DB);
  }
  {
    const Bf16 X(x), W(w), DY(dy);
    const MatDesc dym = mat(M, N, false, DType::BF16), wm = mat(N, K, false, DType::BF16);
    const auto dx_product = [&] {
      const MatDesc dxm = mat(M, K, false, dx->dtype);
      return (w.dtype == DType::BF16 && matmul_weight(dym, DY.p, w.data, N, K, false, nullptr, dxm, dx->data)) ||
             matmul(dym, DY.p, wm, W.p, nullptr, 1.0f, dxm, dx->data);
    };
    if (!dx || dx_product()) {
      if (matmul(mat(N, M, true, DType::BF16), DY.p, mat(M, K, false, DType::BF16), X.p, nullptr, 1.0f,
                 mat(N, K, false, dw.dtype), dw.data)) {
        if (DB) {
#pragma omp parallel if (M * N >= kParallelGrain)
          {
            const Part p = thread_part(N);
            column_sums(dy, M, N, p.lo, p.hi, DB);
          }
        }
        return;
      }
    }
  }
  const Widened X(x), W(w), DY(dy);
  Output DW(dw);
  std::unique_ptr<Output> DX(dx ? new Output(*dx) : nullptr);
  sgemm_backward(M, N, K, X.p, W.p, DY.p, DX ? DX->p : nullptr, DW.p, dy, DB);
  DW.done();
  if (DX) DX->done();
}

}  // namespace mae::cpu
