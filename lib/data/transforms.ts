/**
 * Image transforms on float32 CHW images with values in [0, 1].
 *
 * Every function takes the image plus its shape (c, h, w) explicitly and returns a NEW Float32Array; inputs are
 * never modified. Randomness only comes from the Generator passed in, so a transform is a pure function of
 * (image, generator state).
 *
 * Resampling is bicubic, computed in float64, with one of two kernels:
 * - antialias false (the default of these functions): PyTorch's F.interpolate(mode='bicubic', align_corners=False,
 *   antialias=False): a = -0.75; output pixel o samples input coordinate (o + 0.5) * in/out - 0.5, reads 4
 *   neighbours per axis and clamps neighbour indices to the border of the region being resampled.
 * - antialias true: PIL's bicubic resize, which torchvision's tensor path (antialias=True) reproduces: a = -0.5; the
 *   kernel is centred on (o + 0.5) * in/out and, when shrinking, stretched by in/out (support 2 * max(in/out, 1)
 *   input pixels each side), cut off at the region's border and its weights renormalised to sum 1.
 * Results are clamped to [0, 1] (bicubic overshoots at edges), as an 8-bit pipeline would.
 *
 * The DataLoader runs the same transforms natively on 8-bit pixels (native/cpu/augment.cpp, through
 * `native.resizedCrop`) for datasets that provide them; these functions are the reference it is tested against and
 * the path for datasets that only provide float images.
 */
import { describeItems, describeValue, expectArrayOf, expectInstance, expectInteger, expectKnownKeys, expectNumber, expectObject, optionNames } from '../check.js';
import { Generator } from '../random.js';

export const BICUBIC_A = -0.75;

/** The 4 bicubic weights for neighbours at offsets -1, 0, +1, +2 of a sample at fractional position t in [0, 1). */
export function bicubicWeights(t: number): [number, number, number, number] {
  expectNumber('bicubicWeights', 't', t);
  const A = BICUBIC_A;
  const near = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1; // |x| <= 1
  const far = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; // 1 < |x| < 2
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

/** PIL's bicubic kernel (a = -0.5), used by antialiased resampling. */
function pilCubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
  return 0;
}

interface Taps {
  K: number; // taps per output sample
  index: Int32Array; // [out, K] absolute input indices (already clamped; padding taps have weight 0)
  weight: Float64Array; // [out, K]
}

/**
 * Bicubic taps resampling the input window [start, start + inSize) of one axis to outSize samples, for the outputs
 * first .. first + count - 1 only (entry i of the result is output first + i).
 */
function bicubicTaps(start: number, inSize: number, outSize: number, antialias: boolean, first = 0, count = outSize): Taps {
  const scale = inSize / outSize;
  const support = 2 * Math.max(scale, 1);
  const K = antialias ? 2 * Math.ceil(support) + 1 : 4;
  const index = new Int32Array(K * count).fill(start);
  const weight = new Float64Array(K * count);
  for (let i = 0; i < count; i++) {
    const o = first + i;
    if (antialias) {
      const center = scale * (o + 0.5);
      const lo = Math.max(Math.trunc(center - support + 0.5), 0);
      const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
      let total = 0;
      for (let j = lo; j < hi; j++) total += pilCubic((j - center + 0.5) / Math.max(scale, 1));
      for (let j = lo; j < hi; j++) {
        index[K * i + j - lo] = start + j;
        weight[K * i + j - lo] = pilCubic((j - center + 0.5) / Math.max(scale, 1)) / total;
      }
    } else {
      const real = scale * (o + 0.5) - 0.5;
      const i0 = Math.floor(real);
      const wts = bicubicWeights(real - i0);
      for (let k = 0; k < 4; k++) {
        index[4 * i + k] = start + Math.min(Math.max(i0 - 1 + k, 0), inSize - 1);
        weight[4 * i + k] = wts[k]!;
      }
    }
  }
  return { K, index, weight };
}

/** img a Float32Array of c x h x w values, c, h and w integers >= 1. */
function checkShape(fn: string, img: Float32Array, c: number, h: number, w: number): void {
  expectInstance(fn, 'img', img, Float32Array, 'a Float32Array [c, h, w]');
  checkSizes(fn, { c, h, w });
  if (img.length !== c * h * w) throw new Error(`${fn}: image has ${img.length} values, expected c x h x w = ${c} x ${h} x ${w} = ${c * h * w}`);
}

/** Sizes: integers >= 1, each named by its key. */
function checkSizes(fn: string, sizes: Record<string, number>): void {
  for (const [name, v] of Object.entries(sizes)) expectInteger(fn, name, v, 1);
}

function checkGenerator(fn: string, gen: Generator): void {
  expectInstance(fn, 'gen', gen, Generator, 'a Generator');
}

/** Throws unless every value is an integer. */
function expectIntegers(fn: string, what: string, values: Record<string, number>): void {
  if (!Object.values(values).every((v) => Number.isInteger(v))) {
    throw new Error(`${fn}: ${what} must be integers, got ${Object.entries(values).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  }
}

/**
 * Crops the window (top, left, cropH, cropW) out of img [c, h, w] and resizes it bicubically to [c, outH, outW]
 * (antialias: PIL's kernel, else F.interpolate's; see the top of this file). Separable: a horizontal pass into a
 * float64 buffer [c, cropH, outW], then a vertical pass.
 *
 * With `part` (a box of the outH x outW output, as native.resizedCrop's window), only that part is computed and
 * returned, [c, part.height, part.width]: the same values as cropping the whole result, at the cost of the part (a
 * centre crop of a very elongated image's resize costs no more than any other).
 */
export function resizedCrop(
  img: Float32Array, c: number, h: number, w: number,
  top: number, left: number, cropH: number, cropW: number,
  outH: number, outW: number, antialias = false, part?: CropBox,
): Float32Array {
  checkShape('resizedCrop', img, c, h, w);
  for (const [name, v] of [['top', top], ['left', left]] as const) expectInteger('resizedCrop', name, v, 0);
  checkSizes('resizedCrop', { cropH, cropW, outH, outW });
  expectAntialias('resizedCrop', antialias);
  expectObject('resizedCrop', 'part', part, true);
  if (part !== undefined) expectKnownKeys('resizedCrop', 'part', part, optionNames<CropBox>({ top: true, left: true, height: true, width: true }));
  if (!(top + cropH <= h && left + cropW <= w)) {
    throw new Error(`resizedCrop: window top=${top} left=${left} ${cropH}x${cropW} does not fit in a ${h}x${w} image`);
  }
  const p = part ?? { top: 0, left: 0, height: outH, width: outW };
  expectIntegers('resizedCrop', 'part', { top: p.top, left: p.left, height: p.height, width: p.width });
  if (!(p.height > 0 && p.width > 0 && p.top >= 0 && p.left >= 0 && p.top + p.height <= outH && p.left + p.width <= outW)) {
    throw new Error(`resizedCrop: part top=${p.top} left=${p.left} height=${p.height} width=${p.width} does not fit in the ${outH}x${outW} output`);
  }
  const pw = p.width;
  const xt = bicubicTaps(left, cropW, outW, antialias, p.left, pw);
  const yt = bicubicTaps(0, cropH, outH, antialias, p.top, p.height); // rows relative to the window
  const tmp = new Float64Array(c * cropH * pw);
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < cropH; y++) {
      const src = (ch * h + top + y) * w;
      const dst = (ch * cropH + y) * pw;
      for (let x = 0; x < pw; x++) {
        let v = 0;
        for (let t = xt.K * x; t < xt.K * (x + 1); t++) v += xt.weight[t]! * img[src + xt.index[t]!]!;
        tmp[dst + x] = v;
      }
    }
  }
  const out = new Float32Array(c * p.height * pw);
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < p.height; y++) {
      const dst = (ch * p.height + y) * pw;
      for (let x = 0; x < pw; x++) {
        let v = 0;
        for (let t = yt.K * y; t < yt.K * (y + 1); t++) v += yt.weight[t]! * tmp[(ch * cropH + yt.index[t]!) * pw + x]!;
        out[dst + x] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
  }
  return out;
}

/** The antialias argument of `where`: true or false. */
function expectAntialias(where: string, antialias: unknown): void {
  if (typeof antialias !== 'boolean') throw new Error(`${where}: antialias must be true or false, got ${describeValue(antialias)}`);
}

/** Bicubic resize of the whole image: [c, h, w] -> [c, outH, outW]. */
export function resize(img: Float32Array, c: number, h: number, w: number, outH: number, outW: number, antialias = false): Float32Array {
  checkShape('resize', img, c, h, w);
  checkSizes('resize', { outH, outW });
  expectAntialias('resize', antialias);
  return resizedCrop(img, c, h, w, 0, 0, h, w, outH, outW, antialias);
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
  antialias?: boolean; // randomResizedCrop's resampling: PIL's kernel (true) or F.interpolate's (false, default)
}

const RANDOM_RESIZED_CROP_OPTIONS = optionNames<RandomResizedCropOptions>({ scale: true, ratio: true, antialias: true });

export const MAE_CROP: RandomResizedCropOptions = { scale: [0.2, 1], ratio: [3 / 4, 4 / 3] };

/**
 * The crop window of torchvision's RandomResizedCrop.get_params for an h x w image: up to 10 attempts drawing an
 * area fraction uniformly in `scale` and an aspect ratio log-uniformly in `ratio`, keeping the first window that
 * fits, at a uniformly random position; otherwise the central crop with the aspect ratio clamped to `ratio`.
 */
export function randomResizedCropParams(h: number, w: number, gen: Generator, opts: RandomResizedCropOptions = MAE_CROP): CropBox {
  checkSizes('randomResizedCropParams', { h, w });
  checkGenerator('randomResizedCropParams', gen);
  expectObject('randomResizedCropParams', 'opts', opts);
  expectKnownKeys('randomResizedCropParams', 'opts', opts, RANDOM_RESIZED_CROP_OPTIONS);
  return cropParams('randomResizedCropParams', h, w, gen, opts);
}

/** randomResizedCropParams once its arguments are checked, but for opts.scale and opts.ratio (`where` names the caller). */
function cropParams(where: string, h: number, w: number, gen: Generator, opts: RandomResizedCropOptions): CropBox {
  for (const name of ['scale', 'ratio'] as const) {
    const v: unknown = opts[name];
    if (!(Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === 'number' && Number.isFinite(x)) && v[0] > 0 && v[0] <= v[1]))
      throw new Error(`${where}: ${name} must be [min, max], finite numbers with 0 < min <= max, got ${describeItems(v)}`);
  }
  const [smin, smax] = opts.scale;
  const [rmin, rmax] = opts.ratio;
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
  // at least 1 pixel: an extreme ratio (e.g. [50, 50] on a square image) would round the box to nothing
  if (inRatio < rmin) ch = Math.max(1, roundHalfEven(w / rmin));
  else if (inRatio > rmax) cw = Math.max(1, roundHalfEven(h * rmax));
  return { top: Math.floor((h - ch) / 2), left: Math.floor((w - cw) / 2), height: ch, width: cw };
}

/** RandomResizedCrop: [c, h, w] -> [c, outSize, outSize], window from randomResizedCropParams, bicubic resampling. */
export function randomResizedCrop(
  img: Float32Array, c: number, h: number, w: number, outSize: number, gen: Generator,
  opts: RandomResizedCropOptions = MAE_CROP,
): Float32Array {
  checkShape('randomResizedCrop', img, c, h, w);
  checkSizes('randomResizedCrop', { outSize });
  checkGenerator('randomResizedCrop', gen);
  expectObject('randomResizedCrop', 'opts', opts);
  expectKnownKeys('randomResizedCrop', 'opts', opts, RANDOM_RESIZED_CROP_OPTIONS);
  const antialias = opts.antialias === undefined ? false : opts.antialias;
  expectAntialias('randomResizedCrop', antialias);
  const box = cropParams('randomResizedCrop', h, w, gen, opts);
  return resizedCrop(img, c, h, w, box.top, box.left, box.height, box.width, outSize, outSize, antialias);
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
  checkShape('randomHorizontalFlip', img, c, h, w);
  checkGenerator('randomHorizontalFlip', gen);
  if (!(typeof p === 'number' && p >= 0 && p <= 1)) throw new Error(`randomHorizontalFlip: p must be a probability in [0, 1], got ${p}`);
  return gen.uniform() < p ? horizontalFlip(img, c, h, w) : img.slice();
}

/** (x - mean[ch]) / std[ch] per channel: [c, h, w] -> [c, h, w]. */
export function normalize(img: Float32Array, c: number, h: number, w: number, mean: readonly number[], std: readonly number[]): Float32Array {
  checkShape('normalize', img, c, h, w);
  expectArrayOf('normalize', 'mean', mean, (m) => Number.isFinite(m), 'a finite number');
  expectArrayOf('normalize', 'std', std, (s) => Number.isFinite(s) && (s as number) > 0, 'a finite number > 0');
  if (mean.length !== c || std.length !== c) {
    throw new Error(`normalize: need one mean and std per channel (${c}), got ${mean.length} mean(s) and ${std.length} std(s)`);
  }
  const out = new Float32Array(img.length);
  const plane = h * w;
  for (let ch = 0; ch < c; ch++) {
    const m = mean[ch]!;
    const s = std[ch]!;
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
  if (!(Number.isInteger(inChans) && inChans > 0)) throw new Error(`toChannels: inChans must be a positive integer, got ${inChans}`);
  if (c === inChans) return img.slice();
  if (c !== 1) throw new Error(`toChannels: cannot turn ${c}-channel images into ${inChans} channels (only 1 -> n replication is supported)`);
  const out = new Float32Array(inChans * h * w);
  for (let ch = 0; ch < inChans; ch++) out.set(img, ch * h * w);
  return out;
}

/** The size torchvision Resize(size) with an int size gives an h x w image: shorter side size, longer floor(size * long / short). */
export function shorterSideSize(h: number, w: number, size: number): { height: number; width: number } {
  checkSizes('shorterSideSize', { h, w, size });
  return h <= w ? { height: size, width: Math.floor((size * w) / h) } : { height: Math.floor((size * h) / w), width: size };
}

/**
 * torchvision Resize(size) with an int size: the shorter side becomes `size` (shorterSideSize);
 * [c, h, w] -> [c, height, width]. Bicubic. Returns a copy if already that size.
 */
export function resizeShorterSide(
  img: Float32Array, c: number, h: number, w: number, size: number, antialias = false,
): { image: Float32Array; height: number; width: number } {
  checkShape('resizeShorterSide', img, c, h, w);
  checkSizes('resizeShorterSide', { size });
  expectAntialias('resizeShorterSide', antialias);
  const { height, width } = shorterSideSize(h, w, size);
  if (height === h && width === w) return { image: img.slice(), height, width };
  return { image: resize(img, c, h, w, height, width, antialias), height, width };
}

/** The central outH x outW window of an h x w image, offsets rounded as torchvision's CenterCrop does. */
export function centerCropBox(h: number, w: number, outH: number, outW: number): CropBox {
  checkSizes('centerCropBox', { h, w, outH, outW });
  if (outH > h || outW > w) throw new Error(`centerCrop: cannot crop ${outH}x${outW} out of a ${h}x${w} image`);
  return { top: roundHalfEven((h - outH) / 2), left: roundHalfEven((w - outW) / 2), height: outH, width: outW };
}

/** The central outH x outW window (centerCropBox): [c, h, w] -> [c, outH, outW]. */
export function centerCrop(img: Float32Array, c: number, h: number, w: number, outH: number, outW: number): Float32Array {
  checkShape('centerCrop', img, c, h, w);
  checkSizes('centerCrop', { outH, outW });
  const { top, left } = centerCropBox(h, w, outH, outW);
  const out = new Float32Array(c * outH * outW);
  for (let ch = 0; ch < c; ch++) {
    for (let y = 0; y < outH; y++) {
      const src = (ch * h + top + y) * w + left;
      out.set(img.subarray(src, src + outW), (ch * outH + y) * outW);
    }
  }
  return out;
}
