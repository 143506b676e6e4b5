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
// to bfloat16 first (a weight without a shadow).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

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

// t as a bfloat16 operand: t's memory, or a rounded copy from the CPU allocator, freed with this object
struct Bf16 {
  const void* p;
  void* owned = nullptr;
  size_t bytes = 0;
  explicit Bf16(const TensorView& t) : p(t.data) {
    if (t.dtype == DType::BF16) return;
    bytes = (size_t)t.numel() * 2;
    owned = allocator.alloc(bytes);
    TensorView copy{owned, t.shape, DType::BF16, t.device};
    convert(t, copy);
    p = owned;
  }
  ~Bf16() {
    if (owned) allocator.free(owned, bytes);
  }
  Bf16(const Bf16&) = delete;
  Bf16& operator=(const Bf16&) = delete;
};

bool any_bf16(std::initializer_list<const TensorView*> ts) {
  for (const TensorView* t : ts)
    if (t->dtype == DType::BF16) return true;
  return false;
}

}  // namespace

void linear_forward(const TensorView& x, const TensorView& w, const TensorView* b, TensorView& y) {
  const int64_t M = x.rows(), K = x.last(), N = w.dim(0);
  const float* Bias = b ? b->f32() : nullptr;
  if (any_bf16({&x, &w})) {
    const Bf16 X(x), W(w);
    matmul(mat(M, K, false, DType::BF16), X.p, mat(K, N, true, DType::BF16), W.p, Bias, 1.0f, mat(M, N, false, y.dtype),
           y.data);
    return;
  }
  const float *X = x.f32(), *W = w.f32();
  float* Y = y.f32();
#pragma omp parallel if (M * N * K >= kGemmGrain)
  {
    const Block k = thread_block(M, N);
    if (Bias)
      for (int64_t i = k.r0; i < k.r1; i++) std::memcpy(Y + i * N + k.c0, Bias + k.c0, (k.c1 - k.c0) * sizeof(float));
    sgemm_block(k, false, true, K, X, K, W, K, Bias ? 1.0f : 0.0f, Y, N);
  }
}

void linear_backward(const TensorView& x, const TensorView& w, const TensorView& dy, TensorView* dx, TensorView& dw,
                     TensorView* db) {
  const int64_t M = x.rows(), K = x.last(), N = w.dim(0);
  if (any_bf16({&x, &w, &dy})) {
    const Bf16 X(x), W(w), DY(dy);
    const MatDesc dym = mat(M, N, false, DType::BF16);
    if (dx) matmul(dym, DY.p, mat(N, K, false, DType::BF16), W.p, nullptr, 1.0f, mat(M, K, false, dx->dtype), dx->data);
    matmul(mat(N, M, true, DType::BF16), DY.p, mat(M, K, false, DType::BF16), X.p, nullptr, 1.0f,
           mat(N, K, false, dw.dtype), dw.data);
    if (db) {
#pragma omp parallel if (M * N >= kParallelGrain)
      {
        const Part p = thread_part(N);
        column_sums(dy, M, N, p.lo, p.hi, db->f32());
      }
    }
    return;
  }
  const float *X = x.f32(), *W = w.f32(), *DY = dy.f32();
#pragma omp parallel if (M * N * K >= kGemmGrain)
  {
    if (dx) sgemm_block(thread_block(M, K), false, false, N, DY, N, W, K, 0.0f, dx->f32(), K);
    sgemm_block(thread_block(N, K), true, false, M, DY, N, X, K, 0.0f, dw.f32(), K);
    if (db) {
      const Part p = thread_part(N);
      column_sums(dy, M, N, p.lo, p.hi, db->f32());
    }
  }
}

}  // namespace mae::cpu
