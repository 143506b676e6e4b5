// Host emulation of native/cuda/gelu.cu's 16-byte kernels: gelu_vec_body (with and without a bias of period nb),
// gelu_grad_vec_body, and bias_gelu_grad_body with the block's column reduction as bias_gelu_grad_vec_kernel does it.
#include "../../../native/cuda/gelu.cu"
#include "check.h"

namespace mae::cuda {

template <typename TX, typename TY>
void gelu_cases(const char* tx, const char* ty) {
  for (uint32_t rows : {1u, 3u, 50u})
    for (uint32_t N : {8u, 16u, 24u, 3072u})
      for (bool bias : {false, true}) {
        const uint32_t n = rows * N;
        emu::test(std::string("gelu_vec_body ") + tx + " -> " + ty + " [" + std::to_string(rows) + ", " + std::to_string(N) + "]" + (bias ? " + bias" : ""), [&] {
          emu::Buf<TX> x(n, 1);
          emu::Buf<float> b(N, 2);
          emu::Buf<TY> y(n, 3), want(n, 3);
          emu::lanes(37, [&](Lanes L) { gelu_vec_body(L, x.p, bias ? b.p : nullptr, N, y.p, n); });
          for (uint32_t i = 0; i < n; i++) {
            st(want.p, i, gelu_of(x[i] + (bias ? b[i % N] : 0.0f)));
            emu::same(y[i], want[i], "y", i);
          }
        });
      }
  for (uint32_t n : {1u, 9u, 4096u}) {
    emu::test(std::string("gelu_grad_vec_body ") + tx + " -> " + ty + " n " + std::to_string(n), [&] {
      emu::Buf<TX> x(n, 4);
      emu::Buf<TY> dy(n, 5), dx(n, 6), want(n, 6);
      emu::lanes(11, [&](Lanes L) { gelu_grad_vec_body(L, x.p, dy.p, dx.p, n); });
      for (uint32_t i = 0; i < n; i++) {
        st(want.p, i, dy[i] * gelu_grad_of(x[i]));
        emu::same(dx[i], want[i], "dx", i);
      }
    });
  }
}

// bias_gelu_grad_vec_kernel on the host: grid (ceil(N / 256), chunks), block (32, 8); the block's shared-memory sum
// over its 8 row lanes in lane order, then stage 2 over the chunks in order
template <typename TX, typename TY>
void bias_gelu_grad_case(uint32_t R, uint32_t N, uint32_t per) {
  emu::Buf<TX> x(R * N, 1);
  emu::Buf<float> b(N, 2);
  emu::Buf<TY> dy(R * N, 3), dx(R * N, 4), want(R * N, 4);
  const uint32_t chunks = (R + per - 1) / per, col_blocks = (N + 255) / 256;
  std::vector<float> partial((size_t)chunks * N, -1.0f);
  for (uint32_t by = 0; by < chunks; by++)
    for (uint32_t bx = 0; bx < col_blocks; bx++) {
      float sh[8][32 * 8];
      for (uint32_t ty = 0; ty < 8; ty++)
        for (uint32_t tx = 0; tx < 32; tx++) {
          const uint32_t j8 = bx * 32 + tx, r0 = by * per, r1 = std::min(R, r0 + per);
          float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          if (8 * j8 < N) bias_gelu_grad_body(j8, ty, r0, r1, x.p, b.p, dy.p, dx.p, N, acc);
          for (int k = 0; k < 8; k++) sh[ty][8 * tx + k] = acc[k];
        }
      for (uint32_t ty = 0; ty < 8; ty++)
        for (uint32_t tx = 0; tx < 32; tx++) {
          const uint32_t col = 8 * tx + ty, j = bx * 256 + col;
          if (j >= N) continue;
          float s = 0.0f;
          for (int t = 0; t < 8; t++) s += sh[t][col];
          partial[(size_t)by * N + j] = s;
        }
    }
  std::vector<double> db(N, 0.0);
  for (uint32_t r = 0; r < R; r++)
    for (uint32_t j = 0; j < N; j++) {
      const uint32_t i = r * N + j;
      const float v = dy[i] * gelu_grad_of(x[i] + b[j]);
      st(want.p, i, v);
      emu::same(dx[i], want[i], "dx", i);
      db[j] += v;
    }
  for (uint32_t j = 0; j < N; j++) {
    float s = 0.0f;
    for (uint32_t k = 0; k < chunks; k++) s += partial[(size_t)k * N + j];
    // the same sum in another order: equal within rounding
    emu::expect(std::fabs(s - db[j]) <= 1e-4 * (1.0 + std::fabs(db[j])),
                "db[" + std::to_string(j) + "] = " + std::to_string(s) + ", want " + std::to_string(db[j]));
  }
}

}  // namespace mae::cuda

void emulate_gelu() {
  using namespace mae::cuda;
  gelu_cases<float, float>("f32", "f32");
  gelu_cases<bf16_t, bf16_t>("bf16", "bf16");
  gelu_cases<float, bf16_t>("f32", "bf16");
  const uint32_t shapes[][3] = {{1, 8, 1}, {7, 16, 3}, {50, 264, 17}, {130, 3072, 32}, {9, 512, 9}};
  for (const auto& sh : shapes) {
    const uint32_t R = sh[0], N = sh[1], per = sh[2];
    const std::string shape = "[" + std::to_string(R) + ", " + std::to_string(N) + "] chunks of " + std::to_string(per);
    emu::test("bias_gelu_grad_body f32 " + shape, [&] { bias_gelu_grad_case<float, float>(R, N, per); });
    emu::test("bias_gelu_grad_body bf16 " + shape, [&] { bias_gelu_grad_case<bf16_t, bf16_t>(R, N, per); });
  }
}
