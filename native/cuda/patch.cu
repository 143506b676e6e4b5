// Patches (the CUDA twin of native/cpu/patch.cpp): images [B, C, H, W] <-> patch vectors [B, L, P],
// L = (H/p)(W/p) in row-major patch-grid order, P = p*p*C. hwc (the official patchify) orders a patch as
// (row, col, channel) with channel fastest; otherwise (channel, row, col), the patch-embedding conv weight's order.
// The kernels walk the image in memory order (coalesced on the image side). With 32-bit indices when the image has
// fewer than 2^31 elements; the chw order with p a multiple of 8 moves 8 pixels of a patch row per step (contiguous
// on both sides: 16-byte accesses). MAE_CUDA_VECTOR=0 takes the 64-bit scalar kernel for everything.
#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

constexpr int kThreads = 256;

// the patch-vector index of image element (b, c, y, x)
template <typename I>
__host__ __device__ __forceinline__ I patch_index(I b, I c, I y, I x, I C, I W, I w, I L, I P, I p, bool hwc) {
  const I hi = y / p, i = y % p, wi = x / p, j = x % p;
  const I k = hwc ? (i * p + j) * C + c : (c * p + i) * p + j;
  return (b * L + hi * w + wi) * P + k;
}

template <bool ToPatches>
__global__ void patch_kernel(Src from, Dst to, int64_t B, int64_t C, int64_t H, int64_t W, int p, bool hwc) {
  const int64_t total = B * C * H * W, w = W / p, L = (H / p) * w, P = (int64_t)p * p * C;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t x = e % W, y = (e / W) % H, c = (e / (W * H)) % C, b = e / (W * H * C);
    const int64_t pe = patch_index<int64_t>(b, c, y, x, C, W, w, L, P, p, hwc);
    if (ToPatches)
      to.set(pe, from[e]);
    else
      to.set(e, from[pe]);
  }
}

// 32-bit indices, one element per step, either order
template <bool ToPatches, typename TI, typename TO>
__host__ __device__ void patch32_body(Lanes Ln, const TI* from, TO* to, uint32_t B, uint32_t C, uint32_t H,
                                      uint32_t W, uint32_t p, bool hwc) {
  const uint32_t total = B * C * H * W, w = W / p, L = (H / p) * w, P = p * p * C;
  for (uint32_t e = Ln.first; e < total; e += Ln.stride) {
    const uint32_t x = e % W, y = (e / W) % H, c = (e / (W * H)) % C, b = e / (W * H * C);
    const uint32_t pe = patch_index<uint32_t>(b, c, y, x, C, W, w, L, P, p, hwc);
    if (ToPatches)
      st(to, pe, ld(from, e));
    else
      st(to, e, ld(from, pe));
  }
}

template <bool ToPatches, typename TI, typename TO>
__global__ void patch32_kernel(const TI* from, TO* to, uint32_t B, uint32_t C, uint32_t H, uint32_t W, uint32_t p,
                               bool hwc) {
  patch32_body<ToPatches>(lanes_of_launch(), from, to, B, C, H, W, p, hwc);
}

// chw order, p % 8 == 0: 8 consecutive pixels of an image row lie in one patch row, consecutive in the patch vector
template <bool ToPatches, typename TI, typename TO>
__host__ __device__ void patch_chw8_body(Lanes Ln, const TI* from, TO* to, uint32_t B, uint32_t C, uint32_t H,
                                         uint32_t W, uint32_t p) {
  const uint32_t groups = B * C * H * W / 8, W8 = W / 8, w = W / p, L = (H / p) * w, P = p * p * C;
  for (uint32_t g = Ln.first; g < groups; g += Ln.stride) {
    const uint32_t x = (g % W8) * 8, y = (g / W8) % H, c = (g / (W8 * H)) % C, b = g / (W8 * H * C);
    const uint32_t e = g * 8, pe = patch_index<uint32_t>(b, c, y, x, C, W, w, L, P, p, false);
    float v[8];
    if (ToPatches) {
      load8(from + e, v);
      store8(to + pe, v);
    } else {
      load8(from + pe, v);
      store8(to + e, v);
    }
  }
}

template <bool ToPatches, typename TI, typename TO>
__global__ void patch_chw8_kernel(const TI* from, TO* to, uint32_t B, uint32_t C, uint32_t H, uint32_t W, uint32_t p) {
  patch_chw8_body<ToPatches>(lanes_of_launch(), from, to, B, C, H, W, p);
}

// imgs [B, C, H, W] and patches x [B, L, P]: patchify copies imgs -> x, unpatchify x -> imgs
template <bool ToPatches>
void patch_launch(const TensorView& imgs, const TensorView& x, int p, bool hwc, const char* name) {
  Context& c = context(imgs);
  const int64_t B = imgs.dim(0), C = imgs.dim(1), H = imgs.dim(2), W = imgs.dim(3), n = imgs.numel();
  const TensorView& from = ToPatches ? imgs : x;
  const TensorView& to = ToPatches ? x : imgs;
  if (vec_ok(n, {from.data, to.data})) {
    const bool wide = !hwc && p % 8 == 0;
    with_type(from.dtype, [&](auto ti) {
      with_type(to.dtype, [&](auto to_) {
        using TI = decltype(ti);
        using TO = decltype(to_);
        const auto* f = static_cast<const TI*>(from.data);
        auto* t = static_cast<TO*>(to.data);
        if (wide)
          patch_chw8_kernel<ToPatches, TI, TO><<<grid_for(n / 8, kThreads, c), kThreads, 0, c.stream>>>(
              f, t, (uint32_t)B, (uint32_t)C, (uint32_t)H, (uint32_t)W, (uint32_t)p);
        else
          patch32_kernel<ToPatches, TI, TO><<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(
              f, t, (uint32_t)B, (uint32_t)C, (uint32_t)H, (uint32_t)W, (uint32_t)p, hwc);
      });
    });
  } else {
    patch_kernel<ToPatches><<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(src(from), dst(to), B, C, H, W, p,
                                                                                  hwc);
  }
  MAE_KERNEL_CHECK(name, c.stream);
}

}  // namespace

void patchify(const TensorView& imgs, int p, bool hwc, TensorView& x) {
  patch_launch<true>(imgs, x, p, hwc, "patchify");
}

void unpatchify(const TensorView& x, int p, bool hwc, TensorView& imgs) {
  patch_launch<false>(imgs, x, p, hwc, "unpatchify");
}

}  // namespace mae::cuda
