// bf16 Linear products through oneDNN's matmul with the weight as the library passes it (plain, row-major W [N, K])
// against the weight already in the blocked layout oneDNN asks for (format `any`), and the cost of that reorder.
//
// For a Linear with x [M, K], W [N, K] the two products that read W are
//   fwd : y  [M, N] = x [M, K] . W^T    (B = W^T: W's rows are B's columns)
//   dx  : dx [M, K] = dy [M, N] . W     (B = W)
// oneDNN's bf16 kernels (AVX512-BF16 and AMX alike) read B in a blocked layout with pairs along the product's K: given
// a plain B, the primitive copies it into that layout inside every call. A blocked copy made once per optimizer step
// saves that copy in each of the two products, and costs its own making: this program measures the three (per call:
// plain, blocked, reorder plain -> blocked with oneDNN's reorder primitive), so that the trade can be judged per CPU.
// Activations, dy and outputs are bf16, as in a bf16 training step; the bias is left out (the same in both).
//
// Usage: packed_bench [threads=2] [rounds=5] [json_out]
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "onednn_bench.h"

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

struct Shape {
  const char* model;
  const char* layer;
  long M, K, N;  // x [M, K], W [N, K]
};

// ViT-B/16 at batch 8 and mask ratio 0.75 (encoder 8 x 50 tokens, decoder 8 x 197), the 28-px tiny model at batch 64
// (encoder 64 x 13, decoder 64 x 50)
const Shape kShapes[] = {
    {"vitb", "enc qkv", 400, 768, 2304},    {"vitb", "enc proj", 400, 768, 768},   {"vitb", "enc fc1", 400, 768, 3072},
    {"vitb", "enc fc2", 400, 3072, 768},    {"vitb", "dec qkv", 1576, 512, 1536},  {"vitb", "dec proj", 1576, 512, 512},
    {"vitb", "dec fc1", 1576, 512, 2048},   {"vitb", "dec fc2", 1576, 2048, 512},  {"tiny", "enc qkv", 832, 192, 576},
    {"tiny", "enc proj", 832, 192, 192},    {"tiny", "enc fc1", 832, 192, 768},    {"tiny", "enc fc2", 832, 768, 192},
    {"tiny", "dec qkv", 3200, 128, 384},    {"tiny", "dec proj", 3200, 128, 128},  {"tiny", "dec fc1", 3200, 128, 512},
    {"tiny", "dec fc2", 3200, 512, 128},
};

struct Result {
  const Shape* s;
  const char* role;
  std::string impl;
  double plain = 1e30, blocked = 1e30, reorder = 1e30;  // seconds per call, best of the rounds
};

// C [m, n] = A [m, k] B [k, n], B plain with format `b_tag` (ba: W for fwd, ab: W for dx)
Result measure(Bench& bench, const Shape& s, bool fwd) {
  dnnl::engine& eng = bench.eng;
  dnnl::stream& st = bench.st;
  const long m = s.M, k = fwd ? s.K : s.N, n = fwd ? s.N : s.K;
  const dnnl::memory::desc a({m, k}, dt::bf16, tag::ab), c({m, n}, dt::bf16, tag::ab);
  const dnnl::memory::desc b_plain({k, n}, dt::bf16, fwd ? tag::ba : tag::ab), b_any({k, n}, dt::bf16, tag::any);
  const dnnl::matmul::primitive_desc pd_plain(dnnl::matmul::desc(a, b_plain, c), eng);
  const dnnl::matmul::primitive_desc pd_blocked(dnnl::matmul::desc(a, b_any, c), eng);
  dnnl::matmul plain(pd_plain), blocked(pd_blocked);
  dnnl::memory am(a, eng), cm(c, eng), bp(b_plain, eng), bb(pd_blocked.weights_desc(), eng);
  // bf16 ones and small values: the time does not depend on them
  for (dnnl::memory* x : {&am, &bp}) {
    uint16_t* p = static_cast<uint16_t*>(x->get_data_handle());
    const size_t count = x->get_desc().get_size() / 2;
    for (size_t i = 0; i < count; i++) p[i] = (uint16_t)(0x3c00 + (i % 64));
  }
  dnnl::reorder to_blocked(bp, bb);
  to_blocked.execute(st, bp, bb);
  const int calls = std::max(3, (int)(2e9 / (2.0 * m * n * k)));  // ~2 GFLOP a round
  Result r{&s, fwd ? "fwd" : "dx", pd_blocked.impl_info_str()};
  for (int round = 0; round < bench.rounds; round++) {
    r.plain = std::min(r.plain, bench.seconds_per_call(calls, [&] {
      plain.execute(st, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bp}, {DNNL_ARG_DST, cm}});
    }));
    r.blocked = std::min(r.blocked, bench.seconds_per_call(calls, [&] {
      blocked.execute(st, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bb}, {DNNL_ARG_DST, cm}});
    }));
    r.reorder = std::min(r.reorder, bench.seconds_per_call(calls, [&] { to_blocked.execute(st, bp, bb); }));
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Bench bench(argc, argv);
  std::printf("%-5s %-9s %-4s %-16s %9s %9s %8s %9s %8s  %s\n", "model", "layer", "role", "M x K x N", "plain",
              "blocked", "saves", "reorder", "net", "kernel");
  std::vector<Result> results;
  double saved[2] = {0, 0}, reordered[2] = {0, 0};  // per model: ms per step summed over the layers (x depth below)
  for (const Shape& s : kShapes)
    for (bool fwd : {true, false}) {
      const Result r = measure(bench, s, fwd);
      results.push_back(r);
      const long k = fwd ? s.K : s.N, n = fwd ? s.N : s.K;
      const double save = r.plain - r.blocked;
      std::printf("%-5s %-9s %-4s %5ldx%5ldx%5ld %9.3f %9.3f %7.1f%% %9.3f %8.3f  %s\n", s.model, s.layer, r.role, s.M, k,
                  n, r.plain * 1e3, r.blocked * 1e3, 100 * save / r.plain, r.reorder * 1e3, (save - r.reorder) * 1e3,
                  r.impl.c_str());
      const int i = std::string(s.model) == "vitb" ? 0 : 1;
      // blocks with this layer: ViT-B 12 encoder and 8 decoder blocks, the tiny model 6 and 2
      const bool enc = std::string(s.layer).rfind("enc", 0) == 0;
      const int depth = i == 0 ? (enc ? 12 : 8) : (enc ? 6 : 2);
      saved[i] += depth * save;
      reordered[i] += depth * r.reorder;
    }
  for (int i = 0; i < 2; i++)
    std::printf("%s, one training step (every block's fwd and dx): blocked weights save %.1f ms, their reorders cost "
                "%.1f ms\n", i == 0 ? "ViT-B batch 8" : "tiny batch 64", saved[i] * 1e3, reordered[i] * 1e3);
  if (bench.json_out) {
    FILE* f = bench.open_json();
    if (!f) return 1;
    std::fprintf(f, "  \"step_ms\": {\"vitb\": {\"saved\": %.3f, \"reorders\": %.3f}, \"tiny\": {\"saved\": %.3f, "
                 "\"reorders\": %.3f}},\n  \"cases\": [\n", saved[0] * 1e3, reordered[0] * 1e3, saved[1] * 1e3,
                 reordered[1] * 1e3);
    for (size_t i = 0; i < results.size(); i++) {
      const Result& r = results[i];
      std::fprintf(f,
                   "    {\"model\": \"%s\", \"layer\": \"%s\", \"role\": \"%s\", \"M\": %ld, \"K\": %ld, \"N\": %ld, "
                   "\"plain_ms\": %.4f, \"blocked_ms\": %.4f, \"reorder_ms\": %.4f, \"kernel\": \"%s\"}%s\n",
                   r.s->model, r.s->layer, r.role, r.s->M, r.s->K, r.s->N, r.plain * 1e3, r.blocked * 1e3,
                   r.reorder * 1e3, r.impl.c_str(), i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("wrote %s\n", bench.json_out);
  }
  return 0;
}
