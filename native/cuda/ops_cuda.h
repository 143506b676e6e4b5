// Declarations of the CUDA ops (one .cu file per op family in native/cuda/), collected into the per-device op
// tables by ops_table.cu. Signatures are those of mae::Ops; the device comes from the views.
#pragma once
#include "../core/ops.h"

namespace mae::cuda {

// gemm.cu
void linear_forward(const TensorView& x, const TensorView& w, const TensorView* b, TensorView& y);
void linear_backward(const TensorView& x, const TensorView& w, const TensorView& dy, TensorView* dx, TensorView& dw,
                     TensorView* db);

// layernorm.cu
void layernorm_forward(const TensorView& x, const TensorView& w, const TensorView& b, float eps, TensorView& y,
                       TensorView& mean, TensorView& rstd);
void layernorm_backward(const TensorView& dy, const TensorView& x, const TensorView& w, const TensorView& mean,
                        const TensorView& rstd, const TensorView* dres, TensorView& dx, TensorView& dw,
                        TensorView& db);
void add_layernorm_forward(const TensorView& x, const TensorView& r, const TensorView& w, const TensorView& b,
                           float eps, TensorView& s, TensorView& y, TensorView& mean, TensorView& rstd);

// gelu.cu
void gelu_forward(const TensorView& x, TensorView& y);
void gelu_backward(const TensorView& x, const TensorView& dy, TensorView& dx);
void bias_gelu_forward(const TensorView& x, const TensorView& b, TensorView& y);
void bias_gelu_backward(const TensorView& x, const TensorView& b, const TensorView& dy, TensorView& dx,
                        TensorView* db);

// attention.cu
void attention_forward(const TensorView& qkv, int num_heads, TensorView& out, TensorView& lse);
void attention_backward(const TensorView& qkv, const TensorView& out, const TensorView& dout, const TensorView& lse,
                        int num_heads, TensorView& dqkv);

// loss.cu
void masked_mse_forward(const TensorView& pred, const TensorView& target, const TensorView& mask, bool norm_pix,
                        TensorView& loss);
void masked_mse_backward(const TensorView& pred, const TensorView& target, const TensorView& mask, bool norm_pix,
                         const TensorView& dloss, TensorView& dpred);
void cross_entropy_forward(const TensorView& logits, const TensorView& target, float smoothing, TensorView& loss);
void cross_entropy_backward(const TensorView& logits, const TensorView& target, float smoothing,
                            const TensorView& dloss, TensorView& dlogits);

// batchnorm.cu
void batchnorm_forward(const TensorView& x, TensorView& running_mean, TensorView& running_var, bool training,
                       float momentum, float eps, TensorView& y, TensorView& rstd);
void batchnorm_backward(const TensorView& dy, const TensorView& y, const TensorView& rstd, bool training,
                        TensorView& dx);

// tokens.cu
void gather_rows(const TensorView& x, const TensorView& idx, TensorView& y);
void scatter_add_rows(const TensorView& dy, const TensorView& idx, TensorView& dx);
void cat_tokens(const TensorView& a, const TensorView& b, TensorView& y);
void slice_tokens(const TensorView& x, int64_t start, TensorView& y);

// elementwise.cu
void add(const TensorView& a, const TensorView& b, TensorView& y);
void mul(const TensorView& a, const TensorView& b, TensorView& y);
void sum_to(const TensorView& x, TensorView& y);
void axpby(float alpha, const TensorView& x, float beta, TensorView& y);
void sum(const TensorView& x, float scale, TensorView& y);
void mean_tokens(const TensorView& x, TensorView& y);
void mean_tokens_backward(const TensorView& dy, TensorView& dx);
void fill(TensorView& y, float value);

// patch.cu
void patchify(const TensorView& imgs, int p, bool hwc, TensorView& x);
void unpatchify(const TensorView& x, int p, bool hwc, TensorView& imgs);

// adamw.cu
void adamw_step(const AdamWTensor* tensors, int64_t count, float beta1, float beta2, float eps, int64_t step);

}  // namespace mae::cuda
