// The model against the official PyTorch code: loss, pred, mask and every gradient for the fixture's weights,
// images and noise (test/fixtures/mae-parity, made with facebookresearch/mae models_mae.py in float64).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../../lib/io/safetensors.js';
import { MaskedAutoencoder, configFromOfficial } from '../../lib/mae/index.js';
import { Tensor, liveTensors, tidy } from '../../lib/tensor.js';

const dir = new URL('../fixtures/mae-parity/', import.meta.url);
const cfg = JSON.parse(readFileSync(new URL('parity.json', dir), 'utf8'));

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num) / Math.sqrt(den);
}

function model(): MaskedAutoencoder {
  return new MaskedAutoencoder(configFromOfficial(cfg));
}

describe('MAE parity with the official code', async () => {
  const weights = (await readSafetensors(new URL('parity.safetensors', dir).pathname)).tensors;
  const io = (await readSafetensors(new URL('parity-io.safetensors', dir).pathname)).tensors;
  const get = (k: string) => {
    const t = io.get(k);
    if (!t) throw new Error(`fixture lacks ${k}`);
    return t as { shape: number[]; data: Float32Array };
  };

  it('matches loss, pred, mask and every gradient', () => {
    const mae = model();
    mae.loadStateDict(weights as Map<string, { shape: number[]; data: Float32Array }>);
    const images = get('images');
    const noise = get('noise');
    const before = liveTensors();
    const out = tidy(() => {
      const imgs = Tensor.fromArray(images.data, images.shape);
      const { loss, pred, mask } = mae.forward(imgs, { maskRatio: cfg.mask_ratio, noise: noise.data });
      loss.backward();
      return { loss: loss.item(), pred: pred.dataSync(), mask: mask.dataSync() };
    });
    expect(Math.abs(out.loss - cfg.loss) / Math.abs(cfg.loss)).toBeLessThan(1e-5);
    expect(Math.abs(out.loss - get('loss').data[0]!) / Math.abs(cfg.loss)).toBeLessThan(1e-5);
    expect(relErr(out.pred, get('pred').data)).toBeLessThan(1e-5);
    expect(Array.from(out.mask)).toEqual(Array.from(get('mask').data));

    let checked = 0;
    for (const [name, p] of mae.namedParameters()) {
      const ref = io.get(`grad.${name}`);
      if (!p.requiresGrad) {
        expect(ref, `${name} is fixed`).toBeUndefined();
        expect(p.grad).toBeNull();
        continue;
      }
      expect(ref, `fixture gradient for ${name}`).toBeDefined();
      expect(p.grad, `gradient of ${name}`).not.toBeNull();
      expect(p.grad!.shape).toEqual(ref!.shape);
      const e = relErr(p.grad!.dataSync(), ref!.data as Float32Array);
      expect(e, `gradient of ${name}: relative error ${e}`).toBeLessThan(1e-4);
      checked++;
    }
    expect(checked).toBe([...io.keys()].filter((k) => k.startsWith('grad.')).length);
    // only the parameter gradients outlive the step
    expect(liveTensors() - before).toBe(checked);
    mae.zeroGrad();
    expect(liveTensors()).toBe(before);
  });
});

describe('MAE parity with the official code in bf16', async () => {
  // bfloat16 activations (8 significant bits: each rounding is within 2^-9 relative), fp32 sums, statistics, loss
  // and master weights, through every layer of the fixture's model: loss, pred and every gradient within bf16 error
  // of the float64 reference (norm-relative; measured 2.3e-4, 7.1e-3 and at worst 1.5e-2 on an AVX512-BF16 CPU)
  const weights = (await readSafetensors(new URL('parity.safetensors', dir).pathname)).tensors;
  const io = (await readSafetensors(new URL('parity-io.safetensors', dir).pathname)).tensors;
  const get = (k: string) => io.get(k) as { shape: number[]; data: Float32Array };

  it('matches loss, pred, mask and every gradient within bf16 tolerance', () => {
    const mae = model();
    mae.loadStateDict(weights as Map<string, { shape: number[]; data: Float32Array }>);
    const out = tidy(() => {
      const imgs = Tensor.fromArray(get('images').data, get('images').shape);
      const { loss, pred, mask } = mae.forward(imgs, { maskRatio: cfg.mask_ratio, noise: get('noise').data, precision: 'bf16' });
      expect(pred.dtype).toBe('bfloat16');
      loss.backward();
      return { loss: loss.item(), pred: pred.dataSync(), mask: mask.dataSync() };
    });
    const errs = { loss: Math.abs(out.loss - cfg.loss) / Math.abs(cfg.loss), pred: relErr(out.pred, get('pred').data) };
    expect(errs.loss).toBeLessThan(5e-3);
    expect(errs.pred).toBeLessThan(1.5e-2);
    expect(Array.from(out.mask)).toEqual(Array.from(get('mask').data));
    let worst = 0;
    for (const [name, p] of mae.namedParameters()) {
      if (!p.requiresGrad) continue;
      expect(p.grad!.dtype, name).toBe('float32');
      const e = relErr(p.grad!.dataSync(), io.get(`grad.${name}`)!.data as Float32Array);
      worst = Math.max(worst, e);
      expect(e, `gradient of ${name}: relative error ${e}`).toBeLessThan(4e-2);
    }
    console.log(`bf16 parity: loss rel err ${errs.loss.toExponential(2)}, pred ${errs.pred.toExponential(2)}, worst gradient ${worst.toExponential(2)}`);
    mae.dispose();
  });
});
