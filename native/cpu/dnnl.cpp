// oneDNN's matmul primitive for the CPU's bfloat16 matrix products (gemm.cpp), opened at run time.
//
// libdnnl.so.2 is loaded with dlopen on the first bf16 product (or `info()`), never at start-up, so the addon loads
// and trains in float32 where oneDNN is absent; a bf16 product then throws the reason. Looked for in order: the file
// $MAE_DNNL_LIB names; libdnnl.so.2 next to mae.node (prebuilt binaries ship it there with the libOpenCL.so.1 it
// needs, which is loaded first); the system's (Debian's libdnnl2). oneDNN chooses its kernels at run time (AMX,
// AVX512-BF16, AVX-512 or AVX2 with bf16 emulation, or its reference code), so one binary serves every x86-64 CPU.
//
// matmul: C = alpha A B (+ bias), A [..., M, K], B [..., K, N], C [..., M, N], up to 4 dimensions with leading batch
// dimensions, each operand with its own strides (a transposed operand is a stride swap) and dtype (float32 or
// bfloat16); bias float32 [N]. Accumulation is float32 inside oneDNN. Primitives are made once per shape, stride,
// dtype and alpha and kept (the cache below); each call wraps the pointers in memory objects and runs on a stream of
// its own thread, with a scratchpad from the CPU allocator, so calls from several threads (worker threads of
// embedAsync) are safe. oneDNN runs on the OpenMP runtime the addon uses (libgomp), on get_num_threads() threads;
// called inside an OpenMP parallel region, a product runs on the calling thread alone (oneDNN does not nest: its
// brgemm matmul takes the smaller of the current thread count, 1 there, and the one it was made for; a standalone
// check with oneDNN 2.6.3 got the bits of the product run outside), so the library calls them outside such regions.
// A product oneDNN cannot run (not loaded, or no kernel for it on this CPU: oneDNN 2.x has no bf16 matmul below
// AVX-512), and a bf16 one it would only emulate (AVX-512 without AVX512-BF16 or AMX: 73 GFLOP/s where the BLAS ran
// the same products in float32 at 190, Zen 4 limited to avx512_core), returns false, and the caller computes it
// another way (gemm.cpp).
// matmul_weight: the same product with B a Linear's bf16 weight shadow, read from its copy in the blocked layout the
// primitive asks for (B's format `any`; blocked.cpp makes and keeps the copies).
#include <dlfcn.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <sys/stat.h>
#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "../core/error.h"
#include "cpu.h"

namespace mae::cpu {

namespace {

// the oneDNN functions used, resolved from the library by name
#define MAE_DNNL_FUNCTIONS(X) \
  X(dnnl_engine_create) \
  X(dnnl_stream_create) \
  X(dnnl_stream_destroy) \
  X(dnnl_stream_wait) \
  X(dnnl_memory_desc_init_by_strides) \
  X(dnnl_memory_desc_init_by_tag) \
  X(dnnl_matmul_desc_init) \
  X(dnnl_primitive_attr_create) \
  X(dnnl_primitive_attr_destroy) \
  X(dnnl_primitive_attr_set_scratchpad_mode) \
  X(dnnl_primitive_attr_set_output_scales) \
  X(dnnl_primitive_desc_create) \
  X(dnnl_primitive_desc_destroy) \
  X(dnnl_primitive_desc_query_md) \
  X(dnnl_memory_desc_get_size) \
  X(dnnl_primitive_create) \
  X(dnnl_primitive_destroy) \
  X(dnnl_primitive_execute) \
  X(dnnl_memory_create) \
  X(dnnl_memory_destroy) \
  X(dnnl_get_effective_cpu_isa) \
  X(dnnl_version)

struct Api {
#define MAE_DNNL_DECLARE(name) decltype(&::name) name = nullptr;
  MAE_DNNL_FUNCTIONS(MAE_DNNL_DECLARE)
#undef MAE_DNNL_DECLARE
};

Api api;
DnnlInfo info;
dnnl_engine_t engine = nullptr;
std::once_flag once;

bool file_exists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// the folder holding the addon (mae.node), found through one of its own functions
std::string addon_dir() {
  Dl_info dl;
  if (dladdr(reinterpret_cast<void*>(&dnnl_info), &dl) && dl.dli_fname) {
    std::string p = dl.dli_fname;
    const size_t slash = p.rfind('/');
    if (slash != std::string::npos) return p.substr(0, slash);
  }
  return ".";
}

const char* isa_name(dnnl_cpu_isa_t isa) {
  switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other (not in oneDNN 2.6's list)";
  }
}

// What AMX needs besides oneDNN, for saying why it runs without AMX on a CPU that has it (after oneDNN chose its ISA,
// which asks Linux for the AMX state when the CPU has AMX): the CPU (CPUID leaf 7: AMX-TILE, EDX bit 24, and
// AMX-BF16, bit 22), the kernel (XCR0 bits 17 and 18, tile configuration and data: Linux 5.16 and later set them),
// and this process's permission (arch_prctl ARCH_GET_XCOMP_PERM, 0x1022: bit 18 once ARCH_REQ_XCOMP_PERM was
// granted; the kernel refuses it, for one, where a thread's alternate signal stack is too small for the tile data).
void amx_support() {
#if defined(__x86_64__) && defined(__linux__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) info.cpu_amx = (d >> 24 & 1) && (d >> 22 & 1);
  unsigned lo = 0, hi = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) && (c >> 27 & 1)) {  // OSXSAVE: xgetbv may run
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    info.kernel_amx = (lo >> 17 & 3) == 3;
  }
  unsigned long perm = 0;
  info.amx_permitted = syscall(SYS_arch_prctl, 0x1022, &perm) == 0 && (perm >> 18 & 1);
#endif
}

void load() {
  const char* env = std::getenv("MAE_DNNL_LIB");
  const std::string here = addon_dir() + "/libdnnl.so.2";
  if (env && *env)
    info.library = env;
  else if (file_exists(here))
    info.library = here;
  else
    info.library = "libdnnl.so.2";
  // a shipped libOpenCL.so.1 first: libdnnl.so.2 needs it, and the loader then finds it loaded
  const std::string ocl = addon_dir() + "/libOpenCL.so.1";
  if (info.library == here && file_exists(ocl)) dlopen(ocl.c_str(), RTLD_NOW | RTLD_LOCAL);
  void* h = dlopen(info.library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    info.reason = "oneDNN (libdnnl.so.2) could not be loaded" + std::string(env && *env ? " from $MAE_DNNL_LIB" : "") +
                  ": " + (e ? e : "unknown dlopen error") +
                  " (install it, e.g. sudo apt-get install -y libdnnl2, or set MAE_DNNL_LIB to its path)";
    return;
  }
#define MAE_DNNL_RESOLVE(name)                                                             \
  api.name = reinterpret_cast<decltype(api.name)>(dlsym(h, #name));                        \
  if (!api.name) {                                                                         \
    info.reason = info.library + " has no " #name ": oneDNN 2.x (libdnnl.so.2) is needed"; \
    return;                                                                                \
  }
  MAE_DNNL_FUNCTIONS(MAE_DNNL_RESOLVE)
#undef MAE_DNNL_RESOLVE
  Dl_info dl;
  if (dladdr(reinterpret_cast<void*>(api.dnnl_version), &dl) && dl.dli_fname) info.library = dl.dli_fname;
  const dnnl_version_t* v = api.dnnl_version();
  info.version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  if (api.dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
    info.reason = "oneDNN " + info.version + " could not create a CPU engine";
    return;
  }
  const dnnl_cpu_isa_t isa = api.dnnl_get_effective_cpu_isa();
  info.isa = isa_name(isa);
  info.bf16_native = (isa & dnnl_cpu_isa_avx512_core_bf16) == dnnl_cpu_isa_avx512_core_bf16;
  // the ISA values are bit sets, each containing those below it (a later 2.x may report one past AMX)
  info.amx = (isa & dnnl_cpu_isa_avx512_core_amx) == dnnl_cpu_isa_avx512_core_amx;
  amx_support();
  info.amx_odd_k_declined = info.amx && std::make_tuple(v->major, v->minor, v->patch) < std::make_tuple(2, 7, 4);
  info.available = true;
}

// oneDNN before 2.7.4 (upstream "brgemm matmul: fix tile configuration"): its AMX brgemm matmul runs the kernel of
// the K tail with the tile configuration of a whole block when the tail, rounded up to a pair of bf16, fills a whole
// K block (K % K_blk == K_blk - 1, so K odd) and the block is at an edge of M or N (brgemm_matmul.cpp, compute_kernel:
// it reconfigures the tiles for the tail only when K_tail != K_blk): wrong results or accesses past the operands. K_blk
// depends on the shape and thread count, and an even K never meets it, so there every bf16 2-D product with an odd K
// above 32 (up to 32 there is no K tail) is declined; 3-D and 4-D strided ones (attention) do not take that kernel.
bool odd_k_declined(const MatDesc& a, const MatDesc& b) {
  const int64_t K = a.dims[a.ndims - 1];
  return info.amx_odd_k_declined && a.ndims == 2 && (a.dtype == DType::BF16 || b.dtype == DType::BF16) && K > 32 &&
         K % 2 == 1;
}

void check(dnnl_status_t s, const char* what, const std::string& shape) {
  if (s != dnnl_success)
    throw Error("oneDNN matmul " + shape + ": " + what + " failed (dnnl_status_t " + std::to_string((int)s) + ")");
}

dnnl_data_type_t dt(DType t) { return t == DType::BF16 ? dnnl_bf16 : dnnl_f32; }

std::string shape_of(const MatDesc& a, const MatDesc& b) {
  std::vector<int64_t> s(a.dims, a.dims + a.ndims);
  return shape_str(s) + " x " + shape_str(std::vector<int64_t>(b.dims, b.dims + b.ndims));
}

// a primitive for one shape, with its scratchpad size; for a product that reads a blocked weight (matmul_weight), the
// weights' memory descriptor and its layout as offsets (null: not a 2-D blocked one)
struct Prim {
  dnnl_primitive_t p = nullptr;
  size_t scratch = 0;
  dnnl_memory_desc_t wmd{};
  std::shared_ptr<const BlockedLayout> layout;
  ~Prim() {
    if (p) api.dnnl_primitive_destroy(p);
  }
};

std::mutex cache_mu;
std::map<std::vector<int64_t>, std::shared_ptr<Prim>> cache;
constexpr size_t kCacheLimit = 1024;  // distinct products kept; the cache starts over past it

void md(dnnl_memory_desc_t* m, const MatDesc& d, const std::string& shape) {
  check(api.dnnl_memory_desc_init_by_strides(m, d.ndims, d.dims, dt(d.dtype), d.strides), "memory descriptor", shape);
}

// the bias of a product into c: float32 [1, ..., 1, N]
MatDesc bias_desc(const MatDesc& c) {
  const int64_t N = c.dims[c.ndims - 1];
  MatDesc d{c.ndims, {}, {}, DType::F32};
  for (int i = 0; i < c.ndims; i++) {
    d.dims[i] = i == c.ndims - 1 ? N : 1;
    d.strides[i] = i == c.ndims - 1 ? 1 : N;
  }
  return d;
}

// element offsets of a 2-D blocked memory descriptor: the outer index of each dimension times its stride, plus the
// position within each inner block of that dimension times the block's stride (the inner blocks nest, the last
// innermost); null for another format
std::shared_ptr<const BlockedLayout> layout_of(const dnnl_memory_desc_t& md) {
  if (md.ndims != 2 || md.format_kind != dnnl_blocked || md.extra.flags != 0) return nullptr;
  const dnnl_blocking_desc_t& bd = md.format_desc.blocking;
  std::vector<int64_t> inner_stride(bd.inner_nblks);
  int64_t s = 1;
  for (int k = bd.inner_nblks - 1; k >= 0; k--) {
    inner_stride[k] = s;
    s *= bd.inner_blks[k];
  }
  auto L = std::make_shared<BlockedLayout>();
  for (int d = 0; d < 2; d++) {
    std::vector<int64_t>& off = d == 0 ? L->row_off : L->col_off;
    int64_t block = 1;
    for (int k = 0; k < bd.inner_nblks; k++)
      if (bd.inner_idxs[k] == d) block *= bd.inner_blks[k];
    off.resize(md.dims[d]);
    for (int64_t i = 0; i < md.dims[d]; i++) {
      int64_t o = (d == 0 ? md.offset0 : 0) + i / block * bd.strides[d], div = 1;
      for (int k = bd.inner_nblks - 1; k >= 0; k--)
        if (bd.inner_idxs[k] == d) {
          o += i / div % bd.inner_blks[k] * inner_stride[k];
          div *= bd.inner_blks[k];
        }
      off[i] = o;
    }
  }
  L->bytes = api.dnnl_memory_desc_get_size(&md);
  return L;
}

// blocked_b: B in the layout oneDNN chooses (format `any`), for matmul_weight. The calling thread's OpenMP thread count
// is part of the key: a primitive runs on at most the threads it was made for (brgemm takes the smaller of those and
// the current count), so one made before setNumThreads raised the count, or in a worker thread of fewer threads,
// would keep the product on fewer threads (a 2048 x 1024 x 1024 bf16 product made at 1 thread ran at 1 thread's
// speed at 2).
std::shared_ptr<Prim> primitive(const MatDesc& a, const MatDesc& b, bool bias, float alpha, const MatDesc& c,
                                bool blocked_b = false) {
  std::vector<int64_t> key = {omp_get_max_threads(), a.ndims, (int64_t)a.dtype, (int64_t)b.dtype, (int64_t)c.dtype,
                              bias, blocked_b, 0};
  std::memcpy(&key.back(), &alpha, sizeof alpha);
  for (const MatDesc* d : {&a, &b, &c})
    for (int i = 0; i < d->ndims; i++) {
      key.push_back(d->dims[i]);
      key.push_back(d->strides[i]);
    }
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  const std::string shape = shape_of(a, b);
  dnnl_memory_desc_t am, bm, cm, biasm;
  md(&am, a, shape);
  if (blocked_b)
    check(api.dnnl_memory_desc_init_by_tag(&bm, b.ndims, b.dims, dt(b.dtype), dnnl_format_tag_any),
          "weights descriptor", shape);
  else
    md(&bm, b, shape);
  md(&cm, c, shape);
  if (bias) md(&biasm, bias_desc(c), shape);
  dnnl_matmul_desc_t desc;
  check(api.dnnl_matmul_desc_init(&desc, &am, &bm, bias ? &biasm : nullptr, &cm), "matmul descriptor", shape);
  dnnl_primitive_attr_t attr;
  check(api.dnnl_primitive_attr_create(&attr), "attributes", shape);
  dnnl_status_t s = api.dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
  if (s == dnnl_success && alpha != 1.0f) s = api.dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha);
  dnnl_primitive_desc_t pd = nullptr;
  if (s == dnnl_success) s = api.dnnl_primitive_desc_create(&pd, &desc, attr, engine, nullptr);
  api.dnnl_primitive_attr_destroy(attr);
  if (s == dnnl_unimplemented) {
    // no oneDNN kernel for this product on this CPU (bf16 below AVX-512 in oneDNN 2.x): remembered as such
    std::lock_guard<std::mutex> lock(cache_mu);
    cache[key] = nullptr;
    return nullptr;
  }
  check(s, "primitive descriptor", shape);
  auto prim = std::make_shared<Prim>();
  const dnnl_memory_desc_t* sm = api.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  prim->scratch = sm ? api.dnnl_memory_desc_get_size(sm) : 0;
  if (blocked_b) {
    const dnnl_memory_desc_t* wm = api.dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (wm) {
      prim->wmd = *wm;
      prim->layout = layout_of(*wm);
    }
  }
  s = api.dnnl_primitive_create(&prim->p, pd);
  api.dnnl_primitive_desc_destroy(pd);
  check(s, "primitive", shape);
  std::lock_guard<std::mutex> lock(cache_mu);
  if (cache.size() >= kCacheLimit) cache.clear();
  cache[key] = prim;
  return prim;
}

// this thread's stream
struct Stream {
  dnnl_stream_t s = nullptr;
  ~Stream() {
    if (s) api.dnnl_stream_destroy(s);
  }
};

dnnl_stream_t stream(const std::string& shape) {
  thread_local Stream st;
  if (!st.s) check(api.dnnl_stream_create(&st.s, engine, dnnl_stream_default_flags), "stream", shape);
  return st.s;
}

// memory objects of one call, destroyed when it returns
struct Mems {
  std::vector<dnnl_memory_t> m;
  ~Mems() {
    for (dnnl_memory_t x : m) api.dnnl_memory_destroy(x);
  }
  dnnl_exec_arg_t arg(int which, const MatDesc& d, const void* ptr, const std::string& shape) {
    dnnl_memory_desc_t desc;
    md(&desc, d, shape);
    return arg(which, desc, ptr, shape);
  }
  dnnl_exec_arg_t arg(int which, const dnnl_memory_desc_t& desc, const void* ptr, const std::string& shape) {
    dnnl_memory_t x;
    check(api.dnnl_memory_create(&x, &desc, engine, const_cast<void*>(ptr)), "memory", shape);
    m.push_back(x);
    return {which, x};
  }
};

}  // namespace

const DnnlInfo& dnnl_info() {
  std::call_once(once, [] {
    load();
    // whether oneDNN has a bf16 matmul kernel on this CPU (oneDNN 2.x needs AVX-512), tried on a small product
    const MatDesc m = mat(16, 16, false, DType::BF16);
    if (info.available) info.bf16_matmul = primitive(m, m, false, 1.0f, m) != nullptr;
    info.bf16_products = info.bf16_matmul && info.bf16_native;
  });
  return info;
}

MatDesc mat(int64_t rows, int64_t cols, bool transposed, DType dtype) {
  MatDesc d{2, {rows, cols}, {transposed ? 1 : cols, transposed ? rows : 1}, dtype};
  return d;
}

namespace {

// runs primitive p on A, B (its memory descriptor: bm), C and the bias
void run(const Prim& p, const MatDesc& a, const void* A, const dnnl_memory_desc_t& bm, const void* B, const float* bias,
         const MatDesc& c, void* C, const std::string& shape) {
  Mems mems;
  std::vector<dnnl_exec_arg_t> args = {mems.arg(DNNL_ARG_SRC, a, A, shape), mems.arg(DNNL_ARG_WEIGHTS, bm, B, shape),
                                       mems.arg(DNNL_ARG_DST, c, C, shape)};
  if (bias) args.push_back(mems.arg(DNNL_ARG_BIAS, bias_desc(c), bias, shape));
  void* scratch = p.scratch ? allocator.alloc(p.scratch) : nullptr;
  if (scratch) {
    dnnl_memory_desc_t desc;
    const dnnl_dims_t dims = {(dnnl_dim_t)p.scratch}, strides = {1};
    check(api.dnnl_memory_desc_init_by_strides(&desc, 1, dims, dnnl_u8, strides), "scratchpad", shape);
    dnnl_memory_t x;
    check(api.dnnl_memory_create(&x, &desc, engine, scratch), "scratchpad", shape);
    mems.m.push_back(x);
    args.push_back({DNNL_ARG_SCRATCHPAD, x});
  }
  dnnl_stream_t s = stream(shape);
  dnnl_status_t st = api.dnnl_primitive_execute(p.p, s, (int)args.size(), args.data());
  if (st == dnnl_success) st = api.dnnl_stream_wait(s);
  if (scratch) allocator.free(scratch, p.scratch);
  check(st, "execution", shape);
}

}  // namespace

bool matmul(const MatDesc& a, const void* A, const MatDesc& b, const void* B, const float* bias, float alpha,
            const MatDesc& c, void* C) {
  if (!dnnl_info().available) return false;
  if ((a.dtype == DType::BF16 || b.dtype == DType::BF16) && !dnnl_info().bf16_products) return false;
  if (odd_k_declined(a, b)) return false;
  const std::string shape = shape_of(a, b);
  std::shared_ptr<Prim> p = primitive(a, b, bias != nullptr, alpha, c);
  if (!p) return false;
  dnnl_memory_desc_t bm;
  md(&bm, b, shape);
  run(*p, a, A, bm, B, bias, c, C, shape);
  return true;
}

bool matmul_weight(const MatDesc& a, const void* A, const void* W, int64_t N, int64_t K, bool fwd, const float* bias,
                   const MatDesc& c, void* C) {
  if (!dnnl_info().bf16_products || !blocked_weights_registered(W)) return false;
  const MatDesc b = fwd ? mat(K, N, true, DType::BF16) : mat(N, K, false, DType::BF16);
  if (odd_k_declined(a, b)) return false;
  std::shared_ptr<Prim> p = primitive(a, b, bias != nullptr, 1.0f, c, true);
  if (!p || !p->layout) return false;
  const void* B = blocked_weights(W, N, K, fwd, p->layout);
  if (!B) return false;
  run(*p, a, A, p->wmd, B, bias, c, C, shape_of(a, b));
  return true;
}

}  // namespace mae::cpu
