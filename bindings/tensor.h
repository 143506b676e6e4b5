// The JavaScript-visible native tensor: a shared, reference-counted block of device memory (Storage) plus a
// shape and a dtype. Several tensors may share one Storage (reshape); memory goes back to the backend's caching
// allocator when the last tensor that uses it is disposed or garbage-collected.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <vector>

#include "../native/core/ops.h"

namespace mae {

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  const Ops* ops = nullptr;
  Storage(const Ops* ops_, Device device_, size_t bytes_);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

class JsTensor : public Napi::ObjectWrap<JsTensor> {
 public:
  static Napi::Function Define(Napi::Env env);
  // A new tensor with fresh (uninitialised) storage on the given backend.
  static Napi::Object Make(Napi::Env env, const Ops* ops, Device device, std::vector<int64_t> shape, DType dtype);
  // A new tensor sharing `storage`.
  static Napi::Object Share(Napi::Env env, std::shared_ptr<Storage> storage, std::vector<int64_t> shape, DType dtype);
  static JsTensor* Unwrap(Napi::Object obj) { return Napi::ObjectWrap<JsTensor>::Unwrap(obj); }
  static int64_t live_count() { return live_.load(); }

  explicit JsTensor(const Napi::CallbackInfo& info);
  ~JsTensor() override;

  bool disposed() const { return !storage_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_->device; }
  const Ops& ops() const { return *storage_->ops; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  TensorView view() const { return TensorView{storage_->data, shape_, dtype_, storage_->device}; }

 private:
  Napi::Value GetShape(const Napi::CallbackInfo& info);
  Napi::Value GetDtype(const Napi::CallbackInfo& info);
  Napi::Value GetDevice(const Napi::CallbackInfo& info);
  Napi::Value GetDisposed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Read(const Napi::CallbackInfo& info);
  Napi::Value ReadAsync(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value Reshape(const Napi::CallbackInfo& info);
  void Release();
  void Require(const char* what) const;

  std::shared_ptr<Storage> storage_;
  std::vector<int64_t> shape_;
  DType dtype_ = DType::F32;
  static std::atomic<int64_t> live_;
};

// Per-environment data (one per main thread or worker): the Tensor constructor.
struct AddonData {
  Napi::FunctionReference tensor_ctor;
};

std::string device_str(Device d);

}  // namespace mae
