// Elementwise ops and reductions (the CUDA twin of native/cpu/elementwise.cpp):
//   add, mul:      y = a (+|*) b, b repeating over a (b.numel divides a.numel)
//   sum_to:        y[j] = sum_i x[i * n + j] (two-stage column reduction, fixed order: deterministic)
//   axpby:         y = alpha x + beta y (beta = 0 overwrites)
//   sum:           y[0] = scale * sum(x), accumulated in double in a fixed order
//   mean_tokens:   x [B, N, D] -> y [B, D]; backward spreads dy / N over the N tokens
//   fill:          y = value
// plus the helpers other families share: column_sum, add_bias_rows, convert_n.
// add, mul, axpby, fill, convert and add_bias_rows move 8 elements per step with 16-byte accesses and 32-bit indices
// (binary_vec_kernel and friends, templates over the element types) whenever the sizes allow it (a repeating operand's
// period a multiple of 8, fewer than 2^31 elements, 16-byte aligned data); otherwise, or with MAE_CUDA_VECTOR=0, the
// scalar kernels with 64-bit indices and per-argument dtypes (Src/Dst) run. Both compute the same fp32 expression.
#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

constexpr int kThreads = 256;

template <int Op>  // 0 add, 1 mul
__global__ void binary_kernel(Src a, Src b, Dst y, int64_t n, int64_t nb) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float u = a[i], v = b[nb == n ? i : i % nb];
    y.set(i, Op == 0 ? u + v : u * v);
  }
}

__global__ void axpby_kernel(float alpha, Src x, float beta, Dst y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y.set(i, beta == 0.0f ? alpha * x[i] : alpha * x[i] + beta * y.get(i));
}

__global__ void fill_kernel(Dst y, float v, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y.set(i, v);
}

__global__ void convert_kernel(Dst y, Src x, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y.set(i, x[i]);
}

__global__ void add_bias_kernel(Dst y, Src b, int64_t total, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
    y.set(i, y.get(i) + b[i % n]);
}

// ---- 16-byte kernels: 8 elements per step (load8/store8), then a scalar tail; 32-bit indices ---------------------

// y = a (+|*) b; b repeats with period nb (nb == n, or nb a multiple of 8 dividing n)
template <int Op, typename TA, typename TB, typename TY>
__host__ __device__ void binary_vec_body(Lanes L, const TA* a, const TB* b, TY* y, uint32_t n, uint32_t nb) {
  const uint32_t groups = n / 8;
  for (uint32_t g = L.first; g < groups; g += L.stride) {
    const uint32_t i = 8 * g;
    float u[8], v[8];
    load8(a + i, u);
    load8(b + (nb == n ? i : i % nb), v);
    for (int k = 0; k < 8; k++) u[k] = Op == 0 ? u[k] + v[k] : u[k] * v[k];
    store8(y + i, u);
  }
  for (uint32_t i = 8 * groups + L.first; i < n; i += L.stride) {
    const float u = ld(a, i), v = ld(b, nb == n ? i : i % nb);
    st(y, i, Op == 0 ? u + v : u * v);
  }
}

template <int Op, typename TA, typename TB, typename TY>
__global__ void binary_vec_kernel(const TA* a, const TB* b, TY* y, uint32_t n, uint32_t nb) {
  binary_vec_body<Op>(lanes_of_launch(), a, b, y, n, nb);
}

// y = alpha x + beta y (beta == 0: y is only written)
template <typename TX, typename TY>
__host__ __device__ void axpby_vec_body(Lanes L, float alpha, const TX* x, float beta, TY* y, uint32_t n) {
  const uint32_t groups = n / 8;
  for (uint32_t g = L.first; g < groups; g += L.stride) {
    float u[8], v[8];
    load8(x + 8 * g, u);
    if (beta != 0.0f) load8(y + 8 * g, v);
    for (int k = 0; k < 8; k++) u[k] = beta == 0.0f ? alpha * u[k] : alpha * u[k] + beta * v[k];
    store8(y + 8 * g, u);
  }
  for (uint32_t i = 8 * groups + L.first; i < n; i += L.stride)
    st(y, i, beta == 0.0f ? alpha * ld(x, i) : alpha * ld(x, i) + beta * ld(y, i));
}

template <typename TX, typename TY>
__global__ void axpby_vec_kernel(float alpha, const TX* x, float beta, TY* y, uint32_t n) {
  axpby_vec_body(lanes_of_launch(), alpha, x, beta, y, n);
}

// y = value, or y = x converted (x non-null)
template <typename TX, typename TY>
__host__ __device__ void copy_vec_body(Lanes L, const TX* x, float value, TY* y, uint32_t n) {
  const uint32_t groups = n / 8;
  for (uint32_t g = L.first; g < groups; g += L.stride) {
    float u[8] = {value, value, value, value, value, value, value, value};
    if (x) load8(x + 8 * g, u);
    store8(y + 8 * g, u);
  }
  for (uint32_t i = 8 * groups + L.first; i < n; i += L.stride) st(y, i, x ? ld(x, i) : value);
}

template <typename TX, typename TY>
__global__ void copy_vec_kernel(const TX* x, float value, TY* y, uint32_t n) {
  copy_vec_body(lanes_of_launch(), x, value, y, n);
}

unsigned vec_grid(int64_t n, const Context& c) { return grid_for(ceil_div(n, 8), kThreads, c); }

// y = a (+|*) b on the 16-byte kernel when possible; false when the scalar kernel must run
template <int Op>
bool binary_vec(Context& c, const void* a, DType ta, const void* b, DType tb, void* y, DType ty, int64_t n,
                int64_t nb, const char* name) {
  if (!vec_ok(n, {a, b, y}) || !(nb == n || nb % 8 == 0)) return false;
  with_type(ta, [&](auto xa) {
    with_type(tb, [&](auto xb) {
      with_type(ty, [&](auto xy) {
        using TA = decltype(xa);
        using TB = decltype(xb);
        using TY = decltype(xy);
        binary_vec_kernel<Op, TA, TB, TY><<<vec_grid(n, c), kThreads, 0, c.stream>>>(
            static_cast<const TA*>(a), static_cast<const TB*>(b), static_cast<TY*>(y), (uint32_t)n, (uint32_t)nb);
      });
    });
  });
  MAE_KERNEL_CHECK(name, c.stream);
  return true;
}

// sum, stage 1: each block's partial in double; stage 2: one block adds the partials in order
__global__ void sum_partial_kernel(Src x, int64_t n, double* partial) {
  __shared__ double sh[32];
  double s = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    s += (double)x[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void sum_final_kernel(const double* partial, int parts, float scale, Dst y) {
  __shared__ double sh[32];
  double s = 0.0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x) s += partial[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) y.set(0, (float)(s * scale));
}

// column sums, small row counts: one thread per column walks all rows
__global__ void column_sum_direct_kernel(Src x, int64_t rows, int64_t n, float scale, Dst y) {
  for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < n; j += (int64_t)gridDim.x * blockDim.x) {
    float acc = 0.0f;
    for (int64_t r = 0; r < rows; r++) acc += x[r * n + j];
    y.set(j, acc * scale);
  }
}

// column sums, stage 1: block (32, 8) sums rows [r0, r1) of 32 columns into partial[chunk, column]
__global__ void column_sum_partial_kernel(Src x, int64_t rows, int64_t n, int64_t rows_per_chunk, float* partial) {
  __shared__ float sh[8][33];
  const int64_t j = blockIdx.x * 32 + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_chunk;
  const int64_t r1 = min(rows, r0 + rows_per_chunk);
  float acc = 0.0f;
  if (j < n)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) acc += x[r * n + j];
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < n) {
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) s += sh[k][threadIdx.x];
    partial[blockIdx.y * n + j] = s;
  }
}

__global__ void column_sum_final_kernel(const float* partial, int64_t chunks, int64_t n, float scale, Dst y) {
  for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < n; j += (int64_t)gridDim.x * blockDim.x) {
    float s = 0.0f;
    for (int64_t k = 0; k < chunks; k++) s += partial[k * n + j];
    y.set(j, s * scale);
  }
}

__global__ void mean_tokens_kernel(Src x, Dst y, int64_t B, int64_t N, int64_t D) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < B * D; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = i / D, d = i % D;
    float acc = 0.0f;
    for (int64_t t = 0; t < N; t++) acc += x[(b * N + t) * D + d];
    y.set(i, acc / (float)N);
  }
}

__global__ void mean_tokens_backward_kernel(Src dy, Dst dx, int64_t B, int64_t N, int64_t D) {
  const float inv = 1.0f / (float)N;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < B * N * D;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t b = i / (N * D), d = i % D;
    dx.set(i, dy[b * D + d] * inv);
  }
}

}  // namespace

// ---- shared helpers ----------------------------------------------------------------------------------------------

void column_sum(Context& c, Src x, int64_t rows, int64_t n, float scale, Dst y, const char* name) {
  if (rows <= 64) {
    column_sum_direct_kernel<<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(x, rows, n, scale, y);
    MAE_KERNEL_CHECK(name, c.stream);
    return;
  }
  const int64_t col_blocks = ceil_div(n, 32);
  const RowChunks rc = row_chunks(c, rows, col_blocks);
  Scratch part(c.device, (size_t)(rc.chunks * n) * sizeof(float));
  column_sum_partial_kernel<<<dim3((unsigned)col_blocks, (unsigned)rc.chunks), dim3(32, 8), 0, c.stream>>>(
      x, rows, n, rc.per, part.as<float>());
  MAE_KERNEL_CHECK(name, c.stream);
  sum_partials(c, part.as<float>(), rc.chunks, n, scale, y, name);
}

void sum_partials(Context& c, const float* partial, int64_t chunks, int64_t n, float scale, Dst y, const char* name) {
  column_sum_final_kernel<<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(partial, chunks, n, scale, y);
  MAE_KERNEL_CHECK(name, c.stream);
}

void add_bias_rows(Context& c, Dst y, Src b, int64_t rows, int64_t n) {
  const DType ty = y.bf16 ? DType::BF16 : DType::F32, tb = b.bf16 ? DType::BF16 : DType::F32;
  if (binary_vec<0>(c, y.p, ty, b.p, tb, y.p, ty, rows * n, n, "add_bias_rows (binary_vec_kernel<add>)")) return;
  add_bias_kernel<<<grid_for(rows * n, kThreads, c), kThreads, 0, c.stream>>>(y, b, rows * n, n);
  MAE_KERNEL_CHECK("add_bias_kernel", c.stream);
}

void convert_n(Context& c, Dst d, Src s, int64_t n) {
  if (vec_ok(n, {d.p, s.p})) {
    with_type(s.bf16 ? DType::BF16 : DType::F32, [&](auto xs) {
      with_type(d.bf16 ? DType::BF16 : DType::F32, [&](auto xd) {
        using TS = decltype(xs);
        using TD = decltype(xd);
        copy_vec_kernel<TS, TD><<<vec_grid(n, c), kThreads, 0, c.stream>>>(static_cast<const TS*>(s.p), 0.0f,
                                                                            static_cast<TD*>(d.p), (uint32_t)n);
      });
    });
    MAE_KERNEL_CHECK("convert (copy_vec_kernel)", c.stream);
    return;
  }
  convert_kernel<<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(d, s, n);
  MAE_KERNEL_CHECK("convert_kernel", c.stream);
}

// ---- ops ---------------------------------------------------------------------------------------------------------

void add(const TensorView& a, const TensorView& b, TensorView& y) {
  Context& c = context(a);
  const int64_t n = a.numel();
  if (binary_vec<0>(c, a.data, a.dtype, b.data, b.dtype, y.data, y.dtype, n, b.numel(), "add (binary_vec_kernel<add>)"))
    return;
  binary_kernel<0><<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(src(a), src(b), dst(y), n, b.numel());
  MAE_KERNEL_CHECK("add (binary_kernel<add>)", c.stream);
}

void mul(const TensorView& a, const TensorView& b, TensorView& y) {
  Context& c = context(a);
  const int64_t n = a.numel();
  if (binary_vec<1>(c, a.data, a.dtype, b.data, b.dtype, y.data, y.dtype, n, b.numel(), "mul (binary_vec_kernel<mul>)"))
    return;
  binary_kernel<1><<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(src(a), src(b), dst(y), n, b.numel());
  MAE_KERNEL_CHECK("mul (binary_kernel<mul>)", c.stream);
}

void sum_to(const TensorView& x, TensorView& y) {
  Context& c = context(x);
  const int64_t n = y.numel();
  column_sum(c, src(x), x.numel() / n, n, 1.0f, dst(y), "sum_to (column_sum)");
}

void axpby(float alpha, const TensorView& x, float beta, TensorView& y) {
  Context& c = context(x);
  const int64_t n = x.numel();
  if (vec_ok(n, {x.data, y.data})) {
    with_type(x.dtype, [&](auto xx) {
      with_type(y.dtype, [&](auto xy) {
        using TX = decltype(xx);
        using TY = decltype(xy);
        axpby_vec_kernel<TX, TY><<<vec_grid(n, c), kThreads, 0, c.stream>>>(alpha, static_cast<const TX*>(x.data), beta,
                                                                             static_cast<TY*>(y.data), (uint32_t)n);
      });
    });
    MAE_KERNEL_CHECK("axpby_vec_kernel", c.stream);
    return;
  }
  axpby_kernel<<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(alpha, src(x), beta, dst(y), n);
  MAE_KERNEL_CHECK("axpby_kernel", c.stream);
}

void sum(const TensorView& x, float scale, TensorView& y) {
  Context& c = context(x);
  const int64_t n = x.numel();
  const unsigned blocks = std::min<unsigned>(grid_for(n, kThreads, c), 1024u);
  Scratch part(c.device, blocks * sizeof(double));
  sum_partial_kernel<<<blocks, kThreads, 0, c.stream>>>(src(x), n, part.as<double>());
  MAE_KERNEL_CHECK("sum_partial_kernel", c.stream);
  sum_final_kernel<<<1, 1024, 0, c.stream>>>(part.as<double>(), (int)blocks, scale, dst(y));
  MAE_KERNEL_CHECK("sum_final_kernel", c.stream);
}

void mean_tokens(const TensorView& x, TensorView& y) {
  Context& c = context(x);
  const int64_t B = x.dim(0), N = x.dim(1), D = x.dim(2);
  mean_tokens_kernel<<<grid_for(B * D, kThreads, c), kThreads, 0, c.stream>>>(src(x), dst(y), B, N, D);
  MAE_KERNEL_CHECK("mean_tokens_kernel", c.stream);
}

void mean_tokens_backward(const TensorView& dy, TensorView& dx) {
  Context& c = context(dy);
  const int64_t B = dx.dim(0), N = dx.dim(1), D = dx.dim(2);
  mean_tokens_backward_kernel<<<grid_for(B * N * D, kThreads, c), kThreads, 0, c.stream>>>(src(dy), dst(dx), B, N,
                                                                                           D);
  MAE_KERNEL_CHECK("mean_tokens_backward_kernel", c.stream);
}

void fill(TensorView& y, float value) {
  Context& c = context(y);
  const int64_t n = y.numel();
  if (y.dtype == DType::I32) {
    // int32 fill: only zero is exact through a memset; other values go through a float->int kernel-free path
    if (value == 0.0f) {
      MAE_CUDA_CHECK(cudaMemsetAsync(y.data, 0, (size_t)n * 4, c.stream));
      return;
    }
    throw Error("fill: int32 tensors on CUDA can only be filled with 0");
  }
  if (vec_ok(n, {y.data})) {
    with_type(y.dtype, [&](auto xy) {
      using TY = decltype(xy);
      copy_vec_kernel<TY, TY><<<vec_grid(n, c), kThreads, 0, c.stream>>>(nullptr, value, static_cast<TY*>(y.data),
                                                                          (uint32_t)n);
    });
    MAE_KERNEL_CHECK("fill (copy_vec_kernel)", c.stream);
    return;
  }
  fill_kernel<<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(dst(y), value, n);
  MAE_KERNEL_CHECK("fill_kernel", c.stream);
}

}  // namespace mae::cuda
