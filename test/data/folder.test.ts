// Image folders made with sharp (PNG, JPEG, WebP) plus corrupt files: scanning, labels, decoding, skip vs stop.
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataLoader, ImageFolderDataset, decodeImageFile, scanImageFolder } from '../../lib/data/index.js';

const root = mkdtempSync(join(tmpdir(), 'mae-folder-'));
const classes = join(root, 'classes');
const flat = join(root, 'flat');
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A 6 x 4 (w x h) RGB image whose pixel (x, y) is (10x + seed, 20y + seed, 7 + seed). */
function rgb(seed: number): Buffer {
  const px = Buffer.alloc(6 * 4 * 3);
  for (let y = 0; y < 4; y++) {
    for (let x = 0; x < 6; x++) px.set([10 * x + seed, 20 * y + seed, 7 + seed], (y * 6 + x) * 3);
  }
  return px;
}
const raw = { raw: { width: 6, height: 4, channels: 3 as const } };

beforeAll(async () => {
  for (const d of ['bird', 'ant', 'cat/sub', '.hidden']) mkdirSync(join(classes, d), { recursive: true });
  await sharp(rgb(1), raw).png().toFile(join(classes, 'ant', 'a.png'));
  await sharp(rgb(2), raw).jpeg({ quality: 95 }).toFile(join(classes, 'ant', 'b.JPG'));
  await sharp(rgb(3), raw).webp({ lossless: true }).toFile(join(classes, 'bird', 'c.webp'));
  await sharp(rgb(4), raw).png().toFile(join(classes, 'cat', 'sub', 'd.png'));
  writeFileSync(join(classes, 'bird', 'notes.txt'), 'not an image');
  await sharp(rgb(5), raw).png().toFile(join(classes, '.hidden', 'e.png'));
  writeFileSync(join(classes, 'bird', 'broken.png'), 'definitely not a png');
  const good = readFileSync(join(classes, 'ant', 'a.png'));
  writeFileSync(join(classes, 'cat', 'truncated.png'), good.subarray(0, good.length - 20));
  mkdirSync(flat);
  await sharp(rgb(6), raw).png().toFile(join(flat, 'x.png'));
  await sharp(Buffer.alloc(6 * 4, 99), { raw: { width: 6, height: 4, channels: 1 } }).png().toFile(join(flat, 'y.png'));
});

describe('image folders', () => {
  it('lists class folders in sorted order, recursively, ignoring hidden and non-image files', async () => {
    const index = await scanImageFolder(classes);
    expect(index.classes).toEqual(['ant', 'bird', 'cat']);
    expect(index.files.map((f) => f.slice(classes.length + 1))).toEqual(['ant/a.png', 'ant/b.JPG', 'bird/broken.png', 'bird/c.webp', 'cat/truncated.png', 'cat/sub/d.png']);
    expect(Array.from(index.labels)).toEqual([0, 0, 1, 1, 2, 2]);
  });

  it("lists the TIFF files torchvision's ImageFolder reads; warns about the .bmp/.ppm/.pgm files it reads and sharp cannot", async () => {
    const dir = join(root, 'tiff');
    mkdirSync(join(dir, 'a'), { recursive: true });
    mkdirSync(join(dir, 'b'), { recursive: true });
    await sharp(rgb(1), raw).tiff({ compression: 'lzw' }).toFile(join(dir, 'a', 'x.tif'));
    await sharp(rgb(2), raw).tiff({ compression: 'deflate' }).toFile(join(dir, 'b', 'y.TIFF'));
    writeFileSync(join(dir, 'b', 'z.bmp'), 'BM');
    writeFileSync(join(dir, 'b', 'w.pgm'), 'P5');
    const warnings: string[] = [];
    const ds = await ImageFolderDataset.open(dir, { onBadFile: 'stop', onWarning: (m) => warnings.push(m) });
    expect(ds.index.files.map((f) => f.slice(dir.length + 1))).toEqual(['a/x.tif', 'b/y.TIFF']);
    expect(Array.from((await ds.get(1)).image.subarray(0, 3))).toEqual([2 / 255, 12 / 255, 22 / 255].map((v) => Math.fround(v))); // lossless: exact
    expect(warnings).toEqual([`${dir}: left out 2 image file(s) of a format torchvision's ImageFolder reads but sharp cannot decode (.bmp, .pgm, .ppm), e.g. ${join(dir, 'b', 'w.pgm')}; convert them to PNG to use them`]);
  });

  it('lists each folder once: symbolic links back to a folder above, or a second link to one, are skipped with a warning', async () => {
    const loops = join(root, 'loops');
    mkdirSync(join(loops, 'a'), { recursive: true });
    mkdirSync(join(loops, 'b'));
    await sharp(rgb(1), raw).png().toFile(join(loops, 'a', 'x.png'));
    await sharp(rgb(2), raw).png().toFile(join(loops, 'b', 'y.png'));
    // a/self and a/again loop back to a (each level would double the paths: 2^40 before the kernel's limit); b/to-a
    // is a second way into a
    symlinkSync('.', join(loops, 'a', 'self'));
    symlinkSync('.', join(loops, 'a', 'again'));
    symlinkSync('../a', join(loops, 'b', 'to-a'));
    const warnings: string[] = [];
    const index = await scanImageFolder(loops, (m) => warnings.push(m));
    expect(index.files.map((f) => f.slice(loops.length + 1))).toEqual(['a/x.png', 'b/y.png']);
    expect(Array.from(index.labels)).toEqual([0, 1]);
    expect(warnings.sort()).toEqual(
      ['a/again', 'a/self', 'b/to-a'].map((l) => `${join(loops, l)}: skipped, the folder ${realpathSync(join(loops, 'a'))} is listed already (a symbolic link to it, or a link loop)`),
    );
  });

  it('reports broken symbolic links (to an image or a folder) through onWarning and leaves them out', async () => {
    const dir = join(root, 'dangling');
    mkdirSync(join(dir, 'cat'), { recursive: true });
    mkdirSync(join(dir, 'dog'));
    await sharp(rgb(1), raw).png().toFile(join(dir, 'cat', '1.png'));
    await sharp(rgb(2), raw).png().toFile(join(dir, 'dog', '1.png'));
    symlinkSync(join(root, 'gone', '2.png'), join(dir, 'cat', '2.png'));
    symlinkSync(join(root, 'gone', 'dogs'), join(dir, 'dog', 'more'));
    symlinkSync(join(root, 'gone', 'hidden.png'), join(dir, 'dog', '.hidden.png')); // hidden: ignored, as any hidden name
    const warnings: string[] = [];
    const ds = await ImageFolderDataset.open(dir, { onWarning: (m) => warnings.push(m) });
    expect(ds.index.files.map((f) => f.slice(dir.length + 1))).toEqual(['cat/1.png', 'dog/1.png']);
    expect(warnings).toEqual([
      `${join(dir, 'cat', '2.png')}: skipped, a symbolic link to ${join(root, 'gone', '2.png')} that cannot be followed (ENOENT)`,
      `${join(dir, 'dog', 'more')}: skipped, a symbolic link to ${join(root, 'gone', 'dogs')} that cannot be followed (ENOENT)`,
    ]);
  });

  it("orders class folders and files by code point, as Python's sorted() (torchvision's labels)", async () => {
    const dir = join(root, 'unicode');
    // U+1F41F (beyond U+FFFF: a surrogate pair, whose first code unit sorts below U+FB01), U+FB01, ASCII
    const names = ['\u{1F41F} fish', '\uFB01sh-ligature', 'zebra'];
    for (const n of names) {
      mkdirSync(join(dir, n), { recursive: true });
      for (const f of ['\u{1F41F}.png', '\uFB01.png']) await sharp(rgb(1), raw).png().toFile(join(dir, n, f));
    }
    const index = await scanImageFolder(dir);
    expect(index.classes).toEqual(['zebra', '\uFB01sh-ligature', '\u{1F41F} fish']);
    expect(index.files.map((f) => f.slice(dir.length + 1))).toEqual(
      ['zebra', '\uFB01sh-ligature', '\u{1F41F} fish'].flatMap((n) => [`${n}/\uFB01.png`, `${n}/\u{1F41F}.png`]),
    );
    expect(Array.from(index.labels)).toEqual([0, 0, 1, 1, 2, 2]);
  });

  it('gives label -1 in a flat folder and reports empty folders', async () => {
    const ds = await ImageFolderDataset.open(flat);
    expect([ds.length, ds.numClasses, ds.height, ds.width]).toEqual([2, 0, 0, 0]);
    expect((await ds.get(0)).label).toBe(-1);
    const empty = mkdtempSync(join(root, 'empty-'));
    await expect(scanImageFolder(empty)).rejects.toThrow(`${empty}: no images found (looked for .jpg, .jpeg, .png, .webp, .tif, .tiff files)`);
  });

  it('decodes PNG and lossless WebP exactly to CHW floats, and JPEG closely', async () => {
    const ds = await ImageFolderDataset.open(classes, { onBadFile: 'stop' });
    const expectPixels = (image: Float32Array, seed: number, tol: number) => {
      const px = rgb(seed);
      for (let c = 0; c < 3; c++) {
        for (let p = 0; p < 24; p++) expect(Math.abs(image[c * 24 + p]! - px[p * 3 + c]! / 255), `c${c} p${p}`).toBeLessThanOrEqual(tol);
      }
    };
    const a = await ds.get(0);
    expect([a.height, a.width, a.label]).toEqual([4, 6, 0]);
    expectPixels(a.image, 1, 1e-7); // float32 rounding of p / 255 only
    expectPixels((await ds.get(3)).image, 3, 1e-7);
    expectPixels((await ds.get(1)).image, 2, 12 / 255);
  });

  it("decodes a JPEG with stray bytes before a marker (libjpeg warns, PIL decodes it), refuses one cut short", async () => {
    const dir = join(root, 'stray');
    mkdirSync(dir);
    const jpeg = await sharp(rgb(8), raw).jpeg({ quality: 95 }).toBuffer();
    const sos = jpeg.indexOf(Buffer.from([0xff, 0xda])); // 'Corrupt JPEG data: 3 extraneous bytes before marker 0xda'
    writeFileSync(join(dir, 'clean.jpg'), jpeg);
    writeFileSync(join(dir, 'stray.jpg'), Buffer.concat([jpeg.subarray(0, sos), Buffer.from([0, 0, 0]), jpeg.subarray(sos)]));
    writeFileSync(join(dir, 'short.jpg'), jpeg.subarray(0, Math.floor(jpeg.length * 0.7)));
    const clean = await decodeImageFile(join(dir, 'clean.jpg'), 3);
    const stray = await decodeImageFile(join(dir, 'stray.jpg'), 3);
    expect(Array.from(stray.pixels)).toEqual(Array.from(clean.pixels));
    await expect(decodeImageFile(join(dir, 'short.jpg'), 3)).rejects.toThrow(/short\.jpg: cannot decode image: .*premature end of JPEG image/);
  });

  it('decodes to 1 or 3 channels on request (grey replicated, colour to luminance)', async () => {
    const grey = await decodeImageFile(join(flat, 'y.png'), 3);
    expect(grey.channels).toBe(3);
    expect(Array.from(grey.pixels.subarray(0, 6))).toEqual([99, 99, 99, 99, 99, 99]);
    const lum = await decodeImageFile(join(flat, 'x.png'), 1);
    expect([lum.channels, lum.height, lum.width, lum.pixels.length]).toEqual([1, 4, 6, 24]);
    const small = await decodeImageFile(join(flat, 'x.png'), 3, 2);
    expect([small.height, small.width]).toEqual([2, 3]);
  });

  it("decodes as ImageFolder's PIL loader (open + convert('RGB')): EXIF orientation ignored, alpha dropped without compositing, 16-bit to its high byte", async () => {
    const dir = join(root, 'pil');
    mkdirSync(dir);
    // 6 x 2 JPEG tagged 'rotate 90' (EXIF orientation 6): PIL's Image.open does not apply it
    await sharp(rgb(0).subarray(0, 36), { raw: { width: 6, height: 2, channels: 3 } }).withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toFile(join(dir, 'exif.jpg'));
    const exif = await decodeImageFile(join(dir, 'exif.jpg'), 3);
    expect([exif.width, exif.height]).toEqual([6, 2]);
    // RGBA and grey + alpha, fully transparent: the colour is kept, not composited on black or white
    await sharp(Buffer.from([200, 100, 50, 0, 10, 20, 30, 128]), { raw: { width: 2, height: 1, channels: 4 } }).png().toFile(join(dir, 'rgba.png'));
    expect(Array.from((await decodeImageFile(join(dir, 'rgba.png'), 3)).pixels)).toEqual([200, 100, 50, 10, 20, 30]);
    await sharp(Buffer.from([77, 0, 9, 255]), { raw: { width: 2, height: 1, channels: 2 } }).png().toFile(join(dir, 'la.png'));
    expect(Array.from((await decodeImageFile(join(dir, 'la.png'), 3)).pixels)).toEqual([77, 77, 77, 9, 9, 9]);
    // 16 bits per channel: the high byte, as PIL's RGB;16B
    await sharp(new Uint16Array([65280, 32768, 257, 65535, 0, 255]), { raw: { width: 2, height: 1, channels: 3 } }).toColourspace('rgb16').png().toFile(join(dir, 'rgb16.png'));
    expect(Array.from((await decodeImageFile(join(dir, 'rgb16.png'), 3)).pixels)).toEqual([255, 128, 1, 255, 0, 0]);
  });

  it("onBadFile 'skip' warns once per file and substitutes the next good file", async () => {
    const warnings: string[] = [];
    const ds = await ImageFolderDataset.open(classes, { onBadFile: 'skip', onWarning: (m) => warnings.push(m) });
    const broken = await ds.get(2); // bird/broken.png -> bird/c.webp
    expect(broken.label).toBe(1);
    expect(Array.from(broken.image)).toEqual(Array.from((await ds.get(3)).image));
    await ds.get(2);
    const truncated = await ds.get(4); // cat/truncated.png -> cat/sub/d.png
    expect(truncated.label).toBe(2);
    expect(Array.from(truncated.image)).toEqual(Array.from((await ds.get(5)).image));
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain(join(classes, 'bird', 'broken.png'));
    expect(warnings[1]).toContain(join(classes, 'cat', 'truncated.png'));

    // the last file bad: wraps around to the first; all files bad: a clear error
    const wrap = join(root, 'wrap');
    mkdirSync(wrap);
    await sharp(rgb(9), raw).png().toFile(join(wrap, 'a.png'));
    writeFileSync(join(wrap, 'z.png'), 'junk');
    const wrapDs = await ImageFolderDataset.open(wrap, { onWarning: () => {} });
    expect(Array.from((await wrapDs.get(1)).image)).toEqual(Array.from((await wrapDs.get(0)).image));
    const allBad = join(root, 'all-bad');
    mkdirSync(allBad);
    writeFileSync(join(allBad, 'z.png'), 'junk');
    const allBadDs = await ImageFolderDataset.open(allBad, { onWarning: () => {} });
    await expect(allBadDs.get(0)).rejects.toThrow(`${allBad}: all 1 image files failed to decode`);
  });

  it('reports a bad file once when samples are fetched concurrently (a DataLoader batch)', async () => {
    const dir = join(root, 'concurrent');
    mkdirSync(dir);
    await sharp(rgb(1), raw).png().toFile(join(dir, '0.png'));
    for (const k of [1, 2, 3]) writeFileSync(join(dir, `${k}.png`), 'not an image');
    await sharp(rgb(2), raw).png().toFile(join(dir, '4.png'));
    const warnings: string[] = [];
    const ds = await ImageFolderDataset.open(dir, { channels: 1, onWarning: (m) => warnings.push(m) });
    const loader = new DataLoader(ds, { batchSize: 5, imageSize: 4, workers: 0, shuffle: false });
    for await (const b of loader.epoch(0)) expect(b.size).toBe(5);
    expect(warnings.map((m) => m.slice(0, m.indexOf(': cannot decode'))).sort()).toEqual([1, 2, 3].map((k) => `skipping bad image file: ${join(dir, `${k}.png`)}`));
  });

  it("onBadFile 'stop' rejects with an Error naming the file, also through the DataLoader", async () => {
    const ds = await ImageFolderDataset.open(classes, { onBadFile: 'stop' });
    await expect(ds.get(4)).rejects.toThrow(`${join(classes, 'cat', 'truncated.png')}: cannot decode image`);
    await expect(ds.get(2)).rejects.toThrow(/broken\.png: cannot decode image: .*onBadFile is 'stop'/);
    const loader = new DataLoader(ds, { batchSize: 3, imageSize: 4, shuffle: false });
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const b of loader.epoch(0)) seen.push(b.step);
      })(),
    ).rejects.toThrow(`${join(classes, 'bird', 'broken.png')}: cannot decode image`);
    expect(seen).toEqual([]);
    await loader.close();
  });

  it('feeds variable-size images through the DataLoader (imageSize required)', async () => {
    const ds = await ImageFolderDataset.open(classes, { onBadFile: 'skip', onWarning: () => {} });
    expect(() => new DataLoader(ds, { batchSize: 2 })).toThrow('DataLoader: imageSize is required for a dataset of variable-size images');
    for (const augment of [true, false]) {
      const loader = new DataLoader(ds, { batchSize: 4, imageSize: 5, augment, seed: 1 });
      const labels: number[] = [];
      for await (const b of loader.epoch(0)) {
        expect(b.shape).toEqual([b.size, 3, 5, 5]);
        expect(b.images.length).toBe(b.size * 75);
        labels.push(...b.labels);
      }
      expect(labels).toHaveLength(6);
      await loader.close();
    }
  });
});
