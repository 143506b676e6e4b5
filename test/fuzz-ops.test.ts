// The ops under the random-call fuzzer of tools/fuzz-ops.ts, for a fixed seed and a bounded number of calls (longer
// runs by hand: node dist/tools/fuzz-ops.js --seconds 600). The calls run in child processes of the compiled fuzzer
// (dist/, made by npm run build:ts). Every call must return tensors of the expected shapes or be refused with an Error
// that starts with the op's name; none may crash or hang the process, be slow, or make it grow past 2 GiB.
import { describe, expect, it } from 'vitest';
import { fuzzOps, SPECS } from '../tools/fuzz-ops.js';

const CALLS = 60000;

describe('fuzzing the ops with random calls', () => {
  it(`${CALLS} calls return consistent results or are refused with a clear error`, async () => {
    const r = await fuzzOps({ seed: 1, calls: CALLS, slowMs: 5000, maxRssMiB: 2048 });
    expect(r.failures).toEqual([]);
    expect(r.calls).toBe(CALLS);
    // the fuzzer exercises the ops: nearly every op is called, about half the calls reach the kernels and return, and
    // the others meet hundreds of different refusals
    expect(r.ops).toBeGreaterThanOrEqual(SPECS.length - 2);
    expect(r.returned).toBeGreaterThan(CALLS / 3);
    expect(r.refused).toBeGreaterThan(CALLS / 3);
    expect(r.errorKinds).toBeGreaterThanOrEqual(500);
  }, 300_000);
});
