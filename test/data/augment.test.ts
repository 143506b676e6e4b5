// The native augmentation (native.resizedCrop, native/cpu/augment.cpp) against PyTorch's F.interpolate (antialias
// on and off) and PIL on fixed crops (test/fixtures/augment), against the TypeScript transforms (lib/data/transforms.ts)
// on random RandomResizedCrop boxes, flips, evaluation windows and channel replication, its bfloat16 output, its
// argument checks, and the DataLoader's native path against its TypeScript path.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DataLoader, InMemoryDataset, centerCrop, centerCropBox, horizontalFlip, randomResizedCropParams, resizeShorterSide, resizedCrop,
  shorterSideSize, toChannels, type Batch,
} from '../../lib/data/index.js';
import { native } from '../../lib/native.js';
import { Generator } from '../../lib/random.js';

interface FixtureCase {
  image: string;
  box: [number, number, number, number];
  size: [number, number];
  pil: number[];
  torchAntialias: number[];
  torchPlain: number[];
}
const fixture = JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/augment/augment.json'), 'utf8')) as {
  images: Record<string, { shape: [number, number, number]; pixels: number[] }>;
  cases: FixtureCase[];
};

type Box = [number, number, number, number];

/** native.resizedCrop with the output in 0..255 (mean 0, std 1/255) or normalised by mean / std. */
function nativeCrop(
  px: Uint8Array, [h, w, c]: [number, number, number], box: Box, size: [number, number], opts: { window?: Box; flip?: boolean; antialias: boolean; outC?: number; mean?: number[]; std?: number[] },
): Float32Array {
  const outC = opts.outC ?? c;
  const win = opts.window ?? [0, 0, size[0], size[1]];
  const out = new Float32Array(outC * win[2] * win[3]);
  const mean = opts.mean ?? new Array<number>(outC).fill(0);
  const std = opts.std ?? new Array<number>(outC).fill(1 / 255);
  native.resizedCrop(px, [h, w, c], box, size, win, opts.flip ?? false, opts.antialias, mean, std, out, 0);
  return out;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** HWC bytes -> CHW floats in [0, 1] (what the TypeScript transforms take). */
function chw(px: Uint8Array, h: number, w: number, c: number): Float32Array {
  const out = new Float32Array(c * h * w);
  for (let p = 0; p < h * w; p++) for (let ch = 0; ch < c; ch++) out[ch * h * w + p] = px[p * c + ch]! / 255;
  return out;
}

function randomPixels(n: number, seed: number): Uint8Array {
  const gen = new Generator(seed);
  return Uint8Array.from({ length: n }, () => gen.int(256));
}

describe('native augmentation against PyTorch and PIL (fixture)', () => {
  const clamp255 = (v: number[]) => v.map((x) => Math.min(Math.max(x, 0), 255));
  for (const k of fixture.cases.keys()) {
    const cs = fixture.cases[k]!;
    const img = fixture.images[cs.image]!;
    const px = Uint8Array.from(img.pixels);
    const [h, w, c] = img.shape;
    it(`${cs.image} box ${cs.box.join(',')} -> ${cs.size.join('x')}`, () => {
      // the same kernel as torchvision's tensor path (antialias=True) and as F.interpolate (antialias=False), clamped
      const aa = nativeCrop(px, img.shape, cs.box, cs.size, { antialias: true });
      const plain = nativeCrop(px, img.shape, cs.box, cs.size, { antialias: false });
      expect(maxDiff(aa, clamp255(cs.torchAntialias))).toBeLessThan(2e-3);
      expect(maxDiff(plain, clamp255(cs.torchPlain))).toBeLessThan(2e-3);
      // PIL's 8-bit result, where its 8-bit intermediate cannot clip (values in [40, 215]): within rounding
      if (cs.image.startsWith('soft')) expect(maxDiff(aa, cs.pil)).toBeLessThan(1);
      // the TypeScript reference computes the same two kernels in float64
      const [top, left, ch, cw] = cs.box;
      const image = chw(px, h, w, c);
      const ts = (antialias: boolean) => Array.from(resizedCrop(image, c, h, w, top, left, ch, cw, cs.size[0], cs.size[1], antialias), (v) => v * 255);
      expect(maxDiff(ts(true), clamp255(cs.torchAntialias))).toBeLessThan(1e-3);
      expect(maxDiff(ts(false), clamp255(cs.torchPlain))).toBeLessThan(1e-3);
    });
  }

  it('differs from PIL where a PIL pass clips to 8 bits (sharp edges, enlarging), as documented', () => {
    const cs = fixture.cases.find((x) => x.image === 'rgb' && x.size[0] === 40)!;
    const img = fixture.images.rgb!;
    expect(maxDiff(nativeCrop(Uint8Array.from(img.pixels), img.shape, cs.box, cs.size, { antialias: true }), cs.pil)).toBeGreaterThan(5);
  });
});

describe('native augmentation against the TypeScript transforms', () => {
  const H = 37;
  const W = 53;
  const rgb = randomPixels(H * W * 3, 1);
  const grey = randomPixels(H * W, 2);
  const smooth = Uint8Array.from({ length: H * W * 3 }, (_, i) => 128 + Math.round(100 * Math.sin(i / 17)));

  it('gives the same pixels (within 1e-4, the spec is 1/255) for RandomResizedCrop boxes, both kernels, flipped or not', () => {
    const gen = new Generator(5);
    let worst = 0;
    for (const [px, c] of [[rgb, 3], [grey, 1], [smooth, 3]] as const) {
      const image = chw(px, H, W, c);
      for (let t = 0; t < 12; t++) {
        const box = randomResizedCropParams(H, W, gen, { scale: [0.05, 1], ratio: [0.5, 2] });
        const size = 8 + gen.int(40); // both shrinking and enlarging
        const flip = t % 2 === 1;
        for (const antialias of [true, false]) {
          let ts = resizedCrop(image, c, H, W, box.top, box.left, box.height, box.width, size, size, antialias);
          if (flip) ts = horizontalFlip(ts, c, size, size);
          const nat = nativeCrop(px, [H, W, c], [box.top, box.left, box.height, box.width], [size, size], { flip, antialias, std: new Array<number>(c).fill(1) });
          worst = Math.max(worst, maxDiff(nat, ts));
        }
      }
    }
    expect(worst).toBeLessThan(1e-4);
    expect(worst).toBeGreaterThan(0); // float32 vs float64: not the same code
  });

  it('shrinks a 256x341 image by up to 2.4x with the antialiased kernel as the reference does', () => {
    const h = 256;
    const w = 341;
    const px = randomPixels(h * w * 3, 3);
    const image = chw(px, h, w, 3);
    for (const [box, size] of [[[0, 0, 256, 341], 224], [[10, 40, 240, 200], 100], [[3, 5, 120, 130], 224]] as [Box, number][]) {
      const ts = resizedCrop(image, 3, h, w, ...box, size, size, true);
      expect(maxDiff(nativeCrop(px, [h, w, 3], box, [size, size], { antialias: true, std: [1, 1, 1] }), ts)).toBeLessThan(1e-4);
    }
  });

  it('computes the evaluation window (resize shorter side + centre crop) and replicates grey to 3 channels with per-channel normalisation', () => {
    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    for (const antialias of [true, false]) {
      const image = chw(grey, H, W, 1);
      const r = shorterSideSize(H, W, 32);
      expect(r).toEqual({ height: 32, width: 45 });
      const resized = resizeShorterSide(image, 1, H, W, 32, antialias);
      const crop = toChannels(centerCrop(resized.image, 1, r.height, r.width, 28, 28), 1, 28, 28, 3);
      const expected = crop.map((v, i) => (v - mean[Math.floor(i / 784)]!) / std[Math.floor(i / 784)]!);
      const win = centerCropBox(r.height, r.width, 28, 28);
      const nat = nativeCrop(grey, [H, W, 1], [0, 0, H, W], [r.height, r.width], { window: [win.top, win.left, 28, 28], antialias, outC: 3, mean, std });
      expect(maxDiff(nat, expected)).toBeLessThan(1e-4 / 0.224);
    }
  });

  it('writes bfloat16 as the float32 result rounded to nearest even, at an offset, and reads SharedArrayBuffer memory', () => {
    const src = new Uint8Array(new SharedArrayBuffer(rgb.length));
    src.set(rgb);
    const args = [[H, W, 3], [3, 4, 30, 40], [20, 24], [0, 0, 20, 24], true, true, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]] as const;
    const f32 = new Float32Array(new SharedArrayBuffer(4 * (7 + 3 * 480)));
    const bf16 = new Uint16Array(5 + 3 * 480);
    native.resizedCrop(src, ...args, f32, 7);
    native.resizedCrop(src, ...args, bf16, 5);
    expect(Array.from(f32.subarray(0, 7))).toEqual([0, 0, 0, 0, 0, 0, 0]);
    const bits = new Uint32Array(f32.buffer.slice(28));
    const rounded = Array.from(bits, (u) => (u + 0x7fff + ((u >>> 16) & 1)) >>> 16);
    expect(Array.from(bf16.subarray(5))).toEqual(rounded);
    expect(new Set(rounded).size).toBeGreaterThan(100);
  });
});

describe('native augmentation argument checks', () => {
  const px = new Uint8Array(4 * 5 * 3);
  const out = new Float32Array(3 * 4 * 4);
  type Args = Parameters<typeof native.resizedCrop>;
  const good: Args = [px, [4, 5, 3], [0, 0, 4, 5], [4, 4], [0, 0, 4, 4], false, true, [0, 0, 0], [1, 1, 1], out, 0];
  const call = (k: number, v: unknown) => {
    const args = [...good] as unknown[];
    args[k] = v;
    return () => (native.resizedCrop as (...a: unknown[]) => void)(...args);
  };

  it('accepts good arguments', () => {
    expect(() => native.resizedCrop(...good)).not.toThrow();
  });

  it.each([
    [0, new Float32Array(60), 'resizedCrop: src must be a Uint8Array'],
    [0, new Uint8Array(59), 'resizedCrop: src has 59 bytes, expected H x W x C = 4 x 5 x 3 = 60'],
    [1, [4, 5], 'resizedCrop: shape must hold 3 integers, got 2'],
    [1, [4, 5, 5], 'resizedCrop: shape [4, 5, 5]: 1 to 4 channels'],
    [1, [4.5, 5, 3], 'resizedCrop: shape[0] must be an integer in [1, 65536], got 4.5'],
    [2, [1, 0, 4, 5], 'resizedCrop: box top=1 left=0 4x5 does not fit in a 4x5 image'],
    [2, [0, 0, 0, 5], 'resizedCrop: box top=0 left=0 0x5 does not fit in a 4x5 image'],
    [2, [-1, 0, 2, 2], 'resizedCrop: box[0] must be an integer in [0, 65536], got -1'],
    [3, [0, 4], 'resizedCrop: outSize[0] must be an integer in [1, 65536], got 0'],
    [3, [1e9, 4], 'resizedCrop: outSize[0] must be an integer in [1, 65536], got 1000000000'],
    [4, [1, 0, 4, 4], 'resizedCrop: window top=1 left=0 4x4 does not fit in the 4x4 output'],
    [5, 1, 'resizedCrop: flip must be a boolean'],
    [7, [0, 0], 'resizedCrop: mean and std need one value per output channel (1 to 64), got 2 and 3'],
    [7, [0, 0, 0, 0], 'resizedCrop: mean and std need one value per output channel (1 to 64), got 4 and 3'],
    [8, [1, 0, 1], 'resizedCrop: mean[1] must be finite and std[1] finite and > 0'],
    [8, [1, NaN, 1], 'resizedCrop: mean[1] must be finite and std[1] finite and > 0'],
    [9, new Float64Array(48), 'resizedCrop: out must be a Float32Array or a Uint16Array (bfloat16)'],
    [9, new Float32Array(47), 'resizedCrop: out has 47 elements, too few for 48 at outOffset 0'],
    [10, 1, 'resizedCrop: out has 48 elements, too few for 48 at outOffset 1'],
    [10, -1, 'resizedCrop: outOffset must be an integer >= 0'],
    [10, 0.5, 'resizedCrop: outOffset must be an integer >= 0'],
  ])('argument %i = %o: %s', (k, v, message) => {
    expect(call(k, v)).toThrow(message);
  });

  it('refuses 3 channels into 1, overlapping buffers and missing arguments', () => {
    expect(call(7, [0])).toThrow('resizedCrop: mean and std need one value per output channel (1 to 64), got 1 and 3');
    const one = [...good] as unknown[];
    one[7] = [0];
    one[8] = [1];
    expect(() => (native.resizedCrop as (...a: unknown[]) => void)(...one)).toThrow('resizedCrop: 3-channel images cannot give 1 output channels (only 1-channel images are replicated)');
    const shared = new ArrayBuffer(60 + 4 * 48);
    expect(call(9, new Float32Array(shared, 0, 48))).not.toThrow(); // out over the front, src elsewhere: fine
    const both = new Uint8Array(shared, 0, 60);
    const args = [...good] as unknown[];
    args[0] = both;
    args[9] = new Float32Array(shared, 0, 48);
    expect(() => (native.resizedCrop as (...a: unknown[]) => void)(...args)).toThrow('resizedCrop: out and src overlap');
    expect(() => (native.resizedCrop as unknown as () => void)()).toThrow('resizedCrop: src must be a Uint8Array');
  });
});

describe("the DataLoader's native path", () => {
  // 40 RGB images of 20 x 26 bytes (CHW, as InMemoryDataset keeps them)
  const n = 40;
  const images = randomPixels(n * 3 * 20 * 26, 9);
  const ds = new InMemoryDataset({ images, labels: Array.from({ length: n }, (_, i) => i % 7), channels: 3, height: 20, width: 26, numClasses: 7 });
  const collect = async (loader: DataLoader, epoch: number): Promise<Batch[]> => {
    const out: Batch[] = [];
    for await (const b of loader.epoch(epoch)) out.push(b);
    return out;
  };

  it('gives the batches of the TypeScript path (same crops and flips, within 1e-4 before normalisation)', async () => {
    for (const [augment, antialias] of [[true, true], [true, false], [false, true], [false, false]] as const) {
      const opts = { batchSize: 16, seed: 4, workers: 0, augment, antialias, imageSize: 16 };
      const nat = await collect(new DataLoader(ds, opts), 3);
      const ts = await collect(new DataLoader(ds, { ...opts, transforms: 'typescript' }), 3);
      expect(nat.map((b) => Array.from(b.indices))).toEqual(ts.map((b) => Array.from(b.indices)));
      expect(nat.map((b) => Array.from(b.labels))).toEqual(ts.map((b) => Array.from(b.labels)));
      for (let k = 0; k < nat.length; k++) expect(maxDiff(nat[k]!.images, ts[k]!.images), `augment ${augment} antialias ${antialias}`).toBeLessThan(1e-4 / 0.224);
    }
  });

  it('takes images whose eval resize is past the native side limit (a 2 x 600 strip at 224: 224 x 67200), as the TypeScript path does', async () => {
    const strip = randomPixels(2 * 2 * 600, 11); // 2 grey images of 2 x 600
    const long = new InMemoryDataset({ images: strip, labels: [0, 1], channels: 1, height: 2, width: 600, numClasses: 2 });
    for (const antialias of [true, false]) {
      const opts = { batchSize: 2, workers: 0, shuffle: false, augment: false, antialias, imageSize: 224, mean: [0], std: [1] };
      const [nat] = await collect(new DataLoader(long, opts), 0);
      const [ts] = await collect(new DataLoader(long, { ...opts, transforms: 'typescript' }), 0);
      expect(nat!.shape).toEqual([2, 1, 224, 224]);
      expect(Array.from(nat!.images)).toEqual(Array.from(ts!.images));
      // the whole resize, then the centre crop
      const r = resizeShorterSide(chw(strip.subarray(1200), 2, 600, 1), 1, 2, 600, 224, antialias);
      expect([r.height, r.width]).toEqual([224, 67200]);
      expect(maxDiff(nat!.images.subarray(224 * 224), centerCrop(r.image, 1, r.height, r.width, 224, 224))).toBe(0);
    }
  });

  it('takes images with a side past the native limit (2 x 70000), augmented or not, as the TypeScript path does', async () => {
    const long = new InMemoryDataset({ images: randomPixels(2 * 70000, 12), labels: [3], channels: 1, height: 2, width: 70000, numClasses: 4 });
    for (const augment of [true, false]) {
      const opts = { batchSize: 1, seed: 2, workers: 0, augment, imageSize: 8 };
      const [nat] = await collect(new DataLoader(long, opts), 0);
      const [ts] = await collect(new DataLoader(long, { ...opts, transforms: 'typescript' }), 0);
      expect(Array.from(nat!.labels)).toEqual([3]);
      expect(Array.from(nat!.images)).toEqual(Array.from(ts!.images));
    }
  });

  it('defaults to the antialiased kernel, which changes shrunk crops', async () => {
    const opts = { batchSize: 40, seed: 4, workers: 0, augment: false, imageSize: 8 };
    const [aa] = await collect(new DataLoader(ds, opts), 0);
    const [explicit] = await collect(new DataLoader(ds, { ...opts, antialias: true }), 0);
    const [plain] = await collect(new DataLoader(ds, { ...opts, antialias: false }), 0);
    expect(Array.from(aa!.images)).toEqual(Array.from(explicit!.images));
    expect(maxDiff(aa!.images, plain!.images)).toBeGreaterThan(0.1);
    expect(() => new DataLoader(ds, { batchSize: 4, imageSize: 8, transforms: 'fast' as 'native' })).toThrow("DataLoader: transforms must be 'native' or 'typescript', got fast");
  });
});
