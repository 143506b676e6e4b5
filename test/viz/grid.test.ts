// Tests for lib/viz/grid.ts: grid geometry, padding, scaling, channel handling, clamping, mask greying, pasting back
// visible patches, and the four-image MAE figure row.
import { describe, expect, it } from 'vitest';
import {
  clamp01,
  maeFigureRow,
  makeGrid,
  maskedImage,
  pasteVisible,
  unnormalize,
  type ChwImage,
  type GridOptions,
} from '../../lib/viz/grid.js';
import type { Image8 } from '../../lib/viz/png.js';

/** The RGB triple at (x, y) of a 3-channel grid. */
function rgbAt(grid: Image8, x: number, y: number): number[] {
  const i = (y * grid.width + x) * 3;
  return Array.from(grid.pixels.subarray(i, i + 3));
}

/** An image whose every value is `value`. */
function flat(channels: number, height: number, width: number, value: number): ChwImage {
  return { channels, height, width, data: new Float32Array(channels * height * width).fill(value) };
}

/** A 1-channel image with value (y * width + x) / 100, so each pixel is identifiable. */
function ramp(height: number, width: number): ChwImage {
  return { channels: 1, height, width, data: Float32Array.from({ length: height * width }, (_, i) => i / 100) };
}

describe('makeGrid', () => {
  it('has the right geometry and places each image inside its padded cell', () => {
    const a = flat(3, 4, 5, 0);
    const rows = [
      [a, a, a],
      [a, a],
    ];
    const options: GridOptions = { pad: 2 };
    const grid = makeGrid(rows, options);
    expect(grid.channels).toBe(3);
    expect(grid.width).toBe(3 * 5 + 4 * 2);
    expect(grid.height).toBe(2 * 4 + 3 * 2);
    expect(grid.pixels.length).toBe(grid.width * grid.height * 3);
    const at = (x: number, y: number) => rgbAt(grid, x, y);
    expect(at(0, 0)).toEqual([255, 255, 255]); // padding (white background)
    expect(at(2, 2)).toEqual([0, 0, 0]); // first pixel of image (0, 0)
    expect(at(6, 5)).toEqual([0, 0, 0]); // last pixel of image (0, 0)
    expect(at(7, 2)).toEqual([255, 255, 255]); // gap between columns
    expect(at(9, 2)).toEqual([0, 0, 0]); // image (0, 1) starts at x = 2 + 5 + 2
    expect(at(9, 8)).toEqual([0, 0, 0]); // image (1, 1) starts at y = 2 + 4 + 2
    expect(at(9, 7)).toEqual([255, 255, 255]); // gap between rows
    expect(at(16, 8)).toEqual([255, 255, 255]); // the missing third cell of row 1 stays background
    expect(at(16, 2)).toEqual([0, 0, 0]); // while row 0 has its third image there
  });

  it('upscales by nearest neighbour and keeps CHW channel order', () => {
    const image: ChwImage = {
      channels: 3,
      height: 1,
      width: 2,
      data: new Float32Array([1, 0, 0, 1, 0, 0.2]), // R plane, G plane, B plane
    };
    const grid = makeGrid([[image]], { pad: 1, scale: 3, background: 0 });
    expect([grid.width, grid.height]).toEqual([2 * 3 + 2, 1 * 3 + 2]);
    const at = (x: number, y: number) => rgbAt(grid, x, y);
    for (let y = 1; y <= 3; y++) {
      for (let x = 1; x <= 3; x++) expect(at(x, y)).toEqual([255, 0, 0]);
      for (let x = 4; x <= 6; x++) expect(at(x, y)).toEqual([0, 255, 51]);
    }
    expect(at(0, 0)).toEqual([0, 0, 0]);
  });

  it('is greyscale for greyscale images, draws them grey in an RGB grid, and clamps values', () => {
    const grey: ChwImage = { channels: 1, height: 1, width: 3, data: new Float32Array([-0.5, 0.5, 7]) };
    const g1 = makeGrid([[grey]], { pad: 0 });
    expect(g1.channels).toBe(1);
    expect(Array.from(g1.pixels)).toEqual([0, 128, 255]);
    const g3 = makeGrid([[grey, flat(3, 1, 3, NaN)]], { pad: 0 });
    expect(g3.channels).toBe(3);
    expect(Array.from(g3.pixels.subarray(0, 9))).toEqual([0, 0, 0, 128, 128, 128, 255, 255, 255]);
    expect(Array.from(g3.pixels.subarray(9))).toEqual(new Array(9).fill(0)); // NaN -> 0
  });

  it('sizes cells by the largest image', () => {
    const grid = makeGrid([[flat(1, 2, 2, 0)], [flat(1, 3, 1, 0)]], { pad: 1, background: 0.5 });
    expect([grid.width, grid.height]).toEqual([2 + 2, 2 * 3 + 3]);
    expect(grid.pixels[1 * grid.width + 2]).toBe(0); // row 0 image
    expect(grid.pixels[3 * grid.width + 1]).toBe(128); // below the 2-high image, inside its 3-high cell
  });

  it('rejects bad options and images', () => {
    expect(() => makeGrid([])).toThrow('makeGrid: no images');
    expect(() => makeGrid([[]])).toThrow('makeGrid: no images');
    expect(() => makeGrid([[flat(1, 1, 1, 0)]], { pad: -1 })).toThrow(/pad must be a non-negative integer/);
    expect(() => makeGrid([[flat(1, 1, 1, 0)]], { scale: 0 })).toThrow(/scale must be a positive integer/);
    expect(() => makeGrid([[flat(1, 1, 1, 0)]], { background: 2 })).toThrow(/background must be in \[0, 1\]/);
    expect(() => makeGrid([[flat(2, 1, 1, 0)]])).toThrow('makeGrid: image 0: channels must be 1 or 3, got 2');
    const short = { channels: 3, height: 2, width: 2, data: new Float32Array(11) };
    expect(() => makeGrid([[flat(1, 1, 1, 0), short]])).toThrow(
      'makeGrid: image 1: 3 x 2 x 2 needs a Float32Array of 12 values',
    );
  });
});

describe('unnormalize and clamp01', () => {
  it('applies x * std + mean per channel', () => {
    const out = unnormalize(new Float32Array([0, 1, -1, 2, 0, 0]), [0.5, 0.25, 0], [0.5, 0.5, 2]);
    expect(Array.from(out)).toEqual([0.5, 1, -0.25, 1.25, 0, 0]);
    expect(() => unnormalize(new Float32Array(5), [0, 0], [1, 1])).toThrow(/5 values do not split into 2 channels/);
    expect(() => unnormalize(new Float32Array(4), [0, 0], [1])).toThrow(/same non-zero length/);
  });

  it('clamps into [0, 1] and maps NaN to 0, returning a new array', () => {
    const input = new Float32Array([-1, 0.25, 3, NaN, Infinity]);
    const out = clamp01(input);
    expect(Array.from(out)).toEqual([0, 0.25, 1, 0, 1]);
    expect(out).not.toBe(input);
  });
});

describe('maskedImage and pasteVisible', () => {
  // A 4 x 6 image with 2 x 2 patches: a 2 x 3 patch grid, patches numbered row-major 0..5.
  const mask = new Float32Array([0, 1, 0, 0, 0, 1]);

  it('greys out exactly the removed patches in every channel', () => {
    const image = flat(3, 4, 6, 0.9);
    const out = maskedImage(image, mask, 2, 0.5);
    expect(image.data.every((v) => v === Math.fround(0.9))).toBe(true); // input untouched
    const removed = (x: number, y: number) => (y < 2 && x >= 2 && x < 4) || (y >= 2 && x >= 4);
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 4; y++) {
        for (let x = 0; x < 6; x++) {
          expect(out.data[c * 24 + y * 6 + x]).toBe(removed(x, y) ? 0.5 : Math.fround(0.9));
        }
      }
    }
    expect([out.channels, out.height, out.width]).toEqual([3, 4, 6]);
  });

  it('pastes the visible patches of the original over the reconstruction', () => {
    const original = ramp(4, 6);
    const reconstruction = flat(1, 4, 6, -1);
    const out = pasteVisible(original, reconstruction, mask, 2);
    for (let y = 0; y < 4; y++) {
      for (let x = 0; x < 6; x++) {
        const patch = Math.floor(y / 2) * 3 + Math.floor(x / 2);
        expect(out.data[y * 6 + x]).toBe(mask[patch] === 1 ? -1 : original.data[y * 6 + x]);
      }
    }
  });

  it('builds the four-image figure row', () => {
    const original = ramp(4, 6);
    const reconstruction = flat(1, 4, 6, 0.3);
    const row = maeFigureRow(original, reconstruction, mask, 2);
    expect(row).toHaveLength(4);
    expect(row[0]).toBe(original);
    expect(row[1]!.data[2]).toBe(0.5); // pixel (2, 0) lies in removed patch 1
    expect(row[2]).toBe(reconstruction);
    expect(row[3]!.data[0]).toBe(original.data[0]);
    expect(row[3]!.data[2]).toBe(Math.fround(0.3));
    const grid = makeGrid([row, row], { pad: 1 });
    expect([grid.width, grid.height, grid.channels]).toEqual([4 * 6 + 5, 2 * 4 + 3, 1]);
  });

  it('rejects a mask or patch size that does not fit the image', () => {
    const image = flat(1, 4, 6, 0);
    const fiveValues = new Float32Array(5);
    expect(() => maskedImage(image, fiveValues, 2)).toThrow(/mask has 5 values but the image has 6 patches of 2/);
    expect(() => maskedImage(image, mask, 4)).toThrow(/patch size 4 does not divide the image size 4 x 6/);
    const fractional = new Float32Array([0, 0.3, 0, 0, 0, 0]);
    expect(() => maskedImage(image, fractional, 2)).toThrow(/mask value 0\.3.* at patch 1 is neither 0 nor 1/);
    expect(() => pasteVisible(image, flat(3, 4, 6, 0), mask, 2)).toThrow(
      'pasteVisible: original is 1 x 4 x 6 but reconstruction is 3 x 4 x 6',
    );
  });
});
