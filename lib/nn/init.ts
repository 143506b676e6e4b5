/** Parameter initialisers, all drawing from a Generator so that a seed fixes the model. */
import type { Generator } from '../random.js';
import { Tensor } from '../tensor.js';

/** xavier_uniform: U(-a, a), a = sqrt(6 / (fanIn + fanOut)). */
export function xavierUniform(shape: readonly number[], fanIn: number, fanOut: number, gen: Generator): Tensor {
  const a = Math.sqrt(6 / (fanIn + fanOut));
  return Tensor.fromArray(gen.uniformArray(numel(shape), -a, a), shape);
}

/** U(-bound, bound). */
export function uniform(shape: readonly number[], bound: number, gen: Generator): Tensor {
  return Tensor.fromArray(gen.uniformArray(numel(shape), -bound, bound), shape);
}

/** N(0, std^2). */
export function normal(shape: readonly number[], std: number, gen: Generator): Tensor {
  return Tensor.fromArray(gen.normalArray(numel(shape), 0, std), shape);
}

/** N(0, std^2) truncated to [-2 std, 2 std] by redrawing (timm's trunc_normal_ with its default bounds scaled). */
export function truncNormal(shape: readonly number[], std: number, gen: Generator): Tensor {
  const n = numel(shape);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v: number;
    do v = gen.normal();
    while (v < -2 || v > 2);
    out[i] = v * std;
  }
  return Tensor.fromArray(out, shape);
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
