// Argument checking for the op entry points: every tensor argument is unwrapped, checked for disposal, dtype,
// rank and emptiness here, and the op's own shape rules are checked with `expect`. A failed check throws
// mae::Error with a message that names the op, the argument and the shapes; the entry wrapper turns it into a
// JavaScript Error.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "../native/core/error.h"
#include "tensor.h"

namespace mae {

struct Args {
  const Napi::CallbackInfo& info;
  const char* op;

  Napi::Env env() const { return info.Env(); }

  [[noreturn]] void fail(const std::string& msg) const { throw Error(std::string(op) + ": " + msg); }
  void expect(bool cond, const std::string& msg) const {
    if (!cond) fail(msg);
  }

  // tensor argument i; rank -1 accepts any rank >= 1
  JsTensor* tensor(size_t i, const char* name, DType dtype = DType::F32, int rank = -1) const {
    return tensor_value(i < info.Length() ? info[i] : env().Undefined(), name, dtype, rank);
  }

  // tensor argument i, an activation: float32 or bfloat16 on any device (the kernels read each in its own dtype)
  JsTensor* act(size_t i, const char* name, int rank = -1) const {
    JsTensor* t = any_tensor(i, name);
    return tensor_value(info[i], name, t->dtype() == DType::BF16 ? DType::BF16 : DType::F32, rank);
  }

  JsTensor* optional_act(size_t i, const char* name, int rank = -1) const {
    if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
    return act(i, name, rank);
  }

  // argument i: an array of tensors, each checked as tensor() does under the name `name[k]`
  std::vector<JsTensor*> tensor_list(size_t i, const char* name, DType dtype = DType::F32) const {
    if (i >= info.Length() || !info[i].IsArray()) fail(std::string(name) + " must be an array of Tensors");
    Napi::Array a = info[i].As<Napi::Array>();
    std::vector<JsTensor*> ts;
    for (uint32_t k = 0; k < a.Length(); k++)
      ts.push_back(tensor_value(a.Get(k), std::string(name) + "[" + std::to_string(k) + "]", dtype, -1));
    return ts;
  }

  // argument i: an array of numbers
  std::vector<double> number_list(size_t i, const char* name) const {
    if (i >= info.Length() || !info[i].IsArray()) fail(std::string(name) + " must be an array of numbers");
    Napi::Array a = info[i].As<Napi::Array>();
    std::vector<double> xs;
    for (uint32_t k = 0; k < a.Length(); k++) {
      Napi::Value v = a.Get(k);
      if (!v.IsNumber()) fail(std::string(name) + "[" + std::to_string(k) + "] must be a number");
      xs.push_back(v.As<Napi::Number>().DoubleValue());
    }
    return xs;
  }

  // a tensor of any dtype, rank and size that has not been disposed
  JsTensor* any_tensor_value(Napi::Value value, const std::string& name) const {
    if (!JsTensor::IsTensor(value)) fail(name + " must be a Tensor");
    JsTensor* t = JsTensor::Unwrap(value);
    if (!t) fail(name + " has been disposed");
    return t;
  }

  JsTensor* any_tensor(size_t i, const char* name) const {
    return any_tensor_value(i < info.Length() ? info[i] : env().Undefined(), name);
  }

  JsTensor* tensor_value(Napi::Value value, const std::string& name, DType dtype, int rank) const {
    JsTensor* t = any_tensor_value(value, name);
    // CUDA kernels read and write bfloat16 wherever float32 is asked for (each argument in its own dtype); CPU
    // kernels take bfloat16 activations (act), while their parameters and statistics stay float32
    const bool bf16_ok = dtype == DType::F32 && t->dtype() == DType::BF16 && t->device().type == DeviceType::CUDA;
    if (t->dtype() == DType::BF16 && dtype == DType::F32 && t->device().type == DeviceType::CPU)
      fail(name + " must be float32, got bfloat16 " + shape_str(t->shape()) +
           " on the CPU: CPU kernels take bfloat16 only for activations, and this argument is a parameter, a "
           "statistic or a mask; convert it with .to('cpu', 'float32')");
    if (t->dtype() != dtype && !bf16_ok)
      fail(name + " must be " + dtype_name(dtype) + ", got " + dtype_name(t->dtype()) + " " +
           shape_str(t->shape()));
    if (rank >= 0 && (int)t->shape().size() != rank)
      fail(name + " must have " + std::to_string(rank) + " dimensions, got " + shape_str(t->shape()));
    if (t->shape().empty() && rank != 0) fail(name + " must have at least one dimension");
    if (shape_numel(t->shape()) == 0)
      fail(name + " " + shape_str(t->shape()) + " is empty; zero-size tensors are not supported here");
    return t;
  }

  // a tensor argument that may be null or undefined
  JsTensor* optional_tensor(size_t i, const char* name, DType dtype = DType::F32, int rank = -1) const {
    if (i >= info.Length() || info[i].IsNull() || info[i].IsUndefined()) return nullptr;
    return tensor(i, name, dtype, rank);
  }

  // a number as JavaScript writes it (1e+39, Infinity, NaN), for messages
  std::string js(double d) const { return Napi::Number::New(env(), d).ToString().Utf8Value(); }

  double number(size_t i, const char* name) const {
    if (i >= info.Length() || !info[i].IsNumber()) fail(std::string(name) + " must be a number");
    return info[i].As<Napi::Number>().DoubleValue();
  }

  // an integer argument in [min, max] (without max: below 9e15, exact in a double)
  int64_t integer(size_t i, const char* name, int64_t min, int64_t max = kMaxInteger) const {
    double d = number(i, name);
    if (!(d >= (double)min && d <= (double)max) || d != (double)(int64_t)d)
      fail(std::string(name) + " must be an integer " +
           (max == kMaxInteger ? ">= " + std::to_string(min)
                               : "in [" + std::to_string(min) + ", " + std::to_string(max) + "]") +
           ", got " + js(d));
    return (int64_t)d;
  }
  static constexpr int64_t kMaxInteger = 8999999999999999;

  bool boolean(size_t i, const char* name) const {
    if (i >= info.Length() || !info[i].IsBoolean()) fail(std::string(name) + " must be a boolean");
    return info[i].As<Napi::Boolean>().Value();
  }

  std::vector<int64_t> shape(size_t i, const char* name) const {
    if (i >= info.Length() || !info[i].IsArray()) fail(std::string(name) + " must be an array of sizes");
    Napi::Array a = info[i].As<Napi::Array>();
    std::vector<int64_t> s;
    double total = 1;
    for (uint32_t k = 0; k < a.Length(); k++) {
      Napi::Value v = a.Get(k);
      double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0 && d < 9e15 && d == (double)(int64_t)d))
        fail(std::string(name) + " entries must be non-negative integers");
      s.push_back((int64_t)d);
      // the element count must fit in int64 (an overflowed count would disagree with the sizes)
      total *= d;
      if (total >= 9e15) fail(std::string(name) + " " + shape_str(s) + "... has too many elements");
    }
    return s;
  }

  // all tensors on one device; returns its op table
  const Ops& same_device(std::initializer_list<const JsTensor*> ts) const {
    const JsTensor* first = nullptr;
    for (const JsTensor* t : ts) {
      if (!t) continue;
      if (!first)
        first = t;
      else if (t->device() != first->device())
        fail("tensors are on different devices (" + device_str(first->device()) + " and " +
             device_str(t->device()) + ")");
    }
    return first->ops();
  }

  // a new tensor on the device of `like`
  Napi::Object make(const JsTensor* like, std::vector<int64_t> shape, DType dtype = DType::F32) const {
    // sizes taken from integer arguments (n, imageShape) must not overflow the element count
    double total = 1;
    for (int64_t d : shape) total *= (double)d;
    if (total >= 9e15) fail("the result " + shape_str(shape) + " has too many elements");
    return JsTensor::Make(env(), &like->ops(), like->device(), std::move(shape), dtype);
  }
};

inline TensorView view(Napi::Object o) { return JsTensor::Unwrap(o)->view(); }

// A named module function: `fn` receives the call's arguments with the name for its error messages.
struct Entry {
  const char* name;
  Napi::Value (*fn)(const Args&);
};

// Adds each entry to `exports` as a function; mae::Error thrown inside becomes a JavaScript Error that starts with
// the entry's name.
void register_entries(Napi::Env env, Napi::Object exports, const Entry* entries, size_t count);

}  // namespace mae
