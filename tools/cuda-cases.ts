/**
 * CUDA-vs-CPU comparison cases for every op of the op table (native/core/ops.h), shared by the vitest suite
 * (test/cuda/) and the device-check program (tools/device-check.ts).
 *
 * A case makes fresh random inputs (host arrays), runs the op once on CPU tensors and once on copies moved to the
 * device, and compares every output (and every tensor the op updates in place) by the norm-relative error
 * |out - ref| / |ref|. In a bfloat16 run the inputs marked `low` (activations) are rounded to bfloat16 on the host,
 * so the CPU sees exactly the numbers the device holds, and go to the device as bfloat16 tensors; parameters,
 * optimizer state and saved statistics stay float32, as in mixed-precision training. Outputs follow the op's main
 * activation input (bindings/ops.cpp): bfloat16 activations and activation gradients, float32 statistics, losses,
 * sums and parameter gradients; the comparison reads every output widened to float32.
 */
import type { NativeAddon, NativeTensor } from '../lib/native.js';
import { Generator } from '../lib/random.js';

export type Precision = 'float32' | 'bfloat16';

export interface CaseInput {
  data: Float32Array | Int32Array;
  shape: number[];
  /** bfloat16 on the device in bfloat16 runs (activations and their gradients) */
  low?: boolean;
}

export interface OpCase {
  family: string;
  name: string;
  /** fresh inputs; `n` runs CPU ops where an input must be consistent with a forward pass (saved statistics) */
  inputs: (g: Generator, n: NativeAddon) => CaseInput[];
  /** runs the op on tensors of one device; returns its outputs by name (tensors it made) */
  run: (n: NativeAddon, t: NativeTensor[]) => Record<string, NativeTensor | null> | void;
  /** inputs the op updates in place, compared after the run: [index, name] */
  inPlace?: [number, string][];
  /** floating-point operations of one run (for TFLOP/s) and the bytes it must at least move (for GB/s) */
  flops?: number;
  bytes?: number;
  /** part of the timing table */
  bench?: boolean;
  /** norm-relative tolerance per precision (defaults: 1e-5 float32, 1e-2 bfloat16) */
  tol?: Partial<Record<Precision, number>>;
}

export interface OutputError {
  output: string;
  rel: number;
  maxAbs: number;
}

export interface CaseResult {
  family: string;
  name: string;
  precision: Precision;
  tol: number;
  ok: boolean;
  errors: OutputError[];
  /** a thrown error (the op failed on one device) */
  failure?: string;
}

export const defaultTol: Record<Precision, number> = { float32: 1e-5, bfloat16: 1e-2 };

// ---- helpers ---------------------------------------------------------------------------------------------------

/** float32 values rounded to the nearest bfloat16 (ties to even), as float32. */
export function roundBf16(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  const u = new Uint32Array(out.buffer);
  const src = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < a.length; i++) {
    const x = src[i]!;
    if ((x & 0x7fffffff) > 0x7f800000) u[i] = (x | 0x00400000) & 0xffff0000;
    else u[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 0) & 0xffff0000;
  }
  return out;
}

/** |a - b| / |b| in the 2-norm (0 when both are zero; Infinity when a has NaN or Inf where b has not). */
export function relError(a: Float32Array, b: Float32Array): OutputError & { output: string } {
  let num = 0;
  let den = 0;
  let maxAbs = 0;
  let bad = false;
  for (let i = 0; i < b.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (!Number.isFinite(x) && Number.isFinite(y)) bad = true;
    const d = x - y;
    num += d * d;
    den += y * y;
    if (Math.abs(d) > maxAbs) maxAbs = Math.abs(d);
  }
  if (a.length !== b.length) bad = true;
  const rel = bad ? Infinity : den === 0 ? (num === 0 ? 0 : Math.sqrt(num)) : Math.sqrt(num / den);
  return { output: '', rel, maxAbs };
}

const normal = (g: Generator, n: number, std = 1, mean = 0): Float32Array => g.normalArray(n, mean, std);
const uniform = (g: Generator, n: number, lo: number, hi: number): Float32Array => g.uniformArray(n, lo, hi);
const numel = (s: number[]): number => s.reduce((a, b) => a * b, 1);
const f = (data: Float32Array, shape: number[], low = false): CaseInput => ({ data, shape, low });
const i32 = (data: Int32Array, shape: number[]): CaseInput => ({ data, shape });

/** the first k entries of a random permutation of [0, n), per batch row */
function keepIndex(g: Generator, B: number, n: number, k: number): Int32Array {
  const out = new Int32Array(B * k);
  for (let b = 0; b < B; b++) out.set(g.permutation(n).subarray(0, k), b * k);
  return out;
}

function maskOf(g: Generator, n: number, p: number): Float32Array {
  const m = new Float32Array(n);
  for (let i = 0; i < n; i++) m[i] = g.uniform() < p ? 1 : 0;
  return m;
}

/** LayerNorm statistics of x [R, D] as the forward computes them (float32 mean, 1 / sqrt(var + eps)). */
function lnStats(x: Float32Array, R: number, D: number, eps: number): [Float32Array, Float32Array] {
  const mean = new Float32Array(R);
  const rstd = new Float32Array(R);
  for (let r = 0; r < R; r++) {
    let s = 0;
    for (let i = 0; i < D; i++) s += x[r * D + i]!;
    const m = s / D;
    let v = 0;
    for (let i = 0; i < D; i++) v += (x[r * D + i]! - m) ** 2;
    mean[r] = m;
    rstd[r] = 1 / Math.sqrt(v / D + eps);
  }
  return [mean, rstd];
}

// ---- the cases -------------------------------------------------------------------------------------------------

/** All cases; `full` adds the large (MAE-sized) shapes that the device check also times. */
export function opCases(full = true): OpCase[] {
  const cases: OpCase[] = [];

  // gemm -------------------------------------------------------------------------------------------------------
  const gemmShapes: [number, number, number, boolean][] = [
    [37, 65, 33, false],
    [5, 1, 7, false],
    [130, 96, 200, false],
  ];
  if (full)
    gemmShapes.push(
      [64 * 50, 768, 3 * 768, true], // ViT-B encoder qkv, 49 visible patches + cls, batch 64
      [64 * 50, 768, 3072, true], // ViT-B mlp fc1
      [64 * 197, 512, 2048, true], // decoder mlp fc1
    );
  for (const [M, K, N, bench] of gemmShapes) {
    cases.push({
      family: 'gemm',
      name: `linear x[${M},${K}] w[${N},${K}] + b`,
      inputs: (g) => [f(normal(g, M * K), [M, K], true), f(normal(g, N * K, 0.05), [N, K]), f(normal(g, N, 0.1), [N])],
      run: (n, [x, w, b]) => ({ y: n.linear(x!, w!, b!) }),
      flops: 2 * M * N * K,
      bytes: 4 * (M * K + N * K + M * N),
      bench,
    });
    if (!bench)
      cases.push({
        family: 'gemm',
        name: `linear x[${M},${K}] w[${N},${K}] (no bias)`,
        inputs: (g) => [f(normal(g, M * K), [M, K], true), f(normal(g, N * K, 0.05), [N, K])],
        run: (n, [x, w]) => ({ y: n.linear(x!, w!, null) }),
      });
    cases.push({
      family: 'gemm',
      name: `linearBackward x[${M},${K}] w[${N},${K}] (dx, dw, db)`,
      inputs: (g) => [f(normal(g, M * K), [M, K], true), f(normal(g, N * K, 0.05), [N, K]), f(normal(g, M * N), [M, N], true)],
      run: (n, [x, w, dy]) => {
        const [dx, dw, db] = n.linearBackward(x!, w!, dy!, true, true);
        return { dx, dw, db };
      },
      flops: 4 * M * N * K,
      bytes: 4 * (2 * M * K + 2 * N * K + M * N),
      bench,
    });
    if (!bench)
      cases.push({
        family: 'gemm',
        name: `linearBackward x[${M},${K}] w[${N},${K}] (dw only)`,
        inputs: (g) => [f(normal(g, M * K), [M, K], true), f(normal(g, N * K, 0.05), [N, K]), f(normal(g, M * N), [M, N], true)],
        run: (n, [x, w, dy]) => {
          const [, dw] = n.linearBackward(x!, w!, dy!, false, false);
          return { dw };
        },
      });
  }

  // layernorm --------------------------------------------------------------------------------------------------
  const lnShapes: [number[], boolean][] = [
    [[3, 37, 65], false],
    [[5, 128], false],
    [[4, 200], false],
    [[3, 7, 1500], false], // wider than the register path
  ];
  if (full) lnShapes.push([[64 * 50, 768], true], [[64 * 197, 512], true]);
  for (const [shape, bench] of lnShapes) {
    const D = shape[shape.length - 1]!;
    const R = numel(shape) / D;
    cases.push({
      family: 'layernorm',
      name: `layerNorm [${shape}]`,
      inputs: (g) => [f(normal(g, R * D, 2, 0.5), shape, true), f(normal(g, D, 0.2, 1), [D]), f(normal(g, D, 0.2), [D])],
      run: (n, [x, w, b]) => {
        const [y, mean, rstd] = n.layerNorm(x!, w!, b!, 1e-6);
        return { y, mean, rstd };
      },
      bytes: 4 * 2 * R * D,
      bench,
    });
    cases.push({
      family: 'layernorm',
      name: `layerNormBackward [${shape}]`,
      inputs: (g) => {
        const x = normal(g, R * D, 2, 0.5);
        const [mean, rstd] = lnStats(x, R, D, 1e-6);
        return [f(normal(g, R * D), shape, true), f(x, shape, true), f(normal(g, D, 0.2, 1), [D]), f(mean, [R]), f(rstd, [R])];
      },
      run: (n, [dy, x, w, mean, rstd]) => {
        const [dx, dw, db] = n.layerNormBackward(dy!, x!, w!, mean!, rstd!);
        return { dx, dw, db };
      },
      bytes: 4 * 3 * R * D,
      bench,
    });
  }

  // gelu -------------------------------------------------------------------------------------------------------
  const geluShapes: [number[], boolean][] = [[[3, 37, 65], false]];
  if (full) geluShapes.push([[64 * 50, 3072], true]);
  for (const [shape, bench] of geluShapes) {
    const N = numel(shape);
    cases.push({
      family: 'gelu',
      name: `gelu [${shape}]`,
      inputs: (g) => [f(normal(g, N, 2), shape, true)],
      run: (n, [x]) => ({ y: n.gelu(x!) }),
      bytes: 8 * N,
      bench,
    });
    cases.push({
      family: 'gelu',
      name: `geluBackward [${shape}]`,
      inputs: (g) => [f(normal(g, N, 2), shape, true), f(normal(g, N), shape, true)],
      run: (n, [x, dy]) => ({ dx: n.geluBackward(x!, dy!) }),
      bytes: 12 * N,
      bench,
    });
  }

  // attention --------------------------------------------------------------------------------------------------
  // [B, N, D, H]: head dims 32, 40 (SIMT only), 64, 80 (ViT-H), sequence lengths odd and up to 1024
  const attnShapes: [number, number, number, number, boolean][] = [
    [2, 37, 96, 3, false],
    [3, 50, 192, 3, false],
    [2, 33, 120, 3, false],
    [2, 65, 240, 3, false],
    [1, 17, 64, 1, false],
  ];
  if (full)
    attnShapes.push(
      [2, 197, 512, 16, false],
      [1, 1024, 256, 4, false],
      [64, 50, 768, 12, true], // ViT-B encoder, 75% masked
      [64, 197, 512, 16, true], // MAE decoder
      [16, 197, 1280, 16, true], // ViT-H/14-like head dim 80, all tokens
    );
  for (const [B, N, D, H, bench] of attnShapes) {
    const hd = D / H;
    const fwdFlops = 4 * B * H * N * N * hd;
    cases.push({
      family: 'attention',
      name: `attention B${B} N${N} D${D} H${H} (hd ${hd})`,
      inputs: (g) => [f(normal(g, B * N * 3 * D), [B, N, 3 * D], true)],
      run: (n, [qkv]) => {
        const [out, lse] = n.attention(qkv!, H);
        return { out, lse };
      },
      flops: fwdFlops,
      bytes: 4 * (B * N * 4 * D),
      bench,
    });
    cases.push({
      family: 'attention',
      name: `attentionBackward B${B} N${N} D${D} H${H} (hd ${hd})`,
      inputs: (g, n) => {
        const qkv = normal(g, B * N * 3 * D);
        const t = n.fromArray(qkv, [B, N, 3 * D]);
        const [out, lse] = n.attention(t, H);
        const res = [f(qkv, [B, N, 3 * D], true), f(out.read() as Float32Array, [B, N, D], true), f(normal(g, B * N * D), [B, N, D], true), f(lse.read() as Float32Array, [B, H, N])];
        t.dispose();
        out.dispose();
        lse.dispose();
        return res;
      },
      run: (n, [qkv, out, dout, lse]) => ({ dqkv: n.attentionBackward(qkv!, out!, dout!, lse!, H) }),
      flops: 2.5 * fwdFlops,
      bytes: 4 * (B * N * 8 * D),
      bench,
    });
  }

  // losses -----------------------------------------------------------------------------------------------------
  const mseShapes: [number, number, number, number, boolean][] = [
    [2, 49, 48, 0.75, false],
    [3, 16, 5, 0.5, false],
    [2, 10, 12, 0, false], // nothing masked: the mean over all patches
  ];
  if (full) mseShapes.push([64, 196, 768, 0.75, true]);
  for (const [B, L, P, ratio, bench] of mseShapes)
    for (const normPix of [false, true]) {
      const shape = [B, L, P];
      cases.push({
        family: 'loss',
        name: `maskedMse [${shape}] mask ${ratio} normPix ${normPix}`,
        inputs: (g) => [f(normal(g, B * L * P), shape, true), f(uniform(g, B * L * P, -2, 3), shape), f(maskOf(g, B * L, ratio), [B, L])],
        run: (n, [pred, target, mask]) => ({ loss: n.maskedMse(pred!, target!, mask!, normPix) }),
        bytes: 8 * B * L * P,
        bench: bench && normPix,
      });
      cases.push({
        family: 'loss',
        name: `maskedMseBackward [${shape}] mask ${ratio} normPix ${normPix}`,
        inputs: (g) => [
          f(normal(g, B * L * P), shape, true),
          f(uniform(g, B * L * P, -2, 3), shape),
          f(maskOf(g, B * L, ratio), [B, L]),
          f(Float32Array.of(1.7), [1]),
        ],
        run: (n, [pred, target, mask, dloss]) => ({ dpred: n.maskedMseBackward(pred!, target!, mask!, normPix, dloss!) }),
        bytes: 12 * B * L * P,
        bench: bench && normPix,
      });
    }
  const ceShapes: [number, number, 'labels' | 'soft', number][] = [
    [7, 10, 'labels', 0],
    [5, 1000, 'labels', 0.1],
    [6, 33, 'soft', 0.1],
  ];
  for (const [B, C, kind, s] of ceShapes) {
    const target = (g: Generator): CaseInput => {
      if (kind === 'labels') {
        const y = new Int32Array(B);
        for (let i = 0; i < B; i++) y[i] = g.int(C);
        return i32(y, [B]);
      }
      const t = uniform(g, B * C, 0, 1);
      for (let b = 0; b < B; b++) {
        let z = 0;
        for (let c = 0; c < C; c++) z += t[b * C + c]!;
        for (let c = 0; c < C; c++) t[b * C + c]! /= z;
      }
      return f(t, [B, C]);
    };
    cases.push({
      family: 'loss',
      name: `crossEntropy [${B},${C}] ${kind} smoothing ${s}`,
      inputs: (g) => [f(normal(g, B * C, 3), [B, C], true), target(g)],
      run: (n, [z, t]) => ({ loss: n.crossEntropy(z!, t!, s) }),
    });
    cases.push({
      family: 'loss',
      name: `crossEntropyBackward [${B},${C}] ${kind} smoothing ${s}`,
      inputs: (g) => [f(normal(g, B * C, 3), [B, C], true), target(g), f(Float32Array.of(0.8), [1])],
      run: (n, [z, t, dl]) => ({ dlogits: n.crossEntropyBackward(z!, t!, s, dl!) }),
    });
  }

  // batchnorm --------------------------------------------------------------------------------------------------
  for (const [B, F] of [
    [37, 65],
    [256, 768],
  ] as [number, number][])
    for (const training of [true, false]) {
      cases.push({
        family: 'batchnorm',
        name: `batchNorm [${B},${F}] training ${training}`,
        inputs: (g) => [f(normal(g, B * F, 2, 1), [B, F], true), f(normal(g, F, 0.3), [F]), f(uniform(g, F, 0.5, 2), [F])],
        run: (n, [x, rm, rv]) => {
          const [y, rstd] = n.batchNorm(x!, rm!, rv!, training, 0.1, 1e-6);
          return { y, rstd };
        },
        inPlace: [
          [1, 'runningMean'],
          [2, 'runningVar'],
        ],
      });
      cases.push({
        family: 'batchnorm',
        name: `batchNormBackward [${B},${F}] training ${training}`,
        inputs: (g) => [f(normal(g, B * F), [B, F], true), f(normal(g, B * F), [B, F], true), f(uniform(g, F, 0.5, 2), [F])],
        run: (n, [dy, y, rstd]) => ({ dx: n.batchNormBackward(dy!, y!, rstd!, training) }),
      });
    }

  // tokens -----------------------------------------------------------------------------------------------------
  const tokShapes: [number, number, number, number, boolean][] = [[3, 37, 65, 10, false]];
  if (full) tokShapes.push([64, 196, 768, 49, true]);
  for (const [B, N, D, K, bench] of tokShapes) {
    cases.push({
      family: 'tokens',
      name: `gatherRows x[${B},${N},${D}] keep ${K}`,
      inputs: (g) => [f(normal(g, B * N * D), [B, N, D], true), i32(keepIndex(g, B, N, K), [B, K])],
      run: (n, [x, idx]) => ({ y: n.gatherRows(x!, idx!) }),
      bytes: 8 * B * K * D,
      bench,
    });
    cases.push({
      family: 'tokens',
      name: `scatterAddRows dy[${B},${K + 2},${D}] into ${N} (with repeats)`,
      inputs: (g) => {
        const idx = new Int32Array(B * (K + 2));
        for (let i = 0; i < idx.length; i++) idx[i] = g.int(N);
        return [f(normal(g, B * (K + 2) * D), [B, K + 2, D], true), i32(idx, [B, K + 2])];
      },
      run: (n, [dy, idx]) => ({ dx: n.scatterAddRows(dy!, idx!, N) }),
      bytes: 4 * (B * N * D + B * (K + 2) * D),
      bench,
    });
  }
  cases.push({
    family: 'tokens',
    name: 'catTokens a[1,1,65] (broadcast) b[3,36,65]',
    inputs: (g) => [f(normal(g, 65), [1, 1, 65], true), f(normal(g, 3 * 36 * 65), [3, 36, 65], true)],
    run: (n, [a, b]) => ({ y: n.catTokens(a!, b!) }),
  });
  cases.push({
    family: 'tokens',
    name: 'catTokens a[3,5,17] b[3,12,17]',
    inputs: (g) => [f(normal(g, 3 * 5 * 17), [3, 5, 17], true), f(normal(g, 3 * 12 * 17), [3, 12, 17], true)],
    run: (n, [a, b]) => ({ y: n.catTokens(a!, b!) }),
  });
  cases.push({
    family: 'tokens',
    name: 'sliceTokens x[3,37,65] 1..37',
    inputs: (g) => [f(normal(g, 3 * 37 * 65), [3, 37, 65], true)],
    run: (n, [x]) => ({ y: n.sliceTokens(x!, 1, 36) }),
  });

  // elementwise ------------------------------------------------------------------------------------------------
  const ew = [3, 37, 65];
  const nEw = numel(ew);
  for (const [bShape, label] of [
    [[65], 'bias'],
    [ew, 'same shape'],
    [[1, 37, 65], 'position table'],
  ] as [number[], string][]) {
    cases.push({
      family: 'elementwise',
      name: `add [${ew}] + [${bShape}] (${label})`,
      inputs: (g) => [f(normal(g, nEw), ew, true), f(normal(g, numel(bShape)), bShape, true)],
      run: (n, [a, b]) => ({ y: n.add(a!, b!) }),
    });
    cases.push({
      family: 'elementwise',
      name: `mul [${ew}] * [${bShape}] (${label})`,
      inputs: (g) => [f(normal(g, nEw), ew, true), f(normal(g, numel(bShape)), bShape, true)],
      run: (n, [a, b]) => ({ y: n.mul(a!, b!) }),
    });
  }
  for (const [xShape, to, bench] of [
    [ew, [65], false],
    [ew, [37, 65], false],
    [[40, 3], [3], false],
    ...(full ? [[[64 * 197, 512], [512], true]] : []),
  ] as [number[], number[], boolean][])
    cases.push({
      family: 'elementwise',
      name: `sumTo [${xShape}] -> [${to}]`,
      inputs: (g) => [f(normal(g, numel(xShape)), xShape, true)],
      run: (n, [x]) => ({ y: n.sumTo(x!, to) }),
      bytes: 4 * numel(xShape),
      bench,
    });
  cases.push({
    family: 'elementwise',
    name: `axpby y = 0.7 x - 1.3 y [${ew}]`,
    inputs: (g) => [f(normal(g, nEw), ew, true), f(normal(g, nEw), ew, true)],
    run: (n, [x, y]) => n.axpby(0.7, x!, -1.3, y!),
    inPlace: [[1, 'y']],
  });
  cases.push({
    family: 'elementwise',
    name: `axpby y = 2 x (beta 0) [${ew}]`,
    inputs: (g) => [f(normal(g, nEw), ew, true), f(normal(g, nEw), ew, true)],
    run: (n, [x, y]) => n.axpby(2, x!, 0, y!),
    inPlace: [[1, 'y']],
  });
  for (const shape of [ew, [1000003]])
    cases.push({
      family: 'elementwise',
      name: `sum [${shape}] * 0.5`,
      inputs: (g) => [f(normal(g, numel(shape), 1, 0.3), shape, true)],
      run: (n, [x]) => ({ y: n.sum(x!, 0.5) }),
    });
  cases.push({
    family: 'elementwise',
    name: `meanTokens [${ew}]`,
    inputs: (g) => [f(normal(g, nEw), ew, true)],
    run: (n, [x]) => ({ y: n.meanTokens(x!) }),
  });
  cases.push({
    family: 'elementwise',
    name: 'meanTokensBackward [3,65] -> [3,37,65]',
    inputs: (g) => [f(normal(g, 3 * 65), [3, 65], true)],
    run: (n, [dy]) => ({ dx: n.meanTokensBackward(dy!, 37) }),
  });
  cases.push({
    family: 'elementwise',
    name: `fill [${ew}] with -2.5`,
    inputs: (g) => [f(normal(g, nEw), ew, true)],
    run: (n, [y]) => n.fill(y!, -2.5),
    inPlace: [[0, 'y']],
  });

  // patch ------------------------------------------------------------------------------------------------------
  const patchShapes: [number[], number, boolean][] = [
    [[2, 3, 32, 48], 16, false],
    [[1, 2, 12, 8], 4, false],
  ];
  if (full) patchShapes.push([[64, 3, 224, 224], 16, true]);
  for (const [[B, C, H, W], p, bench] of patchShapes)
    for (const hwc of [true, false]) {
      const L = (H! / p) * (W! / p);
      const P = p * p * C!;
      cases.push({
        family: 'patch',
        name: `patchify [${B},${C},${H},${W}] p${p} ${hwc ? 'hwc' : 'chw'}`,
        inputs: (g) => [f(normal(g, B! * C! * H! * W!), [B!, C!, H!, W!], true)],
        run: (n, [x]) => ({ patches: n.patchify(x!, p, hwc) }),
        bytes: 8 * B! * C! * H! * W!,
        bench: bench && hwc,
      });
      cases.push({
        family: 'patch',
        name: `unpatchify [${B},${L},${P}] p${p} ${hwc ? 'hwc' : 'chw'}`,
        inputs: (g) => [f(normal(g, B! * L * P), [B!, L, P], true)],
        run: (n, [x]) => ({ imgs: n.unpatchify(x!, p, hwc, [C!, H!, W!]) }),
        bytes: 8 * B! * C! * H! * W!,
        bench: bench && hwc,
      });
    }

  // adamw ------------------------------------------------------------------------------------------------------
  // one multi-tensor step over several parameters of mixed sizes (odd ones, and one over the 16384-element chunk),
  // each with its own lr and weight decay
  for (const [sizes, bench] of [
    [[1000, 7, 16385, 1], false],
    ...(full ? [[[10_000_000], true]] : []),
  ] as [number[], boolean][]) {
    const lrs = sizes.map((_, k) => 1.5e-4 * (k + 1));
    const wds = sizes.map((_, k) => (k % 2 ? 0 : 0.05));
    cases.push({
      family: 'adamw',
      name: `adamwStep [${sizes.join(', ')}] step 3`,
      inputs: (g) =>
        sizes.flatMap((size) => [f(normal(g, size), [size]), f(normal(g, size, 0.01), [size], true), f(normal(g, size, 0.01), [size]), f(uniform(g, size, 0, 1e-4), [size])]),
      run: (n, t) => {
        const at = (r: number) => sizes.map((_, k) => t[4 * k + r]!);
        n.adamwStep(at(0), at(1), at(2), at(3), lrs, wds, 0.9, 0.95, 1e-8, 3);
      },
      inPlace: sizes.flatMap((_, k): [number, string][] => [
        [4 * k, `param ${k}`],
        [4 * k + 2, `m ${k}`],
        [4 * k + 3, `v ${k}`],
      ]),
      bytes: 4 * 7 * sizes.reduce((a, b) => a + b, 0),
      bench,
    });
  }

  return cases;
}

// ---- running a case --------------------------------------------------------------------------------------------

function readAll(
  result: Record<string, NativeTensor | null> | void,
  tensors: NativeTensor[],
  inPlace: [number, string][] | undefined,
): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  if (result)
    for (const [k, t] of Object.entries(result)) {
      if (!t) continue;
      const d = t.read();
      out.set(k, d instanceof Float32Array ? d : Float32Array.from(d));
      t.dispose();
    }
  for (const [i, name] of inPlace ?? []) {
    const d = tensors[i]!.read();
    out.set(name, d instanceof Float32Array ? d : Float32Array.from(d));
  }
  return out;
}

/** The host data of a case's inputs for a precision (bfloat16 runs round the `low` inputs). */
export function hostInputs(c: OpCase, n: NativeAddon, precision: Precision, seed: number): CaseInput[] {
  const ins = c.inputs(new Generator(seed), n);
  if (precision === 'float32') return ins;
  return ins.map((i) => (i.low && i.data instanceof Float32Array ? { ...i, data: roundBf16(i.data) } : i));
}

/** Device tensors of the inputs: float32 or (low inputs in bfloat16 runs) bfloat16. */
export function deviceInputs(n: NativeAddon, ins: CaseInput[], device: string, precision: Precision): NativeTensor[] {
  return ins.map((i) => {
    const host = n.fromArray(i.data, i.shape);
    const t = n.to(host, device, precision === 'bfloat16' && i.low ? 'bfloat16' : undefined);
    host.dispose();
    return t;
  });
}

/** Runs a case on the CPU and on `device` with the same inputs and compares the results. */
export function compareCase(n: NativeAddon, c: OpCase, device: string, precision: Precision, seed = 1): CaseResult {
  const tol = c.tol?.[precision] ?? defaultTol[precision];
  const res: CaseResult = { family: c.family, name: c.name, precision, tol, ok: false, errors: [] };
  const ins = hostInputs(c, n, precision, seed);
  const cpuT = ins.map((i) => n.fromArray(i.data, i.shape));
  let devT: NativeTensor[] = [];
  try {
    const ref = readAll(c.run(n, cpuT), cpuT, c.inPlace);
    devT = deviceInputs(n, ins, device, precision);
    const got = readAll(c.run(n, devT), devT, c.inPlace);
    for (const [k, r] of ref) {
      const g = got.get(k);
      const e = g ? relError(g, r) : { output: k, rel: Infinity, maxAbs: Infinity };
      res.errors.push({ ...e, output: k });
    }
    res.ok = res.errors.every((e) => e.rel <= tol);
  } catch (e) {
    res.failure = (e as Error).message;
  } finally {
    for (const t of [...cpuT, ...devT]) t.dispose();
  }
  return res;
}

/** A one-line summary of a result. */
export function formatResult(r: CaseResult): string {
  const errs = r.failure ? `FAILED: ${r.failure}` : r.errors.map((e) => `${e.output} ${e.rel.toExponential(2)}`).join(', ');
  return `${r.ok ? 'ok  ' : 'FAIL'} ${r.precision.padEnd(8)} ${r.name}: ${errs} (tol ${r.tol})`;
}
