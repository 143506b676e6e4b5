// The CUDA backend (native/cuda, loaded at run time by bindings/cuda_loader.cpp).
// On every machine: info().cuda says whether CUDA can be used and, when not, why; asking for a CUDA device then
// throws an Error carrying that reason (never a crash); device strings and dtype conversions are checked.
// On a machine with a usable GPU: every op of the op table runs on the CPU and on the GPU with the same fresh random
// inputs (tools/cuda-cases.ts) and must agree within each case's per-row tolerance, plus device errors (bad indices,
// at the op and deferred; out of memory; mixed devices) and the device entry points (to, clone, memory).
import { describe, expect, it } from 'vitest';
import { native } from '../../lib/native.js';
import { Tensor, tidy } from '../../lib/tensor.js';
import { compareCase, compareVariant, formatResult, opCases, precisionsOf, roundBf16, type Precision } from '../../tools/cuda-cases.js';

const cuda = native.info().cuda;
const available = cuda.available;
if (!available)
  console.log(`[test/cuda] CUDA is not available here, so the CUDA-vs-CPU comparisons are skipped: ${cuda.reason}`);

describe('CUDA availability', () => {
  it('info().cuda says whether CUDA is available, with a reason when it is not', () => {
    expect(typeof cuda.available).toBe('boolean');
    expect(typeof cuda.library).toBe('string');
    if (available) {
      expect(cuda.devices!.length).toBeGreaterThan(0);
      expect(native.info().backends).toContain('cuda');
    } else {
      expect(typeof cuda.reason).toBe('string');
      expect(cuda.reason!.length).toBeGreaterThan(10);
      expect(native.info().backends).not.toContain('cuda');
    }
  });

  it.skipIf(available)('Tensor.to("cuda") throws an Error that says why CUDA is unavailable', () => {
    const x = Tensor.fromArray([1, 2, 3], [3]);
    for (const d of ['cuda', 'cuda:0', 'cuda:3']) {
      let message = '';
      try {
        x.to(d);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).toMatch(/CUDA is not available/);
      expect(message).toContain(cuda.reason!);
    }
    expect(() => native.synchronize('cuda')).toThrow(/CUDA is not available/);
    expect(() => native.timerStart('cuda')).toThrow(/CUDA is not available/);
    expect(() => native.timerStop('cuda:1')).toThrow(/CUDA is not available/);
    expect(() => native.memoryStats('cuda')).toThrow(/CUDA is not available/);
    expect(() => native.syncCount('cuda')).toThrow(/CUDA is not available/);
    x.dispose();
  });

  it('rejects unknown devices and int/float conversions', () => {
    const x = Tensor.fromArray([1, 2, 3], [3]);
    expect(() => x.to('gpu')).toThrow("Tensor.to: device must be 'cpu', 'cuda' or 'cuda:N' (N < 100), got the string 'gpu'");
    expect(() => x.to('cuda:x')).toThrow("Tensor.to: device must be 'cpu', 'cuda' or 'cuda:N' (N < 100), got the string 'cuda:x'");
    expect(() => x.to('cuda:100')).toThrow("Tensor.to: device must be 'cpu', 'cuda' or 'cuda:N' (N < 100), got the string 'cuda:100'");
    // the addon's own parser, under the library's check
    expect(() => native.to(x.handle, 'gpu', 'float32')).toThrow(/unknown device 'gpu'/);
    expect(() => native.to(x.handle, 'cuda:100', 'float32')).toThrow(/unknown device 'cuda:100'/);
    expect(() => native.to(x.handle, 'cpu', 'int32')).toThrow(/cannot convert/);
    expect(() => native.to(x.handle, 'cpu', 'float16' as 'float32')).toThrow(/dtype must be/);
    expect(() => native.timerStart('cpu')).toThrow(/timerStart: device must be a CUDA device, got cpu/);
    expect(() => native.timerStop(3 as unknown as string)).toThrow(/device must be a string/);
    x.dispose();
  });

  it('to("cpu") shares storage; bfloat16 round trips on the CPU round to nearest even', () =>
    tidy(() => {
      const v = Float32Array.of(1, -2.5, 3.14159, 1e-3, 65504, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -0);
      const x = Tensor.fromArray(v, [8]);
      const same = x.to('cpu');
      expect(same.device).toBe('cpu');
      same.write(Float32Array.of(9, 9, 9, 9, 9, 9, 9, 9));
      expect(x.dataSync()[0]).toBe(9);
      x.write(v);
      const b = x.to('cpu', 'bfloat16');
      expect(b.dtype).toBe('bfloat16');
      expect(Array.from(b.dataSync())).toEqual(Array.from(roundBf16(v)));
      expect(roundBf16(Float32Array.of(1 + 2 ** -8))[0]).toBe(1); // a tie goes to even
      expect(roundBf16(Float32Array.of(1 + 3 * 2 ** -8))[0]).toBe(1 + 2 ** -6);
      const back = b.to('cpu', 'float32');
      expect(back.dtype).toBe('float32');
      expect(Array.from(back.dataSync())).toEqual(Array.from(roundBf16(v)));
      // CPU kernels take bfloat16 activations; parameters and statistics stay float32, with a clear message
      expect(native.gelu(b.handle).dtype).toBe('bfloat16');
      expect(() => native.layerNorm(b.handle, b.handle, b.handle, 1e-6)).toThrow(/weight must be float32, got bfloat16/);
    }));
});

const cases = opCases(false);

for (const precision of ['float32', 'bfloat16'] as Precision[])
  describe.skipIf(!available)(`CUDA vs CPU (${precision})`, () => {
    for (const c of cases.filter((c) => precisionsOf(c, 'cuda').includes(precision)))
      it(`${c.family}: ${c.name}`, () => {
        const results = [
          ...compareCase(native, c, 'cuda', precision, 7),
          ...(c.variants ?? []).filter((v) => !v.precisions || v.precisions.includes(precision)).map((v) => compareVariant(native, c, v, 'cuda', precision, 7)),
        ];
        for (const r of results) {
          if (!r.ok) console.log(formatResult(r));
          expect(r.failure, `${r.check} of ${c.name}`).toBeUndefined();
          for (const e of r.errors) expect(e.ok, `${r.check}: ${e.output} of ${c.name} (${e.err} at ${e.at}, tol ${e.tol})`).toBe(true);
        }
      });
  });

describe.skipIf(!available)('CUDA device behaviour', () => {
  it('moves tensors to the device and back unchanged, clones there, and reports memory', () =>
    tidy(() => {
      const v = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 100);
      const x = Tensor.fromArray(v, [10, 100]);
      const d = x.to('cuda');
      expect(d.device).toBe('cuda:0');
      expect(d.to('cuda').device).toBe('cuda:0');
      const c = new Tensor(native.clone(d.handle));
      expect(Array.from(c.to('cpu').dataSync())).toEqual(Array.from(v));
      const i = Tensor.fromArray(Int32Array.of(1, -7, 3), [3]).to('cuda');
      expect(Array.from(i.to('cpu').intDataSync())).toEqual([1, -7, 3]);
      const b = x.to('cuda', 'bfloat16');
      expect(Array.from(b.dataSync())).toEqual(Array.from(roundBf16(v)));
      expect(native.memoryStats('cuda').allocatedBytes).toBeGreaterThan(0);
      native.synchronize('cuda');
      // GPU time of a queued copy: positive and finite
      native.timerStart('cuda');
      native.clone(d.handle).dispose();
      const ms = native.timerStop('cuda');
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThan(1e4);
    }));

  it('gradients flow back through to()', () =>
    tidy(() => {
      const x = Tensor.fromArray([1, 2, 3], [3], { requiresGrad: true });
      const y = x.to('cuda', 'bfloat16');
      expect(y.requiresGrad).toBe(true);
      // the gradient of to() is the incoming gradient moved back to x's device and dtype
      y.backward(Tensor.fromArray([0.5, 1, -2], [3]).to('cuda'));
      expect(x.grad!.device).toBe('cpu');
      expect(x.grad!.dtype).toBe('float32');
      expect(Array.from(x.grad!.dataSync())).toEqual([0.5, 1, -2]);
    }));

  it('refuses tensors on different devices', () =>
    tidy(() => {
      const a = Tensor.fromArray([1, 2], [2]);
      const b = a.to('cuda');
      expect(() => native.add(a.handle, b.handle)).toThrow(/different devices/);
    }));

  it('with MAE_CUDA_CHECK_INDICES=1, reports an out-of-range index at the op and keeps working', () =>
    tidy(() => {
      process.env.MAE_CUDA_CHECK_INDICES = '1';
      try {
        const x = Tensor.fromArray(new Float32Array(2 * 5 * 3), [2, 5, 3]).to('cuda');
        const idx = Tensor.fromArray(Int32Array.of(0, 1, 4, 5), [2, 2]).to('cuda');
        expect(() => native.gatherRows(x.handle, idx.handle)).toThrow(/index value 5 at position 3 is outside \[0, 5\)/);
        expect(() => native.scatterAddRows(x.handle, Tensor.fromArray(Int32Array.of(0, 1, 2, 3, 4, -1, 0, 1, 2, 3), [2, 5]).to('cuda').handle, 5)).toThrow(/outside/);
        const labels = Tensor.fromArray(Int32Array.of(0, 9), [2]).to('cuda');
        const logits = Tensor.fromArray(new Float32Array(6), [2, 3]).to('cuda');
        expect(() => native.crossEntropy(logits.handle, labels.handle, 0)).toThrow(/label 9 of row 1 is outside \[0, 3\)/);
        const ok = native.gatherRows(x.handle, Tensor.fromArray(Int32Array.of(0, 1, 4, 2), [2, 2]).to('cuda').handle);
        expect(ok.read().length).toBe(12);
        ok.dispose();
      } finally {
        delete process.env.MAE_CUDA_CHECK_INDICES;
      }
    }));

  it('by default, reports an out-of-range index at the next read of device data, then keeps working', () =>
    tidy(() => {
      const before = native.syncCount('cuda');
      const x = Tensor.fromArray(new Float32Array(2 * 5 * 8), [2, 5, 8]).to('cuda');
      const idx = Tensor.fromArray(Int32Array.of(0, 1, 4, 7), [2, 2]).to('cuda');
      const y = new Tensor(native.gatherRows(x.handle, idx.handle)); // returns without waiting
      expect(native.syncCount('cuda')).toBe(before);
      expect(() => y.dataSync()).toThrow(/an earlier gatherRows call on cuda:0 received a bad value: index value 7 at position 3 is outside \[0, 5\)/);
      // reported once: the record is cleared
      expect(Array.from(y.dataSync()).slice(24)).toEqual(new Array(8).fill(0));
      native.synchronize('cuda');
    }));

  it('reports an out-of-range index at an asynchronous read (data()) too: it resolved with the rows left unwritten', async () => {
    const x = Tensor.fromArray(new Float32Array(2 * 5 * 8).fill(1), [2, 5, 8]).to('cuda');
    const idx = Tensor.fromArray(Int32Array.of(0, 1, 4, 7), [2, 2]).to('cuda');
    const y = new Tensor(native.gatherRows(x.handle, idx.handle));
    await expect(y.data()).rejects.toThrow(/an earlier gatherRows call on cuda:0 received a bad value: index value 7 at position 3 is outside \[0, 5\)/);
    // reported once: the record is cleared, and the next read gives the rows (the bad one left as zeros)
    expect(Array.from((await y.data()).slice(0, 24))).toEqual(new Array(24).fill(1));
    for (const t of [x, idx, y]) t.dispose();
  });

  it('reports running out of device memory as an Error and keeps working', () =>
    tidy(() => {
      const dy = Tensor.fromArray([1], [1, 1]).to('cuda');
      // an output of 4e12 bytes: more than any GPU has
      expect(() => native.meanTokensBackward(dy.handle, 1e12)).toThrow(/CUDA out of memory on cuda:0/);
      const y = new Tensor(native.meanTokensBackward(dy.handle, 4));
      expect(Array.from(y.dataSync())).toEqual([0.25, 0.25, 0.25, 0.25]);
    }));
});
