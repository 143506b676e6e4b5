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
