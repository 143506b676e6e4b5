/**
 * Image grids for looking at MAE reconstructions, as in Figure 2 of the paper: each row shows the original image, the
 * masked input (removed patches drawn grey), the reconstruction, and the reconstruction with the visible patches of
 * the original pasted back.
 *
 * Images are float CHW arrays (channels 1 or 3); values are clamped to [0, 1] only when the grid is turned into
 * 8-bit pixels. Masks follow the MAE convention: one value per patch, 1 = removed, 0 = kept, patches in row-major
 * order over the (H / p) x (W / p) patch grid.
 */
import type { Image8 } from './png.js';

/** A float image in CHW layout: data[c * height * width + y * width + x]. */
export interface ChwImage {
  data: Float32Array;
  channels: number;
  height: number;
  width: number;
}

export interface GridOptions {
  /** Pixels of background around and between cells (default 2). */
  pad?: number;
  /** Integer nearest-neighbour upscaling factor for every image (default 1). */
  scale?: number;
  /** Background grey level in [0, 1] (default 1, white). */
  background?: number;
}

/**
 * Lays out rows of images into one 8-bit image. Every cell is as large as the largest (scaled) image, images sit in
 * the top-left corner of their cell, short rows leave empty cells. The grid is RGB if any image is, greyscale
 * otherwise (greyscale images in an RGB grid are drawn grey).
 */
export function makeGrid(rows: readonly (readonly ChwImage[])[], options: GridOptions = {}): Image8 {
  const { pad = 2, scale = 1, background = 1 } = options;
  if (!Number.isInteger(pad) || pad < 0) throw new Error(`makeGrid: pad must be a non-negative integer, got ${pad}`);
  if (!Number.isInteger(scale) || scale < 1) {
    throw new Error(`makeGrid: scale must be a positive integer, got ${scale}`);
  }
  if (!(background >= 0 && background <= 1)) {
    throw new Error(`makeGrid: background must be in [0, 1], got ${background}`);
  }
  const images = rows.flat();
  if (images.length === 0) throw new Error('makeGrid: no images');
  images.forEach((image, i) => checkImage(image, `makeGrid: image ${i}`));

  const channels: 1 | 3 = images.some((im) => im.channels === 3) ? 3 : 1;
  const cellW = Math.max(...images.map((im) => im.width)) * scale;
  const cellH = Math.max(...images.map((im) => im.height)) * scale;
  const cols = Math.max(...rows.map((r) => r.length));
  const width = cols * cellW + (cols + 1) * pad;
  const height = rows.length * cellH + (rows.length + 1) * pad;
  const pixels = new Uint8Array(width * height * channels).fill(toByte(background));

  rows.forEach((row, r) => {
    row.forEach((image, c) => {
      const x0 = pad + c * (cellW + pad);
      const y0 = pad + r * (cellH + pad);
      const plane = image.height * image.width;
      for (let y = 0; y < image.height * scale; y++) {
        for (let x = 0; x < image.width * scale; x++) {
          const src = Math.floor(y / scale) * image.width + Math.floor(x / scale);
          const dst = ((y0 + y) * width + (x0 + x)) * channels;
          for (let k = 0; k < channels; k++) {
            const srcChannel = image.channels === 1 ? 0 : k;
            pixels[dst + k] = toByte(image.data[srcChannel * plane + src]!);
          }
        }
      }
    });
  });
  return { width, height, channels, pixels };
}

/** Undoes per-channel normalisation: x * std[c] + mean[c]; the channel count is mean.length. Returns a new array. */
export function unnormalize(chw: Float32Array, mean: readonly number[], std: readonly number[]): Float32Array {
  if (mean.length === 0 || mean.length !== std.length) {
    throw new Error(
      `unnormalize: mean and std must have the same non-zero length, got ${mean.length} and ${std.length}`,
    );
  }
  if (chw.length % mean.length !== 0) {
    throw new Error(`unnormalize: ${chw.length} values do not split into ${mean.length} channels`);
  }
  const plane = chw.length / mean.length;
  const out = new Float32Array(chw.length);
  for (let c = 0; c < mean.length; c++) {
    for (let i = c * plane; i < (c + 1) * plane; i++) out[i] = chw[i]! * std[c]! + mean[c]!;
  }
  return out;
}

/** Clamps every value into [0, 1] (NaN becomes 0). Returns a new array. */
export function clamp01(data: Float32Array): Float32Array {
  return data.map(clampValue);
}

/** The masked input: removed patches (mask 1) set to `grey` in every channel. Returns a new image. */
export function maskedImage(image: ChwImage, mask: Float32Array, patchSize: number, grey = 0.5): ChwImage {
  checkImage(image, 'maskedImage: image');
  const removed = removedPatches(image, mask, patchSize, 'maskedImage');
  const data = image.data.slice();
  forEachRemovedPixel(image, removed, patchSize, (i) => {
    data[i] = grey;
  });
  return { ...image, data };
}

/** The reconstruction with the visible patches (mask 0) taken from the original. Returns a new image. */
export function pasteVisible(
  original: ChwImage,
  reconstruction: ChwImage,
  mask: Float32Array,
  patchSize: number,
): ChwImage {
  checkImage(original, 'pasteVisible: original');
  checkImage(reconstruction, 'pasteVisible: reconstruction');
  if (
    original.channels !== reconstruction.channels ||
    original.height !== reconstruction.height ||
    original.width !== reconstruction.width
  ) {
    throw new Error(
      `pasteVisible: original is ${describe(original)} but reconstruction is ${describe(reconstruction)}`,
    );
  }
  const removed = removedPatches(original, mask, patchSize, 'pasteVisible');
  const data = original.data.slice();
  forEachRemovedPixel(original, removed, patchSize, (i) => {
    data[i] = reconstruction.data[i]!;
  });
  return { ...original, data };
}

/** One row of the MAE Figure 2 grid: original, masked input, reconstruction, reconstruction + visible patches. */
export function maeFigureRow(
  original: ChwImage,
  reconstruction: ChwImage,
  mask: Float32Array,
  patchSize: number,
  grey = 0.5,
): ChwImage[] {
  return [
    original,
    maskedImage(original, mask, patchSize, grey),
    reconstruction,
    pasteVisible(original, reconstruction, mask, patchSize),
  ];
}

// ---------------------------------------------------------------------------------------------------------------

function checkImage(image: ChwImage, what: string): void {
  const { channels, height, width, data } = image;
  if (channels !== 1 && channels !== 3) throw new Error(`${what}: channels must be 1 or 3, got ${channels}`);
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new Error(`${what}: height and width must be positive integers, got ${height} x ${width}`);
  }
  if (!(data instanceof Float32Array) || data.length !== channels * height * width) {
    throw new Error(`${what}: ${describe(image)} needs a Float32Array of ${channels * height * width} values`);
  }
}

/** Validates the mask against the image and patch size and returns, per patch, whether it was removed. */
function removedPatches(image: ChwImage, mask: Float32Array, patchSize: number, fn: string): boolean[] {
  const positive = Number.isInteger(patchSize) && patchSize >= 1;
  if (!positive || image.height % patchSize !== 0 || image.width % patchSize !== 0) {
    throw new Error(`${fn}: patch size ${patchSize} does not divide the image size ${image.height} x ${image.width}`);
  }
  const patches = (image.height / patchSize) * (image.width / patchSize);
  if (mask.length !== patches) {
    throw new Error(`${fn}: mask has ${mask.length} values but the image has ${patches} patches of ${patchSize}`);
  }
  return Array.from(mask, (m, i) => {
    if (m !== 0 && m !== 1) throw new Error(`${fn}: mask value ${m} at patch ${i} is neither 0 nor 1`);
    return m === 1;
  });
}

/** Calls `fn` with the data index of every pixel, in every channel, of every removed patch. */
function forEachRemovedPixel(
  image: ChwImage,
  removed: boolean[],
  patchSize: number,
  fn: (index: number) => void,
): void {
  const patchesPerRow = image.width / patchSize;
  const plane = image.height * image.width;
  removed.forEach((isRemoved, patch) => {
    if (!isRemoved) return;
    const py = Math.floor(patch / patchesPerRow) * patchSize;
    const px = (patch % patchesPerRow) * patchSize;
    for (let c = 0; c < image.channels; c++) {
      for (let y = py; y < py + patchSize; y++) {
        for (let x = px; x < px + patchSize; x++) fn(c * plane + y * image.width + x);
      }
    }
  });
}

function describe(image: ChwImage): string {
  return `${image.channels} x ${image.height} x ${image.width}`;
}

function clampValue(v: number): number {
  return v > 0 ? (v < 1 ? v : 1) : 0;
}

function toByte(v: number): number {
  return Math.round(clampValue(v) * 255);
}
