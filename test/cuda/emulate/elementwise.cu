// Host emulation of native/cuda/elementwise.cu's 16-byte kernels: binary_vec_body (add, mul; a repeating operand of
// period nb; every dtype mix; a scalar tail), axpby_vec_body and copy_vec_body (fill, convert).
#include "../../../native/cuda/elementwise.cu"
#include "check.h"

namespace mae::cuda {

template <int Op, typename TA, typename TB, typename TY>
void check_binary(uint32_t n, uint32_t nb, uint32_t stride) {
  emu::Buf<TA> a(n, 1);
  emu::Buf<TB> b(nb, 2);
  emu::Buf<TY> y(n, 3), want(n, 3);
  emu::lanes(stride, [&](Lanes L) { binary_vec_body<Op>(L, a.p, b.p, y.p, n, nb); });
  for (uint32_t i = 0; i < n; i++) {
    const float u = a[i], v = b[i % nb];
    st(want.p, i, Op == 0 ? u + v : u * v);
    emu::same(y[i], want[i], "y", i);
  }
}

template <typename TA, typename TB, typename TY>
void binary_all(const char* ta, const char* tb, const char* ty) {
  // n with and without a tail, the period equal to n or a multiple of 8, strides below and above the group count
  const uint32_t shapes[][2] = {{8, 8}, {13, 13}, {1, 1}, {7, 7}, {96, 24}, {200, 8}, {4096 + 5, 4096 + 5}, {768 * 50, 768}};
  for (const auto& s : shapes)
    for (uint32_t stride : {1u, 3u, 37u, 1024u}) {
      const std::string name = std::string("binary_vec_body ") + ta + " " + tb + " -> " + ty + " n " +
                               std::to_string(s[0]) + " nb " + std::to_string(s[1]) + " lanes " + std::to_string(stride);
      emu::test("add " + name, [&] { check_binary<0, TA, TB, TY>(s[0], s[1], stride); });
      emu::test("mul " + name, [&] { check_binary<1, TA, TB, TY>(s[0], s[1], stride); });
    }
}

template <typename TX, typename TY>
void axpby_copy(const char* tx, const char* ty) {
  for (uint32_t n : {1u, 8u, 9u, 100u, 1000003u})
    for (float beta : {0.0f, -1.3f}) {
      emu::test(std::string("axpby_vec_body ") + tx + " -> " + ty + " n " + std::to_string(n) + " beta " + std::to_string(beta), [&] {
        emu::Buf<TX> x(n, 4);
        emu::Buf<TY> y(n, 5), want(n, 5);
        emu::lanes(29, [&](Lanes L) { axpby_vec_body(L, 0.7f, x.p, beta, y.p, n); });
        for (uint32_t i = 0; i < n; i++) {
          st(want.p, i, beta == 0.0f ? 0.7f * x[i] : 0.7f * x[i] + beta * want[i]);
          emu::same(y[i], want[i], "y", i);
        }
      });
    }
  for (uint32_t n : {3u, 16u, 77u}) {
    emu::test(std::string("copy_vec_body (convert) ") + tx + " -> " + ty + " n " + std::to_string(n), [&] {
      emu::Buf<TX> x(n, 6);
      emu::Buf<TY> y(n, 7), want(n, 7);
      emu::lanes(5, [&](Lanes L) { copy_vec_body(L, x.p, 0.0f, y.p, n); });
      for (uint32_t i = 0; i < n; i++) {
        st(want.p, i, x[i]);
        emu::same(y[i], want[i], "y", i);
      }
    });
    emu::test(std::string("copy_vec_body (fill) ") + ty + " n " + std::to_string(n), [&] {
      emu::Buf<TY> y(n, 8);
      emu::lanes(5, [&](Lanes L) { copy_vec_body<TY, TY>(L, nullptr, -2.5f, y.p, n); });
      for (uint32_t i = 0; i < n; i++) emu::same(y[i], -2.5f, "y", i);
    });
  }
}

}  // namespace mae::cuda

void emulate_elementwise() {
  using namespace mae::cuda;
  binary_all<float, float, float>("f32", "f32", "f32");
  binary_all<bf16_t, bf16_t, bf16_t>("bf16", "bf16", "bf16");
  binary_all<bf16_t, float, bf16_t>("bf16", "f32", "bf16");
  binary_all<float, bf16_t, bf16_t>("f32", "bf16", "bf16");
  axpby_copy<float, float>("f32", "f32");
  axpby_copy<bf16_t, bf16_t>("bf16", "bf16");
  axpby_copy<float, bf16_t>("f32", "bf16");
  axpby_copy<bf16_t, float>("bf16", "f32");
}
