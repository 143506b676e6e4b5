// Transforms: bicubic resampling against a plain double-precision reference and hand-computed values,
// RandomResizedCrop parameters and determinism, flip, normalisation, channel replication, resize + center crop.
import { describe, expect, it } from 'vitest';
import {
  bicubicWeights, centerCrop, centerCropBox, horizontalFlip, normalize, randomHorizontalFlip, randomResizedCrop, randomResizedCropParams,
  resize, resizeShorterSide, resizedCrop, shorterSideSize, toChannels,
} from '../../lib/data/index.js';
import { Generator } from '../../lib/random.js';

/** Keys' cubic convolution kernel with a = -0.75, written out independently of the library. */
function kernel(x: number): number {
  const a = -0.75;
  const t = Math.abs(x);
  if (t <= 1) return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1;
  if (t < 2) return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a;
  return 0;
}

/** Reference: crop window then resize, pixel by pixel in float64, 4x4 taps with clamped indices, result clamped to [0, 1]. */
function reference(img: ArrayLike<number>, c: number, h: number, w: number, top: number, left: number, ch: number, cw: number, oh: number, ow: number): Float64Array {
  const out = new Float64Array(c * oh * ow);
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  for (let k = 0; k < c; k++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        const sy = (oy + 0.5) * (ch / oh) - 0.5;
        const sx = (ox + 0.5) * (cw / ow) - 0.5;
        const y0 = Math.floor(sy);
        const x0 = Math.floor(sx);
        let v = 0;
        for (let i = -1; i <= 2; i++) {
          for (let j = -1; j <= 2; j++) {
            const yy = top + clamp(y0 + i, 0, ch - 1);
            const xx = left + clamp(x0 + j, 0, cw - 1);
            v += kernel(sy - (y0 + i)) * kernel(sx - (x0 + j)) * img[(k * h + yy) * w + xx]!;
          }
        }
        out[(k * oh + oy) * ow + ox] = clamp(v, 0, 1);
      }
    }
  }
  return out;
}

function randomImage(n: number, seed: number): Float32Array {
  return new Generator(seed).uniformArray(n);
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('bicubic resampling', () => {
  it('has weights summing to 1 and interpolating at t = 0', () => {
    expect(bicubicWeights(0)).toEqual([0, 1, 0, 0]);
    for (const t of [0.1, 0.25, 0.5, 0.9]) {
      const w = bicubicWeights(t);
      expect(w[0] + w[1] + w[2] + w[3]).toBeCloseTo(1, 12);
      expect(w[1]).toBeCloseTo(kernel(t), 12);
      expect(w[3]).toBeCloseTo(kernel(2 - t), 12);
    }
  });

  it('matches a hand-computed 1-D upsampling', () => {
    // [0, 1, 0, 0] -> 8 samples; k(t) = (a + 2) t^3 - (a + 3) t^2 + 1 = 1.25 t^3 - 2.25 t^2 + 1 for |t| <= 1.
    // Output 3 samples x = (3 + 0.5) / 2 - 0.5 = 1.25: input 1 has weight k(0.25) = 1.25 / 64 - 2.25 / 16 + 1 = 0.87890625.
    // Output 1 samples x = 0.25: input 1 has weight k(0.75) = 1.25 * 0.421875 - 2.25 * 0.5625 + 1 = 0.26171875.
    const out = resize(Float32Array.from([0, 1, 0, 0]), 1, 1, 4, 1, 8);
    expect(out[3]).toBe(0.87890625);
    expect(out[2]).toBe(0.87890625);
    expect(out[1]).toBe(0.26171875);
    expect(out[0]).toBe(0); // -0.105... before clamping to [0, 1]
  });

  it('is the identity at the same size and reproduces a plain crop', () => {
    const img = randomImage(2 * 5 * 7, 1);
    expect(Array.from(resize(img, 2, 5, 7, 5, 7))).toEqual(Array.from(img));
    const crop = resizedCrop(img, 2, 5, 7, 1, 2, 3, 4, 3, 4);
    for (let c = 0; c < 2; c++) {
      for (let y = 0; y < 3; y++) {
        for (let x = 0; x < 4; x++) expect(crop[(c * 3 + y) * 4 + x]).toBe(img[(c * 5 + 1 + y) * 7 + 2 + x]);
      }
    }
  });

  it('matches the float64 reference when upsampling, downsampling and crop-resizing', () => {
    const img = randomImage(3 * 9 * 13, 2);
    expect(maxDiff(resize(img, 3, 9, 13, 20, 17), reference(img, 3, 9, 13, 0, 0, 9, 13, 20, 17))).toBeLessThan(1e-6);
    expect(maxDiff(resize(img, 3, 9, 13, 4, 6), reference(img, 3, 9, 13, 0, 0, 9, 13, 4, 6))).toBeLessThan(1e-6);
    expect(maxDiff(resizedCrop(img, 3, 9, 13, 2, 3, 5, 8, 11, 11), reference(img, 3, 9, 13, 2, 3, 5, 8, 11, 11))).toBeLessThan(1e-6);
    const constant = new Float32Array(4 * 4).fill(0.375);
    expect(maxDiff(resize(constant, 1, 4, 4, 9, 7), new Float32Array(63).fill(0.375))).toBeLessThan(1e-7);
  });

  it('rejects windows outside the image and wrong lengths', () => {
    const img = randomImage(16, 3);
    expect(() => resizedCrop(img, 1, 4, 4, 2, 0, 3, 4, 2, 2)).toThrow('resizedCrop: window top=2 left=0 3x4 does not fit in a 4x4 image');
    expect(() => resize(img, 1, 4, 5, 2, 2)).toThrow('resize: image has 16 values, expected c x h x w = 1 x 4 x 5 = 20');
  });
});

describe('RandomResizedCrop', () => {
  it('is deterministic for the same generator state and differs for another', () => {
    const img = randomImage(3 * 28 * 28, 4);
    const a = randomResizedCrop(img, 3, 28, 28, 16, new Generator(11));
    const b = randomResizedCrop(img, 3, 28, 28, 16, new Generator(11));
    const c = randomResizedCrop(img, 3, 28, 28, 16, new Generator(12));
    expect(a.length).toBe(3 * 16 * 16);
    expect(Array.from(a)).toEqual(Array.from(b));
    expect(Array.from(a)).not.toEqual(Array.from(c));
    const gen = new Generator(5);
    gen.uniform();
    const state = gen.state();
    const first = randomResizedCropParams(28, 28, gen);
    gen.setState(state);
    expect(randomResizedCropParams(28, 28, gen)).toEqual(first);
  });

  it('draws windows inside the image with area fraction in [0.2, 1] and aspect ratio in [3/4, 4/3]', () => {
    const gen = new Generator(6);
    for (const [h, w, slack] of [[1000, 1000, 0.002], [28, 28, 0.09], [32, 20, 0.09]] as const) {
      let minFrac = 1;
      let maxFrac = 0;
      for (let k = 0; k < 2000; k++) {
        const box = randomResizedCropParams(h, w, gen);
        expect(box.top >= 0 && box.left >= 0 && box.top + box.height <= h && box.left + box.width <= w).toBe(true);
        const frac = (box.height * box.width) / (h * w);
        minFrac = Math.min(minFrac, frac);
        maxFrac = Math.max(maxFrac, frac);
        expect(frac).toBeGreaterThanOrEqual(0.2 * (1 - slack)); // integer rounding of the sides
        expect(frac).toBeLessThanOrEqual(1);
        if (h === 1000) {
          const ratio = box.width / box.height;
          expect(ratio).toBeGreaterThan(0.75 * 0.995);
          expect(ratio).toBeLessThan((4 / 3) * 1.005);
        }
      }
      expect(minFrac).toBeLessThan(0.25); // the whole range is used
      expect(maxFrac).toBeGreaterThan(0.8); // (a 32 x 20 image holds at most 26 x 20 at aspect >= 3/4)
    }
  });

  it('falls back to the central crop with the ratio clamped after 10 failed attempts', () => {
    // a square image cannot hold a window of area >= 0.9 with aspect >= 3: central crop 30 wide, round(30 / 3) = 10 high
    const gen = new Generator(7);
    expect(randomResizedCropParams(30, 30, gen, { scale: [0.9, 1], ratio: [3, 4] })).toEqual({ top: 10, left: 0, height: 10, width: 30 });
    expect(randomResizedCropParams(30, 30, gen, { scale: [0.9, 1], ratio: [0.1, 0.2] })).toEqual({ top: 0, left: 12, height: 30, width: 6 });
    expect(randomResizedCropParams(20, 25, gen, { scale: [2, 3], ratio: [3 / 4, 4 / 3] })).toEqual({ top: 0, left: 0, height: 20, width: 25 });
  });
});

describe('flip, normalise, channels, resize + center crop', () => {
  it('flips left-right, with probability p', () => {
    const img = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]); // [2, 2, 3]
    expect(Array.from(horizontalFlip(img, 2, 2, 3))).toEqual([3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
    const gen = new Generator(8);
    expect(Array.from(randomHorizontalFlip(img, 2, 2, 3, gen, 0))).toEqual(Array.from(img));
    expect(Array.from(randomHorizontalFlip(img, 2, 2, 3, gen, 1))).toEqual([3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
    let flips = 0;
    for (let k = 0; k < 1000; k++) if (randomHorizontalFlip(img, 2, 2, 3, gen)[0] === 3) flips++;
    expect(flips).toBeGreaterThan(430);
    expect(flips).toBeLessThan(570);
  });

  it('normalises per channel', () => {
    const out = normalize(Float32Array.from([0, 1, 0.5, 0.25]), 2, 1, 2, [0.5, 0.25], [0.5, 0.25]);
    expect(Array.from(out)).toEqual([-1, 1, 1, 0]);
    expect(() => normalize(new Float32Array(4), 2, 1, 2, [0.5], [1])).toThrow('normalize: need one mean and std per channel (2), got 1 mean(s) and 1 std(s)');
  });

  it('replicates grey to inChans and refuses other conversions', () => {
    expect(Array.from(toChannels(Float32Array.from([0.1, 0.2]), 1, 1, 2, 3))).toEqual(Array.from(Float32Array.from([0.1, 0.2, 0.1, 0.2, 0.1, 0.2])));
    expect(() => toChannels(new Float32Array(6), 3, 1, 2, 1)).toThrow('toChannels: cannot turn 3-channel images into 1 channels');
  });

  it('resizes the shorter side as torchvision Resize(int) and center-crops', () => {
    const img = randomImage(20 * 30, 9);
    expect([resizeShorterSide(img, 1, 20, 30, 10).height, resizeShorterSide(img, 1, 20, 30, 10).width]).toEqual([10, 15]);
    const tall = resizeShorterSide(img, 1, 30, 20, 7);
    expect([tall.height, tall.width]).toEqual([10, 7]); // floor(7 * 30 / 20) = 10
    const cc = centerCrop(Float32Array.from({ length: 25 }, (_, i) => i), 1, 5, 5, 3, 3);
    expect(Array.from(cc)).toEqual([6, 7, 8, 11, 12, 13, 16, 17, 18]);
    expect(Array.from(centerCrop(Float32Array.from([0, 1, 2, 3]), 1, 1, 4, 1, 3))).toEqual([0, 1, 2]); // round(0.5) = 0, as Python
    expect(() => centerCrop(img, 1, 20, 30, 21, 3)).toThrow('centerCrop: cannot crop 21x3 out of a 20x30 image');
  });
});

describe('degenerate sizes and parameters', () => {
  const img = Float32Array.from({ length: 36 }, (_, i) => i / 36); // 1 x 6 x 6

  it('refuses crop sizes, windows and channel counts that are not positive integers', () => {
    for (const [oh, ow] of [[0, 0], [-1, -1], [NaN, NaN], [2.5, 2.5], [-2, 3]]) {
      expect(() => centerCrop(img, 1, 6, 6, oh!, ow!)).toThrow(`centerCrop: outH must be an integer >= 1, got the number ${oh}`);
    }
    expect(() => centerCrop(img, 1, 6, 6, 3, 0)).toThrow('centerCrop: outW must be an integer >= 1, got the number 0');
    expect(() => centerCropBox(6, 6, 0, 3)).toThrow('centerCropBox: outH must be an integer >= 1, got the number 0');
    expect(() => toChannels(img, 1, 6, 6, 0)).toThrow('toChannels: inChans must be a positive integer, got 0');
    expect(() => toChannels(img, 1, 6, 6, 2.5)).toThrow('toChannels: inChans must be a positive integer, got 2.5');
    expect(() => resizedCrop(img, 1, 6, 6, 0.5, 0.5, 3.2, 3.2, 4, 4)).toThrow('resizedCrop: top must be an integer >= 0, got the number 0.5');
    expect(() => resizedCrop(img, 1, 6, 6, 0, 0, 6, 6, 4, 4, false, { top: 1, left: 0, height: 4, width: 4 })).toThrow('resizedCrop: part top=1 left=0 height=4 width=4 does not fit in the 4x4 output');
    expect(() => resizedCrop(img, 1, 6, 6, 0, 0, 6, 6, 4, 4, false, { top: 0, left: 0, height: 1.5, width: 4 })).toThrow('resizedCrop: part must be integers, got top=0 left=0 height=1.5 width=4');
  });

  it('refuses non-finite mean, std, scale, ratio and a flip probability outside [0, 1]', () => {
    expect(() => normalize(img, 1, 6, 6, [NaN], [1])).toThrow('normalize: mean[0] must be a finite number, got the number NaN');
    expect(() => normalize(img, 1, 6, 6, ['0.5' as unknown as number], [1])).toThrow("normalize: mean[0] must be a finite number, got the string '0.5'");
    expect(() => normalize(img, 1, 6, 6, [0], [Infinity])).toThrow('normalize: std[0] must be a finite number > 0, got the number Infinity');
    const gen = new Generator(1);
    for (const p of [NaN, -0.1, 1.5]) expect(() => randomHorizontalFlip(img, 1, 6, 6, gen, p)).toThrow(`randomHorizontalFlip: p must be a probability in [0, 1], got ${p}`);
    expect(() => randomResizedCropParams(6, 6, gen, { scale: [0.5, Infinity], ratio: [1, 1] })).toThrow('randomResizedCropParams: scale must be [min, max], finite numbers with 0 < min <= max, got [0.5, Infinity]');
    expect(() => randomResizedCropParams(6, 6, gen, { scale: [0.5, 1], ratio: [NaN, 1] })).toThrow('randomResizedCropParams: ratio must be [min, max], finite numbers with 0 < min <= max, got [NaN, 1]');
  });

  it('never falls back to a crop of 0 pixels, whatever the ratio', () => {
    const gen = new Generator(1);
    expect(randomResizedCropParams(6, 6, gen, { scale: [0.5, 1], ratio: [50, 50] })).toEqual({ top: 2, left: 0, height: 1, width: 6 });
    expect(randomResizedCropParams(6, 6, gen, { scale: [0.5, 1], ratio: [0.01, 0.01] })).toEqual({ top: 0, left: 2, height: 6, width: 1 });
  });

  it('computes only a part of the output, with the values of cropping the whole result', () => {
    const h = 3;
    const w = 40;
    const src = randomImage(2 * h * w, 4); // 2 x 3 x 40: resized to 20 x 266, then the centre 16 x 16
    const r = shorterSideSize(h, w, 20);
    const box = centerCropBox(r.height, r.width, 16, 16);
    for (const antialias of [true, false]) {
      const whole = resize(src, 2, h, w, r.height, r.width, antialias);
      const part = resizedCrop(src, 2, h, w, 0, 0, h, w, r.height, r.width, antialias, box);
      expect(Array.from(part)).toEqual(Array.from(centerCrop(whole, 2, r.height, r.width, 16, 16)));
    }
  });
});
