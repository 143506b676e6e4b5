// Patches: images [B, C, H, W] <-> patch vectors [B, L, P], L = (H/p)(W/p) in row-major patch-grid order,
// P = p*p*C. hwc (the official patchify) orders a patch as (row, col, channel) with channel fastest;
// otherwise (channel, row, col), the flattening of the patch-embedding conv weight [D, C, p, p]. Images and patches
// have one dtype, float32 or bfloat16 (a pure permutation: the values are copied as they are).
#include "cpu.h"

namespace mae::cpu {

namespace {
template <bool ToPatches, typename T>
void move_patches(const TensorView& imgs, int p, bool hwc, T* X, T* I) {
  const int64_t B = imgs.dim(0), C = imgs.dim(1), H = imgs.dim(2), W = imgs.dim(3);
  const int64_t h = H / p, w = W / p, P = (int64_t)p * p * C;
#pragma omp parallel for schedule(static) if (imgs.numel() >= kParallelGrain)
  for (int64_t bl = 0; bl < B * h * w; bl++) {
    const int64_t b = bl / (h * w), l = bl % (h * w), hi = l / w, wi = l % w;
    T* x = X + bl * P;
    for (int64_t c = 0; c < C; c++)
      for (int64_t i = 0; i < p; i++)
        for (int64_t j = 0; j < p; j++) {
          const int64_t k = hwc ? (i * p + j) * C + c : (c * p + i) * p + j;
          T& pix = I[((b * C + c) * H + hi * p + i) * W + wi * p + j];
          if (ToPatches)
            x[k] = pix;
          else
            pix = x[k];
        }
  }
}
}  // namespace

void patchify(const TensorView& imgs, int p, bool hwc, TensorView& x) {
  if (imgs.dtype == DType::BF16)
    move_patches<true>(imgs, p, hwc, bf16(x), bf16(imgs));
  else
    move_patches<true>(imgs, p, hwc, x.f32(), imgs.f32());
}

void unpatchify(const TensorView& x, int p, bool hwc, TensorView& imgs) {
  if (imgs.dtype == DType::BF16)
    move_patches<false>(imgs, p, hwc, bf16(x), bf16(imgs));
  else
    move_patches<false>(imgs, p, hwc, x.f32(), imgs.f32());
}

}  // namespace mae::cpu
