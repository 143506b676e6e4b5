/**
 * deviceStepCheck: a few MAE training steps (forward, backward, AdamW) on the CPU and on a device, from the same
 * weights, images and masking noise, with the per-step losses compared. tools/device-check.ts runs it on a GPU;
 * with device 'cpu' it compares the CPU with itself (the code path runs anywhere).
 *
 * The model is the parity fixture's (test/fixtures/mae-parity: the official code's weights, images and noise) when
 * the package has it, else a small seeded model with seeded images. Runs: CPU fp32 (the reference), device fp32,
 * and on CUDA device bf16 (activations in bfloat16, fp32 master weights and loss). Passes when every step's loss
 * follows the CPU's within `fp32Tolerance` (fp32) and `bf16Tolerance` (bf16) relative difference, and the first
 * step's gradients agree with the CPU's within 1e-4 (fp32) and 1e-1 (bf16, a sanity bound) norm-relative error.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeValue, expectFinite, expectFunction, expectKnownKeys, expectObject, isFloat32Finite, optionNames } from '../check.js';
import { readSafetensors } from '../io/safetensors.js';
import { native, packageRoot } from '../native.js';
import { AdamW } from '../optim/adamw.js';
import { Generator } from '../random.js';
import { Tensor, tidy } from '../tensor.js';
import { MaskedAutoencoder, type Precision } from './model.js';
import { configFromOfficial, type MaeConfig } from './presets.js';

export interface DeviceStepCheckOptions {
  /** 'cpu', 'cuda' or 'cuda:N' */
  device: string;
  /** training steps per run (default 5) */
  steps?: number;
  log?: (line: string) => void;
  /** AdamW lr (default 1e-3; betas 0.9, 0.95, weight decay 0.05 as pre-training) */
  lr?: number;
  /** largest relative loss difference per step, fp32 (default 1e-4) and bf16 (default 2e-2) */
  fp32Tolerance?: number;
  bf16Tolerance?: number;
}

export interface DeviceStepCheckResult {
  ok: boolean;
  device: string;
  /** 'parity fixture' or 'small seeded model' */
  model: string;
  cpuLosses: number[];
  /** the device's fp32 losses */
  deviceLosses: number[];
  /** the device's bf16 losses (null when the device checked is the CPU, the reference itself) */
  bf16Losses: number[] | null;
  /** largest per-step relative loss difference from the CPU run */
  fp32MaxRelDiff: number;
  bf16MaxRelDiff: number | null;
  /** largest norm-relative error of a parameter gradient at the first step, against the CPU's */
  fp32GradRelErr: number;
  bf16GradRelErr: number | null;
  /** training images per second of the device runs (steps after the first) */
  imgPerSec?: number;
  imgPerSecBf16?: number;
}

interface Setup {
  config: Partial<MaeConfig>;
  model: string;
  weights: Map<string, { shape: number[]; data: Float32Array }> | null;
  images: { shape: number[]; data: Float32Array };
  maskRatio: number;
  /** masking noise for each step */
  noises: Float32Array[];
}

interface Run {
  losses: number[];
  grads: Map<string, Float32Array>;
  imgPerSec: number | undefined;
}

export async function deviceStepCheck(opts: DeviceStepCheckOptions): Promise<DeviceStepCheckResult> {
  const where = 'deviceStepCheck';
  expectObject(where, 'opts', opts, false, "e.g. { device: 'cuda' }");
  expectKnownKeys(where, 'opts', opts, optionNames<DeviceStepCheckOptions>({ device: true, steps: true, log: true, lr: true, fp32Tolerance: true, bf16Tolerance: true }));
  // each option as given (null is not its default)
  if (opts.steps !== undefined) expectFinite(where, 'steps', opts.steps, (x) => Number.isInteger(x) && x > 0, 'a positive integer');
  expectFunction(where, 'log', opts.log, true);
  if (opts.lr !== undefined) expectFinite(where, 'lr', opts.lr, (x) => x > 0 && isFloat32Finite(x), 'a positive finite number');
  if (opts.fp32Tolerance !== undefined) expectFinite(where, 'fp32Tolerance', opts.fp32Tolerance, (x) => x > 0, 'a positive finite number');
  if (opts.bf16Tolerance !== undefined) expectFinite(where, 'bf16Tolerance', opts.bf16Tolerance, (x) => x > 0, 'a positive finite number');
  const device = opts.device;
  const steps = opts.steps ?? 5;
  const log = opts.log ?? (() => {});
  const lr = opts.lr ?? 1e-3;
  const tol32 = opts.fp32Tolerance ?? 1e-4;
  const tol16 = opts.bf16Tolerance ?? 2e-2;
  const cuda = typeof device === 'string' && device.startsWith('cuda');
  if (cuda) {
    const c = native.info().cuda;
    if (!c.available) throw new Error(`deviceStepCheck: CUDA is not available: ${c.reason ?? 'unknown reason'}`);
  } else if (device !== 'cpu') throw new Error(`deviceStepCheck: device must be 'cpu', 'cuda' or 'cuda:N', got ${describeValue(device)}`);

  const s = await setup(steps);
  log(`MAE step check: ${s.model}, batch ${s.images.shape[0]}, ${steps} steps, AdamW lr ${lr}; CPU fp32 vs ${device} fp32${cuda ? ' and bf16' : ''}`);
  const cpu = runSteps(s, 'cpu', 'fp32', steps, lr);
  const dev = runSteps(s, device, 'fp32', steps, lr);
  const bf = cuda ? runSteps(s, device, 'bf16', steps, lr) : null;

  const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
  const maxRel = (xs: number[]) => xs.reduce((m, x, i) => Math.max(m, Number.isFinite(x) ? rel(x, cpu.losses[i]!) : Infinity), 0);
  for (let i = 0; i < steps; i++) {
    const c = cpu.losses[i]!;
    let line = `  step ${i + 1}: cpu ${c.toFixed(7)}  ${device} fp32 ${dev.losses[i]!.toFixed(7)} (rel ${rel(dev.losses[i]!, c).toExponential(2)})`;
    if (bf) line += `  bf16 ${bf.losses[i]!.toFixed(7)} (rel ${rel(bf.losses[i]!, c).toExponential(2)})`;
    log(line);
  }
  const fp32MaxRelDiff = maxRel(dev.losses);
  const bf16MaxRelDiff = bf ? maxRel(bf.losses) : null;
  const fp32GradRelErr = gradErr(dev.grads, cpu.grads);
  const bf16GradRelErr = bf ? gradErr(bf.grads, cpu.grads) : null;
  const ok32 = fp32MaxRelDiff <= tol32 && fp32GradRelErr <= 1e-4;
  const ok16 = !bf || (bf16MaxRelDiff! <= tol16 && bf16GradRelErr! <= 1e-1);
  log(`  fp32: max loss rel diff ${fp32MaxRelDiff.toExponential(2)} (tolerance ${tol32}), step-1 gradients max rel err ${fp32GradRelErr.toExponential(2)} (tolerance 1e-4): ${ok32 ? 'ok' : 'FAILED'}`);
  if (bf)
    log(`  bf16: max loss rel diff ${bf16MaxRelDiff!.toExponential(2)} (tolerance ${tol16}), step-1 gradients max rel err ${bf16GradRelErr!.toExponential(2)} (tolerance 1e-1): ${ok16 ? 'ok' : 'FAILED'}`);
  else log('  bf16: not run (the device is the CPU, the fp32 reference)');
  const result: DeviceStepCheckResult = {
    ok: ok32 && ok16,
    device,
    model: s.model,
    cpuLosses: cpu.losses,
    deviceLosses: dev.losses,
    bf16Losses: bf ? bf.losses : null,
    fp32MaxRelDiff,
    bf16MaxRelDiff,
    fp32GradRelErr,
    bf16GradRelErr,
  };
  if (dev.imgPerSec !== undefined) result.imgPerSec = dev.imgPerSec;
  if (bf?.imgPerSec !== undefined) result.imgPerSecBf16 = bf.imgPerSec;
  return result;
}

/** One run: a fresh model with the setup's weights on `device`, `steps` steps of forward, backward and AdamW. */
function runSteps(s: Setup, device: string, precision: Precision, steps: number, lr: number): Run {
  const model = new MaskedAutoencoder(s.config, { seed: 0 });
  let imgs: Tensor | null = null;
  let opt: AdamW | null = null;
  try {
    if (s.weights) model.loadStateDict(s.weights);
    model.to(device);
    opt = new AdamW(model.parameterGroups(0.05), { lr, betas: [0.9, 0.95] });
    imgs = Tensor.fromArray(s.images.data, s.images.shape, { device });
    const B = s.images.shape[0]!;
    const losses: number[] = [];
    const grads = new Map<string, Float32Array>();
    let timed = 0;
    let t0 = 0;
    for (let i = 0; i < steps; i++) {
      if (i === 1) t0 = performance.now();
      const x = imgs;
      const loss = tidy(() => {
        const out = model.forward(x, { maskRatio: s.maskRatio, noise: s.noises[i]!, precision });
        out.loss.backward();
        return out.loss;
      });
      if (i === 0) for (const [name, p] of model.namedParameters()) if (p.grad) grads.set(name, p.grad.dataSync());
      opt.step();
      opt.zeroGrad();
      // read after the optimizer step, as pretrain does: the step itself never waits for the device
      losses.push(loss.item());
      loss.dispose();
      if (i >= 1) timed += B;
    }
    native.synchronize(device);
    const seconds = (performance.now() - t0) / 1000;
    return { losses, grads, imgPerSec: timed > 0 && seconds > 0 ? timed / seconds : undefined };
  } finally {
    opt?.dispose();
    imgs?.dispose();
    model.dispose();
  }
}

function gradErr(a: Map<string, Float32Array>, ref: Map<string, Float32Array>): number {
  let worst = 0;
  for (const [name, r] of ref) {
    const x = a.get(name);
    if (!x) return Infinity;
    let num = 0;
    let den = 0;
    for (let i = 0; i < r.length; i++) {
      num += (x[i]! - r[i]!) ** 2;
      den += r[i]! ** 2;
    }
    const e = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
    worst = Math.max(worst, Number.isFinite(e) ? e : Infinity);
  }
  if (a.size !== ref.size) return Infinity;
  return worst;
}

/** The parity fixture when the package has it, else a small seeded model and batch. */
async function setup(steps: number): Promise<Setup> {
  const dir = join(packageRoot(), 'test', 'fixtures', 'mae-parity');
  const gen = new Generator(1234);
  if (existsSync(join(dir, 'parity.json')) && existsSync(join(dir, 'parity.safetensors')) && existsSync(join(dir, 'parity-io.safetensors'))) {
    const cfg = JSON.parse(readFileSync(join(dir, 'parity.json'), 'utf8'));
    const weights = (await readSafetensors(join(dir, 'parity.safetensors'))).tensors as Map<string, { shape: number[]; data: Float32Array }>;
    const io = (await readSafetensors(join(dir, 'parity-io.safetensors'))).tensors as Map<string, { shape: number[]; data: Float32Array }>;
    const images = io.get('images');
    const noise = io.get('noise');
    if (!images || !noise) throw new Error(`deviceStepCheck: ${dir}/parity-io.safetensors lacks images or noise`);
    const noises = [noise.data];
    for (let i = 1; i < steps; i++) noises.push(gen.uniformArray(noise.data.length));
    return {
      config: { ...configFromOfficial(cfg), eps: 1e-6 },
      model: 'parity fixture',
      weights,
      images: { shape: images.shape, data: images.data },
      maskRatio: cfg.mask_ratio,
      noises,
    };
  }
  const config: Partial<MaeConfig> = {
    imgSize: 32, patchSize: 4, inChans: 3, embedDim: 64, depth: 2, numHeads: 4,
    decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2, mlpRatio: 4, normPixLoss: true, eps: 1e-6,
  };
  const B = 4;
  const L = (32 / 4) ** 2;
  const noises: Float32Array[] = [];
  for (let i = 0; i < steps; i++) noises.push(gen.uniformArray(B * L));
  return {
    config,
    model: 'small seeded model',
    weights: null,
    images: { shape: [B, 3, 32, 32], data: gen.normalArray(B * 3 * 32 * 32) },
    maskRatio: 0.75,
    noises,
  };
}
