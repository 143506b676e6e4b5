// Loads libmae_cuda.so at run time (see cuda_loader.h) and provides the device entry points of the module:
// to(x, device, dtype?), synchronize(device?), the GPU timer timerStart(device) / timerStop(device), and
// syncCount(device).
#include "cuda_loader.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "../native/core/error.h"
#include "../native/cpu/cpu.h"
#include "check.h"

namespace mae {

namespace {

CudaState g_state;
std::once_flag g_once;

bool file_exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// the folder holding this addon (mae.node)
std::string addon_dir() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&cuda_state), &info) && info.dli_fname) {
    std::string p = info.dli_fname;
    const size_t slash = p.rfind('/');
    if (slash != std::string::npos) return p.substr(0, slash);
  }
  return ".";
}

void load() {
  CudaState& s = g_state;
  const char* env = std::getenv("MAE_CUDA_LIB");
  s.library = (env && *env) ? std::string(env) : addon_dir() + "/libmae_cuda.so";
  if (!file_exists(s.library)) {
    s.reason = (env && *env)
                   ? "MAE_CUDA_LIB points at " + s.library + ", which does not exist"
                   : "this build has no CUDA backend: " + s.library +
                         " is missing (the addon was built without the CUDA toolkit: with nvcc on the PATH, build it again "
                         "from source, `npm run build` in a checkout or `npx --yes cmake-js@8 compile` in the "
                         "package's folder)";
    return;
  }
  s.library_found = true;
  void* h = dlopen(s.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    s.reason = "could not load " + s.library + ": " + (e ? e : "unknown dlopen error");
    return;
  }
  s.handle = h;
  auto init = reinterpret_cast<mae_cuda_init_fn>(dlsym(h, "mae_cuda_init"));
  if (!init) {
    s.reason = s.library + " has no mae_cuda_init entry point (a stale or foreign file?)";
    return;
  }
  char err[2048] = {0};
  const MaeCudaApi* api = nullptr;
  int rc = 0;
  try {
    rc = init(MAE_CUDA_ABI_VERSION, &api, err, sizeof err);
  } catch (const std::exception& e) {
    rc = -1;
    std::snprintf(err, sizeof err, "%s", e.what());
  }
  if (rc != 0 || !api) {
    s.reason = err[0] ? err : "CUDA initialisation failed (code " + std::to_string(rc) + ")";
    return;  // the library stays loaded: unloading a library that started the CUDA runtime is not safe
  }
  s.api = api;
  s.driver_version = api->driver_version;
  s.runtime_version = api->runtime_version;
  s.cublaslt_path = api->cublaslt_path ? api->cublaslt_path : "";
  s.cublaslt_version = api->cublaslt_version;
  s.archs = api->archs ? api->archs : "";
  for (int i = 0; i < api->device_count; i++) {
    MaeCudaDevice d{};
    if (api->device_info(i, &d) != 0) continue;
    CudaDeviceFacts f;
    f.index = d.index;
    f.name = d.name;
    f.major = d.major;
    f.minor = d.minor;
    f.total_memory = (double)d.total_memory;
    f.multiprocessors = d.multiprocessors;
    f.usable = d.usable != 0;
    s.devices.push_back(f);
  }
  s.available = true;
}

}  // namespace

const CudaState& cuda_state() {
  std::call_once(g_once, load);
  return g_state;
}

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device{DeviceType::CPU, 0};
  if (s == "cuda") return Device{DeviceType::CUDA, 0};
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() <= 7) {
    int n = 0;
    for (size_t i = 5; i < s.size(); i++) {
      if (s[i] < '0' || s[i] > '9') throw Error("unknown device '" + s + "': expected 'cpu', 'cuda' or 'cuda:N'");
      n = n * 10 + (s[i] - '0');
    }
    return Device{DeviceType::CUDA, n};
  }
  throw Error("unknown device '" + s + "': expected 'cpu', 'cuda' or 'cuda:N'");
}

const MaeCudaApi& cuda_api() {
  const CudaState& s = cuda_state();
  if (!s.available) throw Error("CUDA is not available: " + s.reason);
  return *s.api;
}

const Ops& ops_for_device(Device d) {
  if (d.type == DeviceType::CPU) return cpu_ops();
  const MaeCudaApi& api = cuda_api();
  if (d.index < 0 || d.index >= api.device_count)
    throw Error("cuda:" + std::to_string(d.index) + " does not exist (" + std::to_string(api.device_count) +
                " CUDA device(s) visible)");
  return *api.ops(d.index);  // throws when the device is not usable
}

}  // namespace mae

// ---- copies between devices and dtypes, and the device entry points -------------------------------------------------

namespace mae {

namespace {

void host_convert(void* dst, DType dt, const void* src, DType st, size_t n) {
  if (n == 0) return;  // an empty buffer may be a null pointer
  if (dt == st) {
    std::memcpy(dst, src, n * dtype_size(dt));
  } else if (dt == DType::BF16 && st == DType::F32) {
    cpu::to_bf16(static_cast<const float*>(src), static_cast<uint16_t*>(dst), (int64_t)n);
  } else if (dt == DType::F32 && st == DType::BF16) {
    cpu::to_f32(static_cast<const uint16_t*>(src), static_cast<float*>(dst), (int64_t)n);
  } else {
    throw Error(std::string("cannot convert ") + dtype_name(st) + " to " + dtype_name(dt));
  }
}

}  // namespace

void copy_tensor(const TensorView& s, const Ops& sops, TensorView& d, const Ops& dops) {
  const size_t n = (size_t)s.numel();
  if ((s.dtype == DType::I32) != (d.dtype == DType::I32))
    throw Error(std::string("cannot convert ") + dtype_name(s.dtype) + " to " + dtype_name(d.dtype));
  if (n == 0) return;
  const bool s_cpu = s.device.type == DeviceType::CPU, d_cpu = d.device.type == DeviceType::CPU;
  if (s_cpu && d_cpu) {
    if (s.dtype == d.dtype)
      host_convert(d.data, d.dtype, s.data, s.dtype, n);
    else
      cpu::convert(s, d);  // in parallel
  } else if (s_cpu) {
    if (s.dtype == d.dtype) {
      dops.copy_from_host(d.data, s.data, n * dtype_size(d.dtype));
    } else {
      std::vector<uint8_t> tmp(n * dtype_size(d.dtype));
      host_convert(tmp.data(), d.dtype, s.data, s.dtype, n);
      dops.copy_from_host(d.data, tmp.data(), tmp.size());
    }
  } else if (d_cpu) {
    if (s.dtype == d.dtype) {
      sops.copy_to_host(d.data, s.data, n * dtype_size(s.dtype));
    } else {
      std::vector<uint8_t> tmp(n * dtype_size(s.dtype));
      sops.copy_to_host(tmp.data(), s.data, tmp.size());
      host_convert(d.data, d.dtype, tmp.data(), s.dtype, n);
    }
  } else if (s.device == d.device) {
    cuda_api().convert(s.device.index, d.data, d.dtype, s.data, s.dtype, n);
  } else {
    // between two GPUs: through the host (simple and rare)
    std::vector<uint8_t> a(n * dtype_size(s.dtype)), b(n * dtype_size(d.dtype));
    sops.copy_to_host(a.data(), s.data, a.size());
    host_convert(b.data(), d.dtype, a.data(), s.dtype, n);
    dops.copy_from_host(d.data, b.data(), b.size());
  }
}

namespace {

Device device_arg(const Args& a, size_t i) {
  if (i >= a.info.Length() || a.info[i].IsUndefined()) return Device{};
  if (!a.info[i].IsString()) a.fail("device must be a string: 'cpu', 'cuda' or 'cuda:N'");
  return parse_device(a.info[i].As<Napi::String>().Utf8Value());
}

// to(x, device, dtype?) -> a tensor on `device` (and in `dtype`) holding x's values. When nothing changes, the
// result shares x's storage (like reshape); otherwise it is a copy.
Napi::Value to(const Args& a) {
  JsTensor* x = a.any_tensor(0, "x");
  if (a.info.Length() < 2 || !a.info[1].IsString()) a.fail("device must be a string: 'cpu', 'cuda' or 'cuda:N'");
  const Device dev = parse_device(a.info[1].As<Napi::String>().Utf8Value());
  DType dt = x->dtype();
  if (a.info.Length() > 2 && !a.info[2].IsUndefined() && !a.info[2].IsNull()) {
    if (!a.info[2].IsString()) a.fail("dtype must be 'float32', 'bfloat16' or 'int32'");
    const std::string s = a.info[2].As<Napi::String>().Utf8Value();
    if (s == "float32")
      dt = DType::F32;
    else if (s == "bfloat16")
      dt = DType::BF16;
    else if (s == "int32")
      dt = DType::I32;
    else
      a.fail("dtype must be 'float32', 'bfloat16' or 'int32', got '" + s + "'");
  }
  if ((dt == DType::I32) != (x->dtype() == DType::I32))
    a.fail(std::string("cannot convert a ") + dtype_name(x->dtype()) + " tensor to " + dtype_name(dt));
  const Ops& ops = ops_for_device(dev);  // throws "CUDA is not available: <reason>"
  if (dev == x->device() && dt == x->dtype()) return JsTensor::Share(a.env(), x->storage(), x->shape(), dt);
  Napi::Object y = JsTensor::Make(a.env(), &ops, dev, x->shape(), dt);
  TensorView yv = JsTensor::Unwrap(y)->view();
  copy_tensor(x->view(), x->ops(), yv, ops);
  return y;
}

// synchronize(device?): waits for the device's queued work (a no-op for the CPU)
Napi::Value synchronize(const Args& a) {
  const Device dev = device_arg(a, 0);
  if (dev.type == DeviceType::CUDA) {
    ops_for_device(dev);  // checks availability and the index
    cuda_api().synchronize(dev.index);
  }
  return a.env().Undefined();
}

// argument i: a CUDA device that is available ('cpu' and unusable devices are errors)
Device cuda_device_arg(const Args& a, size_t i) {
  const Device dev = device_arg(a, i);
  a.expect(dev.type == DeviceType::CUDA, "device must be a CUDA device, got " + device_str(dev));
  ops_for_device(dev);
  return dev;
}

// timerStart(device): records the start of a GPU-time measurement on the device's stream
Napi::Value timer_start(const Args& a) {
  const Device dev = cuda_device_arg(a, 0);
  cuda_api().timer_start(dev.index);
  return a.env().Undefined();
}

// timerStop(device) -> milliseconds of GPU time since timerStart (waits for the queued work)
Napi::Value timer_stop(const Args& a) {
  const Device dev = cuda_device_arg(a, 0);
  return Napi::Number::New(a.env(), cuda_api().timer_stop(dev.index));
}

// syncCount(device) -> how many times the host has waited for that CUDA device so far (stream and event
// synchronisations, copies to the host): a training step should add exactly one, its loss read
Napi::Value sync_count(const Args& a) {
  const Device dev = cuda_device_arg(a, 0);
  return Napi::Number::New(a.env(), (double)cuda_api().sync_count(dev.index));
}

const Entry cuda_entries[] = {
    {"to", to},
    {"synchronize", synchronize},
    {"timerStart", timer_start},
    {"timerStop", timer_stop},
    {"syncCount", sync_count},
};

}  // namespace

Napi::Object cuda_info(Napi::Env env) {
  const CudaState& s = cuda_state();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", s.available);
  if (!s.available) o.Set("reason", s.reason);
  o.Set("library", s.library);
  if (s.available) {
    o.Set("driverVersion", s.driver_version);
    o.Set("runtimeVersion", s.runtime_version);
    Napi::Object lt = Napi::Object::New(env);
    lt.Set("path", s.cublaslt_path);
    lt.Set("version", (double)s.cublaslt_version);
    o.Set("cublasLt", lt);
    o.Set("archs", s.archs);
    Napi::Array devs = Napi::Array::New(env, s.devices.size());
    for (size_t i = 0; i < s.devices.size(); i++) {
      const CudaDeviceFacts& d = s.devices[i];
      Napi::Object e = Napi::Object::New(env);
      e.Set("index", d.index);
      e.Set("name", d.name);
      e.Set("computeCapability", std::to_string(d.major) + "." + std::to_string(d.minor));
      e.Set("totalMemory", d.total_memory);
      e.Set("multiprocessors", d.multiprocessors);
      e.Set("usable", d.usable);
      devs.Set((uint32_t)i, e);
    }
    o.Set("devices", devs);
  }
  return o;
}

void register_cuda(Napi::Env env, Napi::Object exports) {
  register_entries(env, exports, cuda_entries, sizeof(cuda_entries) / sizeof(cuda_entries[0]));
}

}  // namespace mae
