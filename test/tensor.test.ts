// Tests for lib/tensor.ts: creation and reading (fromArray, full, data, dataSync, intDataSync, item, write,
// reshape views), dtype and length errors, disposal, and memory: tidy disposes everything made inside except what
// it returns (checked with liveTensors), nested scopes, keep, a throwing function, and a full forward + backward
// inside tidy leaving only the parameters' gradients alive. Every test disposes what it makes, so the live count
// of this process stays exact.
import { describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import {
  add,
  attention,
  batchNorm,
  catTokens,
  crossEntropy,
  gatherRows,
  gelu,
  layerNorm,
  linear,
  maskedMse,
  meanTokens,
  mul,
  patchify,
  reshape,
  sliceTokens,
} from '../lib/ops/index.js';
import { noGrad } from '../lib/autograd.js';
import { disposeShadow, shadowFor } from '../lib/nn/shadow.js';
import { keep, liveTensors, owning, Tensor, tidy } from '../lib/tensor.js';
import { randint, randn, rng } from './helpers/random.js';
import { intTensor, tensor } from './helpers/tensors.js';

/** Runs fn and checks how many native tensors it left alive. */
function expectLiveDelta<R>(delta: number, fn: () => R): R {
  const before = liveTensors();
  const r = fn();
  expect(liveTensors() - before).toBe(delta);
  return r;
}

describe('creating and reading tensors', () => {
  it('fromArray keeps shape, dtype and values; dataSync and data copy them out', async () => {
    const t = Tensor.fromArray([1.5, -2, 3.25, 0, 7, 8], [2, 3]);
    expect(t.shape).toEqual([2, 3]);
    expect(t.dtype).toBe('float32');
    expect(t.size).toBe(6);
    expect(t.device).toBe('cpu');
    expect(Array.from(t.dataSync())).toEqual([1.5, -2, 3.25, 0, 7, 8]);
    const d = await t.data();
    expect(d).toBeInstanceOf(Float32Array);
    expect(Array.from(d)).toEqual([1.5, -2, 3.25, 0, 7, 8]);
    // copies: changing them does not change the tensor
    d[0] = 100;
    expect(t.dataSync()[0]).toBe(1.5);
    t.dispose();
  });

  it('int32 tensors from an Int32Array or an explicit dtype', async () => {
    const a = Tensor.fromArray(Int32Array.from([3, -1, 2147483647]), [3]);
    const b = Tensor.fromArray([0, 5, -7], [3], { dtype: 'int32' });
    expect(a.dtype).toBe('int32');
    expect(b.dtype).toBe('int32');
    expect(Array.from(a.intDataSync())).toEqual([3, -1, 2147483647]);
    expect(Array.from(b.intDataSync())).toEqual([0, 5, -7]);
    expect(Array.from(b.dataSync())).toEqual([0, 5, -7]);
    expect(Array.from(await b.data())).toEqual([0, 5, -7]);
    a.dispose();
    b.dispose();
  });

  it('full, zeros, ones and item', () => {
    const f = Tensor.full([2, 2], -3.5);
    const z = Tensor.zeros([3]);
    const o = Tensor.ones([1]);
    const zi = Tensor.zeros([2], 'int32');
    expect(Array.from(f.dataSync())).toEqual([-3.5, -3.5, -3.5, -3.5]);
    expect(Array.from(z.dataSync())).toEqual([0, 0, 0]);
    expect(o.item()).toBe(1);
    expect(zi.dtype).toBe('int32');
    expect(() => f.item()).toThrow(/Tensor.item: tensor \[2, 2\] has 4 elements/);
    for (const t of [f, z, o, zi]) t.dispose();
  });

  it('write replaces the elements', () => {
    const t = Tensor.zeros([2, 2]);
    t.write(Float32Array.from([1, 2, 3, 4]));
    expect(Array.from(t.dataSync())).toEqual([1, 2, 3, 4]);
    t.dispose();
  });

  it('fromArray and write take the viewed part of a subarray', () => {
    const big = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    const t = Tensor.fromArray(big.subarray(2, 5), [3]);
    expect(Array.from(t.dataSync())).toEqual([2, 3, 4]);
    t.write(big.subarray(5, 8));
    expect(Array.from(t.dataSync())).toEqual([5, 6, 7]);
    const ints = Int32Array.from([9, 8, 7, 6]);
    const i = Tensor.fromArray(ints.subarray(1, 3), [2]);
    expect(Array.from(i.intDataSync())).toEqual([8, 7]);
    t.dispose();
    i.dispose();
  });

  it('reshape is a view of the same storage with another shape', () =>
    tidy(() => {
      const t = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const r = reshape(t, [3, 2]);
      expect(r.shape).toEqual([3, 2]);
      expect(Array.from(r.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
      t.write(Float32Array.from([6, 5, 4, 3, 2, 1]));
      expect(Array.from(r.dataSync())).toEqual([6, 5, 4, 3, 2, 1]);
      // the view keeps the storage alive when the original is disposed
      t.dispose();
      expect(Array.from(r.dataSync())).toEqual([6, 5, 4, 3, 2, 1]);
      expect(() => reshape(r, [4, 2])).toThrow(/cannot view \[3, 2\] as \[4, 2\]/);
    }));

  it('a view (reshape, to() without a change) shares the version of the tensor it views: a write through either changes both', () =>
    tidy(() => {
      const t = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const r = reshape(t, [3, 2]);
      const same = t.to('cpu');
      const copy = t.to('cpu', 'bfloat16');
      r.write(new Float32Array(6));
      expect([t.version, r.version, same.version, copy.version]).toEqual([1, 1, 1, 0]);
      t.write(new Float32Array(6));
      same.write(new Float32Array(6));
      expect([t.version, r.version, same.version, copy.version]).toEqual([3, 3, 3, 0]);
      // what goes by versions sees such a write: backward refuses a graph whose values changed through a view,
      // and a bf16 weight shadow is remade
      const a = tensor([1, 2, 3], [3], true);
      const b = tensor([4, 5, 6], [3]);
      const l = mul(a, b);
      reshape(b, [1, 3]).write(new Float32Array(3));
      expect(() => l.backward(tensor([1, 1, 1], [3]))).toThrow(/backward: the backward of mul reads its input 1 \(\[3\]\), whose values were changed in place/);
      const w = tensor([1, 2, 3, 4], [1, 4]);
      const x = tensor([1, 1, 1, 1], [1, 4]).to('cpu', 'bfloat16');
      const shadowed = () => linear(x, w, null, shadowFor(w, x)).dataSync()[0];
      expect(shadowed()).toBe(10);
      reshape(w, [4]).write(new Float32Array([2, 2, 2, 2]));
      expect(shadowed()).toBe(8);
      disposeShadow(w);
    }));

  it('zero-size tensors can be made and read', () =>
    tidy(() => {
      const t = Tensor.fromArray(new Float32Array(0), [0, 3]);
      expect(t.size).toBe(0);
      expect(t.dataSync().length).toBe(0);
    }));
});

describe('errors on wrong data', () => {
  it('an array of the wrong length', () => {
    expectLiveDelta(0, () => {
      expect(() => Tensor.fromArray([1, 2, 3], [2, 2])).toThrow(/fromArray: shape \[2, 2\] holds 4 elements but data has 3/);
      expect(() => Tensor.fromArray(new Float32Array(5), [5, 0])).toThrow(/fromArray:/);
      expect(() => Tensor.fromArray([1, 2], [-1, -2])).toThrow(/fromArray: shape entries must be non-negative integers/);
      expect(() => Tensor.fromArray([1, 2], [1.5, 2])).toThrow(/fromArray: shape entries/);
      const t = Tensor.zeros([2, 2]);
      expect(() => t.write(new Float32Array(3))).toThrow(/Tensor.write: tensor \[2, 2\] has 4 elements, got 3/);
      t.dispose();
    });
  });

  it('data that is not numbers, a shape that is not an array, an unknown dtype (JavaScript callers)', () => {
    expectLiveDelta(0, () => {
      expect(() => Tensor.fromArray('abcd' as unknown as number[], [4])).toThrow(/fromArray: data must be an array of numbers or a typed array of numbers, got the string 'abcd'/);
      expect(() => Tensor.fromArray(new BigInt64Array(2) as unknown as number[], [2])).toThrow(/fromArray: data must be .*, got a BigInt64Array/);
      // any array-like of numbers, as the signature says
      const like = Tensor.fromArray({ length: 2, 0: 1.5, 1: -2 }, [2]);
      expect(Array.from(like.dataSync())).toEqual([1.5, -2]);
      like.dispose();
      expect(() => Tensor.fromArray(null as unknown as number[], [4])).toThrow(/fromArray: data must be .*, got null/);
      expect(() => Tensor.fromArray([1, '2', 3] as unknown as number[], [3])).toThrow(/fromArray: data must hold numbers, got the string '2' at index 1/);
      expect(() => Tensor.fromArray([1, 2, 3, 4], 4 as unknown as number[])).toThrow(/fromArray: shape must be an array of sizes, got the number 4/);
      expect(() => Tensor.fromArray([1, 2], [2], { dtype: 'float16' as 'float32' })).toThrow(/fromArray: dtype must be 'float32' or 'int32', got the string 'float16'/);
      // other typed arrays are converted, as before
      const f = Tensor.fromArray(Float64Array.from([0.5, 2]), [2]);
      expect(Array.from(f.dataSync())).toEqual([0.5, 2]);
      f.dispose();
    });
  });

  it('int32 and float32 confusions', () => {
    expectLiveDelta(0, () => {
      // non-integers or out-of-range values for an int32 tensor are not silently truncated
      expect(() => Tensor.fromArray([1.5, 2], [2], { dtype: 'int32' })).toThrow(/int32 data must hold integers.*1\.5/);
      expect(() => Tensor.fromArray(Float32Array.from([NaN]), [1], { dtype: 'int32' })).toThrow(/int32/);
      expect(() => Tensor.fromArray([2 ** 31], [1], { dtype: 'int32' })).toThrow(/int32 range/);
      expect(() => Tensor.full([2], 0.5, 'int32')).toThrow(/^full: value 0\.5.* is not an int32/);
      const f = Tensor.zeros([3]);
      const i = Tensor.zeros([3], 'int32');
      expect(() => f.write(new Int32Array(3))).toThrow(/Tensor.write: a float32 tensor \[3\] takes a Float32Array/);
      expect(() => i.write(new Float32Array(3))).toThrow(/Tensor.write: a int32 tensor \[3\] takes a Int32Array/);
      expect(() => f.intDataSync()).toThrow(/intDataSync: tensor \[3\] is float32/);
      // an int32 tensor where a float32 one is needed, and the other way round
      expect(() => gelu(i)).toThrow(/^gelu: x must be float32, got int32 \[3\]/);
      const x = tensor(new Float32Array(6), [1, 2, 3]);
      const idx = tensor([0, 1], [1, 2]);
      expect(() => gatherRows(x, idx)).toThrow(/^gatherRows: index must be int32, got float32/);
      for (const t of [f, i, x, idx]) t.dispose();
    });
  });
});

describe('dispose', () => {
  it('frees the storage, is safe twice, and later use throws a clear error', async () => {
    const before = liveTensors();
    const t = tensor([1, 2, 3], [3]);
    expect(liveTensors()).toBe(before + 1);
    t.dispose();
    expect(liveTensors()).toBe(before);
    expect(t.disposed).toBe(true);
    t.dispose();
    expect(liveTensors()).toBe(before);
    expect(() => t.dataSync()).toThrow(/Tensor \[3\] has been disposed/);
    await expect(t.data()).rejects.toThrow(/has been disposed/);
    expect(() => gelu(t)).toThrow(/has been disposed/);
    expect(t.toString()).toMatch(/disposed/);
  });

  it('disposing a leaf disposes its gradient', () => {
    const before = liveTensors();
    const x = tensor([1, 2], [2], true);
    tidy(() => linear(x, tensor([1, 1, 1, 1], [2, 2])).backward(tensor([1, 1], [2])));
    expect(x.grad).not.toBeNull();
    expect(liveTensors()).toBe(before + 2);
    x.dispose();
    expect(x.grad).toBeNull();
    expect(liveTensors()).toBe(before);
  });

  it('await data() reads a tensor that is disposed while the read is in flight', async () => {
    const t = tensor([4, 5, 6], [3]);
    const p = t.data();
    t.dispose();
    expect(Array.from(await p)).toEqual([4, 5, 6]);
  });

  it('await data() gives the values at the call: in-place ops queued after it do not reach the read', async () => {
    const t = tensor([4, 5, 6], [3]);
    const x = tensor([1, 1, 1], [3]);
    const p = t.data();
    native.fill(t.handle, 9); // in place, right after the read was asked for
    native.axpby(2, x.handle, 1, t.handle);
    const again = t.data();
    expect(Array.from(await p)).toEqual([4, 5, 6]);
    expect(Array.from(await again)).toEqual([11, 11, 11]);
    t.dispose();
    x.dispose();
  });

  it('memory goes back to the allocator on dispose', () => {
    const before = native.memoryStats().allocatedBytes;
    const t = Tensor.zeros([1024, 1024]);
    expect(native.memoryStats().allocatedBytes - before).toBeGreaterThanOrEqual(4 * 1024 * 1024);
    t.dispose();
    expect(native.memoryStats().allocatedBytes).toBe(before);
  });
});

describe('tidy', () => {
  it('disposes everything made inside except what it returns', () => {
    const before = liveTensors();
    const kept = tidy(() => {
      const a = tensor([1, 2, 3], [3]);
      const b = tensor([4, 5, 6], [3]);
      const c = add(a, b);
      gelu(c);
      expect(liveTensors()).toBe(before + 4);
      return c;
    });
    expect(liveTensors()).toBe(before + 1);
    expect(Array.from(kept.dataSync())).toEqual([5, 7, 9]);
    kept.dispose();
    expect(liveTensors()).toBe(before);
  });

  it('keeps tensors returned in arrays and plain objects', () => {
    const before = liveTensors();
    const r = tidy(() => {
      const a = tensor([1], [1]);
      const b = tensor([2], [1]);
      tensor([3], [1]);
      return { list: [a], b, n: 3 };
    });
    expect(liveTensors()).toBe(before + 2);
    expect(r.n).toBe(3);
    expect(r.list[0]!.item() + r.b.item()).toBe(3);
    r.list[0]!.dispose();
    r.b.dispose();
    expect(liveTensors()).toBe(before);
  });

  it('nested scopes: a returned tensor moves to the enclosing scope and dies with it', () => {
    const before = liveTensors();
    let inner!: Tensor;
    tidy(() => {
      inner = tidy(() => {
        tensor([0], [1]);
        return tensor([1], [1]);
      });
      expect(inner.disposed).toBe(false);
      expect(liveTensors()).toBe(before + 1);
    });
    expect(inner.disposed).toBe(true);
    expect(liveTensors()).toBe(before);
  });

  it('keep() and keep(t) survive the scope', () => {
    const before = liveTensors();
    let x!: Tensor;
    let y!: Tensor;
    tidy(() => {
      x = tensor([1], [1]).keep();
      y = keep(tensor([2], [1]));
      tensor([3], [1]);
    });
    expect(liveTensors()).toBe(before + 2);
    expect(x.item() + y.item()).toBe(3);
    // kept tensors belong to no scope: an enclosing tidy does not dispose them either
    tidy(() => tidy(() => x));
    expect(x.disposed).toBe(false);
    x.dispose();
    y.dispose();
    expect(liveTensors()).toBe(before);
  });

  it('a tensor from outside returned by a nested tidy is not disposed by the outer one', () => {
    const before = liveTensors();
    const w = tensor([1, 2], [2]);
    tidy(() => {
      tidy(() => tidy(() => w));
    });
    expect(w.disposed).toBe(false);
    const v = tidy(() => {
      const u = tensor([3], [1]);
      tidy(() => tidy(() => u));
      expect(u.disposed).toBe(false);
      return u;
    });
    expect(v.disposed).toBe(false);
    w.dispose();
    v.dispose();
    expect(liveTensors()).toBe(before);
  });

  it('disposes what was made inside when the function throws', () => {
    const before = liveTensors();
    expect(() =>
      tidy(() => {
        tensor([1, 2], [2]);
        gelu(tensor([1, 2], [2]));
        throw new Error('inside');
      }),
    ).toThrow('inside');
    expect(liveTensors()).toBe(before);
  });

  it('refuses an async function and disposes what it made', () => {
    const before = liveTensors();
    expect(() =>
      tidy(() => {
        tensor([1], [1]);
        return Promise.resolve(1);
      }),
    ).toThrow(/tidy: the function must be synchronous/);
    expect(liveTensors()).toBe(before);
  });

  it('refuses what is not a function, naming it', () => {
    expect(() => tidy(3 as unknown as () => void)).toThrow(new Error('tidy: fn must be a function, got the number 3'));
    expect(() => noGrad(null as unknown as () => void)).toThrow(new Error('noGrad: fn must be a function, got null'));
  });
});

describe('saved tensors', () => {
  it('ops under noGrad keep nothing for backward: only their outputs stay alive', () => {
    const g = rng(2);
    const x = tensor(randn(g, 2 * 3 * 12), [2, 3, 12], true);
    const w = tensor(randn(g, 12), [12], true);
    const b = tensor(randn(g, 12), [12], true);
    const before = liveTensors();
    const [y, z] = noGrad(() => [layerNorm(x, w, b), attention(x, 2)]);
    // layerNorm saves mean and rstd, attention its log-sum-exp: all freed at once when nothing records
    expect(liveTensors()).toBe(before + 2);
    expect(y!.requiresGrad || z!.requiresGrad).toBe(false);
    for (const t of [x, w, b, y!, z!]) t.dispose();
  });
});

describe('a full forward and backward inside tidy', () => {
  it('leaves only the parameters and their gradients alive, step after step', () => {
    const g = rng(1);
    const [B, C, S, p, D, H, K, classes] = [2, 3, 8, 4, 8, 2, 3, 5];
    const L = (S / p) ** 2;
    const P = p * p * C;
    const start = liveTensors();
    const param = (shape: number[], std = 0.2): Tensor => tensor(randn(g, shape.reduce((a, b) => a * b, 1), std), shape, true);
    const params = {
      embedW: param([D, P]),
      embedB: param([D]),
      cls: param([1, 1, D]),
      lnW: param([D]),
      lnB: param([D]),
      qkvW: param([3 * D, D]),
      qkvB: param([3 * D]),
      predW: param([P, D]),
      headW: param([classes, D]),
    };
    const n = Object.keys(params).length;
    // buffers that do not require grad: images, running statistics, indices, labels
    const imgs = tensor(randn(g, B * C * S * S), [B, C, S, S]);
    const rm = tensor(new Float32Array(D), [D]);
    const rv = tensor(new Float32Array(D).fill(1), [D]);
    const keepIdx = intTensor(randint(g, B * K, L), [B, K]);
    const labels = intTensor(randint(g, B, classes), [B]);
    const mask = tensor(Float32Array.from({ length: B * K }, (_, i) => i % 2), [B, K]);
    expect(liveTensors()).toBe(start + n + 6);

    const step = (): number =>
      tidy(() => {
        const patches = patchify(imgs, p, 'hwc');
        const tokens = gatherRows(linear(patches, params.embedW, params.embedB), keepIdx);
        const x = catTokens(params.cls, tokens);
        const h = add(x, attention(linear(layerNorm(x, params.lnW, params.lnB), params.qkvW, params.qkvB), H));
        const rec = linear(gelu(sliceTokens(h, 1, K)), params.predW);
        const target = gatherRows(patches, keepIdx);
        const loss1 = maskedMse(rec, target, mask, true);
        const feats = batchNorm(meanTokens(h), rm, rv, true);
        const loss2 = crossEntropy(linear(feats, params.headW), labels, 0.1);
        const loss = add(loss1, loss2);
        loss.backward();
        return loss.item();
      });
    const l1 = step();
    expect(Number.isFinite(l1)).toBe(true);
    for (const t of Object.values(params)) expect(t.grad, 'every parameter gets a gradient').not.toBeNull();
    expect(liveTensors()).toBe(start + 2 * n + 6);
    step();
    expect(liveTensors()).toBe(start + 2 * n + 6);
    for (const t of [...Object.values(params), imgs, rm, rv, keepIdx, labels, mask]) t.dispose();
    expect(liveTensors()).toBe(start);
  });

  it('owning disposes what its job kept, in reverse order, when the job returns and when it throws', async () => {
    const start = liveTensors();
    const order: string[] = [];
    const r = await owning(async (k) => {
      const t = k(Tensor.fromArray(new Float32Array([1, 2]), [2]));
      k({ dispose: () => order.push('first') });
      k({ dispose: () => order.push('second') });
      await Promise.resolve();
      return t.dataSync()[1];
    });
    expect(r).toBe(2);
    expect(order).toEqual(['second', 'first']);
    expect(liveTensors()).toBe(start);
    await expect(
      owning(async (k) => {
        k(Tensor.fromArray(new Float32Array(3), [3]));
        throw new Error('job failed');
      }),
    ).rejects.toThrow('job failed');
    expect(liveTensors()).toBe(start);
  });
});
