/**
 * Image folders: listing them and decoding their files (JPEG, PNG, WebP) with sharp.
 *
 * Layout, as torchvision's ImageFolder:
 *   root/<class>/.../*.png   class mode: the sorted sub-folder names are the classes, label = position 0..K-1
 *   root/*.png               flat mode (no sub-folders): every label is -1
 * Names starting with '.' are ignored, and so are files without an image extension (torchvision's, less the formats
 * sharp cannot decode: .bmp, .ppm and .pgm files are left out with one warning per scan, so that a folder does not
 * silently hold fewer images than ImageFolder finds in it). Files are sorted by path, so
 * index i is the same file on every run. Names sort by Unicode code point, as Python's sorted() (so the classes get
 * torchvision's labels). A broken symbolic link (its target missing) is left out and reported through onWarning.
 *
 * sharp is imported lazily (only when a file is decoded), so loading IDX or CIFAR data never loads it.
 */
import type sharpType from 'sharp';
import { readdir, readlink, realpath, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { describeValue, expectFinite, expectFunction, expectInstance, expectInteger, expectString } from '../check.js';

/** What to do with a file that fails to decode: 'skip' warns once and uses the next good file; 'stop' throws. */
export type OnBadFile = 'skip' | 'stop';

export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff'];

/** The rest of torchvision's IMG_EXTENSIONS: images ImageFolder reads (through PIL) that sharp cannot decode. */
const UNDECODABLE_EXTENSIONS: readonly string[] = ['.bmp', '.pgm', '.ppm'];

export interface ImageFolderIndex {
  root: string;
  files: string[]; // join(root, ...) paths, sorted
  labels: Int32Array; // class index per file, -1 in flat mode
  classes: string[]; // sorted class folder names; empty in flat mode
}

/** A decoded image: 8-bit pixels, interleaved HWC. */
export interface DecodedImage {
  pixels: Uint8Array; // [height, width, channels]
  channels: number;
  height: number;
  width: number;
}

let sharpPromise: Promise<typeof sharpType> | null = null;

/**
 * Imports sharp once per thread. The DataLoader calls this on the main thread before it starts workers that decode
 * images: sharp's native libraries must stay loaded in the main thread (sharp issue #2263).
 */
export function loadSharp(): Promise<typeof sharpType> {
  sharpPromise ??= import('sharp').then((m) => m.default);
  return sharpPromise;
}

/** By code point, as Python's sorted(); JS's `<` compares UTF-16 code units, which puts U+10000.. before U+E000..U+FFFF. */
function byName(a: string, b: string): number {
  for (let i = 0; i < a.length && i < b.length; ) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x - y;
    i += x > 0xffff ? 2 : 1; // equal so far: both strings are at the same place
  }
  return a.length - b.length;
}

function isImageFile(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

interface Listing {
  dirs: string[];
  files: string[];
}

/**
 * Non-hidden sub-folders and image files of `dir` (symbolic links followed), both sorted by name. A link that cannot
 * be followed (its target is missing) is reported through `onWarning` and left out; the paths of files of a format
 * sharp cannot decode (UNDECODABLE_EXTENSIONS) are added to `undecodable`.
 */
async function listDir(dir: string, onWarning: (message: string) => void, undecodable: string[]): Promise<Listing> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new Error(`${dir}: cannot list image folder: ${(e as Error).message}`);
  }
  const dirs: string[] = [];
  const files: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    let isDir = entry.isDirectory();
    let isFile = entry.isFile();
    if (entry.isSymbolicLink()) {
      const path = join(dir, entry.name);
      let s;
      try {
        s = await stat(path);
      } catch (e) {
        const target = await readlink(path).catch(() => '?');
        onWarning(`${path}: skipped, a symbolic link to ${target} that cannot be followed (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        continue;
      }
      isDir = s.isDirectory();
      isFile = s.isFile();
    }
    if (isDir) dirs.push(entry.name);
    else if (isFile && isImageFile(entry.name)) files.push(entry.name);
    else if (isFile && UNDECODABLE_EXTENSIONS.includes(extname(entry.name).toLowerCase())) undecodable.push(join(dir, entry.name));
  }
  return { dirs: dirs.sort(byName), files: files.sort(byName) };
}

/**
 * All image files under `dir`, recursively, in sorted order. Each folder is listed once per scan (`listed` holds
 * their real paths): a symbolic link back to a folder above, or a second link to one, is skipped with a warning.
 */
async function listImagesRecursive(dir: string, listed: Set<string>, onWarning: (message: string) => void, undecodable: string[]): Promise<string[]> {
  const real = await realpath(dir);
  if (listed.has(real)) {
    onWarning(`${dir}: skipped, the folder ${real} is listed already (a symbolic link to it, or a link loop)`);
    return [];
  }
  listed.add(real);
  const { dirs, files } = await listDir(dir, onWarning, undecodable);
  const out = files.map((f) => join(dir, f));
  // one push per file: spreading a folder of over ~120,000 files into push() overflows the call stack
  for (const d of dirs) for (const f of await listImagesRecursive(join(dir, d), listed, onWarning, undecodable)) out.push(f);
  return out;
}

/** What a scan that found no images says of the files it left out as undecodable (nothing when there were none). */
function leftOut(undecodable: string[]): string {
  if (undecodable.length === 0) return '';
  return `; left out ${undecodable.length} file(s) of a format sharp cannot decode (${UNDECODABLE_EXTENSIONS.join(', ')}), e.g. ${[...undecodable].sort(byName)[0]}: convert them to PNG`;
}

/** Reports the files of a scan left out as undecodable, once, through `onWarning`. */
function warnUndecodable(root: string, undecodable: string[], onWarning: (message: string) => void): void {
  if (undecodable.length === 0) return;
  onWarning(`${root}: left out ${undecodable.length} image file(s) of a format torchvision's ImageFolder reads but sharp cannot decode (${UNDECODABLE_EXTENSIONS.join(', ')}), e.g. ${[...undecodable].sort(byName)[0]}; convert them to PNG to use them`);
}

/**
 * Lists an image folder (class mode if `root` has sub-folders, else flat mode). Odd but harmless layouts (image
 * files next to class folders, empty class folders) are reported through `onWarning`. Throws if nothing is found.
 */
export async function scanImageFolder(root: string, onWarning: (message: string) => void = console.warn): Promise<ImageFolderIndex> {
  expectString('scanImageFolder', 'root', root, 'a folder path');
  expectFunction('scanImageFolder', 'onWarning', onWarning);
  const undecodable: string[] = [];
  const top = await listDir(root, onWarning, undecodable);
  if (top.dirs.length === 0) {
    if (top.files.length === 0) throw new Error(`${root}: no images found (looked for ${IMAGE_EXTENSIONS.join(', ')} files)${leftOut(undecodable)}`);
    warnUndecodable(root, undecodable, onWarning);
    return { root, files: top.files.map((f) => join(root, f)), labels: new Int32Array(top.files.length).fill(-1), classes: [] };
  }
  if (top.files.length > 0) {
    onWarning(`${root}: ignoring ${top.files.length} image file(s) directly in the root (e.g. ${top.files[0]}) because it has class sub-folders`);
  }
  const files: string[] = [];
  const labels: number[] = [];
  const listed = new Set([await realpath(root)]);
  for (let k = 0; k < top.dirs.length; k++) {
    const classDir = join(root, top.dirs[k]!);
    const found = await listImagesRecursive(classDir, listed, onWarning, undecodable);
    if (found.length === 0) onWarning(`${classDir}: class folder '${top.dirs[k]}' (label ${k}) has no images`);
    for (const f of found) {
      files.push(f);
      labels.push(k);
    }
  }
  if (files.length === 0) {
    throw new Error(`${root}: no images found in its ${top.dirs.length} class folder(s) (looked for ${IMAGE_EXTENSIONS.join(', ')} files)${leftOut(undecodable)}`);
  }
  warnUndecodable(root, undecodable, onWarning);
  return { root, files, labels: Int32Array.from(labels), classes: top.dirs };
}

/** The channels argument of `where`: 1 or 3. */
function expectChannels(where: string, channels: unknown): void {
  if (channels !== 1 && channels !== 3) throw new Error(`${where}: channels must be 1 or 3, got ${describeValue(channels)}`);
}

/**
 * The sharp pipeline shared by decoding and re-encoding: with `shorterSide`, images whose shorter side is longer are
 * shrunk (lanczos3, aspect kept; JPEGs are shrunk while decoding) so that it equals `shorterSide`; smaller images
 * are left alone; then exactly `channels` channels (1: greyscale, 3: sRGB; alpha dropped). Truncated files fail
 * (failOn 'truncated': sharp only warns about them by default), as PIL refuses them; libjpeg's other warnings (such
 * as 'Corrupt JPEG data: N extraneous bytes before marker', which some ImageNet files give) do not, as PIL decodes
 * those files. Images of more than `maxPixels` pixels (sharp's own limit when not given) fail from their header,
 * before anything is decoded.
 */
async function imagePipeline(input: string | Uint8Array, channels: 1 | 3, shorterSide?: number, maxPixels?: number): Promise<sharpType.Sharp> {
  const sharp = await loadSharp();
  let pipeline = sharp(input, { failOn: 'truncated', ...(maxPixels !== undefined ? { limitInputPixels: maxPixels } : {}) });
  if (shorterSide !== undefined) {
    pipeline = pipeline.resize({ width: shorterSide, height: shorterSide, fit: 'outside', withoutEnlargement: true });
  }
  return pipeline.removeAlpha().toColourspace(channels === 1 ? 'b-w' : 'srgb');
}

async function decodeWith(pipeline: Promise<sharpType.Sharp>, channels: 1 | 3): Promise<DecodedImage> {
  const { data, info } = await (await pipeline).raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  if (info.channels !== channels || data.length !== info.width * info.height * channels) {
    throw new Error(`decoded to ${info.channels} channel(s) of ${info.width}x${info.height} (${data.length} bytes), expected ${channels} channel(s)`);
  }
  return { pixels: new Uint8Array(data.buffer, data.byteOffset, data.length), channels, height: info.height, width: info.width };
}

/**
 * Decodes an image file to 8-bit HWC pixels with exactly `channels` channels, shrunk to `shorterSide` when given
 * (see imagePipeline). Throws an Error naming the file if it cannot be decoded (including truncated files).
 */
export async function decodeImageFile(path: string, channels: 1 | 3, shorterSide?: number): Promise<DecodedImage> {
  expectString('decodeImageFile', 'path', path, 'a file path');
  expectChannels('decodeImageFile', channels);
  if (shorterSide !== undefined) expectInteger('decodeImageFile', 'shorterSide', shorterSide, 1);
  try {
    return await decodeWith(imagePipeline(path, channels, shorterSide), channels);
  } catch (e) {
    throw new Error(`${path}: cannot decode image: ${(e as Error).message}`);
  }
}

/**
 * Decodes encoded image bytes (e.g. a JPEG record of a shard) like decodeImageFile; `name` is used in errors. With
 * `maxPixels`, an image whose header gives more pixels (width x height) is refused before anything is decoded.
 */
export async function decodeImageBytes(bytes: Uint8Array, name: string, channels: 1 | 3, maxPixels?: number): Promise<DecodedImage> {
  expectInstance('decodeImageBytes', 'bytes', bytes, Uint8Array, 'a Uint8Array of encoded image bytes');
  expectString('decodeImageBytes', 'name', name, 'a name for messages');
  expectChannels('decodeImageBytes', channels);
  if (maxPixels !== undefined) expectInteger('decodeImageBytes', 'maxPixels', maxPixels, 0);
  try {
    return await decodeWith(imagePipeline(bytes, channels, undefined, maxPixels), channels);
  } catch (e) {
    const message = (e as Error).message;
    // sharp's own words name no limit
    const reason = maxPixels !== undefined && /exceeds pixel limit/.test(message) ? `its header gives more than the ${maxPixels} pixels allowed` : message;
    throw new Error(`${name}: cannot decode image: ${reason}`);
  }
}

/** An image file decoded, shrunk as decodeImageFile does, and encoded again as a baseline JPEG of `quality`. */
export async function reencodeJpeg(path: string, channels: 1 | 3, shorterSide: number | undefined, quality: number): Promise<{ data: Uint8Array; height: number; width: number }> {
  expectString('reencodeJpeg', 'path', path, 'a file path');
  expectChannels('reencodeJpeg', channels);
  if (shorterSide !== undefined) expectInteger('reencodeJpeg', 'shorterSide', shorterSide, 1);
  expectFinite('reencodeJpeg', 'quality', quality, (q) => Number.isInteger(q) && q >= 1 && q <= 100, 'an integer in [1, 100]');
  try {
    const { data, info } = await (await imagePipeline(path, channels, shorterSide)).jpeg({ quality }).toBuffer({ resolveWithObject: true });
    if (info.channels !== channels) throw new Error(`encoded ${info.channels} channel(s), expected ${channels}`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), height: info.height, width: info.width };
  } catch (e) {
    throw new Error(`${path}: cannot decode image: ${(e as Error).message}`);
  }
}
