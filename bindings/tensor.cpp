// JsTensor: construction, reading and writing through TypedArrays, reshape, dispose, and the live count.
#include "tensor.h"

#include <cstring>

#include "../native/core/error.h"

namespace mae {

std::atomic<int64_t> JsTensor::live_{0};

std::string device_str(Device d) {
  return d.type == DeviceType::CPU ? "cpu" : "cuda:" + std::to_string(d.index);
}

Storage::Storage(const Ops* ops_, Device device_, size_t bytes_) : bytes(bytes_), device(device_), ops(ops_) {
  data = ops->allocator.alloc(bytes);
}

Storage::~Storage() { ops->allocator.free(data, bytes); }

Napi::Function JsTensor::Define(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {
                         InstanceAccessor<&JsTensor::GetShape>("shape"),
                         InstanceAccessor<&JsTensor::GetDtype>("dtype"),
                         InstanceAccessor<&JsTensor::GetDevice>("device"),
                         InstanceAccessor<&JsTensor::GetDisposed>("disposed"),
                         InstanceMethod<&JsTensor::Dispose>("dispose"),
                         InstanceMethod<&JsTensor::Read>("read"),
                         InstanceMethod<&JsTensor::ReadAsync>("readAsync"),
                         InstanceMethod<&JsTensor::Write>("write"),
                         InstanceMethod<&JsTensor::Reshape>("reshape"),
                     });
}

JsTensor::JsTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsTensor>(info) {}

JsTensor::~JsTensor() { Release(); }

void JsTensor::Release() {
  if (storage_) {
    storage_.reset();
    live_--;
  }
}

Napi::Object JsTensor::Share(Napi::Env env, std::shared_ptr<Storage> storage, std::vector<int64_t> shape,
                             DType dtype) {
  Napi::Object obj = env.GetInstanceData<AddonData>()->tensor_ctor.New({});
  JsTensor* t = Unwrap(obj);
  t->storage_ = std::move(storage);
  t->shape_ = std::move(shape);
  t->dtype_ = dtype;
  live_++;
  return obj;
}

Napi::Object JsTensor::Make(Napi::Env env, const Ops* ops, Device device, std::vector<int64_t> shape, DType dtype) {
  const size_t bytes = (size_t)shape_numel(shape) * dtype_size(dtype);
  auto storage = std::make_shared<Storage>(ops, device, bytes);
  return Share(env, std::move(storage), std::move(shape), dtype);
}

void JsTensor::Require(const char* what) const {
  if (!storage_) throw Error(std::string("Tensor.") + what + ": the tensor has been disposed");
}

Napi::Value JsTensor::GetShape(const Napi::CallbackInfo& info) {
  Napi::Array a = Napi::Array::New(info.Env(), shape_.size());
  for (size_t i = 0; i < shape_.size(); i++) a.Set(i, Napi::Number::New(info.Env(), (double)shape_[i]));
  return a;
}

Napi::Value JsTensor::GetDtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtype_name(dtype_));
}

Napi::Value JsTensor::GetDevice(const Napi::CallbackInfo& info) {
  if (!storage_) return info.Env().Null();
  return Napi::String::New(info.Env(), device_str(storage_->device));
}

Napi::Value JsTensor::GetDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !storage_);
}

Napi::Value JsTensor::Dispose(const Napi::CallbackInfo& info) {
  Release();
  return info.Env().Undefined();
}

namespace {

// a host copy of the tensor's elements in a new TypedArray (bfloat16 widens to float32)
Napi::Value to_typed_array(Napi::Env env, const std::vector<uint8_t>& bytes, DType dtype, size_t n) {
  if (dtype == DType::I32) {
    Napi::Int32Array a = Napi::Int32Array::New(env, n);
    std::memcpy(a.Data(), bytes.data(), n * 4);
    return a;
  }
  Napi::Float32Array a = Napi::Float32Array::New(env, n);
  if (dtype == DType::F32) {
    std::memcpy(a.Data(), bytes.data(), n * 4);
  } else {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(bytes.data());
    for (size_t i = 0; i < n; i++) {
      uint32_t w = (uint32_t)h[i] << 16;
      std::memcpy(&a.Data()[i], &w, 4);
    }
  }
  return a;
}

// readAsync: the copy is queued when readAsync is called (read_begin), so ops called after it cannot change what is
// read; the worker thread only waits for it (read_end) and the promise resolves on the main thread.
class ReadWorker : public Napi::AsyncWorker {
 public:
  ReadWorker(Napi::Env env, std::shared_ptr<Storage> storage, DType dtype, size_t n)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), storage_(std::move(storage)),
        dtype_(dtype), n_(n), bytes_(n * dtype_size(dtype)),
        pending_(storage_->ops->read_begin(storage_->data, bytes_.size())) {}
  ~ReadWorker() override {
    if (pending_) {  // never executed: release the read
      try {
        storage_->ops->read_end(pending_, bytes_.data());
      } catch (const std::exception&) {
      }
    }
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    void* h = pending_;
    pending_ = nullptr;
    try {
      storage_->ops->read_end(h, bytes_.data());
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override { deferred_.Resolve(to_typed_array(Env(), bytes_, dtype_, n_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Storage> storage_;  // keeps the memory alive even if the tensor is disposed meanwhile
  DType dtype_;
  size_t n_;
  std::vector<uint8_t> bytes_;
  void* pending_;  // the queued read (Ops::read_begin), until Execute takes it
};

}  // namespace

Napi::Value JsTensor::Read(const Napi::CallbackInfo& info) {
  Require("read");
  const size_t n = (size_t)shape_numel(shape_);
  std::vector<uint8_t> bytes(n * dtype_size(dtype_));
  storage_->ops->copy_to_host(bytes.data(), storage_->data, bytes.size());
  return to_typed_array(info.Env(), bytes, dtype_, n);
}

Napi::Value JsTensor::ReadAsync(const Napi::CallbackInfo& info) {
  Require("readAsync");
  auto* w = new ReadWorker(info.Env(), storage_, dtype_, (size_t)shape_numel(shape_));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value JsTensor::Write(const Napi::CallbackInfo& info) {
  Require("write");
  const size_t n = (size_t)shape_numel(shape_);
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Error("Tensor.write: expected a Float32Array or Int32Array");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  const bool ok = (dtype_ == DType::F32 && ta.TypedArrayType() == napi_float32_array) ||
                  (dtype_ == DType::I32 && ta.TypedArrayType() == napi_int32_array);
  if (!ok)
    throw Error(std::string("Tensor.write: a ") + dtype_name(dtype_) + " tensor " + shape_str(shape_) +
                " takes a " + (dtype_ == DType::I32 ? "Int32Array" : "Float32Array"));
  if (ta.ElementLength() != n)
    throw Error("Tensor.write: tensor " + shape_str(shape_) + " has " + std::to_string(n) + " elements, got " +
                std::to_string(ta.ElementLength()));
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  storage_->ops->copy_from_host(storage_->data, src, n * 4);
  return info.Env().Undefined();
}

Napi::Value JsTensor::Reshape(const Napi::CallbackInfo& info) {
  Require("reshape");
  if (info.Length() < 1 || !info[0].IsArray()) throw Error("Tensor.reshape: expected a shape array");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<int64_t> shape;
  double total = 1;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d < 9e15 && d == (int64_t)d)) throw Error("Tensor.reshape: shape entries must be non-negative integers");
    shape.push_back((int64_t)d);
    total *= d;  // an element count that overflows int64 could pass the size comparison below
    if (total >= 9e15) throw Error("Tensor.reshape: cannot view " + shape_str(shape_) + " as " + shape_str(shape) + "...");
  }
  if (shape_numel(shape) != shape_numel(shape_))
    throw Error("Tensor.reshape: cannot view " + shape_str(shape_) + " as " + shape_str(shape));
  return Share(info.Env(), storage_, shape, dtype_);
}

}  // namespace mae
