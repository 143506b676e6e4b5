/**
 * prepareShards (`mae prepare-data`): converts an image folder (folder.ts layout) into a shard folder (shards.ts):
 * every image decoded once, its shorter side shrunk to `shortSide` (lanczos3; JPEGs shrink while decoding; smaller
 * images are kept as they are), and stored as raw uint8 HWC pixels or re-encoded as a JPEG, into shard files of
 * about `shardBytes` each, in the folder's sorted order.
 *
 * Atomic and resumable. Each shard is written to a temporary file and renamed into place when full; then its
 * manifest (the records it holds and the source files it covers) is written atomically to OUT/.prepare/. The index
 * mae-shards.json is written last, from the manifests, and .prepare/ removed. Run again after an interruption (Ctrl-C,
 * a crash, a bad file with onBadFile 'stop'), the same call checks that the settings and the source files already
 * covered are unchanged, drops anything not covered by a manifest, and continues after the last complete shard. An
 * abort through `signal` finishes the current shard first, so no work is lost.
 *
 * Bad source files are reported by path (a 'bad-file' event) and left out (listed in the index's `skipped`), or, with
 * onBadFile 'stop', stop the run with an Error naming the file (the shards done so far are kept for the resume).
 */
import { availableParallelism } from 'node:os';
import { open as openFile, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { expectObject, expectOptions } from '../check.js';
import { AtomicFileWriter, checkWritableFolder, makeDirs, writeFileAtomic } from '../io/atomic.js';
import { crc32 } from '../io/crc32.js';
import { decodeImageFile, reencodeJpeg, scanImageFolder, type OnBadFile } from './folder.js';
import { MAX_RECORD_BYTES, MAX_SHARD_SIDE, SHARD_FORMAT_VERSION, SHARD_INDEX_FILE, readShardIndex, type ShardIndex, type ShardPixels } from './shards.js';

export interface PrepareOptions {
  data: string; // the image folder
  out: string; // the shard folder to write (created; must be new, empty, or an unfinished preparation)
  shortSide?: number | null; // shrink so the shorter side is this (default 256); null keeps the source size
  format?: ShardPixels; // 'raw' (default): uint8 pixels; 'jpeg': re-encoded
  quality?: number; // JPEG quality (default 90)
  channels?: 1 | 3; // default 3
  onBadFile?: OnBadFile; // default 'skip'
  shardBytes?: number; // a shard is closed once it holds this many bytes (default 1 GiB)
  concurrency?: number; // files decoded at once (default 2 per core, at most 16)
  signal?: AbortSignal; // stops after the current file, keeping the shard in progress
  onEvent?: (e: PrepareEvent) => void;
}

export type PrepareEvent =
  | { type: 'start'; files: number; done: number; shards: number } // done: files covered by an earlier run
  | { type: 'progress'; done: number; files: number; samples: number; bytes: number; imgPerSec: number; etaSeconds: number }
  | { type: 'bad-file'; path: string; error: string } // a source file left out (or, with onBadFile 'stop', the end)
  | { type: 'warning'; message: string } // an odd folder layout (image files beside class folders, an empty class)
  | { type: 'shard'; file: string; samples: number; bytes: number }
  | { type: 'end'; complete: boolean; samples: number; skipped: number; shards: number; bytes: number; seconds: number };

export interface PrepareResult {
  dir: string;
  index: string | null; // the index path once complete
  complete: boolean; // false after an abort: run again to resume
  samples: number;
  skipped: { source: string; error: string }[];
  shards: number;
  bytes: number;
}

/** What must not change between a run and its resume. */
interface Settings {
  version: number;
  pixels: ShardPixels;
  channels: 1 | 3;
  shortSide: number | null;
  quality: number | null;
  classes: string[];
  source?: string; // the image folder, resolved (the index's root; absent in preparations started before it was kept)
}

/** OUT/.prepare/shard-NNNNN.json: one complete shard and the source files [from, to) it covers. */
interface Manifest {
  file: string;
  bytes: number;
  from: number;
  to: number;
  sources: string[]; // the listing's names from .. to - 1, good and bad
  offset: number[];
  size: number[];
  height: number[];
  width: number[];
  crc32?: number[]; // absent in preparations started before the index had checksums: computed on resume
  skipped: { source: string; error: string }[];
}

const STATE_DIR = '.prepare';
const shardName = (k: number) => `shard-${String(k).padStart(5, '0')}.bin`;
const manifestName = (k: number) => `shard-${String(k).padStart(5, '0')}.json`;

function sameSettings(a: Settings, b: Settings): string[] {
  const diff: string[] = [];
  // (not the format version: a preparation or a finished folder of an earlier version holds the same pixels)
  for (const key of ['pixels', 'channels', 'shortSide', 'quality'] as const) {
    if (a[key] !== b[key]) diff.push(`${key} ${JSON.stringify(b[key])} (now ${JSON.stringify(a[key])})`);
  }
  if (JSON.stringify(a.classes) !== JSON.stringify(b.classes)) diff.push('the class folders');
  // (preparations started before the folder was recorded give none: theirs is taken to be this one)
  if (b.source !== undefined && a.source !== b.source) diff.push(`the image folder ${b.source} (now ${a.source})`);
  return diff;
}

async function readJson<T>(path: string): Promise<T | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return null;
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message}); remove the folder to start the preparation again`);
  }
}

function checkOptions(o: PrepareOptions): Required<Omit<PrepareOptions, 'signal' | 'onEvent'>> {
  expectObject('prepareShards', 'options', o, false, "e.g. { data: 'images/', out: 'shards/' }");
  // (shortSide: null keeps every size; its values are checked below)
  expectOptions('prepareShards', o, {
    data: 'string', out: 'string', shortSide: 'checked', format: 'string', quality: 'number', channels: 'number', onBadFile: 'string',
    shardBytes: 'number', concurrency: 'number', signal: 'AbortSignal', onEvent: 'function',
  });
  const shortSide = o.shortSide === undefined ? 256 : o.shortSide;
  if (shortSide !== null && !(Number.isInteger(shortSide) && shortSide >= 1 && shortSide <= MAX_SHARD_SIDE)) {
    throw new Error(`prepareShards: shortSide must be an integer in [1, ${MAX_SHARD_SIDE}] or null, got ${shortSide}`);
  }
  const format = o.format ?? 'raw';
  if (format !== 'raw' && format !== 'jpeg') throw new Error(`prepareShards: format must be 'raw' or 'jpeg', got ${String(format)}`);
  const quality = o.quality ?? 90;
  if (!(Number.isInteger(quality) && quality >= 1 && quality <= 100)) throw new Error(`prepareShards: quality must be an integer in [1, 100], got ${quality}`);
  const channels = o.channels ?? 3;
  if (channels !== 1 && channels !== 3) throw new Error(`prepareShards: channels must be 1 or 3, got ${String(channels)}`);
  const onBadFile = o.onBadFile ?? 'skip';
  if (onBadFile !== 'skip' && onBadFile !== 'stop') throw new Error(`prepareShards: onBadFile must be 'skip' or 'stop', got ${String(onBadFile)}`);
  const shardBytes = o.shardBytes ?? 2 ** 30;
  if (!(Number.isSafeInteger(shardBytes) && shardBytes >= 1)) throw new Error(`prepareShards: shardBytes must be a positive integer, got ${shardBytes}`);
  const concurrency = o.concurrency ?? Math.min(16, 2 * availableParallelism());
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new Error(`prepareShards: concurrency must be a positive integer, got ${concurrency}`);
  if (typeof o.data !== 'string' || typeof o.out !== 'string') throw new Error('prepareShards: data and out must be folder paths');
  const data = resolve(o.data), out = resolve(o.out);
  if (out === data || out.startsWith(data + sep)) throw new Error(`prepareShards: the output folder ${out} must not be inside the image folder ${data} (it would be read as a class folder)`);
  return { data, out, shortSide, format, quality, channels, onBadFile, shardBytes, concurrency };
}

/** The CRC-32 of each record (offset, size) of a shard file written before manifests kept them. */
async function recordCrcs(path: string, offset: number[], size: number[]): Promise<number[]> {
  const f = await openFile(path, 'r');
  try {
    const crcs: number[] = [];
    for (let r = 0; r < offset.length; r++) {
      const bytes = new Uint8Array(size[r]!);
      const { bytesRead } = await f.read(bytes, 0, bytes.length, offset[r]!);
      if (bytesRead !== bytes.length) throw new Error(`${path}: record ${r} at byte ${offset[r]} ends after ${bytesRead} of ${bytes.length} bytes; remove the folder to start the preparation again`);
      crcs.push(crc32(bytes));
    }
    return crcs;
  } finally {
    await f.close();
  }
}

/** One source file, processed: the bytes to store, or why it could not be. */
type Item = { data: Uint8Array; height: number; width: number } | { error: string };

async function processFile(path: string, o: { format: ShardPixels; channels: 1 | 3; shortSide: number | null; quality: number }): Promise<Item> {
  try {
    const shorter = o.shortSide ?? undefined;
    const r = o.format === 'raw' ? await decodeImageFile(path, o.channels, shorter) : await reencodeJpeg(path, o.channels, shorter, o.quality);
    const data = 'pixels' in r ? r.pixels : r.data;
    if (r.height > MAX_SHARD_SIDE || r.width > MAX_SHARD_SIDE || data.length > MAX_RECORD_BYTES) {
      throw new Error(`${path}: ${r.width}x${r.height} (${data.length} bytes) is too large for a shard record (sides up to ${MAX_SHARD_SIDE}, ${MAX_RECORD_BYTES} bytes); use a smaller short side`);
    }
    return { data, height: r.height, width: r.width };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** Converts the image folder `data` into the shard folder `out`; see the top of this file. */
export async function prepareShards(options: PrepareOptions): Promise<PrepareResult> {
  const o = checkOptions(options);
  const emit = options.onEvent ?? (() => {});
  const t0 = performance.now();
  const listing = await scanImageFolder(o.data, (message) => emit({ type: 'warning', message }));
  const names = listing.files.map((f) => relative(o.data, f).split(sep).join('/'));
  const settings: Settings = {
    version: SHARD_FORMAT_VERSION, pixels: o.format, channels: o.channels, shortSide: o.shortSide,
    quality: o.format === 'jpeg' ? o.quality : null, classes: listing.classes, source: o.data,
  };

  // a finished folder: done if it is this very preparation, else refuse
  const entries = await readdir(o.out).catch(async (e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    if ((await stat(o.out).catch(() => null))?.isDirectory() === false) throw new Error(`${o.out} is a file, not a folder; choose a new or empty output folder`);
    // (a path under a file: named as such)
    if (e.code === 'ENOTDIR') checkWritableFolder('prepareShards', o.out);
    throw e;
  });
  if (entries.includes(SHARD_INDEX_FILE)) {
    const x = await readShardIndex(o.out);
    const covered = [...x.source, ...x.skipped.map((s) => s.source)].sort();
    const diff = sameSettings(settings, { ...x, source: x.root });
    if (diff.length > 0 || JSON.stringify(covered) !== JSON.stringify([...names].sort())) {
      throw new Error(`${o.out} already holds prepared shards of ${diff.length > 0 ? `other settings: ${diff.join(', ')}` : 'other source files'}; remove it or choose another output folder`);
    }
    const bytes = x.shards.reduce((n, s) => n + s.bytes, 0);
    await rm(join(o.out, STATE_DIR), { recursive: true, force: true }); // left by a crash right after the index was written
    emit({ type: 'end', complete: true, samples: x.count, skipped: x.skipped.length, shards: x.shards.length, bytes, seconds: 0 });
    return { dir: o.out, index: join(o.out, SHARD_INDEX_FILE), complete: true, samples: x.count, skipped: x.skipped, shards: x.shards.length, bytes };
  }
  if (entries.length > 0 && !entries.includes(STATE_DIR)) {
    throw new Error(`${o.out} is not empty and holds no shards (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}); choose a new or empty output folder`);
  }

  checkWritableFolder('prepareShards', o.out);
  try {
    makeDirs(o.out);
  } catch (e) {
    throw new Error(`cannot create the output folder ${o.out}: ${(e as Error).message}`);
  }

  // an unfinished preparation: same settings, same files so far
  const state = join(o.out, STATE_DIR);
  const saved = await readJson<Settings>(join(state, 'settings.json'));
  if (saved !== null) {
    const diff = sameSettings(settings, saved);
    if (diff.length > 0) throw new Error(`${o.out} holds an unfinished preparation with other settings: ${diff.join(', ')}; run it with those, or remove the folder to start again`);
  } else {
    await writeFileAtomic(join(state, 'settings.json'), JSON.stringify(settings) + '\n');
  }
  const manifests: Manifest[] = [];
  for (let k = 0, pos = 0; ; k++) {
    const m = await readJson<Manifest>(join(state, manifestName(k)));
    if (m === null) break;
    const size = await stat(join(o.out, m.file)).then((s) => s.size, () => -1);
    if (m.from !== pos || !(m.to > m.from && m.to <= names.length) || m.file !== shardName(k) || size !== m.bytes) break; // not one of ours: redone
    for (let i = m.from; i < m.to; i++) {
      if (m.sources[i - m.from] !== names[i]) {
        throw new Error(`${o.data} changed since the preparation in ${o.out} started: file ${i} is ${names[i] ?? '(none)'}, was ${m.sources[i - m.from]}; remove ${o.out} to start again`);
      }
    }
    m.crc32 ??= await recordCrcs(join(o.out, m.file), m.offset, m.size);
    manifests.push(m);
    pos = m.to;
  }
  // drop what no manifest covers: a shard in progress when the run died, temporary files
  for (const name of await readdir(o.out)) {
    const k = /^shard-(\d{5})\.bin$/.exec(name);
    if ((k && Number(k[1]) >= manifests.length) || /^\.shard-\d{5}\.bin\..*\.tmp$/.test(name)) await rm(join(o.out, name), { force: true });
  }
  for (const name of await readdir(state)) {
    const k = /^shard-(\d{5})\.json$/.exec(name);
    if ((k && Number(k[1]) >= manifests.length) || name.endsWith('.tmp')) await rm(join(state, name), { force: true });
  }

  const start = manifests.length ? manifests[manifests.length - 1]!.to : 0;
  let samples = manifests.reduce((n, m) => n + m.offset.length, 0);
  let bytes = manifests.reduce((n, m) => n + m.bytes, 0);
  emit({ type: 'start', files: names.length, done: start, shards: manifests.length });

  // the shard being written and the files it covers so far
  let writer: AtomicFileWriter | null = null;
  let open: Manifest = { file: shardName(manifests.length), bytes: 0, from: start, to: start, sources: [], offset: [], size: [], height: [], width: [], crc32: [], skipped: [] };
  const closeShard = async (): Promise<void> => {
    if (writer === null) return; // nothing stored since the last shard: its files are redone on resume
    await writer.commit();
    open.bytes = writer.bytes;
    writer = null;
    await writeFileAtomic(join(state, manifestName(manifests.length)), JSON.stringify(open) + '\n');
    manifests.push(open);
    bytes += open.bytes;
    emit({ type: 'shard', file: open.file, samples: open.offset.length, bytes: open.bytes });
    open = { file: shardName(manifests.length), bytes: 0, from: open.to, to: open.to, sources: [], offset: [], size: [], height: [], width: [], crc32: [], skipped: [] };
  };

  // files are processed `concurrency` at a time and stored in order
  const tasks = new Map<number, Promise<Item>>();
  let next = start;
  const launch = (upTo: number) => {
    for (; next < Math.min(upTo, names.length); next++) tasks.set(next, processFile(listing.files[next]!, o));
  };
  let aborted = false;
  try {
    for (let i = start; i < names.length; i++) {
      if (options.signal?.aborted) {
        aborted = true;
        break;
      }
      launch(i + o.concurrency);
      const item = await tasks.get(i)!;
      tasks.delete(i);
      if ('error' in item) {
        emit({ type: 'bad-file', path: listing.files[i]!, error: item.error });
        if (o.onBadFile === 'stop') {
          await closeShard();
          throw new Error(`${item.error} (on-bad-file is 'stop'; the shards done so far are kept: fix or remove the file and run again to resume, or use 'skip')`);
        }
        open.skipped.push({ source: names[i]!, error: item.error });
      } else {
        writer ??= await AtomicFileWriter.open(join(o.out, open.file));
        open.offset.push(writer.bytes);
        open.size.push(item.data.length);
        open.height.push(item.height);
        open.width.push(item.width);
        open.crc32!.push(crc32(item.data));
        await writer.write(item.data);
        samples++;
      }
      open.sources.push(names[i]!);
      open.to = i + 1;
      if (writer !== null && writer.bytes >= o.shardBytes) await closeShard();
      const seconds = (performance.now() - t0) / 1000;
      const rate = (i + 1 - start) / seconds;
      emit({ type: 'progress', done: i + 1, files: names.length, samples, bytes: bytes + (writer?.bytes ?? 0), imgPerSec: rate, etaSeconds: (names.length - i - 1) / rate });
    }
    await closeShard();
  } catch (e) {
    await (writer as AtomicFileWriter | null)?.abort();
    throw e;
  } finally {
    await Promise.all(tasks.values()); // processFile never rejects
  }

  const skipped = [...manifests.flatMap((m) => m.skipped), ...open.skipped];
  const seconds = (performance.now() - t0) / 1000;
  if (aborted) {
    emit({ type: 'end', complete: false, samples, skipped: skipped.length, shards: manifests.length, bytes, seconds });
    return { dir: o.out, index: null, complete: false, samples, skipped, shards: manifests.length, bytes };
  }
  if (samples === 0) throw new Error(`${o.data}: none of its ${names.length} image files could be decoded`);
  const labels = new Map(names.map((n, i) => [n, listing.labels[i]!]));
  const index: ShardIndex = {
    format: 'mae-shards', version: SHARD_FORMAT_VERSION, pixels: o.format, channels: o.channels, shortSide: o.shortSide,
    quality: settings.quality, root: o.data, classes: listing.classes,
    shards: manifests.map((m) => ({ file: m.file, bytes: m.bytes })),
    count: samples, shard: [], offset: [], size: [], height: [], width: [], label: [], source: [], crc32: [], skipped,
  };
  manifests.forEach((m, k) => {
    const bad = new Set(m.skipped.map((s) => s.source));
    const kept = m.sources.filter((s) => !bad.has(s));
    for (let r = 0; r < m.offset.length; r++) {
      index.shard.push(k);
      index.offset.push(m.offset[r]!);
      index.size.push(m.size[r]!);
      index.height.push(m.height[r]!);
      index.width.push(m.width[r]!);
      index.label.push(labels.get(kept[r]!)!);
      index.source.push(kept[r]!);
      index.crc32!.push(m.crc32![r]!);
    }
  });
  const indexPath = join(o.out, SHARD_INDEX_FILE);
  await writeFileAtomic(indexPath, JSON.stringify(index) + '\n');
  await rm(state, { recursive: true, force: true });
  emit({ type: 'end', complete: true, samples, skipped: skipped.length, shards: manifests.length, bytes, seconds });
  return { dir: o.out, index: indexPath, complete: true, samples, skipped, shards: manifests.length, bytes };
}
