// Tensors shared between JavaScript environments (the main thread and worker threads) without copying: native
// memory belongs to the process, so a tensor's Storage can back tensors in several environments at once.
//   shareTensor(x) -> id     puts x's Storage, shape and dtype in a process-wide table under a new id
//   takeTensor(id) -> tensor  removes the entry and returns a tensor of that Storage in the calling environment
//   dropTensor(id)            removes an entry that will not be taken (a no-op for an id already taken)
// The Storage is reference counted (std::shared_ptr), so its memory lives while any tensor in any environment, or a
// table entry, still uses it; a table entry nobody takes is freed by dropTensor.
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "check.h"

namespace mae {

namespace {

struct Shared {
  std::shared_ptr<Storage> storage;
  std::vector<int64_t> shape;
  DType dtype;
};

std::mutex mu;
// never destroyed: entries left at exit (a worker ended before it took its tensors) are not freed then, when the
// allocator and other static state may already be gone; the process's memory goes back with it
std::unordered_map<int64_t, Shared>& table = *new std::unordered_map<int64_t, Shared>;
int64_t next_id = 1;

// ids are integers JavaScript numbers hold exactly
int64_t id_arg(const Args& a) { return a.integer(0, "id", 1); }

Napi::Value share_tensor(const Args& a) {
  const JsTensor* x = a.any_tensor(0, "x");
  std::lock_guard<std::mutex> lock(mu);
  const int64_t id = next_id++;
  table.emplace(id, Shared{x->storage(), x->shape(), x->dtype()});
  return Napi::Number::New(a.env(), (double)id);
}

Napi::Value take_tensor(const Args& a) {
  const int64_t id = id_arg(a);
  Shared s;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = table.find(id);
    if (it == table.end()) a.fail("no shared tensor " + std::to_string(id) + " (already taken or dropped)");
    s = std::move(it->second);
    table.erase(it);
  }
  return JsTensor::Share(a.env(), std::move(s.storage), std::move(s.shape), s.dtype);
}

Napi::Value drop_tensor(const Args& a) {
  const int64_t id = id_arg(a);
  std::lock_guard<std::mutex> lock(mu);
  table.erase(id);
  return a.env().Undefined();
}

Napi::Value shared_count(const Args& a) {
  std::lock_guard<std::mutex> lock(mu);
  return Napi::Number::New(a.env(), (double)table.size());
}

const Entry entries[] = {
    {"shareTensor", share_tensor},
    {"takeTensor", take_tensor},
    {"dropTensor", drop_tensor},
    {"sharedTensorCount", shared_count},
};

}  // namespace

void register_share(Napi::Env env, Napi::Object exports) {
  register_entries(env, exports, entries, sizeof(entries) / sizeof(entries[0]));
}

}  // namespace mae
