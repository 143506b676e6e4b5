// The comparison machinery of the device check (tools/cuda-cases.ts), on the CPU: per-row relative errors with the
// worst row named, the bfloat16 rounding allowance, absolute and finite-only outputs, bitwise determinism, and every
// case of the quick set run CPU against CPU (what MAE_CHECK_DEVICE=cpu does) with an injected error caught.
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { compareCase, compareValues, compareVariant, halfUlpBf16, opCases, roundBf16, type OpCase } from '../../tools/cuda-cases.js';

const vals = (data: number[], rowLen: number, bf16 = false) => ({ data: Float32Array.from(data), rowLen, bf16 });

describe('compareValues', () => {
  it('takes the worst row of max |got - ref| / max |ref| and names it', () => {
    // row 0 relative 0.1 / 2, row 1 relative 0.3 / 3 (the worst), row 2 exact
    const ref = vals([1, 2, 3, 1, 5, 5], 2);
    const got = vals([1.1, 2, 3, 1.3, 5, 5], 2);
    const e = compareValues(got, ref, {}, 0.05, 'y');
    expect(e.err).toBeCloseTo(0.1, 6);
    expect(e.at).toBe('row 1 of 3');
    expect(e.ok).toBe(false);
    expect(compareValues(got, ref, {}, 0.11, 'y').ok).toBe(true);
  });

  it('measures rows far below the tensor scale against 1e-6 of its largest value, not their own', () => {
    const ref = vals([1e-12, 1e-12, 1, 1], 2);
    const got = vals([2e-12, 1e-12, 1, 1], 2);
    expect(compareValues(got, ref, {}, 1e-5, 'y').err).toBeLessThan(1e-5);
  });

  it('discounts half a bfloat16 spacing for bfloat16 outputs, and only that', () => {
    expect(halfUlpBf16(1)).toBe(2 ** -8);
    expect(halfUlpBf16(3)).toBe(2 ** -7);
    expect(halfUlpBf16(-0.75)).toBe(2 ** -9);
    // a device that computed 1.001 exactly and stored it in bfloat16 reads back 1: only rounding, no error
    const ref = vals([1.001, 2], 2);
    const rounded = roundBf16(Float32Array.of(1.001))[0]!;
    expect(rounded).toBe(1);
    expect(compareValues(vals([rounded, 2], 2, true), ref, {}, 1e-4, 'y').err).toBe(0);
    expect(compareValues(vals([rounded, 2], 2, false), ref, {}, 1e-4, 'y').ok).toBe(false);
    // one bfloat16 step further (1 + 2^-7) is more than rounding explains
    expect(compareValues(vals([1 + 2 ** -7, 2], 2, true), ref, {}, 1e-4, 'y').ok).toBe(false);
  });

  it('compares absolute outputs absolutely and finite-only outputs for finiteness', () => {
    expect(compareValues(vals([100.0005], 1), vals([100], 1), { abs: 1e-3 }, 0, 'lse').ok).toBe(true);
    expect(compareValues(vals([100.002], 1), vals([100], 1), { abs: 1e-3 }, 0, 'lse').ok).toBe(false);
    expect(compareValues(vals([5, -3], 2), vals([1e-9, 2e-9], 2), { finiteOnly: true }, 0, 'dq').ok).toBe(true);
    expect(compareValues(vals([NaN, 0], 2), vals([1e-9, 2e-9], 2), { finiteOnly: true }, 0, 'dq').ok).toBe(false);
    expect(compareValues(vals([Infinity, 0], 2), vals([1, 2], 2), {}, 1, 'y').err).toBe(Infinity);
  });
});

describe('the cases on the CPU (the dry run of the device check)', () => {
  const quick = opCases(false);

  it('cover every op family, each variant kind and the sanitizer set', () => {
    const families = new Set(quick.map((c) => c.family));
    expect([...families].sort()).toEqual(['adamw', 'attention', 'batchnorm', 'elementwise', 'gelu', 'gemm', 'layernorm', 'loss', 'patch', 'tokens']);
    const labels = new Set(quick.flatMap((c) => (c.variants ?? []).map((v) => v.label)));
    for (const l of ['tensor-core (4 warps) vs SIMT', 'tensor-core (2 warps) vs SIMT', 'fallback kernel vs cuBLASLt', 'unfused (MAE_FUSED=0) vs fused epilogues', 'scalar vs 16-byte kernels'])
      expect(labels.has(l), l).toBe(true);
    expect(new Set(quick.filter((c) => c.sanitize).map((c) => c.family)).size).toBe(families.size);
    const full = opCases(true);
    const heads = new Set(full.filter((c) => c.family === 'attention').map((c) => /hd (\d+)/.exec(c.name)![1]));
    for (const hd of ['16', '32', '64', '80', '96', '128']) expect(heads.has(hd), `head dim ${hd}`).toBe(true);
    for (const N of [1, 17, 50, 197, 257]) expect(full.some((c) => c.name.includes(`N${N} `)), `N ${N}`).toBe(true);
  });

  it('pass CPU against CPU, bitwise deterministic, in every quick case', () => {
    for (const c of quick.filter((c) => !c.precisions || c.precisions.includes('float32'))) {
      for (const r of compareCase(native, c, 'cpu', 'float32', 3)) {
        expect(r.failure, `${r.check} ${c.name}`).toBeUndefined();
        expect(r.ok, `${r.check} ${c.name}: ${JSON.stringify(r.errors)}`).toBe(true);
      }
      for (const v of c.variants ?? []) if (!v.precisions || v.precisions.includes('float32')) expect(compareVariant(native, c, v, 'cpu', 'float32', 3).ok).toBe(true);
    }
  });

  it('catch a wrong output and name its worst row', () => {
    const c = quick.find((c) => c.name.startsWith('layerNorm [3,37,65]'))!;
    // the same case whose run adds 1e-3 to one element of y when it runs a second time (the "device" run)
    let calls = 0;
    const broken: OpCase = {
      ...c,
      run: (n, t) => {
        const out = c.run(n, t) as Record<string, ReturnType<typeof n.fromArray>>;
        if (++calls >= 2) {
          const y = out.y!.read() as Float32Array;
          y[5 * 65 + 7]! += 1e-3 * Math.max(...Array.from(y.subarray(5 * 65, 6 * 65)).map(Math.abs));
          out.y!.write(y);
        }
        return out;
      },
    };
    const [vsCpu] = compareCase(native, broken, 'cpu', 'float32', 3);
    const y = vsCpu!.errors.find((e) => e.output === 'y')!;
    expect(vsCpu!.ok).toBe(false);
    expect(y.at).toBe('row 5 of 111');
    expect(y.err).toBeGreaterThan(9e-4);
  });
});
