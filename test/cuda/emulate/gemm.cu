// Host emulation of native/cuda/gemm.cu's fallback product (gemm_fallback_body): D = op(A) op(B) (+ bias per row of
// D), column-major, for every transpose combination, odd sizes and leading dimensions larger than the rows, against
// a double-precision loop of the definition; and the three ways linear_forward / linear_backward call it.
#include <cmath>
#include <array>

#include "../../../native/cuda/gemm.cu"
#include "check.h"

namespace mae::cuda {

namespace {

// op(M)[r, c] of a column-major matrix with leading dimension ld, transposed or not
double at(const float* M, bool t, int64_t r, int64_t c, int64_t ld) { return t ? M[c + r * ld] : M[r + c * ld]; }

void check_fallback(bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t pad, bool bias) {
  const int64_t lda = (ta ? k : m) + pad, ldb = (tb ? n : k) + pad, ldd = m + pad;
  emu::Buf<float> A(lda * (ta ? m : k), 1), B(ldb * (tb ? k : n), 2), D(ldd * n, 3), b(m, 4);
  const float sentinel = D[ldd * n - 1];
  emu::lanes(19, [&](Lanes L) {
    gemm_fallback_body(L, ta, tb, m, n, k, Src{A.p, 0}, lda, Src{B.p, 0}, ldb, Dst{D.p, 0}, ldd, bias ? Src{b.p, 0} : Src{nullptr, 0});
  });
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < m; i++) {
      double s = bias ? b[i] : 0.0;
      for (int64_t l = 0; l < k; l++) s += at(A.p, ta, i, l, lda) * at(B.p, tb, l, j, ldb);
      const float got = D[i + j * ldd];
      emu::expect(std::fabs(got - s) <= 1e-5 * (1.0 + std::fabs(s)) * std::sqrt((double)k + 1),
                  "D[" + std::to_string(i) + ", " + std::to_string(j) + "] = " + std::to_string(got) + ", want " + std::to_string(s));
    }
  // the padding rows of D are not written
  if (pad) emu::same(D[ldd * n - 1], sentinel, "D padding", ldd * n - 1);
}

}  // namespace

}  // namespace mae::cuda

void emulate_gemm() {
  using namespace mae::cuda;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const auto& sh : {std::array<int64_t, 4>{1, 1, 1, 0}, {7, 5, 3, 0}, {33, 37, 65, 3}, {5, 130, 1, 1}})
        for (bool bias : {false, true})
          emu::test(std::string("gemm_fallback_body ") + (ta ? "A^T " : "A ") + (tb ? "B^T " : "B ") + "m " +
                        std::to_string(sh[0]) + " n " + std::to_string(sh[1]) + " k " + std::to_string(sh[2]) + " pad " +
                        std::to_string(sh[3]) + (bias ? " + bias" : ""),
                    [&] { check_fallback(ta, tb, sh[0], sh[1], sh[2], sh[3], bias); });
  // linear's three products as linear_forward / linear_backward pass them: y^T = W x^T, dx^T = W^T dy^T, dW^T = x^T dy
  const int64_t M = 9, K = 6, N = 4;
  emu::test("gemm_fallback_body as linear_forward calls it: y = x W^T + b", [&] {
    emu::Buf<float> x(M * K, 1), w(N * K, 2), b(N, 3), y(M * N, 4);
    emu::lanes(3, [&](Lanes L) { gemm_fallback_body(L, true, false, N, M, K, Src{w.p, 0}, K, Src{x.p, 0}, K, Dst{y.p, 0}, N, Src{b.p, 0}); });
    for (int64_t r = 0; r < M; r++)
      for (int64_t c = 0; c < N; c++) {
        double s = b[c];
        for (int64_t l = 0; l < K; l++) s += (double)x[r * K + l] * w[c * K + l];
        emu::expect(std::fabs(y[r * N + c] - s) < 1e-5, "y[" + std::to_string(r) + ", " + std::to_string(c) + "]");
      }
  });
  emu::test("gemm_fallback_body as linear_backward calls it: dx = dy W, dW = dy^T x", [&] {
    emu::Buf<float> x(M * K, 1), w(N * K, 2), dy(M * N, 3), dx(M * K, 4), dw(N * K, 5);
    emu::lanes(3, [&](Lanes L) { gemm_fallback_body(L, false, false, K, M, N, Src{w.p, 0}, K, Src{dy.p, 0}, N, Dst{dx.p, 0}, K, Src{nullptr, 0}); });
    emu::lanes(3, [&](Lanes L) { gemm_fallback_body(L, false, true, K, N, M, Src{x.p, 0}, K, Src{dy.p, 0}, N, Dst{dw.p, 0}, K, Src{nullptr, 0}); });
    for (int64_t r = 0; r < M; r++)
      for (int64_t c = 0; c < K; c++) {
        double s = 0;
        for (int64_t o = 0; o < N; o++) s += (double)dy[r * N + o] * w[o * K + c];
        emu::expect(std::fabs(dx[r * K + c] - s) < 1e-5, "dx[" + std::to_string(r) + ", " + std::to_string(c) + "]");
      }
    for (int64_t o = 0; o < N; o++)
      for (int64_t c = 0; c < K; c++) {
        double s = 0;
        for (int64_t r = 0; r < M; r++) s += (double)dy[r * N + o] * x[r * K + c];
        emu::expect(std::fabs(dw[o * K + c] - s) < 1e-5, "dw[" + std::to_string(o) + ", " + std::to_string(c) + "]");
      }
  });
}
