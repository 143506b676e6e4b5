// Opens cuBLASLt at run time: MAE_CUBLASLT_PATH (a file, or a folder holding libcublasLt.so.*) first, then the
// loader's search path for libcublasLt.so.13 and libcublasLt.so.12.
#include "cublaslt.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace mae::cuda::lt {

namespace {

Api g_api{};
std::string g_path;
bool g_loaded = false;
std::string g_reason;
std::once_flag g_once;

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

template <typename F>
bool sym(void* h, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  if (!*out) {
    *missing += (missing->empty() ? "" : ", ") + std::string(name);
    return false;
  }
  return true;
}

void do_load() {
  std::vector<std::string> candidates;
  const char* env = std::getenv("MAE_CUBLASLT_PATH");
  if (env && *env) {
    std::string p = env;
    if (is_dir(p)) {
      if (p.back() != '/') p += '/';
      for (const char* n : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}) candidates.push_back(p + n);
    } else {
      candidates.push_back(p);
    }
  }
  candidates.push_back("libcublasLt.so.13");
  candidates.push_back("libcublasLt.so.12");

  void* h = nullptr;
  std::string tried;
  for (const std::string& c : candidates) {
    h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) break;
    const char* e = dlerror();
    tried += "\n  " + c + ": " + (e ? e : "not found");
  }
  if (!h) {
    g_reason = "cuBLASLt was not found (tried:" + tried +
               ")\nSet MAE_CUBLASLT_PATH to libcublasLt.so.* or its folder (for example the nvidia/cublas/lib folder "
               "of a Python environment with PyTorch or nvidia-cublas installed), or install the CUDA toolkit's cuBLAS.";
    return;
  }
  std::string missing;
  bool ok = true;
  ok &= sym(h, "cublasLtCreate", &g_api.Create, &missing);
  ok &= sym(h, "cublasLtDestroy", &g_api.Destroy, &missing);
  ok &= sym(h, "cublasLtGetVersion", &g_api.GetVersion, &missing);
  ok &= sym(h, "cublasLtMatmulDescCreate", &g_api.MatmulDescCreate, &missing);
  ok &= sym(h, "cublasLtMatmulDescDestroy", &g_api.MatmulDescDestroy, &missing);
  ok &= sym(h, "cublasLtMatmulDescSetAttribute", &g_api.MatmulDescSetAttribute, &missing);
  ok &= sym(h, "cublasLtMatrixLayoutCreate", &g_api.MatrixLayoutCreate, &missing);
  ok &= sym(h, "cublasLtMatrixLayoutDestroy", &g_api.MatrixLayoutDestroy, &missing);
  ok &= sym(h, "cublasLtMatmulPreferenceCreate", &g_api.MatmulPreferenceCreate, &missing);
  ok &= sym(h, "cublasLtMatmulPreferenceDestroy", &g_api.MatmulPreferenceDestroy, &missing);
  ok &= sym(h, "cublasLtMatmulPreferenceSetAttribute", &g_api.MatmulPreferenceSetAttribute, &missing);
  ok &= sym(h, "cublasLtMatmulAlgoGetHeuristic", &g_api.MatmulAlgoGetHeuristic, &missing);
  ok &= sym(h, "cublasLtMatmul", &g_api.Matmul, &missing);
  g_api.GetStatusString = reinterpret_cast<const char* (*)(cublasStatus_t)>(dlsym(h, "cublasLtGetStatusString"));

  Dl_info info;
  g_path = (g_api.Create && dladdr(reinterpret_cast<void*>(g_api.Create), &info) && info.dli_fname)
               ? info.dli_fname
               : "libcublasLt";
  if (!ok) {
    g_reason = "cuBLASLt at " + g_path + " lacks " + missing;
    dlclose(h);
    return;
  }
  g_loaded = true;  // the handle stays open for the life of the process
}

}  // namespace

bool load(std::string* reason) {
  std::call_once(g_once, do_load);
  if (!g_loaded && reason) *reason = g_reason;
  return g_loaded;
}

const Api& api() { return g_api; }
const std::string& path() { return g_path; }

std::string status_string(cublasStatus_t s) {
  if (g_api.GetStatusString) {
    const char* t = g_api.GetStatusString(s);
    if (t) return t;
  }
  return "cublasStatus " + std::to_string(s);
}

}  // namespace mae::cuda::lt
