// Small image files for the data tests: smooth seeded RGB pictures (gradients plus mild noise, so that JPEG keeps
// them close), written with sharp.
import sharp from 'sharp';
import { Generator } from '../../lib/random.js';

/** An h x w RGB image, HWC bytes, a pure function of (h, w, seed). */
export function smoothPixels(h: number, w: number, seed: number): Buffer {
  const gen = new Generator(seed);
  const px = Buffer.alloc(h * w * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        px[(y * w + x) * 3 + c] = Math.round(128 + 60 * Math.sin((x + seed) / 5 + c) * Math.cos(y / 7) + 10 * (gen.uniform() - 0.5));
      }
    }
  }
  return px;
}

/** Writes smoothPixels(h, w, seed) to `path` as PNG (or JPEG of quality 95 when the name ends in .jpg). */
export async function writeImage(path: string, h: number, w: number, seed: number): Promise<void> {
  const img = sharp(smoothPixels(h, w, seed), { raw: { width: w, height: h, channels: 3 } });
  await (path.endsWith('.jpg') ? img.jpeg({ quality: 95 }) : img.png()).toFile(path);
}
