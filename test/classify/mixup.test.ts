import { describe, expect, it } from 'vitest';
import { Generator } from '../../lib/random.js';
import { Mixup, cutmixBboxAndLam, mixupTarget, randBbox, randomErasing, sampleBeta, smoothOneHot } from '../../lib/train/mixup.js';

describe('mixup / cutmix targets (timm)', () => {
  it('smooths one-hot targets: off = s / C, on = 1 - s + off', () => {
    const y = smoothOneHot([2, 0], 4, 0.1);
    expect(Array.from(y)).toEqual([0.025, 0.025, 0.925, 0.025, 0.925, 0.025, 0.025, 0.025].map((v) => expect.closeTo(v, 6)));
  });

  it('mixes each target with the reversed batch: lam y + (1 - lam) flip(y)', () => {
    // labels [0, 1, 2, 1], C 3, lam 0.7, smoothing 0.3: off 0.1, on 0.8
    const t = mixupTarget([0, 1, 2, 1], 3, 0.7, 0.3);
    // sample 0 pairs with sample 3 (label 1): 0.7 [0.8 .1 .1] + 0.3 [.1 .8 .1] = [0.59, 0.31, 0.1]
    expect(Array.from(t.subarray(0, 3))).toEqual([0.59, 0.31, 0.1].map((v) => expect.closeTo(v, 6)));
    // sample 1 (label 1) pairs with sample 2 (label 2): [0.1, 0.59, 0.31]
    expect(Array.from(t.subarray(3, 6))).toEqual([0.1, 0.59, 0.31].map((v) => expect.closeTo(v, 6)));
    for (let i = 0; i < 4; i++) expect(t.subarray(i * 3, i * 3 + 3).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
  });

  it('cuts a box of side sqrt(1 - lam) clipped to the image, and corrects lam to its area', () => {
    const gen = new Generator(1);
    for (let trial = 0; trial < 200; trial++) {
      const lam = 0.1 + 0.8 * gen.uniform();
      const [yl, yh, xl, xh] = randBbox(28, 28, lam, gen);
      const cut = Math.floor(28 * Math.sqrt(1 - lam));
      expect(yl).toBeGreaterThanOrEqual(0);
      expect(yh).toBeLessThanOrEqual(28);
      expect(yh - yl).toBeLessThanOrEqual(2 * Math.floor(cut / 2));
      expect(xh - xl).toBeLessThanOrEqual(2 * Math.floor(cut / 2));
    }
    // an unclipped box: lam 0.75 -> side 14, area 196, corrected lam 1 - 196 / 784 = 0.75
    const g2 = new Generator(3);
    let seen = false;
    for (let i = 0; i < 50 && !seen; i++) {
      const { box, lam } = cutmixBboxAndLam(28, 28, 0.75, g2);
      const area = (box[1] - box[0]) * (box[3] - box[2]);
      expect(lam).toBeCloseTo(1 - area / 784, 10);
      if (box[0] > 0 && box[1] < 28 && box[2] > 0 && box[3] < 28) {
        expect(area).toBe(196);
        expect(lam).toBeCloseTo(0.75, 10);
        seen = true;
      }
    }
    expect(seen).toBe(true);
  });

  it('cutmix pastes the box from the reversed batch and mixup blends, with matching soft targets', () => {
    const B = 4;
    const shape = [B, 1, 8, 8] as const;
    const base = new Float32Array(B * 64);
    for (let b = 0; b < B; b++) base.fill(b + 1, b * 64, (b + 1) * 64);
    const labels = [0, 1, 2, 3];
    let sawCutmix = false;
    let sawMixup = false;
    const gen = new Generator(5);
    const mix = new Mixup({ numClasses: 4, labelSmoothing: 0 });
    for (let trial = 0; trial < 40; trial++) {
      const imgs = base.slice();
      const r = mix.apply(imgs, shape, labels, gen);
      if (r.mode === 'cutmix') {
        sawCutmix = true;
        const [yl, yh, xl, xh] = r.box!;
        for (let y = 0; y < 8; y++)
          for (let x = 0; x < 8; x++) {
            const inside = y >= yl && y < yh && x >= xl && x < xh;
            expect(imgs[y * 8 + x]).toBe(inside ? 4 : 1); // sample 0 takes sample 3 inside the box
          }
        expect(r.lam).toBeCloseTo(1 - ((yh - yl) * (xh - xl)) / 64, 6);
      } else if (r.mode === 'mixup') {
        sawMixup = true;
        expect(imgs[0]).toBeCloseTo(r.lam * 1 + (1 - r.lam) * 4, 5);
      }
      expect(r.targets[0]).toBeCloseTo(r.lam, 6);
      expect(r.targets[3]).toBeCloseTo(1 - r.lam, 6);
    }
    expect(sawCutmix && sawMixup).toBe(true);
  });

  it('does nothing when disabled and rejects odd batches', () => {
    const mix = new Mixup({ numClasses: 3, mixupAlpha: 0, cutmixAlpha: 0, labelSmoothing: 0.3 });
    const imgs = new Float32Array(2 * 4).fill(1);
    const r = mix.apply(imgs, [2, 1, 2, 2], [0, 2], new Generator(0));
    expect(r.mode).toBe('none');
    expect(r.lam).toBe(1);
    expect(Array.from(r.targets)).toEqual([0.8, 0.1, 0.1, 0.1, 0.1, 0.8].map((v) => expect.closeTo(v, 6)));
    expect(() => new Mixup({ numClasses: 3 }).apply(new Float32Array(3 * 4), [3, 1, 2, 2], [0, 1, 2], new Generator(0))).toThrow(/even/);
  });

  it('refuses options, buffers and labels that do not fit, instead of mixing into NaN or the wrong images', () => {
    for (const [o, message] of [
      [{ mixupAlpha: Infinity }, 'Mixup: mixupAlpha must be a finite number >= 0 (0 turns it off), got the number Infinity'],
      [{ mixupAlpha: NaN }, 'Mixup: mixupAlpha must be a finite number >= 0 (0 turns it off), got the number NaN'],
      [{ cutmixAlpha: -1 }, 'Mixup: cutmixAlpha must be a finite number >= 0 (0 turns it off), got the number -1'],
      [{ prob: 1.5 }, 'Mixup: prob must be a probability in [0, 1], got the number 1.5'],
      [{ labelSmoothing: 1 }, 'Mixup: labelSmoothing must be a number in [0, 1), got the number 1'],
      [{ numClasses: 0 }, 'Mixup: numClasses must be an integer >= 1, got the number 0'],
    ] as const)
      expect(() => new Mixup({ numClasses: 3, ...o })).toThrow(message);
    const mix = new Mixup({ numClasses: 3 });
    expect(() => mix.apply(new Float32Array(4), [2, 1, 2, 2], [0, 1], new Generator(0))).toThrow('Mixup.apply: images has 4 values, shape [2, 1, 2, 2] needs 8');
    expect(() => mix.apply(new Float32Array(8), [2, 1, 2, 2], [0, 1, 2, 0], new Generator(0))).toThrow('Mixup.apply: 4 labels for a batch of 2');
    expect(() => randomErasing(new Float32Array(4), [1, 1, 8, 8], new Generator(0), { probability: 1 })).toThrow('randomErasing: images has 4 values, shape [1, 1, 8, 8] needs 64');
    expect(() => randomErasing(new Float32Array(64), [1, 1, 8, 8], new Generator(0), { probability: NaN })).toThrow('randomErasing: probability must be a probability in [0, 1], got the number NaN');
  });

  it('draws Beta(a, a) with the right mean and variance', () => {
    const gen = new Generator(2);
    const a = 0.8;
    const xs = Array.from({ length: 20000 }, () => sampleBeta(a, a, gen));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const v = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
    expect(mean).toBeCloseTo(0.5, 1);
    expect(v).toBeCloseTo(1 / (4 * (2 * a + 1)), 2);
  });
});

describe('random erasing (timm, pixel mode)', () => {
  it('erases one rectangle of 2-33% of the area with probability p', () => {
    const gen = new Generator(9);
    const B = 400;
    const imgs = new Float32Array(B * 28 * 28).fill(7);
    const n = randomErasing(imgs, [B, 1, 28, 28], gen, { probability: 0.25 });
    expect(n).toBeGreaterThan(70);
    expect(n).toBeLessThan(130);
    let erasedImages = 0;
    for (let b = 0; b < B; b++) {
      const img = imgs.subarray(b * 784, (b + 1) * 784);
      const changed = img.reduce((s, v) => s + (v !== 7 ? 1 : 0), 0);
      if (changed > 0) {
        erasedImages++;
        expect(changed).toBeGreaterThanOrEqual(0.015 * 784);
        expect(changed).toBeLessThanOrEqual(0.34 * 784 + 28);
      }
    }
    expect(erasedImages).toBe(n);
    expect(randomErasing(imgs.slice(), [B, 1, 28, 28], gen, { probability: 0 })).toBe(0);
  });
});
