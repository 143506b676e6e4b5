/**
 * loadImages: image files or encoded buffers (JPEG, PNG, WebP, ...) as a batch ready for a model, through the
 * official evaluation transform (facebookresearch/mae util/datasets.py build_transform with is_train=False):
 *   Resize(int(size / crop_pct)) bicubic, crop_pct = 224 / 256 for size <= 224 and 1 above (the shorter side becomes
 *   that length, the longer floor(length * long / short), as torchvision); CenterCrop(size) (offsets rounded half to
 *   even, as torchvision); ToTensor (values / 255); Normalize(mean, std), ImageNet statistics by default.
 * Decoding and resizing are sharp's (libvips): its 'cubic' kernel is Catmull-Rom, PIL's BICUBIC, and like PIL it
 * widens the kernel when shrinking (antialiasing); no EXIF rotation, as PIL's Image.open. Alpha is dropped. A file cut
 * short is refused, as PIL refuses it; libjpeg's other warnings (stray bytes before a marker) are not, as in PIL.
 * The result is a Tensor: the tensor module (and with it the native addon) is imported when loadImages is first
 * called, so that lib/data itself stays free of the addon (its DataLoader workers never load it).
 */
import type { Tensor } from '../tensor.js';
import { loadSharp } from './folder.js';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD, IMAGENET_MEAN, IMAGENET_STD } from './loader.js';
import { describeValue, expectArrayOf, expectInteger, expectKnownKeys, expectNumber, expectObject, optionNames } from '../check.js';

export interface LoadImagesOptions {
  /** output side in pixels (default 224) */
  size?: number;
  /** per-channel mean and std of the normalisation (default ImageNet's; for 1 channel Fashion-MNIST's, as DataLoader) */
  mean?: readonly number[];
  std?: readonly number[];
  /** 3 (sRGB, default) or 1 (greyscale) */
  channels?: 1 | 3;
  /** the crop fraction (default 224/256 for size <= 224, else 1, as the official code) */
  cropPct?: number;
}

/** The resize length of the evaluation transform for an output side `size`. */
export function evalResizeLength(size: number, cropPct = size <= 224 ? 224 / 256 : 1): number {
  expectInteger('evalResizeLength', 'size', size, 1);
  expectNumber('evalResizeLength', 'cropPct', cropPct, true);
  return Math.floor(size / cropPct);
}

/** Python's round(): halves to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Images (file paths or encoded bytes) -> [N, channels, size, size], normalised, through the evaluation transform. */
export async function loadImages(inputs: readonly (string | Uint8Array)[], opts: LoadImagesOptions = {}): Promise<Tensor> {
  expectArrayOf('loadImages', 'inputs', inputs, (x) => typeof x === 'string' || x instanceof Uint8Array, 'a file path or a Uint8Array of encoded image bytes');
  expectObject('loadImages', 'opts', opts);
  expectKnownKeys('loadImages', 'opts', opts, optionNames<LoadImagesOptions>({ size: true, mean: true, std: true, channels: true, cropPct: true }));
  // (an option left out or undefined takes its default; null is refused as any other value of the wrong type)
  const size = opts.size === undefined ? 224 : opts.size;
  const channels = opts.channels === undefined ? 3 : opts.channels;
  const mean = opts.mean === undefined ? (channels === 3 ? IMAGENET_MEAN : FASHION_MNIST_MEAN) : opts.mean;
  const std = opts.std === undefined ? (channels === 3 ? IMAGENET_STD : FASHION_MNIST_STD) : opts.std;
  if (!Number.isInteger(size) || size < 1) throw new Error(`loadImages: size must be a positive integer, got ${describeValue(size)}`);
  if (channels !== 1 && channels !== 3) throw new Error(`loadImages: channels must be 1 or 3, got ${describeValue(channels)}`);
  expectArrayOf('loadImages', 'mean', mean, (m) => typeof m === 'number' && Number.isFinite(m), 'a finite number');
  expectArrayOf('loadImages', 'std', std, (s) => typeof s === 'number' && Number.isFinite(s) && s > 0, 'a finite number > 0');
  if (mean.length !== channels || std.length !== channels)
    throw new Error(`loadImages: need ${channels} mean(s) and ${channels} positive std(s), got [${mean.join(', ')}] and [${std.join(', ')}]`);
  if (opts.cropPct !== undefined && !(typeof opts.cropPct === 'number' && opts.cropPct > 0 && opts.cropPct <= 1))
    throw new Error(`loadImages: cropPct must be a number in (0, 1] (the crop's share of the resized shorter side), got ${opts.cropPct}`);
  if (inputs.length === 0) throw new Error('loadImages: no images given');
  const resizeTo = evalResizeLength(size, opts.cropPct);
  const sharp = await loadSharp();
  const plane = size * size;
  const out = new Float32Array(inputs.length * channels * plane);
  await Promise.all(
    inputs.map(async (input, n) => {
      const name = typeof input === 'string' ? input : `image ${n} (${input.length} bytes)`;
      let pixels: Buffer;
      try {
        const meta = await sharp(input, { failOn: 'truncated' }).metadata();
        const w = meta.width ?? 0;
        const h = meta.height ?? 0;
        if (!(w > 0 && h > 0)) throw new Error('no image size');
        const [rw, rh] = w <= h ? [resizeTo, Math.floor((resizeTo * h) / w)] : [Math.floor((resizeTo * w) / h), resizeTo];
        const top = roundHalfEven((rh - size) / 2);
        const left = roundHalfEven((rw - size) / 2);
        const { data, info } = await sharp(input, { failOn: 'truncated' })
          .removeAlpha()
          .toColourspace(channels === 1 ? 'b-w' : 'srgb')
          .resize(rw, rh, { kernel: 'cubic', fit: 'fill' })
          .extract({ left, top, width: size, height: size })
          .raw({ depth: 'uchar' })
          .toBuffer({ resolveWithObject: true });
        if (info.channels !== channels || data.length !== plane * channels) throw new Error(`decoded to ${info.channels} channel(s) of ${info.width}x${info.height}`);
        pixels = data;
      } catch (e) {
        throw new Error(`${name}: cannot load image: ${(e as Error).message}`);
      }
      const base = n * channels * plane;
      for (let c = 0; c < channels; c++) {
        const m = mean[c]!;
        const s = std[c]!;
        for (let i = 0; i < plane; i++) out[base + c * plane + i] = (pixels[i * channels + c]! / 255 - m) / s;
      }
    }),
  );
  const { Tensor } = await import('../tensor.js');
  return Tensor.fromArray(out, [inputs.length, channels, size, size]);
}
