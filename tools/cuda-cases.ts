/**
 * Device-vs-CPU comparison cases for every op of the op table (native/core/ops.h), shared by the vitest suite
 * (test/cuda/) and the device-check program (tools/device-check.ts).
 *
 * A case makes fresh random inputs (host arrays), runs the op once on CPU tensors and on copies moved to the device,
 * and compares every output (and every tensor the op updates in place) row by row: for each row (all dimensions
 * but the last) the largest |got - ref| over the row's largest |ref| (rows below 1e-6 of the tensor's largest value
 * are measured against that instead), and the worst row is named. Where the device output is bfloat16, the
 * difference that its own rounding explains (half a bfloat16 spacing at the value) is not counted, so the
 * tolerance bounds the computation, not the output format (a one-spacing flip alone is up to 2^-7 of a value).
 * Outputs can instead be compared with an absolute tolerance (lse: 1e-3), or only checked to be finite (gradients
 * that vanish as a softmax saturates, whose values are rounding residue in any implementation).
 *
 * In a bfloat16 run the inputs marked `low` (activations) are rounded to bfloat16 on the host, so the CPU sees
 * exactly the numbers the device holds, and go to the device as bfloat16 tensors; parameters, optimizer state and
 * saved statistics stay float32, as in mixed-precision training (an input marked `bf16` is bfloat16 on both sides:
 * AdamW's weight shadows). Outputs follow the op's main activation input (bindings/ops.cpp).
 *
 * Every device run happens twice on fresh copies of the inputs and the two results must be bitwise equal (the
 * kernels are deterministic; with MAE_CUDA_DEBUG_ALLOC=1 freed blocks hold NaN, so an output element a kernel
 * never writes shows up). Variants compare two settings of the device's switches on the same inputs (tensor-core
 * attention against the SIMT kernels, the 2-warp layout, fused epilogues against the unfused path, 16-byte kernels
 * against the scalar ones, the fallback product against cuBLASLt).
 */
import type { NativeAddon, NativeTensor } from '../lib/native.js';
import { Generator } from '../lib/random.js';

export type Precision = 'float32' | 'bfloat16';

export interface CaseInput {
  data: Float32Array | Int32Array;
  shape: number[];
  /** bfloat16 on the device in bfloat16 runs (activations and their gradients) */
  low?: boolean;
  /** bfloat16 everywhere, the CPU included (AdamW's weight shadows) */
  bf16?: boolean;
}

/** How one output is judged. */
export interface OutputSpec {
  /** per-row relative tolerance per precision (default: the case's) */
  tol?: Partial<Record<Precision, number>>;
  /** absolute tolerance instead of the per-row relative one */
  abs?: number;
  /** only checked to be finite wherever the reference is (values that are rounding residue by nature) */
  finiteOnly?: boolean;
}

/** A comparison on the device between the default settings and other environment settings. */
export interface Variant {
  label: string;
  /** settings of the run compared against the default one (envBase) */
  env: Record<string, string>;
  /** settings of the base run (default: none) */
  envBase?: Record<string, string>;
  /** per-row tolerance for every output (beyond bfloat16 rounding) */
  tol: number;
  precisions?: Precision[];
  /** outputs judged otherwise in this variant */
  outputs?: Record<string, OutputSpec>;
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
  /** output -> named column ranges [name, from, to) of its last dimension, compared (and judged) separately */
  split?: Record<string, [string, number, number][]>;
  /** per-output judgement (by name after splitting) */
  outputs?: Record<string, OutputSpec>;
  /** per-row relative tolerance per precision (defaults: 2e-5 float32, 1e-2 bfloat16) */
  tol?: Partial<Record<Precision, number>>;
  /** the precisions it runs in (default both) */
  precisions?: Precision[];
  variants?: Variant[];
  /** floating-point operations of one run (for TFLOP/s) and the bytes it must at least move (for GB/s) */
  flops?: number;
  bytes?: number;
  /** part of the timing table */
  bench?: boolean;
  /** part of the small set run under compute-sanitizer */
  sanitize?: boolean;
  /** part of the quick set (MAE_CHECK_QUICK=1 and the vitest suite) */
  quick?: boolean;
}

export interface OutputError {
  output: string;
  /** per-row relative error (worst row), absolute error, or 0/Infinity for finite-only and bitwise checks */
  err: number;
  tol: number;
  kind: 'row' | 'abs' | 'finite' | 'bitwise';
  /** the worst row (or element) */
  at: string;
  maxAbs: number;
  ok: boolean;
}

export interface CaseResult {
  family: string;
  name: string;
  precision: Precision;
  /** 'vs cpu', 'determinism', or a variant's label */
  check: string;
  ok: boolean;
  errors: OutputError[];
  /** a thrown error (the op failed on one device) */
  failure?: string;
}

export const defaultTol: Record<Precision, number> = { float32: 2e-5, bfloat16: 1e-2 };

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

const f32bits = new Float32Array(1);
const u32bits = new Uint32Array(f32bits.buffer);

/** Half the bfloat16 spacing at |x| (the most rounding x to bfloat16 can change it by). */
export function halfUlpBf16(x: number): number {
  f32bits[0] = x;
  const e = (u32bits[0]! >>> 23) & 0xff;
  if (e === 0xff) return 0;
  // spacing 2^(e - 127 - 7) for normal numbers; subnormal bfloat16 values: 2^(-126 - 7)
  return 2 ** (Math.max(e, 1) - 127 - 8);
}

/** One output's values, with whether they were stored in bfloat16 (so read back rounded). */
export interface Values {
  data: Float32Array;
  rowLen: number;
  bf16: boolean;
}

/** The worst row's relative error of got against ref (see the file comment), or an absolute / finite-only check. */
export function compareValues(got: Values, ref: Values, spec: OutputSpec, tol: number, output: string): OutputError {
  const g = got.data;
  const r = ref.data;
  const kind: OutputError['kind'] = spec.finiteOnly ? 'finite' : spec.abs !== undefined ? 'abs' : 'row';
  const t = spec.abs ?? tol;
  if (g.length !== r.length) return { output, err: Infinity, tol: t, kind, at: `length ${g.length} vs ${r.length}`, maxAbs: Infinity, ok: false };
  const L = ref.rowLen;
  const rows = r.length / L;
  let globalMax = 0;
  for (let i = 0; i < r.length; i++) globalMax = Math.max(globalMax, Math.abs(r[i]!));
  let worst = 0;
  let worstAt = 0;
  let maxAbs = 0;
  for (let row = 0; row < rows; row++) {
    let den = 0;
    let num = 0;
    for (let j = row * L; j < (row + 1) * L; j++) {
      const x = g[j]!;
      const y = r[j]!;
      den = Math.max(den, Math.abs(y));
      if (!Number.isFinite(x) && Number.isFinite(y)) {
        num = Infinity;
        continue;
      }
      if (kind === 'finite') continue;
      let d = Math.abs(x - y);
      maxAbs = Math.max(maxAbs, d);
      if (got.bf16) d -= halfUlpBf16(x);
      if (ref.bf16) d -= halfUlpBf16(y);
      num = Math.max(num, d);
    }
    const e = kind === 'row' ? (num === 0 ? 0 : num / Math.max(den, 1e-6 * globalMax, 1e-30)) : num;
    if (e > worst || Number.isNaN(e)) {
      worst = Number.isNaN(e) ? Infinity : e;
      worstAt = row;
    }
  }
  return { output, err: worst, tol: kind === 'finite' ? 0 : t, kind, at: `row ${worstAt} of ${rows}`, maxAbs, ok: worst <= (kind === 'finite' ? 0 : t) };
}

/** Bitwise equality of two runs' outputs (NaN equal to NaN of the same bits). */
function compareBitwise(a: Values, b: Values, output: string): OutputError {
  const ua = new Uint32Array(a.data.buffer, a.data.byteOffset, a.data.length);
  const ub = new Uint32Array(b.data.buffer, b.data.byteOffset, b.data.length);
  let first = -1;
  let count = 0;
  for (let i = 0; i < Math.max(ua.length, ub.length); i++)
    if (ua[i] !== ub[i]) {
      if (first < 0) first = i;
      count++;
    }
  return { output, err: count, tol: 0, kind: 'bitwise', at: first < 0 ? '-' : `element ${first} (${count} differ)`, maxAbs: 0, ok: count === 0 };
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

/** x scaled by s in place (large-logit cases) */
function scaled(x: Float32Array, s: number): Float32Array {
  for (let i = 0; i < x.length; i++) x[i]! *= s;
  return x;
}

// the device-side comparisons every family of elementwise kind gets
const vectorVariant: Variant = { label: 'scalar vs 16-byte kernels', env: { MAE_CUDA_VECTOR: '0' }, tol: 1e-6 };

// ---- the cases -------------------------------------------------------------------------------------------------

/**
 * All cases; `full` adds the large shapes (MAE sizes, grid-stride sizes, every attention head dim and sequence
 * length). Cases marked quick are the small set (MAE_CHECK_QUICK=1, vitest).
 */
export function opCases(full = true): OpCase[] {
  const cases: OpCase[] = [];
  const add = (c: OpCase, quick = false): void => {
    if (full || quick) cases.push({ ...c, quick });
  };

  // gemm -------------------------------------------------------------------------------------------------------
  const gemmVariants: Variant[] = [
    { label: 'fallback kernel vs cuBLASLt', env: { MAE_GEMM_FALLBACK: '1' }, tol: 1e-4 },
    { label: 'unfused (MAE_FUSED=0) vs fused epilogues', env: { MAE_FUSED: '0' }, tol: 5e-3, outputs: { db: { tol: { bfloat16: 1e-4, float32: 1e-5 } } } },
  ];
  // [M, K, N, quick, bench]: tiny and odd sizes (cuBLASLt may have no bf16 algorithm: the fallback), MAE sizes
  const gemmShapes: [number, number, number, boolean, boolean][] = [
    [37, 65, 33, true, false],
    [5, 1, 7, true, false],
    [3, 7, 5, false, false],
    [130, 96, 200, true, false],
    [64 * 50, 768, 3 * 768, false, true], // ViT-B encoder qkv, 49 visible patches + cls, batch 64
    [64 * 50, 768, 3072, false, true], // ViT-B mlp fc1
    [64 * 197, 512, 2048, false, true], // decoder mlp fc1
  ];
  for (const [M, K, N, quick, bench] of gemmShapes) {
    add(
      {
        family: 'gemm',
        name: `linear x[${M},${K}] w[${N},${K}] + b`,
        inputs: (g) => [f(normal(g, M * K), [M, K], true), f(normal(g, N * K, 0.05), [N, K]), f(normal(g, N, 0.1), [N])],
        run: (n, [x, w, b]) => ({ y: n.linear(x!, w!, b!) }),
        flops: 2 * M * N * K,
        bytes: 4 * (M * K + N * K + M * N),
        bench,
        variants: gemmVariants,
        sanitize: M === 37,
      },
      quick,
    );
    if (!bench)
      add(
        {
          family: 'gemm',
          name: `linear x[${M},${K}] w[${N},${K}] (no bias)`,
          inputs: (g) => [f(normal(g, M * K), [M, K], true), f(normal(g, N * K, 0.05), [N, K])],
          run: (n, [x, w]) => ({ y: n.linear(x!, w!, null) }),
          variants: [gemmVariants[0]!],
        },
        quick,
      );
    add(
      {
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
        variants: gemmVariants,
        sanitize: M === 37,
      },
      quick,
    );
    if (!bench)
      add(
        {
          family: 'gemm',
          name: `linearBackward x[${M},${K}] w[${N},${K}] (dw only)`,
          inputs: (g) => [f(normal(g, M * K), [M, K], true), f(normal(g, N * K, 0.05), [N, K]), f(normal(g, M * N), [M, N], true)],
          run: (n, [x, w, dy]) => {
            const [, dw] = n.linearBackward(x!, w!, dy!, false, false);
            return { dw };
          },
        },
        quick,
      );
  }
  // the bf16 product reading a bf16 weight copy (what bf16 training does with AdamW's shadows), on the device only:
  // the CPU takes the fp32 weight rounded to bf16, which is what the copy holds
  for (const [M, K, N, quick] of [
    [37, 64, 48, true],
    [64 * 50, 768, 768, false],
  ] as [number, number, number, boolean][])
    add(
      {
        family: 'gemm',
        name: `linear with a bf16 weight copy x[${M},${K}] w[${N},${K}] + b, forward and backward`,
        precisions: ['bfloat16'],
        inputs: (g) => {
          const w = roundBf16(normal(g, N * K, 0.05));
          return [f(normal(g, M * K), [M, K], true), f(w, [N, K]), f(normal(g, N, 0.1), [N]), f(normal(g, M * N), [M, N], true), { data: w, shape: [N, K], bf16: true }];
        },
        run: (n, [x, w, b, dy, wb]) => {
          const onDevice = wb!.device !== 'cpu';
          const y = n.linear(x!, w!, b!, onDevice ? wb! : null);
          const [dx, dw, db] = n.linearBackward(x!, w!, dy!, true, true, onDevice ? wb! : null);
          return { y, dx, dw, db };
        },
      },
      quick,
    );

  // layernorm --------------------------------------------------------------------------------------------------
  // widths on both sides of the register paths (128, 256, 512, 1024) and above them (the re-reading path), and a row
  // count above what one grid covers (the grid-stride loop over rows: 16 blocks of 8 rows per SM)
  const lnShapes: [number[], boolean, boolean, number, number][] = [
    // [shape, quick, bench, scale, offset]
    [[3, 37, 65], true, false, 2, 0.5],
    [[5, 128], false, false, 2, 0.5],
    [[4, 200], true, false, 2, 0.5],
    [[2, 7, 257], false, false, 2, 0.5],
    [[6, 1024], false, false, 2, 0.5],
    [[3, 7, 1500], true, false, 2, 0.5],
    [[5, 2048], false, false, 2, 0.5],
    [[20000, 64], false, false, 2, 0.5],
    [[64 * 50, 768], false, true, 2, 0.5],
    [[64 * 197, 512], false, true, 2, 0.5],
    [[3, 37, 65], false, false, 30, 100], // large values: offset 100, spread 30
    [[9, 768], false, false, 30, 100],
  ];
  // mean and rstd are float32 statistics of inputs both sides hold exactly (bf16-rounded on the host), so they are
  // held to float32 accuracy in bf16 runs too: an emulation of the CUDA kernel's summation order matches the CPU
  // within 2e-7 on these shapes, while statistics of a differently rounded row (addLayerNorm normalising the
  // unrounded x + r instead of s as stored) differ by 8e-5 to 2e-3, which the bf16 tolerance (1e-2) let through
  const lnStatsSpec: Record<string, OutputSpec> = { mean: { tol: { bfloat16: 2e-5 } }, rstd: { tol: { bfloat16: 2e-5 } } };
  for (const [shape, quick, bench, scale, offset] of lnShapes) {
    const D = shape[shape.length - 1]!;
    const R = numel(shape) / D;
    const big = scale > 2 ? `, values ${offset} +- ${scale}` : '';
    add(
      {
        family: 'layernorm',
        name: `layerNorm [${shape}]${big}`,
        inputs: (g) => [f(normal(g, R * D, scale, offset), shape, true), f(normal(g, D, 0.2, 1), [D]), f(normal(g, D, 0.2), [D])],
        run: (n, [x, w, b]) => {
          const [y, mean, rstd] = n.layerNorm(x!, w!, b!, 1e-6);
          return { y, mean, rstd };
        },
        outputs: lnStatsSpec,
        bytes: 4 * 2 * R * D,
        bench,
        sanitize: quick && D === 65,
      },
      quick,
    );
    // the backward, also with dres (the residual gradient it adds in the same pass)
    for (const withRes of [false, true])
      add(
        {
          family: 'layernorm',
          name: `layerNormBackward${withRes ? ' with dres' : ''} [${shape}]${big}`,
          inputs: (g) => {
            const x = normal(g, R * D, scale, offset);
            const [mean, rstd] = lnStats(x, R, D, 1e-6);
            const ins = [f(normal(g, R * D), shape, true), f(x, shape, true), f(normal(g, D, 0.2, 1), [D]), f(mean, [R]), f(rstd, [R])];
            return withRes ? [...ins, f(normal(g, R * D), shape, true)] : ins;
          },
          run: (n, [dy, x, w, mean, rstd, dres]) => {
            const [dx, dw, db] = n.layerNormBackward(dy!, x!, w!, mean!, rstd!, dres ?? null);
            return { dx, dw, db };
          },
          bytes: 4 * (withRes ? 4 : 3) * R * D,
          bench,
          sanitize: quick && D === 65 && !withRes,
        },
        quick,
      );
    // the fused forward: residual add + LayerNorm
    add(
      {
        family: 'layernorm',
        name: `addLayerNorm [${shape}]${big}`,
        inputs: (g) => [f(normal(g, R * D, scale, offset), shape, true), f(normal(g, R * D, scale), shape, true), f(normal(g, D, 0.2, 1), [D]), f(normal(g, D, 0.2), [D])],
        run: (n, [x, r, w, b]) => {
          const [s, y, mean, rstd] = n.addLayerNorm(x!, r!, w!, b!, 1e-6);
          return { s, y, mean, rstd };
        },
        outputs: lnStatsSpec,
        bytes: 4 * 4 * R * D,
        bench,
        sanitize: quick && D === 65,
      },
      quick,
    );
  }

  // gelu -------------------------------------------------------------------------------------------------------
  // sizes with and without a tail of the 8-element steps, one above the 16-byte kernels' single grid, and biases
  // whose width is (a multiple of 8: 16-byte path) or is not (scalar path)
  const geluShapes: [number[], boolean, boolean][] = [
    [[3, 37, 65], true, false],
    [[5, 16], true, false],
    [[9_000_003], false, false],
    [[64 * 50, 3072], false, true],
  ];
  for (const [shape, quick, bench] of geluShapes) {
    const N = numel(shape);
    const C = shape[shape.length - 1]!;
    add(
      {
        family: 'gelu',
        name: `gelu [${shape}]`,
        inputs: (g) => [f(normal(g, N, 2), shape, true)],
        run: (n, [x]) => ({ y: n.gelu(x!) }),
        bytes: 8 * N,
        bench,
        variants: [vectorVariant],
        sanitize: quick && C === 65,
      },
      quick,
    );
    add(
      {
        family: 'gelu',
        name: `geluBackward [${shape}]`,
        inputs: (g) => [f(normal(g, N, 2), shape, true), f(normal(g, N), shape, true)],
        run: (n, [x, dy]) => ({ dx: n.geluBackward(x!, dy!) }),
        bytes: 12 * N,
        bench,
        variants: [vectorVariant],
      },
      quick,
    );
    if (shape.length < 2) continue;
    add(
      {
        family: 'gelu',
        name: `biasGelu [${shape}]`,
        inputs: (g) => [f(normal(g, N, 2), shape, true), f(normal(g, C, 0.5), [C])],
        run: (n, [x, b]) => ({ y: n.biasGelu(x!, b!) }),
        bytes: 8 * N,
        bench,
        variants: [vectorVariant],
        sanitize: quick,
      },
      quick,
    );
    add(
      {
        family: 'gelu',
        name: `biasGeluBackward [${shape}] (dx, db)`,
        inputs: (g) => [f(normal(g, N, 2), shape, true), f(normal(g, C, 0.5), [C]), f(normal(g, N), shape, true)],
        run: (n, [x, b, dy]) => {
          const [dx, db] = n.biasGeluBackward(x!, b!, dy!, true);
          return { dx, db };
        },
        bytes: 12 * N,
        bench,
        variants: [{ ...vectorVariant, outputs: { db: { tol: { float32: 1e-5, bfloat16: 1e-5 } } } }],
        sanitize: quick,
      },
      quick,
    );
  }

  // attention --------------------------------------------------------------------------------------------------
  // Every head dim the kernels have (16 .. 128; all multiples of 16 take the tensor-core kernels in bf16) at every
  // sequence length class (1, 17, 50, 197, 257), batch x heads above one wave of blocks, MAE sizes, and large logits.
  // WMMA vs SIMT: the tensor-core kernels round P and dS to bf16 for their products; a host emulation of exactly that
  // (random N(0, 1) inputs, head dims 16-128, N 17-257) differs from fp32 P and dS by at most 2.8e-3 (out) and 4.2e-3
  // (dq) per row beyond the outputs' own rounding: 6e-3 bounds it.
  const wmmaVariants = (outputs?: Record<string, OutputSpec>): Variant[] => [
    { label: 'tensor-core (4 warps) vs SIMT', env: { MAE_ATTENTION_SIMT: '1' }, tol: 6e-3, precisions: ['bfloat16'], outputs },
    { label: 'tensor-core (2 warps) vs SIMT', envBase: { MAE_ATTENTION_WARPS: '2' }, env: { MAE_ATTENTION_SIMT: '1' }, tol: 6e-3, precisions: ['bfloat16'], outputs },
  ];
  // [B, N, D, H, quick, bench, scale]
  const attnShapes: [number, number, number, number, boolean, boolean, number][] = [
    [2, 37, 96, 3, true, false, 1],
    [3, 50, 192, 3, true, false, 1],
    [2, 33, 120, 3, true, false, 1], // head dim 40: SIMT only in bf16 too
    [1, 17, 64, 1, true, false, 1],
  ];
  for (const hd of [16, 32, 64, 80, 96, 128])
    for (const N of [1, 17, 50, 197, 257]) attnShapes.push([2, N, 2 * hd, 2, false, false, 1]);
  attnShapes.push(
    [64, 50, 768, 12, false, true, 1], // ViT-B encoder, 75% masked: 768 blocks of (batch, head)
    [64, 197, 512, 16, false, true, 1], // MAE decoder
    [16, 197, 1280, 16, false, true, 1], // ViT-H/14-like head dim 80, all tokens
    [1, 1024, 256, 4, false, false, 1],
    [2, 197, 512, 8, false, false, 10], // large logits: q, k, v scaled 10 and 30 (one key dominates each row)
    [3, 50, 192, 6, true, false, 30],
  );
  for (const [B, N, D, H, quick, bench, scale] of attnShapes) {
    const hd = D / H;
    const fwdFlops = 4 * B * H * N * N * hd;
    const big = scale > 1;
    const label = `B${B} N${N} D${D} H${H} (hd ${hd})${big ? `, qkv x${scale}` : ''}`;
    const qkvOf = (g: Generator): Float32Array => scaled(normal(g, B * N * 3 * D), scale);
    // large logits: the softmax saturates, so dq and dk (which vanish with it) are rounding residue in any
    // implementation; lse is hundreds there, its float32 spacing ~1e-5: the absolute tolerance grows with it
    const lseAbs = big ? 1e-3 * scale : 1e-3;
    const bwdOutputs: Record<string, OutputSpec> | undefined = big
      ? { dq: { finiteOnly: true }, dk: { finiteOnly: true }, dv: { tol: { float32: 3e-3 } } }
      : undefined;
    add(
      {
        family: 'attention',
        name: `attention ${label}`,
        inputs: (g) => [f(qkvOf(g), [B, N, 3 * D], true)],
        run: (n, [qkv]) => {
          const [out, lse] = n.attention(qkv!, H);
          return { out, lse };
        },
        outputs: { lse: { abs: lseAbs }, ...(big ? { out: { tol: { float32: 1e-3 } } } : {}) },
        flops: fwdFlops,
        bytes: 4 * (B * N * 4 * D),
        bench,
        variants: hd % 16 === 0 ? wmmaVariants({ lse: { abs: lseAbs } }) : undefined,
        sanitize: quick && N === 17,
      },
      quick,
    );
    add(
      {
        family: 'attention',
        name: `attentionBackward ${label}`,
        inputs: (g, n) => {
          const qkv = qkvOf(g);
          const t = n.fromArray(qkv, [B, N, 3 * D]);
          const [out, lse] = n.attention(t, H);
          const res = [f(qkv, [B, N, 3 * D], true), f(out.read() as Float32Array, [B, N, D], true), f(normal(g, B * N * D), [B, N, D], true), f(lse.read() as Float32Array, [B, H, N])];
          t.dispose();
          out.dispose();
          lse.dispose();
          return res;
        },
        run: (n, [qkv, out, dout, lse]) => ({ dqkv: n.attentionBackward(qkv!, out!, dout!, lse!, H) }),
        split: { dqkv: [['dq', 0, D], ['dk', D, 2 * D], ['dv', 2 * D, 3 * D]] },
        outputs: bwdOutputs,
        flops: 2.5 * fwdFlops,
        bytes: 4 * (B * N * 8 * D),
        bench,
        variants: hd % 16 === 0 ? wmmaVariants(bwdOutputs) : undefined,
        sanitize: quick && N === 17,
      },
      quick,
    );
  }

  // losses -----------------------------------------------------------------------------------------------------
  const mseShapes: [number, number, number, number, boolean, boolean][] = [
    [2, 49, 48, 0.75, true, false],
    [3, 16, 5, 0.5, true, false],
    [2, 10, 12, 0, true, false], // nothing masked: the mean over all patches
    [64, 196, 768, 0.75, false, true],
  ];
  for (const [B, L, P, ratio, quick, bench] of mseShapes)
    for (const normPix of [false, true]) {
      const shape = [B, L, P];
      add(
        {
          family: 'loss',
          name: `maskedMse [${shape}] mask ${ratio} normPix ${normPix}`,
          inputs: (g) => [f(normal(g, B * L * P), shape, true), f(uniform(g, B * L * P, -2, 3), shape), f(maskOf(g, B * L, ratio), [B, L])],
          run: (n, [pred, target, mask]) => ({ loss: n.maskedMse(pred!, target!, mask!, normPix) }),
          bytes: 8 * B * L * P,
          bench: bench && normPix,
          sanitize: quick && L === 49 && normPix,
        },
        quick,
      );
      add(
        {
          family: 'loss',
          name: `maskedMseBackward [${shape}] mask ${ratio} normPix ${normPix}`,
          inputs: (g) => [f(normal(g, B * L * P), shape, true), f(uniform(g, B * L * P, -2, 3), shape), f(maskOf(g, B * L, ratio), [B, L]), f(Float32Array.of(1.7), [1])],
          run: (n, [pred, target, mask, dloss]) => ({ dpred: n.maskedMseBackward(pred!, target!, mask!, normPix, dloss!) }),
          bytes: 12 * B * L * P,
          bench: bench && normPix,
        },
        quick,
      );
    }
  // [B, C, target, smoothing, logit scale, quick]; the large-logit rows have one dominant class each (not the
  // label), so the loss is large and well conditioned
  const ceShapes: [number, number, 'labels' | 'soft', number, number, boolean][] = [
    [7, 10, 'labels', 0, 3, true],
    [5, 1000, 'labels', 0.1, 3, true],
    [6, 33, 'soft', 0.1, 3, true],
    [8, 1000, 'labels', 0, 30, false],
    [6, 33, 'soft', 0.1, 30, false],
  ];
  for (const [B, C, kind, s, scale, quick] of ceShapes) {
    const logits = (g: Generator): Float32Array => {
      const z = normal(g, B * C, scale);
      if (scale > 3) for (let b = 0; b < B; b++) z[b * C + g.int(C)]! += 2 * scale;
      return z;
    };
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
    const label = `[${B},${C}] ${kind} smoothing ${s}${scale > 3 ? `, logits x${scale} with a dominant class` : ''}`;
    add(
      {
        family: 'loss',
        name: `crossEntropy ${label}`,
        inputs: (g) => [f(logits(g), [B, C], true), target(g)],
        run: (n, [z, t]) => ({ loss: n.crossEntropy(z!, t!, s) }),
        sanitize: quick && C === 10,
      },
      quick,
    );
    add(
      {
        family: 'loss',
        name: `crossEntropyBackward ${label}`,
        inputs: (g) => [f(logits(g), [B, C], true), target(g), f(Float32Array.of(0.8), [1])],
        run: (n, [z, t, dl]) => ({ dlogits: n.crossEntropyBackward(z!, t!, s, dl!) }),
      },
      quick,
    );
  }

  // batchnorm --------------------------------------------------------------------------------------------------
  for (const [B, F, quick] of [
    [37, 65, true],
    [256, 768, false],
  ] as [number, number, boolean][])
    for (const training of [true, false]) {
      add(
        {
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
          sanitize: quick && training,
        },
        quick,
      );
      add(
        {
          family: 'batchnorm',
          name: `batchNormBackward [${B},${F}] training ${training}`,
          inputs: (g) => [f(normal(g, B * F), [B, F], true), f(normal(g, B * F), [B, F], true), f(uniform(g, F, 0.5, 2), [F])],
          run: (n, [dy, y, rstd]) => ({ dx: n.batchNormBackward(dy!, y!, rstd!, training) }),
        },
        quick,
      );
    }

  // tokens -----------------------------------------------------------------------------------------------------
  // widths a multiple of 8 (16-byte kernels) and not (65: scalar kernels), the MAE sizes, and the mask-token
  // gather of one row repeated L - K times
  const tokShapes: [number, number, number, number, boolean, boolean][] = [
    [3, 37, 65, 10, true, false],
    [3, 37, 64, 10, true, false],
    [64, 196, 768, 49, false, true],
    [1, 1, 512, 147, true, false],
  ];
  for (const [B, N, D, K, quick, bench] of tokShapes) {
    add(
      {
        family: 'tokens',
        name: `gatherRows x[${B},${N},${D}] keep ${K}${N === 1 ? ' (one row repeated)' : ''}`,
        inputs: (g) => [f(normal(g, B * N * D), [B, N, D], true), i32(N === 1 ? new Int32Array(B * K) : keepIndex(g, B, N, K), [B, K])],
        run: (n, [x, idx]) => ({ y: n.gatherRows(x!, idx!) }),
        bytes: 8 * B * K * D,
        bench,
        variants: [vectorVariant],
        sanitize: quick,
      },
      quick,
    );
    add(
      {
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
        variants: [vectorVariant],
        sanitize: quick,
      },
      quick,
    );
  }
  for (const D of [65, 64]) {
    add(
      {
        family: 'tokens',
        name: `catTokens a[1,1,${D}] (broadcast) b[3,36,${D}]`,
        inputs: (g) => [f(normal(g, D), [1, 1, D], true), f(normal(g, 3 * 36 * D), [3, 36, D], true)],
        run: (n, [a, b]) => ({ y: n.catTokens(a!, b!) }),
        variants: [vectorVariant],
        sanitize: D === 64,
      },
      true,
    );
    add(
      {
        family: 'tokens',
        name: `catTokens a[3,5,${D}] b[3,12,${D}]`,
        inputs: (g) => [f(normal(g, 3 * 5 * D), [3, 5, D], true), f(normal(g, 3 * 12 * D), [3, 12, D], true)],
        run: (n, [a, b]) => ({ y: n.catTokens(a!, b!) }),
        variants: [vectorVariant],
      },
      true,
    );
    add(
      {
        family: 'tokens',
        name: `sliceTokens x[3,37,${D}] 1..37`,
        inputs: (g) => [f(normal(g, 3 * 37 * D), [3, 37, D], true)],
        run: (n, [x]) => ({ y: n.sliceTokens(x!, 1, 36) }),
        variants: [vectorVariant],
        sanitize: D === 64,
      },
      true,
    );
  }

  // elementwise ------------------------------------------------------------------------------------------------
  // [3, 37, 65] (scalar kernels: period 65), [3, 37, 64] (16-byte kernels), and a size above one grid of the
  // 16-byte kernels (8 elements x 256 threads x 32 blocks per SM)
  for (const ew of [[3, 37, 65], [3, 37, 64], [11719, 768]]) {
    const quick = ew[0] === 3;
    const nEw = numel(ew);
    const C = ew[2] ?? ew[1]!;
    for (const [bShape, label] of [
      [[C], 'bias'],
      [ew, 'same shape'],
      [[1, ...ew.slice(1)], 'position table'],
    ] as [number[], string][]) {
      add(
        {
          family: 'elementwise',
          name: `add [${ew}] + [${bShape}] (${label})`,
          inputs: (g) => [f(normal(g, nEw), ew, true), f(normal(g, numel(bShape)), bShape, true)],
          run: (n, [a, b]) => ({ y: n.add(a!, b!) }),
          variants: [vectorVariant],
          sanitize: quick && label === 'bias',
        },
        quick,
      );
      add(
        {
          family: 'elementwise',
          name: `add [${ew}] + float32 [${bShape}] (${label})`,
          inputs: (g) => [f(normal(g, nEw), ew, true), f(normal(g, numel(bShape)), bShape)],
          run: (n, [a, b]) => ({ y: n.add(a!, b!) }),
          variants: [vectorVariant],
        },
        quick,
      );
      add(
        {
          family: 'elementwise',
          name: `mul [${ew}] * [${bShape}] (${label})`,
          inputs: (g) => [f(normal(g, nEw), ew, true), f(normal(g, numel(bShape)), bShape, true)],
          run: (n, [a, b]) => ({ y: n.mul(a!, b!) }),
          variants: [vectorVariant],
        },
        quick,
      );
    }
    add(
      {
        family: 'elementwise',
        name: `axpby y = 0.7 x - 1.3 y [${ew}]`,
        inputs: (g) => [f(normal(g, nEw), ew, true), f(normal(g, nEw), ew, true)],
        run: (n, [x, y]) => n.axpby(0.7, x!, -1.3, y!),
        inPlace: [[1, 'y']],
        variants: [vectorVariant],
        sanitize: quick,
      },
      quick,
    );
    add(
      {
        family: 'elementwise',
        name: `axpby y = 2 x (beta 0) [${ew}]`,
        inputs: (g) => [f(normal(g, nEw), ew, true), f(normal(g, nEw), ew, true)],
        run: (n, [x, y]) => n.axpby(2, x!, 0, y!),
        inPlace: [[1, 'y']],
        variants: [vectorVariant],
      },
      quick,
    );
    add(
      {
        family: 'elementwise',
        name: `fill [${ew}] with -2.5`,
        inputs: (g) => [f(normal(g, nEw), ew, true)],
        run: (n, [y]) => n.fill(y!, -2.5),
        inPlace: [[0, 'y']],
        variants: [vectorVariant],
      },
      quick,
    );
  }
  for (const [xShape, to, quick, bench] of [
    [[3, 37, 65], [65], true, false],
    [[3, 37, 65], [37, 65], true, false],
    [[40, 3], [3], true, false],
    [[64 * 197, 512], [512], false, true],
  ] as [number[], number[], boolean, boolean][])
    add(
      {
        family: 'elementwise',
        name: `sumTo [${xShape}] -> [${to}]`,
        inputs: (g) => [f(normal(g, numel(xShape)), xShape, true)],
        run: (n, [x]) => ({ y: n.sumTo(x!, to) }),
        bytes: 4 * numel(xShape),
        bench,
        sanitize: quick && to.length === 1 && to[0] === 65,
      },
      quick,
    );
  for (const shape of [[3, 37, 65], [1000003]])
    add(
      {
        family: 'elementwise',
        name: `sum [${shape}] * 0.5`,
        inputs: (g) => [f(normal(g, numel(shape), 1, 0.3), shape, true)],
        run: (n, [x]) => ({ y: n.sum(x!, 0.5) }),
        sanitize: shape.length === 3,
      },
      true,
    );
  add(
    {
      family: 'elementwise',
      name: 'meanTokens [3,37,65]',
      inputs: (g) => [f(normal(g, 3 * 37 * 65), [3, 37, 65], true)],
      run: (n, [x]) => ({ y: n.meanTokens(x!) }),
    },
    true,
  );
  add(
    {
      family: 'elementwise',
      name: 'meanTokensBackward [3,65] -> [3,37,65]',
      inputs: (g) => [f(normal(g, 3 * 65), [3, 65], true)],
      run: (n, [dy]) => ({ dx: n.meanTokensBackward(dy!, 37) }),
    },
    true,
  );

  // patch ------------------------------------------------------------------------------------------------------
  // p 16 and 8 (the chw order's 16-byte kernel), p 4 (32-bit scalar kernel), the MAE image batch
  const patchShapes: [number[], number, boolean, boolean][] = [
    [[2, 3, 32, 48], 16, true, false],
    [[1, 2, 12, 8], 4, true, false],
    [[2, 3, 16, 24], 8, true, false],
    [[64, 3, 224, 224], 16, false, true],
  ];
  for (const [[B, C, H, W], p, quick, bench] of patchShapes)
    for (const hwc of [true, false]) {
      const L = (H! / p) * (W! / p);
      const P = p * p * C!;
      add(
        {
          family: 'patch',
          name: `patchify [${B},${C},${H},${W}] p${p} ${hwc ? 'hwc' : 'chw'}`,
          inputs: (g) => [f(normal(g, B! * C! * H! * W!), [B!, C!, H!, W!], true)],
          run: (n, [x]) => ({ patches: n.patchify(x!, p, hwc) }),
          bytes: 8 * B! * C! * H! * W!,
          bench,
          variants: [vectorVariant],
          sanitize: quick && p === 8,
        },
        quick,
      );
      add(
        {
          family: 'patch',
          name: `unpatchify [${B},${L},${P}] p${p} ${hwc ? 'hwc' : 'chw'}`,
          inputs: (g) => [f(normal(g, B! * L * P), [B!, L, P], true)],
          run: (n, [x]) => ({ imgs: n.unpatchify(x!, p, hwc, [C!, H!, W!]) }),
          bytes: 8 * B! * C! * H! * W!,
          bench,
          variants: [vectorVariant],
          sanitize: quick && p === 8,
        },
        quick,
      );
    }

  // adamw ------------------------------------------------------------------------------------------------------
  // one multi-tensor step over parameters of mixed sizes (odd ones, and one over the 16384-element chunk), each
  // with its own lr and weight decay; some with a bf16 shadow the step rewrites
  for (const [sizes, quick, bench] of [
    [[1000, 7, 16385, 1], true, false],
    [[10_000_000], false, true],
  ] as [number[], boolean, boolean][]) {
    const lrs = sizes.map((_, k) => 1.5e-4 * (k + 1));
    const wds = sizes.map((_, k) => (k % 2 ? 0 : 0.05));
    const shadowed = (k: number): boolean => k % 2 === 0;
    add(
      {
        family: 'adamw',
        name: `adamwStep [${sizes.join(', ')}] step 3, bf16 shadows of ${sizes.filter((_, k) => shadowed(k)).length}`,
        inputs: (g) =>
          sizes.flatMap((size, k) => {
            const p = normal(g, size);
            const t = [f(p, [size]), f(normal(g, size, 0.01), [size], true), f(normal(g, size, 0.01), [size]), f(uniform(g, size, 0, 1e-4), [size])];
            if (shadowed(k)) t.push({ data: roundBf16(p), shape: [size], bf16: true });
            return t;
          }),
        run: (n, t) => {
          const ps: NativeTensor[] = [], gs: NativeTensor[] = [], ms: NativeTensor[] = [], vs: NativeTensor[] = [];
          const sh: (NativeTensor | null)[] = [];
          let at = 0;
          sizes.forEach((_, k) => {
            ps.push(t[at]!);
            gs.push(t[at + 1]!);
            ms.push(t[at + 2]!);
            vs.push(t[at + 3]!);
            at += 4;
            sh.push(shadowed(k) ? t[at++]! : null);
          });
          n.adamwStep(ps, gs, ms, vs, lrs, wds, 0.9, 0.95, 1e-8, 3, sh);
        },
        inPlace: (() => {
          const out: [number, string][] = [];
          let at = 0;
          sizes.forEach((_, k) => {
            out.push([at, `param ${k}`], [at + 2, `m ${k}`], [at + 3, `v ${k}`]);
            at += 4;
            if (shadowed(k)) out.push([at++, `shadow ${k}`]);
          });
          return out;
        })(),
        bytes: 4 * 7 * sizes.reduce((a, b) => a + b, 0),
        bench,
        sanitize: quick,
      },
      quick,
    );
  }

  return cases;
}

// ---- running a case --------------------------------------------------------------------------------------------

/** An op's outputs (and in-place inputs) read to the host, split into their named parts. */
function readAll(c: OpCase, result: Record<string, NativeTensor | null> | void, tensors: NativeTensor[]): Map<string, Values> {
  const out = new Map<string, Values>();
  const put = (name: string, t: NativeTensor): void => {
    const d = t.read();
    const data = d instanceof Float32Array ? d : Float32Array.from(d);
    const rowLen = t.shape.length ? t.shape[t.shape.length - 1]! : 1;
    const bf16 = t.dtype === 'bfloat16';
    const parts = c.split?.[name];
    if (!parts) {
      out.set(name, { data, rowLen, bf16 });
      return;
    }
    for (const [part, from, to] of parts) {
      const w = to - from;
      const rows = data.length / rowLen;
      const sub = new Float32Array(rows * w);
      for (let r = 0; r < rows; r++) sub.set(data.subarray(r * rowLen + from, r * rowLen + to), r * w);
      out.set(part, { data: sub, rowLen: w, bf16 });
    }
  };
  if (result)
    for (const [k, t] of Object.entries(result)) {
      if (!t) continue;
      put(k, t);
      t.dispose();
    }
  for (const [i, name] of c.inPlace ?? []) put(name, tensors[i]!);
  return out;
}

/** The host data of a case's inputs for a precision (bfloat16 runs round the `low` inputs). */
export function hostInputs(c: OpCase, n: NativeAddon, precision: Precision, seed: number): CaseInput[] {
  const ins = c.inputs(new Generator(seed), n);
  if (precision === 'float32') return ins;
  return ins.map((i) => (i.low && i.data instanceof Float32Array ? { ...i, data: roundBf16(i.data) } : i));
}

/** Tensors of the inputs on `device`: float32 (or int32), bfloat16 for `low` inputs in bfloat16 runs and for `bf16` ones. */
export function deviceInputs(n: NativeAddon, ins: CaseInput[], device: string, precision: Precision): NativeTensor[] {
  return ins.map((i) => {
    const host = n.fromArray(i.data, i.shape);
    const t = n.to(host, device, i.bf16 || (precision === 'bfloat16' && i.low) ? 'bfloat16' : undefined);
    host.dispose();
    return t;
  });
}

/** Runs the case on `device` with these inputs (fresh copies) under environment settings; returns the outputs. */
export function runOn(n: NativeAddon, c: OpCase, ins: CaseInput[], device: string, precision: Precision, env: Record<string, string> = {}): Map<string, Values> {
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  for (const [k, v] of Object.entries(env)) process.env[k] = v;
  const t = deviceInputs(n, ins, device, precision);
  try {
    return readAll(c, c.run(n, t), t);
  } finally {
    for (const x of t) x.dispose();
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

function specOf(c: OpCase, output: string, override?: Record<string, OutputSpec>): OutputSpec {
  return { ...(c.outputs?.[output] ?? {}), ...(override?.[output] ?? {}) };
}

function judge(c: OpCase, got: Map<string, Values>, ref: Map<string, Values>, tolOf: (output: string) => number, override?: Record<string, OutputSpec>): OutputError[] {
  const errors: OutputError[] = [];
  for (const [k, r] of ref) {
    const g = got.get(k);
    const spec = specOf(c, k, override);
    errors.push(g ? compareValues(g, r, spec, tolOf(k), k) : { output: k, err: Infinity, tol: 0, kind: 'row', at: 'missing', maxAbs: Infinity, ok: false });
  }
  return errors;
}

/**
 * Runs a case on the CPU and on `device` with the same inputs and compares them ('vs cpu'), and runs the device
 * twice and compares the two runs bit for bit ('determinism').
 */
export function compareCase(n: NativeAddon, c: OpCase, device: string, precision: Precision, seed = 1): CaseResult[] {
  const base = { family: c.family, name: c.name, precision };
  const vsCpu: CaseResult = { ...base, check: 'vs cpu', ok: false, errors: [] };
  const det: CaseResult = { ...base, check: 'determinism', ok: false, errors: [] };
  try {
    const ins = hostInputs(c, n, precision, seed);
    const cpuIns = ins.map((i) => (i.bf16 ? i : { ...i, low: false }));
    const ref = runOn(n, c, cpuIns, 'cpu', 'float32');
    // bf16-everywhere inputs stay bf16 on the CPU (deviceInputs), the others are float32 there
    const first = runOn(n, c, ins, device, precision);
    const second = runOn(n, c, ins, device, precision);
    const caseTol = (k: string): number => specOf(c, k).tol?.[precision] ?? c.tol?.[precision] ?? defaultTol[precision];
    vsCpu.errors = judge(c, first, ref, caseTol);
    vsCpu.ok = vsCpu.errors.every((e) => e.ok);
    det.errors = [...first].map(([k, v]) => (second.has(k) ? compareBitwise(v, second.get(k)!, k) : { output: k, err: Infinity, tol: 0, kind: 'bitwise' as const, at: 'missing', maxAbs: 0, ok: false }));
    det.ok = det.errors.every((e) => e.ok);
  } catch (e) {
    vsCpu.failure = (e as Error).message;
    det.failure = vsCpu.failure;
  }
  return [vsCpu, det];
}

/** Compares the device's default settings (or envBase) with a variant's, on the same inputs. */
export function compareVariant(n: NativeAddon, c: OpCase, v: Variant, device: string, precision: Precision, seed = 1): CaseResult {
  const res: CaseResult = { family: c.family, name: c.name, precision, check: v.label, ok: false, errors: [] };
  try {
    const ins = hostInputs(c, n, precision, seed);
    const a = runOn(n, c, ins, device, precision, v.envBase ?? {});
    const b = runOn(n, c, ins, device, precision, { ...(v.envBase ?? {}), ...v.env });
    res.errors = judge(c, b, a, (k) => v.outputs?.[k]?.tol?.[precision] ?? v.tol, v.outputs);
    res.ok = res.errors.every((e) => e.ok);
  } catch (e) {
    res.failure = (e as Error).message;
  }
  return res;
}

/** The precisions a case runs in on a device ('cpu': float32 only). */
export function precisionsOf(c: OpCase, device: string): Precision[] {
  const all: Precision[] = device === 'cpu' ? ['float32'] : ['float32', 'bfloat16'];
  return all.filter((p) => !c.precisions || c.precisions.includes(p));
}

/** A one-line summary of a result: each output's error with its worst row, and the tolerance. */
export function formatResult(r: CaseResult): string {
  const errs = r.failure
    ? `FAILED: ${r.failure}`
    : r.errors
        .map((e) =>
          e.kind === 'bitwise'
            ? `${e.output} ${e.ok ? 'same bits' : `differs at ${e.at}`}`
            : e.kind === 'finite'
              ? `${e.output} ${e.ok ? 'finite' : `NOT FINITE at ${e.at}`}`
              : `${e.output} ${e.err.toExponential(2)}${e.kind === 'abs' ? ' abs' : ''} (${e.at}, tol ${e.tol})`,
        )
        .join(', ');
  return `${r.ok ? 'ok  ' : 'FAIL'} ${r.precision.padEnd(8)} ${r.check.padEnd(14)} ${r.name}: ${errs}`;
}
