// lib/io/weights.ts: which format a weights file is in, told from its first bytes; safetensors dtypes; sharded
// Hugging Face folders (an index.json and its shards).
import { closeSync, copyFileSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readSafetensors, serializeSafetensors } from '../../lib/io/safetensors.js';
import { readWeights } from '../../lib/io/weights.js';
import { MaskedAutoencoder } from '../../lib/mae/model.js';

describe('readWeights: the format', () => {
  it('a safetensors file whose header length begins with 0x80 (as a pickle does) is read as safetensors', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mae-weights-'));
    const tensors = { cls_token: { shape: [1, 1, 4], data: Float32Array.of(1, 2, 3, 4) } };
    // pad the metadata until the header's length (a multiple of 8) has the low byte wanted: 0x80 and those around it
    for (const firstByte of [0x70, 0x78, 0x80, 0x88]) {
      let bytes = serializeSafetensors(tensors, { note: '' });
      for (let pad = 1; bytes[0] !== firstByte && pad < 1024; pad++) bytes = serializeSafetensors(tensors, { note: 'x'.repeat(pad) });
      expect(bytes[0]).toBe(firstByte);
      const path = join(dir, `w-${firstByte}.safetensors`);
      writeFileSync(path, bytes);
      const w = await readWeights(path);
      expect([w.format, Array.from(w.weights.get('cls_token')!.data)], `first byte 0x${firstByte.toString(16)}`).toEqual(['safetensors', [1, 2, 3, 4]]);
    }
  });
});

describe('readWeights: safetensors dtypes', () => {
  it('F64 tensors are read as float32 and integer ones (I64, U16) skipped, beside F32 and BF16', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mae-weights-'));
    // as a Python script writes it: torch.float64 position table, a bfloat16 token, an int64 counter, a uint16 table
    const header = {
      cls_token: { dtype: 'BF16', shape: [1, 1, 2], data_offsets: [0, 4] },
      pos_embed: { dtype: 'F64', shape: [1, 2, 2], data_offsets: [4, 36] },
      'norm.weight': { dtype: 'F32', shape: [2], data_offsets: [36, 44] },
      steps: { dtype: 'I64', shape: [], data_offsets: [44, 52] },
      table: { dtype: 'U16', shape: [1], data_offsets: [52, 54] },
    };
    const json = new TextEncoder().encode(JSON.stringify(header));
    const bytes = new Uint8Array(8 + json.length + 54);
    const view = new DataView(bytes.buffer, 8 + json.length);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
    bytes.set(json, 8);
    view.setUint16(0, 0x3f80, true); // bf16 1
    view.setUint16(2, 0xc000, true); // bf16 -2
    [0.5, -0.25, 1 / 3, 1e-3].forEach((v, i) => view.setFloat64(4 + 8 * i, v, true));
    view.setFloat32(36, 1, true);
    view.setFloat32(40, 2, true);
    view.setBigInt64(44, 7n, true);
    const path = join(dir, 'mixed.safetensors');
    writeFileSync(path, bytes);
    const w = await readWeights(path);
    expect([...w.weights.keys()]).toEqual(['cls_token', 'pos_embed', 'norm.weight']);
    expect(w.weights.get('pos_embed')).toEqual({ shape: [1, 2, 2], data: Float32Array.of(0.5, -0.25, 1 / 3, 1e-3) });
    expect(w.weights.get('cls_token')!.data).toEqual(Float32Array.of(1, -2));
    expect(w.skipped).toEqual(['steps (I64)', 'table (U16)']);
  });
});

describe('readWeights: sharded Hugging Face folders', () => {
  const hf = fileURLToPath(new URL('../fixtures/pth/hf-safetensors/', import.meta.url));
  const hfBin = fileURLToPath(new URL('../fixtures/pth/hf-bin/', import.meta.url));

  /** The fixture's model.safetensors split in two shards at `at` (in name order), with its index and config.json. */
  async function sharded(at: string, edit?: (map: Record<string, string>) => void): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'mae-shards-'));
    copyFileSync(join(hf, 'config.json'), join(dir, 'config.json'));
    const { tensors } = await readSafetensors(join(hf, 'model.safetensors'));
    const names = [...tensors.keys()].sort();
    const files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    const parts = [names.filter((n) => n <= at), names.filter((n) => n > at)];
    const weightMap: Record<string, string> = {};
    parts.forEach((part, i) => {
      writeFileSync(join(dir, files[i]!), serializeSafetensors(new Map(part.map((n) => [n, tensors.get(n)!]))));
      for (const n of part) weightMap[n] = files[i]!;
    });
    edit?.(weightMap);
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 1 }, weight_map: weightMap }));
    return dir;
  }

  it('model.safetensors.index.json: the shards make the state dict of model.safetensors, q/k/v fused across shards', async () => {
    const whole = await readWeights(hf);
    // split between a layer's key and query: key in the first shard, query and value in the second
    const dir = await sharded('vit.encoder.layer.0.attention.attention.key.weight');
    const w = await readWeights(dir);
    expect([w.path, w.format, w.naming, w.hfConfig]).toEqual([join(dir, 'model.safetensors.index.json'), 'safetensors', 'huggingface', whole.hfConfig]);
    expect(w.weights).toEqual(whole.weights);
    const mae = await MaskedAutoencoder.fromPretrained(dir);
    expect(mae.config).toMatchObject({ eps: 1e-12, numHeads: 4, decoderNumHeads: 2, embedDim: 32, depth: 2 });
    mae.dispose();
  });

  it('pytorch_model.bin.index.json: the .bin shards are read the same way', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mae-shards-'));
    copyFileSync(join(hfBin, 'config.json'), join(dir, 'config.json'));
    copyFileSync(join(hfBin, 'pytorch_model.bin'), join(dir, 'pytorch_model-00001-of-00001.bin'));
    const whole = await readWeights(hfBin);
    const names = [...(await readWeights(join(dir, 'pytorch_model-00001-of-00001.bin'))).weights.keys()];
    expect(names.length).toBeGreaterThan(0);
    const { tensors } = await readSafetensors(join(hf, 'model.safetensors'));
    const weightMap = Object.fromEntries([...tensors.keys()].map((n) => [n, 'pytorch_model-00001-of-00001.bin']));
    writeFileSync(join(dir, 'pytorch_model.bin.index.json'), JSON.stringify({ weight_map: weightMap }));
    const w = await readWeights(dir);
    expect([w.format, w.naming, w.path]).toEqual([whole.format, 'huggingface', join(dir, 'pytorch_model.bin.index.json')]);
    expect(w.weights).toEqual(whole.weights);
  });

  it('a missing shard, a tensor its shard lacks, a tensor in two shards, a bad index: errors naming the index', async () => {
    const index = (dir: string) => join(dir, 'model.safetensors.index.json');
    let dir = await sharded('decoder.mask_token');
    rmSync(join(dir, 'model-00002-of-00002.safetensors'));
    await expect(readWeights(dir)).rejects.toThrow(`${index(dir)}: the shard model-00002-of-00002.safetensors is missing`);
    dir = await sharded('decoder.mask_token', (m) => (m['vit.layernorm.bias'] = 'model-00001-of-00002.safetensors'));
    await expect(readWeights(dir)).rejects.toThrow(`${index(dir)}: the index places 1 tensor(s) in model-00001-of-00002.safetensors, which lacks them: vit.layernorm.bias`);
    dir = await sharded('decoder.mask_token');
    copyFileSync(join(hf, 'model.safetensors'), join(dir, 'model-00002-of-00002.safetensors'));
    await expect(readWeights(dir)).rejects.toThrow(/tensor "decoder\.[\w.]+" is in two shards, model-00001-of-00002.safetensors and model-00002-of-00002.safetensors/);
    dir = await sharded('decoder.mask_token', (m) => (m['vit.layernorm.bias'] = '../model.safetensors'));
    await expect(readWeights(dir)).rejects.toThrow(`${index(dir)}: the shard of "vit.layernorm.bias" is "../model.safetensors", not a file name`);
    writeFileSync(index(dir), '{"metadata": {}}');
    await expect(readWeights(dir)).rejects.toThrow(`${index(dir)}: no "weight_map" object`);
  });

  it('a folder without weights names the files it looked for, the sharded ones too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mae-shards-'));
    await expect(readWeights(dir)).rejects.toThrow(/model\.safetensors\.index\.json or pytorch_model\.bin\.index\.json/);
  });
});

describe('readWeights: files over 2 GiB', () => {
  it('a tensor after the first 2 GiB of a (sparse) file is read at its 64-bit offset; the skipped U8 tensor is never read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mae-big-'));
    const path = join(dir, 'big.safetensors');
    const big = 2 ** 31 + 8;
    const header = new TextEncoder().encode(JSON.stringify({
      skipped: { dtype: 'U8', shape: [big], data_offsets: [0, big] },
      cls_token: { dtype: 'F32', shape: [1, 1, 2], data_offsets: [big, big + 8] },
    }).padEnd(256, ' '));
    const head = new Uint8Array(8 + header.length);
    new DataView(head.buffer).setBigUint64(0, BigInt(header.length), true);
    head.set(header, 8);
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, head, 0, head.length, 0);
      writeSync(fd, new Uint8Array(Float32Array.of(1.5, -2).buffer), 0, 8, head.length + big); // the rest is a hole
    } finally {
      closeSync(fd);
    }
    try {
      const w = await readWeights(path);
      expect(w.weights.get('cls_token')).toEqual({ shape: [1, 1, 2], data: Float32Array.of(1.5, -2) });
      expect(w.skipped).toEqual(['skipped (U8)']);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
