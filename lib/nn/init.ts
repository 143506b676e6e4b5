/** Parameter initialisers, all drawing from a Generator so that a seed fixes the model. */
import type { NativeTensor } from '../native.js';
import { expectArrayOf, expectFunction, expectInstance, expectNumber } from '../check.js';
import { Generator } from '../random.js';
import { Tensor } from '../tensor.js';

let placeholders = 0;

/**
 * Runs `make` (a model's constructor) with the initialisers below returning placeholders: tensors of the right shape
 * that hold no memory, read as empty, ignore writes, and that no op accepts. For a model whose parameters get their
 * storage right after (Tensor.adoptHandle, lib/infer/worker.ts), so that its weights are neither drawn nor allocated.
 */
export function withoutInit<T>(make: () => T): T {
  expectFunction('withoutInit', 'make', make);
  placeholders++;
  try {
    return make();
  } finally {
    placeholders--;
  }
}

function placeholder(shape: readonly number[]): NativeTensor {
  let disposed = false;
  return {
    shape: [...shape],
    dtype: 'float32',
    device: 'cpu',
    get disposed() {
      return disposed;
    },
    dispose: () => void (disposed = true),
    read: () => new Float32Array(0),
    readAsync: async () => new Float32Array(0),
    write: () => undefined,
    reshape: () => {
      throw new Error('a placeholder parameter (withoutInit) has no storage');
    },
  };
}

/** A parameter tensor of `shape` holding `values()`, or a placeholder inside withoutInit. */
function initialised(shape: readonly number[], values: () => Float32Array): Tensor {
  return placeholders > 0 ? new Tensor(placeholder(shape)) : Tensor.fromArray(values(), shape);
}

/** xavier_uniform: U(-a, a), a = sqrt(6 / (fanIn + fanOut)). */
export function xavierUniform(shape: readonly number[], fanIn: number, fanOut: number, gen: Generator): Tensor {
  expectShape('xavierUniform', shape);
  for (const [name, v] of [['fanIn', fanIn], ['fanOut', fanOut]] as const) expectNumber('xavierUniform', name, v, true);
  expectGenerator('xavierUniform', gen);
  const a = Math.sqrt(6 / (fanIn + fanOut));
  return initialised(shape, () => gen.uniformArray(numel(shape), -a, a));
}

/** U(-bound, bound). */
export function uniform(shape: readonly number[], bound: number, gen: Generator): Tensor {
  expectShape('uniform', shape);
  expectNumber('uniform', 'bound', bound);
  expectGenerator('uniform', gen);
  return initialised(shape, () => gen.uniformArray(numel(shape), -bound, bound));
}

/** N(0, std^2). */
export function normal(shape: readonly number[], std: number, gen: Generator): Tensor {
  expectShape('normal', shape);
  expectNumber('normal', 'std', std);
  expectGenerator('normal', gen);
  return initialised(shape, () => gen.normalArray(numel(shape), 0, std));
}

/**
 * N(0, std^2) truncated to [-2, 2], as timm's trunc_normal_(tensor, std=std) (the official models' and recipes'
 * init: head weights std 2e-5 fine-tuning, 0.01 linear probing), whose bounds a=-2, b=2 are absolute values, not
 * multiples of std: for the small stds it is used with nothing is cut off. Exact rejection sampling: from N(0, std^2)
 * for |std| <= 1 (at least 95% of draws kept), else from U(-2, 2), kept with probability exp(-x^2 / (2 std^2)) (at
 * least 13%), so that a large std does not make it redraw without end.
 */
export function truncNormal(shape: readonly number[], std: number, gen: Generator): Tensor {
  expectShape('truncNormal', shape);
  expectNumber('truncNormal', 'std', std);
  expectGenerator('truncNormal', gen);
  const bound = 2;
  return initialised(shape, () => {
    const n = numel(shape);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      let v: number;
      if (Math.abs(std) <= 1) {
        do v = gen.normal() * std;
        while (v < -bound || v > bound);
      } else {
        do v = bound * (2 * gen.uniform() - 1);
        while (gen.uniform() >= Math.exp((-v * v) / (2 * std * std)));
      }
      out[i] = v;
    }
    return out;
  });
}

export function numel(shape: readonly number[]): number {
  expectShape('numel', shape);
  return shape.reduce((a, b) => a * b, 1);
}

function expectShape(where: string, shape: unknown): void {
  expectArrayOf(where, 'shape', shape, (n) => Number.isInteger(n) && (n as number) >= 0, 'an integer >= 0');
}

function expectGenerator(where: string, gen: unknown): void {
  expectInstance(where, 'gen', gen, Generator, 'a Generator');
}
