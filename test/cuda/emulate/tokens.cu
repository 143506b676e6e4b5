// Host emulation of native/cuda/tokens.cu's 16-byte kernels: gather, scatter-add (float32 accumulation, repeated
// indices, k in order), cat (broadcast batches) and slice, and the fault record for a bad index.
#include "../../../native/cuda/tokens.cu"
#include "check.h"

namespace mae::cuda {

namespace {
std::vector<int32_t> indices(uint32_t count, uint32_t N, uint32_t seed) {
  std::vector<int32_t> v(count);
  uint32_t s = seed;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = (int32_t)((s >> 8) % N);
  }
  return v;
}
Fault no_fault() { return Fault{kNoFault, 0, 0}; }
}  // namespace

template <typename TX, typename TY>
void token_cases(const char* tx, const char* ty) {
  const uint32_t shapes[][4] = {{1, 1, 8, 147}, {3, 37, 64, 10}, {2, 197, 768, 49}, {4, 5, 16, 5}};
  for (const auto& sh : shapes) {
    const uint32_t B = sh[0], N = sh[1], D = sh[2], K = sh[3];
    const std::string shape = std::string(tx) + " -> " + ty + " B " + std::to_string(B) + " N " + std::to_string(N) +
                              " D " + std::to_string(D) + " K " + std::to_string(K);
    const uint32_t D8 = D / 8;
    emu::test("gather_rows_vec_body " + shape, [&] {
      emu::Buf<TX> x(B * N * D, 1);
      emu::Buf<TY> y(B * K * D, 2);
      auto idx = indices(B * K, N, 3);
      Fault f = no_fault();
      emu::lanes(41, [&](Lanes L) { gather_rows_vec_body(L, x.p, idx.data(), y.p, N, D8, B * K, K, &f); });
      for (uint32_t b = 0; b < B; b++)
        for (uint32_t k = 0; k < K; k++)
          for (uint32_t d = 0; d < D; d++) {
            emu::Buf<TY> one(1, 0);
            st(one.p, 0, x[(b * N + idx[b * K + k]) * D + d]);
            emu::same(y[(b * K + k) * D + d], one[0], "y", (b * K + k) * D + d);
          }
      emu::expect(f.key == kNoFault, "a fault was recorded for good indices");
    });
    emu::test("scatter_add_rows_vec_body " + shape, [&] {
      emu::Buf<TX> dy(B * K * D, 4);
      auto idx = indices(B * K, N, 5);  // with repeats
      std::vector<float> acc(B * N * D, 0.0f);
      Fault f = no_fault();
      emu::lanes(7, [&](Lanes L) { scatter_add_rows_vec_body(L, dy.p, idx.data(), acc.data(), B, N, D8, K, &f); });
      std::vector<float> want(B * N * D, 0.0f);
      for (uint32_t b = 0; b < B; b++)
        for (uint32_t k = 0; k < K; k++)
          for (uint32_t d = 0; d < D; d++) want[(b * N + idx[b * K + k]) * D + d] += dy[(b * K + k) * D + d];
      for (size_t i = 0; i < want.size(); i++) emu::same(acc[i], want[i], "dx", i);
    });
  }
  const uint32_t cats[][6] = {{3, 1, 36, 64, 1, 0}, {3, 5, 12, 16, 0, 0}, {2, 49, 147, 512, 0, 1}};
  for (const auto& ct : cats) {
    const uint32_t B = ct[0], Na = ct[1], Nb = ct[2], D = ct[3];
    const bool a1 = ct[4] != 0, b1 = ct[5] != 0;
    const std::string shape = std::string(tx) + " -> " + ty + " B " + std::to_string(B) + " Na " + std::to_string(Na) +
                              " Nb " + std::to_string(Nb) + " D " + std::to_string(D) + (a1 ? " a broadcast" : "") +
                              (b1 ? " b broadcast" : "");
    emu::test("cat_tokens_vec_body " + shape, [&] {
      emu::Buf<TX> a((a1 ? 1 : B) * Na * D, 1), bb((b1 ? 1 : B) * Nb * D, 2);
      emu::Buf<TY> y(B * (Na + Nb) * D, 3);
      emu::lanes(13, [&](Lanes L) { cat_tokens_vec_body(L, a.p, bb.p, y.p, B, Na, Nb, D / 8, a1, b1); });
      for (uint32_t b = 0; b < B; b++)
        for (uint32_t t = 0; t < Na + Nb; t++)
          for (uint32_t d = 0; d < D; d++) {
            emu::Buf<TY> one(1, 0);
            st(one.p, 0, t < Na ? a[((a1 ? 0 : b) * Na + t) * D + d] : bb[((b1 ? 0 : b) * Nb + t - Na) * D + d]);
            emu::same(y[(b * (Na + Nb) + t) * D + d], one[0], "y", (b * (Na + Nb) + t) * D + d);
          }
    });
    emu::test("slice_tokens_vec_body " + shape, [&] {
      const uint32_t N = Na + Nb, start = Na, len = Nb;
      emu::Buf<TX> x(B * N * D, 4);
      emu::Buf<TY> y(B * len * D, 5);
      emu::lanes(9, [&](Lanes L) { slice_tokens_vec_body(L, x.p, y.p, B, N, D / 8, start, len); });
      for (uint32_t b = 0; b < B; b++)
        for (uint32_t t = 0; t < len; t++)
          for (uint32_t d = 0; d < D; d++) {
            emu::Buf<TY> one(1, 0);
            st(one.p, 0, x[(b * N + start + t) * D + d]);
            emu::same(y[(b * len + t) * D + d], one[0], "y", (b * len + t) * D + d);
          }
    });
  }
}

}  // namespace mae::cuda

void emulate_tokens() {
  using namespace mae::cuda;
  token_cases<float, float>("f32", "f32");
  token_cases<bf16_t, bf16_t>("bf16", "bf16");
  token_cases<float, bf16_t>("f32", "bf16");
  emu::test("gather_rows_vec_body records a bad index, writes a zero row there and nothing outside y", [] {
    const uint32_t B = 2, N = 5, D = 16, K = 2;
    emu::Buf<float> x(B * N * D, 1), y(B * K * D + 8, 2);
    std::vector<int32_t> idx = {0, 1, 4, 5};
    const float after = y[B * K * D];
    Fault f = no_fault();
    emu::lanes(3, [&](Lanes L) { gather_rows_vec_body(L, x.p, idx.data(), y.p, N, D / 8, B * K, K, &f); });
    emu::expect(f.key == ((3ull << 32) | 5u) && f.n == 5 && f.op == kFaultGather, "the fault record holds position 3, value 5, n 5");
    for (uint32_t d = 0; d < D; d++) emu::same(y[3 * D + d], 0.0f, "y (bad row)", 3 * D + d);
    emu::same(y[B * K * D], after, "past y", B * K * D);
  });
  emu::test("scatter_add_rows_vec_body skips and records a negative index", [] {
    const uint32_t B = 1, N = 3, D = 8, K = 3;
    emu::Buf<float> dy(B * K * D, 1);
    std::vector<int32_t> idx = {2, -1, 2};
    std::vector<float> acc(B * N * D, 0.0f);
    Fault f = no_fault();
    emu::lanes(2, [&](Lanes L) { scatter_add_rows_vec_body(L, dy.p, idx.data(), acc.data(), B, N, D / 8, K, &f); });
    emu::expect(f.key == ((1ull << 32) | 0xffffffffu) && f.op == kFaultScatter, "the fault record holds position 1, value -1");
    for (uint32_t d = 0; d < D; d++) emu::same(acc[2 * D + d], dy[d] + dy[2 * D + d], "dx row 2", 2 * D + d);
  });
}
