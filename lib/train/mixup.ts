/**
 * Batch augmentations of fine-tuning, as timm's Mixup (mode 'batch', used by the official main_finetune.py) and
 * RandomErasing (mode 'pixel', applied to normalised images):
 *
 * Mixup / CutMix: with probability `prob` a batch is mixed with its reverse (sample i with sample B-1-i). When both
 * are enabled, CutMix is picked with probability `switchProb`, else Mixup. Mixup: lam ~ Beta(mixupAlpha),
 * x = lam x + (1 - lam) flip(x). CutMix: lam ~ Beta(cutmixAlpha), a box of side sqrt(1 - lam) of the image around
 * a uniform centre (clipped at the borders) is pasted from flip(x), and lam is corrected to 1 - box area / image
 * area. Targets: one-hot with label smoothing (off = s / C, on = 1 - s + off), mixed as lam y + (1 - lam) flip(y).
 *
 * Random erasing: with probability p, one rectangle of area U(0.02, 1/3) of the image and aspect ratio
 * log-uniform in (0.3, 1/0.3) (up to 10 tries to fit) is filled with N(0, 1) noise per pixel and channel.
 */
import { Generator } from '../random.js';
import { expectArrayLike, expectFinite, expectInstance, expectInteger, expectKnownKeys, expectObject, optionNames } from '../check.js';

export interface MixupOptions {
  /** Beta alpha of mixup; 0 disables it (default 0.8) */
  mixupAlpha?: number;
  /** Beta alpha of cutmix; 0 disables it (default 1.0) */
  cutmixAlpha?: number;
  /** probability of mixing a batch at all (default 1) */
  prob?: number;
  /** probability of cutmix rather than mixup when both are enabled (default 0.5) */
  switchProb?: number;
  /** label smoothing folded into the soft targets (default 0.1) */
  labelSmoothing?: number;
  numClasses: number;
}

export interface MixResult {
  /** soft targets [B, numClasses] */
  targets: Float32Array;
  lam: number;
  mode: 'mixup' | 'cutmix' | 'none';
  /** the cutmix box [yl, yh, xl, xh] (exclusive ends) */
  box?: [number, number, number, number];
}

/** One-hot targets with label smoothing: [B, C]. */
export function smoothOneHot(labels: ArrayLike<number>, numClasses: number, smoothing = 0): Float32Array {
  expectArrayLike('smoothOneHot', 'labels', labels, 'an array of class indices');
  expectInteger('smoothOneHot', 'numClasses', numClasses, 1);
  expectFinite('smoothOneHot', 'smoothing', smoothing, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
  const off = smoothing / numClasses;
  const on = 1 - smoothing + off;
  const out = new Float32Array(labels.length * numClasses).fill(off);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i]!;
    if (!(Number.isInteger(y) && y >= 0 && y < numClasses)) throw new Error(`smoothOneHot: label ${y} at ${i} is not in [0, ${numClasses})`);
    out[i * numClasses + y] = on;
  }
  return out;
}

/** lam * onehot(y) + (1 - lam) * onehot(flip(y)), both smoothed (timm mixup_target). */
export function mixupTarget(labels: ArrayLike<number>, numClasses: number, lam: number, smoothing = 0): Float32Array {
  expectArrayLike('mixupTarget', 'labels', labels, 'an array of class indices');
  expectInteger('mixupTarget', 'numClasses', numClasses, 1);
  expectFinite('mixupTarget', 'lam', lam, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
  expectFinite('mixupTarget', 'smoothing', smoothing, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
  const B = labels.length;
  const y = smoothOneHot(labels, numClasses, smoothing);
  const out = new Float32Array(y.length);
  for (let i = 0; i < B; i++) {
    const j = B - 1 - i;
    for (let c = 0; c < numClasses; c++) out[i * numClasses + c] = lam * y[i * numClasses + c]! + (1 - lam) * y[j * numClasses + c]!;
  }
  return out;
}

/** Integer uniform in [lo, hi) (numpy randint). */
function randint(gen: Generator, lo: number, hi: number): number {
  return lo + gen.int(hi - lo);
}

/** The cutmix box for lam (timm rand_bbox): side ratio sqrt(1 - lam), centre uniform, clipped. [yl, yh, xl, xh]. */
export function randBbox(H: number, W: number, lam: number, gen: Generator): [number, number, number, number] {
  checkBoxArgs('randBbox', H, W, lam, gen);
  const ratio = Math.sqrt(1 - lam);
  const cutH = Math.floor(H * ratio);
  const cutW = Math.floor(W * ratio);
  const cy = randint(gen, 0, H);
  const cx = randint(gen, 0, W);
  const clip = (v: number, hi: number) => Math.min(Math.max(v, 0), hi);
  const h2 = Math.floor(cutH / 2);
  const w2 = Math.floor(cutW / 2);
  return [clip(cy - h2, H), clip(cy + h2, H), clip(cx - w2, W), clip(cx + w2, W)];
}

/** The box and the lam corrected to the box's true area. */
export function cutmixBboxAndLam(H: number, W: number, lam: number, gen: Generator): { box: [number, number, number, number]; lam: number } {
  checkBoxArgs('cutmixBboxAndLam', H, W, lam, gen);
  const box = randBbox(H, W, lam, gen);
  const area = (box[1] - box[0]) * (box[3] - box[2]);
  return { box, lam: 1 - area / (H * W) };
}

/** The image size (H, W integers >= 1), the mixing ratio lam in [0, 1] and the Generator of a CutMix box. */
function checkBoxArgs(where: string, H: number, W: number, lam: number, gen: Generator): void {
  for (const [name, v] of [['H', H], ['W', W]] as const) expectInteger(where, name, v, 1);
  expectFinite(where, 'lam', lam, (x) => x >= 0 && x <= 1, 'a number in [0, 1]');
  expectInstance(where, 'gen', gen, Generator, 'a Generator');
}

/** Gamma(shape, 1) by Marsaglia-Tsang (shape < 1 boosted). */
export function sampleGamma(shape: number, gen: Generator): number {
  if (shape < 1) {
    let u = 0;
    while (u === 0) u = gen.uniform();
    return sampleGamma(shape + 1, gen) * u ** (1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = gen.normal();
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = gen.uniform();
    if (u < 1 - 0.0331 * x ** 4) return d * v;
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

export function sampleBeta(a: number, b: number, gen: Generator): number {
  for (const [name, v] of [['a', a], ['b', b]] as const) expectFinite('sampleBeta', name, v, (x) => x > 0, 'a positive finite number');
  expectInstance('sampleBeta', 'gen', gen, Generator, 'a Generator');
  const x = sampleGamma(a, gen);
  const y = sampleGamma(b, gen);
  return x + y > 0 ? x / (x + y) : 0.5;
}

export class Mixup {
  readonly mixupAlpha: number;
  readonly cutmixAlpha: number;
  readonly prob: number;
  readonly switchProb: number;
  readonly labelSmoothing: number;
  readonly numClasses: number;

  constructor(opts: MixupOptions) {
    expectObject('Mixup', 'opts', opts, false, 'e.g. { numClasses: 10, mixupAlpha: 0.8 }');
    expectKnownKeys('Mixup', 'opts', opts, optionNames<MixupOptions>({ mixupAlpha: true, cutmixAlpha: true, prob: true, switchProb: true, labelSmoothing: true, numClasses: true }));
    // (an option left out or undefined takes its default; null is refused below, as any non-number)
    this.mixupAlpha = opts.mixupAlpha === undefined ? 0.8 : opts.mixupAlpha;
    this.cutmixAlpha = opts.cutmixAlpha === undefined ? 1.0 : opts.cutmixAlpha;
    this.prob = opts.prob === undefined ? 1 : opts.prob;
    this.switchProb = opts.switchProb === undefined ? 0.5 : opts.switchProb;
    this.labelSmoothing = opts.labelSmoothing === undefined ? 0.1 : opts.labelSmoothing;
    this.numClasses = opts.numClasses;
    for (const k of ['mixupAlpha', 'cutmixAlpha'] as const) expectFinite('Mixup', k, this[k], (x) => x >= 0, 'a finite number >= 0 (0 turns it off)');
    for (const k of ['prob', 'switchProb'] as const) expectFinite('Mixup', k, this[k], (x) => x >= 0 && x <= 1, 'a probability in [0, 1]');
    expectFinite('Mixup', 'labelSmoothing', this.labelSmoothing, (x) => x >= 0 && x < 1, 'a number in [0, 1)');
    expectFinite('Mixup', 'numClasses', this.numClasses, (x) => Number.isInteger(x) && x >= 1, 'an integer >= 1');
  }

  get enabled(): boolean {
    return this.prob > 0 && (this.mixupAlpha > 0 || this.cutmixAlpha > 0);
  }

  /**
   * Mixes images [B, C, H, W] in place with their reverse and returns the soft targets. B must be even (as timm).
   */
  apply(images: Float32Array, shape: readonly [number, number, number, number], labels: ArrayLike<number>, gen: Generator): MixResult {
    const [B, C, H, W] = checkBatch('Mixup.apply', images, shape);
    expectArrayLike('Mixup.apply', 'labels', labels, 'an array of class indices');
    expectInstance('Mixup.apply', 'gen', gen, Generator, 'a Generator');
    if (labels.length !== B) throw new Error(`Mixup.apply: ${labels.length} labels for a batch of ${B}`);
    if (B % 2 !== 0) throw new Error(`Mixup: the batch size must be even, got ${B}`);
    let lam = 1;
    let useCutmix = false;
    if (this.enabled && gen.uniform() < this.prob) {
      if (this.mixupAlpha > 0 && this.cutmixAlpha > 0) {
        useCutmix = gen.uniform() < this.switchProb;
        lam = useCutmix ? sampleBeta(this.cutmixAlpha, this.cutmixAlpha, gen) : sampleBeta(this.mixupAlpha, this.mixupAlpha, gen);
      } else if (this.mixupAlpha > 0) lam = sampleBeta(this.mixupAlpha, this.mixupAlpha, gen);
      else {
        useCutmix = true;
        lam = sampleBeta(this.cutmixAlpha, this.cutmixAlpha, gen);
      }
    }
    let mode: MixResult['mode'] = 'none';
    let box: [number, number, number, number] | undefined;
    if (lam !== 1) {
      const per = C * H * W;
      const orig = images.slice();
      if (useCutmix) {
        mode = 'cutmix';
        const r = cutmixBboxAndLam(H, W, lam, gen);
        box = r.box;
        lam = r.lam;
        const [yl, yh, xl, xh] = box;
        for (let i = 0; i < B; i++) {
          const j = B - 1 - i;
          for (let c = 0; c < C; c++)
            for (let y = yl; y < yh; y++)
              for (let x = xl; x < xh; x++) {
                const o = (c * H + y) * W + x;
                images[i * per + o] = orig[j * per + o]!;
              }
        }
      } else {
        mode = 'mixup';
        for (let i = 0; i < B; i++) {
          const j = B - 1 - i;
          for (let k = 0; k < per; k++) images[i * per + k] = lam * orig[i * per + k]! + (1 - lam) * orig[j * per + k]!;
        }
      }
    }
    return { targets: mixupTarget(labels, this.numClasses, lam, this.labelSmoothing), lam, mode, ...(box ? { box } : {}) };
  }
}

export interface RandomErasingOptions {
  probability?: number;
  minArea?: number;
  maxArea?: number;
  minAspect?: number;
}

/** timm RandomErasing(mode='pixel', max_count=1) on each image of a normalised batch [B, C, H, W], in place. */
export function randomErasing(
  images: Float32Array,
  shape: readonly [number, number, number, number],
  gen: Generator,
  opts: RandomErasingOptions = {},
): number {
  const [B, C, H, W] = checkBatch('randomErasing', images, shape);
  expectInstance('randomErasing', 'gen', gen, Generator, 'a Generator');
  expectObject('randomErasing', 'opts', opts);
  expectKnownKeys('randomErasing', 'opts', opts, optionNames<RandomErasingOptions>({ probability: true, minArea: true, maxArea: true, minAspect: true }));
  const p = opts.probability === undefined ? 0.25 : opts.probability;
  const minArea = opts.minArea === undefined ? 0.02 : opts.minArea;
  const maxArea = opts.maxArea === undefined ? 1 / 3 : opts.maxArea;
  const minAspect = opts.minAspect === undefined ? 0.3 : opts.minAspect;
  expectFinite('randomErasing', 'probability', p, (x) => x >= 0 && x <= 1, 'a probability in [0, 1]');
  expectFinite('randomErasing', 'minArea', minArea, (x) => x > 0 && x <= maxArea, `a number in (0, maxArea = ${maxArea}]`);
  expectFinite('randomErasing', 'maxArea', maxArea, (x) => x > 0 && x <= 1, 'a number in (0, 1]');
  expectFinite('randomErasing', 'minAspect', minAspect, (x) => x > 0 && x <= 1, 'a number in (0, 1]');
  const logLo = Math.log(minAspect);
  const logHi = Math.log(1 / minAspect);
  const per = C * H * W;
  let erased = 0;
  for (let b = 0; b < B; b++) {
    if (gen.uniform() >= p) continue;
    for (let attempt = 0; attempt < 10; attempt++) {
      const target = (minArea + (maxArea - minArea) * gen.uniform()) * H * W;
      const aspect = Math.exp(logLo + (logHi - logLo) * gen.uniform());
      const h = Math.round(Math.sqrt(target * aspect));
      const w = Math.round(Math.sqrt(target / aspect));
      if (w < W && h < H) {
        const top = gen.int(H - h + 1);
        const left = gen.int(W - w + 1);
        for (let c = 0; c < C; c++)
          for (let y = top; y < top + h; y++)
            for (let x = left; x < left + w; x++) images[b * per + (c * H + y) * W + x] = gen.normal();
        erased++;
        break;
      }
    }
  }
  return erased;
}

/** The batch shape [B, C, H, W] (positive integers) and a buffer of exactly that many values. */
function checkBatch(where: string, images: Float32Array, shape: readonly number[]): [number, number, number, number] {
  if (!(images instanceof Float32Array)) throw new Error(`${where}: images must be a Float32Array, got ${String(images)}`);
  if (!Array.isArray(shape) || shape.length !== 4 || !shape.every((d) => Number.isInteger(d) && d >= 1))
    throw new Error(`${where}: shape must be [B, C, H, W] of positive integers, got ${JSON.stringify(shape)}`);
  const [B, C, H, W] = shape as [number, number, number, number];
  if (images.length !== B * C * H * W) throw new Error(`${where}: images has ${images.length} values, shape [${shape.join(', ')}] needs ${B * C * H * W}`);
  return [B, C, H, W];
}
