// GELU in its exact erf form (the CUDA twin of native/cpu/gelu.cpp), elementwise on any shape:
//   y = 0.5 x (1 + erf(x / sqrt 2)),  dy/dx = 0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi)
// Never the tanh approximation (which is what cuBLASLt's GELU epilogue computes).
// bias_gelu: the same on h = x + b, x [rows, N] (the MLP's first product without its bias), b [N]; its backward
// writes dx = dy gelu'(x + b) and sums dx over the rows into db in the same pass (stage 1 of a deterministic column
// reduction, partial sums per chunk of rows; stage 2 adds the chunks in order).
// The kernels move 8 elements per step with 16-byte accesses and 32-bit indices when the sizes allow (N a multiple
// of 8 and a float32 bias for the bias forms); otherwise, or with MAE_CUDA_VECTOR=0, scalar kernels with per-argument dtypes run.
#include "common.cuh"
#include "ops_cuda.h"

namespace mae::cuda {

namespace {

constexpr int kThreads = 256;

__host__ __device__ __forceinline__ float gelu_of(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }
__host__ __device__ __forceinline__ float gelu_grad_of(float v) {
  const float cdf = 0.5f * (1.0f + erff(v * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
  return cdf + v * pdf;
}

// ---- scalar kernels (any sizes, 64-bit indices) ----------------------------------------------------------------------

// y = gelu(x + b[i % nb]) (nb = 0: no bias)
__global__ void gelu_forward_kernel(Src x, Src b, int64_t nb, Dst y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y.set(i, gelu_of(nb ? x[i] + b[i % nb] : x[i]));
}

__global__ void gelu_backward_kernel(Src x, Src b, int64_t nb, Src dy, Dst dx, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dx.set(i, dy[i] * gelu_grad_of(nb ? x[i] + b[i % nb] : x[i]));
}

// ---- 16-byte kernels -------------------------------------------------------------------------------------------------

// y = gelu(x + b) over n elements, b (float32) repeating with period nb (a multiple of 8; b == nullptr: no bias)
template <typename TX, typename TY>
__host__ __device__ void gelu_vec_body(Lanes L, const TX* x, const float* b, uint32_t nb, TY* y, uint32_t n) {
  const uint32_t groups = n / 8;
  for (uint32_t g = L.first; g < groups; g += L.stride) {
    float v[8], c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    load8(x + 8 * g, v);
    if (b) load8(b + (8 * g) % nb, c);
    for (int k = 0; k < 8; k++) v[k] = gelu_of(v[k] + c[k]);
    store8(y + 8 * g, v);
  }
  for (uint32_t i = 8 * groups + L.first; i < n; i += L.stride) st(y, i, gelu_of(ld(x, i) + (b ? ld(b, i % nb) : 0.0f)));
}

template <typename TX, typename TY>
__global__ void gelu_vec_kernel(const TX* x, const float* b, uint32_t nb, TY* y, uint32_t n) {
  gelu_vec_body(lanes_of_launch(), x, b, nb, y, n);
}

// dx = dy gelu'(x) over n elements
template <typename TX, typename TD, typename TY>
__host__ __device__ void gelu_grad_vec_body(Lanes L, const TX* x, const TD* dy, TY* dx, uint32_t n) {
  const uint32_t groups = n / 8;
  for (uint32_t g = L.first; g < groups; g += L.stride) {
    float v[8], d[8];
    load8(x + 8 * g, v);
    load8(dy + 8 * g, d);
    for (int k = 0; k < 8; k++) v[k] = d[k] * gelu_grad_of(v[k]);
    store8(dx + 8 * g, v);
  }
  for (uint32_t i = 8 * groups + L.first; i < n; i += L.stride) st(dx, i, ld(dy, i) * gelu_grad_of(ld(x, i)));
}

template <typename TX, typename TD, typename TY>
__global__ void gelu_grad_vec_kernel(const TX* x, const TD* dy, TY* dx, uint32_t n) {
  gelu_grad_vec_body(lanes_of_launch(), x, dy, dx, n);
}

// bias_gelu backward, one thread's share: column group j8 (columns 8 j8 .. 8 j8 + 7), rows r0 + t, r0 + t + 8, ...
// below r1 of x, dy [R, N]: writes dx there and returns the 8 column sums of dx over those rows in acc.
template <typename TX, typename TD, typename TY>
__host__ __device__ void bias_gelu_grad_body(uint32_t j8, uint32_t t, uint32_t r0, uint32_t r1, const TX* x,
                                             const float* b, const TD* dy, TY* dx, uint32_t N, float acc[8]) {
  float c[8];
  load8(b + 8 * j8, c);
  for (int k = 0; k < 8; k++) acc[k] = 0.0f;
  for (uint32_t r = r0 + t; r < r1; r += 8) {
    const uint32_t o = r * N + 8 * j8;
    float v[8], d[8];
    load8(x + o, v);
    load8(dy + o, d);
    for (int k = 0; k < 8; k++) {
      v[k] = d[k] * gelu_grad_of(v[k] + c[k]);
      acc[k] += v[k];
    }
    store8(dx + o, v);
  }
}

// block (32, 8): 32 column groups (256 columns) x 8 row lanes; grid (ceil(N / 256), chunks of `per` rows)
template <typename TX, typename TD, typename TY>
__global__ void bias_gelu_grad_vec_kernel(const TX* x, const float* b, const TD* dy, TY* dx, uint32_t R, uint32_t N,
                                          uint32_t per, float* partial) {
  __shared__ float sh[8][32 * 8 + 1];
  const uint32_t j8 = blockIdx.x * 32 + threadIdx.x, r0 = blockIdx.y * per, r1 = min(R, r0 + per);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  if (8 * j8 < N) bias_gelu_grad_body(j8, threadIdx.y, r0, r1, x, b, dy, dx, N, acc);
  for (int k = 0; k < 8; k++) sh[threadIdx.y][8 * threadIdx.x + k] = acc[k];
  __syncthreads();
  // thread (tx, ty) adds column 8 tx + ty of the block over the 8 row lanes, in order
  const uint32_t col = 8 * threadIdx.x + threadIdx.y, j = blockIdx.x * 256 + col;
  if (j < N) {
    float s = 0.0f;
    for (int t = 0; t < 8; t++) s += sh[t][col];
    partial[(size_t)blockIdx.y * N + j] = s;
  }
}

// the same for any N (scalar accesses): block (32, 8) = 32 columns x 8 row lanes
__global__ void bias_gelu_grad_kernel(Src x, Src b, Src dy, Dst dx, int64_t R, int64_t N, int64_t per,
                                      float* partial) {
  __shared__ float sh[8][33];
  const int64_t j = (int64_t)blockIdx.x * 32 + threadIdx.x, r0 = (int64_t)blockIdx.y * per;
  const int64_t r1 = min(R, r0 + per);
  float acc = 0.0f;
  if (j < N) {
    const float c = b[j];
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const float v = dy[r * N + j] * gelu_grad_of(x[r * N + j] + c);
      dx.set(r * N + j, v);
      acc += v;
    }
  }
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < N) {
    float s = 0.0f;
    for (int t = 0; t < 8; t++) s += sh[t][threadIdx.x];
    partial[blockIdx.y * N + j] = s;
  }
}

unsigned vec_grid(int64_t n, const Context& c) { return grid_for(ceil_div(n, 8), kThreads, c); }

// gelu(x + b) with b [nb] repeating (b null: plain gelu)
void gelu_launch(Context& c, const TensorView& x, const TensorView* b, TensorView& y, const char* name) {
  const int64_t n = x.numel(), nb = b ? b->numel() : 0;
  if (vec_ok(n, {x.data, b ? b->data : nullptr, y.data}) && nb % 8 == 0 && (!b || b->dtype == DType::F32)) {
    with_type(x.dtype, [&](auto tx) {
      with_type(y.dtype, [&](auto ty) {
        using TX = decltype(tx);
        using TY = decltype(ty);
        gelu_vec_kernel<TX, TY><<<vec_grid(n, c), kThreads, 0, c.stream>>>(
            static_cast<const TX*>(x.data), b ? b->f32() : nullptr, (uint32_t)nb, static_cast<TY*>(y.data),
            (uint32_t)n);
      });
    });
  } else {
    gelu_forward_kernel<<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(src(x), b ? src(*b) : Src{nullptr, 0},
                                                                              nb, dst(y), n);
  }
  MAE_KERNEL_CHECK(name, c.stream);
}

}  // namespace

void gelu_forward(const TensorView& x, TensorView& y) { gelu_launch(context(x), x, nullptr, y, "gelu_forward"); }

void gelu_backward(const TensorView& x, const TensorView& dy, TensorView& dx) {
  Context& c = context(x);
  const int64_t n = x.numel();
  if (vec_ok(n, {x.data, dy.data, dx.data})) {
    with_type(x.dtype, [&](auto tx) {
      with_type(dy.dtype, [&](auto td) {
        with_type(dx.dtype, [&](auto ty) {
          using TX = decltype(tx);
          using TD = decltype(td);
          using TY = decltype(ty);
          gelu_grad_vec_kernel<TX, TD, TY><<<vec_grid(n, c), kThreads, 0, c.stream>>>(
              static_cast<const TX*>(x.data), static_cast<const TD*>(dy.data), static_cast<TY*>(dx.data), (uint32_t)n);
        });
      });
    });
  } else {
    gelu_backward_kernel<<<grid_for(n, kThreads, c), kThreads, 0, c.stream>>>(src(x), Src{nullptr, 0}, 0, src(dy),
                                                                               dst(dx), n);
  }
  MAE_KERNEL_CHECK("gelu_backward", c.stream);
}

void bias_gelu_forward(const TensorView& x, const TensorView& b, TensorView& y) {
  gelu_launch(context(x), x, &b, y, "bias_gelu_forward");
}

void bias_gelu_backward(const TensorView& x, const TensorView& b, const TensorView& dy, TensorView& dx,
                        TensorView* db) {
  Context& c = context(x);
  const int64_t R = x.rows(), N = x.last();
  if (!db) {
    gelu_backward_kernel<<<grid_for(R * N, kThreads, c), kThreads, 0, c.stream>>>(src(x), src(b), N, src(dy),
                                                                                   dst(dx), R * N);
    MAE_KERNEL_CHECK("bias_gelu_backward (gelu_backward_kernel)", c.stream);
    return;
  }
  const bool vec = vec_ok(R * N, {x.data, b.data, dy.data, dx.data}) && N % 8 == 0 && b.dtype == DType::F32;
  const int64_t col_blocks = ceil_div(N, vec ? 256 : 32);
  const RowChunks rc = row_chunks(c, R, col_blocks);
  Scratch part(c.device, (size_t)(rc.chunks * N) * sizeof(float));
  const dim3 grid((unsigned)col_blocks, (unsigned)rc.chunks), block(32, 8);
  if (vec) {
    with_type(x.dtype, [&](auto tx) {
      with_type(dy.dtype, [&](auto td) {
        with_type(dx.dtype, [&](auto ty) {
          using TX = decltype(tx);
          using TD = decltype(td);
          using TY = decltype(ty);
          bias_gelu_grad_vec_kernel<TX, TD, TY><<<grid, block, 0, c.stream>>>(
              static_cast<const TX*>(x.data), b.f32(), static_cast<const TD*>(dy.data), static_cast<TY*>(dx.data),
              (uint32_t)R, (uint32_t)N, (uint32_t)rc.per, part.as<float>());
        });
      });
    });
  } else {
    bias_gelu_grad_kernel<<<grid, block, 0, c.stream>>>(src(x), src(b), src(dy), dst(dx), R, N, rc.per,
                                                        part.as<float>());
  }
  MAE_KERNEL_CHECK("bias_gelu_backward", c.stream);
  sum_partials(c, part.as<float>(), rc.chunks, N, 1.0f, dst(*db), "bias_gelu_backward db (sum_partials)");
}

}  // namespace mae::cuda
