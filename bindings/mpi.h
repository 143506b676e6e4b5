// Our own minimal declarations of the Open MPI ABI and its run-time loader (no MPI headers or libraries at build
// time: libmpi.so.40 is opened with dlopen when a run asks for MPI, as native/cuda/cublaslt.h does for cuBLASLt).
//
// Only what bindings/comm.cpp uses is declared. In Open MPI (libmpi.so.40: Open MPI 3.x, 4.x and 5.x) every handle
// is a pointer: MPI_COMM_WORLD is the address of the global object ompi_mpi_comm_world, MPI_FLOAT of ompi_mpi_float,
// MPI_SUM of ompi_mpi_op_sum, and so on, so the handles are found with dlsym like the functions. The constants are
// those of Open MPI's mpi.h: MPI_SUCCESS 0, MPI_THREAD_FUNNELED 1, MPI_COMM_TYPE_SHARED 0, MPI_ANY_SOURCE -1,
// MPI_IN_PLACE (void*)1, MPI_STATUS_IGNORE null, and MPI_Status is { int MPI_SOURCE, MPI_TAG, MPI_ERROR;
// int _cancelled; size_t _ucount; }. MPICH and its derivatives (libmpi.so.12: integer handles) speak another ABI
// and are refused by name.
#pragma once
#include <cstddef>
#include <string>

namespace mae::mpi {

typedef void* Comm;
typedef void* Datatype;
typedef void* Op;
typedef void* Request;
typedef void* Info;
typedef void* Errhandler;

struct Status {
  int source;
  int tag;
  int error;
  int cancelled_;
  size_t ucount_;
};

constexpr int SUCCESS = 0;
constexpr int THREAD_FUNNELED = 1;
constexpr int COMM_TYPE_SHARED = 0;
constexpr int ANY_SOURCE = -1;
inline void* const IN_PLACE = reinterpret_cast<void*>(1);
constexpr int MAX_ERROR_STRING = 256;
constexpr int MAX_LIBRARY_VERSION_STRING = 256;

struct Api {
  int (*Init_thread)(int* argc, char*** argv, int required, int* provided);
  int (*Initialized)(int* flag);
  int (*Finalize)(void);
  int (*Abort)(Comm, int code);
  int (*Get_library_version)(char* version, int* len);
  int (*Error_string)(int code, char* text, int* len);
  int (*Comm_rank)(Comm, int*);
  int (*Comm_size)(Comm, int*);
  int (*Comm_dup)(Comm, Comm*);
  int (*Comm_split_type)(Comm, int type, int key, Info, Comm*);
  int (*Comm_set_errhandler)(Comm, Errhandler);
  int (*Iallreduce)(const void* send, void* recv, int count, Datatype, Op, Comm, Request*);
  int (*Ibcast)(void* buf, int count, Datatype, int root, Comm, Request*);
  int (*Iallgather)(const void* send, int scount, Datatype, void* recv, int rcount, Datatype, Comm, Request*);
  int (*Iallgatherv)(const void* send, int scount, Datatype, void* recv, const int* rcounts, const int* displs,
                     Datatype, Comm, Request*);
  int (*Ibarrier)(Comm, Request*);
  int (*Isend)(const void* buf, int count, Datatype, int dest, int tag, Comm, Request*);
  int (*Iprobe)(int source, int tag, Comm, int* flag, Status*);
  int (*Recv)(void* buf, int count, Datatype, int source, int tag, Comm, Status*);
  int (*Get_count)(const Status*, Datatype, int* count);
  int (*Test)(Request*, int* flag, Status*);
  // predefined handles (addresses of Open MPI's global objects)
  Comm comm_world;
  Datatype byte, float_, double_, int_;
  Op sum, max;
  Info info_null;
  Errhandler errors_return;
};

// Opens the MPI library once per process: `path` (a file, or a folder holding libmpi.so.40) if not empty, else
// $MAE_MPI_LIB (the same), else libmpi.so.40 from the loader's search path. Returns false with the reason when it
// cannot be opened, is not Open MPI or lacks a symbol. A later call with another path keeps the first library.
bool load(const std::string& path, std::string* reason);
const Api& api();
// the file the library was opened from, and MPI_Get_library_version's first line (valid after load())
const std::string& path();
// the path the first load() was given ("" for the default)
const std::string& requested();
const std::string& version();
// MPI_Error_string of an error code
std::string error_string(int code);

}  // namespace mae::mpi
