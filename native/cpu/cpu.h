// Declarations of the CPU kernels (one file per op family in native/cpu/), collected into the CPU op table by
// ops_table.cpp. Signatures are those of mae::Ops.
#pragma once
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "../core/ops.h"

namespace mae::cpu {

// Loops over fewer elements than this run on the calling thread (an `if (n >= kParallelGrain)` clause on their
// OpenMP pragma): waking the other threads costs more than the work, and a model step has hundreds of such ops
// (biases, LayerNorm parameters, per-token tables).
constexpr int64_t kParallelGrain = 32768;

// convert.cpp: float32 <-> bfloat16 arrays (round to nearest even; AVX512-BF16 when the CPU has it)
// whether the CPU has AVX512-BF16 (with the AVX-512 F, BW, VL and DQ that MAE_AVX512_BF16 code also uses) and the
// environment variable `var` is not set to `value` (a switch to the other path), nor MAE_CPU_AVX512 to off
bool has_avx512_bf16_unless(const char* var, const char* value);
// whether every given tensor (null entries skipped) is bfloat16: the condition of the kernels' bf16-only paths
inline bool all_bf16(std::initializer_list<const TensorView*> ts) {
  for (const TensorView* t : ts)
    if (t && t->dtype != DType::BF16) return false;
  return true;
}
bool bf16_convert_native();
// whether the kernels' AVX-512 paths run, in words: "on", "off (MAE_CPU_AVX512=off)" or why the CPU cannot
const char* avx512_kernels();
void to_bf16(const float* src, uint16_t* dst, int64_t n);
// the same, with streaming stores where the CPU has AVX512-BF16 (for data not read again soon); fence afterwards
void to_bf16_stream(const float* src, uint16_t* dst, int64_t n);
void to_f32(const uint16_t* src, float* dst, int64_t n);
// y = x converted to y's dtype (float32 or bfloat16), same number of elements
void convert(const TensorView& x, TensorView& y);
inline uint16_t* bf16(const TensorView& t) { return static_cast<uint16_t*>(t.data); }
// one bfloat16 as float32 (exact: a bfloat16 is the high half of a float32); vectorises inside `omp simd` loops
inline float from_bf16(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Rows in float32 for kernels that compute in float32 on tensors of either dtype (bf16 activations, each argument
// in its own dtype). in_row: the n values of t from element `at` as float32: t's own memory when it is float32, else
// widened into buf. out_row: where to write n values of t from `at`: t's memory or buf; out_row_done then narrows
// buf into t when t is bfloat16. buf holds at least n floats.
inline const float* in_row(const TensorView& t, int64_t at, int64_t n, float* buf) {
  if (t.dtype == DType::F32) return t.f32() + at;
  to_f32(bf16(t) + at, buf, n);
  return buf;
}
inline float* out_row(const TensorView& t, int64_t at, float* buf) {
  return t.dtype == DType::F32 ? t.f32() + at : buf;
}
inline void out_row_done(const TensorView& t, int64_t at, int64_t n, const float* buf) {
  if (t.dtype == DType::BF16) to_bf16(buf, bf16(t) + at, n);
}
// elements per chunk of the elementwise loops that go through in_row / out_row
constexpr int64_t kChunk = 2048;

// y[i] = f(a[i]) or f(a[i], b[i]) for every element (a, b and y of the same size, each float32 or bfloat16; f takes
// and returns float32), in chunks of kChunk shared among the threads
template <typename F>
void map_elements(const TensorView& a, TensorView& y, F f) {
  const int64_t n = a.numel();
#pragma omp parallel if (n >= kParallelGrain)
  {
    float ab[kChunk], yb[kChunk];
#pragma omp for schedule(static)
    for (int64_t c = 0; c < n; c += kChunk) {
      const int64_t m = n - c < kChunk ? n - c : kChunk;
      const float* A = in_row(a, c, m, ab);
      float* Y = out_row(y, c, yb);
#pragma omp simd
      for (int64_t i = 0; i < m; i++) Y[i] = f(A[i]);
      out_row_done(y, c, m, Y);
    }
  }
}
template <typename F>
void map_elements(const TensorView& a, const TensorView& b, TensorView& y, F f) {
  const int64_t n = a.numel();
#pragma omp parallel if (n >= kParallelGrain)
  {
    float ab[kChunk], bb[kChunk], yb[kChunk];
#pragma omp for schedule(static)
    for (int64_t c = 0; c < n; c += kChunk) {
      const int64_t m = n - c < kChunk ? n - c : kChunk;
      const float *A = in_row(a, c, m, ab), *B = in_row(b, c, m, bb);
      float* Y = out_row(y, c, yb);
#pragma omp simd
      for (int64_t i = 0; i < m; i++) Y[i] = f(A[i], B[i]);
      out_row_done(y, c, m, Y);
    }
  }
}

// dnnl.cpp: oneDNN, loaded on first use. info(): whether it loaded (else why), from where, its version, the ISA its
// kernels run (dnnl_get_effective_cpu_isa) and whether that has native bf16 (AVX512-BF16 or AMX).
struct DnnlInfo {
  bool available = false;
  std::string reason, library, version, isa;
  bool bf16_native = false, amx = false;
  bool bf16_matmul = false;  // oneDNN has bf16 matmul kernels here
  // bf16 products go to oneDNN: it has kernels and they are native. Its bf16 emulation on other AVX-512 CPUs runs at
  // 0.4x the BLAS's float32 rate (benchmarks/README.md section 16), so there, as where it has no kernel, gemm.cpp runs
  // bf16 products on the BLAS (widened copies) and attention its float32 tiles
  bool bf16_products = false;
  // what AMX needs besides oneDNN (dnnl.cpp, amx_support): the CPU has AMX-TILE and AMX-BF16, the kernel enables
  // their state (XCR0), the kernel gave this process the tile data (Linux, ARCH_GET_XCOMP_PERM)
  bool cpu_amx = false, kernel_amx = false, amx_permitted = false;
  // bf16 2-D products whose reduction length K is odd and above 32 are declined on AMX (gemm.cpp runs them on the
  // BLAS): oneDNN before 2.7.4 can run them with the wrong AMX tile configuration (dnnl.cpp, odd_k_declined)
  bool amx_odd_k_declined = false;
};
const DnnlInfo& dnnl_info();
// one operand of a matmul: up to 4 dimensions (batch dimensions first, then rows and columns), strides in elements
struct MatDesc {
  int ndims;
  int64_t dims[4];
  int64_t strides[4];
  DType dtype;
};
// a [rows, cols] matrix stored row-major, or (transposed) the transpose of a row-major [cols, rows] one
MatDesc mat(int64_t rows, int64_t cols, bool transposed, DType dtype);
// C = alpha A B (+ bias [N], float32) with oneDNN: A [..., M, K], B [..., K, N], C [..., M, N]. false (nothing
// done) when oneDNN is not loaded or has no kernel for this product on this CPU, or the product is bf16 and
// bf16_products is false; throws mae::Error if it fails.
bool matmul(const MatDesc& a, const void* A, const MatDesc& b, const void* B, const float* bias, float alpha,
            const MatDesc& c, void* C);
// C [M, n] = A [M, k] B (+ bias) with B a Linear's bf16 weight shadow W [N, K]: B = W^T (fwd, n = N) or B = W (dx,
// n = K), read from its blocked copy (blocked.cpp). false (nothing done) when W has no blocked copies (not a shadow
// that AdamW wrote) or oneDNN cannot run the product: the caller then runs matmul on W itself.
bool matmul_weight(const MatDesc& a, const void* A, const void* W, int64_t N, int64_t K, bool fwd, const float* bias,
                   const MatDesc& c, void* C);

// blocked.cpp: bf16 weight shadows in the blocked layouts oneDNN's products read. A layout as offsets: element (i, j)
// of a [rows, cols] B at row_off[i] + col_off[j] (in elements), `bytes` in all (with padding).
struct BlockedLayout {
  std::vector<int64_t> row_off, col_off;
  size_t bytes = 0;
};
// AdamW rewrote `shadow`: its blocked copies are stale (and it is registered for them)
void blocked_weights_stale(const void* shadow);
// memory at `data` was freed or written by something else than AdamW: its copies go
void blocked_weights_forget(const void* data);
bool blocked_weights_registered(const void* shadow);
// the blocked copies held now: how many, and their bytes (memoryStats' blockedWeightBytes)
struct BlockedStats {
  int64_t copies = 0;
  size_t bytes = 0;
};
BlockedStats blocked_weights_stats();
// the copy of the registered shadow W [N, K] as the B of the role (fwd: W^T, dx: W) in `layout`, packed first when
// stale; nullptr when `shadow` is not registered
const void* blocked_weights(const void* shadow, int64_t N, int64_t K, bool fwd,
                            const std::shared_ptr<const BlockedLayout>& layout);

// allocator.cpp
extern const Allocator allocator;
void copy_bytes(void* dst, const void* src, size_t bytes);
void* read_begin(const void* src, size_t bytes);
void read_end(void* handle, void* dst);

// gemm.cpp
void linear_forward(const TensorView& x, const TensorView& w, const TensorView* b, TensorView& y);
void linear_backward(const TensorView& x, const TensorView& w, const TensorView& dy, TensorView* dx, TensorView& dw,
                     TensorView* db);

// layernorm.cpp
void layernorm_forward(const TensorView& x, const TensorView& w, const TensorView& b, float eps, TensorView& y,
                       TensorView& mean, TensorView& rstd);
void layernorm_backward(const TensorView& dy, const TensorView& x, const TensorView& w, const TensorView& mean,
                        const TensorView& rstd, const TensorView* dres, TensorView& dx, TensorView& dw,
                        TensorView& db);
void add_layernorm_forward(const TensorView& x, const TensorView& r, const TensorView& w, const TensorView& b,
                           float eps, TensorView& s, TensorView& y, TensorView& mean, TensorView& rstd);

// gelu.cpp
void gelu_forward(const TensorView& x, TensorView& y);
void gelu_backward(const TensorView& x, const TensorView& dy, TensorView& dx);
void bias_gelu_forward(const TensorView& x, const TensorView& b, TensorView& y);
void bias_gelu_backward(const TensorView& x, const TensorView& b, const TensorView& dy, TensorView& dx,
                        TensorView* db);

// attention.cpp
// which kernel runs bf16 attention here: the fused AVX512-BF16 one (for head dims that are multiples of 16, up to 256
// tokens), else oneDNN's batched products, else the float32 tiles
std::string bf16_attention_kernel();
void attention_forward(const TensorView& qkv, int num_heads, TensorView& out, TensorView& lse);
void attention_backward(const TensorView& qkv, const TensorView& out, const TensorView& dout, const TensorView& lse,
                        int num_heads, TensorView& dqkv);

// loss.cpp
void masked_mse_forward(const TensorView& pred, const TensorView& target, const TensorView& mask, bool norm_pix,
                        TensorView& loss);
void masked_mse_backward(const TensorView& pred, const TensorView& target, const TensorView& mask, bool norm_pix,
                         const TensorView& dloss, TensorView& dpred);
void cross_entropy_forward(const TensorView& logits, const TensorView& target, float smoothing, TensorView& loss);
void cross_entropy_backward(const TensorView& logits, const TensorView& target, float smoothing,
                            const TensorView& dloss, TensorView& dlogits);

// batchnorm.cpp
void batchnorm_forward(const TensorView& x, TensorView& running_mean, TensorView& running_var, bool training,
                       float momentum, float eps, TensorView& y, TensorView& rstd);
void batchnorm_backward(const TensorView& dy, const TensorView& y, const TensorView& rstd, bool training,
                        TensorView& dx);

// tokens.cpp
void gather_rows(const TensorView& x, const TensorView& idx, TensorView& y);
void scatter_add_rows(const TensorView& dy, const TensorView& idx, TensorView& dx);
void cat_tokens(const TensorView& a, const TensorView& b, TensorView& y);
void slice_tokens(const TensorView& x, int64_t start, TensorView& y);

// elementwise.cpp
void add(const TensorView& a, const TensorView& b, TensorView& y);
void mul(const TensorView& a, const TensorView& b, TensorView& y);
void sum_to(const TensorView& x, TensorView& y);
// y[j] = sum over rows of x[row * n + j] for j in [j0, j1): sum_to's loop, callable from inside a parallel region
void column_sums(const TensorView& x, int64_t rows, int64_t n, int64_t j0, int64_t j1, float* y);
void axpby(float alpha, const TensorView& x, float beta, TensorView& y);
void sum(const TensorView& x, float scale, TensorView& y);
void mean_tokens(const TensorView& x, TensorView& y);
void mean_tokens_backward(const TensorView& dy, TensorView& dx);
void fill(TensorView& y, float value);

// patch.cpp
void patchify(const TensorView& imgs, int p, bool hwc, TensorView& x);
void unpatchify(const TensorView& x, int p, bool hwc, TensorView& imgs);

// adamw.cpp
void adamw_step(const AdamWTensor* tensors, int64_t count, float beta1, float beta2, float eps, int64_t step);

// augment.cpp: crop + bicubic resize + flip + normalisation of one 8-bit image, for the data-loading threads (not in
// the op table: byte buffers, not tensors; CPU only; single-threaded). The bindings check every field first.
struct ResizedCrop {
  const uint8_t* src;                    // [height, width, channels], uint8 HWC
  int64_t height, width, channels;
  int64_t top, left, crop_h, crop_w;     // the box of src that is resampled ...
  int64_t out_h, out_w;                  // ... to this size, of which
  int64_t y0, x0, win_h, win_w;          // this window is written
  bool flip, antialias;                  // mirror the window left-right; PIL (true) or F.interpolate (false) bicubic
  int64_t out_channels;                  // channels, or any count when channels == 1 (replicated)
  const double* mean;                    // [out_channels]: dst = (v / 255 - mean) / std
  const double* std;
};
// dst [out_channels, win_h, win_w]: exactly one of dst_f32 / dst_bf16 is non-null
void resized_crop(const ResizedCrop& args, float* dst_f32, uint16_t* dst_bf16);

}  // namespace mae::cpu
