// Linear layer through the BLAS (sgemm): y = x W^T + b, W stored [out, in] as in PyTorch.
//   forward:  x [M, K], w [N, K], b [N] -> y [M, N]
//   backward: dx = dy W [M, K], dW = dy^T x [N, K], db = column sums of dy [N]
// M is every leading dimension of x flattened. The BLAS runs its own threads; the bias copy uses OpenMP.
#include <cblas.h>

#include <cstring>

#include "cpu.h"

namespace mae::cpu {

void linear_forward(const TensorView& x, const TensorView& w, const TensorView* b, TensorView& y) {
  const int64_t M = x.rows(), K = x.last(), N = w.dim(0);
  float* Y = y.f32();
  float beta = 0.0f;
  if (b) {
    const float* B = b->f32();
#pragma omp parallel for schedule(static) if (M * N >= kParallelGrain)
    for (int64_t i = 0; i < M; i++) std::memcpy(Y + i * N, B, N * sizeof(float));
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x.f32(), K, w.f32(), K, beta, Y, N);
}

void linear_backward(const TensorView& x, const TensorView& w, const TensorView& dy, TensorView* dx, TensorView& dw,
                     TensorView* db) {
  const int64_t M = x.rows(), K = x.last(), N = w.dim(0);
  const float* DY = dy.f32();
  if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, DY, N, w.f32(), K, 0.0f, dx->f32(), K);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, DY, N, x.f32(), K, 0.0f, dw.f32(), K);
  if (db) sum_to(dy, *db);
}

}  // namespace mae::cpu
