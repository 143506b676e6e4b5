// The file parsers under the mutation fuzzer of tools/fuzz.ts, for a bounded number of inputs per target (longer
// runs by hand: node dist/tools/fuzz.js --seconds 600). Every input must parse into consistent data or be refused
// with an Error that starts with the file's name; none may be slow or make the process grow past 1 GiB.
import { describe, expect, it } from 'vitest';
import { fuzz, TARGETS } from '../tools/fuzz.js';

const INPUTS: Record<string, number> = { safetensors: 20000, checkpoint: 1500, idx: 20000, 'idx-gz': 1500, cifar: 5000, pth: 1500, shards: 15000, 'shards-jpeg': 15000 };
/** kinds of refusal each target must reach (a CIFAR batch can only have a wrong size or a wrong label) */
const KINDS: Record<string, number> = { safetensors: 50, checkpoint: 20, idx: 20, 'idx-gz': 20, cifar: 2, pth: 20, shards: 70, 'shards-jpeg': 100 };

describe('fuzzing the file parsers', () => {
  for (const target of TARGETS)
    it(`${target.name}: ${INPUTS[target.name]} mutated inputs parse or are refused with a clear error`, async () => {
      const r = await fuzz(target, { seed: 1, inputs: INPUTS[target.name], slowMs: 5000, maxRssMiB: 1024 });
      expect(r.failures).toEqual([]);
      expect(r.inputs).toBe(INPUTS[target.name]);
      // the seeds parse and the mutants reach many different refusals: the fuzzer exercises the parser
      expect(r.parsed).toBeGreaterThan(0);
      expect(r.errorKinds).toBeGreaterThanOrEqual(KINDS[target.name]!);
    });
});
