/**
 * A small PNG encoder: 8-bit greyscale or RGB, no interlacing, every scanline with filter type 0 (None), the image
 * data compressed with zlib (node:zlib) into one IDAT chunk. Chunk checksums are CRC-32 (io/crc32.ts).
 */
import { deflateSync } from 'node:zlib';
import { describeValue, expectObject, expectString } from '../check.js';
import { writeFileAtomic } from '../io/atomic.js';
import { crc32 } from '../io/crc32.js';

/** An 8-bit image: `pixels` holds height rows of width pixels of `channels` bytes each (interleaved, row-major). */
export interface Image8 {
  width: number;
  height: number;
  channels: 1 | 3;
  pixels: Uint8Array;
}

const SIGNATURE = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Encodes pixels as a PNG file. */
export function encodePng(width: number, height: number, channels: 1 | 3, pixels: Uint8Array | Uint8ClampedArray): Uint8Array {
  const validSide = (n: number) => Number.isInteger(n) && n >= 1 && n <= 0x7fffffff;
  if (!validSide(width) || !validSide(height)) {
    throw new Error(`encodePng: width and height must be integers in [1, 2^31 - 1], got ${width} x ${height}`);
  }
  if (channels !== 1 && channels !== 3) throw new Error(`encodePng: channels must be 1 or 3, got ${channels}`);
  // (other arrays would be copied with their values taken modulo 256)
  if (!(pixels instanceof Uint8Array || pixels instanceof Uint8ClampedArray))
    throw new Error(`encodePng: pixels must be a Uint8Array of 8-bit values, got ${describeValue(pixels)}`);
  const rowBytes = width * channels;
  if (pixels.length !== rowBytes * height) {
    throw new Error(
      `encodePng: ${width} x ${height} x ${channels} needs ${rowBytes * height} bytes, got ${pixels.length}`,
    );
  }

  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header[8] = 8; // bit depth
  header[9] = channels === 1 ? 0 : 2; // colour type: greyscale or truecolour
  // bytes 10..12: compression 0 (deflate), filter method 0, interlace 0 (none)

  const raw = new Uint8Array((rowBytes + 1) * height);
  for (let y = 0; y < height; y++) {
    // raw[y * (rowBytes + 1)] stays 0: filter type None
    raw.set(pixels.subarray(y * rowBytes, (y + 1) * rowBytes), y * (rowBytes + 1) + 1);
  }

  const chunks = [chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(SIGNATURE.length + chunks.reduce((n, c) => n + c.length, 0));
  out.set(SIGNATURE, 0);
  let offset = SIGNATURE.length;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/** Encodes an image and writes it to `path` atomically. */
export async function writePng(path: string, image: Image8): Promise<void> {
  expectString('writePng', 'path', path, 'a file path');
  expectObject('writePng', 'image', image, false, 'an image { width, height, channels, pixels }');
  await writeFileAtomic(path, encodePng(image.width, image.height, image.channels, image.pixels));
}

/** One chunk: 4-byte big-endian length, 4-byte type, data, CRC-32 over type and data. */
function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}
