// Tests for lib/autograd.ts: accumulation across backward calls (also for leaves whose gradients come from one
// shared upstream gradient), noGrad, leaves without requiresGrad, reuse of a consumed graph, the checks on the
// seed gradient, onGradReady (each leaf once, when its gradient is final, while backward goes on), and a pre-norm
// transformer block built from lib/ops checked against central differences of its double-precision reference for
// the input and every parameter.
import { describe, expect, it } from 'vitest';
import { isGradEnabled, noGrad, record, type BackwardOptions } from '../lib/autograd.js';
import { MaskedAutoencoder } from '../lib/mae/model.js';
import { add, attention, gelu, layerNorm, linear, mul, scale, sum } from '../lib/ops/index.js';
import { native } from '../lib/native.js';
import { Tensor, tidy } from '../lib/tensor.js';
import { expectClose, expectGradClose, numericGrad } from './helpers/gradcheck.js';
import { randn, rng } from './helpers/random.js';
import * as ref from './helpers/reference.js';
import { gradOf, project, tensor } from './helpers/tensors.js';

/** How many times fn copies a tensor (native.clone). */
function clonesIn(fn: () => void): number {
  const clone = native.clone;
  let n = 0;
  (native as { clone: typeof clone }).clone = (t) => (n++, clone(t));
  try {
    fn();
  } finally {
    (native as { clone: typeof clone }).clone = clone;
  }
  return n;
}

describe('gradient accumulation', () => {
  it('adds the gradients of two backward calls', () =>
    tidy(() => {
      const g = rng(1);
      const x = randn(g, 6);
      const c = randn(g, 6);
      const xt = tensor(x, [2, 3], true);
      project(xt, c).backward();
      expectClose(gradOf(xt), c, { rtol: 0 });
      project(scale(xt, 3), c).backward();
      expectClose(gradOf(xt), ref.mul(c, [4]), { rtol: 1e-6 });
    }));

  it('keeps the gradients of two leaves apart when both come from one upstream gradient', () =>
    tidy(() => {
      // d(a + b) gives a and b the same upstream gradient; each leaf must own its .grad
      const a = tensor([1, 2, 3], [3], true);
      const b = tensor([4, 5, 6], [3], true);
      sum(add(a, b)).backward();
      sum(add(a, b)).backward();
      expect(Array.from(gradOf(a))).toEqual([2, 2, 2]);
      expect(Array.from(gradOf(b))).toEqual([2, 2, 2]);
      // an in-place change to one leaf's gradient (an optimizer zeroing it) leaves the other alone
      a.grad!.write(new Float32Array(3));
      expect(Array.from(gradOf(b))).toEqual([2, 2, 2]);
    }));

  it('does not let a later contribution to an intermediate leak into a leaf that shared its upstream gradient', () =>
    tidy(() => {
      // loss = sum(h * c) + sum(h + w), h = 2 x: dw = 1, dx = 2 (c + 1)
      const g = rng(2);
      const x = randn(g, 4);
      const c = randn(g, 4);
      const xt = tensor(x, [4], true);
      const w = tensor(randn(g, 4), [4], true);
      const h = scale(xt, 2);
      add(sum(mul(h, tensor(c, [4]))), sum(add(h, w))).backward();
      expectClose(gradOf(w), [1, 1, 1, 1], { rtol: 0, label: 'dw' });
      expectClose(gradOf(xt), ref.mul(ref.add(c, [1]), [2]), { rtol: 1e-6, label: 'dx' });
    }));

  it('takes the weight gradients of linear and layerNorm as the leaves\' .grad without copying them, and stays correct', () =>
    tidy(() => {
      // y = sum(linear(x, w, b) + layerNorm(x)) : w, b and the norm's parameters are leaves fed by unshared gradients;
      // x gets linear's dx (unshared, accumulated into in place) plus layerNorm's dx
      const g = rng(5);
      const x = tensor(randn(g, 12), [3, 4], true);
      const w = tensor(randn(g, 16), [4, 4], true);
      const b = tensor(randn(g, 4), [4], true);
      const nw = tensor(randn(g, 4), [4], true);
      const nb = tensor(randn(g, 4), [4], true);
      const loss = sum(add(linear(x, w, b), layerNorm(x, nw, nb)));
      // no copy: add() passes views of its dy down, which are only read; the leaves take the unshared gradients and
      // x's two contributions are summed into the first (before unsharedGrad: one copy per leaf and one for x)
      expect(clonesIn(() => loss.backward())).toBe(0);
      expectClose(gradOf(w), Array.from({ length: 16 }, (_, i) => [0, 1, 2].reduce((s, r) => s + x.dataSync()[r * 4 + (i % 4)]!, 0)), { rtol: 1e-6, label: 'dw' });
      expectClose(gradOf(b), [3, 3, 3, 3], { rtol: 0, label: 'db' });
      // a second backward accumulates into the same .grad tensors
      const gw = w.grad;
      sum(add(linear(x, w, b), layerNorm(x, nw, nb))).backward();
      expect(w.grad).toBe(gw);
      expectClose(gradOf(b), [6, 6, 6, 6], { rtol: 0, label: 'db twice' });

      // a residual: x gets a view of dy from add() first or second, and linear's unshared dx; summed without a copy
      const r = tensor(randn(g, 12), [3, 4], true);
      const loss2 = sum(add(r, linear(r, w)));
      expect(clonesIn(() => loss2.backward())).toBe(0);
      const wd = w.dataSync();
      const colSum = [0, 1, 2, 3].map((k) => [0, 1, 2, 3].reduce((s, n) => s + wd[n * 4 + k]!, 0));
      expectClose(gradOf(r), Array.from({ length: 12 }, (_, i) => 1 + colSum[i % 4]!), { rtol: 1e-6, label: 'd residual' });
    }));

  it('refuses a .grad it cannot add to before adding to any leaf', () =>
    tidy(() => {
      const a = tensor([1, 2], [2], true);
      const b = tensor([3, 4], [2], true);
      const disposed = tensor([0, 0], [2]);
      disposed.dispose();
      const bad: [unknown, string][] = [
        [disposed, 'backward: the .grad of a leaf [2] has been disposed; set .grad to null to start a new gradient'],
        [tensor([0, 0], [1, 2]), "backward: the .grad of a leaf [2] is float32 [1, 2] on cpu; backward adds to a float32 or bfloat16 gradient of the leaf's shape on its device (cpu)"],
        [Tensor.fromArray(new Int32Array(2), [2]), "backward: the .grad of a leaf [2] is int32 [2] on cpu; backward adds to a float32 or bfloat16 gradient of the leaf's shape on its device (cpu)"],
        [[0, 0], 'backward: the .grad of a leaf [2] must be a Tensor or null, got an array of 2'],
      ];
      for (const [g, message] of bad) {
        // a's gradient is final before b's: it was added to a.grad before b's .grad was found wrong
        a.grad = tensor([10, 10], [2]).keep();
        b.grad = g as Tensor;
        expect(() => sum(add(a, scale(b, 3))).backward()).toThrow(new Error(message));
        expect(Array.from(gradOf(a))).toEqual([10, 10]);
        a.grad.dispose();
      }
      b.grad = null;
      a.grad = null;
    }));

  it('sums the gradients of a tensor used several times', () =>
    tidy(() => {
      const g = rng(3);
      const x = randn(g, 5);
      const xt = tensor(x, [5], true);
      // y = x * x + 3 x + x
      sum(add(add(mul(xt, xt), scale(xt, 3)), xt)).backward();
      expectClose(gradOf(xt), ref.add(ref.mul(x, [2]), [4]), { rtol: 1e-6 });
    }));
});

describe('recording', () => {
  it('noGrad records nothing and restores recording afterwards, also after a throw', () =>
    tidy(() => {
      const xt = tensor([1, 2], [2], true);
      const y = noGrad(() => {
        expect(isGradEnabled()).toBe(false);
        return scale(xt, 2);
      });
      expect(isGradEnabled()).toBe(true);
      expect(y.requiresGrad).toBe(false);
      expect(y.node).toBeNull();
      expect(() => sum(y).backward()).toThrow(/backward: .*does not require grad/);
      expect(() =>
        noGrad(() => {
          throw new Error('boom');
        }),
      ).toThrow('boom');
      expect(isGradEnabled()).toBe(true);
      expect(scale(xt, 2).requiresGrad).toBe(true);
    }));

  it('noGrad refuses an async function, whose ops after an await would be recorded', () => {
    const xt = tensor([1, 2], [2], true);
    let later: Promise<Tensor> | undefined;
    expect(() =>
      noGrad(() => {
        later = Promise.resolve().then(() => scale(xt, 2));
        return later;
      }),
    ).toThrow(/^noGrad: the function must be synchronous \(it returned a Promise\)/);
    expect(isGradEnabled()).toBe(true);
    return later!.then((y) => {
      // (what the refusal is about: that op ran with recording on)
      expect(y.requiresGrad).toBe(true);
      y.dispose();
      xt.dispose();
    });
  });

  it('gives no .grad to a leaf that does not require grad, and records nothing without such a leaf', () =>
    tidy(() => {
      const a = tensor([1, 2, 3], [3]);
      const b = tensor([4, 5, 6], [3], true);
      sum(mul(a, b)).backward();
      expect(a.grad).toBeNull();
      expect(Array.from(gradOf(b))).toEqual([1, 2, 3]);
      const c = mul(a, a);
      expect(c.requiresGrad).toBe(false);
      expect(c.node).toBeNull();
    }));

  it('backward through a graph that has been used throws a clear error', () =>
    tidy(() => {
      const g = rng(4);
      const x = tensor(randn(g, 12), [3, 4], true);
      const w = tensor(randn(g, 8), [2, 4], true);
      const loss = sum(gelu(linear(x, w)));
      loss.backward();
      expect(() => loss.backward()).toThrow(/already been used.*forward pass again/);
      // a fresh forward pass works again and accumulates
      const before = gradOf(w);
      sum(gelu(linear(x, w))).backward();
      expectClose(gradOf(w), ref.mul(before, [2]), { rtol: 1e-6 });
    }));

  it('refuses a graph with a tensor disposed before backward (by tidy or dispose), instead of dropping its gradient', () => {
    const a = tensor([1, 2, 3], [3], true);
    const loss = tidy(() => sum(gelu(a)).keep()); // tidy frees gelu's output, an inner tensor of loss's graph
    expect(() => loss.backward()).toThrow(/input 0 of sum \(a tensor \[3\]\) was disposed before backward/);
    expect(a.grad).toBeNull();
    tidy(() => {
      const w = tensor([1, 2], [2], true);
      const y = scale(w, 2);
      const l = sum(mul(y, y));
      w.dispose(); // a leaf that would receive a gradient
      expect(() => l.backward()).toThrow(/was disposed before backward/);
      l.dispose();
      expect(() => l.backward()).toThrow(/backward: tensor \[1\] has been disposed/);
    });
    loss.dispose();
    a.dispose();
  });

  it('refuses a graph whose backward would read values changed in place since the forward pass (write, an optimizer step)', () =>
    tidy(() => {
      const a = tensor([1, 2, 3], [3], true);
      const b = tensor([4, 5, 6], [3]);
      // mul's backward reads b (for a's gradient) and a (for b's): with b rewritten a's gradient would be the new b
      const l1 = sum(mul(a, b));
      b.write(new Float32Array([0, 0, 0]));
      expect(() => l1.backward()).toThrow('backward: the backward of mul reads its input 1 ([3]), whose values were changed in place (Tensor.write, an optimizer step) after the forward pass; its gradients would come from the new values: run the forward pass again after the change');
      expect(a.grad).toBeNull();
      // a parameter updated between the forward pass and backward (as an optimizer step does)
      const w = tensor([1, 2, 3, 4], [2, 2], true);
      const l2 = sum(gelu(linear(tensor([1, -1], [1, 2]), w)));
      w.write(new Float32Array([0, 0, 0, 0]));
      expect(() => l2.backward()).toThrow(/the backward of linear reads its input 1 \(\[2, 2\]\), whose values were changed in place/);
      expect(w.grad).toBeNull();
      // an op whose backward does not read its inputs (add) does not mind; a forward pass after the change is
      // differentiated as usual
      const l3 = sum(add(a, b));
      b.write(new Float32Array([2, 3, 4]));
      l3.backward();
      expect(Array.from(gradOf(a))).toEqual([1, 1, 1]);
      sum(mul(a, b)).backward();
      expect(Array.from(gradOf(a))).toEqual([3, 4, 5]);
    }));

  it('checks the seed gradient of a non-scalar output', () =>
    tidy(() => {
      const x = tensor([1, 2, 3, 4], [2, 2], true);
      const y = scale(x, 3);
      expect(() => y.backward()).toThrow(/not a scalar/);
      expect(() => y.backward(tensor([1, 2, 3], [3]))).toThrow(/does not match/);
      // what is not a gradient: an Error that says so, before anything is walked
      const disposed = tensor([1, 1, 1, 1], [2, 2]);
      disposed.dispose();
      const bad: [unknown, unknown, string][] = [
        [[1, 0, -1, 2], undefined, 'backward: grad must be a Tensor, got an array of 4'],
        [disposed, undefined, 'backward: the gradient [2, 2] has been disposed'],
        [Tensor.fromArray(new Int32Array([1, 0, -1, 2]), [2, 2]), undefined, 'backward: the gradient must be float32 or bfloat16, got int32 [2, 2]'],
        [tensor([1, 0, -1, 2], [2, 2]), { onGradReady: 'x' }, "backward: opts.onGradReady must be a function, got the string 'x'"],
        [tensor([1, 0, -1, 2], [2, 2]), null, 'backward: opts must be an object, got null'],
      ];
      for (const [g, opts, message] of bad) expect(() => y.backward(g as Tensor, opts as BackwardOptions)).toThrow(new Error(message));
      expect(x.grad).toBeNull();
      y.backward(tensor([1, 0, -1, 2], [2, 2]));
      expect(Array.from(gradOf(x))).toEqual([3, 0, -3, 6]);
    }));
});

describe('onGradReady', () => {
  it("tells of each leaf once, with its final gradient, as soon as the leaf's last use has been walked", () =>
    tidy(() => {
      // loss = sum(w2 * gelu(w1 * x) + w1): w1 is used twice, w2 only next to the loss
      const g = rng(5);
      const x = tensor(randn(g, 6), [6]);
      const w1 = tensor(randn(g, 6), [6], true);
      const w2 = tensor(randn(g, 6), [6], true);
      const heard: { leaf: Tensor; grad: Float32Array; others: (Tensor | null)[] }[] = [];
      const loss = sum(add(mul(w2, gelu(mul(w1, x))), w1));
      loss.backward(undefined, { onGradReady: (t) => heard.push({ leaf: t, grad: gradOf(t), others: [w1.grad, w2.grad].filter((o) => o !== t.grad) }) });
      expect(heard.map((h) => h.leaf)).toEqual([w2, w1]);
      // w2 was final before w1's gradient existed: the hook ran while backward was still walking the graph
      expect(heard[0]!.others).toEqual([null]);
      for (const h of heard) expect(Array.from(h.grad)).toEqual(Array.from(gradOf(h.leaf)));
      // a second backward accumulates: the hook sees the sum
      const first = gradOf(w1);
      let seen: Float32Array | null = null;
      sum(add(mul(w2, gelu(mul(w1, x))), w1)).backward(undefined, { onGradReady: (t) => (t === w1 ? (seen = gradOf(w1)) : null) });
      expect(Array.from(seen!)).toEqual(Array.from(gradOf(w1)));
      expectClose(gradOf(w1), ref.mul(first, [2]), { rtol: 1e-6 });
    }));

  it("finishes a leaf whose other use feeds a node that receives no gradient", () =>
    tidy(() => {
      // h = 2 w reaches the loss only through an op whose backward gives h no gradient; w's gradient is the direct use
      const w = tensor([1, 2, 3], [3], true);
      const h = scale(w, 2);
      const blocked = record('pass-first', [w, h], scale(w, 1), (dy) => [scale(dy, 1), null]);
      const heard: Tensor[] = [];
      sum(add(blocked, w)).backward(undefined, { onGradReady: (t) => heard.push(t) });
      expect(heard).toEqual([w]);
      expect(Array.from(gradOf(w))).toEqual([2, 2, 2]);
    }));

  it('hears of the MAE decoder head first and of the patch embedding last, each parameter once', () =>
    tidy(() => {
      const mae = new MaskedAutoencoder({ imgSize: 8, patchSize: 4, inChans: 1, embedDim: 8, depth: 2, numHeads: 2, decoderEmbedDim: 8, decoderDepth: 1, decoderNumHeads: 2 }, { seed: 1 });
      const names = new Map([...mae.namedParameters()].map(([n, p]) => [p, n]));
      const imgs = Tensor.fromArray(new Float32Array(2 * 64).map((_, i) => Math.sin(i)), [2, 1, 8, 8]);
      const { loss } = mae.forward(imgs, { maskRatio: 0.5, noise: new Float32Array(8).map((_, i) => ((i * 5) % 8) / 8) });
      const heard: string[] = [];
      const early: Float32Array[] = [];
      loss.backward(undefined, {
        onGradReady: (t) => {
          heard.push(names.get(t)!);
          if (heard.length === 1) early.push(gradOf(t));
          if (heard.length === 1) expect(mae.patch_embed.proj.weight.grad).toBeNull();
        },
      });
      const trained = [...mae.namedParameters()].filter(([, p]) => p.requiresGrad).map(([n]) => n);
      expect([...heard].sort()).toEqual([...trained].sort());
      expect(heard.slice(0, 2).sort()).toEqual(['decoder_pred.bias', 'decoder_pred.weight']);
      expect(heard.indexOf('patch_embed.proj.weight')).toBeGreaterThan(heard.indexOf('blocks.0.norm1.weight'));
      expect(heard.indexOf('blocks.0.norm1.weight')).toBeGreaterThan(heard.indexOf('decoder_embed.weight'));
      expect(Array.from(early[0]!)).toEqual(Array.from(gradOf(mae.decoder_pred.weight)));
      mae.dispose();
    }));
});

describe('a pre-norm transformer block', () => {
  const [B, N, D, H] = [2, 5, 8, 2];
  const F = 4 * D;
  // parameter name -> shape, in the order the reference takes them
  const params: [string, number[]][] = [
    ['norm1.weight', [D]],
    ['norm1.bias', [D]],
    ['qkv.weight', [3 * D, D]],
    ['qkv.bias', [3 * D]],
    ['proj.weight', [D, D]],
    ['proj.bias', [D]],
    ['norm2.weight', [D]],
    ['norm2.bias', [D]],
    ['fc1.weight', [F, D]],
    ['fc1.bias', [F]],
    ['fc2.weight', [D, F]],
    ['fc2.bias', [D]],
  ];

  // x + proj(attn(qkv(norm1(x)))), then + fc2(gelu(fc1(norm2(.)))) in double precision; xs = [x, ...params]
  function blockRef(xs: ArrayLike<number>[]): Float64Array {
    const [x, n1w, n1b, qw, qb, pw, pb, n2w, n2b, f1w, f1b, f2w, f2b] = xs as ArrayLike<number>[] & { length: 13 };
    const R = B * N;
    const qkv = ref.linear(ref.layerNorm(x!, n1w!, n1b!, R, D, 1e-6).y, qw!, qb!, R, D, 3 * D);
    const h = ref.add(x!, ref.linear(ref.attention(qkv, B, N, D, H).out, pw!, pb!, R, D, D));
    const m = ref.linear(ref.gelu(ref.linear(ref.layerNorm(h, n2w!, n2b!, R, D, 1e-6).y, f1w!, f1b!, R, D, F)), f2w!, f2b!, R, F, D);
    return ref.add(h, m);
  }

  function block(x: Tensor, p: Tensor[]): Tensor {
    const [n1w, n1b, qw, qb, pw, pb, n2w, n2b, f1w, f1b, f2w, f2b] = p as Tensor[] & { length: 12 };
    const h = add(x, linear(attention(linear(layerNorm(x, n1w!, n1b!, 1e-6), qw!, qb!), H), pw!, pb!));
    return add(h, linear(gelu(linear(layerNorm(h, n2w!, n2b!, 1e-6), f1w!, f1b!)), f2w!, f2b!));
  }

  it('forward matches the double reference', () =>
    tidy(() => {
      const g = rng(50);
      const x = randn(g, B * N * D);
      const pv = params.map(([name, s]) => initParam(g, name, s));
      const y = block(tensor(x, [B, N, D]), pv.map((v, i) => tensor(v, params[i]![1])));
      expectClose(y.dataSync(), blockRef([x, ...pv]), { rtol: 1e-5 });
    }));

  it('gradients for x and every parameter match central differences', () =>
    tidy(() => {
      const g = rng(51);
      const x = randn(g, B * N * D);
      const pv = params.map(([name, s]) => initParam(g, name, s));
      const r = randn(g, B * N * D);
      const xt = tensor(x, [B, N, D], true);
      const pt = pv.map((v, i) => tensor(v, params[i]![1], true));
      project(block(xt, pt), r).backward();
      const inputs = [x, ...pv];
      const f = (xs: Float64Array[]): number => ref.sumAll(ref.mul(blockRef(xs), r));
      expectGradClose(gradOf(xt), numericGrad(f, inputs, 0), { label: 'x' });
      params.forEach(([name], i) => {
        expect(pt[i]!.grad!.shape, name).toEqual(params[i]![1]);
        expectGradClose(gradOf(pt[i]!), numericGrad(f, inputs, i + 1), { label: name });
      });
    }));
});

/** Parameters near a trained block's: LayerNorm weights near 1, small biases, weights of std ~ 1/sqrt(fan_in). */
function initParam(g: ReturnType<typeof rng>, name: string, shape: number[]): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  if (name.startsWith('norm') && name.endsWith('weight')) return randn(g, n, 0.2).map((v) => 1 + v);
  if (name.endsWith('bias')) return randn(g, n, 0.1);
  return randn(g, n, 1 / Math.sqrt(shape[1]!));
}
