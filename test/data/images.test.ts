// loadImages: the official evaluation transform (resize the shorter side to int(size / 0.875) bicubic, center crop,
// normalise) through sharp, against the same transform done by PIL (test/fixtures/eval-transform/make_fixture.py).
// libvips and PIL antialias with slightly different kernels, so values agree to a fraction of a grey level on
// average and within a few grey levels at sharp edges; a crop one pixel off would be far from that.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evalResizeLength, loadImages } from '../../lib/data/images.js';
import { readSafetensors } from '../../lib/io/safetensors.js';

const dir = new URL('../fixtures/eval-transform/', import.meta.url).pathname;
const expected = (await readSafetensors(join(dir, 'expected.safetensors'))).tensors;
const GREY_LEVEL = 1 / 255 / 0.225; // one 8-bit step after normalisation

function diff(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

describe('loadImages', () => {
  it('matches the official transform done with PIL (landscape and portrait images)', async () => {
    const t = await loadImages([join(dir, 'wide.png'), join(dir, 'tall.png')], { size: 64 });
    expect(t.shape).toEqual([2, 3, 64, 64]);
    const all = t.dataSync();
    const n = 3 * 64 * 64;
    ['wide.png', 'tall.png'].forEach((f, i) => {
      const d = diff(all.subarray(i * n, (i + 1) * n), expected.get(f)!.data as Float32Array);
      expect(d.mean, f).toBeLessThan(0.5 * GREY_LEVEL);
      expect(d.max, f).toBeLessThan(8 * GREY_LEVEL);
    });
    t.dispose();
  });

  it('buffers give what files give; greyscale; the resize length of the official code', async () => {
    const a = await loadImages([join(dir, 'tall.png')], { size: 32 });
    const b = await loadImages([new Uint8Array(readFileSync(join(dir, 'tall.png')))], { size: 32 });
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
    const g = await loadImages([join(dir, 'wide.png')], { size: 16, channels: 1, mean: [0.5], std: [0.5] });
    expect(g.shape).toEqual([1, 1, 16, 16]);
    expect(Math.max(...g.dataSync())).toBeLessThanOrEqual(1);
    expect(evalResizeLength(224)).toBe(256);
    expect(evalResizeLength(32)).toBe(36);
    expect(evalResizeLength(448)).toBe(448);
    [a, b, g].forEach((t) => t.dispose());
  });

  it("reads a JPEG with stray bytes before a marker as PIL does (libjpeg only warns), refuses one cut short", async () => {
    const sharp = (await import('sharp')).default;
    const jpeg = await sharp(readFileSync(join(dir, 'wide.png'))).jpeg({ quality: 90 }).toBuffer();
    const sos = jpeg.indexOf(Buffer.from([0xff, 0xda]));
    const stray = new Uint8Array(Buffer.concat([jpeg.subarray(0, sos), Buffer.from([0, 0, 0]), jpeg.subarray(sos)]));
    const t = await loadImages([new Uint8Array(jpeg), stray], { size: 16 });
    const all = t.dataSync();
    expect(Array.from(all.subarray(768))).toEqual(Array.from(all.subarray(0, 768)));
    t.dispose();
    await expect(loadImages([new Uint8Array(jpeg.subarray(0, jpeg.length >> 1))], { size: 16 })).rejects.toThrow(/image 0 \(\d+ bytes\): cannot load image: .*premature end of JPEG image/);
  });

  it('bad inputs: an Error naming the image', async () => {
    await expect(loadImages([new Uint8Array([1, 2, 3, 4])])).rejects.toThrow(/image 0 \(4 bytes\): cannot load image/);
    await expect(loadImages([join(dir, 'absent.png')])).rejects.toThrow(/absent\.png: cannot load image/);
    await expect(loadImages([])).rejects.toThrow(/no images given/);
    await expect(loadImages([join(dir, 'wide.png')], { mean: [0.5] })).rejects.toThrow(/need 3 mean/);
  });

  it('bad options and inputs: an Error naming the option or the input, before any image is read', async () => {
    const wide = join(dir, 'wide.png');
    const grey = { size: 4, channels: 1 as const };
    await expect(loadImages([wide], { ...grey, mean: [NaN], std: [1] })).rejects.toThrow('loadImages: mean[0] must be a finite number, got the number NaN');
    await expect(loadImages([wide], { ...grey, mean: [0], std: [Infinity] })).rejects.toThrow('loadImages: std[0] must be a finite number > 0, got the number Infinity');
    for (const cropPct of [0, NaN, -0.5, 1.5]) {
      await expect(loadImages([wide], { ...grey, cropPct })).rejects.toThrow(`loadImages: cropPct must be a number in (0, 1] (the crop's share of the resized shorter side), got ${cropPct}`);
    }
    await expect(loadImages([wide, null as unknown as string])).rejects.toThrow('loadImages: inputs[1] must be a file path or a Uint8Array of encoded image bytes, got null');
    await expect(loadImages(wide as unknown as string[])).rejects.toThrow("loadImages: inputs must be an array, each item a file path or a Uint8Array of encoded image bytes, got the string");
    const t = await loadImages([wide], { ...grey, cropPct: 1 });
    expect(t.shape).toEqual([1, 1, 4, 4]);
    t.dispose();
  });
});
