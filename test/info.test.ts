// lib/info.ts: memoryStats and emptyCache, the native allocator's figures as the public API gives them.
import { describe, expect, it } from 'vitest';
import { emptyCache, memoryStats } from '../lib/info.js';
import { Tensor } from '../lib/tensor.js';

describe('memoryStats and emptyCache', () => {
  it('count a tensor while it lives, keep its block cached after dispose, and give the cache back', () => {
    const before = memoryStats();
    const t = Tensor.zeros([1 << 20]); // 4 MiB
    const during = memoryStats();
    expect(during.allocatedBytes - before.allocatedBytes).toBeGreaterThanOrEqual(4 << 20);
    expect(during.peakBytes).toBeGreaterThanOrEqual(during.allocatedBytes);
    t.dispose();
    const after = memoryStats('cpu');
    expect(after.allocatedBytes).toBe(before.allocatedBytes);
    expect(after.cachedBytes).toBeGreaterThanOrEqual(4 << 20);
    emptyCache();
    expect(memoryStats().cachedBytes).toBe(0);
    expect(typeof memoryStats().blockedWeightBytes).toBe('number');
  });
});
