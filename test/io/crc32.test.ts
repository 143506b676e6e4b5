import { describe, expect, it } from 'vitest';
import { crc32, crc32Table } from '../../lib/io/crc32.js';

describe('crc32', () => {
  it('matches the standard check value and the PNG IEND chunk CRC, with zlib and with the table', () => {
    for (const f of [crc32, crc32Table]) {
      expect(f(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
      expect(f(new TextEncoder().encode('IEND'))).toBe(0xae426082);
      expect(f(new Uint8Array(0))).toBe(0);
    }
  });

  it('gives the same unsigned value both ways on random bytes of many lengths', () => {
    let s = 12345;
    for (const n of [1, 2, 3, 7, 64, 1000, 65537]) {
      const bytes = new Uint8Array(n).map(() => (s = (s * 1103515245 + 12345) >>> 0) >>> 24);
      const c = crc32(bytes);
      expect(c).toBe(crc32Table(bytes));
      expect(c).toBeGreaterThanOrEqual(0);
      expect(Number.isInteger(c) && c < 2 ** 32).toBe(true);
    }
  });
});
