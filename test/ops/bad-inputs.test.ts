// Bad inputs for every native entry point (lib/native.ts, bindings/): for each tensor argument a number, null,
// undefined, a plain object, an array, a disposed tensor, an empty native handle, the other dtype and a zero-size
// tensor; then each op's own shape rules, bad scalars, out-of-range indices and labels, and NaN values (which must
// propagate, not throw). Every failure must be a JavaScript Error whose message starts with the op's name; nothing
// may crash the process (a crash would end this file's run).
import { afterEach, describe, expect, it } from 'vitest';
import { native, type NativeAddon, type NativeTensor } from '../../lib/native.js';
import * as ops from '../../lib/ops/index.js';
import { gatherRows, linear, mean, scale } from '../../lib/ops/index.js';
import { Tensor, tidy } from '../../lib/tensor.js';
import { intTensor, tensor } from '../helpers/tensors.js';

// every native tensor a test makes, disposed after it
let made: NativeTensor[] = [];
afterEach(() => {
  for (const t of made) t.dispose();
  made = [];
});

/** A float32 native tensor filled with `v`. */
function F(shape: number[], v = 0.5): NativeTensor {
  const t = native.full(shape, v);
  made.push(t);
  return t;
}

/** An int32 native tensor with the given values (zeros by default). */
function I(shape: number[], values?: number[]): NativeTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const t = native.fromArray(Int32Array.from(values ?? new Array<number>(n).fill(0)), shape);
  made.push(t);
  return t;
}

/** A bfloat16 copy of t. */
function bf16(t: NativeTensor): NativeTensor {
  const h = native.to(t, 'cpu', 'bfloat16');
  made.push(h);
  return h;
}

/** A tensor like t but of the other dtype, or with a zero first dimension, or disposed. */
function otherDtype(t: NativeTensor): NativeTensor {
  return t.dtype === 'int32' ? F(t.shape) : I(t.shape);
}
function zeroSize(t: NativeTensor): NativeTensor {
  const shape = [0, ...t.shape.slice(1)];
  const h = native.fromArray(t.dtype === 'int32' ? new Int32Array(0) : new Float32Array(0), shape);
  made.push(h);
  return h;
}
function disposedLike(t: NativeTensor): NativeTensor {
  const h = t.dtype === 'int32' ? I(t.shape) : F(t.shape);
  h.dispose();
  return h;
}

type Entry = keyof NativeAddon;

/** Calls native[name](...args) and returns the error it throws (failing if it does not throw). */
function errorOf(name: Entry, args: unknown[]): Error {
  const fn = native[name] as unknown as (...a: unknown[]) => unknown;
  try {
    fn(...args);
  } catch (e) {
    expect(e, `${name} threw a non-Error`).toBeInstanceOf(Error);
    return e as Error;
  }
  throw new Error(`${name}(${args.map(describeArg).join(', ')}) did not throw`);
}

function describeArg(a: unknown): string {
  if (a && typeof a === 'object' && 'shape' in a) return `tensor [${(a as NativeTensor).shape}]`;
  return JSON.stringify(a) ?? String(a);
}

/** Expects native[name](...args) to throw an Error whose message starts with the op name and matches `re`. */
function expectOpError(name: Entry, args: unknown[], re: RegExp): void {
  const e = errorOf(name, args);
  expect(e.message.startsWith(`${name}: `), `message "${e.message}" should start with "${name}: "`).toBe(true);
  expect(e.message).toMatch(re);
}

function hasNaN(x: NativeTensor): boolean {
  return Array.from(x.read()).some(Number.isNaN);
}

interface Spec {
  name: Entry;
  /** valid arguments, made fresh on each call */
  args: () => unknown[];
  /** tensor arguments: position (and index in a list argument), name in messages, and whether null is allowed */
  tensors: { at: number; item?: number; arg: string; optional?: boolean }[];
  /** wrong shapes and scalars: a description, the arguments, and what the message must say */
  bad: [string, () => unknown[], RegExp][];
  /** NaN in the tensor at `input` must reach the tensor `output` picks from (result, args) */
  nan?: { input: number | [number, number]; output: (result: unknown, args: unknown[]) => NativeTensor };
}

// argument `at`, or entry `item` of the list argument `at`
type Slot = number | [number, number];
const slotOf = (at: number, item?: number): Slot => (item === undefined ? at : [at, item]);
const getArg = (a: unknown[], s: Slot): unknown => (typeof s === 'number' ? a[s] : (a[s[0]] as unknown[])[s[1]]);
function setArg(a: unknown[], s: Slot, v: unknown): void {
  if (typeof s === 'number') a[s] = v;
  else (a[s[0]] as unknown[])[s[1]] = v;
}

const out = (r: unknown): NativeTensor => r as NativeTensor;
const first = (r: unknown): NativeTensor => (r as NativeTensor[])[0]!;
const argAt = (i: number) => (_r: unknown, a: unknown[]): NativeTensor => a[i] as NativeTensor;

const specs: Spec[] = [
  {
    name: 'linear',
    args: () => [F([2, 3, 4]), F([5, 4]), F([5])],
    tensors: [{ at: 0, arg: 'x' }, { at: 1, arg: 'weight' }, { at: 2, arg: 'bias', optional: true }],
    bad: [
      ['in_features differ', () => [F([2, 3, 5]), F([5, 4]), F([5])], /x \[2, 3, 5\] and weight \[5, 4\] disagree on in_features/],
      ['1-D weight', () => [F([2, 4]), F([4]), null], /weight must have 2 dimensions, got \[4\]/],
      ['bias of the wrong size', () => [F([2, 4]), F([5, 4]), F([4])], /bias \[4\] must be \[out_features\]/],
      ['2-D bias', () => [F([2, 4]), F([5, 4]), F([1, 5])], /bias must have 1 dimensions/],
      ['a float32 weightBf16', () => [F([2, 4]), F([5, 4]), null, F([5, 4])], /weightBf16 must be bfloat16, got float32/],
      ['a weightBf16 of another shape', () => [F([2, 4]), F([5, 4]), null, bf16(F([4, 5]))], /weightBf16 \[4, 5\] must have the shape of weight \[5, 4\]/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'linearBackward',
    args: () => [F([2, 3, 4]), F([5, 4]), F([2, 3, 5]), true, true],
    tensors: [{ at: 0, arg: 'x' }, { at: 1, arg: 'weight' }, { at: 2, arg: 'dy' }],
    bad: [
      ['dy of the wrong shape', () => [F([2, 3, 4]), F([5, 4]), F([2, 3, 4]), true, true], /dy \[2, 3, 4\] does not match the output/],
      ['in_features differ', () => [F([2, 3]), F([5, 4]), F([2, 5]), true, true], /disagree on in_features/],
      ['needDx not a boolean', () => [F([2, 4]), F([5, 4]), F([2, 5]), 1, true], /needDx must be a boolean/],
      ['hasBias missing', () => [F([2, 4]), F([5, 4]), F([2, 5]), true], /hasBias must be a boolean/],
      ['a weightBf16 of another shape', () => [F([2, 4]), F([5, 4]), F([2, 5]), true, true, bf16(F([5, 2, 2]))], /weightBf16 must have 2 dimensions/],
    ],
    nan: { input: 2, output: (r) => (r as NativeTensor[])[1]! },
  },
  {
    name: 'layerNorm',
    args: () => [F([2, 3, 4]), F([4]), F([4]), 1e-6],
    tensors: [{ at: 0, arg: 'x' }, { at: 1, arg: 'weight' }, { at: 2, arg: 'bias' }],
    bad: [
      ['weight of the wrong size', () => [F([2, 4]), F([5]), F([4]), 1e-6], /weight \[5\] and bias \[4\] must be \[4\]/],
      ['bias of the wrong size', () => [F([2, 4]), F([4]), F([3]), 1e-6], /must be \[4\] for x \[2, 4\]/],
      ['negative eps', () => [F([2, 4]), F([4]), F([4]), -1], /eps must be non-negative/],
      ['NaN eps', () => [F([2, 4]), F([4]), F([4]), NaN], /eps must be non-negative/],
      ['infinite eps', () => [F([2, 4]), F([4]), F([4]), Infinity], /eps must be non-negative and finite in float32, got Infinity/],
      // finite as a double, infinite in float32, where the kernel runs
      ['eps past float32', () => [F([2, 4]), F([4]), F([4]), 1e39], /eps must be non-negative and finite in float32, got 1e\+39/],
      ['eps not a number', () => [F([2, 4]), F([4]), F([4]), '1e-6'], /eps must be a number/],
    ],
    nan: { input: 0, output: first },
  },
  {
    name: 'layerNormBackward',
    args: () => [F([2, 3, 4]), F([2, 3, 4]), F([4]), F([2, 3]), F([2, 3])],
    tensors: [{ at: 0, arg: 'dy' }, { at: 1, arg: 'x' }, { at: 2, arg: 'weight' }, { at: 3, arg: 'mean' }, { at: 4, arg: 'rstd' }],
    bad: [
      ['dy and x differ', () => [F([2, 4]), F([2, 5]), F([5]), F([2]), F([2])], /dy \[2, 4\] and x \[2, 5\] must have the same shape/],
      ['weight of the wrong size', () => [F([2, 4]), F([2, 4]), F([3]), F([2]), F([2])], /weight \[3\] must be \[4\]/],
      ['statistics of the wrong size', () => [F([2, 4]), F([2, 4]), F([4]), F([3]), F([2])], /mean and rstd must hold one value per row/],
      ['dres of another shape', () => [F([2, 4]), F([2, 4]), F([4]), F([2]), F([2]), F([2, 5])], /dres \[2, 5\] and x \[2, 4\] must have the same shape/],
      ['dres not a tensor', () => [F([2, 4]), F([2, 4]), F([4]), F([2]), F([2]), 3], /dres must be a Tensor/],
    ],
    nan: { input: 0, output: first },
  },
  {
    name: 'addLayerNorm',
    args: () => [F([2, 3, 4]), F([2, 3, 4]), F([4]), F([4]), 1e-6],
    tensors: [{ at: 0, arg: 'x' }, { at: 1, arg: 'r' }, { at: 2, arg: 'weight' }, { at: 3, arg: 'bias' }],
    bad: [
      ['x and r differ', () => [F([2, 4]), F([2, 5]), F([4]), F([4]), 1e-6], /x \[2, 4\] and r \[2, 5\] must have the same shape/],
      ['weight of the wrong size', () => [F([2, 4]), F([2, 4]), F([5]), F([4]), 1e-6], /weight \[5\] and bias \[4\] must be \[4\]/],
      ['negative eps', () => [F([2, 4]), F([2, 4]), F([4]), F([4]), -1], /eps must be non-negative/],
      ['infinite eps', () => [F([2, 4]), F([2, 4]), F([4]), F([4]), Infinity], /eps must be non-negative and finite in float32, got Infinity/],
    ],
    nan: { input: 1, output: (r) => (r as NativeTensor[])[1]! },
  },
  {
    name: 'gelu',
    args: () => [F([3, 2])],
    tensors: [{ at: 0, arg: 'x' }],
    bad: [],
    nan: { input: 0, output: out },
  },
  {
    name: 'geluBackward',
    args: () => [F([3]), F([3])],
    tensors: [{ at: 0, arg: 'x' }, { at: 1, arg: 'dy' }],
    bad: [['dy of another shape', () => [F([3]), F([4])], /x \[3\] and dy \[4\] must have the same shape/]],
    nan: { input: 1, output: out },
  },
  {
    name: 'biasGelu',
    args: () => [F([3, 2]), F([2])],
    tensors: [{ at: 0, arg: 'x' }, { at: 1, arg: 'bias' }],
    bad: [
      ['bias of the wrong size', () => [F([3, 2]), F([3])], /bias \[3\] must be \[2\] for x \[3, 2\]/],
      ['2-D bias', () => [F([3, 2]), F([1, 2])], /bias must have 1 dimensions/],
    ],
    nan: { input: 1, output: out },
  },
  {
    name: 'biasGeluBackward',
    args: () => [F([3, 2]), F([2]), F([3, 2]), true],
    tensors: [{ at: 0, arg: 'x' }, { at: 1, arg: 'bias' }, { at: 2, arg: 'dy' }],
    bad: [
      ['dy of another shape', () => [F([3, 2]), F([2]), F([2, 2]), true], /x \[3, 2\] and dy \[2, 2\] must have the same shape/],
      ['bias of the wrong size', () => [F([3, 2]), F([4]), F([3, 2]), true], /bias \[4\] must be \[2\]/],
      ['needDb not a boolean', () => [F([3, 2]), F([2]), F([3, 2]), 1], /needDb must be a boolean/],
    ],
    nan: { input: 2, output: (r) => (r as NativeTensor[])[1]! },
  },
  {
    name: 'attention',
    args: () => [F([2, 3, 12]), 2],
    tensors: [{ at: 0, arg: 'qkv' }],
    bad: [
      ['last dim not 3 D', () => [F([2, 3, 10]), 2], /the last dimension must be 3 \* dim/],
      ['dim not divisible by heads', () => [F([2, 3, 12]), 3], /dim 4 is not divisible by num_heads 3/],
      ['more heads than dims', () => [F([2, 3, 6]), 4], /not divisible by num_heads 4/],
      ['zero heads', () => [F([2, 3, 12]), 0], /numHeads must be an integer >= 1/],
      ['fractional heads', () => [F([2, 3, 12]), 1.5], /numHeads must be an integer >= 1/],
      ['NaN heads', () => [F([2, 3, 12]), NaN], /numHeads must be an integer >= 1/],
      ['heads missing', () => [F([2, 3, 12])], /numHeads must be a number/],
      ['2-D qkv', () => [F([3, 12]), 2], /qkv must have 3 dimensions, got \[3, 12\]/],
    ],
    nan: { input: 0, output: first },
  },
  {
    name: 'attentionBackward',
    args: () => [F([2, 3, 12]), F([2, 3, 4]), F([2, 3, 4]), F([2, 2, 3]), 2],
    tensors: [{ at: 0, arg: 'qkv' }, { at: 1, arg: 'out' }, { at: 2, arg: 'dout' }, { at: 3, arg: 'lse' }],
    bad: [
      ['out of the wrong shape', () => [F([2, 3, 12]), F([2, 3, 5]), F([2, 3, 5]), F([2, 2, 3]), 2], /out \[2, 3, 5\] must be \[B, N, D\]/],
      ['dout of another shape', () => [F([2, 3, 12]), F([2, 3, 4]), F([1, 3, 4]), F([2, 2, 3]), 2], /dout \[1, 3, 4\] and out \[2, 3, 4\] must have the same shape/],
      ['lse of the wrong shape', () => [F([2, 3, 12]), F([2, 3, 4]), F([2, 3, 4]), F([2, 3, 3]), 2], /lse \[2, 3, 3\] must be \[B, numHeads, N\]/],
      ['bad heads', () => [F([2, 3, 12]), F([2, 3, 4]), F([2, 3, 4]), F([2, 2, 3]), 3], /not divisible by num_heads 3/],
    ],
    nan: { input: 2, output: out },
  },
  {
    name: 'maskedMse',
    args: () => [F([2, 3, 4]), F([2, 3, 4]), F([2, 3], 1), true],
    tensors: [{ at: 0, arg: 'pred' }, { at: 1, arg: 'target' }, { at: 2, arg: 'mask' }],
    bad: [
      ['target of another shape', () => [F([2, 3, 4]), F([2, 3, 5]), F([2, 3]), false], /pred \[2, 3, 4\] and target \[2, 3, 5\] must have the same shape/],
      ['mask of the wrong shape', () => [F([2, 3, 4]), F([2, 3, 4]), F([2, 4]), false], /mask \[2, 4\] must be \[B, L\]/],
      ['normPix with one value per patch', () => [F([2, 3, 1]), F([2, 3, 1]), F([2, 3]), true], /normPixLoss needs at least 2 values per patch/],
      ['normPix not a boolean', () => [F([2, 3, 4]), F([2, 3, 4]), F([2, 3]), 'yes'], /normPix must be a boolean/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'maskedMseBackward',
    args: () => [F([2, 3, 4]), F([2, 3, 4]), F([2, 3], 1), false, F([1])],
    tensors: [{ at: 0, arg: 'pred' }, { at: 1, arg: 'target' }, { at: 2, arg: 'mask' }, { at: 4, arg: 'dloss' }],
    bad: [
      ['dloss with two values', () => [F([2, 3, 4]), F([2, 3, 4]), F([2, 3]), false, F([2])], /dloss must hold one value/],
      ['mask of the wrong shape', () => [F([2, 3, 4]), F([2, 3, 4]), F([3, 2]), false, F([1])], /mask \[3, 2\] must be \[B, L\]/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'crossEntropy',
    args: () => [F([2, 5]), I([2], [0, 4]), 0.1],
    tensors: [{ at: 0, arg: 'logits' }, { at: 1, arg: 'target' }],
    bad: [
      ['labels of the wrong length', () => [F([2, 5]), I([3]), 0], /labels \[3\] must be \[B\] for logits \[2, 5\]/],
      ['soft targets of the wrong shape', () => [F([2, 5]), F([2, 4]), 0], /soft target \[2, 4\] and logits \[2, 5\] must have the same shape/],
      ['2-D labels', () => [F([2, 5]), I([2, 5]), 0], /target must have 1 dimensions/],
      ['smoothing 1', () => [F([2, 5]), I([2]), 1], /smoothing must be in \[0, 1\)/],
      ['negative smoothing', () => [F([2, 5]), I([2]), -0.1], /smoothing must be in \[0, 1\)/],
      ['NaN smoothing', () => [F([2, 5]), I([2]), NaN], /smoothing must be in \[0, 1\)/],
      ['label = C', () => [F([2, 5]), I([2], [0, 5]), 0], /label 5 of row 1 is outside \[0, 5\)/],
      ['negative label', () => [F([2, 5]), I([2], [-1, 0]), 0.1], /label -1 of row 0 is outside \[0, 5\)/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'crossEntropyBackward',
    args: () => [F([2, 5]), I([2], [0, 4]), 0.1, F([1])],
    tensors: [{ at: 0, arg: 'logits' }, { at: 1, arg: 'target' }, { at: 3, arg: 'dloss' }],
    bad: [
      ['label = C', () => [F([2, 5]), I([2], [5, 0]), 0, F([1])], /label 5 of row 0 is outside \[0, 5\)/],
      ['huge label', () => [F([2, 5]), I([2], [0, 2147483647]), 0, F([1])], /label 2147483647 of row 1 is outside/],
      ['dloss with two values', () => [F([2, 5]), I([2]), 0, F([2])], /dloss must hold one value/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'batchNorm',
    args: () => [F([4, 3]), F([3], 0), F([3], 1), true, 0.1, 1e-5],
    tensors: [{ at: 0, arg: 'x' }, { at: 1, arg: 'runningMean' }, { at: 2, arg: 'runningVar' }],
    bad: [
      ['running statistics of the wrong size', () => [F([4, 3]), F([4]), F([3]), true, 0.1, 1e-5], /running statistics must be \[3\]/],
      ['one sample in training', () => [F([1, 3]), F([3]), F([3]), true, 0.1, 1e-5], /training needs more than one value per feature/],
      ['3-D x', () => [F([4, 3, 2]), F([3]), F([3]), false, 0.1, 1e-5], /x must have 2 dimensions/],
      ['training not a boolean', () => [F([4, 3]), F([3]), F([3]), 1, 0.1, 1e-5], /training must be a boolean/],
      ['momentum not a number', () => [F([4, 3]), F([3]), F([3]), true, null, 1e-5], /momentum must be a number/],
      ['momentum NaN', () => [F([4, 3]), F([3]), F([3]), true, NaN, 1e-5], /momentum must be in \[0, 1\], got NaN/],
      ['momentum above 1', () => [F([4, 3]), F([3]), F([3]), true, 1.5, 1e-5], /momentum must be in \[0, 1\]/],
      ['negative eps', () => [F([4, 3]), F([3]), F([3]), false, 0.1, -1], /eps must be non-negative and finite/],
      ['infinite eps', () => [F([4, 3]), F([3]), F([3]), false, 0.1, Infinity], /eps must be non-negative and finite/],
    ],
    nan: { input: 0, output: first },
  },
  {
    name: 'batchNormBackward',
    args: () => [F([4, 3]), F([4, 3]), F([3]), true],
    tensors: [{ at: 0, arg: 'dy' }, { at: 1, arg: 'y' }, { at: 2, arg: 'rstd' }],
    bad: [
      ['dy and y differ', () => [F([4, 3]), F([4, 2]), F([2]), true], /dy \[4, 3\] and y \[4, 2\] must have the same shape/],
      ['rstd of the wrong size', () => [F([4, 3]), F([4, 3]), F([4]), false], /rstd \[4\] must be \[F\]/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'gatherRows',
    args: () => [F([2, 5, 3]), I([2, 2], [0, 4, 1, 2])],
    tensors: [{ at: 0, arg: 'x' }, { at: 1, arg: 'index' }],
    bad: [
      ['batch sizes differ', () => [F([2, 5, 3]), I([3, 2])], /index \[3, 2\] and x \[2, 5, 3\] disagree on the batch size/],
      ['index = N', () => [F([2, 5, 3]), I([2, 2], [0, 5, 1, 2])], /index value 5 at position 1 is outside \[0, 5\)/],
      ['negative index', () => [F([2, 5, 3]), I([2, 2], [0, 1, 2, -1])], /index value -1 at position 3 is outside \[0, 5\)/],
      ['1-D index', () => [F([2, 5, 3]), I([4])], /index must have 2 dimensions/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'scatterAddRows',
    args: () => [F([2, 2, 3]), I([2, 2], [0, 4, 1, 1]), 5],
    tensors: [{ at: 0, arg: 'dy' }, { at: 1, arg: 'index' }],
    bad: [
      ['index of the wrong shape', () => [F([2, 2, 3]), I([2, 3]), 5], /index \[2, 3\] must be \[B, K\] for dy \[2, 2, 3\]/],
      ['index = n', () => [F([2, 2, 3]), I([2, 2], [0, 1, 5, 0]), 5], /index value 5 at position 2 is outside \[0, 5\)/],
      ['n = 0', () => [F([2, 2, 3]), I([2, 2]), 0], /n must be an integer >= 1/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'catTokens',
    args: () => [F([1, 1, 4]), F([2, 3, 4])],
    tensors: [{ at: 0, arg: 'a' }, { at: 1, arg: 'b' }],
    bad: [
      ['widths differ', () => [F([2, 1, 4]), F([2, 3, 5])], /a \[2, 1, 4\] and b \[2, 3, 5\] disagree on the width/],
      ['batches do not broadcast', () => [F([3, 1, 4]), F([2, 3, 4])], /have batch sizes that do not broadcast/],
      ['2-D b', () => [F([2, 1, 4]), F([3, 4])], /b must have 3 dimensions/],
    ],
    nan: { input: 1, output: out },
  },
  {
    name: 'sliceTokens',
    args: () => [F([2, 5, 3]), 1, 3],
    tensors: [{ at: 0, arg: 'x' }],
    bad: [
      ['past the end', () => [F([2, 5, 3]), 3, 3], /tokens 3 \.\. 6 are outside x \[2, 5, 3\]/],
      ['zero length', () => [F([2, 5, 3]), 0, 0], /length must be an integer >= 1/],
      ['negative start', () => [F([2, 5, 3]), -1, 2], /start must be an integer >= 0/],
      ['fractional start', () => [F([2, 5, 3]), 0.5, 2], /start must be an integer >= 0/],
    ],
    nan: { input: 0, output: out },
  },
  ...(['add', 'mul'] as const).map(
    (name): Spec => ({
      name,
      args: () => [F([2, 3, 4]), F([1, 3, 4])],
      tensors: [{ at: 0, arg: 'a' }, { at: 1, arg: 'b' }],
      bad: [
        ['b not a suffix', () => [F([2, 3, 4]), F([3])], /b \[3\] does not broadcast over a \[2, 3, 4\]/],
        ['b with a dividing size but another shape', () => [F([2, 3, 4]), F([2, 4])], /b \[2, 4\] does not broadcast/],
        ['b larger than a', () => [F([3, 4]), F([2, 3, 4])], /b \[2, 3, 4\] does not broadcast over a \[3, 4\]/],
      ],
      nan: { input: 1, output: out },
    }),
  ),
  {
    name: 'sumTo',
    args: () => [F([2, 3, 4]), [3, 4]],
    tensors: [{ at: 0, arg: 'x' }],
    bad: [
      ['a size that does not divide', () => [F([2, 3, 4]), [5]], /cannot sum x \[2, 3, 4\] to \[5\]/],
      ['a dividing size that is not a suffix', () => [F([2, 3]), [2]], /cannot sum x \[2, 3\] to \[2\]: \[2\] without its leading ones must be a suffix/],
      ['a middle dimension kept', () => [F([2, 3, 4]), [2, 1, 4]], /cannot sum x \[2, 3, 4\] to \[2, 1, 4\]/],
      ['an empty target', () => [F([2, 3, 4]), [0]], /cannot sum x/],
      ['a shape that is not an array', () => [F([2, 3, 4]), 12], /shape must be an array of sizes/],
      ['negative sizes', () => [F([2, 3, 4]), [-12]], /shape entries must be non-negative integers/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'axpby',
    args: () => [1, F([3]), 0.5, F([3])],
    tensors: [{ at: 1, arg: 'x' }, { at: 3, arg: 'y' }],
    bad: [
      ['sizes differ', () => [1, F([3]), 1, F([4])], /x \[3\] and y \[4\] differ in size/],
      ['alpha not a number', () => [undefined, F([3]), 1, F([3])], /alpha must be a number/],
    ],
    nan: { input: 1, output: argAt(3) },
  },
  {
    name: 'sum',
    args: () => [F([3, 2]), 1],
    tensors: [{ at: 0, arg: 'x' }],
    bad: [['scale not a number', () => [F([3]), '1'], /scale must be a number/]],
    nan: { input: 0, output: out },
  },
  {
    name: 'meanTokens',
    args: () => [F([2, 3, 4])],
    tensors: [{ at: 0, arg: 'x' }],
    bad: [['2-D x', () => [F([3, 4])], /x must have 3 dimensions/]],
    nan: { input: 0, output: out },
  },
  {
    name: 'meanTokensBackward',
    args: () => [F([2, 4]), 3],
    tensors: [{ at: 0, arg: 'dy' }],
    bad: [
      ['n = 0', () => [F([2, 4]), 0], /n must be an integer >= 1/],
      ['3-D dy', () => [F([2, 1, 4]), 3], /dy must have 2 dimensions/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'fill',
    args: () => [F([3]), 2],
    tensors: [{ at: 0, arg: 'y' }],
    bad: [['value not a number', () => [F([3]), 'a'], /value must be a number/]],
  },
  {
    name: 'patchify',
    args: () => [F([1, 3, 4, 4]), 2, true],
    tensors: [{ at: 0, arg: 'imgs' }],
    bad: [
      ['size not divisible', () => [F([1, 3, 4, 6]), 4, true], /image size 4x6 of imgs \[1, 3, 4, 6\] is not divisible by the patch size 4/],
      ['patch larger than the image', () => [F([1, 3, 4, 4]), 8, false], /not divisible by the patch size 8/],
      ['patch size 0', () => [F([1, 3, 4, 4]), 0, true], /patchSize must be an integer >= 1/],
      ['3-D images', () => [F([3, 4, 4]), 2, true], /imgs must have 4 dimensions/],
      ['hwc not a boolean', () => [F([1, 3, 4, 4]), 2, 'hwc'], /hwc must be a boolean/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'unpatchify',
    args: () => [F([1, 4, 12]), 2, true, [3, 4, 4]],
    tensors: [{ at: 0, arg: 'x' }],
    bad: [
      ['image shape of two sizes', () => [F([1, 4, 12]), 2, true, [3, 4]], /imageShape must be \[C, H, W\]/],
      ['image shape of another size', () => [F([1, 4, 12]), 2, true, [3, 4, 6]], /x \[1, 4, 12\] does not hold patches of images \[3, 4, 6\]/],
      ['image not divisible', () => [F([1, 4, 12]), 2, true, [3, 5, 4]], /image shape \[3, 5, 4\] is not divisible into patches of 2/],
      ['no channels', () => [F([1, 4, 12]), 2, true, [0, 4, 4]], /is not divisible into patches/],
      ['image shape not an array', () => [F([1, 4, 12]), 2, true, 'chw'], /imageShape must be an array of sizes/],
    ],
    nan: { input: 0, output: out },
  },
  {
    name: 'adamwStep',
    args: () => [[F([3]), F([2, 2])], [F([3]), F([2, 2])], [F([3], 0), F([2, 2], 0)], [F([3], 0), F([2, 2], 0)], [1e-3, 2e-3], [0.01, 0], 0.9, 0.999, 1e-8, 1],
    tensors: [
      { at: 0, item: 1, arg: 'params\\[1\\]' },
      { at: 1, item: 0, arg: 'grads\\[0\\]' },
      { at: 2, item: 1, arg: 'm\\[1\\]' },
      { at: 3, item: 0, arg: 'v\\[0\\]' },
    ],
    bad: [
      ['params not an array', () => [F([3]), [F([3])], [F([3])], [F([3])], [1e-3], [0], 0.9, 0.999, 1e-8, 1], /params must be an array of Tensors/],
      ['no parameters', () => [[], [], [], [], [], [], 0.9, 0.999, 1e-8, 1], /params is empty/],
      ['lists of different lengths', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3, 1e-3], [0], 0.9, 0.999, 1e-8, 1], /one entry per parameter, got 1, 1, 1, 1, 2 and 1/],
      ['grad of another shape', () => [[F([3])], [F([4])], [F([3])], [F([3])], [1e-3], [0], 0.9, 0.999, 1e-8, 1], /grads\[0\] \[4\] and params\[0\] \[3\] must have the same shape/],
      ['m of another shape', () => [[F([3])], [F([3])], [F([1, 3])], [F([3])], [1e-3], [0], 0.9, 0.999, 1e-8, 1], /m\[0\] \[1, 3\] and params\[0\] \[3\]/],
      ['eps NaN', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3], [0], 0.9, 0.999, NaN, 1], /eps must be non-negative and finite in float32, got NaN/],
      ['the same parameter twice', () => { const p = F([3]); return [[p, p], [F([3]), F([3])], [F([3]), F([3])], [F([3]), F([3])], [1e-3, 1e-3], [0, 0], 0.9, 0.999, 1e-8, 1]; }, /a tensor appears twice among params, m and v/],
      ['beta1 = 1', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3], [0], 1, 0.999, 1e-8, 1], /betas must be in \[0, 1\)/],
      // below 1 as doubles, 1 in float32, where the step runs: every parameter would be NaN
      ['beta1 that rounds to 1 in float32', () => [[F([3])], [F([3])], [F([3], 0)], [F([3], 0)], [1e-3], [0], 1 - 2 ** -30, 0.999, 1e-8, 6], /betas must be in \[0, 1\) in float32 \(at most 0.99999994\), got 0.9999999990686774 and 0.999/],
      ['beta2 that rounds to 1 in float32', () => [[F([3])], [F([3])], [F([3], 0)], [F([3], 0)], [1e-3], [0], 0.9, 0.99999999999, 1e-8, 1], /betas must be in \[0, 1\) in float32/],
      ['step 0', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3], [0], 0.9, 0.999, 1e-8, 0], /step must be an integer >= 1/],
      ['lr entry not a number', () => [[F([3])], [F([3])], [F([3])], [F([3])], ['1e-3'], [0], 0.9, 0.999, 1e-8, 1], /lr\[0\] must be a number/],
      ['negative lr', () => [[F([3])], [F([3])], [F([3])], [F([3])], [-1], [0], 0.9, 0.999, 1e-8, 1], /lr\[0\] must be a non-negative number/],
      // finite as doubles, infinite in float32, where the step runs: the parameters would become NaN
      ['lr past float32', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e39], [0], 0.9, 0.999, 1e-8, 1], /lr\[0\] must be a non-negative number of float32's range, got 1e\+39/],
      ['weightDecay past float32', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3], [-1e39], 0.9, 0.999, 1e-8, 1], /weightDecay\[0\] must be finite in float32, got -1e\+39/],
      ['eps past float32', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3], [0], 0.9, 0.999, 1e39, 1], /eps must be non-negative and finite in float32/],
      ['infinite weight decay', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3], [Infinity], 0.9, 0.999, 1e-8, 1], /weightDecay\[0\] must be finite/],
      ['shadows not an array', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3], [0], 0.9, 0.999, 1e-8, 1, 5], /shadows must be an array of Tensors or nulls/],
      ['shadows of another length', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3], [0], 0.9, 0.999, 1e-8, 1, [null, null]], /shadows must have one entry per parameter, got 2 for 1/],
      ['a float32 shadow', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3], [0], 0.9, 0.999, 1e-8, 1, [F([3])]], /shadows\[0\] must be bfloat16, got float32/],
      ['a shadow of another shape', () => [[F([3])], [F([3])], [F([3])], [F([3])], [1e-3], [0], 0.9, 0.999, 1e-8, 1, [bf16(F([4]))]], /shadows\[0\] \[4\] and params\[0\] \[3\] must have the same shape/],
    ],
    nan: { input: [1, 0], output: (_r, a) => (a[0] as NativeTensor[])[0]! },
  },
];

describe('every op entry point', () => {
  for (const s of specs)
    describe(s.name, () => {
      it('accepts its valid arguments', () => {
        const fn = native[s.name] as unknown as (...a: unknown[]) => unknown;
        const r = fn(...s.args());
        for (const t of [r].flat()) if (t && typeof t === 'object' && 'dispose' in t) made.push(t as NativeTensor);
      });

      it('rejects non-tensors, disposed, empty, zero-size and wrongly typed tensors', () => {
        for (const { at, item, arg, optional } of s.tensors) {
          const slot = slotOf(at, item);
          const notTensors: unknown[] = [3, {}, [1, 2], 'x', { shape: [3], dtype: 'float32' }];
          if (!optional) notTensors.push(null, undefined);
          for (const v of notTensors) {
            const a = s.args();
            setArg(a, slot, v);
            expectOpError(s.name, a, new RegExp(`${arg} must be a Tensor`));
          }
          const a = s.args();
          const good = getArg(a, slot) as NativeTensor;
          setArg(a, slot, disposedLike(good));
          expectOpError(s.name, a, new RegExp(`${arg} has been disposed`));
          setArg(a, slot, new native.NativeTensor());
          expectOpError(s.name, a, new RegExp(`${arg} has been disposed`));
          setArg(a, slot, otherDtype(good));
          expectOpError(s.name, a, new RegExp(`${arg} must (be ${good.dtype}|have)`));
          setArg(a, slot, zeroSize(good));
          expectOpError(s.name, a, new RegExp(`${arg} \\[0.*\\] is empty; zero-size tensors are not supported`));
        }
      });

      for (const [what, args, re] of s.bad) it(`rejects ${what}`, () => expectOpError(s.name, args(), re));

      if (s.nan) {
        const { input, output } = s.nan;
        it('propagates NaN instead of throwing', () => {
          const a = s.args();
          const t = getArg(a, input) as NativeTensor;
          setArg(a, input, F(t.shape, NaN));
          const fn = native[s.name] as unknown as (...x: unknown[]) => unknown;
          const r = fn(...a);
          for (const x of [r].flat()) if (x && typeof x === 'object' && 'dispose' in x) made.push(x as NativeTensor);
          expect(hasNaN(output(r, a))).toBe(true);
        });
      }
    });

  it('fill writes NaN when asked to', () => {
    const y = F([4]);
    native.fill(y, NaN);
    expect(Array.from(y.read()).every(Number.isNaN)).toBe(true);
  });

  it('batchNorm with NaN x and training spreads NaN into the running statistics, eval leaves them', () => {
    const rm = F([3], 0);
    const rv = F([3], 1);
    made.push(...native.batchNorm(F([4, 3], NaN), rm, rv, false, 0.1, 1e-5));
    expect(hasNaN(rm) || hasNaN(rv)).toBe(false);
    made.push(...native.batchNorm(F([4, 3], NaN), rm, rv, true, 0.1, 1e-5));
    expect(hasNaN(rm) && hasNaN(rv)).toBe(true);
  });

  it('an out-of-range index writes nothing and leaves the process healthy', () => {
    expectOpError('gatherRows', [F([1, 3, 2]), I([1, 2], [0, 1 << 30])], /index value 1073741824/);
    expectOpError('scatterAddRows', [F([1, 2, 2]), I([1, 2], [-5, 0]), 3], /index value -5/);
    const y = native.gatherRows(native.fromArray(Float32Array.from([1, 2, 3, 4, 5, 6]), [1, 3, 2]), I([1, 1], [2]));
    made.push(y);
    expect(Array.from(y.read())).toEqual([5, 6]);
  });
});

describe('runtime entry points', () => {
  it('fromArray', () => {
    expectOpError('fromArray', [[1, 2], [2]], /data must be a Float32Array or Int32Array/);
    expectOpError('fromArray', [new Float64Array(2), [2]], /data must be a Float32Array or Int32Array/);
    expectOpError('fromArray', [new Uint8Array(2), [2]], /data must be a Float32Array or Int32Array/);
    expectOpError('fromArray', [null, [2]], /data must be/);
    expectOpError('fromArray', [new Float32Array(2), 2], /shape must be an array of sizes/);
    expectOpError('fromArray', [new Float32Array(2), ['2']], /shape entries must be non-negative integers/);
    expectOpError('fromArray', [new Float32Array(2), [NaN]], /shape entries must be non-negative integers/);
    expectOpError('fromArray', [new Float32Array(2), [3]], /shape \[3\] holds 3 elements but data has 2/);
  });

  it('full', () => {
    expectOpError('full', ['x', 1], /shape must be an array of sizes/);
    expectOpError('full', [[2], 'x'], /value must be a number/);
    expectOpError('full', [[2], 1, 'float64'], /dtype must be 'float32' or 'int32', got 'float64'/);
    expectOpError('full', [[2], 1, 3], /dtype must be 'float32' or 'int32'/);
    expectOpError('full', [[Infinity], 1], /shape entries must be non-negative integers/);
    expectOpError('full', [[2], 1.5, 'int32'], /value 1\.5.* is not an int32/);
    expectOpError('full', [[2], NaN, 'int32'], /is not an int32/);
    expectOpError('full', [[2], 2 ** 31, 'int32'], /is not an int32/);
    const t = native.full([2], -7, 'int32');
    made.push(t);
    expect(Array.from(t.read())).toEqual([-7, -7]);
  });

  it('shapes whose element count overflows are refused (they would wrap to a small allocation)', () => {
    // 968973220 * 19037413721 = 2^64 + 4: an int64 element count would wrap to 4
    const wraps = [968973220, 19037413721];
    expectOpError('full', [wraps, 0], /shape \[968973220, 19037413721\]\.\.\. has too many elements/);
    expectOpError('full', [[2 ** 31, 2 ** 31, 2 ** 31], 0], /has too many elements/);
    expectOpError('fromArray', [new Float32Array(4), wraps], /has too many elements/);
    expectOpError('sumTo', [F([4]), wraps], /has too many elements/);
    expectOpError('unpatchify', [F([1, 1, 1]), 1, true, [1, 2 ** 31, 2 ** 31]], /has too many elements/);
    // sizes from integer arguments: the result's element count is checked before anything is allocated or written
    expectOpError('scatterAddRows', [F([2, 1, 4]), I([2, 1]), 8e15], /the result \[2, 8000000000000000, 4\] has too many elements/);
    expectOpError('scatterAddRows', [F([1, 1, 4]), I([1, 1]), 2 ** 62], /n must be an integer >= 1/);
    expectOpError('meanTokensBackward', [F([2, 4]), 4e15], /the result \[2, 4000000000000000, 4\] has too many elements/);
    expect(() => F([4]).reshape(wraps)).toThrow(/^Tensor.reshape: cannot view \[4\] as \[968973220, 19037413721\]/);
  });

  it('clone', () => {
    for (const v of [null, undefined, 3, {}, [1], { shape: [1] }]) expectOpError('clone', [v], /x must be a Tensor/);
    expectOpError('clone', [disposedLike(F([2]))], /x has been disposed/);
    expectOpError('clone', [new native.NativeTensor()], /x has been disposed/);
    const c = native.clone(I([2], [7, 8]));
    made.push(c);
    expect(c.dtype).toBe('int32');
    expect(Array.from(c.read())).toEqual([7, 8]);
  });

  it('commInit refuses a timeout that is not positive or that would overflow the clock, before MPI is loaded', () => {
    // (Infinity and 1e300 overflowed the steady clock's nanoseconds: the wait for MPI_Init_thread ended at once, "within
    // -2147483648 s")
    for (const t of [0, -1, NaN, Infinity, 1e300, 2e9])
      expectOpError('commInit', [null, t], /^commInit: timeoutSeconds must be positive and at most 1e9 \(about 31 years\), got /);
    expectOpError('commInit', [null, '60'], /timeoutSeconds must be a number/);
    expect(native.commState().ready).toBe(false);
  });

  it('setNumThreads', () => {
    expectOpError('setNumThreads', [0], /threads must be an integer in \[1, 1024\], got 0/);
    expectOpError('setNumThreads', [100000], /threads must be an integer in \[1, 1024\], got 100000/);
    expectOpError('setNumThreads', [2 ** 32 + 2], /threads must be an integer in \[1, 1024\], got 4294967298/);
    expectOpError('setNumThreads', [1.5], /got 1.5/);
    expectOpError('setNumThreads', ['2'], /threads must be a number/);
    native.setNumThreads(native.info().threads);
  });

  it('a tensor disposed by JavaScript that runs while the call reads its arguments stays valid to the end of the call', () => {
    // a getter of an argument's array runs inside the native call, after the call has taken its tensors
    const disposeOnRead = (values: number[], t: NativeTensor): number[] => {
      const a = values.slice();
      Object.defineProperty(a, 0, { get: () => (t.dispose(), values[0]) });
      return a;
    };
    const x = native.full([4, 3], 1);
    const shape = disposeOnRead([3], x);
    const live = native.liveTensors();
    const y = native.sumTo(x, shape);
    made.push(y);
    expect(x.disposed).toBe(true);
    expect(native.liveTensors()).toBe(live); // x freed when the call returned, y made
    expect(Array.from(y.read())).toEqual([4, 4, 4]);
    const t = native.full([2, 3], 2);
    const v = t.reshape(disposeOnRead([6], t));
    made.push(v);
    expect(t.disposed).toBe(true);
    expect(Array.from(v.read())).toEqual([2, 2, 2, 2, 2, 2]);
    const p = native.full([3], 1);
    native.adamwStep([p], [F([3], 0.5)], [F([3], 0)], [F([3], 0)], disposeOnRead([0.1], p), [0], 0.9, 0.999, 1e-8, 1);
    expect(p.disposed).toBe(true);
  });

  it('info, liveTensors, memoryStats and emptyCache answer without arguments', () => {
    expect(native.info().backends).toContain('cpu');
    expect(Number.isInteger(native.liveTensors())).toBe(true);
    native.emptyCache();
    const s = native.memoryStats();
    expect(s.cachedBytes).toBe(0);
    expect(s.allocatedBytes).toBeGreaterThanOrEqual(0);
  });
});

describe('tensor methods', () => {
  it('read, readAsync, write and reshape of a disposed or empty handle throw', async () => {
    const t = disposedLike(F([2]));
    expect(() => t.read()).toThrow(/^Tensor.read: the tensor has been disposed/);
    expect(() => t.write(new Float32Array(2))).toThrow(/^Tensor.write: the tensor has been disposed/);
    expect(() => t.reshape([2])).toThrow(/^Tensor.reshape: the tensor has been disposed/);
    expect(() => t.readAsync()).toThrow(/^Tensor.readAsync: the tensor has been disposed/);
    const e = new native.NativeTensor();
    expect(e.disposed).toBe(true);
    expect(() => e.read()).toThrow(/^Tensor.read: the tensor has been disposed/);
    t.dispose();
  });

  it('write and reshape check their arguments', () => {
    // (a bfloat16 tensor was told it "takes a Float32Array" when given one)
    expect(() => bf16(F([2])).write(new Float32Array(2))).toThrow(/^Tensor.write: a bfloat16 tensor \[2\] cannot be written; write a float32 tensor and convert it/);
    const t = F([2, 3]);
    expect(() => t.write([1, 2, 3, 4, 5, 6] as unknown as Float32Array)).toThrow(/^Tensor.write: expected a Float32Array or Int32Array/);
    expect(() => t.write(new Float64Array(6) as unknown as Float32Array)).toThrow(/^Tensor.write: a float32 tensor \[2, 3\] takes a Float32Array/);
    expect(() => t.reshape('6' as unknown as number[])).toThrow(/^Tensor.reshape: expected a shape array/);
    expect(() => t.reshape([-6])).toThrow(/^Tensor.reshape: shape entries must be non-negative integers/);
    expect(() => t.reshape([1e300])).toThrow(/^Tensor.reshape:/);
    expect(() => t.reshape([7])).toThrow(/^Tensor.reshape: cannot view \[2, 3\] as \[7\]/);
  });
});

describe('through lib/ops', () => {
  it('shape errors from the wrappers name the op', () =>
    tidy(() => {
      expect(() => linear(tensor([1, 2, 3], [1, 3]), tensor([1, 2], [1, 2]))).toThrow(/^linear: x \[1, 3\] and weight \[1, 2\] disagree/);
      expect(() => gatherRows(tensor([1, 2], [1, 1, 2]), intTensor([3], [1, 1]))).toThrow(/^gatherRows: index value 3/);
    }));

  it('scale and mean, which run native entries of other names, refuse in their own name', () =>
    tidy(() => {
      // (the refusals came from inside: "axpby: x must be float32", "sum: x [0] is empty")
      expect(() => scale(intTensor([1, 2], [2]), 2)).toThrow(/^scale: x must be float32 or bfloat16, got int32 \[2\]$/);
      expect(() => mean(intTensor([1, 2], [2]))).toThrow(/^mean: x must be float32 or bfloat16, got int32 \[2\]$/);
      expect(() => scale(tensor([], [0, 3]), 2)).toThrow(/^scale: x \[0, 3\] is empty; zero-size tensors are not supported here$/);
      expect(() => mean(tensor([], [2, 0]))).toThrow(/^mean: x \[2, 0\] is empty/);
      expect(() => mean(tensor([5], []))).toThrow(/^mean: x must have at least one dimension$/);
      expect(() => scale(Tensor.full([], 1), 2)).toThrow(/^scale: x must have at least one dimension$/);
      expect(mean(tensor([1, 2, 3, 6], [2, 2])).item()).toBe(3);
    }));

  it('every op names a Tensor argument that is something else (null, a number, a NativeTensor) or disposed', () =>
    tidy(() => {
      // (these were TypeErrors from inside: "Cannot read properties of null (reading 'handle')")
      const x = () => tensor([1, 2, 3, 4, 5, 6], [1, 2, 3]);
      const w = () => tensor([1, 1, 1], [3]);
      const calls: [string, string[], (...t: unknown[]) => unknown][] = [
        ['add', ['a', 'b'], (a, b) => ops.add(a as Tensor, b as Tensor)],
        ['mul', ['a', 'b'], (a, b) => ops.mul(a as Tensor, b as Tensor)],
        ['scale', ['x'], (a) => ops.scale(a as Tensor, 2)],
        ['sum', ['x'], (a) => ops.sum(a as Tensor)],
        ['mean', ['x'], (a) => ops.mean(a as Tensor)],
        ['meanTokens', ['x'], (a) => ops.meanTokens(a as Tensor)],
        ['reshape', ['x'], (a) => ops.reshape(a as Tensor, [6])],
        ['gelu', ['x'], (a) => ops.gelu(a as Tensor)],
        ['biasGelu', ['x', 'bias'], (a, b) => ops.biasGelu(a as Tensor, b as Tensor)],
        ['linear', ['x', 'weight'], (a, b) => ops.linear(a as Tensor, b as Tensor)],
        ['layerNorm', ['x', 'weight', 'bias'], (a, b, c) => ops.layerNorm(a as Tensor, b as Tensor, c as Tensor)],
        ['addLayerNorm', ['x', 'r', 'weight', 'bias'], (a, b, c, d) => ops.addLayerNorm(a as Tensor, b as Tensor, c as Tensor, d as Tensor)],
        ['attention', ['qkv'], (a) => ops.attention(a as Tensor, 1)],
        ['maskedMse', ['pred', 'target', 'mask'], (a, b, c) => ops.maskedMse(a as Tensor, b as Tensor, c as Tensor, false)],
        ['crossEntropy', ['logits', 'target'], (a, b) => ops.crossEntropy(a as Tensor, b as Tensor)],
        ['batchNorm', ['x', 'runningMean', 'runningVar'], (a, b, c) => ops.batchNorm(a as Tensor, b as Tensor, c as Tensor, true)],
        ['gatherRows', ['x', 'index'], (a, b) => ops.gatherRows(a as Tensor, b as Tensor)],
        ['catTokens', ['a', 'b'], (a, b) => ops.catTokens(a as Tensor, b as Tensor)],
        ['sliceTokens', ['x'], (a) => ops.sliceTokens(a as Tensor, 0, 1)],
        ['patchify', ['imgs'], (a) => ops.patchify(a as Tensor, 1)],
        ['unpatchify', ['x'], (a) => ops.unpatchify(a as Tensor, 1, [3, 1, 2])],
      ];
      expect(calls.map(([op]) => op).sort()).toEqual(Object.keys(ops).filter((k) => k !== 'fusedOps').sort());
      for (const [op, names, call] of calls) {
        for (let k = 0; k < names.length; k++) {
          const args = (bad: unknown) => names.map((_, j) => (j === k ? bad : j === 0 ? x() : w()));
          const gone = x();
          gone.dispose();
          const at = `${op}: ${names[k]}`;
          expect(() => call(...args(null)), at).toThrow(new Error(`${at} must be a Tensor, got null`));
          expect(() => call(...args(undefined)), at).toThrow(new Error(`${at} must be a Tensor, got undefined`));
          expect(() => call(...args(3)), at).toThrow(new Error(`${at} must be a Tensor, got the number 3`));
          expect(() => call(...args(x().handle)), at).toThrow(new Error(`${at} must be a Tensor, got a NativeTensor`));
          expect(() => call(...args(gone)), at).toThrow(new Error(`${at} [1, 2, 3] has been disposed`));
        }
      }
      // linear's optional bias and bf16 weight: a Tensor or null
      expect(() => linear(x(), tensor([1, 1, 1], [1, 3]), 0 as unknown as Tensor)).toThrow(new Error('linear: bias must be a Tensor or null, got the number 0'));
      expect(() => linear(x(), tensor([1, 1, 1], [1, 3]), null, {} as Tensor)).toThrow(new Error('linear: weightBf16 must be a Tensor or null, got an object'));
      // the other arguments whose type JavaScript reads first
      expect(() => scale(x(), '2' as unknown as number)).toThrow(new Error("scale: s must be a number, got the string '2'"));
      expect(() => ops.reshape(x(), 6 as unknown as number[])).toThrow(new Error('reshape: shape must be an array of sizes, got the number 6'));
      expect(() => ops.unpatchify(x(), 1, null as unknown as [number, number, number])).toThrow(new Error('unpatchify: imageShape must be an array [C, H, W], got null'));
      expect(() => ops.patchify(tensor([1, 2, 3, 4], [1, 1, 2, 2]), 1, 1n as unknown as 'hwc')).toThrow(new Error("patchify: order must be 'hwc' or 'chw', got the bigint 1"));
    }));
});
