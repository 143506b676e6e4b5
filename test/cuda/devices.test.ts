// Devices and mixed precision through the library: Module.to, tensors made on a device, bf16 refused by the CPU
// backend with a clear error, pretrain's device / precision options and CLI flags, and deviceStepCheck.
// Everywhere: the CPU paths and the errors of a machine without CUDA. With CUDA: a few pre-training steps on the
// GPU in fp32 and bf16 against the CPU's losses.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pretrainOptions } from '../../lib/cli.js';
import { info } from '../../lib/info.js';
import { MaskedAutoencoder, deviceStepCheck } from '../../lib/mae/index.js';
import { native } from '../../lib/native.js';
import { Linear } from '../../lib/nn/layers.js';
import * as ops from '../../lib/ops/index.js';
import { AdamW } from '../../lib/optim/adamw.js';
import { Generator } from '../../lib/random.js';
import { Tensor, liveTensors, tidy } from '../../lib/tensor.js';
import { pretrain, type PretrainOptions } from '../../lib/train/pretrain.js';

const cuda = native.info().cuda;
const cudaAvailable = cuda.available;

const tiny = { imgSize: 8, patchSize: 4, inChans: 3, embedDim: 16, depth: 1, numHeads: 2, decoderEmbedDim: 8, decoderDepth: 1, decoderNumHeads: 2 };

const small: PretrainOptions = {
  preset: 'mae_vit_tiny_patch4_28',
  config: { embedDim: 32, depth: 2, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 },
  data: { kind: 'synthetic', count: 64 },
  batchSize: 16,
  epochs: 1,
  blr: 1e-2,
  warmupEpochs: 1,
  workers: 0,
  visualizeEvery: 0,
  maxSteps: 3,
};

const tmp = () => mkdtempSync(join(tmpdir(), 'mae-devices-'));

describe('Module.to and tensors on a device', () => {
  it("Module.to('cpu') keeps every parameter: identity, name, requiresGrad, values", () => {
    const m = new MaskedAutoencoder(tiny, { seed: 3 });
    const before = m.namedParameters().map(([n, p]) => [n, p, p.requiresGrad, p.dataSync()] as const);
    const live = liveTensors();
    expect(m.to('cpu')).toBe(m);
    expect(m.device).toBe('cpu');
    const after = m.namedParameters();
    expect(after.map(([n]) => n)).toEqual(before.map(([n]) => n));
    after.forEach(([, p], i) => {
      expect(p).toBe(before[i]![1]);
      expect(p.requiresGrad).toBe(before[i]![2]);
      expect(p.device).toBe('cpu');
      expect(Array.from(p.dataSync())).toEqual(Array.from(before[i]![3]));
    });
    expect(liveTensors()).toBe(live);
    m.dispose();
  });

  it('Tensor.fromArray / full / zeros / ones take a device', () => {
    const a = Tensor.fromArray([1, 2, 3], [3], { device: 'cpu' });
    const b = Tensor.full([2], 7, 'float32', 'cpu');
    const c = Tensor.ones([2], 'cpu');
    expect(a.device).toBe('cpu');
    expect(Array.from(b.dataSync())).toEqual([7, 7]);
    expect(Array.from(c.dataSync())).toEqual([1, 1]);
    for (const t of [a, b, c]) t.dispose();
  });

  it('AdamW makes its state on the parameter device and steps', () => {
    const lin = new Linear(3, 2, new Generator(0));
    const opt = new AdamW(lin.parameters(), { lr: 0.1 });
    tidy(() => ops.sum(lin.forward(Tensor.fromArray([1, 2, 3], [1, 3]))).backward());
    opt.step();
    const sd = opt.stateDict();
    for (const t of sd.tensors.values()) expect(t.device).toBe('cpu');
    opt.dispose();
    lin.zeroGrad();
    lin.dispose();
  });

  it.skipIf(cudaAvailable)("Module.to('cuda') and Tensor.fromArray on cuda throw why CUDA is unavailable, leaving the module usable", () => {
    const m = new MaskedAutoencoder(tiny);
    const live = liveTensors();
    expect(() => m.to('cuda')).toThrow(cuda.reason!);
    expect(m.device).toBe('cpu');
    expect(() => Tensor.fromArray([1, 2], [2], { device: 'cuda' })).toThrow(cuda.reason!);
    expect(() => Tensor.zeros([2], 'float32', 'cuda:0')).toThrow(cuda.reason!);
    expect(liveTensors()).toBe(live);
    m.dispose();
  });
});

describe('bfloat16 on the CPU: activations only, clear errors elsewhere', () => {
  it('ops take bfloat16 activations and refuse bfloat16 parameters, saying so', () => {
    tidy(() => {
      const x = Tensor.fromArray(new Float32Array(2 * 4 * 6).fill(0.5), [2, 4, 6]).to('cpu', 'bfloat16');
      expect(x.dtype).toBe('bfloat16');
      const w = Tensor.fromArray(new Float32Array(5 * 6).fill(0.1), [5, 6]);
      const g = Tensor.ones([6]);
      const z = Tensor.zeros([6]);
      const cases: [string, () => unknown][] = [
        ['linear', () => ops.linear(x, w, null)],
        ['layerNorm', () => ops.layerNorm(x, g, z, 1e-6)],
        ['gelu', () => ops.gelu(x)],
        ['biasGelu', () => ops.biasGelu(x, z)],
        ['addLayerNorm', () => ops.addLayerNorm(x, x, g, z, 1e-6)],
        ['attention', () => ops.attention(x, 2)],
        ['add', () => ops.add(x, z)],
        ['sliceTokens', () => ops.sliceTokens(x, 0, 2)],
      ];
      for (const [name, f] of cases) {
        const r = f();
        expect((r instanceof Tensor ? r : (r as { y: Tensor }).y).dtype, name).toBe('bfloat16');
      }
      // a bfloat16 weight (parameters stay float32; a bf16 copy goes in as weightBf16): a clear message
      expect(() => ops.linear(Tensor.fromArray(new Float32Array(6), [1, 6]), w.to('cpu', 'bfloat16'), null)).toThrow(
        /weight must be float32, got bfloat16 \[5, 6\] on the CPU: CPU kernels take bfloat16 only for activations/,
      );
    });
  });

  it("forward with precision 'bf16' runs on the CPU; another precision throws", () => {
    const live = liveTensors();
    const m = new MaskedAutoencoder(tiny);
    const imgs = Tensor.zeros([2, 3, 8, 8]);
    expect(tidy(() => m.forward(imgs, { precision: 'bf16' }).pred.dtype)).toBe('bfloat16');
    expect(() => tidy(() => m.forward(imgs, { precision: 'fp16' as 'bf16' }))).toThrow(/precision must be 'fp32' or 'bf16'/);
    imgs.dispose();
    // the bf16 weight copies live with the model and go with it
    m.dispose();
    expect(liveTensors()).toBe(live);
  });
});

describe('pretrain device and precision', () => {
  it('a bad device or precision is a clear error', async () => {
    await expect(pretrain({ ...small, outDir: tmp(), device: 'gpu' })).rejects.toThrow(/device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'/);
    await expect(pretrain({ ...small, outDir: tmp(), precision: 'fp8' as 'bf16' })).rejects.toThrow(/precision must be 'fp32' or 'bf16'/);
  });

  it.skipIf(cudaAvailable)("device 'cuda' without CUDA throws the reason from info().cuda", async () => {
    for (const device of ['cuda', 'cuda:1']) {
      const err = await pretrain({ ...small, outDir: tmp(), device }).then(() => null, (e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect(err!.message).toContain(`device '${device}' was asked for, but CUDA is not available`);
      expect(err!.message).toContain(cuda.reason!);
    }
  });

  it('the CLI takes --device and --precision; info() carries the CUDA status', () => {
    const o = pretrainOptions(['--device', 'cuda:1', '--precision', 'bf16']);
    expect(o.device).toBe('cuda:1');
    expect(o.precision).toBe('bf16');
    const d = pretrainOptions([]);
    expect(d.device).toBeUndefined();
    expect(d.precision).toBeUndefined();
    const i = info();
    expect(i.cuda.available).toBe(cudaAvailable);
    if (!cudaAvailable) expect(i.cuda.reason).toBe(cuda.reason);
  });
});

describe('deviceStepCheck', () => {
  it('CPU against CPU: identical losses, passes', async () => {
    const lines: string[] = [];
    const live = liveTensors();
    const r = await deviceStepCheck({ device: 'cpu', steps: 3, log: (l) => lines.push(l) });
    expect(r.ok).toBe(true);
    expect(r.model).toBe('parity fixture');
    expect(r.cpuLosses).toHaveLength(3);
    expect(r.deviceLosses).toEqual(r.cpuLosses);
    expect(r.bf16Losses).toBeNull();
    expect(r.fp32MaxRelDiff).toBe(0);
    expect(r.fp32GradRelErr).toBe(0);
    // the first step is the parity fixture's forward (official loss), and training moves the loss
    expect(Math.abs(r.cpuLosses[0]! - 1.3281584696285675) / 1.3281584696285675).toBeLessThan(1e-5);
    expect(new Set(r.cpuLosses).size).toBe(3);
    expect(lines.some((l) => l.includes('step 3:'))).toBe(true);
    expect(lines.some((l) => l.includes('bf16: not run'))).toBe(true);
    expect(liveTensors()).toBe(live);
  });

  it.skipIf(cudaAvailable)('on cuda without CUDA: the reason', async () => {
    await expect(deviceStepCheck({ device: 'cuda', steps: 1 })).rejects.toThrow(cuda.reason!);
  });
});

describe.skipIf(!cudaAvailable)('on CUDA (GPU machines only)', () => {
  it('pretrain on CUDA in fp32 and bf16 follows the CPU losses', async () => {
    const opts = { ...small, seed: 5 };
    const cpu = await pretrain({ ...opts, outDir: tmp() });
    const gpu32 = await pretrain({ ...opts, outDir: tmp(), device: 'cuda' });
    const gpu16 = await pretrain({ ...opts, outDir: tmp(), device: 'cuda', precision: 'bf16' });
    expect(cpu.losses).toHaveLength(3);
    for (let i = 0; i < cpu.losses.length; i++) {
      const ref = cpu.losses[i]!;
      console.log(`[test/cuda] pretrain step ${i + 1}: cpu ${ref}, cuda fp32 ${gpu32.losses[i]}, cuda bf16 ${gpu16.losses[i]}`);
      expect(Math.abs(gpu32.losses[i]! - ref) / ref, `fp32 step ${i + 1}`).toBeLessThan(1e-4);
      expect(Math.abs(gpu16.losses[i]! - ref) / ref, `bf16 step ${i + 1}`).toBeLessThan(2e-2);
    }
  }, 120_000);

  it('deviceStepCheck on cuda passes (fp32 and bf16)', async () => {
    const r = await deviceStepCheck({ device: 'cuda', steps: 5, log: (l) => console.log(`[test/cuda] ${l}`) });
    expect(r.bf16Losses).not.toBeNull();
    expect(r.ok).toBe(true);
  }, 120_000);

  it('Module.to moves parameters to CUDA and back, keeping values; bf16 activations stay bf16', () => {
    const m = new MaskedAutoencoder(tiny, { seed: 1 });
    const ref = m.namedParameters().map(([, p]) => p.dataSync());
    m.to('cuda');
    for (const [, p] of m.namedParameters()) expect(p.device).toMatch(/^cuda/);
    const dtypes = tidy(() => {
      const imgs = Tensor.fromArray(new Generator(2).normalArray(2 * 3 * 8 * 8), [2, 3, 8, 8], { device: 'cuda' });
      const out = m.forward(imgs, { precision: 'bf16', maskRatio: 0.5 });
      out.loss.backward();
      return { pred: out.pred.dtype, loss: out.loss.dtype, grad: m.patch_embed.proj.weight.grad!.dtype, gradDevice: m.patch_embed.proj.weight.grad!.device };
    });
    expect(dtypes.pred).toBe('bfloat16');
    expect(dtypes.loss).toBe('float32');
    expect(dtypes.grad).toBe('float32');
    expect(dtypes.gradDevice).toMatch(/^cuda/);
    m.zeroGrad();
    m.to('cpu');
    m.namedParameters().forEach(([, p], i) => expect(Array.from(p.dataSync())).toEqual(Array.from(ref[i]!)));
    m.dispose();
  });
});
