/**
 * Fuzzing of the parsers that read files a user is handed: safetensors (weights and training checkpoints), IDX
 * (raw and gzipped), CIFAR-10 batches, PyTorch .pth files (zip and legacy pickles) and prepared shard folders (raw
 * and JPEG records). A seeded mutation loop: each target starts from valid seed files, and every input is a seed put
 * through 1-4 mutations, general (bit flips, interesting bytes and integers, cuts, insertions, repeated blocks,
 * splices) and structure-aware (length and dimension fields set to forged sizes; the safetensors JSON header edited:
 * huge or negative offsets and shapes, wrong dtypes, non-string metadata; the shard index edited: per-sample
 * offsets, sizes, heights, widths, labels and shard numbers forged or one off, counts, shard sizes and names, other
 * fields, wrong types, columns of the wrong length, fields gone; shard files cut or grown, JPEG frame sizes forged,
 * records replaced by SVGs). Inputs that reach a new outcome (an error message of a new kind, or a parse) join the
 * corpus and are mutated further.
 *
 * The oracle: every input either parses into consistent data (a shard folder: every sample read, its pixels
 * height x width x channels bytes, its label one of the dataset's, and verifyShards finding nothing; where a read
 * fails, verifyShards lists that sample first, with the same error) or throws an Error whose message starts with the
 * file's name (a shard folder's path, which starts the paths of its index and shards) and is not an internal
 * TypeError / RangeError; nothing may take longer than `slowMs`; the process's peak resident set stays under
 * `maxRssMiB` (a parser that allocates from a forged length field breaks it).
 *
 * CI runs a bounded number of inputs per target (test/fuzz.test.ts); by hand, longer:
 *   node dist/tools/fuzz.js [--seconds 60] [--target safetensors|checkpoint|idx|idx-gz|cifar|pth|shards|shards-jpeg] [--seed N]
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { parseCifarBatch, CIFAR_RECORD_BYTES } from '../lib/data/cifar.js';
import { labelFits, type Dataset } from '../lib/data/dataset.js';
import { loadSharp } from '../lib/data/folder.js';
import { parseIdx, readIdxImages } from '../lib/data/idx.js';
import { prepareShards } from '../lib/data/prepare.js';
import { SHARD_INDEX_FILE, verifyShards, type ShardIndex, type ShardPixels } from '../lib/data/shards.js';
import { crc32 } from '../lib/io/crc32.js';
import { parseSafetensors, serializeSafetensors } from '../lib/io/safetensors.js';
import { readWeights } from '../lib/io/weights.js';
import { packageRoot } from '../lib/native.js';
import { MaskedAutoencoder } from '../lib/mae/model.js';
import { Generator } from '../lib/random.js';
import { CHECKPOINT_FORMAT, loadModel } from '../lib/train/checkpoint.js';
import { openDataset } from '../lib/train/data.js';

export interface FuzzTarget {
  name: string;
  /** valid inputs to start from */
  seeds(): Uint8Array[] | Promise<Uint8Array[]>;
  /**
   * parses `bytes` as a file named `source` (a path in a fresh folder: the input is written there when `file` is set,
   * the shard targets unpack a folder there); returns a description of the result
   */
  run(bytes: Uint8Array, source: string): Promise<string>;
  /** the target reads a file (the input is written to `source` first) */
  file?: boolean;
  /** structure-aware mutations of this format, tried besides the general ones */
  mutate?(bytes: Uint8Array, gen: Generator): Uint8Array;
}

export interface FuzzReport {
  target: string;
  inputs: number;
  parsed: number;
  rejected: number;
  /** distinct error kinds seen (messages with numbers and names taken out) */
  errorKinds: number;
  corpus: number;
  failures: string[];
  slowestMs: number;
  seconds: number;
  maxRssMiB: number;
}

export interface FuzzOptions {
  seed?: number;
  /** stop after this many inputs ... */
  inputs?: number;
  /** ... or this many seconds, whichever comes first */
  seconds?: number;
  slowMs?: number;
  maxRssMiB?: number;
}

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x22, 0x2c, 0x5b, 0x5d, 0x7b, 0x7d];
const INTERESTING_INTS = [0, 1, 2, 3, 7, 255, 256, 3073, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff, 2 ** 31 + 8, 1e9];

function int(gen: Generator, n: number): number {
  return gen.int(n);
}

/** One general mutation of `b` (a new array). */
function mutateBytes(b: Uint8Array, gen: Generator, corpus: Uint8Array[]): Uint8Array {
  const n = b.length;
  const at = n > 0 ? int(gen, n) : 0;
  switch (int(gen, 9)) {
    case 0: { // flip a bit
      const c = b.slice();
      if (n > 0) c[at] = c[at]! ^ (1 << int(gen, 8));
      return c;
    }
    case 1: { // an interesting byte
      const c = b.slice();
      if (n > 0) c[at] = INTERESTING_BYTES[int(gen, INTERESTING_BYTES.length)]!;
      return c;
    }
    case 2: { // an interesting 32-bit integer, either byte order
      const c = b.slice();
      if (n >= 4) new DataView(c.buffer).setUint32(int(gen, n - 3), INTERESTING_INTS[int(gen, INTERESTING_INTS.length)]! >>> 0, gen.uniform() < 0.5);
      return c;
    }
    case 3: // cut the end
      return b.slice(0, int(gen, n + 1));
    case 4: { // delete a range
      const len = int(gen, Math.min(64, n - at) + 1);
      return concat(b.subarray(0, at), b.subarray(at + len));
    }
    case 5: { // insert random bytes
      const ins = new Uint8Array(1 + int(gen, 16)).map(() => int(gen, 256));
      return concat(b.subarray(0, at), ins, b.subarray(at));
    }
    case 6: { // repeat a block
      const len = 1 + int(gen, Math.min(256, Math.max(1, n - at)));
      const block = b.subarray(at, at + len);
      return concat(b.subarray(0, at + len), block, b.subarray(at + len));
    }
    case 7: { // splice with another corpus entry
      const other = corpus[int(gen, corpus.length)]!;
      return concat(b.subarray(0, at), other.subarray(int(gen, other.length + 1)));
    }
    default: { // an interesting 64-bit little-endian integer (safetensors' length field is one)
      const c = b.slice();
      if (n >= 8) {
        const v = [0n, 1n, 8n, 2n ** 31n, 2n ** 32n, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n][int(gen, 8)]!;
        new DataView(c.buffer).setBigUint64(gen.uniform() < 0.5 ? 0 : int(gen, n - 7), v, true);
      }
      return c;
    }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * The kind of an error message: the source, numbers, quoted names and the input a JSON.parse message quotes taken
 * out (else every garbled JSON text would be a kind of its own).
 */
function errorKind(message: string, source: string): string {
  return message.split(source).join('<src>').replace(/Unexpected token .*? is not valid JSON/s, 'Unexpected token ... is not valid JSON').replace(/"[^"]*"/g, '"_"').replace(/-?\d+(\.\d+)?(e[-+]?\d+)?n?/gi, '#').slice(0, 160);
}

/** Runs `target` under the oracle above. */
export async function fuzz(target: FuzzTarget, opts: FuzzOptions = {}): Promise<FuzzReport> {
  const gen = new Generator(opts.seed ?? 1);
  const limit = opts.inputs ?? Infinity;
  const seconds = opts.seconds ?? Infinity;
  const slowMs = opts.slowMs ?? 2000;
  const maxRssMiB = opts.maxRssMiB ?? 1024;
  const dir = mkdtempSync(join(tmpdir(), `mae-fuzz-${target.name}-`));
  const source = join(dir, `input-${target.name}.bin`);
  const corpus = await target.seeds();
  const seedCount = corpus.length;
  const kinds = new Set<string>();
  const failures: string[] = [];
  let inputs = 0, parsed = 0, rejected = 0, slowest = 0;
  const started = performance.now();
  try {
    while (inputs < limit && (performance.now() - started) / 1000 < seconds && failures.length < 10) {
      // the seeds themselves first, then mutants
      let input = inputs < seedCount ? corpus[inputs]! : corpus[int(gen, corpus.length)]!;
      if (inputs >= seedCount) {
        const rounds = 1 + int(gen, 4);
        for (let r = 0; r < rounds; r++) input = target.mutate && gen.uniform() < 0.5 ? target.mutate(input, gen) : mutateBytes(input, gen, corpus);
      }
      inputs++;
      if (target.file) writeFileSync(source, input);
      const t0 = performance.now();
      let outcome: string;
      try {
        outcome = 'parsed ' + (await target.run(input, source));
        parsed++;
      } catch (e) {
        rejected++;
        const err = e as Error;
        const message = String(err?.message ?? err);
        if (!(err instanceof Error) || err instanceof TypeError || err instanceof RangeError || !message.startsWith(source))
          failures.push(`${target.name}: input ${inputs} threw ${err?.constructor?.name}: ${message.slice(0, 300)} (${input.length} bytes, base64 ${Buffer.from(input.subarray(0, 512)).toString('base64')}${input.length > 512 ? '...' : ''})`);
        outcome = errorKind(message, source);
      }
      const ms = performance.now() - t0;
      slowest = Math.max(slowest, ms);
      if (ms > slowMs) failures.push(`${target.name}: input ${inputs} (${input.length} bytes) took ${ms.toFixed(0)} ms`);
      if (!kinds.has(outcome)) {
        kinds.add(outcome);
        if (corpus.length < 500) corpus.push(input);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const maxRss = process.resourceUsage().maxRSS / 1024;
  if (maxRss > maxRssMiB) failures.push(`${target.name}: the peak resident set reached ${maxRss.toFixed(0)} MiB (limit ${maxRssMiB})`);
  return {
    target: target.name, inputs, parsed, rejected, errorKinds: [...kinds].filter((k) => !k.startsWith('parsed')).length, corpus: corpus.length,
    failures, slowestMs: slowest, seconds: (performance.now() - started) / 1000, maxRssMiB: maxRss,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Targets

function f32(values: number[]): Float32Array {
  return Float32Array.from(values);
}

/** Rewrites the JSON header of a safetensors file (keeps the rest), or returns the input when it has none. */
function editHeader(b: Uint8Array, edit: (header: Record<string, unknown>) => void): Uint8Array {
  if (b.length < 8) return b;
  const n = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(0, true));
  if (n > b.length - 8) return b;
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(b.subarray(8, 8 + n)));
  } catch {
    return b;
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) return b;
  edit(header);
  const text = new TextEncoder().encode(JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(text.length), true);
  return concat(len, text, b.subarray(8 + n));
}

const FORGED = [-1, 0, 1, 2 ** 31, 2 ** 32, 2 ** 53, 1e300, 1.5, '7', null, [], {}];

function mutateSafetensorsHeader(b: Uint8Array, gen: Generator): Uint8Array {
  return editHeader(b, (h) => {
    const names = Object.keys(h).filter((k) => k !== '__metadata__');
    const name = names[int(gen, Math.max(1, names.length))];
    const value = name !== undefined ? h[name] : undefined;
    const entry = value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
    const forged = FORGED[int(gen, FORGED.length)];
    switch (int(gen, 7)) {
      case 0: if (entry && Array.isArray(entry.data_offsets)) entry.data_offsets[int(gen, 2)] = forged; break;
      case 1: if (entry && Array.isArray(entry.shape)) { if (entry.shape.length) entry.shape[int(gen, entry.shape.length)] = forged; else entry.shape.push(forged); } break;
      case 2: if (entry) entry.dtype = ['F64', 'f32', 'U16', '', 7, null, 'BOOL', 'I64', 'F16'][int(gen, 9)]; break;
      case 3: h.__metadata__ = [{ mae: 7 }, 'x', null, { mae: '{"format": 1}' }, { mae: `{"format":"${CHECKPOINT_FORMAT}","position":null}` }][int(gen, 5)]; break;
      case 4: if (entry) entry.shape = [2 ** 20, 2 ** 20, 2 ** 20]; break;
      case 5: if (name !== undefined) h[name] = forged; break;
      default: if (entry) entry.data_offsets = [0, 2 ** 40]; break;
    }
  });
}

function checkTensors(tensors: Map<string, { shape: number[]; data: ArrayLike<number> }>): string {
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, d) => a * d, 1);
    if (t.data.length !== count) throw new Error(`fuzz oracle: tensor ${name} has ${t.data.length} values for shape [${t.shape}]`);
  }
  return `${tensors.size} tensors`;
}

export const safetensorsTarget: FuzzTarget = {
  name: 'safetensors',
  seeds: () => [
    serializeSafetensors({ a: { shape: [2, 3], data: f32([1, 2, 3, 4, 5, 6]) }, b: { shape: [], data: Int32Array.of(7) }, c: { shape: [0, 4], data: new Float32Array(0) } }, { note: 'seed' }),
    handMadeSafetensors(),
  ],
  async run(bytes, source) {
    return checkTensors(parseSafetensors(bytes, source).tensors);
  },
  mutate: mutateSafetensorsHeader,
};

/** A file with F16, BF16, I64, I8, U8 and BOOL tensors, which serializeSafetensors does not write. */
function handMadeSafetensors(): Uint8Array {
  const header = {
    h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] },
    b: { dtype: 'BF16', shape: [2], data_offsets: [4, 8] },
    l: { dtype: 'I64', shape: [1], data_offsets: [8, 16] },
    i: { dtype: 'I8', shape: [2], data_offsets: [16, 18] },
    u: { dtype: 'U8', shape: [1], data_offsets: [18, 19] },
    t: { dtype: 'BOOL', shape: [1], data_offsets: [19, 20] },
    __metadata__: { k: 'v' },
  };
  const text = new TextEncoder().encode(JSON.stringify(header));
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(text.length), true);
  const data = Uint8Array.of(0x00, 0x3c, 0x00, 0xc0, 0x80, 0x3f, 0x00, 0x40, 5, 0, 0, 0, 0, 0, 0, 0, 0xff, 3, 200, 1);
  return concat(len, text, data);
}

export const checkpointTarget: FuzzTarget = {
  name: 'checkpoint',
  file: true,
  seeds: () => [checkpointSeed()],
  async run(_bytes, source) {
    const { model, meta } = await loadModel(source);
    model.dispose();
    return `a model of ${meta.config.embedDim} x ${meta.config.depth}, step ${meta.position.step}`;
  },
  mutate(b, gen) {
    if (gen.uniform() < 0.5) return mutateSafetensorsHeader(b, gen);
    // edit the checkpoint's own metadata JSON
    return editHeader(b, (h) => {
      const md = h.__metadata__ as Record<string, string> | undefined;
      if (!md || typeof md !== 'object' || typeof md.mae !== 'string') return;
      let meta: Record<string, unknown>;
      try {
        meta = JSON.parse(md.mae);
      } catch {
        return;
      }
      if (!meta || typeof meta !== 'object' || Array.isArray(meta)) return;
      const keys = ['format', 'config', 'position', 'optimizer', 'options'];
      const k = keys[int(gen, keys.length)]!;
      const sub = meta[k];
      if (sub && typeof sub === 'object' && !Array.isArray(sub) && gen.uniform() < 0.7) {
        const sk = Object.keys(sub);
        if (sk.length) (sub as Record<string, unknown>)[sk[int(gen, sk.length)]!] = FORGED[int(gen, FORGED.length)];
      } else meta[k] = FORGED[int(gen, FORGED.length)];
      md.mae = JSON.stringify(meta);
    });
  },
};

/** A real checkpoint of a tiny model (weights from the model itself, one optimizer tensor, the metadata). */
function checkpointSeed(): Uint8Array {
  const config = { imgSize: 8, patchSize: 4, inChans: 1, embedDim: 8, depth: 1, numHeads: 2, decoderEmbedDim: 8, decoderDepth: 1, decoderNumHeads: 2, mlpRatio: 4, normPixLoss: false, eps: 1e-6 };
  const meta = {
    format: CHECKPOINT_FORMAT, config,
    position: { epoch: 1, iter: 0, step: 4 },
    optimizer: { step: 4, lr: 0.001 },
    options: { epochs: 2, batchSize: 4 },
    createdAt: '2026-12-01T00:00:00.000Z',
  };
  const model = new MaskedAutoencoder(config);
  const tensors: Record<string, { shape: number[]; data: Float32Array }> = { 'optimizer.cls_token.m': { shape: [1, 1, 8], data: new Float32Array(8) } };
  for (const [name, t] of model.stateDict()) tensors[name] = { shape: [...t.shape], data: t.dataSync() };
  model.dispose();
  return serializeSafetensors(tensors, { mae: JSON.stringify(meta) });
}

function idxSeed(dims: number[]): Uint8Array {
  const count = dims.reduce((a, d) => a * d, 1);
  const b = new Uint8Array(4 + 4 * dims.length + count);
  const v = new DataView(b.buffer);
  b[2] = 0x08;
  b[3] = dims.length;
  dims.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  for (let i = 0; i < count; i++) b[4 + 4 * dims.length + i] = (i * 37) & 0xff;
  return b;
}

function mutateIdxDims(b: Uint8Array, gen: Generator): Uint8Array {
  const c = b.slice();
  if (c.length < 8) return c;
  const ndim = Math.min(c[3]!, Math.floor((c.length - 4) / 4));
  if (gen.uniform() < 0.3) c[3] = [0, 1, 3, 4, 255][int(gen, 5)]!;
  else if (ndim > 0) new DataView(c.buffer).setUint32(4 + 4 * int(gen, ndim), INTERESTING_INTS[int(gen, INTERESTING_INTS.length)]! >>> 0, false);
  return c;
}

export const idxTarget: FuzzTarget = {
  name: 'idx',
  seeds: () => [idxSeed([3, 4, 5]), idxSeed([6])],
  async run(bytes, source) {
    const { dims, data } = parseIdx(bytes, source);
    const count = dims.reduce((a, d) => a * d, 1);
    if (data.length !== count) throw new Error(`fuzz oracle: IDX data has ${data.length} bytes for dims [${dims}]`);
    return `dims [${dims}]`;
  },
  mutate: mutateIdxDims,
};

export const idxGzipTarget: FuzzTarget = {
  name: 'idx-gz',
  file: true,
  seeds: () => [gzipSync(idxSeed([3, 4, 5])), gzipSync(idxSeed([2, 2, 2]))],
  async run(_bytes, source) {
    const r = await readIdxImages(source);
    return `${r.count} images of ${r.rows}x${r.cols}`;
  },
  // mutate the IDX inside as well as the gzip bytes around it
  mutate(b, gen) {
    let raw: Uint8Array;
    try {
      raw = new Uint8Array(gunzipSync(b, { maxOutputLength: 1 << 20 }));
    } catch {
      return b;
    }
    return gzipSync(mutateIdxDims(raw, gen));
  },
};

export const cifarTarget: FuzzTarget = {
  name: 'cifar',
  seeds: () => {
    const b = new Uint8Array(2 * CIFAR_RECORD_BYTES).map((_, i) => (i * 13) & 0xff);
    b[0] = 3;
    b[CIFAR_RECORD_BYTES] = 9;
    return [b];
  },
  async run(bytes, source) {
    const r = parseCifarBatch(bytes, source);
    if (r.images.length !== r.count * 3072 || r.labels.length !== r.count) throw new Error('fuzz oracle: CIFAR sizes disagree');
    return `${r.count} records`;
  },
};

/** PyTorch .pth files: zip (stored and deflated) and legacy, from the committed fixtures; the hostile ones too. */
export const pthTarget: FuzzTarget = {
  name: 'pth',
  file: true,
  seeds: () => ['dtypes.pth', 'dtypes-deflated.pth', 'dtypes-legacy.pth', 'expanded.pth', 'hostile.pth', 'hostile-legacy.pth']
    .map((f) => new Uint8Array(readFileSync(join(packageRoot(), 'test', 'fixtures', 'pth', f)))),
  async run(_bytes, source) {
    const r = await readWeights(source);
    if (existsSync(HOSTILE_MARK)) throw new Error(`fuzz oracle: a pickle ran code (${HOSTILE_MARK} exists)`);
    return checkTensors(r.weights);
  },
};

/** the file the hostile fixtures' pickles would create if they were executed (test/fixtures/pth/fixtures.json) */
const HOSTILE_MARK = '/tmp/masked-autoencoder-hostile-pickle-ran';

// ---------------------------------------------------------------------------------------------------------------
// Prepared shards (data/shards.ts): a whole shard folder is one input, packed as the index and then the shard files
// in order, each a 32-bit little-endian length and its bytes. The target unpacks it into a folder (mae-shards.json,
// shard-00000.bin, ...), opens that as the training data and reads every sample.

/** Most shard files one input unpacks to. */
const MAX_PACKED_SHARDS = 8;

function packShardFolder(files: Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of files) {
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, f.length, true);
    parts.push(len, f);
  }
  return concat(...parts);
}

/** The files of a packed folder: [index, shard 0, shard 1, ...]; a length past the end is cut to it. */
function unpackShardFolder(b: Uint8Array): Uint8Array[] {
  const files: Uint8Array[] = [];
  const view = new DataView(b.buffer, b.byteOffset, b.length);
  for (let at = 0; at + 4 <= b.length && files.length < 1 + MAX_PACKED_SHARDS; ) {
    const end = Math.min(at + 4 + view.getUint32(at, true), b.length);
    files.push(b.subarray(at + 4, end));
    at = end;
  }
  return files;
}

/** Small PNG images as class folders (a: 3 images, b: 2) or flat, some larger than the short side the seeds use. */
async function writeImageFolder(dir: string, classes: boolean): Promise<void> {
  const sharp = await loadSharp();
  const sizes = [[5, 7], [8, 4], [6, 6], [3, 9], [10, 12]] as const;
  for (let k = 0; k < sizes.length; k++) {
    const [h, w] = sizes[k]!;
    const folder = classes ? join(dir, k < 3 ? 'a' : 'b') : dir;
    mkdirSync(folder, { recursive: true });
    const px = new Uint8Array(h * w * 3).map((_, i) => (i * 29 + k * 71) & 0xff);
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(join(folder, `${k}.png`));
  }
}

/**
 * Prepares the seed folders (class folders in 3 channels shrunk to a short side of 6, a flat folder in 1 channel,
 * both in a few shards) and packs them.
 */
async function shardSeeds(format: ShardPixels): Promise<Uint8Array[]> {
  const dir = mkdtempSync(join(tmpdir(), `mae-fuzz-seeds-${format}-`));
  try {
    const seeds: Uint8Array[] = [];
    for (const [name, classes, channels, shortSide] of [['classes', true, 3, 6], ['flat', false, 1, null]] as const) {
      await writeImageFolder(join(dir, name), classes);
      const out = join(dir, `${name}-shards`);
      await prepareShards({ data: join(dir, name), out, format, quality: 50, channels, shortSide, shardBytes: format === 'raw' ? 200 : 700, concurrency: 1 });
      const index = readFileSync(join(out, SHARD_INDEX_FILE));
      const x = JSON.parse(index.toString()) as ShardIndex;
      seeds.push(packShardFolder([index, ...x.shards.map((s) => readFileSync(join(out, s.file)))]));
    }
    return seeds;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const SHARD_COLUMNS = ['shard', 'offset', 'size', 'height', 'width', 'label', 'source', 'crc32'];

/** `v` or a value next to it: numbers one off or doubled, strings and other values as they are. */
function nearValue(v: unknown, gen: Generator): unknown {
  return typeof v === 'number' ? [v - 1, v + 1, 2 * v, 0, -v][int(gen, 5)] : v;
}

/** Edits the index of a packed shard folder: numbers forged or one off, wrong types, wrong lengths, fields gone. */
function mutateShardIndex(x: Record<string, unknown>, gen: Generator): void {
  const forge = gen.uniform() < 0.5;
  const forged = FORGED[int(gen, FORGED.length)];
  switch (int(gen, 6)) {
    case 0: { // one sample's shard, offset, size, height, width, label, source or crc32
      const column = x[SHARD_COLUMNS[int(gen, SHARD_COLUMNS.length)]!];
      if (Array.isArray(column) && column.length) {
        const i = int(gen, column.length);
        column[i] = forge ? forged : nearValue(column[i], gen);
      }
      break;
    }
    case 1: { // a column of the wrong length or type
      const key = SHARD_COLUMNS[int(gen, SHARD_COLUMNS.length)]!;
      const column = x[key];
      if (Array.isArray(column) && gen.uniform() < 0.7) {
        if (gen.uniform() < 0.5) column.pop();
        else column.push(column[int(gen, Math.max(1, column.length))] ?? 0);
      } else x[key] = forge ? forged : 'x';
      break;
    }
    case 2: // the count
      x.count = forge ? forged : nearValue(x.count, gen);
      break;
    case 3: { // a shard's file or byte count, or the list itself
      const shards = x.shards;
      const s = Array.isArray(shards) && shards.length ? shards[int(gen, shards.length)] : undefined;
      if (s && typeof s === 'object' && gen.uniform() < 0.8) {
        if (gen.uniform() < 0.6) s.bytes = forge ? forged : nearValue(s.bytes, gen);
        else s.file = forge ? forged : ['shard-00009.bin', '../shard-00000.bin', '.shard-00000.bin', '', SHARD_INDEX_FILE, 'shard-00001.bin'][int(gen, 6)];
      } else if (Array.isArray(shards) && gen.uniform() < 0.5) shards.pop();
      else x.shards = forge ? forged : [];
      break;
    }
    case 4: { // a field of the whole folder
      const fields: Record<string, unknown[]> = {
        format: ['mae-shard', 7], version: [0, 1, 3, '2'], pixels: ['raw', 'jpeg', 'png'], channels: [1, 3, 4, 0], shortSide: [null, 0, 6, 65536],
        quality: [null, 0, 90, 101], root: ['/', 7], classes: [[], ['a'], ['a', 'b', 'c'], ['a', 7]], skipped: [[], [{ source: 'x.png', error: 'e' }], [7]],
      };
      const keys = Object.keys(fields);
      const key = keys[int(gen, keys.length)]!;
      x[key] = forge ? forged : fields[key]![int(gen, fields[key]!.length)];
      break;
    }
    default: { // a field gone
      const keys = Object.keys(x);
      if (keys.length) delete x[keys[int(gen, keys.length)]!];
    }
  }
}

/** A JPEG's frame size (the SOF0 marker's height or width, big-endian 16 bits) set to a forged value, at a random marker. */
function mutateJpegSize(b: Uint8Array, gen: Generator): Uint8Array {
  const frames: number[] = [];
  for (let i = 0; i + 9 <= b.length; i++) if (b[i] === 0xff && b[i + 1] === 0xc0) frames.push(i);
  if (frames.length === 0) return b;
  const c = b.slice();
  const at = frames[int(gen, frames.length)]! + 5 + 2 * int(gen, 2);
  new DataView(c.buffer).setUint16(at, [0, 1, 2, 255, 4096, 16383, 0x7fff, 0xffff][int(gen, 8)]!, false);
  return c;
}

/**
 * Sample i's record replaced by an SVG appended to its shard (the index's offset, size and shard bytes kept in step,
 * its height and width too half the time): an image of another format, a few bytes that can name any size.
 */
function appendSvgRecord(x: Record<string, unknown>, files: Uint8Array[], gen: Generator): void {
  const { shards, shard, offset, size, height, width } = x;
  if (!Array.isArray(shards) || !Array.isArray(shard) || !Array.isArray(offset) || !Array.isArray(size) || !Array.isArray(height) || !Array.isArray(width)) return;
  const i = int(gen, Math.max(1, shard.length));
  const k = shard[i];
  if (typeof k !== 'number' || files[1 + k] === undefined || !shards[k] || typeof shards[k] !== 'object') return;
  const [h, w] = [[height[i], width[i]], [1000, 1000], [12000, 12000], [3, 65535]][int(gen, 4)]!;
  const svg = new TextEncoder().encode(`<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"/>`);
  offset[i] = files[1 + k]!.length;
  size[i] = svg.length;
  files[1 + k] = concat(files[1 + k]!, svg);
  shards[k].bytes = files[1 + k]!.length;
  if (gen.uniform() < 0.5) [height[i], width[i]] = [h, w];
}

/** The index's crc32 column set to the CRC-32 of each record that lies inside its shard file, as found. */
function stampCrcs(x: Record<string, unknown>, files: Uint8Array[]): void {
  const { shard, offset, size, crc32: crcs } = x;
  if (!Array.isArray(shard) || !Array.isArray(offset) || !Array.isArray(size) || !Array.isArray(crcs)) return;
  for (let i = 0; i < crcs.length; i++) {
    const [k, o, n] = [shard[i], offset[i], size[i]];
    const f = typeof k === 'number' ? files[1 + k] : undefined;
    if (f && typeof o === 'number' && typeof n === 'number' && o >= 0 && n >= 0 && o + n <= f.length) crcs[i] = crc32(f.subarray(o, o + n));
  }
}

/**
 * Structure-aware mutations of a packed shard folder: the index edited (mutateShardIndex), a shard file cut or
 * grown with the index's byte count kept in step (so the records, not the file size, are what is wrong), a record
 * replaced by an SVG (appendSvgRecord), or (JPEG records) a record's frame size forged.
 */
function mutateShardFolder(b: Uint8Array, gen: Generator): Uint8Array {
  const files = unpackShardFolder(b);
  let x: Record<string, unknown>;
  try {
    x = JSON.parse(new TextDecoder().decode(files[0]));
  } catch {
    return b;
  }
  if (!x || typeof x !== 'object' || Array.isArray(x) || files.length < 2) return b;
  const k = 1 + int(gen, files.length - 1);
  const r = gen.uniform();
  if (r < 0.55) mutateShardIndex(x, gen);
  else if (r < 0.75) {
    const f = files[k]!;
    files[k] = gen.uniform() < 0.7 ? f.subarray(0, int(gen, f.length + 1)) : concat(f, new Uint8Array(1 + int(gen, 64)));
    const s = Array.isArray(x.shards) ? x.shards[k - 1] : undefined;
    if (s && typeof s === 'object') s.bytes = files[k]!.length;
  } else {
    if (r < 0.9) files[k] = mutateJpegSize(files[k]!, gen);
    else appendSvgRecord(x, files, gen);
    // mostly with the checksums kept in step, so that what the records hold is read, not only their CRC-32 refused
    if (gen.uniform() < 0.8) stampCrcs(x, files);
  }
  files[0] = new TextEncoder().encode(JSON.stringify(x));
  return packShardFolder(files);
}

/** Reads every sample of `ds` as the DataLoader does (getPixels, then get) and checks each fits the dataset. */
async function readAllSamples(ds: Dataset): Promise<string> {
  const c = ds.channels;
  for (let i = 0; i < ds.length; i++) {
    const { pixels, height: h, width: w, label } = await ds.getPixels!(i);
    if (!(Number.isInteger(h) && h > 0 && Number.isInteger(w) && w > 0 && pixels.length === h * w * c))
      throw new Error(`fuzz oracle: sample ${i} has ${pixels.length} bytes for ${h} x ${w} x ${c}`);
    if (!labelFits(label, ds.numClasses)) throw new Error(`fuzz oracle: sample ${i} has label ${label} in a dataset of ${ds.numClasses} classes`);
    const sample = await ds.get(i);
    if (sample.image.length !== c * h * w || sample.height !== h || sample.width !== w || sample.label !== label)
      throw new Error(`fuzz oracle: sample ${i}: get() gives ${sample.image.length} values of ${sample.height} x ${sample.width}, label ${sample.label}; getPixels() ${h} x ${w} x ${c}, label ${label}`);
  }
  return `${ds.length} samples of ${c} channel(s), ${ds.numClasses} classes`;
}

function shardsTarget(format: ShardPixels): FuzzTarget {
  return {
    name: format === 'raw' ? 'shards' : 'shards-jpeg',
    seeds: () => shardSeeds(format),
    async run(bytes, source) {
      const [index, ...shards] = unpackShardFolder(bytes);
      rmSync(source, { recursive: true, force: true });
      mkdirSync(source);
      if (index !== undefined) writeFileSync(join(source, SHARD_INDEX_FILE), index);
      shards.forEach((s, k) => writeFileSync(join(source, `shard-${String(k).padStart(5, '0')}.bin`), s));
      // verifyShards and the reads agree: a folder it finds sound reads in full; else the first sample it lists is
      // the first one whose read fails, with the error it gave (up to sharp's words, which differ from one decode of
      // the same bytes to the next: "Warning treated as error due to failOn setting", then libjpeg's warning)
      const damaged = (await verifyShards(source, { decode: true })).damaged.sort((a, b) => a.sample - b.sample);
      const read = await readAllSamples(await openDataset({ kind: 'shards', path: source })).catch((e: Error) => e);
      if (typeof read === 'string') {
        if (damaged.length > 0) throw new Error(`fuzz oracle: verifyShards lists sample ${damaged[0]!.sample} as damaged (${damaged[0]!.error}), but every sample reads`);
        return read;
      }
      if (read.message.startsWith('fuzz oracle')) throw read;
      const upToSharp = (m: string) => m.replace(/(cannot decode image: ).*$/s, '$1');
      if (damaged.length === 0 || !upToSharp(read.message).startsWith(upToSharp(damaged[0]!.error)))
        throw new Error(`fuzz oracle: reading fails with "${read.message}", but verifyShards ${damaged.length ? `lists sample ${damaged[0]!.sample} first: "${damaged[0]!.error}"` : 'finds nothing'}`);
      throw read;
    },
    mutate: mutateShardFolder,
  };
}

/** Raw records (uint8 pixels). */
export const shardsRawTarget = shardsTarget('raw');
/** JPEG records. */
export const shardsJpegTarget = shardsTarget('jpeg');

export const TARGETS: FuzzTarget[] = [safetensorsTarget, checkpointTarget, idxTarget, idxGzipTarget, cifarTarget, pthTarget, shardsRawTarget, shardsJpegTarget];

// ---------------------------------------------------------------------------------------------------------------
// By hand: node dist/tools/fuzz.js [--seconds 60] [--target NAME] [--seed N]

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2);
  const arg = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
  const seconds = Number(arg('seconds') ?? 60);
  const seed = Number(arg('seed') ?? 1);
  const only = arg('target');
  const targets = only ? TARGETS.filter((t) => t.name === only) : TARGETS;
  if (targets.length === 0) throw new Error(`--target must be one of ${TARGETS.map((t) => t.name).join(', ')}`);
  let failed = 0;
  for (const t of targets) {
    const r = await fuzz(t, { seed, seconds: seconds / targets.length });
    console.log(`${r.target.padEnd(12)} ${r.inputs} inputs in ${r.seconds.toFixed(1)} s: ${r.parsed} parsed, ${r.rejected} rejected (${r.errorKinds} kinds of error), corpus ${r.corpus}, slowest ${r.slowestMs.toFixed(1)} ms, peak RSS ${r.maxRssMiB.toFixed(0)} MiB`);
    for (const f of r.failures) console.log('  FAIL ' + f);
    failed += r.failures.length;
  }
  process.exit(failed ? 1 : 0);
}
