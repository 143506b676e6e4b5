// OpenBLAS cblas_sgemm vs oneDNN dnnl_sgemm on the MAE linear shapes, both with the same thread count.
//
// For a Linear with x [M, K], W [N, K] (PyTorch layout) the three products of one training step are
//   fwd : y  [M, N] = x [M, K] . W^T        (NoTrans, Trans)
//   dx  : dx [M, K] = dy [M, N] . W         (NoTrans, NoTrans)
//   dw  : dW [N, K] = dy^T [N, M] . x       (Trans, NoTrans)
// each 2 M N K FLOPs, all row-major (exactly the calls native/cpu/gemm.cpp makes).
//
// Also measured: the FMA throughput of the cores (a register-only loop, AVX2 and AVX-512), the ceiling for both.
//
// The libraries run in separate blocks (every shape with OpenBLAS, then every shape with oneDNN, repeated `rounds`
// times, median per shape); between blocks the program sleeps so that the other library's spinning worker threads
// (OpenBLAS spins up to ~0.1 s after a call) have gone to sleep and do not steal a core.
//
// Usage: sgemm_bench [threads=2] [rounds=3] [json_out]
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

extern "C" {
char* openblas_get_config(void);
char* openblas_get_corename(void);
void openblas_set_num_threads(int);
}

namespace {

using Clock = std::chrono::steady_clock;

double now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

struct Shape {
  std::string model, layer;
  long M, K, N;  // x [M, K], W [N, K]
};

enum Op { FWD, DX, DW, SQUARE };
const char* op_name(Op o) { return o == FWD ? "fwd" : o == DX ? "dx" : o == DW ? "dw" : "square"; }

struct Case {
  std::string model, layer;
  Op op;
  long m, n, k;  // the product's C [m, n] += A [m, k] B [k, n]
  char ta, tb;
  double med[2] = {0, 0};  // GFLOP/s: OpenBLAS, oneDNN
  std::vector<double> runs[2];
  double maxdiff = 0;
};

float* alloc(size_t n) {
  float* p = static_cast<float*>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
  for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  return p;
}

// C [m, n] = op(A) op(B); A is [m, k] (or [k, m] when ta = 'T'), B is [k, n] (or [n, k] when tb = 'T')
void run(int lib, const Case& c, const float* A, const float* B, float* C) {
  const long lda = c.ta == 'N' ? c.k : c.m, ldb = c.tb == 'N' ? c.n : c.k;
  if (lib == 0)
    cblas_sgemm(CblasRowMajor, c.ta == 'N' ? CblasNoTrans : CblasTrans, c.tb == 'N' ? CblasNoTrans : CblasTrans, c.m,
                c.n, c.k, 1.0f, A, lda, B, ldb, 0.0f, C, c.n);
  else if (dnnl_sgemm(c.ta, c.tb, c.m, c.n, c.k, 1.0f, A, lda, B, ldb, 0.0f, C, c.n) != dnnl_success) {
    std::fprintf(stderr, "dnnl_sgemm failed\n");
    std::exit(1);
  }
}

// GFLOP/s of one library on one case: one warm-up call, then calls until >= min_s seconds and >= 3 calls
double time_case(int lib, const Case& c, const float* A, const float* B, float* C, double min_s) {
  run(lib, c, A, B, C);
  const double flops = 2.0 * c.m * c.n * c.k;
  int calls = 0;
  const double t0 = now();
  double t;
  do {
    run(lib, c, A, B, C);
    calls++;
    t = now() - t0;
  } while (t < min_s || calls < 3);
  return flops * calls / t / 1e9;
}

// FMA throughput: 12 independent accumulator chains per thread, register only
template <int W>
double fma_peak(int threads) {
  const long iters = 20'000'000;
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    {
      if constexpr (W == 16) {
        __m512 a[12];
        for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
        const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
        for (long it = 0; it < iters; it++)
          for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
        for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_ps(a[i]);
      } else {
        __m256 a[12];
        for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
        const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
        for (long it = 0; it < iters; it++)
          for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], x, y);
        float tmp[8];
        for (int i = 0; i < 12; i++) {
          _mm256_storeu_ps(tmp, a[i]);
          for (float v : tmp) sink += v;
        }
      }
    }
    const double t = now() - t0;
    if (sink == 12345.0f) std::printf(" ");
    best = std::max(best, 2.0 * W * 12 * iters * threads / t / 1e9);
  }
  return best;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  const char* json_out = argc > 3 ? argv[3] : nullptr;
  const double min_s = 0.15;

  openblas_set_num_threads(threads);
  omp_set_num_threads(threads);
  const dnnl_version_t* dv = dnnl_version();
  const int isa = (int)dnnl_get_effective_cpu_isa();

  std::printf("OpenBLAS: %s (kernel core: %s), threads %d\n", openblas_get_config(), openblas_get_corename(), threads);
  std::printf("oneDNN:   %d.%d.%d (cpu runtime %d, effective ISA enum 0x%x), threads %d\n", dv->major, dv->minor,
              dv->patch, dv->cpu_runtime, isa, threads);

  const double peak256 = fma_peak<8>(threads), peak512 = fma_peak<16>(threads);
  std::printf("FMA throughput, %d threads: AVX2 %.1f GFLOP/s, AVX-512 %.1f GFLOP/s (register-only loop)\n\n", threads,
              peak256, peak512);

  // the MAE linear shapes: 64 images; ViT-B encoder 50 tokens (49 kept + cls) x 768, decoder 197 x 512;
  // the 28-px tiny model: encoder 13 x 192, decoder 50 x 128
  struct Model {
    const char* name;
    long M, D;
  } models[] = {{"vitb-enc", 64 * 50, 768}, {"vitb-dec", 64 * 197, 512}, {"tiny-enc", 64 * 13, 192}, {"tiny-dec", 64 * 50, 128}};
  std::vector<Shape> shapes;
  for (auto& m : models) {
    shapes.push_back({m.name, "qkv", m.M, m.D, 3 * m.D});
    shapes.push_back({m.name, "proj", m.M, m.D, m.D});
    shapes.push_back({m.name, "fc1", m.M, m.D, 4 * m.D});
    shapes.push_back({m.name, "fc2", m.M, 4 * m.D, m.D});
  }
  std::vector<Case> cases;
  for (long s : {1024L, 2048L}) cases.push_back({"square", std::to_string(s), SQUARE, s, s, s, 'N', 'T'});
  for (auto& s : shapes) {
    cases.push_back({s.model, s.layer, FWD, s.M, s.N, s.K, 'N', 'T'});  // x [M,K] . W^T, W [N,K]
    cases.push_back({s.model, s.layer, DX, s.M, s.K, s.N, 'N', 'N'});   // dy [M,N] . W [N,K]
    cases.push_back({s.model, s.layer, DW, s.N, s.K, s.M, 'T', 'N'});   // dy^T: dy [M,N] read as [N,M]^T . x [M,K]
  }

  // buffers big enough for every case
  size_t amax = 0, bmax = 0, cmax = 0;
  for (auto& c : cases) {
    amax = std::max(amax, (size_t)(c.m * c.k));
    bmax = std::max(bmax, (size_t)(c.k * c.n));
    cmax = std::max(cmax, (size_t)(c.m * c.n));
  }
  float *A = alloc(amax), *B = alloc(bmax), *C0 = alloc(cmax), *C1 = alloc(cmax);

  // correctness: both libraries give the same product
  for (auto& c : cases) {
    run(0, c, A, B, C0);
    run(1, c, A, B, C1);
    double md = 0, mx = 0;
    for (long i = 0; i < c.m * c.n; i++) {
      md = std::max(md, (double)std::fabs(C0[i] - C1[i]));
      mx = std::max(mx, (double)std::fabs(C0[i]));
    }
    c.maxdiff = md / std::max(mx, 1e-30);
  }

  for (int r = 0; r < rounds; r++)
    for (int lib = 0; lib < 2; lib++) {
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      for (auto& c : cases) c.runs[lib].push_back(time_case(lib, c, A, B, C0, min_s));
    }
  for (auto& c : cases)
    for (int lib = 0; lib < 2; lib++) c.med[lib] = median(c.runs[lib]);

  std::printf("%-9s %-5s %-6s %6s %6s %6s | %9s %9s | %7s | %s\n", "model", "layer", "op", "m", "n", "k", "OpenBLAS",
              "oneDNN", "dnnl/ob", "rel.diff");
  double fl[2] = {0, 0}, tm[2] = {0, 0};
  for (auto& c : cases) {
    std::printf("%-9s %-5s %-6s %6ld %6ld %6ld | %9.1f %9.1f | %6.2fx | %.1e\n", c.model.c_str(), c.layer.c_str(),
                op_name(c.op), c.m, c.n, c.k, c.med[0], c.med[1], c.med[1] / c.med[0], c.maxdiff);
    if (c.op != SQUARE) {
      const double f = 2.0 * c.m * c.n * c.k;
      for (int lib = 0; lib < 2; lib++) {
        fl[lib] += f;
        tm[lib] += f / (c.med[lib] * 1e9);
      }
    }
  }
  std::printf("\nall MAE linear products (one fwd + dx + dw each), time-weighted: OpenBLAS %.1f GFLOP/s, oneDNN %.1f "
              "GFLOP/s, oneDNN/OpenBLAS %.2fx\n",
              fl[0] / tm[0] / 1e9, fl[1] / tm[1] / 1e9, tm[0] / tm[1]);

  if (json_out) {
    FILE* f = std::fopen(json_out, "w");
    if (!f) {
      std::perror(json_out);
      return 1;
    }
    std::fprintf(f, "{\n  \"openblas\": \"%s\",\n  \"openblas_core\": \"%s\",\n", openblas_get_config(),
                 openblas_get_corename());
    std::fprintf(f, "  \"onednn\": \"%d.%d.%d\",\n  \"threads\": %d,\n  \"rounds\": %d,\n", dv->major, dv->minor,
                 dv->patch, threads, rounds);
    std::fprintf(f, "  \"fma_peak_gflops\": {\"avx2\": %.2f, \"avx512\": %.2f},\n", peak256, peak512);
    std::fprintf(f, "  \"total_time_weighted_gflops\": {\"openblas\": %.2f, \"onednn\": %.2f},\n  \"cases\": [\n",
                 fl[0] / tm[0] / 1e9, fl[1] / tm[1] / 1e9);
    for (size_t i = 0; i < cases.size(); i++) {
      auto& c = cases[i];
      std::fprintf(f,
                   "    {\"model\": \"%s\", \"layer\": \"%s\", \"op\": \"%s\", \"m\": %ld, \"n\": %ld, \"k\": %ld, "
                   "\"openblas_gflops\": %.2f, \"onednn_gflops\": %.2f, \"rel_diff\": %.2e}%s\n",
                   c.model.c_str(), c.layer.c_str(), op_name(c.op), c.m, c.n, c.k, c.med[0], c.med[1], c.maxdiff,
                   i + 1 < cases.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("wrote %s\n", json_out);
  }
  std::free(A);
  std::free(B);
  std::free(C0);
  std::free(C1);
  return 0;
}
