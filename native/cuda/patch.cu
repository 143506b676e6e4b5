// Patches (the CUDA twin of native/cpu/patch.cpp): images [B, C, H, W] <-> patch vectors [B, L, P],
// L = (H/p)(W/p) in row-major patch-grid order, P = p*p*C. hwc (the official patchify) orders a patch as
// (row, col, channel) with channel fastest; otherwise (channel, row, col), the patch-embedding conv weight's order.
// One thread per image element, walking the image in memory order (coalesced on the image side).
#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

template <bool ToPatches>
__global__ void patch_kernel(Src from, Dst to, int64_t B, int64_t C, int64_t H, int64_t W, int p, bool hwc) {
  const int64_t total = B * C * H * W, w = W / p, L = (H / p) * w, P = (int64_t)p * p * C;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t x = e % W, y = (e / W) % H, c = (e / (W * H)) % C, b = e / (W * H * C);
    const int64_t hi = y / p, i = y % p, wi = x / p, j = x % p;
    const int64_t k = hwc ? (i * p + j) * C + c : (c * p + i) * p + j;
    const int64_t pe = (b * L + hi * w + wi) * P + k;
    if (ToPatches)
      to.set(pe, from[e]);
    else
      to.set(e, from[pe]);
  }
}

}  // namespace

void patchify(const TensorView& imgs, int p, bool hwc, TensorView& x) {
  Context& c = context(imgs);
  const int64_t B = imgs.dim(0), C = imgs.dim(1), H = imgs.dim(2), W = imgs.dim(3);
  patch_kernel<true><<<grid_for(B * C * H * W, 256, c), 256, 0, c.stream>>>(src(imgs), dst(x), B, C, H, W, p, hwc);
  MAE_KERNEL_CHECK("patchify (patch_kernel<true>)", c.stream);
}

void unpatchify(const TensorView& x, int p, bool hwc, TensorView& imgs) {
  Context& c = context(x);
  const int64_t B = imgs.dim(0), C = imgs.dim(1), H = imgs.dim(2), W = imgs.dim(3);
  patch_kernel<false><<<grid_for(B * C * H * W, 256, c), 256, 0, c.stream>>>(src(x), dst(imgs), B, C, H, W, p, hwc);
  MAE_KERNEL_CHECK("unpatchify (patch_kernel<false>)", c.stream);
}

}  // namespace mae::cuda
