/**
 * Random-call fuzzing of the ops: every function of the native addon (lib/native.ts: the op entries, the runtime,
 * tensor sharing, the communicator, the NativeTensor methods) and every op of lib/ops/index.ts, called with random
 * arguments. Call i of seed S is a pure function of (S, i): a Generator seeded from both picks the op, builds valid
 * arguments for random sizes (ranks and dimensions of 1 and more, float32 and bfloat16 activations, views made by
 * reshape, to() and shareTensor/takeTensor, bf16 weight shadows written by an AdamW step, NaN and infinite values)
 * and then, two times in three, mutates them: a dimension changed (to 0 too), added, dropped or swapped; another
 * dtype; a tensor replaced by a number, null, a plain object, a disposed tensor or an empty handle; a tensor given
 * twice; an array argument whose first element, when read, disposes a tensor argument; indices and labels out of
 * range; typed arrays at an offset in their buffer or detached; scalars set to NaN, Infinity, -0, negative,
 * fractional or huge values (2^31, 2^53, 9e15, 1e300) or to other types; shapes whose element count overflows 2^31,
 * 2^53 or int64; arguments dropped or added. The lib ops get the same mutations: their JavaScript callers are not held
 * to the TypeScript types. Tensors that are made hold at most MAX_ELEMENTS values; huge sizes only appear where a
 * shape or a count is an argument, or beside a zero dimension.
 *
 * The oracle: every call returns (tensors of the expected shapes, each readable and of a known dtype) or throws an
 * Error whose message starts with the op's name ("linear: ..."; the NativeTensor methods' "Tensor.read: ..."), not a
 * TypeError or RangeError from JavaScript internals; a lib op whose inputs require grad also runs backward, which
 * must give every leaf a gradient of its shape; an AdamW step on finite values with moderate settings leaves finite parameters; no
 * call takes longer than `slowMs`; the process never crashes or hangs, and its peak resident set stays under
 * `maxRssMiB` (a huge shape must be refused before anything is allocated). A crash ends the process, so the calls run
 * in a child process (`--worker`) that reports each call's outcome on a line; when it dies, the parent runs the call
 * after the last one reported again in a fresh child, on its own, to tell a crash of that call from one that needed
 * the calls before it. The child runs under a virtual-memory limit (`memoryLimitMiB`), so a legitimately huge result
 * (scatterAddRows with n = 2^31) is an out-of-memory Error rather than gigabytes written.
 *
 * Not called: commAbort with a valid code (it ends the process, by design), commInit with a library that loads (it
 * would start MPI), setNumThreads with more than 2 threads (the child's memory limit leaves no room for the stacks of
 * hundreds of threads) and NativeTensor methods on anything but a NativeTensor (V8 refuses it before the addon runs:
 * "TypeError: Illegal invocation"). There are no strided views to fuzz: every tensor is contiguous, reshape and to()
 * share whole storages.
 *
 * CI runs a fixed seed for a bounded number of calls (test/fuzz-ops.test.ts); by hand, longer (after npm run build:ts):
 *   node dist/tools/fuzz-ops.js [--seconds 300] [--seed N] [--calls N] [--memory-limit-mib 3072]
 *   node dist/tools/fuzz-ops.js --seed N --call I     runs call I alone in this process and prints it
 * Under AddressSanitizer (the build of npm run test:sanitize): MAE_ADDON=build-sanitize/Release/mae.node,
 * LD_PRELOAD=$(g++ -print-file-name=libasan.so), ASAN_OPTIONS=allocator_may_return_null=1:max_allocation_size_mb=2048
 * in place of the memory limit, UBSAN_OPTIONS=halt_on_error=1 (undefined behaviour ends the call), and
 * --memory-limit-mib 0.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { native, packageRoot, type NativeTensor } from '../lib/native.js';
import * as ops from '../lib/ops/index.js';
import { Generator } from '../lib/random.js';
import { Tensor, tidy, type TensorDType } from '../lib/tensor.js';

/** The most values a tensor that the fuzzer makes holds. */
const MAX_ELEMENTS = 100_000;

// ---------------------------------------------------------------------------------------------------------------
// Plans: a call's arguments as data, before any tensor is made

type Fill =
  | { kind: 'normal' }
  | { kind: 'const'; value: number }
  /** NaN, infinities, -0, float32 extremes and subnormals, in turn */
  | { kind: 'special' }
  /** int32 values in [lo, hi) */
  | { kind: 'ints'; lo: number; hi: number };

interface TensorPlan {
  kind: 'tensor';
  shape: number[];
  dtype: TensorDType;
  fill: Fill;
  /** how the handle is made: directly, as a reshape of a flat tensor, through to() (shares), or shareTensor/takeTensor */
  via: 'direct' | 'reshape' | 'to' | 'taken';
  disposed?: boolean;
  /** a lib op's input that requires grad */
  grad?: boolean;
  /** a bfloat16 weight shadow that an AdamW step has written: products read its blocked copy (native/cpu/blocked.cpp) */
  shadow?: boolean;
}

type Plan =
  | TensorPlan
  /** the same object as the argument at `of` (made earlier) */
  | { kind: 'alias'; of: number }
  | { kind: 'list'; items: Plan[] }
  /** a `new NativeTensor()`: a handle that holds nothing */
  | { kind: 'empty' }
  /** a typed array; `at`: a view that starts that many elements into a larger buffer; `detached`: its buffer transferred away */
  | { kind: 'typed'; type: 'u8' | 'u16' | 'i32' | 'f32' | 'f64'; length: number; at?: number; detached?: boolean }
  | { kind: 'value'; value: unknown }
  /** an array (a value or a list of tensors) whose first element, when the call reads it, disposes argument `disposes` */
  | { kind: 'getter'; inner: Plan; disposes: number };

const INTERESTING_NUMBERS = [
  0, -0, 1, 2, 3, -1, 0.5, 1.5, -2.5, 7, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 32, 2 ** 32 + 2, 2 ** 53, 2 ** 53 + 2,
  2 ** 63, 2 ** 64, 8999999999999999, 9e15, 1e300, -1e300, NaN, Infinity, -Infinity, Number.MIN_VALUE, 1e-300,
  1 - 2 ** -30, 0.99999999999,
];
const WRONG_TYPES: unknown[] = [null, undefined, '1', 'float32', true, {}, [], [1, 2], { shape: [2], dtype: 'float32' }, 1n];
/** shapes whose element count overflows int32, 2^53 or int64 (968973220 * 19037413721 = 2^64 + 4) */
const HUGE_SHAPES = [[968973220, 19037413721], [2 ** 31, 2 ** 31, 2 ** 31], [2 ** 21, 2 ** 21, 2 ** 21], [2 ** 31], [2 ** 32, 2], [2 ** 53], [9e15], [3e15, 3], [1, 2 ** 62]];
const SIZES = [1, 1, 1, 2, 2, 3, 3, 4, 5, 7, 8, 9, 16, 17, 31, 64];
/** sizes past the kernels' blocks and vector widths, now and then */
const LARGE_SIZES = [100, 127, 128, 129, 255, 256, 257, 500, 1000];

function pick<T>(g: Generator, xs: readonly T[]): T {
  return xs[g.int(xs.length)]!;
}

function chance(g: Generator, p: number): boolean {
  return g.uniform() < p;
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

/** `n` random sizes whose product stays within `budget` (one time in ten, 16 times that, up to MAX_ELEMENTS) */
function dims(g: Generator, n: number, budget = 4096): number[] {
  const out: number[] = [];
  let left = chance(g, 0.1) ? Math.min(budget * 16, MAX_ELEMENTS) : budget;
  for (let k = 0; k < n; k++) {
    const d = Math.max(1, Math.min(chance(g, 0.1) ? pick(g, LARGE_SIZES) : pick(g, SIZES), Math.floor(left)));
    out.push(d);
    left /= d;
  }
  return out;
}

function tensor(g: Generator, shape: number[], dtype: TensorDType, fill?: Fill): TensorPlan {
  const via = chance(g, 0.7) ? 'direct' : pick(g, ['reshape', 'to', 'taken'] as const);
  return { kind: 'tensor', shape, dtype, fill: fill ?? (chance(g, 0.05) ? { kind: 'special' } : { kind: 'normal' }), via };
}

/** an activation: float32, or bfloat16 a third of the time */
function act(g: Generator, shape: number[]): TensorPlan {
  return tensor(g, shape, chance(g, 0.33) ? 'bfloat16' : 'float32');
}

const f32 = (g: Generator, shape: number[], fill?: Fill) => tensor(g, shape, 'float32', fill);
const i32 = (g: Generator, shape: number[], lo: number, hi: number) => tensor(g, shape, 'int32', { kind: 'ints', lo, hi });
const value = (v: unknown): Plan => ({ kind: 'value', value: v });
const bool = (g: Generator): Plan => value(chance(g, 0.5));

/** 0 to 2 leading dimensions (a batch of rows) */
function lead(g: Generator, budget = 256): number[] {
  return dims(g, g.int(3), budget);
}

// ---------------------------------------------------------------------------------------------------------------
// The ops

/** What a call's arguments are once made: NativeTensor handles (lib ops: Tensors), lists, plain values. */
type Args = unknown[];

interface OpSpec {
  name: string;
  /** valid arguments for random sizes */
  args(g: Generator): Plan[];
  /** runs the call (default: native[name](...args); lib ops: the function of lib/ops) */
  call?(args: Args): unknown;
  /** a lib/ops function: tensor plans become Tensors */
  lib?: boolean;
  /**
   * the shapes of the result's tensors in order (null for a null entry), from the arguments of a call that returned
   * (as they were before it: a tensor the call disposed keeps its shape here)
   */
  out?(args: Args): (readonly number[] | null)[];
  /** arguments the fuzzer does not try (see "Not called" at the top) */
  avoid?(plans: Plan[]): boolean;
  /** another start its error messages may have (besides `name: `) */
  prefix?: string;
  /** what is wrong with the values a call that returned left (null when nothing); for the ops where that is simple to say */
  values?(plans: Plan[], args: Args): string | null;
}

/** The shape of a made tensor argument (a NativeTensor or a Tensor); [] for anything else. */
function sh(x: unknown): readonly number[] {
  return x && typeof x === 'object' && 'shape' in x && Array.isArray((x as { shape: unknown }).shape) ? (x as { shape: number[] }).shape : [];
}

/** a NativeTensor method's `this` stays a NativeTensor (V8 refuses any other object: "TypeError: Illegal invocation") */
const notATensor = ([t]: Plan[]) => t === undefined || t.kind === 'value';
const rowsOf = (s: readonly number[]) => (s.length > 1 ? s.slice(0, -1) : [1]);
const proto = native.NativeTensor.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;

const PATHS = ['/nonexistent/libmpi.so', '/etc/passwd', 'libnotthere.so.1', '/tmp', '\u00e9\u0000x'];
/** the value of a plain argument plan (undefined for a tensor or a missing one) */
const valueOf = (p: Plan | undefined): unknown => (p?.kind === 'value' ? p.value : undefined);

const DEVICES = ['cpu', 'cuda', 'cuda:0', 'cuda:1', 'cuda:-1', 'cuda:99999999', 'cuda:01', 'CPU', 'gpu', '', 'cpu ', 'cuda:1x'];

const NATIVE_OPS: OpSpec[] = [
  {
    name: 'linear',
    args: (g) => {
      const [K, N] = dims(g, 2, 512);
      const x = act(g, [...lead(g), K!]);
      const shadow = chance(g, 0.3) ? [{ ...tensor(g, [N!, K!], 'bfloat16'), shadow: chance(g, 0.7) }] : [];
      return [x, f32(g, [N!, K!]), chance(g, 0.5) ? f32(g, [N!]) : value(null), ...shadow];
    },
    out: ([x, w]) => [[...sh(x).slice(0, -1), sh(w)[0]!]],
  },
  {
    name: 'linearBackward',
    args: (g) => {
      const [K, N] = dims(g, 2, 512);
      const l = lead(g);
      const shadow = chance(g, 0.3) ? [{ ...tensor(g, [N!, K!], 'bfloat16'), shadow: chance(g, 0.7) }] : [];
      return [act(g, [...l, K!]), f32(g, [N!, K!]), act(g, [...l, N!]), bool(g), bool(g), ...shadow];
    },
    out: ([x, w, , needDx, hasBias]) => [needDx ? sh(x) : null, sh(w), hasBias ? [sh(w)[0]!] : null],
  },
  {
    name: 'layerNorm',
    args: (g) => {
      const [D] = dims(g, 1, 256);
      return [act(g, [...lead(g), D!]), f32(g, [D!]), f32(g, [D!]), value(1e-6)];
    },
    out: ([x]) => [sh(x), rowsOf(sh(x)), rowsOf(sh(x))],
  },
  {
    name: 'addLayerNorm',
    args: (g) => {
      const [D] = dims(g, 1, 256);
      const s = [...lead(g), D!];
      return [act(g, s), act(g, s), f32(g, [D!]), f32(g, [D!]), value(1e-6)];
    },
    out: ([x]) => [sh(x), sh(x), rowsOf(sh(x)), rowsOf(sh(x))],
  },
  {
    name: 'layerNormBackward',
    args: (g) => {
      const [D] = dims(g, 1, 256);
      const l = lead(g);
      const s = [...l, D!];
      const rows = l.length ? l : [1];
      const dres = chance(g, 0.5) ? [act(g, s)] : [];
      return [act(g, s), act(g, s), f32(g, [D!]), f32(g, rows), f32(g, rows), ...dres];
    },
    out: ([, x]) => [sh(x), [sh(x).at(-1)!], [sh(x).at(-1)!]],
  },
  { name: 'gelu', args: (g) => [act(g, dims(g, 1 + g.int(3)))], out: ([x]) => [sh(x)] },
  {
    name: 'geluBackward',
    args: (g) => {
      const s = dims(g, 1 + g.int(3));
      return [act(g, s), act(g, s)];
    },
    out: ([x]) => [sh(x)],
  },
  {
    name: 'biasGelu',
    args: (g) => {
      const [N] = dims(g, 1, 256);
      return [act(g, [...lead(g), N!]), f32(g, [N!])];
    },
    out: ([x]) => [sh(x)],
  },
  {
    name: 'biasGeluBackward',
    args: (g) => {
      const [N] = dims(g, 1, 256);
      const s = [...lead(g), N!];
      return [act(g, s), f32(g, [N!]), act(g, s), bool(g)];
    },
    out: ([x, b, , needDb]) => [sh(x), needDb ? sh(b) : null],
  },
  {
    name: 'attention',
    args: (g) => {
      const [B, N, H, hd] = dims(g, 4, 2048);
      return [act(g, [B!, N!, 3 * H! * hd!]), value(H)];
    },
    out: ([qkv, H]) => [[sh(qkv)[0]!, sh(qkv)[1]!, sh(qkv)[2]! / 3], [sh(qkv)[0]!, H as number, sh(qkv)[1]!]],
  },
  {
    name: 'attentionBackward',
    args: (g) => {
      const [B, N, H, hd] = dims(g, 4, 2048);
      const D = H! * hd!;
      return [act(g, [B!, N!, 3 * D]), act(g, [B!, N!, D]), act(g, [B!, N!, D]), f32(g, [B!, H!, N!]), value(H)];
    },
    out: ([qkv]) => [sh(qkv)],
  },
  {
    name: 'maskedMse',
    args: (g) => {
      const [B, L, P] = dims(g, 3);
      return [act(g, [B!, L!, P!]), act(g, [B!, L!, P!]), f32(g, [B!, L!], { kind: 'ints', lo: 0, hi: 2 }), bool(g)];
    },
    out: () => [[1]],
  },
  {
    name: 'maskedMseBackward',
    args: (g) => {
      const [B, L, P] = dims(g, 3);
      return [act(g, [B!, L!, P!]), act(g, [B!, L!, P!]), f32(g, [B!, L!], { kind: 'ints', lo: 0, hi: 2 }), bool(g), f32(g, [1])];
    },
    out: ([pred]) => [sh(pred)],
  },
  {
    name: 'crossEntropy',
    args: (g) => {
      const [B, C] = dims(g, 2);
      return [act(g, [B!, C!]), chance(g, 0.7) ? i32(g, [B!], 0, C!) : act(g, [B!, C!]), value(pick(g, [0, 0.1, 0.5]))];
    },
    out: () => [[1]],
  },
  {
    name: 'crossEntropyBackward',
    args: (g) => {
      const [B, C] = dims(g, 2);
      return [act(g, [B!, C!]), chance(g, 0.7) ? i32(g, [B!], 0, C!) : act(g, [B!, C!]), value(pick(g, [0, 0.1, 0.5])), f32(g, [1])];
    },
    out: ([logits]) => [sh(logits)],
  },
  {
    name: 'batchNorm',
    args: (g) => {
      const [B, F] = dims(g, 2);
      return [act(g, [B! + 1, F!]), f32(g, [F!]), f32(g, [F!], { kind: 'const', value: 1 }), bool(g), value(0.1), value(1e-5)];
    },
    out: ([x]) => [sh(x), [sh(x)[1]!]],
  },
  {
    name: 'batchNormBackward',
    args: (g) => {
      const [B, F] = dims(g, 2);
      return [act(g, [B!, F!]), act(g, [B!, F!]), f32(g, [F!]), bool(g)];
    },
    out: ([, y]) => [sh(y)],
  },
  {
    name: 'gatherRows',
    args: (g) => {
      const [B, N, D, K] = dims(g, 4);
      return [act(g, [B!, N!, D!]), i32(g, [B!, K!], 0, N!)];
    },
    out: ([x, index]) => [[sh(x)[0]!, sh(index)[1]!, sh(x)[2]!]],
  },
  {
    name: 'scatterAddRows',
    args: (g) => {
      const [B, K, D, n] = dims(g, 4);
      return [act(g, [B!, K!, D!]), i32(g, [B!, K!], 0, n!), value(n)];
    },
    out: ([dy, , n]) => [[sh(dy)[0]!, n as number, sh(dy)[2]!]],
  },
  {
    name: 'catTokens',
    args: (g) => {
      const [B, Na, Nb, D] = dims(g, 4);
      return [act(g, [chance(g, 0.3) ? 1 : B!, Na!, D!]), act(g, [B!, Nb!, D!])];
    },
    out: ([a, b]) => [[Math.max(sh(a)[0]!, sh(b)[0]!), sh(a)[1]! + sh(b)[1]!, sh(a)[2]!]],
  },
  {
    name: 'sliceTokens',
    args: (g) => {
      const [B, N, D] = dims(g, 3);
      const start = g.int(N!);
      return [act(g, [B!, N!, D!]), value(start), value(1 + g.int(N! - start))];
    },
    out: ([x, , len]) => [[sh(x)[0]!, len as number, sh(x)[2]!]],
  },
  ...(['add', 'mul'] as const).map(
    (name): OpSpec => ({
      name,
      args: (g) => {
        const s = dims(g, 1 + g.int(3));
        const k = g.int(s.length + 1);
        return [act(g, s), act(g, [...new Array<number>(g.int(2)).fill(1), ...s.slice(k)].concat(k === s.length && chance(g, 0.5) ? [1] : []))];
      },
      out: ([a]) => [sh(a)],
    }),
  ),
  {
    name: 'sumTo',
    args: (g) => {
      const s = dims(g, 1 + g.int(3));
      return [act(g, s), value([...new Array<number>(g.int(2)).fill(1), ...s.slice(g.int(s.length))])];
    },
    out: ([, shape]) => [shape as number[]],
  },
  {
    name: 'axpby',
    args: (g) => {
      const s = dims(g, 1 + g.int(3));
      return [value(g.normal()), act(g, s), value(g.normal()), act(g, chance(g, 0.3) ? [numel(s)] : s)];
    },
    out: () => [],
  },
  { name: 'sum', args: (g) => [act(g, dims(g, 1 + g.int(3))), value(g.normal())], out: () => [[1]] },
  { name: 'meanTokens', args: (g) => [act(g, dims(g, 3))], out: ([x]) => [[sh(x)[0]!, sh(x)[2]!]] },
  {
    name: 'meanTokensBackward',
    args: (g) => [act(g, dims(g, 2)), value(pick(g, SIZES))],
    out: ([dy, n]) => [[sh(dy)[0]!, n as number, sh(dy)[1]!]],
  },
  { name: 'fill', args: (g) => [act(g, dims(g, 1 + g.int(3))), value(g.normal())], out: () => [] },
  {
    name: 'patchify',
    args: (g) => {
      const [B, C, h, w, p] = dims(g, 5, 2048);
      return [act(g, [B!, C!, h! * p!, w! * p!]), value(p), bool(g)];
    },
    out: ([imgs, p]) => {
      const [B, C, H, W] = sh(imgs) as number[];
      const q = p as number;
      return [[B!, (H! / q) * (W! / q), q * q * C!]];
    },
  },
  {
    name: 'unpatchify',
    args: (g) => {
      const [B, C, h, w, p] = dims(g, 5, 2048);
      return [act(g, [B!, h! * w!, p! * p! * C!]), value(p), bool(g), value([C!, h! * p!, w! * p!])];
    },
    out: ([x, , , chw]) => [[sh(x)[0]!, ...(chw as number[])]],
  },
  {
    name: 'adamwStep',
    args: (g) => {
      const shapes = Array.from({ length: 1 + g.int(3) }, () => dims(g, 1 + g.int(2)));
      const list = (fill?: Fill) => ({ kind: 'list', items: shapes.map((s) => f32(g, s, fill)) }) as Plan;
      const shadows = chance(g, 0.4) ? [{ kind: 'list', items: shapes.map((s) => (chance(g, 0.7) ? tensor(g, s, 'bfloat16') : value(null))) } as Plan] : [];
      return [
        list(), list(), list({ kind: 'const', value: 0 }), list({ kind: 'const', value: 0 }),
        value(shapes.map(() => 1e-3)), value(shapes.map(() => 0.05)), value(0.9), value(0.999), value(1e-8), value(1 + g.int(10)), ...shadows,
      ];
    },
    out: () => [],
    // finite tensors (v >= 0), lr and weight decay of at most 1, eps >= 1e-12 and any betas the step accepts: the new
    // parameters are finite
    values: (plans, [params, , , , lr, wd, , , eps]) => {
      const items = (k: number) => (plans[k]?.kind === 'list' ? plans[k].items : []);
      const finiteIn = plans.every((p) => p.kind !== 'list' || p.items.every((t) => t.kind !== 'tensor' || t.fill.kind !== 'special'));
      const vPositive = items(3).every((t) => t.kind !== 'tensor' || (t.fill.kind === 'const' && t.fill.value >= 0) || (t.fill.kind === 'ints' && t.fill.lo >= 0));
      if (!finiteIn || !vPositive) return null;
      const moderate = (lr as number[]).every((x) => x <= 1) && (wd as number[]).every((x) => Math.abs(x) <= 1) && (eps as number) >= 1e-12;
      if (!moderate || (params as NativeTensor[]).some((p) => p.disposed)) return null;
      const bad = (params as NativeTensor[]).findIndex((p) => !Array.from(p.read()).every(Number.isFinite));
      return bad < 0 ? null : `left params[${bad}] with values that are not finite`;
    },
  },
  {
    name: 'resizedCrop',
    args: (g) => {
      const [H, W] = dims(g, 2, 4096);
      const C = pick(g, [1, 3, 4]);
      const outC = C === 1 && chance(g, 0.5) ? 3 : C;
      const top = g.int(H!), left = g.int(W!);
      const cropH = 1 + g.int(H! - top), cropW = 1 + g.int(W! - left);
      const [oh, ow] = dims(g, 2, 4096);
      const y0 = g.int(oh!), x0 = g.int(ow!);
      const winH = 1 + g.int(oh! - y0), winW = 1 + g.int(ow! - x0);
      const offset = g.int(4);
      return [
        { kind: 'typed', type: 'u8', length: H! * W! * C }, value([H, W, C]), value([top, left, cropH, cropW]), value([oh, ow]),
        value([y0, x0, winH, winW]), bool(g), bool(g), value(new Array<number>(outC).fill(0.5)), value(new Array<number>(outC).fill(0.25)),
        { kind: 'typed', type: chance(g, 0.5) ? 'f32' : 'u16', length: offset + outC * winH * winW + g.int(3) }, value(offset),
      ];
    },
    out: () => [],
  },
  // the runtime
  {
    name: 'fromArray',
    args: (g) => {
      const s = dims(g, g.int(4));
      return [{ kind: 'typed', type: chance(g, 0.5) ? 'f32' : 'i32', length: numel(s) }, value(s)];
    },
    out: ([, shape]) => [shape as number[]],
  },
  {
    name: 'full',
    args: (g) => [value(dims(g, g.int(4))), value(g.int(100) - 50), value(pick(g, ['float32', 'int32', undefined]))],
    out: ([shape]) => [shape as number[]],
  },
  { name: 'clone', args: (g) => [tensor(g, dims(g, 1 + g.int(3)), pick(g, ['float32', 'bfloat16', 'int32'] as const))], out: ([x]) => [sh(x)] },
  {
    name: 'to',
    args: (g) => {
      const dtype = pick(g, ['float32', 'bfloat16', 'int32'] as const);
      const target = dtype === 'int32' ? pick(g, ['int32', undefined]) : pick(g, ['float32', 'bfloat16', undefined, null]);
      return [tensor(g, dims(g, 1 + g.int(3)), dtype), value(pick(g, ['cpu', 'cpu', 'cuda'])), value(target)];
    },
    out: ([x]) => [sh(x)],
  },
  { name: 'liveTensors', args: () => [] },
  { name: 'memoryStats', args: (g) => (chance(g, 0.5) ? [] : [value(pick(g, DEVICES))]) },
  { name: 'emptyCache', args: (g) => (chance(g, 0.5) ? [] : [value(pick(g, DEVICES))]) },
  {
    name: 'setNumThreads',
    args: (g) => [value(1 + g.int(2))],
    avoid: ([n]) => typeof valueOf(n) === 'number' && (valueOf(n) as number) > 2 && (valueOf(n) as number) <= 1024,
  },
  { name: 'info', args: () => [] },
  { name: 'synchronize', args: (g) => [value(pick(g, DEVICES))] },
  ...['timerStart', 'timerStop', 'syncCount'].map((name): OpSpec => ({ name, args: (g) => [value(pick(g, DEVICES))] })),
  // tensor sharing: an id shareTensor returns is dropped again (the worker's dispose)
  { name: 'envId', args: () => [] },
  { name: 'shareTensor', args: (g) => [tensor(g, dims(g, 1 + g.int(2)), pick(g, ['float32', 'bfloat16', 'int32'] as const))] },
  { name: 'takeTensor', args: (g) => [value(1 + g.int(1000))] },
  { name: 'dropTensor', args: (g) => [value(1 + g.int(1000))] },
  { name: 'sharedTensorCount', args: () => [] },
  // the communicator, never started here
  { name: 'mpiInfo', args: (g) => [value(pick(g, PATHS))] },
  { name: 'ncclInfo', args: (g) => [value(pick(g, PATHS))] },
  // (a path that is not a non-empty string means the system's MPI)
  { name: 'commInit', args: (g) => [value(pick(g, PATHS)), value(60)], avoid: ([path]) => !(typeof valueOf(path) === 'string' && valueOf(path) !== '') },
  { name: 'commNcclInit', args: (g) => [value(0), value(pick(g, PATHS))] },
  { name: 'commAllreduceGrads', args: (g) => [{ kind: 'list', items: [f32(g, dims(g, 2))] }, value(false), value('grads')] },
  { name: 'commWait', args: (g) => [value(1 + g.int(10))] },
  { name: 'commAllreduce', args: () => [{ kind: 'typed', type: 'f64', length: 2 }, value('sum'), value('values')] },
  { name: 'commBroadcast', args: () => [{ kind: 'typed', type: 'u8', length: 4 }, value(0), value('bytes')] },
  { name: 'commAllgather', args: () => [{ kind: 'typed', type: 'u8', length: 4 }, value('bytes')] },
  { name: 'commBarrier', args: () => [value('a barrier')] },
  { name: 'commFail', args: () => [value('a message')] },
  {
    name: 'commAbort',
    args: (g) => [value(pick(g, [-1, 256, 1.5, NaN, '1', null]))],
    avoid: ([code]) => Number.isInteger(valueOf(code)) && (valueOf(code) as number) >= 0 && (valueOf(code) as number) <= 255,
  },
  { name: 'commFinalize', args: () => [] },
  { name: 'commNow', args: () => [] },
  { name: 'commState', args: () => [] },
  // the NativeTensor methods and accessors, on a tensor or on anything else as `this`
  ...['read', 'dispose'].map((m): OpSpec => ({
    name: `Tensor.${m}`,
    args: (g) => [tensor(g, dims(g, 1 + g.int(3)), pick(g, ['float32', 'bfloat16', 'int32'] as const))],
    call: ([t]) => proto[m]!.call(t),
    avoid: notATensor,
  })),
  {
    name: 'Tensor.readAsync',
    args: (g) => [tensor(g, dims(g, 1 + g.int(3)), pick(g, ['float32', 'bfloat16', 'int32'] as const)), bool(g)],
    // the second argument: the tensor is disposed while the read is in flight
    call: ([t, disposeNow]) => {
      const read = proto.readAsync!.call(t);
      if (disposeNow === true) proto.dispose!.call(t);
      return read;
    },
    avoid: notATensor,
  },
  {
    name: 'Tensor.write',
    args: (g) => {
      const dtype = pick(g, ['float32', 'int32'] as const);
      const s = dims(g, 1 + g.int(3));
      return [tensor(g, s, dtype), { kind: 'typed', type: dtype === 'int32' ? 'i32' : 'f32', length: numel(s) }];
    },
    call: ([t, data]) => proto.write!.call(t, data),
    avoid: notATensor,
  },
  {
    name: 'Tensor.reshape',
    args: (g) => {
      const s = dims(g, 1 + g.int(3));
      return [tensor(g, s, pick(g, ['float32', 'bfloat16', 'int32'] as const)), value(chance(g, 0.5) ? [numel(s)] : [...s].reverse())];
    },
    call: ([t, shape]) => proto.reshape!.call(t, shape),
    out: ([, shape]) => [shape as number[]],
    avoid: notATensor,
  },
  ...['shape', 'dtype', 'device', 'disposed'].map((p): OpSpec => ({
    name: `Tensor.${p}`,
    args: (g) => [tensor(g, dims(g, 1 + g.int(2)), 'float32')],
    call: ([t]) => Object.getOwnPropertyDescriptor(proto, p)!.get!.call(t),
  })),
];

/** the lib/ops functions: the same argument builders where the signature is the native one */
function libOp(name: keyof typeof ops, args: (g: Generator) => Plan[], out?: OpSpec['out']): OpSpec {
  const fn = ops[name] as (...a: unknown[]) => unknown;
  return { name, lib: true, args, call: (a) => fn(...a), out };
}

const nativeSpec = (name: string) => NATIVE_OPS.find((s) => s.name === name)!;

const LIB_OPS: OpSpec[] = [
  libOp('linear', nativeSpec('linear').args, nativeSpec('linear').out),
  libOp('layerNorm', nativeSpec('layerNorm').args, ([x]) => [sh(x)]),
  libOp('addLayerNorm', nativeSpec('addLayerNorm').args, ([x]) => [sh(x), sh(x)]),
  libOp('gelu', nativeSpec('gelu').args, nativeSpec('gelu').out),
  libOp('biasGelu', nativeSpec('biasGelu').args, nativeSpec('biasGelu').out),
  libOp('attention', nativeSpec('attention').args, ([qkv]) => [[sh(qkv)[0]!, sh(qkv)[1]!, sh(qkv)[2]! / 3]]),
  libOp('maskedMse', nativeSpec('maskedMse').args, nativeSpec('maskedMse').out),
  libOp('crossEntropy', nativeSpec('crossEntropy').args, nativeSpec('crossEntropy').out),
  libOp('batchNorm', nativeSpec('batchNorm').args, ([x]) => [sh(x)]),
  libOp('gatherRows', nativeSpec('gatherRows').args, nativeSpec('gatherRows').out),
  libOp('catTokens', nativeSpec('catTokens').args, nativeSpec('catTokens').out),
  libOp('sliceTokens', nativeSpec('sliceTokens').args, nativeSpec('sliceTokens').out),
  libOp('add', nativeSpec('add').args, nativeSpec('add').out),
  libOp('mul', nativeSpec('mul').args, nativeSpec('mul').out),
  libOp('scale', (g) => [act(g, dims(g, 1 + g.int(3))), value(g.normal())], ([x]) => [sh(x)]),
  libOp('sum', (g) => [act(g, dims(g, 1 + g.int(3)))], () => [[1]]),
  libOp('mean', (g) => [act(g, dims(g, 1 + g.int(3)))], () => [[1]]),
  libOp('meanTokens', nativeSpec('meanTokens').args, nativeSpec('meanTokens').out),
  // reshape is the NativeTensor method, recorded: errors are its own or, for the arguments' types, the op's
  { ...libOp('reshape', (g) => {
    const s = dims(g, 1 + g.int(3));
    return [act(g, s), value(chance(g, 0.5) ? [numel(s)] : [...s].reverse())];
  }, ([, shape]) => [shape as number[]]), prefix: 'Tensor.reshape' },
  libOp('patchify', (g) => {
    const [imgs, p, hwc] = nativeSpec('patchify').args(g);
    return [imgs!, p!, value((hwc as { value: boolean }).value ? 'hwc' : 'chw')];
  }, nativeSpec('patchify').out),
  libOp('unpatchify', (g) => {
    const [x, p, hwc, chw] = nativeSpec('unpatchify').args(g);
    return [x!, p!, chw!, value((hwc as { value: boolean }).value ? 'hwc' : 'chw')];
  }, ([x, , chw]) => [[sh(x)[0]!, ...(chw as number[])]]),
];

export const SPECS: OpSpec[] = [...NATIVE_OPS, ...LIB_OPS];

// ---------------------------------------------------------------------------------------------------------------
// Mutations

/** One mutation of a tensor argument. */
function mutateTensor(g: Generator, t: TensorPlan): Plan {
  const s = [...t.shape];
  switch (g.int(13)) {
    case 0: { // one dimension changed
      const k = g.int(s.length || 1);
      s[k] = pick(g, [0, 1, 2, (s[k] ?? 1) + 1, Math.max(0, (s[k] ?? 1) - 1), (s[k] ?? 1) * 2]);
      return { ...t, shape: s };
    }
    case 1: // a dimension added
      s.splice(g.int(s.length + 1), 0, pick(g, [1, 1, 2, 3]));
      return { ...t, shape: s };
    case 2: // a dimension dropped (rank 0 when it was the only one)
      s.splice(g.int(s.length || 1), 1);
      return { ...t, shape: s };
    case 3: { // two dimensions swapped (a transposed shape)
      const a = g.int(s.length || 1), b = g.int(s.length || 1);
      [s[a], s[b]] = [s[b]!, s[a]!];
      return { ...t, shape: s.filter((d) => d !== undefined) };
    }
    case 4: // another dtype
      return { ...t, dtype: pick(g, ['float32', 'bfloat16', 'int32'] as const), fill: t.dtype === 'int32' ? { kind: 'normal' } : { kind: 'ints', lo: -2, hi: 5 } };
    case 5: // zero-size, with a huge dimension beside the zero
      return { ...t, shape: [0, ...s.slice(1).map((d) => (chance(g, 0.5) ? pick(g, [2 ** 31, 2 ** 52, 4e15]) : d))] };
    case 6:
      return { ...t, disposed: true };
    case 7: // values: NaN and infinities, or indices and labels out of range
      return t.dtype === 'int32' && t.fill.kind === 'ints'
        ? { ...t, fill: pick(g, [{ kind: 'ints', lo: -3, hi: t.fill.hi + 3 }, { kind: 'ints', lo: 2 ** 31 - 2, hi: 2 ** 31 - 1 }, { kind: 'ints', lo: -(2 ** 31), hi: -(2 ** 31) + 1 }] as Fill[]) }
        : { ...t, fill: { kind: 'special' } };
    case 8: // made another way
      return { ...t, via: pick(g, ['direct', 'reshape', 'to', 'taken'] as const) };
    case 9:
      return { ...t, grad: !t.grad };
    case 10: // the same sizes in another order, or all in one dimension
      return { ...t, shape: chance(g, 0.5) ? [...s].reverse() : [numel(s)] };
    case 11:
      return { kind: 'empty' };
    default: // not a tensor at all
      return value(pick(g, [...WRONG_TYPES, pick(g, INTERESTING_NUMBERS)]));
  }
}

/** One mutation of a plain argument. */
function mutateValue(g: Generator, v: unknown): Plan {
  if (Array.isArray(v) && chance(g, 0.7)) {
    const a = [...v] as unknown[];
    switch (g.int(5)) {
      case 0: a[g.int(a.length || 1)] = pick(g, INTERESTING_NUMBERS); break;
      case 1: a.splice(g.int(a.length + 1), 0, pick(g, [0, 1, 2, 2 ** 31])); break;
      case 2: a.splice(g.int(a.length || 1), 1); break;
      case 3: return value(pick(g, HUGE_SHAPES));
      default: return value([...a, ...new Array<number>(g.int(40)).fill(1)]);
    }
    return value(a);
  }
  if (chance(g, 0.5)) { // a value of the same type
    if (typeof v === 'number') return value(pick(g, INTERESTING_NUMBERS));
    if (typeof v === 'string') return value(pick(g, ['HWC', '', 'hwc ', 'chw', 'hwc']));
    return value(typeof v === 'boolean' ? !v : v);
  }
  return value(chance(g, 0.75) ? pick(g, INTERESTING_NUMBERS) : pick(g, WRONG_TYPES));
}

/** One mutation of a call's arguments. */
function mutate(g: Generator, plans: Plan[]): Plan[] {
  const p = [...plans];
  const k = p.length ? g.int(p.length) : 0;
  const at = p[k];
  const r = g.int(10);
  if (r === 0) return p.slice(0, g.int(p.length + 1)); // arguments dropped
  if (r === 1) return [...p, pick(g, [value(pick(g, INTERESTING_NUMBERS)), value(null), value({})])]; // one added
  if (r === 2 && p.length > 1) { // a tensor given twice
    // the later of two tensor arguments becomes the earlier one
    const other = g.int(p.length);
    const [first, later] = [Math.min(k, other), Math.max(k, other)];
    if (first !== later && p[first]!.kind === 'tensor' && p[later]!.kind === 'tensor') p[later] = { kind: 'alias', of: first };
    return p;
  }
  if (r === 3 && p.length > 1) { // reading an array argument disposes a tensor argument (JavaScript inside the native call)
    const j = g.int(p.length);
    if (j !== k && p[j]!.kind === 'tensor' && ((at?.kind === 'value' && Array.isArray(at.value) && at.value.length > 0) || (at?.kind === 'list' && at.items.length > 0)))
      p[k] = { kind: 'getter', inner: at, disposes: j };
    return p;
  }
  if (!at) return p;
  if (at.kind === 'tensor') p[k] = mutateTensor(g, at);
  else if (at.kind === 'value') p[k] = mutateValue(g, at.value);
  else if (at.kind === 'list' && at.items.length) {
    const items = [...at.items];
    const j = g.int(items.length);
    const item = items[j]!;
    if (chance(g, 0.2)) items.splice(j, 1);
    else items[j] = item.kind === 'tensor' ? mutateTensor(g, item) : item.kind === 'value' ? mutateValue(g, item.value) : item;
    p[k] = { kind: 'list', items };
  } else if (at.kind === 'typed') {
    const m = g.int(4);
    p[k] = m === 0 ? { ...at, length: Math.max(0, at.length + pick(g, [-1, 1, -at.length])) }
      : m === 1 ? { ...at, type: pick(g, ['u8', 'u16', 'i32', 'f32', 'f64'] as const) }
      : m === 2 ? { ...at, at: pick(g, [1, 3]) }
      : { ...at, detached: true };
  } else p[k] = value(pick(g, WRONG_TYPES));
  return p;
}

/** A tensor of this shape can be made: at most MAX_ELEMENTS values, and sizes that fromArray takes (no running product of 9e15 or more, even before a zero). */
function makeable(shape: readonly number[]): boolean {
  let product = 1;
  for (const d of shape) if (d >= 9e15 || (product *= d) >= 9e15) return false;
  return product <= MAX_ELEMENTS;
}

/** The tensors of a plan can be made (a mutation can double a dimension or move a zero). */
function fits(plans: Plan[]): boolean {
  return plans.every((p) => (p.kind === 'tensor' ? makeable(p.shape) : p.kind === 'list' ? fits(p.items) : p.kind !== 'typed' || p.length <= MAX_ELEMENTS));
}

/** Call `index` of seed `seed`: the op and its argument plans. */
export function planCall(seed: number, index: number): { spec: OpSpec; plans: Plan[] } {
  const g = new Generator(seed * 1_000_003 + index);
  const spec = pick(g, SPECS);
  let plans = spec.args(g);
  // a third of the calls keep their valid arguments (they reach the kernels), the others get 1 to 3 mutations
  if (chance(g, 0.67)) {
    const rounds = 1 + g.int(3);
    for (let r = 0; r < rounds; r++) {
      const next = mutate(g, plans);
      if (fits(next) && !spec.avoid?.(next)) plans = next;
    }
  }
  if (spec.lib) for (const p of plans) if (p.kind === 'tensor' && p.dtype !== 'int32' && chance(g, 0.5)) p.grad = true;
  return { spec, plans };
}

// ---------------------------------------------------------------------------------------------------------------
// Making the arguments, running a call, judging its outcome

function describeValue(v: unknown): string {
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(describeValue).join(', ')}]`;
  if (v && typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function describePlan(p: Plan): string {
  switch (p.kind) {
    case 'tensor': {
      const fill = p.fill.kind === 'ints' ? `ints ${p.fill.lo}..${p.fill.hi - 1}` : p.fill.kind === 'const' ? `all ${p.fill.value}` : p.fill.kind;
      const notes = [fill, p.via !== 'direct' ? `via ${p.via}` : '', p.shadow ? 'AdamW shadow' : '', p.disposed ? 'disposed' : '', p.grad ? 'requiresGrad' : ''].filter(Boolean);
      return `${p.dtype} [${p.shape.join(', ')}] (${notes.join(', ')})`;
    }
    case 'alias': return `(argument ${p.of} again)`;
    case 'list': return `[${p.items.map(describePlan).join(', ')}]`;
    case 'empty': return 'new NativeTensor()';
    case 'typed': return `${p.type} array of ${p.length}${p.at ? ` at element ${p.at} of its buffer` : ''}${p.detached ? ', detached' : ''}`;
    case 'getter': return `${describePlan(p.inner)} (reading it disposes argument ${p.disposes})`;
    default: return describeValue(p.value);
  }
}

export function describeCall(spec: OpSpec, plans: Plan[]): string {
  return `${spec.lib ? 'ops.' : ''}${spec.name}(${plans.map(describePlan).join(', ')})`;
}

const SPECIAL_VALUES = [NaN, Infinity, -Infinity, -0, 3.4e38, -3.4e38, 1e-45, 0, 1];

function makeTensor(p: TensorPlan, g: Generator, lib: boolean): unknown {
  const n = numel(p.shape);
  let h: NativeTensor;
  if (p.dtype === 'int32') {
    const lo = p.fill.kind === 'ints' ? p.fill.lo : 0, hi = p.fill.kind === 'ints' ? p.fill.hi : 4;
    h = native.fromArray(Int32Array.from({ length: n }, () => lo + g.int(Math.max(1, hi - lo))), p.via === 'reshape' ? [n] : p.shape);
  } else {
    const fill = p.fill;
    const data = Float32Array.from({ length: n }, (_, i) =>
      fill.kind === 'const' ? fill.value : fill.kind === 'special' ? SPECIAL_VALUES[i % SPECIAL_VALUES.length]! : fill.kind === 'ints' ? fill.lo + g.int(Math.max(1, fill.hi - fill.lo)) : g.normal());
    h = native.fromArray(data, p.via === 'reshape' ? [n] : p.shape);
  }
  const replace = (next: NativeTensor) => {
    h.dispose();
    h = next;
  };
  if (p.via === 'reshape') replace(h.reshape(p.shape));
  if (p.dtype === 'bfloat16') replace(native.to(h, 'cpu', 'bfloat16'));
  if (p.via === 'to') replace(native.to(h, 'cpu'));
  if (p.via === 'taken') replace(native.takeTensor(native.shareTensor(h)));
  if (p.shadow && p.dtype === 'bfloat16' && p.shape.length > 0 && n > 0) {
    // a step that leaves the weight as it is (lr 0) and writes it to the shadow, as AdamW does for a bf16 model
    const w = native.to(h, 'cpu', 'float32');
    const zeros = [0, 1, 2].map(() => native.full(p.shape, 0));
    native.adamwStep([w], [zeros[0]!], [zeros[1]!], [zeros[2]!], [0], [0], 0.9, 0.999, 1e-8, 1, [h]);
    for (const t of [w, ...zeros]) t.dispose();
  }
  if (!lib) {
    if (p.disposed) h.dispose();
    return h;
  }
  const t = new Tensor(h);
  if (p.grad) t.requiresGrad = true;
  if (p.disposed) t.dispose();
  return t;
}

function make(p: Plan, made: Args, g: Generator, lib: boolean): unknown {
  switch (p.kind) {
    case 'tensor': return makeTensor(p, g, lib);
    case 'alias': return made[p.of];
    case 'list': return p.items.map((item) => make(item, [], g, lib));
    case 'empty': return new native.NativeTensor();
    case 'typed': {
      const C = { u8: Uint8Array, u16: Uint16Array, i32: Int32Array, f32: Float32Array, f64: Float64Array }[p.type];
      const a = new C(p.length + (p.at ?? 0)).map((_, i) => (i * 37) % 251).subarray(p.at ?? 0);
      if (p.detached) structuredClone(a.buffer, { transfer: [a.buffer] });
      return a;
    }
    case 'getter': {
      const a = make(p.inner, made, g, lib) as unknown[];
      const first = a[0];
      Object.defineProperty(a, 0, {
        get: () => {
          const t = made[p.disposes];
          if (t instanceof Tensor || t instanceof native.NativeTensor) t.dispose();
          return first;
        },
      });
      return a;
    }
    default: return Array.isArray(p.value) ? [...p.value] : p.value;
  }
}

/** Every NativeTensor or Tensor inside v (arrays, and addLayerNorm's { s, y }). */
function tensorsIn(v: unknown, out: unknown[] = []): unknown[] {
  if (v instanceof Tensor || v instanceof native.NativeTensor) out.push(v);
  else if (Array.isArray(v)) for (const x of v) tensorsIn(x, out);
  else if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) for (const x of Object.values(v)) tensorsIn(x, out);
  return out;
}

/** The arguments with each tensor replaced by its shape, before the call (it may dispose them; arrays are not read here). */
function shapesOf(args: Args): Args {
  return args.map((a) => (a instanceof Tensor || a instanceof native.NativeTensor ? { shape: [...sh(a)] } : a));
}

/** The top-level entries of a result that `out` describes: its tensors (and nulls) in order. */
function entries(result: unknown): unknown[] {
  if (result === undefined) return [];
  if (Array.isArray(result)) return result;
  if (result instanceof Tensor || result instanceof native.NativeTensor) return [result];
  // addLayerNorm's { s, y }
  if (result && typeof result === 'object' && Object.getPrototypeOf(result) === Object.prototype) return Object.values(result);
  return [];
}

/** What is wrong with a call's result (null when nothing). */
function checkResult(spec: OpSpec, before: Args, result: unknown): string | null {
  if (spec.out) {
    const shapes = entries(result).map((t) => (t === null ? null : sh(t)));
    const want = spec.out(before);
    if (JSON.stringify(shapes) !== JSON.stringify(want)) return `returned shapes ${JSON.stringify(shapes)}, expected ${JSON.stringify(want)}`;
  }
  for (const t of tensorsIn(result)) {
    const h = t instanceof Tensor ? t.handle : (t as NativeTensor);
    if (h.disposed) return 'returned a disposed tensor';
    if (!['float32', 'bfloat16', 'int32'].includes(h.dtype!)) return `returned a tensor of dtype ${h.dtype}`;
    if (!h.shape.every((d) => Number.isInteger(d) && d >= 0)) return `returned a tensor of shape [${h.shape}]`;
    const n = h.read().length;
    if (n !== numel(h.shape)) return `returned a tensor [${h.shape}] that reads as ${n} values`;
  }
  return null;
}

/** Runs backward from a lib op's result: every leaf that gets a gradient must get one of its own shape. */
function checkBackward(args: Args, result: unknown): string | null {
  const out = tensorsIn(result).find((t): t is Tensor => t instanceof Tensor && t.requiresGrad && t.dtype !== 'int32' && t.size > 0);
  if (!out) return null;
  // (a one-value result, of rank 0 too, is the loss itself)
  (out.size === 1 ? out : ops.sum(out)).backward();
  // (targets, masks and indices get none)
  for (const leaf of args.flat()) {
    if (!(leaf instanceof Tensor) || !leaf.grad) continue;
    if (leaf.grad.shape.join() !== leaf.shape.join()) return `backward gave a leaf [${leaf.shape}] a gradient [${leaf.grad.shape}]`;
  }
  return null;
}

/** The kind of an error message: numbers and quoted or bracketed parts taken out. */
export function errorKind(message: string): string {
  return message.replace(/'[^']*'/g, "'_'").replace(/\[[^\]]*\]/g, '[_]').replace(/-?\d+(\.\d+)?(e[-+]?\d+)?/gi, '#').slice(0, 160);
}

export interface CallOutcome {
  index: number;
  op: string;
  ok: boolean;
  /** the error kind of a refused call */
  kind?: string;
  failure?: string;
  ms: number;
  rssMiB: number;
}

/** Makes the arguments of call `index`, runs it, judges it, frees everything it made. */
export async function runCall(seed: number, index: number, slowMs: number): Promise<CallOutcome> {
  const { spec, plans } = planCall(seed, index);
  // the values in the tensors: a second stream of (seed, index)
  const g = new Generator(seed * 1_000_003 + index + 2 ** 50);
  const outcome: CallOutcome = { index, op: spec.lib ? `ops.${spec.name}` : spec.name, ok: false, ms: 0, rssMiB: 0 };
  const fail = (what: string) => (outcome.failure ??= `call ${index}: ${describeCall(spec, plans)} ${what}`);
  const judgeError = (e: unknown) => {
    const err = e as Error;
    const message = String(err?.message ?? err);
    const named = message.startsWith(`${spec.name}: `) || (spec.prefix !== undefined && message.startsWith(`${spec.prefix}: `));
    if (!(err instanceof Error) || err instanceof TypeError || err instanceof RangeError || !named) fail(`threw ${err?.constructor?.name}: ${message.slice(0, 300)}`);
    outcome.kind = errorKind(message);
  };
  const args: Args = [];
  let result: unknown;
  // lib ops make tensors of their own (and backward's): tidy frees them
  tidy(() => {
    for (const p of plans) args.push(make(p, args, g, spec.lib === true));
    const before = shapesOf(args);
    const t0 = performance.now();
    try {
      result = spec.call ? spec.call(args) : (native as unknown as Record<string, (...a: unknown[]) => unknown>)[spec.name]!(...args);
      outcome.ms = performance.now() - t0;
      outcome.ok = true;
    } catch (e) {
      outcome.ms = performance.now() - t0;
      judgeError(e);
      return;
    }
    if (result instanceof Promise) return;
    try {
      const wrong = checkResult(spec, before, result) ?? spec.values?.(plans, args) ?? (spec.lib ? checkBackward(args, result) : null);
      if (wrong) fail(wrong);
    } catch (e) {
      fail(`returned, then its check threw ${(e as Error)?.constructor?.name}: ${String((e as Error)?.message ?? e).slice(0, 300)}`);
    }
  });
  if (result instanceof Promise) {
    // readAsync
    const t0 = performance.now();
    try {
      result = await result;
    } catch (e) {
      outcome.ok = false;
      judgeError(e);
    }
    outcome.ms += performance.now() - t0;
  }
  if (outcome.ms > slowMs) fail(`took ${outcome.ms.toFixed(0)} ms`);
  for (const t of [...tensorsIn(args), ...tensorsIn(result)]) (t as { dispose(): void }).dispose();
  if (spec.name === 'shareTensor' && typeof result === 'number') native.dropTensor(result);
  outcome.rssMiB = process.resourceUsage().maxRSS / 1024;
  return outcome;
}

// ---------------------------------------------------------------------------------------------------------------
// The parent: batches of calls in child processes

export interface FuzzOpsOptions {
  seed?: number;
  /** stop after this many calls ... */
  calls?: number;
  /** ... or this many seconds, whichever comes first */
  seconds?: number;
  /** calls per child process */
  batch?: number;
  slowMs?: number;
  /** a child that reports nothing for this long has hung (or is far too slow) */
  hangMs?: number;
  maxRssMiB?: number;
  /** the child's virtual-memory limit (ulimit -v); 0 for none (AddressSanitizer reserves terabytes of it) */
  memoryLimitMiB?: number;
}

export interface FuzzOpsReport {
  calls: number;
  returned: number;
  refused: number;
  /** distinct kinds of refusal (messages with numbers, names and shapes taken out) */
  errorKinds: number;
  /** distinct ops called */
  ops: number;
  failures: string[];
  slowestMs: number;
  maxRssMiB: number;
  seconds: number;
}

interface WorkerRun {
  outcomes: CallOutcome[];
  /** all the calls reported and the child exited with 0 */
  complete: boolean;
  hung: boolean;
  /** how it ended, when it did not complete */
  end: string;
  stderr: string;
}

/** The compiled fuzzer (the child runs JavaScript: npm run build:ts). */
function workerScript(): string {
  const script = join(packageRoot(), 'dist', 'tools', 'fuzz-ops.js');
  if (!existsSync(script)) throw new Error(`fuzz-ops: ${script} is missing; run npm run build:ts first`);
  return script;
}

/** Runs calls from .. from + count - 1 in a child process under the memory limit. */
function runWorker(seed: number, from: number, count: number, o: Required<FuzzOpsOptions>): Promise<WorkerRun> {
  return new Promise((resolve) => {
    const limit = o.memoryLimitMiB > 0 ? `ulimit -v ${o.memoryLimitMiB * 1024} && ` : '';
    const child = spawn('/bin/sh', ['-c', `${limit}exec "$0" "$@"`, process.execPath, workerScript(), '--worker', String(seed), String(from), String(count), String(o.slowMs)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const outcomes: CallOutcome[] = [];
    let pending = '', stderr = '', hung = false;
    let timer = setTimeout(onHang, o.hangMs);
    function onHang() {
      hung = true;
      child.kill('SIGKILL');
    }
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      // (a line that is not an outcome was printed by a native library: kept with stderr)
      for (const line of lines) if (line.startsWith('{"index"')) outcomes.push(JSON.parse(line) as CallOutcome);
      else stderr = (stderr + line + '\n').slice(-2000);
      clearTimeout(timer);
      timer = setTimeout(onHang, o.hangMs);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2000)));
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const complete = code === 0 && outcomes.length === count;
      resolve({ outcomes, complete, hung, end: hung ? `gave no answer in ${o.hangMs} ms` : signal ? `ended the process (${signal})` : `ended the process (exit code ${code})`, stderr: stderr.trim() });
    });
  });
}

/** Runs the fuzzer under the oracle above. */
export async function fuzzOps(opts: FuzzOpsOptions = {}): Promise<FuzzOpsReport> {
  const o: Required<FuzzOpsOptions> = { seed: 1, calls: Infinity, seconds: Infinity, batch: 2000, slowMs: 3000, hangMs: 30000, maxRssMiB: 2048, memoryLimitMiB: 3072, ...opts };
  const started = performance.now();
  const kinds = new Set<string>(), opsCalled = new Set<string>(), failures: string[] = [];
  const r = { calls: 0, returned: 0, refused: 0, slowestMs: 0, maxRssMiB: 0 };
  const tally = (c: CallOutcome) => {
    r.calls++;
    opsCalled.add(c.op);
    if (c.ok) r.returned++;
    else {
      r.refused++;
      kinds.add(c.kind!);
    }
    if (c.failure) failures.push(c.failure);
    r.slowestMs = Math.max(r.slowestMs, c.ms);
    if (c.rssMiB > o.maxRssMiB && r.maxRssMiB <= o.maxRssMiB) {
      const { spec, plans } = planCall(o.seed, c.index);
      failures.push(`call ${c.index}: ${describeCall(spec, plans)} made the peak resident set reach ${c.rssMiB.toFixed(0)} MiB (limit ${o.maxRssMiB})`);
    }
    r.maxRssMiB = Math.max(r.maxRssMiB, c.rssMiB);
  };
  let next = 0;
  while (next < o.calls && (performance.now() - started) / 1000 < o.seconds && failures.length < 20) {
    const count = Math.min(o.batch, o.calls - next);
    const run = await runWorker(o.seed, next, count, o);
    run.outcomes.forEach(tally);
    if (run.complete) {
      next += count;
      continue;
    }
    // the call that was running when the child died or stopped answering; alone in a fresh child, does it again?
    const at = next + run.outcomes.length;
    const { spec, plans } = planCall(o.seed, at);
    opsCalled.add(spec.lib ? `ops.${spec.name}` : spec.name);
    r.calls++;
    let alone = '';
    if (!run.hung && at > next) alone = (await runWorker(o.seed, at, 1, o)).complete ? ` after calls ${next} .. ${at - 1} (not on its own)` : ' (on its own too)';
    failures.push(`call ${at}: ${describeCall(spec, plans)} ${run.end}${alone}${run.stderr ? `; stderr: ${run.stderr.slice(-600)}` : ''}`);
    next = at + 1;
  }
  return { ...r, errorKinds: kinds.size, ops: opsCalled.size, failures, seconds: (performance.now() - started) / 1000 };
}

// ---------------------------------------------------------------------------------------------------------------
// The child (--worker SEED FROM COUNT SLOWMS), and by hand:
//   node dist/tools/fuzz-ops.js [--seconds 300] [--seed N] [--calls N]     node dist/tools/fuzz-ops.js --seed N --call I

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const arg = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
  if (args[0] === '--worker') {
    const [seed, from, count, slowMs] = args.slice(1).map(Number) as [number, number, number, number];
    for (let i = from; i < from + count; i++) writeSync(1, JSON.stringify(await runCall(seed, i, slowMs)) + '\n');
    process.exit(0);
  }
  const seed = Number(arg('seed') ?? 1);
  if (arg('call') !== undefined) {
    const index = Number(arg('call'));
    const { spec, plans } = planCall(seed, index);
    console.log(describeCall(spec, plans));
    console.log(await runCall(seed, index, 3000));
    process.exit(0);
  }
  const r = await fuzzOps({ seed, seconds: Number(arg('seconds') ?? 60), calls: Number(arg('calls') ?? Infinity), memoryLimitMiB: Number(arg('memory-limit-mib') ?? 3072) });
  console.log(`${r.calls} calls of ${r.ops} ops in ${r.seconds.toFixed(1)} s: ${r.returned} returned, ${r.refused} refused (${r.errorKinds} kinds of error), slowest ${r.slowestMs.toFixed(1)} ms, peak RSS ${r.maxRssMiB.toFixed(0)} MiB`);
  for (const f of r.failures) console.log('  FAIL ' + f);
  process.exit(r.failures.length ? 1 : 0);
}
