// The Node-API module: the NativeTensor class, tensor creation from TypedArrays, runtime facts (info, threads,
// memory), the op entry points of ops.cpp, tensor sharing between threads (share.cpp) and the communicator of
// data-parallel runs (comm.cpp).
#include <dlfcn.h>
#include <napi.h>
#ifdef MAE_SANITIZE
#include <sanitizer/lsan_interface.h>
#endif

#include <cmath>
#include <cstring>

#include "check.h"
#include "cuda_loader.h"
#include "../native/cpu/cpu.h"

extern "C" char* openblas_get_config(void);

namespace mae {

void register_ops(Napi::Env env, Napi::Object exports);
void register_share(Napi::Env env, Napi::Object exports);
void register_comm(Napi::Env env, Napi::Object exports);

namespace {

// fromArray(Float32Array | Int32Array, shape) -> tensor on the CPU holding a copy
Napi::Value from_array(const Args& a) {
  if (a.info.Length() < 1 || !a.info[0].IsTypedArray()) a.fail("data must be a Float32Array or Int32Array");
  Napi::TypedArray ta = a.info[0].As<Napi::TypedArray>();
  DType dtype;
  if (ta.TypedArrayType() == napi_float32_array)
    dtype = DType::F32;
  else if (ta.TypedArrayType() == napi_int32_array)
    dtype = DType::I32;
  else
    a.fail("data must be a Float32Array or Int32Array");
  std::vector<int64_t> shape = a.shape(1, "shape");
  a.expect(shape_numel(shape) == (int64_t)ta.ElementLength(), "shape " + shape_str(shape) + " holds " + std::to_string(shape_numel(shape)) + " elements but data has " + std::to_string(ta.ElementLength()));
  Napi::Object t = JsTensor::Make(a.env(), &cpu_ops(), Device{}, shape, dtype);
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  if (ta.ElementLength() > 0) std::memcpy(JsTensor::Unwrap(t)->view().data, src, ta.ElementLength() * 4);
  return t;
}

DType parse_dtype(const Args& a, size_t i) {
  if (i >= a.info.Length() || a.info[i].IsUndefined()) return DType::F32;
  if (!a.info[i].IsString()) a.fail("dtype must be 'float32' or 'int32'");
  std::string s = a.info[i].As<Napi::String>().Utf8Value();
  if (s == "float32") return DType::F32;
  if (s == "int32") return DType::I32;
  a.fail("dtype must be 'float32' or 'int32', got '" + s + "'");
}

// full(shape, value, dtype?) -> CPU tensor filled with value
Napi::Value full(const Args& a) {
  std::vector<int64_t> shape = a.shape(0, "shape");
  const double v = a.number(1, "value");
  DType dtype = parse_dtype(a, 2);
  if (dtype == DType::I32 && !(v == std::floor(v) && v >= -2147483648.0 && v <= 2147483647.0))
    a.fail("value " + std::to_string(v) + " is not an int32");
  Napi::Object t = JsTensor::Make(a.env(), &cpu_ops(), Device{}, shape, dtype);
  TensorView tv = JsTensor::Unwrap(t)->view();
  const int64_t n = tv.numel();
  if (dtype == DType::F32)
    for (int64_t i = 0; i < n; i++) tv.f32()[i] = (float)v;
  else
    for (int64_t i = 0; i < n; i++) tv.i32()[i] = (int32_t)v;
  return t;
}

// clone(x) -> a copy on the same device
Napi::Value clone(const Args& a) {
  const JsTensor* x = a.any_tensor(0, "x");
  Napi::Object y = JsTensor::Make(a.env(), &x->ops(), x->device(), x->shape(), x->dtype());
  const JsTensor* yt = JsTensor::Unwrap(y);
  const size_t bytes = (size_t)shape_numel(x->shape()) * dtype_size(x->dtype());
  if (x->device().type == DeviceType::CPU)
    std::memcpy(yt->view().data, x->view().data, bytes);
  else
    cuda_api().copy_device(x->device().index, yt->view().data, x->view().data, bytes);
  return y;
}

Napi::Value live_tensors(const Args& a) { return Napi::Number::New(a.env(), (double)JsTensor::live_count()); }

// the device named by argument i ('cpu', 'cuda', 'cuda:N'); the CPU when absent
const Ops& device_ops(const Args& a, size_t i) {
  if (i >= a.info.Length() || a.info[i].IsUndefined()) return cpu_ops();
  if (!a.info[i].IsString()) a.fail("device must be a string: 'cpu', 'cuda' or 'cuda:N'");
  return ops_for_device(parse_device(a.info[i].As<Napi::String>().Utf8Value()));
}

// memoryStats(device?)
Napi::Value memory_stats(const Args& a) {
  AllocatorStats s = device_ops(a, 0).allocator.stats();
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("allocatedBytes", (double)s.allocated_bytes);
  o.Set("cachedBytes", (double)s.cached_bytes);
  o.Set("peakBytes", (double)s.peak_bytes);
  // the CPU's blocked copies of bf16 weight shadows (native/cpu/blocked.cpp), held outside the allocator
  if (&device_ops(a, 0) == &cpu_ops()) o.Set("blockedWeightBytes", (double)cpu::blocked_weights_stats().bytes);
  return o;
}

// emptyCache(device?)
Napi::Value empty_cache(const Args& a) {
  device_ops(a, 0).allocator.empty_cache();
  return a.env().Undefined();
}

Napi::Value set_threads(const Args& a) {
  // more than this is a mistake (each OpenMP thread is an OS thread with its own stack), not a setting
  constexpr int64_t kMaxThreads = 1024;
  set_num_threads((int)a.integer(0, "threads", 1, kMaxThreads));
  return a.env().Undefined();
}

Napi::Value info(const Args& a) {
  Napi::Object o = Napi::Object::New(a.env());
  o.Set("backends", Napi::Array::New(a.env(), 0));
  o.Get("backends").As<Napi::Array>().Set(0u, Napi::String::New(a.env(), "cpu"));
  o.Set("blas", std::string(openblas_get_config()));
  // how the BLAS is linked: "static" (inside mae.node, prebuilt binaries) or the shared library the loader found
#ifdef MAE_OPENBLAS_STATIC
  o.Set("blasLink", "static");
#else
  {
    Dl_info dl;
    const bool found = dladdr(reinterpret_cast<void*>(&openblas_get_config), &dl) && dl.dli_fname;
    o.Set("blasLink", std::string("shared ") + (found ? dl.dli_fname : "libopenblas.so.0"));
  }
#endif
  o.Set("threads", get_num_threads());
  // bf16 on the CPU: oneDNN for the products (loaded now if it was not), the conversion instruction of the kernels
  {
    const cpu::DnnlInfo& d = cpu::dnnl_info();
    Napi::Object dn = Napi::Object::New(a.env());
    dn.Set("available", d.available);
    if (!d.available) dn.Set("reason", d.reason);
    dn.Set("library", d.library);
    dn.Set("bf16Products", d.bf16_products);
    if (d.available) {
      dn.Set("version", d.version);
      dn.Set("isa", d.isa);
      dn.Set("bf16Native", d.bf16_native);
      dn.Set("amx", d.amx);
      dn.Set("bf16Matmul", d.bf16_matmul);
      Napi::Object amx = Napi::Object::New(a.env());
      amx.Set("cpu", d.cpu_amx);
      amx.Set("kernel", d.kernel_amx);
      amx.Set("permitted", d.amx_permitted);
      dn.Set("amxSupport", amx);
      dn.Set("amxOddKDeclined", d.amx_odd_k_declined);
    }
    o.Set("dnnl", dn);
    o.Set("avx512Kernels", cpu::avx512_kernels());
    o.Set("bf16Convert", cpu::bf16_convert_native() ? "avx512_bf16 (vcvtneps2bf16)" : "integer round-to-nearest-even");
    o.Set("bf16Attention", cpu::bf16_attention_kernel());
  }
  o.Set("compiler", std::string("g++ ") + __VERSION__);
#ifdef MAE_CUDA_BUILT
  o.Set("cudaBuilt", true);
#else
  o.Set("cudaBuilt", false);
#endif
  Napi::Object cuda = cuda_info(a.env());
  if (cuda.Get("available").ToBoolean().Value()) o.Get("backends").As<Napi::Array>().Set(1u, Napi::String::New(a.env(), "cuda"));
  o.Set("cuda", cuda);
  return o;
}

#ifdef MAE_SANITIZE
// leakCheck() (sanitizer builds only): LeakSanitizer's check now, its report written where LSAN_OPTIONS says;
// true when it found leaks. The test runner calls it after each test file (test/helpers/sanitize-setup.ts), since
// a child process it ends does not always live long enough for the check at exit.
Napi::Value leak_check(const Args& a) { return Napi::Boolean::New(a.env(), __lsan_do_recoverable_leak_check() != 0); }
#endif

const Entry entries[] = {
    {"fromArray", from_array},   {"full", full},
    {"clone", clone},            {"liveTensors", live_tensors},
    {"memoryStats", memory_stats}, {"emptyCache", empty_cache},
    {"setNumThreads", set_threads}, {"info", info},
#ifdef MAE_SANITIZE
    {"leakCheck", leak_check},
#endif
};

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  set_num_threads(get_num_threads());  // the BLAS single-threaded from the start (native/cpu/gemm.cpp)
  auto* data = new AddonData();
  Napi::Function ctor = JsTensor::Define(env);
  data->tensor_ctor = Napi::Persistent(ctor);
  env.SetInstanceData(data);
  exports.Set("NativeTensor", ctor);
  register_entries(env, exports, entries, sizeof(entries) / sizeof(entries[0]));
  register_ops(env, exports);
  register_share(env, exports);
  register_cuda(env, exports);
  register_comm(env, exports);
  return exports;
}

}  // namespace mae

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return mae::Init(env, exports); }

NODE_API_MODULE(mae, InitModule)
