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
