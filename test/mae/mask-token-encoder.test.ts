// The mask-token encoder (MaeConfig.maskTokenEncoder, the paper's "encoder w/ [M]"): the encoder sees every patch,
// the removed ones replaced by encoder_mask_token; the decoder takes its 1 + L outputs; the loss is on the removed
// patches. Shapes, what reaches the encoder, the loss, finite-difference gradients, and loading MAE/official weights.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { noGrad } from '../../lib/autograd.js';
import { loadSafetensors, saveSafetensors } from '../../lib/io/state.js';
import { MaskedAutoencoder } from '../../lib/mae/index.js';
import { Generator } from '../../lib/random.js';
import { Tensor, liveTensors, tidy } from '../../lib/tensor.js';
import { pretrainOptions } from '../../lib/cli.js';

const tiny = { imgSize: 8, patchSize: 2, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, decoderEmbedDim: 8, decoderDepth: 1, decoderNumHeads: 2 };
const L = 16;
const P = 12;

function imageData(B: number, seed = 3): Float32Array {
  return new Generator(seed).normalArray(B * 3 * 8 * 8);
}
const images = (data: Float32Array, B: number) => Tensor.fromArray(data, [B, 3, 8, 8]);
const noiseFor = (B: number, seed = 7) => new Generator(seed).uniformArray(B * L);

describe('maskTokenEncoder', () => {
  it('has encoder_mask_token instead of the decoder mask_token, and otherwise the MAE model\'s initial weights', () => {
    const mt = new MaskedAutoencoder({ ...tiny, maskTokenEncoder: true }, { seed: 1 });
    const mae = new MaskedAutoencoder(tiny, { seed: 1 });
    const a = mt.stateDict();
    const b = mae.stateDict();
    expect(a.get('encoder_mask_token')!.shape).toEqual([1, 1, 16]);
    expect(a.has('mask_token')).toBe(false);
    expect(mt.mask_token).toBeNull();
    expect(mae.encoder_mask_token).toBeNull();
    expect([...a.keys()].filter((k) => k !== 'encoder_mask_token')).toEqual([...b.keys()].filter((k) => k !== 'mask_token'));
    for (const [k, t] of a) if (k !== 'encoder_mask_token') expect(Array.from(t.dataSync()), k).toEqual(Array.from(b.get(k)!.dataSync()));
    // drawn N(0, 0.02) like the other tokens, and in the decay group
    const tok = a.get('encoder_mask_token')!.dataSync();
    expect(tok.some((v) => v !== 0)).toBe(true);
    expect(Math.max(...tok.map(Math.abs))).toBeLessThan(0.1);
    expect(mt.parameterGroups(0.05)[1]!.names).toContain('encoder_mask_token');
  });

  it('runs the encoder on all L patches and the decoder on its outputs: shapes forward and backward, no leaks', () => {
    const mt = new MaskedAutoencoder({ ...tiny, maskTokenEncoder: true }, { seed: 1 });
    const before = liveTensors();
    tidy(() => {
      const x = images(imageData(2), 2);
      const idsKeep = Tensor.fromArray(new Int32Array([0, 5, 9, 12, 3, 4, 8, 15]), [2, 4]);
      const mask = new Float32Array(2 * L).fill(1);
      const idsRestore = new Int32Array(2 * L);
      for (let b = 0; b < 2; b++) {
        const keep = Array.from(idsKeep.dataSync().subarray(b * 4, b * 4 + 4));
        const order = [...keep, ...Array.from({ length: L }, (_, i) => i).filter((i) => !keep.includes(i))];
        order.forEach((l, k) => (idsRestore[b * L + l] = k));
        for (const l of keep) mask[b * L + l] = 0;
      }
      const latent = mt.forwardEncoder(x, idsKeep, 'fp32', Tensor.fromArray(idsRestore, [2, L]));
      expect(latent.shape).toEqual([2, L + 1, 16]);
      expect(mt.forwardDecoder(latent, null).shape).toEqual([2, L, P]);
      expect(() => mt.forwardEncoder(x, idsKeep)).toThrow(/needs idsRestore/);
      expect(() => mt.forwardDecoder(latent, Tensor.fromArray(idsRestore, [2, L]))).toThrow(/pass idsRestore null/);

      const out = mt.forward(x, { noise: noiseFor(2) });
      expect(out.pred.shape).toEqual([2, L, P]);
      expect(out.mask.shape).toEqual([2, L]);
      const m = out.mask.dataSync();
      for (let b = 0; b < 2; b++) expect(m.subarray(b * L, (b + 1) * L).reduce((s, v) => s + v, 0)).toBe(12);
      out.loss.backward();
      for (const [name, p] of mt.namedParameters()) {
        if (!p.requiresGrad) continue;
        expect(p.grad, name).not.toBeNull();
        expect(p.grad!.shape, name).toEqual(p.shape);
      }
      const g = mt.encoder_mask_token!.grad!.dataSync();
      expect(Math.sqrt(g.reduce((s, v) => s + v * v, 0))).toBeGreaterThan(1e-4);
    });
    mt.zeroGrad();
    expect(liveTensors()).toBe(before);
  });

  it('masks the same patches as MAE for the same noise; removed patches reach the encoder only as the token', () => {
    const mt = new MaskedAutoencoder({ ...tiny, maskTokenEncoder: true }, { seed: 2 });
    const mae = new MaskedAutoencoder(tiny, { seed: 2 });
    const noise = noiseFor(2);
    const data = imageData(2);
    noGrad(() =>
      tidy(() => {
        const base = mt.forward(images(data, 2), { noise });
        expect(Array.from(base.mask.dataSync())).toEqual(Array.from(mae.forward(images(data, 2), { noise }).mask.dataSync()));
        const m = base.mask.dataSync();
        const pred0 = base.pred.dataSync();
        const removed = m.indexOf(1);
        const kept = m.indexOf(0);
        // patch l of image 0 covers rows 2 * (l / 4) .. +1 and columns 2 * (l % 4) .. +1 of every channel
        const change = (l: number) => {
          const d = Float32Array.from(data);
          for (let c = 0; c < 3; c++) for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) d[c * 64 + (2 * Math.floor(l / 4) + i) * 8 + 2 * (l % 4) + j]! += 1;
          return mt.forward(images(d, 2), { noise }).pred.dataSync();
        };
        expect(Array.from(change(removed))).toEqual(Array.from(pred0));
        expect(Array.from(change(kept))).not.toEqual(Array.from(pred0));
        // ... and the token does reach the encoder: changing it changes the prediction
        const t = mt.encoder_mask_token!;
        const saved = t.dataSync();
        t.write(saved.map((v) => v + 0.5));
        expect(Array.from(mt.forward(images(data, 2), { noise }).pred.dataSync())).not.toEqual(Array.from(pred0));
        t.write(saved);
      }),
    );
  });

  for (const normPixLoss of [false, true])
    it(`puts the loss on the removed patches only (normPixLoss ${normPixLoss})`, () => {
      const mt = new MaskedAutoencoder({ ...tiny, maskTokenEncoder: true, normPixLoss }, { seed: 4 });
      noGrad(() =>
        tidy(() => {
          const x = images(imageData(3, 5), 3);
          const { loss, pred, mask } = mt.forward(x, { noise: noiseFor(3, 9) });
          const p = pred.dataSync();
          const t = mt.patchify(x).dataSync();
          const m = mask.dataSync();
          let removed = 0;
          let all = 0;
          for (let i = 0; i < 3 * L; i++) {
            const tp = Array.from(t.subarray(i * P, (i + 1) * P));
            let target = tp;
            if (normPixLoss) {
              const mean = tp.reduce((a, b) => a + b, 0) / P;
              const v = tp.reduce((a, b) => a + (b - mean) ** 2, 0) / (P - 1);
              target = tp.map((y) => (y - mean) / Math.sqrt(v + 1e-6));
            }
            let e = 0;
            for (let k = 0; k < P; k++) e += (p[i * P + k]! - target[k]!) ** 2;
            removed += m[i]! * (e / P);
            all += e / P;
          }
          const expected = removed / m.reduce((a, b) => a + b, 0);
          expect(Math.abs(loss.item() - expected) / expected).toBeLessThan(1e-5);
          expect(Math.abs(loss.item() - all / (3 * L)) / expected).toBeGreaterThan(1e-3);
        }),
      );
    });

  it('has the gradients of finite differences (tiny model, every parameter tensor along a random direction, the token entry by entry)', () => {
    const mt = new MaskedAutoencoder({ ...tiny, maskTokenEncoder: true }, { seed: 6 });
    const data = imageData(2, 11);
    const noise = noiseFor(2, 13);
    const lossAt = () => noGrad(() => tidy(() => mt.forward(images(data, 2), { noise }).loss.item()));
    const grads = new Map<string, Float32Array>();
    tidy(() => {
      const out = mt.forward(images(data, 2), { noise });
      out.loss.backward();
    });
    for (const [name, p] of mt.namedParameters()) if (p.requiresGrad) grads.set(name, p.grad!.dataSync());
    mt.zeroGrad();

    // d/dh loss(theta + h v) at 0 by central differences against <grad, v>
    const h = 3e-3;
    const directional = (p: Tensor, v: Float32Array) => {
      const x0 = p.dataSync();
      p.write(x0.map((x, i) => x + h * v[i]!));
      const up = lossAt();
      p.write(x0.map((x, i) => x - h * v[i]!));
      const down = lossAt();
      p.write(x0);
      return (up - down) / (2 * h);
    };
    const g = new Generator(17);
    let checked = 0;
    for (const [name, p] of mt.namedParameters()) {
      if (!p.requiresGrad) continue;
      const v = g.normalArray(p.size);
      const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
      for (let i = 0; i < v.length; i++) v[i]! /= n;
      const gr = grads.get(name)!;
      const analytic = gr.reduce((s, x, i) => s + x * v[i]!, 0);
      const numeric = directional(p, v);
      const scale = Math.sqrt(gr.reduce((s, x) => s + x * x, 0));
      expect(Math.abs(analytic - numeric), `${name}: <grad, v> ${analytic} vs finite difference ${numeric}`).toBeLessThan(2e-3 * scale + 2e-5);
      checked++;
    }
    expect(checked).toBe(mt.parameters().length);

    const token = mt.encoder_mask_token!;
    const gt = grads.get('encoder_mask_token')!;
    const fd = Array.from({ length: token.size }, (_, i) => {
      const e = new Float32Array(token.size);
      e[i] = 1;
      return directional(token, e);
    });
    const err = Math.sqrt(fd.reduce((s, x, i) => s + (x - gt[i]!) ** 2, 0));
    const size = Math.sqrt(gt.reduce((s, x) => s + x * x, 0));
    expect(size).toBeGreaterThan(1e-3);
    expect(err / size).toBeLessThan(1e-2);
  });

  it('loads an official / MAE state dict with encoder_mask_token left at its init and says so; saves and loads its own', async () => {
    const mae = new MaskedAutoencoder(tiny, { seed: 1 });
    const mt = new MaskedAutoencoder({ ...tiny, maskTokenEncoder: true }, { seed: 9 });
    const token0 = Array.from(mt.encoder_mask_token!.dataSync());
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    const r = mt.loadStateDict(mae.stateDict());
    await new Promise((resolve) => setImmediate(resolve));
    process.off('warning', onWarning);
    expect(r.initialised).toEqual(['encoder_mask_token']);
    expect(r.skipped).toEqual(['mask_token']);
    expect(r.missing).toEqual([]);
    expect(warnings.join('\n')).toMatch(/no encoder_mask_token .*keeps its initial value.*decoder mask_token was skipped/);
    expect(Array.from(mt.encoder_mask_token!.dataSync())).toEqual(token0);
    expect(Array.from(mt.stateDict().get('blocks.1.mlp.fc2.weight')!.dataSync())).toEqual(Array.from(mae.stateDict().get('blocks.1.mlp.fc2.weight')!.dataSync()));
    // strict loading still names what else is missing
    const partial = new Map(mae.stateDict());
    partial.delete('norm.bias');
    expect(() => mt.loadStateDict(partial)).toThrow(/missing keys:\n  norm\.bias$/);
    // not a Map: the same Error as any model's (it was a TypeError from copying the state)
    for (const bad of [null, 1, [['norm.bias', 1]]])
      expect(() => mt.loadStateDict(bad as unknown as Map<string, Tensor>)).toThrow(/^loadStateDict: state must be a Map from parameter names to Tensors or \{ shape, data \} records, got /);

    const dir = mkdtempSync(join(tmpdir(), 'mae-mt-'));
    await saveSafetensors(join(dir, 'mt.safetensors'), mt.stateDict());
    const again = new MaskedAutoencoder({ ...tiny, maskTokenEncoder: true }, { seed: 10 });
    const r2 = again.loadStateDict(await loadSafetensors(join(dir, 'mt.safetensors')));
    expect(r2.initialised).toEqual([]);
    expect(Array.from(again.encoder_mask_token!.dataSync())).toEqual(token0);
  });

  it('is chosen by --mask-token-encoder on mae pretrain', () => {
    expect(pretrainOptions(['--mask-token-encoder']).config).toEqual({ maskTokenEncoder: true });
    expect(pretrainOptions([]).config).toBeUndefined();
  });
});
