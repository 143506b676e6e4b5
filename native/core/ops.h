// The op table: one struct of function pointers per backend, a forward and a backward entry for every op family.
// The CPU table (native/cpu/) is always present; the CUDA table (native/cuda/) is filled by the CUDA library when it
// loads. Every backend implements exactly these signatures. The bindings check shapes, dtypes and devices before a
// call, so kernels may assume well-formed, contiguous, non-empty inputs on their own device.
//
// Shapes below: B batch, N tokens, D width, H heads, L patches, P = p*p*C patch vector, F features, C classes.
// "rows" is the product of all dimensions but the last.
#pragma once
#include "allocator.h"
#include "tensor.h"

namespace mae {

// One parameter of a multi-tensor AdamW step (Ops::adamw_step). shadow: a bfloat16 copy of the parameter that the
// step rewrites with the new values rounded to bfloat16 (for bf16 products without a conversion each time), or a
// view with data == nullptr for none.
struct AdamWTensor {
  TensorView param, grad, m, v, shadow;
  float lr, weight_decay;
};

struct Ops {
  const char* name;
  Allocator allocator;
  // copy_to_host returns when dst holds the bytes (it waits for the device's queued work); copy_from_host may
  // return before the device has them (the source may be reused at once; later work on the device sees the data).
  void (*copy_to_host)(void* dst, const void* src, size_t bytes);
  void (*copy_from_host)(void* dst, const void* src, size_t bytes);
  // An asynchronous read in two halves: read_begin queues a copy of src now (after the work queued so far, before
  // any queued later) and returns a handle; read_end(handle, dst), callable from any thread, waits for that copy,
  // puts the bytes in dst and releases the handle.
  void* (*read_begin)(const void* src, size_t bytes);
  void (*read_end)(void* handle, void* dst);

  // gemm: y = x W^T + b. x [rows, K], w [N, K] (PyTorch layout), b [N] or null, y [rows, N].
  void (*linear_forward)(const TensorView& x, const TensorView& w, const TensorView* b, TensorView& y);
  // dx [rows, K] (null: not wanted), dw [N, K], db [N] (null: no bias). All outputs are overwritten.
  void (*linear_backward)(const TensorView& x, const TensorView& w, const TensorView& dy, TensorView* dx,
                          TensorView& dw, TensorView* db);

  // layernorm over the last dim D: x [rows, D], w, b [D] -> y [rows, D], mean, rstd [rows].
  void (*layernorm_forward)(const TensorView& x, const TensorView& w, const TensorView& b, float eps,
                            TensorView& y, TensorView& mean, TensorView& rstd);
  // dres [rows, D] or null: a gradient that reaches x by another path (the residual stream), added to dx in the same
  // pass: dx = LayerNorm'(dy) + dres.
  void (*layernorm_backward)(const TensorView& dy, const TensorView& x, const TensorView& w,
                             const TensorView& mean, const TensorView& rstd, const TensorView* dres, TensorView& dx,
                             TensorView& dw, TensorView& db);
  // residual add + layernorm in one pass: s = x + r, y = layernorm(s) (as layernorm_forward). x, r, s [rows, D].
  void (*add_layernorm_forward)(const TensorView& x, const TensorView& r, const TensorView& w, const TensorView& b,
                                float eps, TensorView& s, TensorView& y, TensorView& mean, TensorView& rstd);

  // gelu, exact erf form: y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), any shape.
  void (*gelu_forward)(const TensorView& x, TensorView& y);
  void (*gelu_backward)(const TensorView& x, const TensorView& dy, TensorView& dx);
  // bias + gelu: y = gelu(x + b), x [rows, N] (a product without its bias), b [N]. Backward: dx = dy gelu'(x + b)
  // and, when db is not null, db [N] = the column sums of dx (the bias gradient) from the same pass.
  void (*bias_gelu_forward)(const TensorView& x, const TensorView& b, TensorView& y);
  void (*bias_gelu_backward)(const TensorView& x, const TensorView& b, const TensorView& dy, TensorView& dx,
                             TensorView* db);

  // attention: qkv [B, N, 3D] (q, k, v blocks of D, heads of D/H contiguous inside each) -> out [B, N, D] with heads
  // merged, lse [B, H, N] the per-row log-sum-exp of the scaled scores (all that backward keeps).
  void (*attention_forward)(const TensorView& qkv, int num_heads, TensorView& out, TensorView& lse);
  void (*attention_backward)(const TensorView& qkv, const TensorView& out, const TensorView& dout,
                             const TensorView& lse, int num_heads, TensorView& dqkv);

  // masked patch MSE: pred, target [B, L, P], mask [B, L] (1 = removed) -> loss [1]. With norm_pix the target is
  // normalised per patch by its mean and unbiased variance (eps 1e-6). When no patch is masked the mean is taken
  // over all patches.
  void (*masked_mse_forward)(const TensorView& pred, const TensorView& target, const TensorView& mask,
                             bool norm_pix, TensorView& loss);
  void (*masked_mse_backward)(const TensorView& pred, const TensorView& target, const TensorView& mask,
                              bool norm_pix, const TensorView& dloss, TensorView& dpred);

  // softmax cross-entropy, mean over the batch: logits [B, C], target int32 [B] labels or float32 [B, C] soft
  // targets; label smoothing s mixes the target with the uniform distribution: (1 - s) t + s / C.
  void (*cross_entropy_forward)(const TensorView& logits, const TensorView& target, float smoothing,
                                TensorView& loss);
  void (*cross_entropy_backward)(const TensorView& logits, const TensorView& target, float smoothing,
                                 const TensorView& dloss, TensorView& dlogits);

  // batchnorm over the batch axis without affine: x [B, F]; running_mean, running_var [F] updated in training
  // (momentum, unbiased variance, as PyTorch); y [B, F], rstd [F] saved for backward.
  void (*batchnorm_forward)(const TensorView& x, TensorView& running_mean, TensorView& running_var, bool training,
                            float momentum, float eps, TensorView& y, TensorView& rstd);
  void (*batchnorm_backward)(const TensorView& dy, const TensorView& y, const TensorView& rstd, bool training,
                             TensorView& dx);

  // tokens: y[b, k] = x[b, idx[b, k]]. x [B, N, D], idx int32 [B, K], y [B, K, D].
  void (*gather_rows)(const TensorView& x, const TensorView& idx, TensorView& y);
  // dx[b, idx[b, k]] += dy[b, k], dx [B, N, D] zeroed first.
  void (*scatter_add_rows)(const TensorView& dy, const TensorView& idx, TensorView& dx);
  // y = [a, b] along the token axis. a [Ba, Na, D], b [Bb, Nb, D], Ba and Bb are B or 1 (broadcast).
  void (*cat_tokens)(const TensorView& a, const TensorView& b, TensorView& y);
  // y = x[:, start : start + len]. x [B, N, D], y [B, len, D].
  void (*slice_tokens)(const TensorView& x, int64_t start, TensorView& y);

  // elementwise. add: y = a + b where b repeats over a (b.numel divides a.numel: a bias or a position table).
  void (*add)(const TensorView& a, const TensorView& b, TensorView& y);
  // mul: y = a * b, b repeating over a as in add.
  void (*mul)(const TensorView& a, const TensorView& b, TensorView& y);
  // sum_to: y[j] = sum_i x[i * y.numel + j], the gradient of a repeated operand.
  void (*sum_to)(const TensorView& x, TensorView& y);
  // axpby: y = alpha * x + beta * y, in place on y (scale: beta = 0; accumulate: alpha = beta = 1).
  void (*axpby)(float alpha, const TensorView& x, float beta, TensorView& y);
  // sum of all elements into y [1], multiplied by scale (mean: scale = 1/numel).
  void (*sum)(const TensorView& x, float scale, TensorView& y);
  // mean over the token axis: x [B, N, D] -> y [B, D] (global average pooling), and its backward.
  void (*mean_tokens)(const TensorView& x, TensorView& y);
  void (*mean_tokens_backward)(const TensorView& dy, TensorView& dx);
  void (*fill)(TensorView& y, float value);

  // patch: images [B, C, H, W] <-> patches [B, L, P], L = (H/p)(W/p) row-major over the patch grid. hwc: each patch
  // as (row, col, channel), channel fastest (the official patchify); otherwise (channel, row, col), the order of
  // the patch-embedding conv weight.
  void (*patchify)(const TensorView& imgs, int p, bool hwc, TensorView& x);
  void (*unpatchify)(const TensorView& x, int p, bool hwc, TensorView& imgs);

  // adamw over many tensors in one call, in place (PyTorch AdamW, step t):
  //   p -= lr * wd * p; m, v moments; p -= lr * m_hat / (sqrt(v_hat) + eps)
  // tensors[i] holds one parameter with its gradient and fp32 moments (one shape) and its own lr and weight decay
  // (its parameter group's); one call updates the whole model.
  void (*adamw_step)(const AdamWTensor* tensors, int64_t count, float beta1, float beta2, float eps, int64_t step);
};

// The CPU table, always available.
const Ops& cpu_ops();

// Threads used by CPU kernels and the BLAS.
void set_num_threads(int n);
int get_num_threads();

}  // namespace mae
