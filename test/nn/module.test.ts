// Module (lib/nn/module.ts): loadStateDict checks every value before the first write; what is not a state dict at
// all is an Error that names loadStateDict and the key, not a TypeError from inside it.
import { describe, expect, it } from 'vitest';
import { LayerNorm } from '../../lib/nn/layers.js';
import { Module } from '../../lib/nn/module.js';
import { Tensor } from '../../lib/tensor.js';

describe('Module.loadStateDict', () => {
  it('refuses a state that is not a Map, and values that are neither Tensors nor { shape, data }, changing nothing', () => {
    const ln = new LayerNorm(2);
    const bias = Tensor.fromArray(new Float32Array([5, 6]), [2]).keep();
    const cases: [unknown, string][] = [
      [{ weight: bias, bias }, 'loadStateDict: state must be a Map from parameter names to Tensors or { shape, data } records, got an object'],
      [undefined, 'loadStateDict: state must be a Map from parameter names to Tensors or { shape, data } records, got undefined'],
      [new Map<string, unknown>([['weight', null], ['bias', bias]]), 'loadStateDict: the state dict does not fit this model\nunreadable values:\n  weight: must be a Tensor or a { shape, data } record, got null'],
      [new Map<string, unknown>([['weight', { data: new Float32Array(2) }], ['bias', bias]]), 'loadStateDict: the state dict does not fit this model\nunreadable values:\n  weight: must be a Tensor or a { shape, data } record, got an object'],
      [new Map<string, unknown>([['weight', [1, 2]], ['bias', bias]]), 'loadStateDict: the state dict does not fit this model\nunreadable values:\n  weight: must be a Tensor or a { shape, data } record, got an array of 2'],
    ];
    for (const [state, message] of cases) {
      expect(() => ln.loadStateDict(state as Map<string, Tensor>)).toThrow(new Error(message));
      expect(Array.from(ln.weight.dataSync())).toEqual([1, 1]);
      expect(Array.from(ln.bias.dataSync())).toEqual([0, 0]);
    }
    ln.loadStateDict(new Map<string, Tensor | { shape: number[]; data: Float32Array }>([['weight', { shape: [2], data: new Float32Array([3, 4]) }], ['bias', bias]]));
    expect(Array.from(ln.weight.dataSync())).toEqual([3, 4]);
    expect(Array.from(ln.bias.dataSync())).toEqual([5, 6]);
    ln.dispose();
    bias.dispose();
  });
});

describe('Module.namedParameters', () => {
  it('lists a child of 150,000 parameters (a spread of its list into push() overflowed the call stack)', () => {
    class Many extends Module {
      constructor(n: number) {
        super();
        const one = Tensor.fromArray(new Float32Array([1]), [1]);
        for (let i = 0; i < n; i++) this.param(String(i), one);
      }
    }
    class Outer extends Module {
      readonly inner = this.module('blocks', new Many(150_000));
    }
    const outer = new Outer();
    const names = outer.namedParameters().map(([name]) => name);
    expect(names.length).toBe(150_000);
    expect([names[0], names[149_999]]).toEqual(['blocks.0', 'blocks.149999']);
  });
});
