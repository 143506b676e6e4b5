// PyTorch checkpoints read without PyTorch: the fixtures in test/fixtures/pth were written by PyTorch 1.13 with the
// official facebookresearch/mae code (make_fixtures.py there). Checks every storage type and view, both file
// formats, the official checkpoint forms, Hugging Face folders, and that damaged, foreign and hostile files give an
// Error naming the file, never a crash, a hang or code execution.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { describeValue, toPlain, unpickle } from '../../lib/io/pickle.js';
import { openTorchFile } from '../../lib/io/pth.js';
import { readSafetensors, serializeSafetensors } from '../../lib/io/safetensors.js';
import { loadWeights, readWeights } from '../../lib/io/weights.js';

const dir = new URL('../fixtures/pth/', import.meta.url).pathname;
const fx = JSON.parse(readFileSync(join(dir, 'fixtures.json'), 'utf8'));
const tmp = mkdtempSync(join(tmpdir(), 'mae-pth-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function write(name: string, bytes: Uint8Array): string {
  const p = join(tmp, name);
  writeFileSync(p, bytes);
  return p;
}

describe('PyTorch files: storage types and views', () => {
  for (const file of ['dtypes.pth', 'dtypes-legacy.pth', 'dtypes-deflated.pth']) {
    it(`${file}: float32/16, bfloat16, float64, strides, offsets and shared storages give PyTorch's values`, async () => {
      const expected = (await readSafetensors(join(dir, 'dtypes-expected.safetensors'))).tensors;
      const r = await readWeights(join(dir, file));
      expect(r.format).toBe(file.includes('legacy') ? 'pth-legacy' : 'pth-zip');
      expect(r.key).toBe(null);
      expect([...r.weights.keys()].sort()).toEqual([...expected.keys()].sort());
      for (const [k, e] of expected) {
        const got = r.weights.get(k)!;
        expect(got.shape, k).toEqual(e.shape);
        expect(Array.from(got.data), k).toEqual(Array.from(e.data));
      }
      expect(r.skipped).toEqual(['steps (int64)']);
    });
  }
});

describe("PyTorch's layouts: values bit for bit as tensor.float() gives them (make_values.py)", () => {
  const expected: Record<string, { shape: number[]; bits: string[] }> = JSON.parse(readFileSync(join(dir, 'views-expected.json'), 'utf8'));
  for (const file of ['views.pth', 'views-p4.pth', 'views-legacy.pth']) {
    it(`${file}: channels_last, steps, stride 0 inside a storage, 0-d and empty views, parameters, float16/bfloat16/float64 edges`, async () => {
      const r = await readWeights(join(dir, file));
      expect([...r.weights.keys()]).toEqual(Object.keys(expected));
      for (const [k, e] of Object.entries(expected)) {
        const t = r.weights.get(k)!;
        expect(t.shape, k).toEqual(e.shape);
        const bits = Array.from(new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length), (b) => b.toString(16).padStart(8, '0'));
        expect(bits, k).toEqual(e.bits);
      }
    });
  }
});

describe('the official checkpoint forms', () => {
  it('a training checkpoint: the model weights; optimizer, epoch, scaler skipped; args as plain data', async () => {
    const r = await readWeights(join(dir, 'checkpoint-3.pth'));
    expect(r.key).toBe('model');
    expect(r.naming).toBe('official');
    expect(r.skipped.sort()).toEqual(['args (checkpoint entry)', 'epoch (checkpoint entry)', 'optimizer (checkpoint entry)', 'scaler (checkpoint entry)']);
    expect(r.epoch).toBe(3);
    expect(r.args).toMatchObject({ model: 'mae_vit_fixture', input_size: fx.config.img_size, mask_ratio: 0.75, norm_pix_loss: false, output_dir: './output_dir' });
    expect(r.weights.get('blocks.1.attn.qkv.weight')!.shape).toEqual([3 * fx.config.embed_dim, fx.config.embed_dim]);
    expect(r.weights.get('decoder_pred.bias')!.shape).toEqual([fx.config.patch_size ** 2 * 3]);
    // the weights equal those of the same model saved in the legacy format and under Hugging Face names
    const legacy = await loadWeights(join(dir, 'checkpoint-legacy.pth'));
    const hf = await readWeights(join(dir, 'hf-safetensors'));
    const bin = await readWeights(join(dir, 'hf-bin'));
    expect(hf.naming).toBe('huggingface');
    expect(hf.hfConfig).toMatchObject({ model_type: 'vit_mae', layer_norm_eps: 1e-12 });
    expect(bin.format).toBe('pth-zip');
    for (const other of [legacy, hf.weights, bin.weights]) {
      expect([...other.keys()].sort()).toEqual([...r.weights.keys()].sort());
      for (const [k, t] of r.weights) expect(Array.from(other.get(k)!.data), k).toEqual(Array.from(t.data));
    }
  });

  it("Hugging Face ViTMAEModel names (the encoder alone, no 'vit.' prefix) are converted too", async () => {
    const hf = (await readSafetensors(join(dir, 'hf-safetensors', 'model.safetensors'))).tensors;
    const bare = new Map([...hf].filter(([k]) => k.startsWith('vit.')).map(([k, t]) => [k.slice('vit.'.length), t]));
    const p = join(tmp, 'vitmae-model.safetensors');
    writeFileSync(p, serializeSafetensors(bare));
    const r = await readWeights(p);
    expect(r.naming).toBe('huggingface');
    const encoder = await loadWeights(join(dir, 'mae-encoder.pth'));
    expect([...r.weights.keys()].sort()).toEqual([...encoder.keys()].sort());
    for (const [k, t] of encoder) expect(Array.from(r.weights.get(k)!.data), k).toEqual(Array.from(t.data));
  });

  it('opts.key chooses another entry, and a missing one is an error listing the entries', async () => {
    await expect(loadWeights(join(dir, 'checkpoint-3.pth'), { key: 'ema' })).rejects.toThrow(/checkpoint-3\.pth: no entry 'ema' \(entries: model, optimizer, epoch, scaler, args\)/);
    await expect(loadWeights(join(dir, 'checkpoint-3.pth'), { key: 'epoch' })).rejects.toThrow(/entry 'epoch' is a number, not a state dict/);
  });

  it('the released encoder-only form holds the encoder', async () => {
    const w = await loadWeights(join(dir, 'mae-encoder.pth'));
    expect(w.has('norm.weight') && w.has('blocks.0.mlp.fc1.weight')).toBe(true);
    expect([...w.keys()].some((k) => k.startsWith('decoder') || k === 'mask_token')).toBe(false);
  });
});

describe("the other entries of training checkpoints: Python values that are data (make_values.py)", () => {
  for (const file of ['values.pth', 'values-p4.pth', 'values-legacy.pth']) {
    it(`${file}: sets, bytes, complex, slices, torch.device/Size, dict and list subclasses, defaultdict, Counter, NumPy scalars are read as data`, async () => {
      const r = await readWeights(join(dir, file));
      expect(r.key).toBe('model');
      expect([...r.weights.keys()]).toEqual(['w']);
      expect(Array.from(r.weights.get('w')!.data)).toEqual([-0.5, -0.25, 0, 0.25]);
      expect(r.skipped).toContain('freqs (complex64)');
      expect(r.epoch).toBe(4);
      expect(r.args).toEqual({
        device: 'cuda:1', cpu: 'cpu', tags: ['a'], frozen: [3], token: '<4 bytes>', empty: '<0 bytes>', buffer: '<2 bytes>',
        z: { __class__: 'builtins.complex', args: [1.5, -2], state: null }, shape: [2, 3],
        crop: { __class__: 'builtins.slice', args: [1, null, 2], state: null },
      });
      const f = await openTorchFile(join(dir, file));
      try {
        const root = f.root as Map<string, unknown>;
        const args = toPlain(root.get('args')) as Record<string, unknown>;
        expect(args).toMatchObject({ device: 'cuda:1' });
        const token = (root.get('args') as { state: Map<string, unknown> }).state.get('token');
        expect(token).toEqual(Uint8Array.of(0, 0xff, 0x61, 0x62));
        expect(toPlain(root.get('cfg'))).toEqual({ lr: 0.5, model: 'mae_vit_base_patch16' });
        expect(toPlain(root.get('milestones'))).toEqual([30, 60]);
        expect(toPlain(root.get('seen'))).toEqual({ train: [1, 2] });
        expect(toPlain(root.get('counts'))).toEqual({ a: 2, b: 1 });
        const numpy = ['best', 'best32', 'step', 'big', 'flag', 'half', 'swapped'].map((k) => root.get(k));
        expect(numpy).toEqual([0.8125, -1.5, -7, 2n ** 63n + 1n, true, 0.25, 3]);
      } finally {
        await f.close();
      }
    });
  }
});

describe('hostile, damaged and foreign files', () => {
  for (const file of ['hostile.pth', 'hostile-legacy.pth']) {
    it(`${file}: a __reduce__ calling os.system is refused and runs nothing`, async () => {
      rmSync(fx.hostile_mark, { force: true });
      await expect(loadWeights(join(dir, file))).rejects.toThrow(/refused to call posix\.system.*nothing was executed/);
      expect(existsSync(fx.hostile_mark)).toBe(false);
    });
  }

  it('truncated files: an Error naming the file at every length', async () => {
    for (const file of ['dtypes.pth', 'dtypes-legacy.pth']) {
      const bytes = readFileSync(join(dir, file));
      for (const n of [0, 1, 4, 30, 100, bytes.length >> 1, bytes.length - 30, bytes.length - 1]) {
        const p = write(`cut-${n}-${file}`, bytes.subarray(0, n));
        await expect(loadWeights(p), `${file} cut at ${n}`).rejects.toThrow(p);
      }
    }
  });

  it('garbage, a plain pickle, a text file: clear errors', async () => {
    const garbage = write('garbage.pth', new Uint8Array(4096).map((_, i) => (i * 7919) & 0xff));
    await expect(loadWeights(garbage)).rejects.toThrow(`${garbage}: not a weights file`);
    const pickle = write('plain.pkl', new Uint8Array([0x80, 0x02, 0x4b, 0x07, 0x2e])); // pickle.dumps(7, 2)
    await expect(loadWeights(pickle)).rejects.toThrow(`${pickle}: not a PyTorch checkpoint (a pickle, but without PyTorch's magic number)`);
    const text = write('notes.txt', new TextEncoder().encode('hello, this is not a checkpoint\n'));
    await expect(loadWeights(text)).rejects.toThrow(`${text}: not a weights file`);
    await expect(loadWeights(join(tmp, 'absent.pth'))).rejects.toThrow(/absent\.pth: no such file or folder/);
    await expect(loadWeights(tmp)).rejects.toThrow(/a folder without weights/);
  });

  it('random corruption of every fixture format: each read either succeeds or throws an Error naming the file', async () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    let failures = 0;
    for (const file of ['dtypes.pth', 'dtypes-legacy.pth', 'hostile.pth']) {
      const bytes = readFileSync(join(dir, file));
      for (let trial = 0; trial < 60; trial++) {
        const b = Uint8Array.from(bytes);
        const flips = 1 + Math.floor(rand() * 4);
        for (let k = 0; k < flips; k++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
        const p = write(`fuzz-${trial}-${file}`, b);
        try {
          await loadWeights(p);
        } catch (e) {
          failures++;
          expect(e).toBeInstanceOf(Error);
          expect((e as Error).message.startsWith(p), (e as Error).message).toBe(true);
        }
      }
    }
    expect(failures).toBeGreaterThan(0);
    expect(existsSync(fx.hostile_mark)).toBe(false);
  });

  it('a view repeating one element (stride 0) is refused rather than allocated', async () => {
    await expect(loadWeights(join(dir, 'expanded.pth'))).rejects.toThrow(/tensor "expanded": shape \[1000000\] has more elements than its storage of 1/);
  });

  it('the pickle reader bounds every length by the bytes left', () => {
    // BINUNICODE claiming 4 GB of text, LONG4 of 2^31 bytes, BINGET of an unset memo entry, unknown opcode
    const cases: [number[], RegExp][] = [
      [[0x80, 2, 0x58, 0xff, 0xff, 0xff, 0xff, 0x41], /truncated \(needs 4294967295 more bytes, 1 left\)/],
      [[0x80, 2, 0x8b, 0, 0, 0, 0x80], /an integer of 2147483648 bytes/],
      [[0x80, 2, 0x68, 9, 0x2e], /memo entry 9 was never stored/],
      [[0x80, 2, 0x69, 0x2e], /unsupported opcode 0x69 \('i'\)/],
      [[0x80, 2, 0x63, ...new TextEncoder().encode('os\nsystem\n'), 0x58, 1, 0, 0, 0, 0x41, 0x85, 0x52, 0x2e], /refused to call os\.system/],
    ];
    for (const [bytes, re] of cases) expect(() => unpickle(new Uint8Array(bytes), { source: 'x.pkl' })).toThrow(re);
  });
});

/** A zip archive of stored entries; `extra` gives an entry its central directory extra field and 32-bit sizes. */
function storedZip(entries: { name: string; data: Uint8Array; extra?: Uint8Array; size32?: number }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = new TextEncoder().encode(e.name);
    const crc = zlib.crc32(e.data) >>> 0;
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, e.data.length, true);
    local.setUint32(22, e.data.length, true);
    local.setUint16(26, name.length, true);
    parts.push(new Uint8Array(local.buffer), name, e.data);
    const extra = e.extra ?? new Uint8Array(0);
    const c = new DataView(new ArrayBuffer(46));
    c.setUint32(0, 0x02014b50, true);
    c.setUint32(16, crc, true);
    c.setUint32(20, e.size32 ?? e.data.length, true);
    c.setUint32(24, e.size32 ?? e.data.length, true);
    c.setUint16(28, name.length, true);
    c.setUint16(30, extra.length, true);
    c.setUint32(42, offset, true);
    central.push(new Uint8Array(c.buffer), name, extra);
    offset += 30 + name.length + e.data.length;
  }
  const cdSize = central.reduce((n, b) => n + b.length, 0);
  const eocd = new DataView(new ArrayBuffer(22));
  eocd.setUint32(0, 0x06054b50, true);
  eocd.setUint16(8, entries.length, true);
  eocd.setUint16(10, entries.length, true);
  eocd.setUint32(12, cdSize, true);
  eocd.setUint32(16, offset, true);
  return Buffer.concat([...parts, ...central, new Uint8Array(eocd.buffer)]);
}

describe('hostile structure', () => {
  const pickle = (...ops: (number | number[])[]) => new Uint8Array([0x80, 2, ...ops.flat(), 0x2e]);

  it('a value shared 2^40 times in a pickle of 400 bytes: toPlain stops at its bound instead of expanding it', () => {
    // L0 = [1]; Lk = [L(k-1), L(k-1)], each list stored once in the memo (BINPUT k) and fetched twice (BINGET)
    const ops: number[][] = [[0x5d, 0x4b, 1, 0x61, 0x71, 0, 0x30]];
    for (let k = 1; k <= 40; k++) ops.push([0x5d, 0x28, 0x68, k - 1, 0x68, k - 1, 0x65, 0x71, k, 0x30]);
    ops.push([0x68, 40]);
    const { value } = unpickle(pickle(...ops), { source: 'dag.pkl' });
    const text = JSON.stringify(toPlain(value));
    expect(text).toContain('"<...>"');
    expect(text.split('[').length - 1).toBeLessThanOrEqual(100_001); // a list a value
  });

  it('values nested without bound, or holding themselves, are described in a few characters', () => {
    const selfList = unpickle(pickle(0x5d, 0x71, 0, 0x68, 0, 0x61), { source: 'self.pkl' }).value;
    expect(describeValue(selfList)).toBe('((((1 items))))');
    const deep = unpickle(new Uint8Array([0x80, 2, ...new Array<number>(200_000).fill(0x28), ...new Array<number>(200_000).fill(0x6c), 0x2e]), { source: 'deep.pkl' }).value;
    expect(describeValue(deep)).toBe('((((1 items))))');
    expect(describeValue(Array.from({ length: 100 }, (_, i) => 'x'.repeat(i))).length).toBeLessThanOrEqual(200);
  });

  it('zip archives: two entries of one name, and an extra field longer than its entry, are refused', async () => {
    const pkl = pickle(0x7d); // {}
    const dup = write('dup.pth', storedZip([{ name: 'archive/data.pkl', data: pkl }, { name: 'archive/data.pkl', data: pkl }]));
    await expect(loadWeights(dup)).rejects.toThrow(`${dup}: damaged zip archive: two entries are named archive/data.pkl`);
    // the size holds 0xffffffff (its 64-bit value in the ZIP64 extra field), whose 4 bytes declare 65520
    const extra = new Uint8Array([1, 0, 0xf0, 0xff]);
    const short = write('zip64-extra.pth', storedZip([{ name: 'archive/data.pkl', data: pkl, extra, size32: 0xffffffff }]));
    await expect(loadWeights(short)).rejects.toThrow(`${short}: damaged zip archive: entry archive/data.pkl: an extra field of 65520 bytes runs past the entry's 4`);
  });

  it("a legacy file whose first pickle claims more bytes than the file has fails at once, without reading it all", async () => {
    const bytes = new Uint8Array(3 << 20);
    bytes.set([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0x7f]); // BINUNICODE of 2^31 - 1 bytes
    const p = write('legacy-claim.pth', bytes);
    await expect(loadWeights(p)).rejects.toThrow(`${p}: truncated file: its pickles need 2147483654 bytes or more, the file has ${3 << 20}`);
  });
});
