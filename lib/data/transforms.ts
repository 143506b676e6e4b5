/**
 * Image transforms on float32 CHW images with values in [0, 1].
 *
 * Every function takes the image plus its shape (c, h, w) explicitly and returns a NEW Float32Array; inputs are
 * never modified. Randomness only comes from the Generator passed in, so a transform is a pure function of
 * (image, generator state).
 *
 * Resampling is bicubic convolution with a = -0.75, the kernel of PyTorch's
 * F.interpolate(mode='bicubic', align_corners=False) (no antialiasing): output pixel o samples input coordinate
 * (o + 0.5) * in/out - 0.5, reads 4 neighbours per axis and clamps neighbour indices to the border of the region
 * being resampled. Results are clamped to [0, 1] (bicubic overshoots at edges), as an 8-bit pipeline would.
 */
import type { Generator } from '../random.js';

export const BICUBIC_A = -0.75;

/** The 4 bicubic weights for neighbours at offsets -1, 0, +1, +2 of a sample at fractional position t in [0, 1). */
export function bicubicWeights(t: number): [number, number, number, number] {
  const A = BICUBIC_A;
  const near = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1; // |x| <= 1
  const far = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; // 1 < |x| < 2
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

interface Taps {
  index: Int32Array; // [out, 4] absolute input indices (already clamped)
  weight: Float64Array; // [out, 4]
}

/** Bicubic taps resampling the input window [start, start + inSize) of one axis to outSize samples. */
function bicubicTaps(start: number, inSize: number, outSize: number): Taps {
  const index = new Int32Array(4 * outSize);
  const weight = new Float64Array(4 * outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    const real = scale * (o + 0.5) - 0.5;
    const i0 = Math.floor(real);
    const wts = bicubicWeights(real - i0);
    for (let k = 0; k < 4; k++) {
      index[4 * o + k] = start + Math.min(Math.max(i0 - 1 + k, 0), inSize - 1);
      weight[4 * o + k] = wts[k]!;
    }
  }
  return { index, weight };
}

function checkShape(fn: string, img: Float32Array, c: number, h: number, w: number): void {
  if (!(c > 0 && h > 0 && w > 0) || img.length !== c * h * w) {
    throw new Error(`${fn}: image has ${img.length} values, expected c x h x w = ${c} x ${h} x ${w} = ${c * h * w}`);
  }
}

/**
 * Crops the window (top, left, cropH, cropW) out of img [c, h, w] and resizes it bicubically to [c, outH, outW].
 * Separable: a horizontal pass into a float64 buffer [c, cropH, outW], then a vertical pass.
 */
export function resizedCrop(
  img: Float32Array, c: number, h: number, w: number,
  top: number, left: number, cropH: number, cropW: number,
  outH: number, outW: number,
): Float32Array {
  checkShape('resizedCrop', img, c, h, w);
  if (!(cropH > 0 && cropW > 0 && top >= 0 && left >= 0 && top + cropH <= h && left + cropW <= w)) {
    throw new Error(`resizedCrop: window top=${top} left=${left} ${cropH}x${cropW} does not fit in a ${h}x${w} image`);
  }
  if (!(Number.isInteger(outH) && Number.isInteger(outW) && outH > 0 && outW > 0)) {
    throw new Error(`resizedCrop: output size must be positive integers, got ${outH}x${outW}`);
  }
  const xt = bicubicTaps(left, cropW, outW);
  const yt = bicubicTaps(0, cropH, outH); // rows relative to the window
  const tmp = new Float64Array(c * cropH * outW);
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < cropH; y++) {
      const src = (ch * h + top + y) * w;
      const dst = (ch * cropH + y) * outW;
      for (let x = 0; x < outW; x++) {
        const t = 4 * x;
        tmp[dst + x] =
          xt.weight[t]! * img[src + xt.index[t]!]! +
          xt.weight[t + 1]! * img[src + xt.index[t + 1]!]! +
          xt.weight[t + 2]! * img[src + xt.index[t + 2]!]! +
          xt.weight[t + 3]! * img[src + xt.index[t + 3]!]!;
      }
    }
  }
  const out = new Float32Array(c * outH * outW);
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < outH; y++) {
      const t = 4 * y;
      const r0 = (ch * cropH + yt.index[t]!) * outW;
      const r1 = (ch * cropH + yt.index[t + 1]!) * outW;
      const r2 = (ch * cropH + yt.index[t + 2]!) * outW;
      const r3 = (ch * cropH + yt.index[t + 3]!) * outW;
      const w0 = yt.weight[t]!, w1 = yt.weight[t + 1]!, w2 = yt.weight[t + 2]!, w3 = yt.weight[t + 3]!;
      const dst = (ch * outH + y) * outW;
      for (let x = 0; x < outW; x++) {
        const v = w0 * tmp[r0 + x]! + w1 * tmp[r1 + x]! + w2 * tmp[r2 + x]! + w3 * tmp[r3 + x]!;
        out[dst + x] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
  }
  return out;
}

/** Bicubic resize of the whole image: [c, h, w] -> [c, outH, outW]. */
export function resize(img: Float32Array, c: number, h: number, w: number, outH: number, outW: number): Float32Array {
  return resizedCrop(img, c, h, w, 0, 0, h, w, outH, outW);
}

/** Python's round(): halves go to the even neighbour (torchvision computes crop sizes with it). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

export interface RandomResizedCropOptions {
  scale: [number, number]; // fraction of the image area, e.g. [0.2, 1] for MAE
  ratio: [number, number]; // aspect ratio width / height, e.g. [3/4, 4/3]
}

export const MAE_CROP: RandomResizedCropOptions = { scale: [0.2, 1], ratio: [3 / 4, 4 / 3] };

/**
 * The crop window of torchvision's RandomResizedCrop.get_params for an h x w image: up to 10 attempts drawing an
 * area fraction uniformly in `scale` and an aspect ratio log-uniformly in `ratio`, keeping the first window that
 * fits, at a uniformly random position; otherwise the central crop with the aspect ratio clamped to `ratio`.
 */
export function randomResizedCropParams(h: number, w: number, gen: Generator, opts: RandomResizedCropOptions = MAE_CROP): CropBox {
  const [smin, smax] = opts.scale;
  const [rmin, rmax] = opts.ratio;
  if (!(smin > 0 && smin <= smax)) throw new Error(`randomResizedCrop: scale must satisfy 0 < min <= max, got [${smin}, ${smax}]`);
  if (!(rmin > 0 && rmin <= rmax)) throw new Error(`randomResizedCrop: ratio must satisfy 0 < min <= max, got [${rmin}, ${rmax}]`);
  const area = h * w;
  const logMin = Math.log(rmin);
  const logMax = Math.log(rmax);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * (smin + (smax - smin) * gen.uniform());
    const aspect = Math.exp(logMin + (logMax - logMin) * gen.uniform());
    const cw = roundHalfEven(Math.sqrt(targetArea * aspect));
    const ch = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      const top = gen.int(h - ch + 1);
      const left = gen.int(w - cw + 1);
      return { top, left, height: ch, width: cw };
    }
  }
  const inRatio = w / h;
  let cw = w;
  let ch = h;
  if (inRatio < rmin) ch = roundHalfEven(w / rmin);
  else if (inRatio > rmax) cw = roundHalfEven(h * rmax);
  return { top: Math.floor((h - ch) / 2), left: Math.floor((w - cw) / 2), height: ch, width: cw };
}

/** RandomResizedCrop: [c, h, w] -> [c, outSize, outSize], window from randomResizedCropParams, bicubic resampling. */
export function randomResizedCrop(
  img: Float32Array, c: number, h: number, w: number, outSize: number, gen: Generator,
  opts: RandomResizedCropOptions = MAE_CROP,
): Float32Array {
  checkShape('randomResizedCrop', img, c, h, w);
  const box = randomResizedCropParams(h, w, gen, opts);
  return resizedCrop(img, c, h, w, box.top, box.left, box.height, box.width, outSize, outSize);
}

/** Mirrors left-right: [c, h, w] -> [c, h, w]. */
export function horizontalFlip(img: Float32Array, c: number, h: number, w: number): Float32Array {
  checkShape('horizontalFlip', img, c, h, w);
  const out = new Float32Array(img.length);
  for (let row = 0; row < c * h; row++) {
    const base = row * w;
    for (let x = 0; x < w; x++) out[base + x] = img[base + w - 1 - x]!;
  }
  return out;
}

/** Flips with probability p (one gen.uniform() draw, flip when it is < p); returns a copy either way. */
export function randomHorizontalFlip(img: Float32Array, c: number, h: number, w: number, gen: Generator, p = 0.5): Float32Array {
  return gen.uniform() < p ? horizontalFlip(img, c, h, w) : img.slice();
}

/** (x - mean[ch]) / std[ch] per channel: [c, h, w] -> [c, h, w]. */
export function normalize(img: Float32Array, c: number, h: number, w: number, mean: readonly number[], std: readonly number[]): Float32Array {
  checkShape('normalize', img, c, h, w);
  if (mean.length !== c || std.length !== c) {
    throw new Error(`normalize: need one mean and std per channel (${c}), got ${mean.length} mean(s) and ${std.length} std(s)`);
  }
  const out = new Float32Array(img.length);
  const plane = h * w;
  for (let ch = 0; ch < c; ch++) {
    const m = mean[ch]!;
    const s = std[ch]!;
    if (!(s > 0)) throw new Error(`normalize: std[${ch}] must be > 0, got ${s}`);
    for (let i = ch * plane; i < (ch + 1) * plane; i++) out[i] = (img[i]! - m) / s;
  }
  return out;
}

/**
 * Converts [c, h, w] to [inChans, h, w]: a copy when c === inChans, greyscale replicated when c === 1 (1 -> 3 copies
 * of the grey plane). Any other combination is an error.
 */
export function toChannels(img: Float32Array, c: number, h: number, w: number, inChans: number): Float32Array {
  checkShape('toChannels', img, c, h, w);
  if (c === inChans) return img.slice();
  if (c !== 1) throw new Error(`toChannels: cannot turn ${c}-channel images into ${inChans} channels (only 1 -> n replication is supported)`);
  const out = new Float32Array(inChans * h * w);
  for (let ch = 0; ch < inChans; ch++) out.set(img, ch * h * w);
  return out;
}

/**
 * torchvision Resize(size) with an int size: the shorter side becomes `size`, the longer one
 * floor(size * long / short); [c, h, w] -> [c, height, width]. Bicubic. Returns a copy if already that size.
 */
export function resizeShorterSide(img: Float32Array, c: number, h: number, w: number, size: number): { image: Float32Array; height: number; width: number } {
  checkShape('resizeShorterSide', img, c, h, w);
  const height = h <= w ? size : Math.floor((size * h) / w);
  const width = h <= w ? Math.floor((size * w) / h) : size;
  if (height === h && width === w) return { image: img.slice(), height, width };
  return { image: resize(img, c, h, w, height, width), height, width };
}

/** The central outH x outW window (offsets rounded as torchvision does): [c, h, w] -> [c, outH, outW]. */
export function centerCrop(img: Float32Array, c: number, h: number, w: number, outH: number, outW: number): Float32Array {
  checkShape('centerCrop', img, c, h, w);
  if (outH > h || outW > w) throw new Error(`centerCrop: cannot crop ${outH}x${outW} out of a ${h}x${w} image`);
  const top = roundHalfEven((h - outH) / 2);
  const left = roundHalfEven((w - outW) / 2);
  const out = new Float32Array(c * outH * outW);
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < outH; y++) {
      const src = (ch * h + top + y) * w + left;
      out.set(img.subarray(src, src + outW), (ch * outH + y) * outW);
    }
  }
  return out;
}
