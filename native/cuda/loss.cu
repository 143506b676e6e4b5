// Losses (the CUDA twin of native/cpu/loss.cpp).
// masked_mse: pred, target [B, L, P], mask [B, L] (1 = removed). With norm_pix each target patch becomes
//   (t - mean) / sqrt(var + 1e-6), var unbiased over its P values. per_patch = mean_P (pred - t)^2;
//   loss = sum(per_patch * mask) / sum(mask); with no masked patch at all, the mean of per_patch over all patches.
//   backward: dpred = dloss * w * 2 (pred - t) / P, w = mask / sum(mask) (or 1 / (B L)).
//   One warp per patch; patch statistics and the error sums in double, the final sums in one block in double, in a
//   fixed order (deterministic). dloss is read on the device (no host round trip).
// cross_entropy: logits [B, C]; target int32 labels [B] or float soft targets [B, C]; q = (1 - s) t + s / C;
//   loss = mean_b sum_c q_c (logsumexp(z) - z_c); dz = (softmax(z) sum_c q_c - q) * dloss / B.
//   One block per row. A label outside [0, C) is recorded in the device's fault record and reported as mae::Error
//   by the next read of device data (as the token ops do; MAE_CUDA_CHECK_INDICES=1: by the call itself).
#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

constexpr float kNormPixEps = 1e-6f;

// mean and 1/sqrt(var_unbiased + eps) of a target patch, computed by one warp (all lanes get them)
__device__ __forceinline__ void patch_stats(Src tg, int64_t base, int64_t P, double* mean, double* rs) {
  const int lane = threadIdx.x & 31;
  double s = 0.0;
  for (int64_t k = lane; k < P; k += 32) s += tg[base + k];
  const double m = warp_sum(s) / (double)P;
  double v = 0.0;
  for (int64_t k = lane; k < P; k += 32) {
    const double d = tg[base + k] - m;
    v += d * d;
  }
  v = warp_sum(v);
  *mean = m;
  *rs = 1.0 / sqrt(v / (double)(P - 1) + (double)kNormPixEps);
}

// per-patch squared error sum / P into e[i]
__global__ void mse_rows_kernel(Src pred, Src tg, int64_t BL, int64_t P, bool norm_pix, double* e) {
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  const int lane = threadIdx.x & 31;
  for (int64_t i = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); i < BL; i += warps) {
    const int64_t base = i * P;
    double m = 0.0, rs = 1.0;
    if (norm_pix) patch_stats(tg, base, P, &m, &rs);
    double acc = 0.0;
    for (int64_t k = lane; k < P; k += 32) {
      const float t = norm_pix ? (float)((tg[base + k] - m) * rs) : tg[base + k];
      const float d = pred[base + k] - t;
      acc += (double)d * d;
    }
    acc = warp_sum(acc);
    if (lane == 0) e[i] = acc / (double)P;
  }
}

// loss = sum_i w_i e_i / denom, in one block
__global__ void mse_final_kernel(const double* e, Src mask, int64_t BL, Dst loss) {
  __shared__ double sh[32];
  double ms = 0.0;
  for (int64_t i = threadIdx.x; i < BL; i += blockDim.x) ms += mask[i];
  ms = block_sum(ms, sh);
  const bool all = ms == 0.0;
  double tot = 0.0;
  for (int64_t i = threadIdx.x; i < BL; i += blockDim.x) {
    const double w = all ? 1.0 : (double)mask[i];
    if (w != 0.0) tot += w * e[i];
  }
  tot = block_sum(tot, sh);
  if (threadIdx.x == 0) loss.set(0, (float)(tot / (all ? (double)BL : ms)));
}

__global__ void mask_sum_kernel(Src mask, int64_t BL, double* out) {
  __shared__ double sh[32];
  double ms = 0.0;
  for (int64_t i = threadIdx.x; i < BL; i += blockDim.x) ms += mask[i];
  ms = block_sum(ms, sh);
  if (threadIdx.x == 0) *out = ms;
}

__global__ void mse_backward_kernel(Src pred, Src tg, Src mask, const double* msum, Src dloss, int64_t BL, int64_t P,
                                    bool norm_pix, Dst dpred) {
  const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
  const int lane = threadIdx.x & 31;
  const bool all = *msum == 0.0;
  const double denom = all ? (double)BL : *msum;
  const double g = dloss[0];
  for (int64_t i = blockIdx.x * (int64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); i < BL; i += warps) {
    const int64_t base = i * P;
    const float c = (float)(g * (all ? 1.0 : (double)mask[i]) / denom * 2.0 / (double)P);
    if (c == 0.0f) {
      for (int64_t k = lane; k < P; k += 32) dpred.set(base + k, 0.0f);
      continue;
    }
    double m = 0.0, rs = 1.0;
    if (norm_pix) patch_stats(tg, base, P, &m, &rs);
    for (int64_t k = lane; k < P; k += 32) {
      const float t = norm_pix ? (float)((tg[base + k] - m) * rs) : tg[base + k];
      dpred.set(base + k, c * (pred[base + k] - t));
    }
  }
}

// ---- cross-entropy -----------------------------------------------------------------------------------------------

__device__ __forceinline__ float block_max(float v, float* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  float r = lane < nw ? sh[lane] : -INFINITY;
  return warp_max(r);
}

// q_c of row b for class c; labels are checked by the caller
__device__ __forceinline__ float q_of(const int32_t* labels, Src soft, int64_t b, int64_t c, int64_t C, float s) {
  if (labels) return s / (float)C + (c == labels[b] ? 1.0f - s : 0.0f);
  return (1.0f - s) * soft[b * C + c] + s / (float)C;
}

// logsumexp of row b (every thread gets it)
__device__ __forceinline__ float row_lse(Src z, int64_t b, int64_t C, float* shf, double* shd) {
  float m = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) m = fmaxf(m, z[b * C + c]);
  m = block_max(m, shf);
  double s = 0.0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += exp((double)(z[b * C + c] - m));
  s = block_sum(s, shd);
  return m + (float)log(s);
}

__device__ __forceinline__ bool label_ok(const int32_t* labels, int64_t b, int64_t C, Fault* fault) {
  if (!labels) return true;
  const int32_t y = labels[b];
  if (y >= 0 && y < C) return true;
  if (threadIdx.x == 0) record_fault(fault, kFaultLabel, b, y, C);
  return false;
}

__global__ void ce_rows_kernel(Src z, const int32_t* labels, Src soft, float smoothing, int64_t C, double* rows,
                               Fault* bad) {
  __shared__ float shf[32];
  __shared__ double shd[32];
  const int64_t b = blockIdx.x;
  if (!label_ok(labels, b, C, bad)) {
    if (threadIdx.x == 0) rows[b] = 0.0;
    return;
  }
  const float lse = row_lse(z, b, C, shf, shd);
  double acc = 0.0;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    acc += (double)q_of(labels, soft, b, c, C, smoothing) * (double)(lse - z[b * C + c]);
  acc = block_sum(acc, shd);
  if (threadIdx.x == 0) rows[b] = acc;
}

__global__ void ce_final_kernel(const double* rows, int64_t B, Dst loss) {
  __shared__ double sh[32];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < B; i += blockDim.x) s += rows[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) loss.set(0, (float)(s / (double)B));
}

__global__ void ce_backward_kernel(Src z, const int32_t* labels, Src soft, float smoothing, Src dloss, int64_t B,
                                   int64_t C, Dst dz, Fault* bad) {
  __shared__ float shf[32];
  __shared__ double shd[32];
  const int64_t b = blockIdx.x;
  if (!label_ok(labels, b, C, bad)) {
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dz.set(b * C + c, 0.0f);
    return;
  }
  const float g = dloss[0] / (float)B;
  const float lse = row_lse(z, b, C, shf, shd);
  float qs = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) qs += q_of(labels, soft, b, c, C, smoothing);
  qs = block_sum(qs, shf);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x)
    dz.set(b * C + c, g * (expf(z[b * C + c] - lse) * qs - q_of(labels, soft, b, c, C, smoothing)));
}

}  // namespace

void masked_mse_forward(const TensorView& pred, const TensorView& target, const TensorView& mask, bool norm_pix,
                        TensorView& loss) {
  Context& c = context(pred);
  const int64_t BL = mask.numel(), P = pred.last();
  Scratch e(c.device, (size_t)BL * sizeof(double));
  mse_rows_kernel<<<grid_for(BL * 32, 256, c), 256, 0, c.stream>>>(src(pred), src(target), BL, P, norm_pix,
                                                                    e.as<double>());
  MAE_KERNEL_CHECK("mse_rows_kernel", c.stream);
  mse_final_kernel<<<1, 1024, 0, c.stream>>>(e.as<double>(), src(mask), BL, dst(loss));
  MAE_KERNEL_CHECK("mse_final_kernel", c.stream);
}

void masked_mse_backward(const TensorView& pred, const TensorView& target, const TensorView& mask, bool norm_pix,
                         const TensorView& dloss, TensorView& dpred) {
  Context& c = context(pred);
  const int64_t BL = mask.numel(), P = pred.last();
  Scratch ms(c.device, sizeof(double));
  mask_sum_kernel<<<1, 1024, 0, c.stream>>>(src(mask), BL, ms.as<double>());
  MAE_KERNEL_CHECK("mask_sum_kernel", c.stream);
  mse_backward_kernel<<<grid_for(BL * 32, 256, c), 256, 0, c.stream>>>(
      src(pred), src(target), src(mask), ms.as<double>(), src(dloss), BL, P, norm_pix, dst(dpred));
  MAE_KERNEL_CHECK("mse_backward_kernel", c.stream);
}

void cross_entropy_forward(const TensorView& logits, const TensorView& target, float smoothing, TensorView& loss) {
  Context& c = context(logits);
  const int64_t B = logits.dim(0), C = logits.dim(1);
  const bool labels = target.dtype == DType::I32;
  Scratch rows(c.device, (size_t)B * sizeof(double));
  ce_rows_kernel<<<(unsigned)B, 256, 0, c.stream>>>(src(logits), labels ? target.i32() : nullptr,
                                                    labels ? Src{nullptr, 0} : src(target), smoothing, C,
                                                    rows.as<double>(), c.fault);
  MAE_KERNEL_CHECK("ce_rows_kernel", c.stream);
  ce_final_kernel<<<1, 1024, 0, c.stream>>>(rows.as<double>(), B, dst(loss));
  MAE_KERNEL_CHECK("ce_final_kernel", c.stream);
  if (labels) check_fault_now(c);
}

void cross_entropy_backward(const TensorView& logits, const TensorView& target, float smoothing,
                            const TensorView& dloss, TensorView& dlogits) {
  Context& c = context(logits);
  const int64_t B = logits.dim(0), C = logits.dim(1);
  const bool labels = target.dtype == DType::I32;
  ce_backward_kernel<<<(unsigned)B, 256, 0, c.stream>>>(src(logits), labels ? target.i32() : nullptr,
                                                        labels ? Src{nullptr, 0} : src(target), smoothing,
                                                        src(dloss), B, C, dst(dlogits), c.fault);
  MAE_KERNEL_CHECK("ce_backward_kernel", c.stream);
  if (labels) check_fault_now(c);
}

}  // namespace mae::cuda
