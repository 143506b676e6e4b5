// The op entry points: check arguments (bindings/check.h), allocate outputs on the inputs' device, call the
// device's op table (native/core/ops.h). Forward entries return their output (or [output, saved...]); backward
// entries return the input gradients. Names match lib/ops/*.ts, which registers each gradient once.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../native/cpu/cpu.h"
#include "check.h"

namespace mae {

namespace {

using Obj = Napi::Object;
using Shape = std::vector<int64_t>;

Napi::Array list(Napi::Env env, std::initializer_list<Napi::Value> vs) {
  Napi::Array a = Napi::Array::New(env, vs.size());
  uint32_t i = 0;
  for (const Napi::Value& v : vs) a.Set(i++, v);
  return a;
}

Shape with_last(const Shape& s, int64_t last) {
  Shape r = s;
  r.back() = last;
  return r;
}

Shape without_last(const Shape& s) { return Shape(s.begin(), s.end() - 1); }

// Output dtypes (mixed precision): activation outputs and activation gradients take the dtype of the op's main
// activation input, so bfloat16 activations stay bfloat16 end to end (on the CPU only activations may be bfloat16:
// Args::act).
// Statistics (LayerNorm mean/rstd, BatchNorm rstd, attention lse), losses, sums and gradients of parameters (dW, db,
// LayerNorm dweight/dbias: the parameter's own dtype, float32 master weights) stay float32. The CUDA kernels read
// and write every argument in its own dtype with fp32 arithmetic, so any mix is valid.
DType act(const JsTensor* x) { return x->dtype() == DType::BF16 ? DType::BF16 : DType::F32; }
DType act(const JsTensor* x, const JsTensor* y) { return act(x) == DType::BF16 || act(y) == DType::BF16 ? DType::BF16 : DType::F32; }

void expect_same_shape(const Args& a, const JsTensor* x, const std::string& xn, const JsTensor* y, const std::string& yn) {
  a.expect(x->shape() == y->shape(), xn + " " + shape_str(x->shape()) + " and " + yn + " " +
                                         shape_str(y->shape()) + " must have the same shape");
}

// ---- gemm ------------------------------------------------------------------------------------------------------

// before an op writes t in place: a blocked copy of t as a bf16 weight shadow (native/cpu/blocked.cpp, made for the
// shadows AdamW writes) would no longer hold t's values
void forget_blocked(const JsTensor* t) {
  if (t->device().type == DeviceType::CPU) cpu::blocked_weights_forget(t->view().data);
}

// argument i: an optional bfloat16 copy of `w` (a weight shadow kept by AdamW) for the products to read instead of
// converting w; it must match w's shape and device
JsTensor* weight_shadow(const Args& a, size_t i, const JsTensor* w) {
  JsTensor* s = a.optional_tensor(i, "weightBf16", DType::BF16, 2);
  if (s) {
    a.expect(s->shape() == w->shape(), "weightBf16 " + shape_str(s->shape()) + " must have the shape of weight " + shape_str(w->shape()));
    a.same_device({w, s});
  }
  return s;
}

// linear(x [..., K], weight [N, K], bias [N] | null, weightBf16?) -> y [..., N]
Napi::Value linear(const Args& a) {
  JsTensor *x = a.act(0, "x"), *w = a.tensor(1, "weight", DType::F32, 2), *b = a.optional_tensor(2, "bias", DType::F32, 1);
  const Ops& ops = a.same_device({x, w, b});
  a.expect(x->shape().back() == w->shape()[1], "x " + shape_str(x->shape()) + " and weight " +
                                                   shape_str(w->shape()) + " disagree on in_features");
  if (b) a.expect(b->shape()[0] == w->shape()[0], "bias " + shape_str(b->shape()) + " must be [out_features] for weight " + shape_str(w->shape()));
  const JsTensor* ws = weight_shadow(a, 3, w);
  Obj y = a.make(x, with_last(x->shape(), w->shape()[0]), act(x));
  TensorView yv = view(y), bv = b ? b->view() : TensorView{};
  ops.linear_forward(x->view(), (ws ? ws : w)->view(), b ? &bv : nullptr, yv);
  return y;
}

// linearBackward(x, weight, dy, needDx, hasBias, weightBf16?) -> [dx | null, dweight, dbias | null]; dweight and
// dbias in weight's dtype
Napi::Value linear_backward(const Args& a) {
  JsTensor *x = a.act(0, "x"), *w = a.tensor(1, "weight", DType::F32, 2), *dy = a.act(2, "dy");
  const bool need_dx = a.boolean(3, "needDx"), has_bias = a.boolean(4, "hasBias");
  const Ops& ops = a.same_device({x, w, dy});
  const JsTensor* ws = weight_shadow(a, 5, w);
  a.expect(x->shape().back() == w->shape()[1], "x " + shape_str(x->shape()) + " and weight " + shape_str(w->shape()) + " disagree on in_features");
  a.expect(dy->shape() == with_last(x->shape(), w->shape()[0]), "dy " + shape_str(dy->shape()) + " does not match the output of x " + shape_str(x->shape()) + " and weight " + shape_str(w->shape()));
  Obj dw = a.make(x, w->shape(), w->dtype());
  Napi::Value dx = a.env().Null(), db = a.env().Null();
  TensorView dxv, dbv, dwv = view(dw);
  if (need_dx) {
    Obj o = a.make(x, x->shape(), act(x));
    dxv = view(o);
    dx = o;
  }
  if (has_bias) {
    Obj o = a.make(x, {w->shape()[0]}, w->dtype());
    dbv = view(o);
    db = o;
  }
  ops.linear_backward(x->view(), (ws ? ws : w)->view(), dy->view(), need_dx ? &dxv : nullptr, dwv, has_bias ? &dbv : nullptr);
  return list(a.env(), {dx, dw, db});
}

// ---- layernorm -------------------------------------------------------------------------------------------------

// the [rows] shape of LayerNorm statistics for x [..., D], after checking weight and bias [D]
Shape check_layer_norm(const Args& a, const JsTensor* x, const JsTensor* w, const JsTensor* b) {
  const int64_t D = x->shape().back();
  a.expect(w->shape()[0] == D && b->shape()[0] == D, "weight " + shape_str(w->shape()) + " and bias " + shape_str(b->shape()) + " must be [" + std::to_string(D) + "] for x " + shape_str(x->shape()));
  Shape rows = without_last(x->shape());
  if (rows.empty()) rows = {1};
  return rows;
}

// layerNorm(x [..., D], weight [D], bias [D], eps) -> [y, mean [...], rstd [...]]
Napi::Value layer_norm(const Args& a) {
  JsTensor *x = a.act(0, "x"), *w = a.tensor(1, "weight", DType::F32, 1), *b = a.tensor(2, "bias", DType::F32, 1);
  const double eps = a.number(3, "eps");
  a.expect(eps >= 0 && std::isfinite((float)eps), "eps must be non-negative and finite in float32, got " + a.js(eps));
  const Ops& ops = a.same_device({x, w, b});
  const Shape rows = check_layer_norm(a, x, w, b);
  Obj y = a.make(x, x->shape(), act(x)), mean = a.make(x, rows), rstd = a.make(x, rows);
  TensorView yv = view(y), mv = view(mean), rv = view(rstd);
  ops.layernorm_forward(x->view(), w->view(), b->view(), (float)eps, yv, mv, rv);
  return list(a.env(), {y, mean, rstd});
}

// addLayerNorm(x [..., D], r [..., D], weight [D], bias [D], eps) -> [s = x + r, layerNorm(s), mean, rstd]
Napi::Value add_layer_norm(const Args& a) {
  JsTensor *x = a.act(0, "x"), *r = a.act(1, "r"), *w = a.tensor(2, "weight", DType::F32, 1),
           *b = a.tensor(3, "bias", DType::F32, 1);
  const double eps = a.number(4, "eps");
  a.expect(eps >= 0 && std::isfinite((float)eps), "eps must be non-negative and finite in float32, got " + a.js(eps));
  const Ops& ops = a.same_device({x, r, w, b});
  expect_same_shape(a, x, "x", r, "r");
  const Shape rows = check_layer_norm(a, x, w, b);
  Obj s = a.make(x, x->shape(), act(x, r)), y = a.make(x, x->shape(), act(x, r)), mean = a.make(x, rows),
      rstd = a.make(x, rows);
  TensorView sv = view(s), yv = view(y), mv = view(mean), rv = view(rstd);
  ops.add_layernorm_forward(x->view(), r->view(), w->view(), b->view(), (float)eps, sv, yv, mv, rv);
  return list(a.env(), {s, y, mean, rstd});
}

// layerNormBackward(dy, x, weight, mean, rstd, dres?) -> [dx, dweight, dbias]; dres (x's shape): a gradient of x
// from another path, added to dx
Napi::Value layer_norm_backward(const Args& a) {
  JsTensor *dy = a.act(0, "dy"), *x = a.act(1, "x"), *w = a.tensor(2, "weight", DType::F32, 1),
           *mean = a.tensor(3, "mean"), *rstd = a.tensor(4, "rstd"), *dres = a.optional_act(5, "dres");
  const Ops& ops = a.same_device({dy, x, w, mean, rstd, dres});
  expect_same_shape(a, dy, "dy", x, "x");
  if (dres) expect_same_shape(a, dres, "dres", x, "x");
  const int64_t D = x->shape().back(), R = shape_numel(x->shape()) / D;
  a.expect(w->shape()[0] == D, "weight " + shape_str(w->shape()) + " must be [" + std::to_string(D) + "]");
  a.expect(shape_numel(mean->shape()) == R && shape_numel(rstd->shape()) == R, "mean and rstd must hold one value per row of x " + shape_str(x->shape()));
  Obj dx = a.make(x, x->shape(), act(x)), dw = a.make(x, {D}, w->dtype()), db = a.make(x, {D}, w->dtype());
  TensorView dxv = view(dx), dwv = view(dw), dbv = view(db), rv = dres ? dres->view() : TensorView{};
  ops.layernorm_backward(dy->view(), x->view(), w->view(), mean->view(), rstd->view(), dres ? &rv : nullptr, dxv, dwv, dbv);
  return list(a.env(), {dx, dw, db});
}

// ---- gelu ------------------------------------------------------------------------------------------------------

Napi::Value gelu(const Args& a) {
  JsTensor* x = a.act(0, "x");
  const Ops& ops = a.same_device({x});
  Obj y = a.make(x, x->shape(), act(x));
  TensorView yv = view(y);
  ops.gelu_forward(x->view(), yv);
  return y;
}

Napi::Value gelu_backward(const Args& a) {
  JsTensor *x = a.act(0, "x"), *dy = a.act(1, "dy");
  const Ops& ops = a.same_device({x, dy});
  expect_same_shape(a, x, "x", dy, "dy");
  Obj dx = a.make(x, x->shape(), act(x));
  TensorView dxv = view(dx);
  ops.gelu_backward(x->view(), dy->view(), dxv);
  return dx;
}

void check_bias_gelu(const Args& a, const JsTensor* x, const JsTensor* b) {
  a.expect(b->shape()[0] == x->shape().back(), "bias " + shape_str(b->shape()) + " must be [" + std::to_string(x->shape().back()) + "] for x " + shape_str(x->shape()));
}

// biasGelu(x [..., N], bias [N]) -> gelu(x + bias)
Napi::Value bias_gelu(const Args& a) {
  JsTensor *x = a.act(0, "x"), *b = a.tensor(1, "bias", DType::F32, 1);
  const Ops& ops = a.same_device({x, b});
  check_bias_gelu(a, x, b);
  Obj y = a.make(x, x->shape(), act(x));
  TensorView yv = view(y);
  ops.bias_gelu_forward(x->view(), b->view(), yv);
  return y;
}

// biasGeluBackward(x, bias, dy, needDb) -> [dx, dbias | null]; dbias in bias's dtype
Napi::Value bias_gelu_backward(const Args& a) {
  JsTensor *x = a.act(0, "x"), *b = a.tensor(1, "bias", DType::F32, 1), *dy = a.act(2, "dy");
  const bool need_db = a.boolean(3, "needDb");
  const Ops& ops = a.same_device({x, b, dy});
  check_bias_gelu(a, x, b);
  expect_same_shape(a, x, "x", dy, "dy");
  Obj dx = a.make(x, x->shape(), act(x));
  Napi::Value db = a.env().Null();
  TensorView dxv = view(dx), dbv;
  if (need_db) {
    Obj o = a.make(x, b->shape(), b->dtype());
    dbv = view(o);
    db = o;
  }
  ops.bias_gelu_backward(x->view(), b->view(), dy->view(), dxv, need_db ? &dbv : nullptr);
  return list(a.env(), {dx, db});
}

// ---- attention -------------------------------------------------------------------------------------------------

int64_t check_qkv(const Args& a, const JsTensor* qkv, int64_t heads) {
  const Shape& s = qkv->shape();
  a.expect(s[2] % 3 == 0, "qkv " + shape_str(s) + ": the last dimension must be 3 * dim");
  const int64_t D = s[2] / 3;
  a.expect(D % heads == 0, "qkv " + shape_str(s) + ": dim " + std::to_string(D) + " is not divisible by num_heads " + std::to_string(heads));
  return D;
}

// attention(qkv [B, N, 3D], numHeads) -> [out [B, N, D], lse [B, H, N]]
Napi::Value attention(const Args& a) {
  JsTensor* qkv = a.act(0, "qkv", 3);
  const int64_t H = a.integer(1, "numHeads", 1);
  const Ops& ops = a.same_device({qkv});
  const int64_t D = check_qkv(a, qkv, H), B = qkv->shape()[0], N = qkv->shape()[1];
  Obj out = a.make(qkv, {B, N, D}, act(qkv)), lse = a.make(qkv, {B, H, N});
  TensorView ov = view(out), lv = view(lse);
  ops.attention_forward(qkv->view(), (int)H, ov, lv);
  return list(a.env(), {out, lse});
}

// attentionBackward(qkv, out, dout, lse, numHeads) -> dqkv
Napi::Value attention_backward(const Args& a) {
  JsTensor *qkv = a.act(0, "qkv", 3), *out = a.act(1, "out", 3), *dout = a.act(2, "dout", 3), *lse = a.tensor(3, "lse", DType::F32, 3);
  const int64_t H = a.integer(4, "numHeads", 1);
  const Ops& ops = a.same_device({qkv, out, dout, lse});
  const int64_t D = check_qkv(a, qkv, H), B = qkv->shape()[0], N = qkv->shape()[1];
  a.expect(out->shape() == Shape{B, N, D}, "out " + shape_str(out->shape()) + " must be [B, N, D] for qkv " + shape_str(qkv->shape()));
  expect_same_shape(a, dout, "dout", out, "out");
  a.expect(lse->shape() == Shape{B, H, N}, "lse " + shape_str(lse->shape()) + " must be [B, numHeads, N]");
  Obj dqkv = a.make(qkv, qkv->shape(), act(qkv));
  TensorView dv = view(dqkv);
  ops.attention_backward(qkv->view(), out->view(), dout->view(), lse->view(), (int)H, dv);
  return dqkv;
}

// ---- losses ----------------------------------------------------------------------------------------------------

void check_mse(const Args& a, const JsTensor* pred, const JsTensor* target, const JsTensor* mask, bool norm_pix) {
  expect_same_shape(a, pred, "pred", target, "target");
  const Shape& s = pred->shape();
  a.expect(mask->shape() == Shape{s[0], s[1]}, "mask " + shape_str(mask->shape()) + " must be [B, L] for pred " + shape_str(s));
  if (norm_pix) a.expect(s[2] >= 2, "normPixLoss needs at least 2 values per patch, pred is " + shape_str(s));
}

// maskedMse(pred [B, L, P], target [B, L, P], mask [B, L], normPix) -> loss [1]
Napi::Value masked_mse(const Args& a) {
  JsTensor *pred = a.act(0, "pred", 3), *target = a.act(1, "target", 3),
           *mask = a.tensor(2, "mask", DType::F32, 2);
  const bool norm_pix = a.boolean(3, "normPix");
  const Ops& ops = a.same_device({pred, target, mask});
  check_mse(a, pred, target, mask, norm_pix);
  Obj loss = a.make(pred, {1});
  TensorView lv = view(loss);
  ops.masked_mse_forward(pred->view(), target->view(), mask->view(), norm_pix, lv);
  return loss;
}

Napi::Value masked_mse_backward(const Args& a) {
  JsTensor *pred = a.act(0, "pred", 3), *target = a.act(1, "target", 3),
           *mask = a.tensor(2, "mask", DType::F32, 2);
  const bool norm_pix = a.boolean(3, "normPix");
  JsTensor* dloss = a.tensor(4, "dloss");
  const Ops& ops = a.same_device({pred, target, mask, dloss});
  check_mse(a, pred, target, mask, norm_pix);
  a.expect(shape_numel(dloss->shape()) == 1, "dloss must hold one value");
  Obj dpred = a.make(pred, pred->shape(), act(pred));
  TensorView dv = view(dpred);
  ops.masked_mse_backward(pred->view(), target->view(), mask->view(), norm_pix, dloss->view(), dv);
  return dpred;
}

JsTensor* ce_target(const Args& a, size_t i, const JsTensor* logits) {
  const JsTensor* given = i < a.info.Length() && JsTensor::IsTensor(a.info[i]) ? JsTensor::Unwrap(a.info[i]) : nullptr;
  if (given && given->dtype() == DType::I32) {
    JsTensor* t = a.tensor(i, "target", DType::I32, 1);
    a.expect(t->shape()[0] == logits->shape()[0], "labels " + shape_str(t->shape()) + " must be [B] for logits " + shape_str(logits->shape()));
    return t;
  }
  JsTensor* t = a.act(i, "target", 2);
  expect_same_shape(a, t, "soft target", logits, "logits");
  return t;
}

// crossEntropy(logits [B, C], target int32 [B] | float32 [B, C], smoothing) -> loss [1]
Napi::Value cross_entropy(const Args& a) {
  JsTensor* logits = a.act(0, "logits", 2);
  JsTensor* target = ce_target(a, 1, logits);
  const double s = a.number(2, "smoothing");
  a.expect(s >= 0 && s < 1, "smoothing must be in [0, 1)");
  const Ops& ops = a.same_device({logits, target});
  Obj loss = a.make(logits, {1});
  TensorView lv = view(loss);
  ops.cross_entropy_forward(logits->view(), target->view(), (float)s, lv);
  return loss;
}

Napi::Value cross_entropy_backward(const Args& a) {
  JsTensor* logits = a.act(0, "logits", 2);
  JsTensor* target = ce_target(a, 1, logits);
  const double s = a.number(2, "smoothing");
  a.expect(s >= 0 && s < 1, "smoothing must be in [0, 1)");
  JsTensor* dloss = a.tensor(3, "dloss");
  a.expect(shape_numel(dloss->shape()) == 1, "dloss must hold one value");
  const Ops& ops = a.same_device({logits, target, dloss});
  Obj d = a.make(logits, logits->shape(), act(logits));
  TensorView dv = view(d);
  ops.cross_entropy_backward(logits->view(), target->view(), (float)s, dloss->view(), dv);
  return d;
}

// ---- batchnorm -------------------------------------------------------------------------------------------------

// batchNorm(x [B, F], runningMean [F], runningVar [F], training, momentum, eps) -> [y, rstd]
Napi::Value batch_norm(const Args& a) {
  JsTensor *x = a.act(0, "x", 2), *rm = a.tensor(1, "runningMean", DType::F32, 1),
           *rv = a.tensor(2, "runningVar", DType::F32, 1);
  const bool training = a.boolean(3, "training");
  const double momentum = a.number(4, "momentum"), eps = a.number(5, "eps");
  a.expect(momentum >= 0 && momentum <= 1, "momentum must be in [0, 1], got " + a.js(momentum));
  a.expect(eps >= 0 && std::isfinite((float)eps), "eps must be non-negative and finite in float32, got " + a.js(eps));
  const Ops& ops = a.same_device({x, rm, rv});
  const int64_t F = x->shape()[1];
  a.expect(rm->shape()[0] == F && rv->shape()[0] == F, "running statistics must be [" + std::to_string(F) + "] for x " + shape_str(x->shape()));
  a.expect(!training || x->shape()[0] > 1, "training needs more than one value per feature, x is " + shape_str(x->shape()));
  Obj y = a.make(x, x->shape(), act(x)), rstd = a.make(x, {F});
  TensorView yv = view(y), sv = view(rstd), rmv = rm->view(), rvv = rv->view();
  ops.batchnorm_forward(x->view(), rmv, rvv, training, (float)momentum, (float)eps, yv, sv);
  return list(a.env(), {y, rstd});
}

Napi::Value batch_norm_backward(const Args& a) {
  JsTensor *dy = a.act(0, "dy", 2), *y = a.act(1, "y", 2), *rstd = a.tensor(2, "rstd", DType::F32, 1);
  const bool training = a.boolean(3, "training");
  const Ops& ops = a.same_device({dy, y, rstd});
  expect_same_shape(a, dy, "dy", y, "y");
  a.expect(rstd->shape()[0] == y->shape()[1], "rstd " + shape_str(rstd->shape()) + " must be [F] for y " + shape_str(y->shape()));
  Obj dx = a.make(y, y->shape(), act(dy));
  TensorView dv = view(dx);
  ops.batchnorm_backward(dy->view(), y->view(), rstd->view(), training, dv);
  return dx;
}

// ---- tokens ----------------------------------------------------------------------------------------------------

// gatherRows(x [B, N, D], idx int32 [B, K]) -> [B, K, D]
Napi::Value gather_rows(const Args& a) {
  JsTensor *x = a.act(0, "x", 3), *idx = a.tensor(1, "index", DType::I32, 2);
  const Ops& ops = a.same_device({x, idx});
  a.expect(idx->shape()[0] == x->shape()[0], "index " + shape_str(idx->shape()) + " and x " + shape_str(x->shape()) + " disagree on the batch size");
  Obj y = a.make(x, {x->shape()[0], idx->shape()[1], x->shape()[2]}, act(x));
  TensorView yv = view(y);
  ops.gather_rows(x->view(), idx->view(), yv);
  return y;
}

// scatterAddRows(dy [B, K, D], idx int32 [B, K], n) -> [B, n, D]
Napi::Value scatter_add_rows(const Args& a) {
  JsTensor *dy = a.act(0, "dy", 3), *idx = a.tensor(1, "index", DType::I32, 2);
  const int64_t n = a.integer(2, "n", 1);
  const Ops& ops = a.same_device({dy, idx});
  a.expect(idx->shape()[0] == dy->shape()[0] && idx->shape()[1] == dy->shape()[1], "index " + shape_str(idx->shape()) + " must be [B, K] for dy " + shape_str(dy->shape()));
  Obj dx = a.make(dy, {dy->shape()[0], n, dy->shape()[2]}, act(dy));
  TensorView dv = view(dx);
  ops.scatter_add_rows(dy->view(), idx->view(), dv);
  return dx;
}

// catTokens(a [Ba, Na, D], b [Bb, Nb, D]) -> [B, Na + Nb, D]; a batch of 1 broadcasts
Napi::Value cat_tokens(const Args& a) {
  JsTensor *x = a.act(0, "a", 3), *y = a.act(1, "b", 3);
  const Ops& ops = a.same_device({x, y});
  const Shape &sa = x->shape(), &sb = y->shape();
  a.expect(sa[2] == sb[2], "a " + shape_str(sa) + " and b " + shape_str(sb) + " disagree on the width");
  a.expect(sa[0] == sb[0] || sa[0] == 1 || sb[0] == 1, "a " + shape_str(sa) + " and b " + shape_str(sb) + " have batch sizes that do not broadcast");
  Obj out = a.make(x, {std::max(sa[0], sb[0]), sa[1] + sb[1], sa[2]}, act(x, y));
  TensorView ov = view(out);
  ops.cat_tokens(x->view(), y->view(), ov);
  return out;
}

// sliceTokens(x [B, N, D], start, len) -> [B, len, D]
Napi::Value slice_tokens(const Args& a) {
  JsTensor* x = a.act(0, "x", 3);
  const int64_t start = a.integer(1, "start", 0), len = a.integer(2, "length", 1);
  const Ops& ops = a.same_device({x});
  a.expect(start + len <= x->shape()[1], "tokens " + std::to_string(start) + " .. " + std::to_string(start + len) + " are outside x " + shape_str(x->shape()));
  Obj y = a.make(x, {x->shape()[0], len, x->shape()[2]}, act(x));
  TensorView yv = view(y);
  ops.slice_tokens(x->view(), start, yv);
  return y;
}

// ---- elementwise -----------------------------------------------------------------------------------------------

// b repeats over a when b's shape, without leading ones, is a suffix of a's shape
bool repeats_over(const Shape& sb, const Shape& sa) {
  size_t k = 0;
  while (k < sb.size() && sb[k] == 1) k++;
  bool ok = sb.size() - k <= sa.size();
  for (size_t i = k; ok && i < sb.size(); i++) ok = sb[i] == sa[sa.size() - (sb.size() - i)];
  return ok;
}

void check_repeat(const Args& a, const JsTensor* x, const JsTensor* b) {
  a.expect(repeats_over(b->shape(), x->shape()), "b " + shape_str(b->shape()) + " does not broadcast over a " + shape_str(x->shape()));
}

template <void (*Ops::*Fn)(const TensorView&, const TensorView&, TensorView&)>
Napi::Value binary(const Args& a) {
  JsTensor *x = a.act(0, "a"), *b = a.act(1, "b");
  const Ops& ops = a.same_device({x, b});
  check_repeat(a, x, b);
  Obj y = a.make(x, x->shape(), act(x, b));
  TensorView yv = view(y);
  (ops.*Fn)(x->view(), b->view(), yv);
  return y;
}

// sumTo(x, shape) -> y of `shape`, summing the repeats of a broadcast operand
Napi::Value sum_to(const Args& a) {
  JsTensor* x = a.act(0, "x");
  Shape s = a.shape(1, "shape");
  const Ops& ops = a.same_device({x});
  a.expect(shape_numel(s) > 0 && repeats_over(s, x->shape()),
           "cannot sum x " + shape_str(x->shape()) + " to " + shape_str(s) + ": " + shape_str(s) +
               " without its leading ones must be a suffix of x's shape");
  // float32: the result is the gradient of a repeated operand (a bias, a position table, a token), summed in fp32
  Obj y = a.make(x, s);
  TensorView yv = view(y);
  ops.sum_to(x->view(), yv);
  return y;
}

// axpby(alpha, x, beta, y): y = alpha x + beta y in place
Napi::Value axpby(const Args& a) {
  const double alpha = a.number(0, "alpha");
  JsTensor* x = a.act(1, "x");
  const double beta = a.number(2, "beta");
  JsTensor* y = a.act(3, "y");
  const Ops& ops = a.same_device({x, y});
  a.expect(shape_numel(x->shape()) == shape_numel(y->shape()), "x " + shape_str(x->shape()) + " and y " + shape_str(y->shape()) + " differ in size");
  TensorView yv = y->view();
  forget_blocked(y);
  ops.axpby((float)alpha, x->view(), (float)beta, yv);
  return a.env().Undefined();
}

// sum(x, scale) -> [1]
Napi::Value sum(const Args& a) {
  JsTensor* x = a.act(0, "x");
  const double scale = a.number(1, "scale");
  const Ops& ops = a.same_device({x});
  Obj y = a.make(x, {1});
  TensorView yv = view(y);
  ops.sum(x->view(), (float)scale, yv);
  return y;
}

// meanTokens(x [B, N, D]) -> [B, D]
Napi::Value mean_tokens(const Args& a) {
  JsTensor* x = a.act(0, "x", 3);
  const Ops& ops = a.same_device({x});
  Obj y = a.make(x, {x->shape()[0], x->shape()[2]}, act(x));
  TensorView yv = view(y);
  ops.mean_tokens(x->view(), yv);
  return y;
}

// meanTokensBackward(dy [B, D], n) -> [B, n, D]
Napi::Value mean_tokens_backward(const Args& a) {
  JsTensor* dy = a.act(0, "dy", 2);
  const int64_t n = a.integer(1, "n", 1);
  const Ops& ops = a.same_device({dy});
  Obj dx = a.make(dy, {dy->shape()[0], n, dy->shape()[1]}, act(dy));
  TensorView dv = view(dx);
  ops.mean_tokens_backward(dy->view(), dv);
  return dx;
}

// fill(y, value) in place
Napi::Value fill(const Args& a) {
  JsTensor* y = a.act(0, "y");
  const double v = a.number(1, "value");
  const Ops& ops = a.same_device({y});
  TensorView yv = y->view();
  forget_blocked(y);
  ops.fill(yv, (float)v);
  return a.env().Undefined();
}

// ---- patch -----------------------------------------------------------------------------------------------------

// patchify(imgs [B, C, H, W], p, hwc) -> [B, L, p*p*C]
Napi::Value patchify(const Args& a) {
  JsTensor* imgs = a.act(0, "imgs", 4);
  const int64_t p = a.integer(1, "patchSize", 1);
  const bool hwc = a.boolean(2, "hwc");
  const Ops& ops = a.same_device({imgs});
  const Shape& s = imgs->shape();
  a.expect(s[2] % p == 0 && s[3] % p == 0, "image size " + std::to_string(s[2]) + "x" + std::to_string(s[3]) + " of imgs " + shape_str(s) + " is not divisible by the patch size " + std::to_string(p));
  Obj x = a.make(imgs, {s[0], (s[2] / p) * (s[3] / p), p * p * s[1]}, act(imgs));
  TensorView xv = view(x);
  ops.patchify(imgs->view(), (int)p, hwc, xv);
  return x;
}

// unpatchify(x [B, L, p*p*C], p, hwc, [C, H, W]) -> [B, C, H, W]
Napi::Value unpatchify(const Args& a) {
  JsTensor* x = a.act(0, "x", 3);
  const int64_t p = a.integer(1, "patchSize", 1);
  const bool hwc = a.boolean(2, "hwc");
  Shape chw = a.shape(3, "imageShape");
  const Ops& ops = a.same_device({x});
  a.expect(chw.size() == 3, "imageShape must be [C, H, W]");
  const int64_t C = chw[0], H = chw[1], W = chw[2];
  a.expect(C > 0 && H % p == 0 && W % p == 0 && H > 0 && W > 0, "image shape " + shape_str(chw) + " is not divisible into patches of " + std::to_string(p));
  a.expect(x->shape()[1] == (H / p) * (W / p) && x->shape()[2] == p * p * C, "x " + shape_str(x->shape()) + " does not hold patches of images " + shape_str(chw) + " with patch size " + std::to_string(p));
  Obj imgs = a.make(x, {x->shape()[0], C, H, W}, act(x));
  TensorView iv = view(imgs);
  ops.unpatchify(x->view(), (int)p, hwc, iv);
  return imgs;
}

// ---- adamw -----------------------------------------------------------------------------------------------------

// adamwStep(params[], grads[], m[], v[], lr[], weightDecay[], beta1, beta2, eps, step, shadows?): one in-place step
// over all tensors; entry k of each list belongs to params[k]. shadows: bfloat16 tensors (or null) that receive the
// new parameters rounded to bfloat16.
Napi::Value adamw_step(const Args& a) {
  const std::vector<JsTensor*> ps = a.tensor_list(0, "params"), gs = a.tensor_list(1, "grads"),
                               ms = a.tensor_list(2, "m"), vs = a.tensor_list(3, "v");
  std::vector<JsTensor*> shadows(ps.size(), nullptr);
  if (a.info.Length() > 10 && !a.info[10].IsUndefined()) {
    if (!a.info[10].IsArray()) a.fail("shadows must be an array of Tensors or nulls");
    Napi::Array arr = a.info[10].As<Napi::Array>();
    a.expect(arr.Length() == ps.size(), "shadows must have one entry per parameter, got " + std::to_string(arr.Length()) + " for " + std::to_string(ps.size()));
    for (uint32_t k = 0; k < arr.Length(); k++) {
      Napi::Value v = arr.Get(k);
      if (!v.IsNull() && !v.IsUndefined()) shadows[k] = a.tensor_value(v, "shadows[" + std::to_string(k) + "]", DType::BF16, -1);
    }
  }
  const std::vector<double> lrs = a.number_list(4, "lr"), wds = a.number_list(5, "weightDecay");
  const double b1 = a.number(6, "beta1"), b2 = a.number(7, "beta2"), eps = a.number(8, "eps");
  const int64_t step = a.integer(9, "step", 1);
  const size_t n = ps.size();
  a.expect(n > 0, "params is empty");
  a.expect(gs.size() == n && ms.size() == n && vs.size() == n && lrs.size() == n && wds.size() == n,
           "params, grads, m, v, lr and weightDecay must have one entry per parameter, got " + std::to_string(n) +
               ", " + std::to_string(gs.size()) + ", " + std::to_string(ms.size()) + ", " +
               std::to_string(vs.size()) + ", " + std::to_string(lrs.size()) + " and " + std::to_string(wds.size()));
  // the step runs in float32, where a beta within 2^-25 of 1 rounds to 1: its bias correction 1 - beta^t would be 0
  // and every parameter NaN
  a.expect(b1 >= 0 && (float)b1 < 1 && b2 >= 0 && (float)b2 < 1,
           "betas must be in [0, 1) in float32 (at most 0.99999994), got " + a.js(b1) +
               " and " + a.js(b2));
  a.expect(eps >= 0 && std::isfinite((float)eps), "eps must be non-negative and finite in float32, got " + a.js(eps));
  std::vector<AdamWTensor> ts;
  std::vector<const void*> written;  // every buffer the step writes, to refuse one given twice
  for (size_t k = 0; k < n; k++) {
    const std::string at = "[" + std::to_string(k) + "]";
    a.same_device({ps[0], ps[k], gs[k], ms[k], vs[k]});
    expect_same_shape(a, gs[k], "grads" + at, ps[k], "params" + at);
    expect_same_shape(a, ms[k], "m" + at, ps[k], "params" + at);
    expect_same_shape(a, vs[k], "v" + at, ps[k], "params" + at);
    // finite in float32, where the step runs (1e39 is infinite there)
    a.expect(std::isfinite((float)lrs[k]) && lrs[k] >= 0, "lr" + at + " must be a non-negative number of float32's range, got " + a.js(lrs[k]));
    a.expect(std::isfinite((float)wds[k]), "weightDecay" + at + " must be finite in float32, got " + a.js(wds[k]));
    TensorView sv;
    if (shadows[k]) {
      a.same_device({ps[k], shadows[k]});
      expect_same_shape(a, shadows[k], "shadows" + at, ps[k], "params" + at);
      sv = shadows[k]->view();
      written.push_back(sv.data);
    }
    ts.push_back({ps[k]->view(), gs[k]->view(), ms[k]->view(), vs[k]->view(), sv, (float)lrs[k], (float)wds[k]});
    for (const JsTensor* t : {ps[k], ms[k], vs[k]}) written.push_back(t->view().data);
  }
  std::sort(written.begin(), written.end());
  a.expect(std::adjacent_find(written.begin(), written.end()) == written.end(),
           "a tensor appears twice among params, m and v (or shadows): each is updated in place once");
  ps[0]->ops().adamw_step(ts.data(), (int64_t)n, (float)b1, (float)b2, (float)eps, step);
  return a.env().Undefined();
}

// ---- augment ---------------------------------------------------------------------------------------------------

// The data pointer and element count of typed array argument i, which must be of type `type`; for
// SharedArrayBuffer-backed arrays too (napi_get_typedarray_info gives their data directly).
void* typed_array(const Args& a, size_t i, napi_typedarray_type type, const char* name, const char* what, size_t& length) {
  if (i >= a.info.Length() || !a.info[i].IsTypedArray()) a.fail(std::string(name) + " must be a " + what);
  napi_typedarray_type t;
  void* data = nullptr;
  napi_status st = napi_get_typedarray_info(a.env(), a.info[i], &t, &length, &data, nullptr, nullptr);
  if (st != napi_ok || t != type) a.fail(std::string(name) + " must be a " + what);
  return data;
}

// argument i: an array of exactly n integers in [min, max]
std::vector<int64_t> int_list(const Args& a, size_t i, const char* name, size_t n, int64_t min, int64_t max) {
  const std::vector<double> xs = a.number_list(i, name);
  if (xs.size() != n) a.fail(std::string(name) + " must hold " + std::to_string(n) + " integers, got " + std::to_string(xs.size()));
  std::vector<int64_t> r;
  for (size_t k = 0; k < n; k++) {
    if (!(xs[k] >= (double)min && xs[k] <= (double)max && xs[k] == std::floor(xs[k])))
      a.fail(std::string(name) + "[" + std::to_string(k) + "] must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " + a.js(xs[k]));
    r.push_back((int64_t)xs[k]);
  }
  return r;
}

// resizedCrop(src uint8 [H, W, C], [H, W, C], box [top, left, cropH, cropW], [outH, outW], window [y0, x0, winH, winW],
//             flip, antialias, mean [outC], std [outC], out Float32Array | Uint16Array (bfloat16), outOffset)
// writes out[outOffset ...] = [outC, winH, winW] (native/cpu/augment.cpp); synchronous, single-threaded.
Napi::Value resized_crop(const Args& a) {
  constexpr int64_t kMaxSide = 1 << 16;
  size_t src_len = 0, out_len = 0;
  const uint8_t* src = static_cast<const uint8_t*>(typed_array(a, 0, napi_uint8_array, "src", "Uint8Array", src_len));
  const std::vector<int64_t> hwc = int_list(a, 1, "shape", 3, 1, kMaxSide);
  const int64_t H = hwc[0], W = hwc[1], C = hwc[2];
  a.expect(C <= 4, "shape [" + std::to_string(H) + ", " + std::to_string(W) + ", " + std::to_string(C) + "]: 1 to 4 channels");
  a.expect((int64_t)src_len == H * W * C, "src has " + std::to_string(src_len) + " bytes, expected H x W x C = " + std::to_string(H) + " x " + std::to_string(W) + " x " + std::to_string(C) + " = " + std::to_string(H * W * C));
  const std::vector<int64_t> box = int_list(a, 2, "box", 4, 0, kMaxSide);
  a.expect(box[2] >= 1 && box[3] >= 1 && box[0] + box[2] <= H && box[1] + box[3] <= W,
           "box top=" + std::to_string(box[0]) + " left=" + std::to_string(box[1]) + " " + std::to_string(box[2]) + "x" + std::to_string(box[3]) + " does not fit in a " + std::to_string(H) + "x" + std::to_string(W) + " image");
  const std::vector<int64_t> size = int_list(a, 3, "outSize", 2, 1, kMaxSide);
  const std::vector<int64_t> win = int_list(a, 4, "window", 4, 0, kMaxSide);
  a.expect(win[2] >= 1 && win[3] >= 1 && win[0] + win[2] <= size[0] && win[1] + win[3] <= size[1],
           "window top=" + std::to_string(win[0]) + " left=" + std::to_string(win[1]) + " " + std::to_string(win[2]) + "x" + std::to_string(win[3]) + " does not fit in the " + std::to_string(size[0]) + "x" + std::to_string(size[1]) + " output");
  const bool flip = a.boolean(5, "flip"), antialias = a.boolean(6, "antialias");
  const std::vector<double> mean = a.number_list(7, "mean"), std_ = a.number_list(8, "std");
  const int64_t outC = (int64_t)mean.size();
  a.expect(outC >= 1 && outC <= 64 && std_.size() == mean.size(), "mean and std need one value per output channel (1 to 64), got " + std::to_string(mean.size()) + " and " + std::to_string(std_.size()));
  a.expect(outC == C || C == 1, std::to_string(C) + "-channel images cannot give " + std::to_string(outC) + " output channels (only 1-channel images are replicated)");
  for (int64_t c = 0; c < outC; c++)
    a.expect(std::isfinite(mean[c]) && std::isfinite(std_[c]) && std_[c] > 0, "mean[" + std::to_string(c) + "] must be finite and std[" + std::to_string(c) + "] finite and > 0");
  if (a.info.Length() <= 9 || !a.info[9].IsTypedArray()) a.fail("out must be a Float32Array or a Uint16Array (bfloat16)");
  const bool bf16 = a.info[9].As<Napi::TypedArray>().TypedArrayType() == napi_uint16_array;
  void* out = typed_array(a, 9, bf16 ? napi_uint16_array : napi_float32_array, "out", "Float32Array or a Uint16Array (bfloat16)", out_len);
  const int64_t offset = a.integer(10, "outOffset", 0), n = outC * win[2] * win[3];
  a.expect(offset + n <= (int64_t)out_len, "out has " + std::to_string(out_len) + " elements, too few for " + std::to_string(n) + " at outOffset " + std::to_string(offset));
  const size_t elem = bf16 ? 2 : 4;
  const uint8_t* o0 = static_cast<const uint8_t*>(out) + offset * elem;
  a.expect(o0 + n * elem <= src || o0 >= src + src_len, "out and src overlap");
  cpu::ResizedCrop args{src, H, W, C, box[0], box[1], box[2], box[3], size[0], size[1], win[0], win[1], win[2], win[3],
                        flip, antialias, outC, mean.data(), std_.data()};
  if (bf16)
    cpu::resized_crop(args, nullptr, static_cast<uint16_t*>(out) + offset);
  else
    cpu::resized_crop(args, static_cast<float*>(out) + offset, nullptr);
  return a.env().Undefined();
}

// ---- registration ----------------------------------------------------------------------------------------------

const Entry entries[] = {
    {"linear", linear},
    {"linearBackward", linear_backward},
    {"layerNorm", layer_norm},
    {"addLayerNorm", add_layer_norm},
    {"layerNormBackward", layer_norm_backward},
    {"gelu", gelu},
    {"geluBackward", gelu_backward},
    {"biasGelu", bias_gelu},
    {"biasGeluBackward", bias_gelu_backward},
    {"attention", attention},
    {"attentionBackward", attention_backward},
    {"maskedMse", masked_mse},
    {"maskedMseBackward", masked_mse_backward},
    {"crossEntropy", cross_entropy},
    {"crossEntropyBackward", cross_entropy_backward},
    {"batchNorm", batch_norm},
    {"batchNormBackward", batch_norm_backward},
    {"gatherRows", gather_rows},
    {"scatterAddRows", scatter_add_rows},
    {"catTokens", cat_tokens},
    {"sliceTokens", slice_tokens},
    {"add", binary<&Ops::add>},
    {"mul", binary<&Ops::mul>},
    {"sumTo", sum_to},
    {"axpby", axpby},
    {"sum", sum},
    {"meanTokens", mean_tokens},
    {"meanTokensBackward", mean_tokens_backward},
    {"fill", fill},
    {"patchify", patchify},
    {"unpatchify", unpatchify},
    {"adamwStep", adamw_step},
    {"resizedCrop", resized_crop},
};

}  // namespace

namespace {
Napi::Value dispatch(const Napi::CallbackInfo& info) {
  const Entry* e = static_cast<const Entry*>(info.Data());
  CallScope scope;  // reading the arguments can run JavaScript that disposes a tensor already unwrapped
  try {
    return e->fn(Args{info, e->name});
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& err) {
    const std::string msg = err.what();
    // kernel errors that do not name the op yet get its name
    throw Napi::Error::New(info.Env(), msg.rfind(e->name, 0) == 0 ? msg : std::string(e->name) + ": " + msg);
  } catch (const std::exception& err) {
    throw Napi::Error::New(info.Env(), std::string(e->name) + ": " + err.what());
  }
}

}  // namespace

void register_entries(Napi::Env env, Napi::Object exports, const Entry* list, size_t count) {
  for (size_t i = 0; i < count; i++)
    exports.Set(list[i].name, Napi::Function::New(env, dispatch, list[i].name, const_cast<Entry*>(&list[i])));
}

void register_ops(Napi::Env env, Napi::Object exports) {
  register_entries(env, exports, entries, sizeof(entries) / sizeof(entries[0]));
}

}  // namespace mae
