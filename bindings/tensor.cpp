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

JsTensor::JsTensor(std::shared_ptr<Storage> storage, std::vector<int64_t> shape, DType dtype)
    : storage_(std::move(storage)), shape_(std::move(shape)), dtype_(dtype) {
  live_++;
}

JsTensor::~JsTensor() { live_--; }

namespace {
thread_local int call_depth = 0;
thread_local std::vector<JsTensor*> released;
}  // namespace

CallScope::CallScope() { call_depth++; }

CallScope::~CallScope() {
  if (--call_depth > 0) return;
  for (JsTensor* t : released) delete t;
  released.clear();
}

void CallScope::release(JsTensor* t) {
  if (call_depth > 0)
    released.push_back(t);
  else
    delete t;
}

namespace {

void finalize(napi_env, void* data, void*) { delete static_cast<JsTensor*>(data); }

// the JsTensor of a method's `this`; throws "Tensor.<what>: the tensor has been disposed" when it has none
JsTensor* self(const Napi::CallbackInfo& info, const char* what) {
  JsTensor* t = JsTensor::Unwrap(info.This());
  if (!t) throw Error(std::string("Tensor.") + what + ": the tensor has been disposed");
  return t;
}

// A NativeTensor method or accessor as a Node-API callback: C++ exceptions become JavaScript Errors.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
napi_value callback(napi_env env, napi_callback_info cbinfo) {
  try {
    Napi::CallbackInfo info(env, cbinfo);
    return F(info);
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
  }
  return nullptr;
}

// `new NativeTensor()` from JavaScript makes an empty (disposed) tensor; Make and Share attach the native half.
napi_value construct(napi_env env, napi_callback_info cbinfo) {
  napi_value self = nullptr;
  napi_get_cb_info(env, cbinfo, nullptr, nullptr, &self, nullptr);
  return self;
}

Napi::Value get_shape(const Napi::CallbackInfo& info) {
  const JsTensor* t = JsTensor::Unwrap(info.This());
  const size_t rank = t ? t->shape().size() : 0;
  Napi::Array a = Napi::Array::New(info.Env(), rank);
  for (size_t i = 0; i < rank; i++) a.Set(i, Napi::Number::New(info.Env(), (double)t->shape()[i]));
  return a;
}

Napi::Value get_dtype(const Napi::CallbackInfo& info) {
  const JsTensor* t = JsTensor::Unwrap(info.This());
  if (!t) return info.Env().Null();
  return Napi::String::New(info.Env(), dtype_name(t->dtype()));
}

Napi::Value get_device(const Napi::CallbackInfo& info) {
  const JsTensor* t = JsTensor::Unwrap(info.This());
  if (!t) return info.Env().Null();
  return Napi::String::New(info.Env(), device_str(t->device()));
}

Napi::Value get_disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), JsTensor::Unwrap(info.This()) == nullptr);
}

Napi::Value dispose(const Napi::CallbackInfo& info) {
  void* p = nullptr;
  if (info.This().IsObject() && napi_remove_wrap(info.Env(), info.This(), &p) == napi_ok)
    CallScope::release(static_cast<JsTensor*>(p));
  return info.Env().Undefined();
}

// a host copy of the tensor's elements in a new TypedArray (bfloat16 widens to float32)
Napi::Value to_typed_array(Napi::Env env, const std::vector<uint8_t>& bytes, DType dtype, size_t n) {
  if (dtype == DType::I32) {
    Napi::Int32Array a = Napi::Int32Array::New(env, n);
    if (n > 0) std::memcpy(a.Data(), bytes.data(), n * 4);  // (an empty vector's data() may be null)
    return a;
  }
  Napi::Float32Array a = Napi::Float32Array::New(env, n);
  if (n == 0) return a;
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

Napi::Value read(const Napi::CallbackInfo& info) {
  const JsTensor* t = self(info, "read");
  const size_t n = (size_t)shape_numel(t->shape());
  std::vector<uint8_t> bytes(n * dtype_size(t->dtype()));
  t->ops().copy_to_host(bytes.data(), t->view().data, bytes.size());
  return to_typed_array(info.Env(), bytes, t->dtype(), n);
}

Napi::Value read_async(const Napi::CallbackInfo& info) {
  const JsTensor* t = self(info, "readAsync");
  auto* w = new ReadWorker(info.Env(), t->storage(), t->dtype(), (size_t)shape_numel(t->shape()));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value write(const Napi::CallbackInfo& info) {
  const JsTensor* t = self(info, "write");
  const std::vector<int64_t>& shape = t->shape();
  const DType dtype = t->dtype();
  const size_t n = (size_t)shape_numel(shape);
  if (info.Length() < 1 || !info[0].IsTypedArray()) throw Error("Tensor.write: expected a Float32Array or Int32Array");
  if (dtype == DType::BF16)
    throw Error("Tensor.write: a bfloat16 tensor " + shape_str(shape) +
                " cannot be written; write a float32 tensor and convert it with to(device, 'bfloat16')");
  Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
  const bool ok = (dtype == DType::F32 && ta.TypedArrayType() == napi_float32_array) ||
                  (dtype == DType::I32 && ta.TypedArrayType() == napi_int32_array);
  if (!ok)
    throw Error(std::string("Tensor.write: a ") + dtype_name(dtype) + " tensor " + shape_str(shape) + " takes a " +
                (dtype == DType::I32 ? "Int32Array" : "Float32Array"));
  if (ta.ElementLength() != n)
    throw Error("Tensor.write: tensor " + shape_str(shape) + " has " + std::to_string(n) + " elements, got " +
                std::to_string(ta.ElementLength()));
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  t->ops().copy_from_host(t->view().data, src, n * 4);
  return info.Env().Undefined();
}

Napi::Value reshape(const Napi::CallbackInfo& info) {
  CallScope scope;  // reading the shape array can run JavaScript
  const JsTensor* t = self(info, "reshape");
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
    if (total >= 9e15) throw Error("Tensor.reshape: cannot view " + shape_str(t->shape()) + " as " + shape_str(shape) + "...");
  }
  if (shape_numel(shape) != shape_numel(t->shape()))
    throw Error("Tensor.reshape: cannot view " + shape_str(t->shape()) + " as " + shape_str(shape));
  return JsTensor::Share(info.Env(), t->storage(), shape, t->dtype());
}

napi_property_descriptor accessor(const char* name, napi_callback getter) {
  return {name, nullptr, nullptr, getter, nullptr, nullptr, napi_default, nullptr};
}

napi_property_descriptor method(const char* name, napi_callback fn) {
  return {name, nullptr, fn, nullptr, nullptr, nullptr, napi_default_method, nullptr};
}

}  // namespace

Napi::Function JsTensor::Define(Napi::Env env) {
  const napi_property_descriptor props[] = {
      accessor("shape", callback<get_shape>),       accessor("dtype", callback<get_dtype>),
      accessor("device", callback<get_device>),     accessor("disposed", callback<get_disposed>),
      method("dispose", callback<dispose>),         method("read", callback<read>),
      method("readAsync", callback<read_async>),    method("write", callback<write>),
      method("reshape", callback<reshape>),
  };
  napi_value ctor = nullptr;
  const napi_status s = napi_define_class(env, "NativeTensor", NAPI_AUTO_LENGTH, construct, nullptr,
                                          sizeof(props) / sizeof(props[0]), props, &ctor);
  NAPI_THROW_IF_FAILED(env, s, Napi::Function());
  return Napi::Function(env, ctor);
}

Napi::Object JsTensor::Share(Napi::Env env, std::shared_ptr<Storage> storage, std::vector<int64_t> shape,
                             DType dtype) {
  Napi::Object obj = env.GetInstanceData<AddonData>()->tensor_ctor.New({});
  auto* t = new JsTensor(std::move(storage), std::move(shape), dtype);
  // no napi_ref is asked for (last argument): Node owns the wrap's reference and frees it on napi_remove_wrap
  if (napi_wrap(env, obj, t, finalize, nullptr, nullptr) != napi_ok) {
    delete t;
    throw Error("could not attach a native tensor to its JavaScript object");
  }
  return obj;
}

Napi::Object JsTensor::Make(Napi::Env env, const Ops* ops, Device device, std::vector<int64_t> shape, DType dtype) {
  const size_t bytes = (size_t)shape_numel(shape) * dtype_size(dtype);
  auto storage = std::make_shared<Storage>(ops, device, bytes);
  return Share(env, std::move(storage), std::move(shape), dtype);
}

bool JsTensor::IsTensor(Napi::Value v) {
  return v.IsObject() && v.As<Napi::Object>().InstanceOf(v.Env().GetInstanceData<AddonData>()->tensor_ctor.Value());
}

JsTensor* JsTensor::Unwrap(Napi::Value v) {
  void* p = nullptr;
  if (!v.IsObject() || napi_unwrap(v.Env(), v, &p) != napi_ok) return nullptr;
  return static_cast<JsTensor*>(p);
}

}  // namespace mae
