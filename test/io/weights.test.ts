// lib/io/weights.ts: which format a weights file is in, told from its first bytes.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serializeSafetensors } from '../../lib/io/safetensors.js';
import { readWeights } from '../../lib/io/weights.js';

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
