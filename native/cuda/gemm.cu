// Linear layer through cuBLASLt (the CUDA twin of native/cpu/gemm.cpp): y = x W^T + b, W stored [out, in].
//   forward:  x [M, K], w [N, K], b [N] -> y [M, N]
//   backward: dx = dy W [M, K], dW = dy^T x [N, K], db = column sums of dy [N]
// cuBLASLt works column-major; a row-major [R, C] matrix is a column-major C x R matrix with leading dimension C,
// so y^T = W x^T is D = op(A) op(B) with A = w (K x N, transposed), B = x (K x M), D = y^T (N x M), and so on.
// Precision: float32 operands use CUBLAS_COMPUTE_32F (true fp32, never TF32). When any operand or the output of a
// product is bfloat16, both operands are bfloat16 (a float32 one is converted into scratch memory first; a bf16
// weight shadow kept by AdamW avoids that) and the product accumulates in fp32; the output keeps its own dtype.
// Fused epilogues: the bias goes in with CUBLASLT_EPILOGUE_BIAS, in its own dtype (an fp32 bias on a bf16 output
// through CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, so it is added before the rounding); db comes from the dW product
// with CUBLASLT_EPILOGUE_BGRADB (the sum over the product's k = the M rows of dy). Never the GELU epilogues: they use
// the tanh approximation and MAE uses the exact erf GELU.
// Fallbacks, so that no shape is refused: when cuBLASLt has no algorithm for an epilogue, the bias is added by a
// kernel and db is a column sum; when it has none for the product at all (tiny or odd-stride bf16 products can get
// none), gemm_fallback_kernel computes it (fp32 accumulation, bias fused). Each fallback is printed once to stderr.
// MAE_FUSED=0 gives the unfused path (bias epilogue only when the bias has the output's dtype, db by column sum);
// MAE_GEMM_FALLBACK=1 sends every product to the fallback kernel (for comparing it on a GPU).
// Descriptors, layouts and the chosen algorithm are made once per shape and kept (g_plans); a call only sets the
// bias pointer and enqueues the product.
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
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

std::mutex g_lt_mu;  // guards the handle's creation, g_plans, and a plan's use (bias pointer + enqueue)

lt::cublasLtHandle_t handle(Context& c) {
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

// One product shape: its descriptors and algorithm, made once and kept for the life of the process.
struct Plan {
  lt::cublasLtMatmulDesc_t desc = nullptr;
  lt::cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  lt::cublasLtMatmulAlgo_t algo{};
  bool found = false;
};

// device, transa, transb, m, n, k, lda, ldb, ldd, operand type, output type, epilogue, bias type
using Key = std::tuple<int, int, int, uint64_t, uint64_t, uint64_t, int64_t, int64_t, int64_t, int, int, uint32_t, int>;
std::map<Key, Plan> g_plans;
std::set<std::string> g_logged;

// prints `what` to stderr the first time it happens (fallbacks: the device check's log shows which paths ran)
void log_once(const std::string& what) {
  if (g_logged.insert(what).second) std::fprintf(stderr, "mae cuda: %s\n", what.c_str());
}

std::string shape_of(uint64_t m, uint64_t n, uint64_t k, int abt, int dt, int32_t ta, int32_t tb) {
  auto ty = [](int t) { return t == lt::CUDA_R_16BF_ ? "bf16" : "fp32"; };
  return std::string(ty(abt)) + " -> " + ty(dt) + " product m " + std::to_string(m) + ", n " + std::to_string(n) +
         ", k " + std::to_string(k) + (ta == lt::CUBLAS_OP_T ? " (A^T" : " (A") + (tb == lt::CUBLAS_OP_T ? ", B^T)" : ", B)");
}

void make_plan(Context& c, Plan& p, int32_t transa, int32_t transb, uint64_t m, uint64_t n, uint64_t k, int64_t lda,
               int64_t ldb, int64_t ldd, int abt, int dt, uint32_t epi, int bias_type) {
  const lt::Api& L = lt::api();
  MAE_LT_CHECK(L.MatmulDescCreate(&p.desc, lt::CUBLAS_COMPUTE_32F, lt::CUDA_R_32F_), "MatmulDescCreate");
  MAE_LT_CHECK(L.MatmulDescSetAttribute(p.desc, lt::CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof transa), "TRANSA");
  MAE_LT_CHECK(L.MatmulDescSetAttribute(p.desc, lt::CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof transb), "TRANSB");
  MAE_LT_CHECK(L.MatmulDescSetAttribute(p.desc, lt::CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "EPILOGUE");
  if (epi != lt::CUBLASLT_EPILOGUE_DEFAULT) {
    const int32_t bt = bias_type;
    MAE_LT_CHECK(L.MatmulDescSetAttribute(p.desc, lt::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt),
                 "BIAS_DATA_TYPE");
    // a placeholder pointer for the heuristic; every call sets its own
    const void* any = c.workspace;
    MAE_LT_CHECK(L.MatmulDescSetAttribute(p.desc, lt::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &any, sizeof any),
                 "BIAS_POINTER");
  }
  const bool ta = transa == lt::CUBLAS_OP_T, tb = transb == lt::CUBLAS_OP_T;
  MAE_LT_CHECK(L.MatrixLayoutCreate(&p.a, abt, ta ? k : m, ta ? m : k, lda), "MatrixLayoutCreate(A)");
  MAE_LT_CHECK(L.MatrixLayoutCreate(&p.b, abt, tb ? n : k, tb ? k : n, ldb), "MatrixLayoutCreate(B)");
  MAE_LT_CHECK(L.MatrixLayoutCreate(&p.d, dt, m, n, ldd), "MatrixLayoutCreate(D)");
  lt::cublasLtMatmulPreference_t pref = nullptr;
  MAE_LT_CHECK(L.MatmulPreferenceCreate(&pref), "MatmulPreferenceCreate");
  const uint64_t ws = c.workspace_bytes;
  lt::cublasStatus_t s =
      L.MatmulPreferenceSetAttribute(pref, lt::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  lt::cublasLtMatmulHeuristicResult_t res[1] = {};
  int returned = 0;
  if (s == lt::CUBLAS_STATUS_SUCCESS)
    s = L.MatmulAlgoGetHeuristic(static_cast<lt::cublasLtHandle_t>(c.cublaslt), p.desc, p.a, p.b, p.d, p.d, pref, 1,
                                 res, &returned);
  L.MatmulPreferenceDestroy(pref);
  p.found = s == lt::CUBLAS_STATUS_SUCCESS && returned > 0 && res[0].state == lt::CUBLAS_STATUS_SUCCESS;
  if (p.found) p.algo = res[0].algo;
}

// D (m x n, ld ldd, type dt) = op(A) op(B), column-major, with the epilogue `epi` (DEFAULT, BIAS: bias per row of
// D, BGRADB: bias = the column sums of op(B) over k) on `bias` of type bias_type. Returns false, having done
// nothing, when cuBLASLt has no algorithm for it (or MAE_GEMM_FALLBACK=1); throws on every other failure.
bool lt_matmul(Context& c, int32_t transa, int32_t transb, uint64_t m, uint64_t n, uint64_t k, const void* A,
               int64_t lda, const void* B, int64_t ldb, void* D, int64_t ldd, int abt, int dt, uint32_t epi,
               void* bias, int bias_type, const char* name) {
  if (env_on("MAE_GEMM_FALLBACK")) return false;
  std::lock_guard<std::mutex> lock(g_lt_mu);
  const lt::cublasLtHandle_t h = handle(c);
  const lt::Api& L = lt::api();
  const Key key{c.device, transa, transb, m, n, k, lda, ldb, ldd, abt, dt, epi, bias ? bias_type : -1};
  auto it = g_plans.find(key);
  if (it == g_plans.end()) {
    it = g_plans.emplace(key, Plan{}).first;
    make_plan(c, it->second, transa, transb, m, n, k, lda, ldb, ldd, abt, dt, epi, bias_type);
  }
  Plan& p = it->second;
  if (!p.found) return false;
  if (bias)
    MAE_LT_CHECK(L.MatmulDescSetAttribute(p.desc, lt::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
                 "BIAS_POINTER");
  const float alpha = 1.0f, beta = 0.0f;
  const lt::cublasStatus_t s = L.Matmul(h, p.desc, &alpha, A, p.a, B, p.b, &beta, D, p.d, D, p.d, &p.algo,
                                        c.workspace, c.workspace_bytes, c.stream);
  if (s == lt::CUBLAS_STATUS_NOT_SUPPORTED) {
    p.found = false;  // the heuristic's choice does not run after all: use the fallback from now on
    return false;
  }
  if (s != lt::CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("cuBLASLt cublasLtMatmul (") + name + ") failed: " + lt::status_string(s));
  MAE_KERNEL_CHECK(name, c.stream);
  return true;
}

int lt_type(DType t) { return t == DType::BF16 ? lt::CUDA_R_16BF_ : lt::CUDA_R_32F_; }

// The fallback product: D[i + j ldd] = sum_l op(A)[i, l] op(B)[l, j] (+ bias[i]), one output element per lane, fp32
// accumulation in l order; op(A)[i, l] = A[ta ? l + i lda : i + l lda], op(B)[l, j] = B[tb ? j + l ldb : l + j ldb].
__host__ __device__ void gemm_fallback_body(Lanes L, bool ta, bool tb, int64_t m, int64_t n, int64_t k, Src A,
                                            int64_t lda, Src B, int64_t ldb, Dst D, int64_t ldd, Src bias) {
  for (int64_t e = L.first; e < m * n; e += L.stride) {
    const int64_t i = e % m, j = e / m;
    float acc = 0.0f;
    for (int64_t l = 0; l < k; l++)
      acc += A[ta ? l + i * lda : i + l * lda] * B[tb ? j + l * ldb : l + j * ldb];
    D.set(i + j * ldd, bias.p ? acc + bias[i] : acc);
  }
}

__global__ void gemm_fallback_kernel(bool ta, bool tb, int64_t m, int64_t n, int64_t k, Src A, int64_t lda, Src B,
                                     int64_t ldb, Dst D, int64_t ldd, Src bias) {
  gemm_fallback_body(lanes_of_launch(), ta, tb, m, n, k, A, lda, B, ldb, D, ldd, bias);
}

// The product D = op(A) op(B) [+ bias per row of D] on cuBLASLt or, when it has no algorithm, the fallback kernel.
// A and B are in the operand type abt (what Operand made), D in its own dtype.
void matmul(Context& c, int32_t transa, int32_t transb, int64_t m, int64_t n, int64_t k, const void* A, int64_t lda,
            const void* B, int64_t ldb, Dst D, int64_t ldd, int abt, int dt, const Src* bias, const char* name) {
  void* bp = bias ? const_cast<void*>(bias->p) : nullptr;
  const bool fuse_bias = bias && (fused_enabled() || (bias->bf16 != 0) == (dt == lt::CUDA_R_16BF_));
  const int bias_type = bias ? (bias->bf16 ? lt::CUDA_R_16BF_ : lt::CUDA_R_32F_) : -1;
  if (fuse_bias && lt_matmul(c, transa, transb, m, n, k, A, lda, B, ldb, D.p, ldd, abt, dt, lt::CUBLASLT_EPILOGUE_BIAS,
                             bp, bias_type, name))
    return;
  if (lt_matmul(c, transa, transb, m, n, k, A, lda, B, ldb, D.p, ldd, abt, dt, lt::CUBLASLT_EPILOGUE_DEFAULT, nullptr,
                -1, name)) {
    if (bias) {
      if (fuse_bias)
        log_once(std::string(name) + ": cuBLASLt has no bias epilogue for the " + shape_of(m, n, k, abt, dt, transa, transb) +
                 " with a " + (bias->bf16 ? "bf16" : "fp32") + " bias; the bias is added by add_bias_kernel");
      // D is y^T: its rows (length m, the features) are the columns of y
      add_bias_rows(c, D, *bias, n, m);
    }
    return;
  }
  if (!env_on("MAE_GEMM_FALLBACK"))
    log_once(std::string(name) + ": cuBLASLt has no algorithm for the " + shape_of(m, n, k, abt, dt, transa, transb) +
             "; gemm_fallback_kernel computes it");
  const bool bf = abt == lt::CUDA_R_16BF_;
  gemm_fallback_kernel<<<grid_for(m * n, 256, c), 256, 0, c.stream>>>(
      transa == lt::CUBLAS_OP_T, transb == lt::CUBLAS_OP_T, m, n, k, Src{A, bf}, lda, Src{B, bf}, ldb, D, ldd,
      bias ? *bias : Src{nullptr, 0});
  MAE_KERNEL_CHECK("gemm_fallback_kernel", c.stream);
}

// An operand in the product's input type: the tensor itself, or a converted copy in scratch memory (released also
// when the conversion throws: tmp is a member, destroyed with the partly built object).
struct Operand {
  const void* ptr;
  std::unique_ptr<Scratch> tmp;
  Operand(Context& c, const TensorView& v, bool want_bf16) : ptr(v.data) {
    if ((v.dtype == DType::BF16) == want_bf16) return;
    tmp = std::make_unique<Scratch>(c.device, (size_t)v.numel() * (want_bf16 ? 2 : 4));
    convert_n(c, Dst{tmp->ptr, want_bf16 ? 1 : 0}, src(v), v.numel());
    ptr = tmp->ptr;
  }
};

}  // namespace

void linear_forward(const TensorView& x, const TensorView& w, const TensorView* b, TensorView& y) {
  Context& c = context(x);
  const int64_t M = x.rows(), K = x.last(), N = w.dim(0);
  const bool bf = x.dtype == DType::BF16 || w.dtype == DType::BF16 || y.dtype == DType::BF16;
  Operand X(c, x, bf), W(c, w, bf);
  const Src bias = b ? src(*b) : Src{nullptr, 0};
  matmul(c, lt::CUBLAS_OP_T, lt::CUBLAS_OP_N, N, M, K, W.ptr, K, X.ptr, K, dst(y), N,
         bf ? lt::CUDA_R_16BF_ : lt::CUDA_R_32F_, lt_type(y.dtype), b ? &bias : nullptr, "linear_forward");
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
    matmul(c, lt::CUBLAS_OP_N, lt::CUBLAS_OP_N, K, M, N, W.ptr, K, DY.ptr, N, dst(*dx), K,
           bf_dx ? lt::CUDA_R_16BF_ : lt::CUDA_R_32F_, lt_type(dx->dtype), nullptr, "linear_backward dx");
  }
  Operand X(c, x, bf_dw), DY(c, dy, bf_dw);
  const int abt = bf_dw ? lt::CUDA_R_16BF_ : lt::CUDA_R_32F_;
  // dW^T (K x N) = x^T (K x M) dy (M x N); with BGRADB the epilogue also sums op(B) = dy over k = M: db
  if (db && fused_enabled() &&
      lt_matmul(c, lt::CUBLAS_OP_N, lt::CUBLAS_OP_T, K, N, M, X.ptr, K, DY.ptr, N, dw.data, K, abt, lt_type(dw.dtype),
                lt::CUBLASLT_EPILOGUE_BGRADB, db->data, lt_type(db->dtype), "linear_backward dw, db (BGRADB)"))
    return;
  if (db && fused_enabled() && !env_on("MAE_GEMM_FALLBACK"))
    log_once(std::string("linear_backward: cuBLASLt has no BGRADB epilogue for the ") +
             shape_of(K, N, M, abt, lt_type(dw.dtype), lt::CUBLAS_OP_N, lt::CUBLAS_OP_T) + "; db is a column sum");
  matmul(c, lt::CUBLAS_OP_N, lt::CUBLAS_OP_T, K, N, M, X.ptr, K, DY.ptr, N, dst(dw), K, abt, lt_type(dw.dtype), nullptr,
         "linear_backward dw");
  if (db) column_sum(c, src(dy), M, N, 1.0f, dst(*db), "linear_backward db (column_sum)");
}

}  // namespace mae::cuda
