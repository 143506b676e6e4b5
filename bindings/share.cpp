// Tensors shared between JavaScript environments (the main thread and worker threads) without copying: native
// memory belongs to the process, so a tensor's Storage can back tensors in several environments at once.
//   envId() -> id                  the calling environment's id in this table
//   shareTensor(x[, owner]) -> id  puts x's Storage, shape and dtype in a process-wide table under a new id, owned by
//                                  the calling environment or the environment `owner` (an envId: the one that will
//                                  take it)
//   takeTensor(id) -> tensor       removes the entry and returns a tensor of that Storage in the calling environment
//   dropTensor(id)                 removes an entry that will not be taken (a no-op for an id already taken)
// The Storage is reference counted (std::shared_ptr), so its memory lives while any tensor in any environment, or a
// table entry, still uses it; a table entry nobody takes is freed by dropTensor, or when its owner's environment is
// torn down (a worker thread ended with calls in flight: no JavaScript of it is left to drop them).
#include <cstdint>
#include <iterator>
#include <mutex>
#include <unordered_map>

#include "check.h"

namespace mae {

namespace {

struct Shared {
  std::shared_ptr<Storage> storage;
  std::vector<int64_t> shape;
  DType dtype;
  int64_t owner;  // the envId whose teardown drops the entry
};

std::mutex mu;
// never destroyed: entries left at exit are not freed then, when the allocator and other static state may already be
// gone; the process's memory goes back with it
std::unordered_map<int64_t, Shared>& table = *new std::unordered_map<int64_t, Shared>;
int64_t next_id = 1;
// each environment that used the table: its id, and a cleanup hook that drops the entries it owns
std::unordered_map<napi_env, int64_t>& env_ids = *new std::unordered_map<napi_env, int64_t>;
int64_t next_env = 1;

void drop_owned(void* arg) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = env_ids.find((napi_env)arg);
  if (it == env_ids.end()) return;
  const int64_t owner = it->second;
  env_ids.erase(it);
  for (auto e = table.begin(); e != table.end();) e = e->second.owner == owner ? table.erase(e) : std::next(e);
}

// the id of env (mu held), registering its cleanup hook at its first use
int64_t env_id(napi_env env) {
  auto it = env_ids.find(env);
  if (it != env_ids.end()) return it->second;
  const int64_t id = next_env++;
  env_ids.emplace(env, id);
  napi_add_env_cleanup_hook(env, drop_owned, env);
  return id;
}

// ids are integers JavaScript numbers hold exactly
int64_t id_arg(const Args& a) { return a.integer(0, "id", 1); }

Napi::Value env_id_of(const Args& a) {
  std::lock_guard<std::mutex> lock(mu);
  return Napi::Number::New(a.env(), (double)env_id(a.env()));
}

Napi::Value share_tensor(const Args& a) {
  const JsTensor* x = a.any_tensor(0, "x");
  const bool given = a.info.Length() > 1 && !a.info[1].IsUndefined();
  const int64_t want = given ? a.integer(1, "owner", 1) : 0;
  std::lock_guard<std::mutex> lock(mu);
  int64_t owner = env_id(a.env());
  if (given) {
    bool alive = false;
    for (const auto& [env, id] : env_ids) alive = alive || id == want;
    if (!alive) a.fail("owner " + std::to_string(want) + " is not the envId of a live environment");
    owner = want;
  }
  const int64_t id = next_id++;
  table.emplace(id, Shared{x->storage(), x->shape(), x->dtype(), owner});
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
    {"envId", env_id_of},
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
