// Host emulation of native/cuda/patch.cu: patch32_body (both orders, both directions) and patch_chw8_body, against
// loops of the definition (pixel (b, c, y, x) is element (i * p + j) * C + c of patch (y / p) * w + x / p in hwc
// order, (c * p + i) * p + j in chw order, with i = y % p, j = x % p).
#include "../../../native/cuda/patch.cu"
#include "check.h"

namespace mae::cuda {

namespace {
uint32_t want_index(uint32_t b, uint32_t c, uint32_t y, uint32_t x, uint32_t C, uint32_t H, uint32_t W, uint32_t p, bool hwc) {
  const uint32_t w = W / p, L = (H / p) * w, P = p * p * C, i = y % p, j = x % p;
  const uint32_t k = hwc ? (i * p + j) * C + c : (c * p + i) * p + j;
  return (b * L + (y / p) * w + x / p) * P + k;
}
}  // namespace

template <typename TI, typename TO>
void patch_cases(const char* ti, const char* to) {
  const uint32_t shapes[][5] = {{2, 3, 32, 48, 16}, {1, 2, 12, 8, 4}, {2, 3, 16, 16, 8}, {1, 1, 28, 28, 4}};
  for (const auto& sh : shapes) {
    const uint32_t B = sh[0], C = sh[1], H = sh[2], W = sh[3], p = sh[4];
    const uint32_t n = B * C * H * W;
    const std::string shape = std::string(ti) + " -> " + to + " [" + std::to_string(B) + ", " + std::to_string(C) + ", " +
                              std::to_string(H) + ", " + std::to_string(W) + "] p " + std::to_string(p);
    for (bool hwc : {true, false}) {
      const std::string order = hwc ? " hwc " : " chw ";
      emu::test("patch32_body patchify" + order + shape, [&] {
        emu::Buf<TI> img(n, 1);
        emu::Buf<TO> x(n, 2);
        emu::lanes(17, [&](Lanes L) { patch32_body<true>(L, img.p, x.p, B, C, H, W, p, hwc); });
        for (uint32_t b = 0; b < B; b++)
          for (uint32_t c = 0; c < C; c++)
            for (uint32_t y = 0; y < H; y++)
              for (uint32_t xx = 0; xx < W; xx++) {
                emu::Buf<TO> one(1, 0);
                st(one.p, 0, img[((b * C + c) * H + y) * W + xx]);
                const uint32_t k = want_index(b, c, y, xx, C, H, W, p, hwc);
                emu::same(x[k], one[0], "patches", k);
              }
      });
      emu::test("patch32_body unpatchify" + order + shape, [&] {
        emu::Buf<TI> x(n, 3);
        emu::Buf<TO> img(n, 4);
        emu::lanes(5, [&](Lanes L) { patch32_body<false>(L, x.p, img.p, B, C, H, W, p, hwc); });
        for (uint32_t b = 0; b < B; b++)
          for (uint32_t c = 0; c < C; c++)
            for (uint32_t y = 0; y < H; y++)
              for (uint32_t xx = 0; xx < W; xx++) {
                emu::Buf<TO> one(1, 0);
                st(one.p, 0, x[want_index(b, c, y, xx, C, H, W, p, hwc)]);
                const uint32_t e = ((b * C + c) * H + y) * W + xx;
                emu::same(img[e], one[0], "imgs", e);
              }
      });
    }
    if (p % 8) continue;
    emu::test("patch_chw8_body patchify and unpatchify " + shape, [&] {
      emu::Buf<TI> img(n, 5);
      emu::Buf<TO> x(n, 6), back(n, 7);
      emu::lanes(23, [&](Lanes L) { patch_chw8_body<true>(L, img.p, x.p, B, C, H, W, p); });
      emu::Buf<TO> ref(n, 8);
      emu::lanes(1, [&](Lanes L) { patch32_body<true>(L, img.p, ref.p, B, C, H, W, p, false); });
      for (uint32_t i = 0; i < n; i++) emu::same(x[i], ref[i], "patches", i);
      emu::lanes(23, [&](Lanes L) { patch_chw8_body<false>(L, x.p, back.p, B, C, H, W, p); });
      emu::Buf<TO> ref2(n, 9);
      emu::lanes(1, [&](Lanes L) { patch32_body<false>(L, x.p, ref2.p, B, C, H, W, p, false); });
      for (uint32_t i = 0; i < n; i++) emu::same(back[i], ref2[i], "imgs", i);
    });
  }
}

}  // namespace mae::cuda

void emulate_patch() {
  using namespace mae::cuda;
  patch_cases<float, float>("f32", "f32");
  patch_cases<bf16_t, bf16_t>("bf16", "bf16");
  patch_cases<float, bf16_t>("f32", "bf16");
}
