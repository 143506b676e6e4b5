// Data augmentation on 8-bit images, for the data-loading threads: crop + bicubic resize + flip + channel
// replication + normalisation in one pass, from uint8 HWC pixels to float32 (or bfloat16) CHW.
//
//   src [height, width, channels] uint8 -> dst [out_channels, win_h, win_w]
//   The box (top, left, crop_h, crop_w) of src is resampled to a virtual out_h x out_w image, of which the window
//   (y0, x0, win_h, win_w) is written, mirrored left-right when `flip`; a 1-channel src is replicated to
//   out_channels; dst = (v / 255 - mean[c]) / std[c], v the resampled value clamped to [0, 255] (not rounded).
//   RandomResizedCrop + flip: the window is the whole output. Resize + CenterCrop (evaluation): the box is the whole
//   image, out_h x out_w the resized size and the window the centre crop.
//
// Two resampling kernels, both separable with float32 weights and accumulation:
//   antialias = false: PyTorch F.interpolate(mode='bicubic', align_corners=False, antialias=False), the kernel of
//     lib/data/transforms.ts: a = -0.75, output o samples input (o + 0.5) * in/out - 0.5 from 4 neighbours whose
//     indices are clamped to the box.
//   antialias = true: PIL's bicubic resize, which torchvision's tensor path (antialias=True) reproduces: a = -0.5,
//     the kernel stretched by the scale when shrinking (support 2 * max(in/out, 1) input pixels each side of
//     (o + 0.5) * in/out), cut off at the box border and renormalised to sum 1. PIL also rounds to 8 bits after each
//     of its two passes; this kernel, like torchvision's, keeps the intermediate in float.
// Each output sample reads K consecutive input samples (zero weights pad the shorter ones). For each output row, the
// vertical pass sums K rows of the box (uint8 -> float, contiguous, vectorised) into one float row; the horizontal
// pass then computes 8 neighbouring outputs at a time as a small dense matrix times the input span they read
// (broadcast-multiply-adds, no gathers) and writes them, clamped and normalised, into the CHW planes.
//
// Single-threaded and allocation-free after warm-up (thread-local scratch): every data-loading worker thread calls
// it on its own samples. Not in the op table: it works on byte buffers, not tensors, and only on the CPU.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu.h"

namespace mae::cpu {

namespace {

// The taps of one axis: output sample i reads input samples start[i] .. start[i] + K - 1 (box coordinates) with
// weights weight[i * K + k].
struct Taps {
  int64_t K = 0;
  std::vector<int32_t> start;
  std::vector<float> weight;
};

double cubic(double x, double a) {
  x = std::fabs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

// Taps for outputs o = o0 .. o0 + n - 1 of resampling `in` samples to `out` (in reverse order when `reverse`).
void make_taps(int64_t in, int64_t out, int64_t o0, int64_t n, bool antialias, bool reverse, Taps& t) {
  const double scale = (double)in / (double)out;
  const double support = antialias ? 2.0 * std::max(scale, 1.0) : 2.0;
  t.K = std::min<int64_t>(antialias ? 2 * (int64_t)std::ceil(support) + 1 : 4, in);
  t.start.assign(n, 0);
  t.weight.assign(n * t.K, 0.0f);
  thread_local std::vector<double> w;
  for (int64_t i = 0; i < n; i++) {
    const int64_t o = o0 + (reverse ? n - 1 - i : i);
    int64_t first;  // the input sample of w[0]
    w.clear();
    if (antialias) {
      const double center = scale * (o + 0.5), inv = 1.0 / std::max(scale, 1.0);
      const int64_t lo = std::max<int64_t>((int64_t)(center - support + 0.5), 0);
      const int64_t hi = std::min<int64_t>((int64_t)(center + support + 0.5), in);
      double total = 0;
      for (int64_t j = lo; j < hi; j++) {
        w.push_back(cubic((j - center + 0.5) * inv, -0.5));
        total += w.back();
      }
      for (double& v : w) v = total != 0 ? v / total : 0;
      first = lo;
    } else {
      const double real = scale * (o + 0.5) - 0.5;
      const double f = std::floor(real), frac = real - f;
      first = (int64_t)f - 1;
      for (int k = 0; k < 4; k++) w.push_back(cubic(frac + 1 - k, -0.75));
    }
    // place the weights in the window [s, s + K): clamped neighbours (non-antialiased) fold onto the border sample
    const int64_t s = std::clamp<int64_t>(first, 0, in - t.K);
    t.start[i] = (int32_t)s;
    for (size_t k = 0; k < w.size(); k++) {
      const int64_t j = std::clamp<int64_t>(first + (int64_t)k, 0, in - 1);
      t.weight[i * t.K + (j - s)] += (float)w[k];
    }
  }
}

inline uint16_t to_bf16(float f) {  // round to nearest even (values here are finite)
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

// The horizontal taps regrouped into blocks of L consecutive outputs: block b reads the input samples
// first[b] .. first[b] + span[b] - 1, and its outputs are sum_j matrix[b][j][l] * input[first[b] + j], l < L. A block
// costs span (about L * in/out + K) multiply-adds of L lanes; one output at a time would cost K scalar ones. L = 8
// fills an AVX2 register; 16 lanes ran over 10x slower in the x86-64-v3 (AVX2) build and no faster with AVX-512.
constexpr int64_t L = 8;
typedef float Lanes __attribute__((vector_size(L * sizeof(float))));  // GCC/Clang vector extension
struct Blocks {
  std::vector<int32_t> first, span;
  std::vector<int64_t> at;  // where block b's matrix [span][L] starts in `matrix`
  std::vector<float> matrix;
};

void make_blocks(const Taps& t, int64_t n, Blocks& b) {
  const int64_t nb = (n + L - 1) / L;
  b.first.assign(nb, 0);
  b.span.assign(nb, 0);
  b.at.assign(nb, 0);
  b.matrix.clear();
  for (int64_t k = 0; k < nb; k++) {
    const int64_t d0 = k * L, d1 = std::min(n, d0 + L);
    int32_t lo = t.start[d0], hi = lo;
    for (int64_t d = d0; d < d1; d++) {
      lo = std::min(lo, t.start[d]);
      hi = std::max(hi, t.start[d]);
    }
    b.first[k] = lo;
    b.span[k] = hi - lo + (int32_t)t.K;
    b.at[k] = (int64_t)b.matrix.size();
    b.matrix.resize(b.matrix.size() + b.span[k] * L, 0.0f);
    float* m = b.matrix.data() + b.at[k];
    for (int64_t d = d0; d < d1; d++)
      for (int64_t j = 0; j < t.K; j++) m[(t.start[d] - lo + j) * L + (d - d0)] = t.weight[d * t.K + j];
  }
}

struct Scratch {
  Taps ty, tx;
  Blocks bx;
  std::vector<float> row;         // one output row of the vertical pass: [crop_w, channels]
  std::vector<float> gain, bias;  // per output channel: dst = v * gain + bias = (v / 255 - mean) / std
};

// The horizontal pass of channel c of output row r (`row`, the vertical pass's result, [crop_w, C] with C = a.channels
// or the template's C when > 0), clamped to [0, 255], normalised and stored into every output channel it feeds: c,
// or all of them when the source has 1 channel.
template <int C, typename Out>
void horizontal(const ResizedCrop& a, const Scratch& s, const float* row, int64_t c, int64_t r, Out* dst) {
  const int64_t ch = C > 0 ? C : a.channels, plane = a.win_h * a.win_w;
  const int64_t oc0 = a.channels == 1 ? 0 : c, oc1 = a.channels == 1 ? a.out_channels : c + 1;
  const Blocks& bx = s.bx;
  for (size_t k = 0; k < bx.first.size(); k++) {
    const float* m = bx.matrix.data() + bx.at[k];
    const float* in = row + (int64_t)bx.first[k] * ch + c;
    Lanes acc = {};
    for (int32_t j = 0; j < bx.span[k]; j++) {
      Lanes mj;
      std::memcpy(&mj, m + j * L, sizeof mj);
      acc += mj * in[j * ch];
    }
    acc = acc < 0.0f ? 0.0f : acc;
    acc = acc > 255.0f ? 255.0f : acc;
    const int64_t d0 = (int64_t)k * L, n = std::min(L, a.win_w - d0);
    for (int64_t oc = oc0; oc < oc1; oc++) {
      Out* o = dst + oc * plane + r * a.win_w + d0;
      const float g = s.gain[oc], b = s.bias[oc];
      for (int64_t l = 0; l < n; l++) {
        if constexpr (sizeof(Out) == 4)
          o[l] = acc[l] * g + b;
        else
          o[l] = to_bf16(acc[l] * g + b);
      }
    }
  }
}

template <typename Out>
void run(const ResizedCrop& a, Scratch& s, Out* dst) {
  const int64_t C = a.channels, rowlen = a.crop_w * C, stride = a.width * C;
  const uint8_t* box = a.src + (a.top * a.width + a.left) * C;
  float* row = s.row.data();
  for (int64_t r = 0; r < a.win_h; r++) {
    // vertical pass: row = sum_k ty.weight[r, k] * box row (ty.start[r] + k)
    const float* wy = s.ty.weight.data() + r * s.ty.K;
    const uint8_t* src = box + (int64_t)s.ty.start[r] * stride;
    for (int64_t j = 0; j < rowlen; j++) row[j] = wy[0] * (float)src[j];
    for (int64_t k = 1; k < s.ty.K; k++) {
      const uint8_t* sk = src + k * stride;
      const float wk = wy[k];
      for (int64_t j = 0; j < rowlen; j++) row[j] += wk * (float)sk[j];
    }
    for (int64_t c = 0; c < C; c++) {
      if (C == 3)
        horizontal<3>(a, s, row, c, r, dst);
      else if (C == 1)
        horizontal<1>(a, s, row, c, r, dst);
      else
        horizontal<0>(a, s, row, c, r, dst);
    }
  }
}

}  // namespace

void resized_crop(const ResizedCrop& a, float* dst_f32, uint16_t* dst_bf16) {
  thread_local Scratch s;
  make_taps(a.crop_h, a.out_h, a.y0, a.win_h, a.antialias, false, s.ty);
  make_taps(a.crop_w, a.out_w, a.x0, a.win_w, a.antialias, a.flip, s.tx);
  make_blocks(s.tx, a.win_w, s.bx);
  s.row.resize(a.crop_w * a.channels);
  s.gain.resize(a.out_channels);
  s.bias.resize(a.out_channels);
  for (int64_t c = 0; c < a.out_channels; c++) {
    s.gain[c] = (float)(1.0 / (255.0 * a.std[c]));
    s.bias[c] = (float)(-a.mean[c] / a.std[c]);
  }
  if (dst_f32)
    run(a, s, dst_f32);
  else
    run(a, s, dst_bf16);
}

}  // namespace mae::cpu
