// Our own minimal declarations of the cuBLASLt API (no cuBLAS headers at build time: the library is opened with
// dlopen at run time, libcublasLt.so.13, then .so.12, or the file/folder named by MAE_CUBLASLT_PATH).
//
// Only what gemm.cu uses is declared. The enum values are those of cublasLt.h / cublas_api.h / library_types.h,
// which NVIDIA keeps stable across releases (they are part of the ABI):
//   cublasComputeType_t CUBLAS_COMPUTE_32F = 68; cudaDataType_t CUDA_R_32F = 0, CUDA_R_16BF = 14 (library_types.h);
//   cublasOperation_t CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
//   cublasLtMatmulDescAttributes_t COMPUTE_TYPE = 0, SCALE_TYPE = 1, POINTER_MODE = 2, TRANSA = 3, TRANSB = 4,
//     EPILOGUE = 7, BIAS_POINTER = 8, BIAS_DATA_TYPE = 26 (int32_t, a cudaDataType_t);
//   cublasLtEpilogue_t DEFAULT = 1, BIAS = 4, BGRADB = 512 (never GELU = 32 / GELU_BIAS = 36: tanh approximation);
//   cublasStatus_t SUCCESS = 0, NOT_SUPPORTED = 15;
//   cublasLtMatmulPreferenceAttributes_t SEARCH_MODE = 0, MAX_WORKSPACE_BYTES = 1 (uint64_t).
// Opaque descriptors are only ever created by the library, so their sizes do not matter here; the two structs we
// allocate ourselves, cublasLtMatmulAlgo_t (uint64_t data[8]) and cublasLtMatmulHeuristicResult_t, have kept their
// layout since CUDA 10.1.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace mae::cuda::lt {

typedef int cublasStatus_t;  // CUBLAS_STATUS_SUCCESS = 0
constexpr cublasStatus_t CUBLAS_STATUS_SUCCESS = 0;
constexpr cublasStatus_t CUBLAS_STATUS_NOT_SUPPORTED = 15;

typedef struct cublasLtContext* cublasLtHandle_t;
typedef struct MaeLtMatmulDescOpaque* cublasLtMatmulDesc_t;
typedef struct MaeLtMatrixLayoutOpaque* cublasLtMatrixLayout_t;
typedef struct MaeLtMatmulPreferenceOpaque* cublasLtMatmulPreference_t;

typedef struct {
  uint64_t data[8];
} cublasLtMatmulAlgo_t;

typedef struct {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;

// enums as plain ints with their values
constexpr int CUBLAS_COMPUTE_32F = 68;
constexpr int CUDA_R_32F_ = 0;
constexpr int CUDA_R_16BF_ = 14;
constexpr int32_t CUBLAS_OP_N = 0;
constexpr int32_t CUBLAS_OP_T = 1;

constexpr int CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0;
constexpr int CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1;
constexpr int CUBLASLT_MATMUL_DESC_POINTER_MODE = 2;
constexpr int CUBLASLT_MATMUL_DESC_TRANSA = 3;
constexpr int CUBLASLT_MATMUL_DESC_TRANSB = 4;
constexpr int CUBLASLT_MATMUL_DESC_EPILOGUE = 7;
constexpr int CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8;
constexpr int CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = 26;

constexpr uint32_t CUBLASLT_EPILOGUE_DEFAULT = 1;
constexpr uint32_t CUBLASLT_EPILOGUE_BIAS = 4;
constexpr uint32_t CUBLASLT_EPILOGUE_BGRADB = 512;

constexpr int CUBLASLT_MATMUL_PREF_SEARCH_MODE = 0;
constexpr int CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1;

// The entry points, resolved with dlsym. Enum-typed parameters are passed as int (same size and calling
// convention as a C enum on every platform CUDA supports).
struct Api {
  cublasStatus_t (*Create)(cublasLtHandle_t*);
  cublasStatus_t (*Destroy)(cublasLtHandle_t);
  size_t (*GetVersion)(void);
  const char* (*GetStatusString)(cublasStatus_t);  // may be null (older releases)
  cublasStatus_t (*MatmulDescCreate)(cublasLtMatmulDesc_t*, int computeType, int scaleType);
  cublasStatus_t (*MatmulDescDestroy)(cublasLtMatmulDesc_t);
  cublasStatus_t (*MatmulDescSetAttribute)(cublasLtMatmulDesc_t, int attr, const void* buf, size_t size);
  cublasStatus_t (*MatrixLayoutCreate)(cublasLtMatrixLayout_t*, int type, uint64_t rows, uint64_t cols, int64_t ld);
  cublasStatus_t (*MatrixLayoutDestroy)(cublasLtMatrixLayout_t);
  cublasStatus_t (*MatmulPreferenceCreate)(cublasLtMatmulPreference_t*);
  cublasStatus_t (*MatmulPreferenceDestroy)(cublasLtMatmulPreference_t);
  cublasStatus_t (*MatmulPreferenceSetAttribute)(cublasLtMatmulPreference_t, int attr, const void* buf, size_t size);
  cublasStatus_t (*MatmulAlgoGetHeuristic)(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t,
                                           cublasLtMatrixLayout_t, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t,
                                           cublasLtMatmulPreference_t, int requested,
                                           cublasLtMatmulHeuristicResult_t* results, int* returned);
  cublasStatus_t (*Matmul)(cublasLtHandle_t, cublasLtMatmulDesc_t, const void* alpha, const void* A,
                           cublasLtMatrixLayout_t, const void* B, cublasLtMatrixLayout_t, const void* beta,
                           const void* C, cublasLtMatrixLayout_t, void* D, cublasLtMatrixLayout_t,
                           const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspaceSize,
                           cudaStream_t stream);
};

// Opens cuBLASLt (once). Returns false with a reason when it cannot be found or lacks a symbol.
bool load(std::string* reason);
// The loaded API (valid after load() returned true), the path it came from, its version.
const Api& api();
const std::string& path();
// "CUBLAS_STATUS_..." text for a status.
std::string status_string(cublasStatus_t s);

}  // namespace mae::cuda::lt
