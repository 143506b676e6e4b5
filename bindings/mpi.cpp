// Opens Open MPI at run time (see mpi.h): the given path or $MAE_MPI_LIB (a file, or a folder holding
// libmpi.so.40), then libmpi.so.40 from the loader's search path. Nothing here starts MPI; bindings/comm.cpp does.
#include "mpi.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>

namespace mae::mpi {

namespace {

Api g_api{};
std::string g_path, g_version, g_reason, g_requested;
bool g_tried = false, g_loaded = false;
std::mutex g_mu;

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

template <typename F>
void sym(void* h, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  if (!*out) *missing += (missing->empty() ? "" : ", ") + std::string(name);
}

void do_load(const std::string& given) {
  const char* env = std::getenv("MAE_MPI_LIB");
  std::string file = !given.empty() ? given : (env && *env ? std::string(env) : std::string("libmpi.so.40"));
  if (is_dir(file)) file += (file.back() == '/' ? "" : "/") + std::string("libmpi.so.40");
  // RTLD_GLOBAL: Open MPI opens its own components (mca_*.so) with dlopen, and they resolve libmpi's symbols
  void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    const char* e = dlerror();
    g_reason = "the MPI library could not be opened (tried:\n  " + file + ": " + (e ? e : "not found") +
               ")\nInstall Open MPI (Debian/Ubuntu: sudo apt-get install openmpi-bin) or set MAE_MPI_LIB (--mpi-lib) "
               "to its libmpi.so.40 or the folder holding it.";
    return;
  }
  Dl_info info;
  void* any = dlsym(h, "MPI_Init_thread");
  g_path = (any && dladdr(any, &info) && info.dli_fname) ? info.dli_fname : file;
  if (!dlsym(h, "ompi_mpi_comm_world")) {
    g_reason = g_path + " is not Open MPI (it has no ompi_mpi_comm_world): only Open MPI's ABI (libmpi.so.40, Open MPI "
                        "3.x to 5.x) is supported; MPICH, Intel MPI and MVAPICH use another one";
    return;
  }
  std::string missing;
  sym(h, "MPI_Init_thread", &g_api.Init_thread, &missing);
  sym(h, "MPI_Initialized", &g_api.Initialized, &missing);
  sym(h, "MPI_Finalize", &g_api.Finalize, &missing);
  sym(h, "MPI_Abort", &g_api.Abort, &missing);
  sym(h, "MPI_Get_library_version", &g_api.Get_library_version, &missing);
  sym(h, "MPI_Error_string", &g_api.Error_string, &missing);
  sym(h, "MPI_Comm_rank", &g_api.Comm_rank, &missing);
  sym(h, "MPI_Comm_size", &g_api.Comm_size, &missing);
  sym(h, "MPI_Comm_dup", &g_api.Comm_dup, &missing);
  sym(h, "MPI_Comm_split_type", &g_api.Comm_split_type, &missing);
  sym(h, "MPI_Comm_set_errhandler", &g_api.Comm_set_errhandler, &missing);
  sym(h, "MPI_Iallreduce", &g_api.Iallreduce, &missing);
  sym(h, "MPI_Ibcast", &g_api.Ibcast, &missing);
  sym(h, "MPI_Iallgather", &g_api.Iallgather, &missing);
  sym(h, "MPI_Iallgatherv", &g_api.Iallgatherv, &missing);
  sym(h, "MPI_Ibarrier", &g_api.Ibarrier, &missing);
  sym(h, "MPI_Isend", &g_api.Isend, &missing);
  sym(h, "MPI_Iprobe", &g_api.Iprobe, &missing);
  sym(h, "MPI_Recv", &g_api.Recv, &missing);
  sym(h, "MPI_Get_count", &g_api.Get_count, &missing);
  sym(h, "MPI_Test", &g_api.Test, &missing);
  sym(h, "ompi_mpi_comm_world", &g_api.comm_world, &missing);
  sym(h, "ompi_mpi_byte", &g_api.byte, &missing);
  sym(h, "ompi_mpi_float", &g_api.float_, &missing);
  sym(h, "ompi_mpi_double", &g_api.double_, &missing);
  sym(h, "ompi_mpi_int", &g_api.int_, &missing);
  sym(h, "ompi_mpi_op_sum", &g_api.sum, &missing);
  sym(h, "ompi_mpi_op_max", &g_api.max, &missing);
  sym(h, "ompi_mpi_info_null", &g_api.info_null, &missing);
  sym(h, "ompi_mpi_errors_return", &g_api.errors_return, &missing);
  if (!missing.empty()) {
    g_reason = "the MPI library " + g_path + " lacks " + missing + " (MPI 3.0 or newer is needed: Open MPI 3.x to 5.x)";
    return;
  }
  // allowed before MPI_Init (MPI 3.0)
  char v[MAX_LIBRARY_VERSION_STRING + 1] = {0};
  int len = 0;
  if (g_api.Get_library_version(v, &len) == SUCCESS) {
    g_version.assign(v, len > 0 && len <= MAX_LIBRARY_VERSION_STRING ? (size_t)len : 0);
    const size_t cut = g_version.find_first_of(",\n");
    if (cut != std::string::npos) g_version.resize(cut);
  }
  g_loaded = true;  // the library stays open for the life of the process
}

}  // namespace

bool load(const std::string& path, std::string* reason) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_tried) {
    g_tried = true;
    g_requested = path;
    do_load(path);
  }
  if (!g_loaded && reason) *reason = g_reason;
  return g_loaded;
}

const Api& api() { return g_api; }
const std::string& path() { return g_path; }
const std::string& requested() { return g_requested; }
const std::string& version() { return g_version; }

std::string error_string(int code) {
  char text[MAX_ERROR_STRING + 1] = {0};
  int len = 0;
  if (g_api.Error_string && g_api.Error_string(code, text, &len) == SUCCESS && len > 0 && len <= MAX_ERROR_STRING)
    return std::string(text, len);
  return "MPI error " + std::to_string(code);
}

}  // namespace mae::mpi
