// Linear layer through cuBLASLt (the CUDA twin of native/cpu/gemm.cpp): y = x W^T + b, W stored [out, in].
//   forward:  x [M, K], w [N, K], b [N] -> y [M, N]
//   backward: dx = dy W [M, K], dW = dy^T x [N, K], db = column sums of dy [N] (our deterministic column_sum)
// cuBLASLt works column-major; a row-major [R, C] matrix is a column-major C x R matrix with leading dimension C,
// so y^T = W x^T is D = op(A) op(B) with A = w (K x N, transposed), B = x (K x M), D = y^T (N x M), and so on.
// Precision: float32 operands use CUBLAS_COMPUTE_32F (true fp32, never TF32). When any operand or the output of a
// product is bfloat16, both operands are bfloat16 (a float32 one is converted into scratch memory first) and the
// product accumulates in fp32 (CUBLAS_COMPUTE_32F); the output keeps its own dtype. The bias is fused with
// CUBLASLT_EPILOGUE_BIAS when it has the output's dtype and an algorithm supports it, otherwise added by a kernel.
// Never the GELU epilogues: they use the tanh approximation and MAE uses the exact erf GELU.
#include <map>
#include <mutex>
#include <tuple>

#include "common.cuh"
#include "cublaslt.h"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;  // what NVIDIA recommends for Hopper; ample for Ampere/Ada

#define MAE_LT_CHECK(expr, what)                                                                              \
  do {                                                                                                        \
    lt::cublasStatus_t s_ = (expr);                                                                           \
    if (s_ != lt::CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuBLASLt ") + what + " failed: " + lt::status_string(s_)); \
  } while (0)

std::mutex g_lt_mu;

lt::cublasLtHandle_t handle(Context& c) {
  if (c.cublaslt) return static_cast<lt::cublasLtHandle_t>(c.cublaslt);
  std::lock_guard<std::mutex> lock(g_lt_mu);
  if (!c.cublaslt) {
    std::string why;
    if (!lt::load(&why)) throw Error(why);
    lt::cublasLtHandle_t h = nullptr;
    MAE_LT_CHECK(lt::api().Create(&h), "cublasLtCreate");
    c.workspace = device_alloc(c.device, kWorkspaceBytes);  // kept for the life of the process
    c.workspace_bytes = kWorkspaceBytes;
    c.cublaslt = h;
  }
  return static_cast<lt::cublasLtHandle_t>(c.cublaslt);
}

// RAII holders for the descriptors of one call
struct Desc {
  lt::cublasLtMatmulDesc_t d = nullptr;
  ~Desc() {
    if (d) lt::api().MatmulDescDestroy(d);
  }
};
struct Layout {
  lt::cublasLtMatrixLayout_t l = nullptr;
  ~Layout() {
    if (l) lt::api().MatrixLayoutDestroy(l);
  }
};
struct Pref {
  lt::cublasLtMatmulPreference_t p = nullptr;
  ~Pref() {
    if (p) lt::api().MatmulPreferenceDestroy(p);
  }
};

using Key = std::tuple<int, int, int, uint64_t, uint64_t, uint64_t, int64_t, int64_t, int64_t, int, int, uint32_t>;
struct Cached {
  bool found;
  lt::cublasLtMatmulAlgo_t algo;
};
std::map<Key, Cached> g_algos;
std::mutex g_algo_mu;

// D (m x n, ld ldd, type dt) = op(A) op(B) [+ bias per row of D], column-major. Returns false (and does nothing)
// when a bias epilogue was asked for and no algorithm supports it; throws on every other failure.
bool matmul(Context& c, int32_t transa, int32_t transb, uint64_t m, uint64_t n, uint64_t k, const void* A,
            int64_t lda, const void* B, int64_t ldb, void* D, int64_t ldd, int abt, int dt, const void* bias,
            const char* name) {
  lt::cublasLtHandle_t h = handle(c);
  const lt::Api& L = lt::api();
  const uint32_t epi = bias ? lt::CUBLASLT_EPILOGUE_BIAS : lt::CUBLASLT_EPILOGUE_DEFAULT;
  Desc desc;
  MAE_LT_CHECK(L.MatmulDescCreate(&desc.d, lt::CUBLAS_COMPUTE_32F, lt::CUDA_R_32F_), "MatmulDescCreate");
  MAE_LT_CHECK(L.MatmulDescSetAttribute(desc.d, lt::CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof transa), "TRANSA");
  MAE_LT_CHECK(L.MatmulDescSetAttribute(desc.d, lt::CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof transb), "TRANSB");
  MAE_LT_CHECK(L.MatmulDescSetAttribute(desc.d, lt::CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "EPILOGUE");
  if (bias)
    MAE_LT_CHECK(L.MatmulDescSetAttribute(desc.d, lt::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
                 "BIAS_POINTER");
  Layout la, lb, ld;
  const bool ta = transa == lt::CUBLAS_OP_T, tb = transb == lt::CUBLAS_OP_T;
  MAE_LT_CHECK(L.MatrixLayoutCreate(&la.l, abt, ta ? k : m, ta ? m : k, lda), "MatrixLayoutCreate(A)");
  MAE_LT_CHECK(L.MatrixLayoutCreate(&lb.l, abt, tb ? n : k, tb ? k : n, ldb), "MatrixLayoutCreate(B)");
  MAE_LT_CHECK(L.MatrixLayoutCreate(&ld.l, dt, m, n, ldd), "MatrixLayoutCreate(D)");

  const Key key{c.device, transa, transb, m, n, k, lda, ldb, ldd, abt, dt, epi};
  Cached cached{};
  bool have = false;
  {
    std::lock_guard<std::mutex> lock(g_algo_mu);
    auto it = g_algos.find(key);
    if (it != g_algos.end()) {
      cached = it->second;
      have = true;
    }
  }
  if (!have) {
    Pref pref;
    MAE_LT_CHECK(L.MatmulPreferenceCreate(&pref.p), "MatmulPreferenceCreate");
    const uint64_t ws = c.workspace_bytes;
    MAE_LT_CHECK(L.MatmulPreferenceSetAttribute(pref.p, lt::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
                 "MAX_WORKSPACE_BYTES");
    lt::cublasLtMatmulHeuristicResult_t res[1] = {};
    int returned = 0;
    lt::cublasStatus_t s =
        L.MatmulAlgoGetHeuristic(h, desc.d, la.l, lb.l, ld.l, ld.l, pref.p, 1, res, &returned);
    cached.found = s == lt::CUBLAS_STATUS_SUCCESS && returned > 0 && res[0].state == lt::CUBLAS_STATUS_SUCCESS;
    if (cached.found) cached.algo = res[0].algo;
    std::lock_guard<std::mutex> lock(g_algo_mu);
    g_algos[key] = cached;
  }
  if (!cached.found) {
    if (bias) return false;
    throw Error(std::string(name) + ": cuBLASLt has no algorithm for a " + (abt == lt::CUDA_R_16BF_ ? "bf16" : "fp32") +
                " product of " + std::to_string(m) + "x" + std::to_string(k) + " by " + std::to_string(k) + "x" +
                std::to_string(n) + " (transa " + std::to_string(transa) + ", transb " + std::to_string(transb) + ")");
  }
  const float alpha = 1.0f, beta = 0.0f;
  MAE_LT_CHECK(L.Matmul(h, desc.d, &alpha, A, la.l, B, lb.l, &beta, D, ld.l, D, ld.l, &cached.algo, c.workspace,
                        c.workspace_bytes, c.stream),
               (std::string("cublasLtMatmul (") + name + ")").c_str());
  MAE_KERNEL_CHECK(name, c.stream);
  return true;
}

int lt_type(DType t) { return t == DType::BF16 ? lt::CUDA_R_16BF_ : lt::CUDA_R_32F_; }

// An operand in the product's input type: the tensor itself, or a converted copy in scratch memory.
struct Operand {
  const void* ptr;
  Scratch* tmp = nullptr;
  Operand(Context& c, const TensorView& v, bool want_bf16) : ptr(v.data) {
    if ((v.dtype == DType::BF16) == want_bf16) return;
    tmp = new Scratch(c.device, (size_t)v.numel() * (want_bf16 ? 2 : 4));
    convert_n(c, Dst{tmp->ptr, want_bf16 ? 1 : 0}, src(v), v.numel());
    ptr = tmp->ptr;
  }
  ~Operand() { delete tmp; }
  Operand(const Operand&) = delete;
  Operand& operator=(const Operand&) = delete;
};

}  // namespace

void linear_forward(const TensorView& x, const TensorView& w, const TensorView* b, TensorView& y) {
  Context& c = context(x);
  const int64_t M = x.rows(), K = x.last(), N = w.dim(0);
  const bool bf = x.dtype == DType::BF16 || w.dtype == DType::BF16 || y.dtype == DType::BF16;
  Operand X(c, x, bf), W(c, w, bf);
  const int abt = bf ? lt::CUDA_R_16BF_ : lt::CUDA_R_32F_, dt = lt_type(y.dtype);
  const bool fuse = b && b->dtype == y.dtype;
  if (fuse && matmul(c, lt::CUBLAS_OP_T, lt::CUBLAS_OP_N, N, M, K, W.ptr, K, X.ptr, K, y.data, N, abt, dt, b->data,
                     "linear_forward (cublasLtMatmul, bias epilogue)"))
    return;
  matmul(c, lt::CUBLAS_OP_T, lt::CUBLAS_OP_N, N, M, K, W.ptr, K, X.ptr, K, y.data, N, abt, dt, nullptr,
         "linear_forward (cublasLtMatmul)");
  if (b) add_bias_rows(c, dst(y), src(*b), M, N);
}

void linear_backward(const TensorView& x, const TensorView& w, const TensorView& dy, TensorView* dx, TensorView& dw,
                     TensorView* db) {
  Context& c = context(x);
  const int64_t M = x.rows(), K = x.last(), N = w.dim(0);
  const bool bf_in = x.dtype == DType::BF16 || w.dtype == DType::BF16 || dy.dtype == DType::BF16;
  const bool bf_dx = bf_in || (dx && dx->dtype == DType::BF16);
  const bool bf_dw = bf_in || dw.dtype == DType::BF16;
  if (dx) {
    Operand W(c, w, bf_dx), DY(c, dy, bf_dx);
    matmul(c, lt::CUBLAS_OP_N, lt::CUBLAS_OP_N, K, M, N, W.ptr, K, DY.ptr, N, dx->data, K,
           bf_dx ? lt::CUDA_R_16BF_ : lt::CUDA_R_32F_, lt_type(dx->dtype), nullptr, "linear_backward dx (cublasLtMatmul)");
  }
  {
    Operand X(c, x, bf_dw), DY(c, dy, bf_dw);
    matmul(c, lt::CUBLAS_OP_N, lt::CUBLAS_OP_T, K, N, M, X.ptr, K, DY.ptr, N, dw.data, K,
           bf_dw ? lt::CUDA_R_16BF_ : lt::CUDA_R_32F_, lt_type(dw.dtype), nullptr, "linear_backward dw (cublasLtMatmul)");
  }
  if (db) column_sum(c, src(dy), M, N, 1.0f, dst(*db), "linear_backward db (column_sum)");
}

}  // namespace mae::cuda
