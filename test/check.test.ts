// Public constructors given values of the wrong type: each throws an Error (not a TypeError from inside) whose
// message starts with the class name and says what the argument must be (lib/check.ts does the wording).
import { describe, expect, it } from 'vitest';
import { describeValue, expectArrayLike, expectDataset, expectFunction, expectKnownKeys, expectString, jsonProblem, nearestName } from '../lib/check.js';
import { BatchNormNoAffine, ProbeHead, VisionTransformerClassifier } from '../lib/classify/model.js';
import { ImageFolderDataset, InMemoryDataset } from '../lib/data/dataset.js';
import { DataLoader } from '../lib/data/loader.js';
import { MaskedAutoencoder } from '../lib/mae/model.js';
import { Attention, Block, LayerNorm, Linear, Mlp, PatchEmbed } from '../lib/nn/layers.js';
import { ModuleList } from '../lib/nn/module.js';
import { AdamW } from '../lib/optim/adamw.js';
import { LARS } from '../lib/optim/lars.js';
import { Generator } from '../lib/random.js';
import { Tensor } from '../lib/tensor.js';
import { MetricAccumulator } from '../lib/train/evaluate.js';
import { Mixup } from '../lib/train/mixup.js';

type Ctor = new (...args: never[]) => unknown;

function errorOf(C: Ctor, args: unknown[]): Error {
  try {
    new (C as unknown as new (...a: unknown[]) => unknown)(...args);
  } catch (e) {
    return e as Error;
  }
  throw new Error(`new ${C.name}(${args.map(describeValue).join(', ')}) did not throw`);
}

const gen = new Generator(0);
const dataset = new InMemoryDataset({ images: new Uint8Array(4), labels: [0, 1, 0, 1], channels: 1, height: 1, width: 1, numClasses: 2 });

/** values of the wrong type for a slot whose right value is `good` */
function wrongFor(good: unknown): unknown[] {
  if (typeof good === 'number') return ['/some/folder', null, {}, [1, 2], NaN];
  if (Array.isArray(good)) return ['/some/folder', 42, null, {}];
  return ['/some/folder', 42, null, [1, 2], ...(good === undefined || Object.getPrototypeOf(good) !== Object.prototype ? [{}] : [])];
}

/** [class, a call with each argument right (the slot under test is replaced), slots to try, message pattern] */
const cases: [Ctor, unknown[], number[], RegExp][] = [
  [Tensor, [undefined], [0], /handle must be a native tensor handle, got .*; make tensors with Tensor.fromArray/],
  [MaskedAutoencoder, [{}, {}], [0, 1], /(config|opts) must be an object, got/],
  [VisionTransformerClassifier, [{}, {}], [0, 1], /(config|opts) must be an object, got/],
  [AdamW, [[], { lr: 1 }], [0, 1], /(params must be an array|params\[0\] must be|options must be an object)/],
  [LARS, [[], { lr: 1 }], [0, 1], /(params must be an array|params\[0\] must be|options must be an object)/],
  [ProbeHead, [4, 2, 0.01, gen], [0, 1, 2, 3], /(inFeatures|numClasses) must be an integer >= 1|initStd must be a positive number|gen must be a Generator/],
  [BatchNormNoAffine, [4], [0], /features must be an integer >= 1/],
  [MetricAccumulator, [3], [0], /numClasses must be an integer >= 1/],
  [Mixup, [{ numClasses: 2 }], [0], /opts must be an object/],
  [InMemoryDataset, [{}], [0], /opts must be an object/],
  [ImageFolderDataset, [{}], [0], /index must be an object, got .*; to read a folder, use await ImageFolderDataset.open\(path\)/],
  [DataLoader, [dataset, { batchSize: 2 }], [0, 1], /dataset must be a Dataset|opts must be an object/],
  [Linear, [2, 3, gen], [0, 1, 2], /(inFeatures|outFeatures) must be an integer >= 1|gen must be a Generator/],
  [LayerNorm, [4], [0], /dim must be an integer >= 1/],
  [Attention, [4, 2, gen], [0, 1, 2], /(dim|numHeads) must be an integer >= 1|gen must be a Generator/],
  [Mlp, [4, 8, gen], [0, 1, 2], /(dim|hidden) must be an integer >= 1|gen must be a Generator/],
  [PatchEmbed, [8, 4, 1, 4, gen], [0, 1, 2, 3, 4], /(imgSize|patchSize|inChans|embedDim) must be an integer >= 1|gen must be a Generator/],
  [ModuleList, [[]], [0], /items must be an array, each item a Module/],
];

describe('public constructors given the wrong types', () => {
  for (const [C, good, slots, re] of cases)
    it(`${C.name} names the argument and what it takes`, () => {
      for (const slot of slots)
        for (const v of wrongFor(good[slot])) {
          const args = [...good];
          args[slot] = v;
          const e = errorOf(C, args);
          expect(e).toBeInstanceOf(Error);
          expect(e, `${C.name} slot ${slot} given ${describeValue(v)}: ${e.message}`).not.toBeInstanceOf(TypeError);
          expect(e.message.startsWith(`${C.name}: `), e.message).toBe(true);
          expect(e.message).toMatch(re);
          expect(e.message).toContain(describeValue(v));
        }
    });

  it('the errors are specific: a wrong field inside a right-typed object is named', () => {
    expect(errorOf(VisionTransformerClassifier, [{}])).toHaveProperty('message', 'VisionTransformerClassifier: config.imgSize must be an integer >= 1, got undefined');
    expect(errorOf(InMemoryDataset, [{ images: 'x' }]).message).toMatch(/^InMemoryDataset: opts.images must be a Uint8Array/);
    expect(errorOf(ImageFolderDataset, [{ files: ['a'], labels: new Int32Array(2), classes: [] }]).message).toMatch(/index.labels has 2 entries for 1 files/);
    expect(errorOf(ModuleList, [[1]])).toHaveProperty('message', 'ModuleList: items[0] must be a Module, got the number 1');
    expect(errorOf(AdamW, [[{ params: [3] }], { lr: 1 }]).message).toMatch(/^AdamW: params\[0\] must be a Tensor or a parameter group/);
  });

  it('describeValue words values for messages', () => {
    expect(describeValue('/x')).toBe("the string '/x'");
    expect(describeValue(3)).toBe('the number 3');
    expect(describeValue(null)).toBe('null');
    expect(describeValue([1])).toBe('an array of 1');
    expect(describeValue(new Map())).toBe('a Map');
    expect(describeValue({})).toBe('an object');
  });

  it('expectString, expectFunction, expectDataset and expectArrayLike name the function and the argument', () => {
    expect(() => expectString('f', 'path', 1, 'a file path')).toThrow(new Error('f: path must be a file path, got the number 1'));
    expect(() => expectFunction('f', 'onEvent', 'x', true)).toThrow(new Error("f: onEvent must be a function or undefined, got the string 'x'"));
    expect(() => expectFunction('f', 'fn', undefined)).toThrow(new Error('f: fn must be a function, got undefined'));
    expect(() => expectDataset('f', 'dataset', [])).toThrow(new Error('f: dataset must be a Dataset (an object with length and get(i)), got an array of 0; open one with openDataset(...)'));
    expect(() => expectArrayLike('f', 'labels', {}, 'an array of class indices')).toThrow(new Error('f: labels must be an array of class indices, got an object'));
    // and take what they describe
    expectString('f', 'path', '');
    expectFunction('f', 'onEvent', undefined, true);
    expectDataset('f', 'dataset', dataset);
    expectArrayLike('f', 'labels', new Int32Array(2), 'an array of class indices');
  });
});

describe('nearestName and expectKnownKeys', () => {
  it('suggest the name a misspelt one most likely meant, and none where two are as near or none is', () => {
    const flags = ['epochs', 'batch-size', 'blr', 'lr', 'min-lr', 'mask-ratio', 'warmup-epochs', 'data', 'data-kind'];
    const cases: [string, string | undefined][] = [
      ['epoch', 'epochs'], // the other number
      ['batch_size', 'batch-size'], ['batchSize', 'batch-size'], ['BATCH-SIZE', 'batch-size'], // case and separators
      ['mask-ration', 'mask-ratio'], ['warmup-epoch', 'warmup-epochs'], ['wramup-epochs', 'warmup-epochs'], // edits
      ['dta', undefined], // under 4 letters: only the same name in another form
      ['xyzw', undefined], ['data-kinds', 'data-kind'], ['datakind', 'data-kind'],
      ['min-lrr', 'min-lr'],
    ];
    for (const [name, near] of cases) expect(nearestName(name, flags), name).toBe(near);
    // two names within two edits: neither is suggested
    expect(nearestName('lrx', ['lr', 'lry'])).toBeUndefined();
    expect(nearestName('abcde', ['abcdx', 'abcdy'])).toBeUndefined();
    // unless one is nearer: a letter off batch-size is two off patch-size (and dpth one off depth, two off data)
    expect(nearestName('batch-sze', ['batch-size', 'patch-size'])).toBe('batch-size');
    expect(nearestName('bach-size', ['batch-size', 'patch-size'])).toBe('batch-size');
    expect(nearestName('dpth', ['depth', 'data'])).toBe('depth');
    expect(nearestName('blrr', ['blr', 'lr'])).toBe('blr');
    expect(nearestName('atch-size', ['batch-size', 'patch-size'])).toBeUndefined();
    expect(() => expectKnownKeys('f', 'options', { weight_decay: 1 }, ['lr', 'weightDecay'])).toThrow(new Error("f: options has no option 'weight_decay' (did you mean weightDecay?); it takes lr, weightDecay"));
    expect(() => expectKnownKeys('f', 'options', { zzz: 1 }, ['lr', 'weightDecay'])).toThrow(new Error("f: options has no option 'zzz'; it takes lr, weightDecay"));
  });
});

describe('jsonProblem', () => {
  it('names the key path of a BigInt or a circular reference, and takes what JSON.stringify takes', () => {
    expect(jsonProblem({ a: [1, { seed: 2n }] }, 'meta')).toBe('meta.a[1].seed is a BigInt');
    expect(jsonProblem({ 'a key': 3n }, 'extra')).toBe('extra["a key"] is a BigInt');
    const loop: Record<string, unknown> = { list: [] };
    (loop.list as unknown[]).push({ up: loop });
    expect(jsonProblem({ options: loop }, 'meta')).toBe('meta.options.list[0].up refers back to meta.options (a circular reference)');
    const shared = { x: 1 };
    const fine = { a: shared, b: [shared], at: new Date(0), f: () => 1, u: undefined, n: NaN, big: { toJSON: () => '5' }, m: new Map([[1n, 2n]]) };
    expect(jsonProblem(fine, 'meta')).toBe(null);
    expect(() => JSON.stringify(fine)).not.toThrow();
    expect(jsonProblem({ later: { toJSON: () => ({ seed: 1n }) } }, 'meta')).toBe('meta.later.seed is a BigInt');
  });
});
