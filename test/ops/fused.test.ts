// Tests for the fused ops (native/cpu: bias_gelu, add_layernorm, the LayerNorm backward's residual gradient, AdamW's
// bf16 shadows) against double-precision references and central differences, the autograd hook that lets the
// LayerNorm backward take the residual stream's gradient (backwardAdd), and the fused model path against the
// unfused one (MAE_FUSED=0) on the same weights.
import { afterEach, describe, expect, it } from 'vitest';
import { MaskedAutoencoder } from '../../lib/mae/model.js';
import { native } from '../../lib/native.js';
import { add, addLayerNorm, biasGelu, layerNorm, linear } from '../../lib/ops/index.js';
import { Tensor, liveTensors, tidy } from '../../lib/tensor.js';
import { roundBf16 } from '../../tools/cuda-cases.js';
import { expectClose, expectGradClose, numericGrad } from '../helpers/gradcheck.js';
import { randn, rng } from '../helpers/random.js';
import * as ref from '../helpers/reference.js';
import { gradOf, project, tensor } from '../helpers/tensors.js';

const fusedBefore = process.env.MAE_FUSED;
afterEach(() => {
  if (fusedBefore === undefined) delete process.env.MAE_FUSED;
  else process.env.MAE_FUSED = fusedBefore;
});

/** x + b per row: x [rows, N], b [N], in double */
function addRows(x: ArrayLike<number>, b: ArrayLike<number>, rows: number, N: number): Float64Array {
  const h = new Float64Array(rows * N);
  for (let r = 0; r < rows; r++) for (let j = 0; j < N; j++) h[r * N + j] = x[r * N + j]! + b[j]!;
  return h;
}

describe('biasGelu', () => {
  for (const [rows, N] of [[1, 1], [5, 7], [3, 16], [13, 40]] as [number, number][])
    it(`forward and backward on [${rows}, ${N}] against the double reference`, () =>
      tidy(() => {
        const g = rng(rows * 100 + N);
        const x = randn(g, rows * N, 2);
        const b = randn(g, N, 0.7);
        const r = randn(g, rows * N);
        const xt = tensor(x, [rows, N], true);
        const bt = tensor(b, [N], true);
        const y = biasGelu(xt, bt);
        const h = addRows(x, b, rows, N);
        expectClose(y.dataSync(), ref.gelu(h), { rtol: 1e-5, atol: 1e-6, label: 'y' });
        project(y, r).backward();
        const dh = ref.mul(ref.geluGrad(h), r);
        expectClose(gradOf(xt), dh, { rtol: 1e-5, atol: 1e-6, label: 'dx' });
        expectClose(gradOf(bt), ref.sumTo(dh, N), { rtol: 1e-5, atol: 1e-5, label: 'db' });
      }));

  it('matches central differences of the double reference in x and bias', () =>
    tidy(() => {
      const g = rng(77);
      const [rows, N] = [4, 6];
      const x = randn(g, rows * N, 1.5);
      const b = randn(g, N);
      const r = randn(g, rows * N);
      const xt = tensor(x, [rows, N], true);
      const bt = tensor(b, [N], true);
      project(biasGelu(xt, bt), r).backward();
      const f = ([xx, bb]: Float64Array[]): number => ref.sumAll(ref.mul(ref.gelu(addRows(xx!, bb!, rows, N)), r));
      expectGradClose(gradOf(xt), numericGrad(f, [x, b], 0), { label: 'dx' });
      expectGradClose(gradOf(bt), numericGrad(f, [x, b], 1), { label: 'db' });
    }));

  it('native biasGeluBackward without db returns null for it and the same dx', () =>
    tidy(() => {
      const g = rng(5);
      const x = tensor(randn(g, 12), [3, 4]);
      const b = tensor(randn(g, 4), [4]);
      const dy = tensor(randn(g, 12), [3, 4]);
      const [dx1, db1] = native.biasGeluBackward(x.handle, b.handle, dy.handle, true);
      const [dx2, db2] = native.biasGeluBackward(x.handle, b.handle, dy.handle, false);
      expect(db2).toBeNull();
      expect(Array.from(dx2.read())).toEqual(Array.from(dx1.read()));
      expect(db1!.shape).toEqual([4]);
      for (const t of [dx1, db1!, dx2]) t.dispose();
    }));
});

describe('addLayerNorm', () => {
  for (const shape of [[1, 4], [3, 5, 7], [2, 64], [6, 33]])
    it(`s = x + r and y = layerNorm(s) on [${shape}], with the gradients of both`, () =>
      tidy(() => {
        const g = rng(300 + shape.reduce((a, b) => a * b, 1));
        const D = shape[shape.length - 1]!;
        const rows = shape.reduce((a, b) => a * b, 1) / D;
        const x = randn(g, rows * D, 2);
        const r = randn(g, rows * D);
        const w = randn(g, D).map((v) => 1 + 0.3 * v);
        const b = randn(g, D, 0.5);
        const ps = randn(g, rows * D);
        const py = randn(g, rows * D);
        const xt = tensor(x, shape, true);
        const rt = tensor(r, shape, true);
        const wt = tensor(w, [D], true);
        const bt = tensor(b, [D], true);
        const { s, y } = addLayerNorm(xt, rt, wt, bt, 1e-6);
        const sRef = ref.add(x, r);
        expectClose(s.dataSync(), sRef, { rtol: 1e-6, atol: 1e-6, label: 's' });
        expectClose(y.dataSync(), ref.layerNorm(sRef, w, b, rows, D, 1e-6).y, { rtol: 1e-5, atol: 1e-5, label: 'y' });
        // loss = sum(s * ps) + sum(y * py): s reaches the loss directly (the residual stream) and through y
        project(s, ps).backward();
        const e = ref.layerNormBackward(sRef, w, py, rows, D, 1e-6);
        const ds = ref.add(e.dx, ps);
        tidy(() => {
          // a second graph for y alone, accumulating into the same leaves
          const again = addLayerNorm(xt, rt, wt, bt, 1e-6);
          project(again.y, py).backward();
        });
        expectClose(gradOf(xt), ds, { rtol: 1e-4, atol: 1e-5, label: 'dx' });
        expectClose(gradOf(rt), ds, { rtol: 1e-4, atol: 1e-5, label: 'dr' });
        expectClose(gradOf(wt), e.dw, { rtol: 1e-4, atol: 1e-5, label: 'dw' });
        expectClose(gradOf(bt), e.db, { rtol: 1e-4, atol: 1e-5, label: 'db' });
      }));

  it('the residual gradient goes through the LayerNorm backward (backwardAdd), with the unfused values', () => {
    // loss = sum(y * py) + sum(s * ps): s's own gradient is there before the LayerNorm's backward runs
    const run = (fused: boolean) => {
      process.env.MAE_FUSED = fused ? '1' : '0';
      const calls: number[] = [];
      const saved = native.layerNormBackward;
      native.layerNormBackward = (...a) => {
        calls.push(a[5] ? 1 : 0);
        return saved(...a);
      };
      try {
        return tidy(() => {
          const g = rng(41);
          const [rows, D] = [7, 24];
          const xt = tensor(randn(g, rows * D, 2), [rows, D], true);
          const rt = tensor(randn(g, rows * D), [rows, D], true);
          const wt = tensor(randn(g, D).map((v) => 1 + 0.3 * v), [D], true);
          const bt = tensor(randn(g, D, 0.5), [D], true);
          const ps = randn(g, rows * D);
          const py = randn(g, rows * D);
          const { s, y } = addLayerNorm(xt, rt, wt, bt, 1e-6);
          add(project(y, py), project(s, ps)).backward();
          return { calls, grads: [gradOf(xt), gradOf(rt), gradOf(wt), gradOf(bt)] };
        });
      } finally {
        native.layerNormBackward = saved;
      }
    };
    const f = run(true);
    const u = run(false);
    expect(f.calls).toEqual([1]); // one LayerNorm backward, given the residual gradient
    expect(u.calls).toEqual([0]);
    // the CPU computes the same sums in the same order either way: bitwise equal
    ['dx', 'dr', 'dw', 'db'].forEach((name, i) => expect(Array.from(f.grads[i]!), name).toEqual(Array.from(u.grads[i]!)));
  });

  it('native layerNormBackward adds dres to dx and leaves dw, db unchanged', () =>
    tidy(() => {
      const g = rng(8);
      const [rows, D] = [5, 9];
      const x = randn(g, rows * D, 2);
      const [mean, rstd] = lnStats(x, rows, D, 1e-6);
      const dy = tensor(randn(g, rows * D), [rows, D]);
      const xt = tensor(x, [rows, D]);
      const w = tensor(randn(g, D), [D]);
      const res = randn(g, rows * D);
      const m = tensor(mean, [rows]);
      const s = tensor(rstd, [rows]);
      const plain = native.layerNormBackward(dy.handle, xt.handle, w.handle, m.handle, s.handle);
      const withRes = native.layerNormBackward(dy.handle, xt.handle, w.handle, m.handle, s.handle, tensor(res, [rows, D]).handle);
      expectClose(withRes[0].read(), ref.add(plain[0].read(), res), { rtol: 1e-6, atol: 1e-6, label: 'dx + dres' });
      expect(Array.from(withRes[1].read())).toEqual(Array.from(plain[1].read()));
      expect(Array.from(withRes[2].read())).toEqual(Array.from(plain[2].read()));
      for (const t of [...plain, ...withRes]) t.dispose();
    }));
});

function lnStats(x: Float32Array, rows: number, D: number, eps: number): [Float32Array, Float32Array] {
  const r = ref.layerNorm(x, new Float32Array(D).fill(1), new Float32Array(D), rows, D, eps);
  return [Float32Array.from(r.mean), Float32Array.from(r.rstd)];
}

describe('adamwStep with bf16 shadows', () => {
  it('writes the updated parameters rounded to bfloat16 (nearest even) into the shadows, and only there', () =>
    tidy(() => {
      const g = rng(12);
      // sizes past AdamW's chunks of 2048 and the threads' split of all elements, so that the shadows' streamed
      // stores start and end at every offset from a 64-byte line (convert.cpp, to_bf16_stream)
      const sizes = [5, 17, 1, 1000, 4133, 77];
      const ps = sizes.map((n) => tensor(randn(g, n), [n]));
      const grads = sizes.map((n) => tensor(randn(g, n), [n]));
      const ms = sizes.map((n) => tensor(new Float32Array(n), [n]));
      const vs = sizes.map((n) => tensor(new Float32Array(n), [n]));
      const shadows = ps.map((p, i) => (i === 1 ? null : new Tensor(native.to(p.handle, 'cpu', 'bfloat16'))));
      const before1 = ps[1]!.dataSync();
      const h = (ts: Tensor[]) => ts.map((t) => t.handle);
      native.adamwStep(h(ps), h(grads), h(ms), h(vs), sizes.map(() => 1e-2), sizes.map((_, i) => (i === 1 ? 0 : 0.05)), 0.9, 0.95, 1e-8, 1, shadows.map((t) => t?.handle ?? null));
      for (const [i, sh] of shadows.entries()) if (sh) expect(Array.from(sh.dataSync()), `shadow ${i}`).toEqual(Array.from(roundBf16(ps[i]!.dataSync())));
      // the parameters moved (and the one without a shadow too)
      expect(Array.from(ps[1]!.dataSync())).not.toEqual(Array.from(before1));
    }));
});

describe('the fused model path', () => {
  const config = {
    imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 4,
    decoderEmbedDim: 16, decoderDepth: 2, decoderNumHeads: 2, mlpRatio: 4, normPixLoss: true,
  };
  function step(fused: boolean): { loss: number; grads: Map<string, Float32Array> } {
    process.env.MAE_FUSED = fused ? '1' : '0';
    const model = new MaskedAutoencoder(config, { seed: 3 });
    try {
      const g = rng(19);
      const imgs = tensor(randn(g, 2 * 3 * 16 * 16), [2, 3, 16, 16]);
      const noise = g.uniformArray(2 * 16);
      const loss = tidy(() => {
        const out = model.forward(imgs, { noise, maskRatio: 0.75 });
        out.loss.backward();
        return out.loss.item();
      });
      imgs.dispose();
      const grads = new Map<string, Float32Array>();
      for (const [name, p] of model.namedParameters()) if (p.grad) grads.set(name, p.grad.dataSync());
      return { loss, grads };
    } finally {
      model.dispose();
    }
  }

  it('gives the unfused loss and gradients (fp32 on the CPU) and leaves no tensors behind', () => {
    const live = liveTensors();
    const f = step(true);
    const u = step(false);
    expect(liveTensors()).toBe(live);
    expect(Math.abs(f.loss - u.loss) / Math.abs(u.loss)).toBeLessThan(1e-6);
    expect([...f.grads.keys()]).toEqual([...u.grads.keys()]);
    for (const [name, gu] of u.grads) expectClose(f.grads.get(name)!, gu, { rtol: 1e-4, atol: 1e-6, label: name });
  });

  it('uses the fused ops when on: biasGelu and addLayerNorm replace gelu and the residual adds', () => {
    // counted through the native entry points the two paths call
    const counts = (fused: boolean): Record<string, number> => {
      process.env.MAE_FUSED = fused ? '1' : '0';
      const seen: Record<string, number> = {};
      const names = ['gelu', 'biasGelu', 'addLayerNorm', 'layerNorm'] as const;
      const saved = names.map((n) => native[n]);
      names.forEach((n, i) => {
        (native as unknown as Record<string, unknown>)[n] = (...a: unknown[]) => {
          seen[n] = (seen[n] ?? 0) + 1;
          return (saved[i] as (...x: unknown[]) => unknown)(...a);
        };
      });
      const model = new MaskedAutoencoder(config, { seed: 3 });
      try {
        tidy(() => {
          const imgs = tensor(randn(rng(1), 2 * 3 * 16 * 16), [2, 3, 16, 16]);
          model.forward(imgs, { maskRatio: 0.75 });
        });
      } finally {
        names.forEach((n, i) => ((native as unknown as Record<string, unknown>)[n] = saved[i]));
        model.dispose();
      }
      return seen;
    };
    const f = counts(true);
    const u = counts(false);
    // 2 encoder + 2 decoder blocks: 4 MLPs; norms: 2 per block + the two final ones = 10
    expect(u).toEqual({ gelu: 4, layerNorm: 10 });
    // fused: every norm but each stack's first norm1 takes its residual add
    expect(f).toEqual({ biasGelu: 4, addLayerNorm: 8, layerNorm: 2 });
  });
});

describe('linear with a bf16 weight copy', () => {
  it('reads the copy, not the weight, and still gives the weight its float32 gradient', () =>
    tidy(() => {
      const w = tensor(randn(rng(2), 12), [3, 4], true);
      const shadow = new Tensor(native.to(w.handle, 'cpu', 'bfloat16'));
      const x = new Tensor(native.to(tensor(randn(rng(3), 8), [2, 4]).handle, 'cpu', 'bfloat16'));
      const y = linear(x, w, null, shadow);
      expect(y.dtype).toBe('bfloat16');
      const want = ref.linear(x.dataSync(), shadow.dataSync(), null, 2, 4, 3);
      expectClose(y.dataSync(), want, { rtol: 2 ** -8, atol: 1e-6, label: 'y' });
      // a shadow that no longer matches the weight is what the product reads (staleness is the caller's: shadow.ts)
      native.fill(shadow.handle, 0);
      expect(Array.from(linear(x, w, null, shadow).dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
      y.backward(tensor(new Float32Array(6).fill(1), [2, 3]));
      expect(w.grad!.dtype).toBe('float32');
    }));
});
