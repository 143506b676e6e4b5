// Two choices of operand layout for the bf16 products of a training step, timed through oneDNN's matmul so that a CPU
// (AMX above all) can settle them in one run; the library makes neither copy today (benchmarks/README.md, sections 15
// and 16).
//
// 1. dW = dy^T x of each Linear (gemm.cpp): dy [M, N] bf16 is read as a transposed view, and oneDNN's bf16 kernels
//    copy it into their layout inside the call. Timed: the view (as the library runs it), dy^T stored [N, M] (as if
//    the column sums for db, which read dy anyway, wrote it), and a copy of dy's bytes: a lower bound on the cost of
//    writing dy^T (oneDNN's own reorder ab -> ba is no fair price: up to 7.5 ms for the decoder's 1576 x 2048 on
//    Zen 4). net = view - stored - copy: the most that storing dy^T could save per product (negative: it cannot pay).
// 2. Attention's products on the oneDNN path (attention.cpp): 4-D strided views of qkv [B, N, 3D], out and dqkv, as
//    the library runs them (oneDNN 2.6: "gemm:jit", whose bf16 GEMM takes AMX kernels on AMX CPUs), against the same
//    products over heads packed contiguously, [B H, N, hd] (oneDNN's brgemm kernels; k^T and v^T as transposed views
//    of the packed k and v), plus the packing: one reorder of a [B, H, N, hd] view into packed heads, counted 4 times
//    forward (q, k, v in, out back) and 7 times backward (q, k, v, dout in; dq, dk, dv back). The seven products of
//    a layer: forward S = q k^T (float32, alpha) and out = P v; backward S again, dP = dout v^T, dq = dS k,
//    dk = dS^T q, dv = P^T dout.
//
// Usage: layouts_bench [threads=2] [rounds=5] [json_out]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "onednn_bench.h"

namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
using dims = dnnl::memory::dims;
using desc = dnnl::memory::desc;

// a memory object of d, filled with small bf16 values (or zeros for float32): the time does not depend on them
dnnl::memory filled(const desc& d, dnnl::engine& eng) {
  dnnl::memory m(d, eng);
  uint16_t* p = static_cast<uint16_t*>(m.get_data_handle());
  const size_t n = d.get_size() / 2;
  for (size_t i = 0; i < n; i++) p[i] = d.data_type() == dt::bf16 ? (uint16_t)(0x3c00 + (i % 64)) : 0;
  return m;
}

struct Timed {
  double s = 1e30;  // seconds per call, best of the rounds
  std::string impl;
};

// C = alpha A B over memory descriptors a, b, c (any strides); `flops` per call picks the call count
Timed product(Bench& bench, const desc& a, const desc& b, const desc& c, float alpha, double flops) {
  dnnl::engine& eng = bench.eng;
  dnnl::stream& st = bench.st;
  dnnl::primitive_attr attr;
  if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, eng);
  dnnl::matmul p(pd);
  dnnl::memory am = filled(a, eng), bm = filled(b, eng), cm(c, eng);
  const int calls = std::max(3, (int)(1e9 / flops));
  Timed t{1e30, pd.impl_info_str()};
  p.execute(st, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  for (int r = 0; r < bench.rounds; r++)
    t.s = std::min(t.s, bench.seconds_per_call(calls, [&] {
      p.execute(st, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    }));
  return t;
}

Timed reorder(Bench& bench, const desc& from, const desc& to) {
  dnnl::memory a = filled(from, bench.eng), b(to, bench.eng);
  dnnl::reorder r(a, b);
  const int calls = std::max(3, (int)(2e8 / from.get_size()));
  Timed t{1e30, "reorder"};
  r.execute(bench.st, a, b);
  for (int round = 0; round < bench.rounds; round++)
    t.s = std::min(t.s, bench.seconds_per_call(calls, [&] { r.execute(bench.st, a, b); }));
  return t;
}

// a copy of n bytes over the threads: a lower bound on the cost of any transpose of as many bytes (which also reads
// and writes each once, but in another order)
Timed timed_copy(Bench& bench, size_t n) {
  std::vector<char> src(n, 1), dst(n);
  const long chunk = 1 << 16, chunks = (n + chunk - 1) / chunk;
  const auto copy = [&] {
#pragma omp parallel for schedule(static)
    for (long c = 0; c < chunks; c++)
      std::memcpy(&dst[c * chunk], &src[c * chunk], std::min<size_t>(chunk, n - c * chunk));
  };
  const int calls = std::max(3, (int)(2e8 / n));
  Timed t{1e30, "copy"};
  copy();
  for (int r = 0; r < bench.rounds; r++) t.s = std::min(t.s, bench.seconds_per_call(calls, copy));
  return t;
}

// ---- 1. dW = dy^T x ------------------------------------------------------------------------------------------------

struct Linear {
  const char* model;
  const char* layer;
  long M, K, N;  // x [M, K], W [N, K], dy [M, N]
  int depth;     // blocks of the model with this layer
};

// ViT-B/16 at batch 8 and mask ratio 0.75 (encoder 8 x 50 tokens, 12 blocks; decoder 8 x 197, 8 blocks), the 28-px
// tiny model at batch 64 (encoder 64 x 13, 6 blocks; decoder 64 x 50, 2 blocks)
const Linear kLinears[] = {
    {"vitb", "enc qkv", 400, 768, 2304, 12},  {"vitb", "enc proj", 400, 768, 768, 12},
    {"vitb", "enc fc1", 400, 768, 3072, 12},  {"vitb", "enc fc2", 400, 3072, 768, 12},
    {"vitb", "dec qkv", 1576, 512, 1536, 8},  {"vitb", "dec proj", 1576, 512, 512, 8},
    {"vitb", "dec fc1", 1576, 512, 2048, 8},  {"vitb", "dec fc2", 1576, 2048, 512, 8},
    {"tiny", "enc qkv", 832, 192, 576, 6},    {"tiny", "enc proj", 832, 192, 192, 6},
    {"tiny", "enc fc1", 832, 192, 768, 6},    {"tiny", "enc fc2", 832, 768, 192, 6},
    {"tiny", "dec qkv", 3200, 128, 384, 2},   {"tiny", "dec proj", 3200, 128, 128, 2},
    {"tiny", "dec fc1", 3200, 128, 512, 2},   {"tiny", "dec fc2", 3200, 512, 128, 2},
};

struct DwResult {
  const Linear* l;
  Timed view, stored, copy;
};

DwResult measure_dw(Bench& bench, const Linear& l) {
  const double flops = 2.0 * l.M * l.N * l.K;
  const desc x({l.M, l.K}, dt::bf16, tag::ab), dw({l.N, l.K}, dt::f32, tag::ab);
  DwResult r{&l};
  r.view = product(bench, desc({l.N, l.M}, dt::bf16, tag::ba), x, dw, 1.0f, flops);
  r.stored = product(bench, desc({l.N, l.M}, dt::bf16, tag::ab), x, dw, 1.0f, flops);
  r.copy = timed_copy(bench, l.M * l.N * 2);
  return r;
}

// ---- 2. attention's products ---------------------------------------------------------------------------------------

struct Heads {
  const char* name;
  long B, H, N, hd;
  int depth;
};

const Heads kHeads[] = {
    {"vitb enc", 8, 12, 50, 64, 12},
    {"vitb dec", 8, 16, 197, 32, 8},
    {"tiny enc", 64, 3, 13, 64, 6},
    {"tiny dec", 64, 4, 50, 32, 2},
};

struct AttnResult {
  const Heads* h;
  std::vector<std::pair<Timed, Timed>> products;  // strided, packed; in the order of kProducts
  Timed pack;
};

const char* const kProducts[] = {"S = q k^T", "out = P v",   "dP = dout v^T",
                                  "dq = dS k", "dk = dS^T q", "dv = P^T dout"};
// how many times each runs in a layer's forward + backward (S twice: forward, and recomputed in backward)
const int kCount[] = {2, 1, 1, 1, 1, 1};

AttnResult measure_attention(Bench& bench, const Heads& h) {
  const long B = h.B, H = h.H, N = h.N, hd = h.hd, D = H * hd, BH = B * H;
  const double flops = 2.0 * BH * N * N * hd;
  const float alpha = 1.0f / std::sqrt((float)hd);
  // strided views as attention.cpp: tokens of qkv (q, k, v alike), their transpose, out / dout, the scores
  const desc tok({B, H, N, hd}, dt::bf16, dims{N * 3 * D, hd, 3 * D, 1}),
      tokT({B, H, hd, N}, dt::bf16, dims{N * 3 * D, hd, 1, 3 * D}), go({B, H, N, hd}, dt::bf16, dims{N * D, hd, D, 1}),
      s32({B, H, N, N}, dt::f32, tag::abcd), s16({B, H, N, N}, dt::bf16, tag::abcd),
      s16T({B, H, N, N}, dt::bf16, dims{H * N * N, N * N, 1, N});
  // packed heads, and the transposed view of one (k^T, v^T: read from the packed k and v, no copy of their own)
  const desc p({BH, N, hd}, dt::bf16, tag::abc), pT({BH, hd, N}, dt::bf16, tag::acb),
      p32({BH, N, N}, dt::f32, tag::abc), p16({BH, N, N}, dt::bf16, tag::abc), p16T({BH, N, N}, dt::bf16, tag::acb);
  AttnResult r{&h};
  const auto both = [&](const desc& a, const desc& b, const desc& c, const desc& pa, const desc& pb, const desc& pc,
                        float al) {
    r.products.push_back({product(bench, a, b, c, al, flops), product(bench, pa, pb, pc, al, flops)});
  };
  both(tok, tokT, s32, p, pT, p32, alpha);    // S = alpha q k^T
  both(s16, tok, go, p16, p, p, 1.0f);        // out = P v (into out [B, N, D])
  both(go, tokT, s32, p, pT, p32, 1.0f);      // dP = dout v^T
  both(s16, tok, tok, p16, p, p, alpha);      // dq = alpha dS k
  both(s16T, tok, tok, p16T, p, p, alpha);    // dk = alpha dS^T q
  both(s16T, go, tok, p16T, p, p, 1.0f);      // dv = P^T dout
  r.pack = reorder(bench, tok, desc({B, H, N, hd}, dt::bf16, tag::abcd));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Bench bench(argc, argv);

  std::printf("\n1. dW = dy^T x: dy^T as a view (as now) or stored\n");
  std::printf("%-5s %-9s %16s %9s %9s %9s %8s  %s\n", "model", "layer", "M x K x N", "view", "stored", "copy",
              "net", "kernel");
  std::vector<DwResult> dws;
  double dw_net[2] = {0, 0};  // per model, ms per step
  for (const Linear& l : kLinears) {
    const DwResult r = measure_dw(bench, l);
    dws.push_back(r);
    const double net = r.view.s - r.stored.s - r.copy.s;
    std::printf("%-5s %-9s %5ldx%5ldx%5ld %9.3f %9.3f %9.3f %8.3f  %s\n", l.model, l.layer, l.M, l.K, l.N,
                r.view.s * 1e3, r.stored.s * 1e3, r.copy.s * 1e3, net * 1e3, r.view.impl.c_str());
    dw_net[std::strcmp(l.model, "vitb") == 0 ? 0 : 1] += l.depth * net;
  }
  std::printf("dy^T stored could save at most, per training step: ViT-B batch 8 %.1f ms, tiny batch 64 %.1f ms\n\n",
              dw_net[0] * 1e3, dw_net[1] * 1e3);

  std::printf("2. attention's products: strided views of qkv (as now) or packed heads [B H, N, hd]\n");
  std::printf("%-9s %-14s %9s %9s  %-22s %s\n", "heads", "product", "strided", "packed", "kernel (strided)",
              "kernel (packed)");
  std::vector<AttnResult> attns;
  for (const Heads& h : kHeads) {
    const AttnResult r = measure_attention(bench, h);
    attns.push_back(r);
    double strided = 0, packed = 0;
    for (size_t i = 0; i < r.products.size(); i++) {
      const auto& [a, b] = r.products[i];
      std::printf("%-9s %-14s %9.3f %9.3f  %-22s %s\n", h.name, kProducts[i], a.s * 1e3, b.s * 1e3, a.impl.c_str(),
                  b.impl.c_str());
      strided += kCount[i] * a.s;
      packed += kCount[i] * b.s;
    }
    const double packing = 11 * r.pack.s;
    std::printf("%-9s a layer's forward + backward: strided %.3f ms, packed %.3f ms + packing %.3f ms (11 x %.3f); a "
                "step (%d layers): %.1f against %.1f ms\n",
                h.name, strided * 1e3, packed * 1e3, packing * 1e3, r.pack.s * 1e3, h.depth, h.depth * strided * 1e3,
                h.depth * (packed + packing) * 1e3);
  }

  if (bench.json_out) {
    FILE* f = bench.open_json();
    if (!f) return 1;
    std::fprintf(f, "  \"dw_step_most_saved_ms\": {\"vitb\": %.3f, \"tiny\": %.3f},\n  \"dw\": [\n", dw_net[0] * 1e3,
                 dw_net[1] * 1e3);
    for (size_t i = 0; i < dws.size(); i++) {
      const DwResult& r = dws[i];
      std::fprintf(f,
                   "    {\"model\": \"%s\", \"layer\": \"%s\", \"M\": %ld, \"K\": %ld, \"N\": %ld, \"view_ms\": %.4f, "
                   "\"stored_ms\": %.4f, \"copy_ms\": %.4f, \"kernel\": \"%s\"}%s\n",
                   r.l->model, r.l->layer, r.l->M, r.l->K, r.l->N, r.view.s * 1e3, r.stored.s * 1e3,
                   r.copy.s * 1e3, r.view.impl.c_str(), i + 1 < dws.size() ? "," : "");
    }
    std::fprintf(f, "  ],\n  \"attention\": [\n");
    for (size_t i = 0; i < attns.size(); i++) {
      const AttnResult& r = attns[i];
      std::fprintf(f,
                   "    {\"heads\": \"%s\", \"B\": %ld, \"H\": %ld, \"N\": %ld, \"hd\": %ld, \"pack_ms\": %.4f, "
                   "\"products\": [",
                   r.h->name, r.h->B, r.h->H, r.h->N, r.h->hd, r.pack.s * 1e3);
      for (size_t j = 0; j < r.products.size(); j++)
        std::fprintf(f,
                     "%s{\"product\": \"%s\", \"strided_ms\": %.4f, \"packed_ms\": %.4f, \"strided_kernel\": "
                     "\"%s\", \"packed_kernel\": \"%s\"}",
                     j ? ", " : "", kProducts[j], r.products[j].first.s * 1e3, r.products[j].second.s * 1e3,
                     r.products[j].first.impl.c_str(), r.products[j].second.impl.c_str());
      std::fprintf(f, "]}%s\n", i + 1 < attns.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
    std::printf("wrote %s\n", bench.json_out);
  }
  return 0;
}
