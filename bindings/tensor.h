// The JavaScript-visible native tensor: a shared, reference-counted block of device memory (Storage) plus a
// shape and a dtype. Several tensors may share one Storage (reshape); memory goes back to the backend's caching
// allocator when the last tensor that uses it is disposed or garbage-collected.
//
// A NativeTensor object carries its JsTensor through napi_wrap. dispose() takes it off the object
// (napi_remove_wrap) and deletes it at once: the JsTensor, its shape and Node's reference for the wrap are freed
// now, not by a finalizer. Node-API runs finalizers of garbage-collected objects only from the event loop, so a
// loop that never yields (a synchronous training loop) would otherwise keep about 230 bytes per tensor it ever
// made. A disposed or empty (`new NativeTensor()`) object has no JsTensor: Unwrap returns nullptr.
// JavaScript can run inside a native call (a getter of an argument's array, a Proxy) and dispose a tensor the call
// already holds: while a call is in a CallScope (every op entry is), such a JsTensor leaves its object at once but is
// deleted when the outermost call returns.
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

class JsTensor {
 public:
  // The NativeTensor class (one per environment).
  static Napi::Function Define(Napi::Env env);
  // A new tensor with fresh (uninitialised) storage on the given backend.
  static Napi::Object Make(Napi::Env env, const Ops* ops, Device device, std::vector<int64_t> shape, DType dtype);
  // A new tensor sharing `storage`.
  static Napi::Object Share(Napi::Env env, std::shared_ptr<Storage> storage, std::vector<int64_t> shape, DType dtype);
  // Whether `v` is a NativeTensor object (disposed or not).
  static bool IsTensor(Napi::Value v);
  // The JsTensor of a NativeTensor object; nullptr when it has been disposed or is not a tensor.
  static JsTensor* Unwrap(Napi::Value v);
  static int64_t live_count() { return live_.load(); }

  JsTensor(std::shared_ptr<Storage> storage, std::vector<int64_t> shape, DType dtype);
  ~JsTensor();
  JsTensor(const JsTensor&) = delete;
  JsTensor& operator=(const JsTensor&) = delete;

  const std::vector<int64_t>& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_->device; }
  const Ops& ops() const { return *storage_->ops; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  TensorView view() const { return TensorView{storage_->data, shape_, dtype_, storage_->device}; }

 private:
  std::shared_ptr<Storage> storage_;
  std::vector<int64_t> shape_;
  DType dtype_;
  static std::atomic<int64_t> live_;
};

// The extent of a native call that holds JsTensor pointers while it may run JavaScript (nested scopes count as one).
class CallScope {
 public:
  CallScope();
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;
  // deletes t now, or at the end of the outermost scope when one is open on this thread
  static void release(JsTensor* t);
};

// Per-environment data (one per main thread or worker): the Tensor constructor.
struct AddonData {
  Napi::FunctionReference tensor_ctor;
};

std::string device_str(Device d);

}  // namespace mae
