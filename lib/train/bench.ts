/**
 * `mae bench`: the paper's wall-clock comparison (Table 2) measured on this machine. For a preset and a list of
 * decoder depths it times full training steps (forward, loss read, backward, AdamW step, zero_grad; synthetic
 * images, mask ratio 0.75) of two encoders:
 *   'visible'      MAE: the encoder sees only the kept patches;
 *   'mask-tokens'  the paper's "encoder w/ [M]" (MaeConfig.maskTokenEncoder): every patch, the removed ones
 *                  replaced by encoder_mask_token.
 *
 * Per configuration: the median step time of `steps` timed steps after `warmup` untimed ones, img/s, the speed-up
 * over the baseline, the training-FLOP ratio (maeFlops, counted from the config), the model FLOP utilisation
 * (training FLOPs x img/s over the matrix-product peak measured in the same run: the best rate of a product of
 * square matrices at the start, at the end and after each round) and the paper's figure.
 *
 * Baseline, as in Table 2: the mask-token encoder with the deepest decoder given (8 by default), so the 1-block rows
 * compare with the paper's 3.7x (ViT-L) and 4.1x (ViT-H). speedup = baseline step time / the row's; flopRatio =
 * baseline training FLOPs / the row's.
 *
 * Timing: the models of every configuration live at once and their steps alternate (one step of each in turn, a
 * round), so that a shared or throttling machine slows every arm alike, and the speed-up is the median over rounds
 * of the ratio of the two steps in the same round; when their weights and optimizer state would not fit
 * in memory together, each configuration is timed on its own. The batch is the same for every configuration: the
 * given one, or the largest of `BATCHES` whose baseline step (the largest in memory and time) fits and takes at
 * most `STEP_BUDGET_S`. A batch that does not fit in memory (by the estimate from a small step, or an
 * out-of-memory error) is reported and the next smaller one tried.
 */
import { readFileSync } from 'node:fs';
import { cpus, freemem } from 'node:os';
import { setImmediate as yieldNow } from 'node:timers/promises';
import { describeValue, expectArrayOf, expectInteger, expectObject, expectOptions, expectString, type OptionType } from '../check.js';
import { checkThreads, cpuModel } from '../info.js';
import { MaskedAutoencoder, getPreset, maeFlops, presetNames, type MaeConfig, type Precision } from '../mae/index.js';
import { checkPrecision, cpuBf16Note } from '../mae/precision.js';
import { native, type NativeTensor } from '../native.js';
import { AdamW } from '../optim/index.js';
import { Generator } from '../random.js';
import { Tensor, tidy } from '../tensor.js';
import { barChart } from '../viz/chart.js';
import type { Image8 } from '../viz/png.js';
import { checkDevice } from './pretrain.js';

export type BenchEncoder = 'visible' | 'mask-tokens';

export interface BenchOptions {
  /** default mae_vit_large_patch16 on CUDA, mae_vit_base_patch16 on the CPU */
  preset?: string;
  /** decoder depths to time (default [8, 1]); the deepest one's mask-token encoder is the baseline */
  decoderDepths?: number[];
  /** images per step; default: the largest of BATCHES that fits and whose baseline step takes <= STEP_BUDGET_S */
  batchSize?: number;
  /** timed steps per configuration, whose median is reported (default 5 on the CPU, 20 on CUDA) */
  steps?: number;
  /** untimed steps per configuration first (default 1 on the CPU, 3 on CUDA) */
  warmup?: number;
  /** 'cpu', 'cuda' or 'cuda:N' (default 'cuda' when a usable GPU is there, else 'cpu') */
  device?: string;
  /** 'fp32' (default) or 'bf16' (CUDA only) */
  precision?: Precision;
  /** CPU threads (setNumThreads) */
  threads?: number;
  /** the most memory (bytes) the run may hold on the device (default: what is free there) */
  maxMemoryBytes?: number;
  onEvent?: (e: BenchEvent) => void;
}

/** progress: a transient status line; note: something the user should see (a batch that did not fit, ...). */
export type BenchEvent = { type: 'progress'; message: string } | { type: 'note'; message: string };

export interface BenchRow {
  model: string;
  decoderDepth: number;
  encoder: BenchEncoder;
  batch: number;
  /** median step time */
  stepMs: number;
  imgPerSec: number;
  /**
   * the baseline's step time / this row's: the median over the timed rounds of that ratio within each round when
   * the configurations alternate, else the ratio of the medians
   */
  speedup: number;
  /** baseline training FLOPs / this row's */
  flopRatio: number;
  /** training FLOPs x img/s / the matrix-product peak of this run */
  mfu: number;
  /** the paper's Table 2 speed-up for this configuration, or null where it has none */
  paper: number | null;
}

export interface BenchMachine {
  cpu: string;
  cores: number;
  threads: number;
  blas: string;
  /** the GPU's name on CUDA */
  gpu?: string;
  /** bf16 on the CPU: oneDNN's version and instruction set, and why AMX or native bf16 goes unused where it does */
  onednn?: string;
  node: string;
  date: string;
  /** 1-minute load average at the start and at the end (the machine may be shared) */
  loadavg: [number, number];
}

export interface BenchResult {
  machine: BenchMachine;
  device: string;
  precision: Precision;
  rows: BenchRow[];
  /**
   * the matrix-product peak (GFLOP/s) measured at the start and at the end of the run, and the best rate seen,
   * those and one product after each timed round included: MFU uses the best
   */
  peakGflops: { start: number; end: number; best: number };
  baseline: { encoder: 'mask-tokens'; decoderDepth: number };
  steps: number;
  warmup: number;
  /** 'alternating' (every configuration's steps in turn) or 'one after another' (not enough memory for all) */
  timing: 'alternating' | 'one after another';
  /** every step time (ms) of each row, in row order */
  stepTimesMs: number[][];
}

/** Batch sizes the default chooses from. */
export const BATCHES = { cpu: [1, 2, 4, 8, 16, 32, 64, 128, 256], cuda: [8, 16, 32, 64, 128, 256] };
/** The longest baseline step (seconds) the default batch may take. */
export const STEP_BUDGET_S = { cpu: 8, cuda: 1 };

/** Table 2 of the paper (128 TPU-v3 cores): speed-up over the mask-token encoder with an 8-block decoder. */
const PAPER: Record<string, Record<number, number>> = {
  mae_vit_large_patch16: { 8: 2.8, 1: 3.7 },
  mae_vit_huge_patch14: { 8: 3.5, 1: 4.1 },
};

const MASK_RATIO = 0.75;

interface Arm {
  encoder: BenchEncoder;
  decoderDepth: number;
  config: MaeConfig;
  model: MaskedAutoencoder;
  opt: AdamW;
  /** bytes allocated during the forward pass of its last step, per image (its activations) */
  forwardBytesPerImage: number;
}

/** The type of each option bench takes (the Record makes the compiler list every key of BenchOptions). */
const BENCH_OPTIONS = {
  preset: 'string', decoderDepths: 'number[]', batchSize: 'number', steps: 'number', warmup: 'number', device: 'string', precision: 'string',
  threads: 'number', maxMemoryBytes: 'number', onEvent: 'function',
} as const satisfies Record<keyof BenchOptions, OptionType>;

export async function bench(options: BenchOptions = {}): Promise<BenchResult> {
  expectOptions('bench', options, BENCH_OPTIONS);
  const cuda = native.info().cuda;
  const device = options.device ?? (cuda.available && cuda.devices?.[0]?.usable ? 'cuda' : 'cpu');
  const precision = options.precision ?? 'fp32';
  checkDevice(device, precision, 'bench');
  const kind = device === 'cpu' ? 'cpu' : 'cuda';
  const preset = options.preset ?? (kind === 'cuda' ? 'mae_vit_large_patch16' : 'mae_vit_base_patch16');
  if (!presetNames().includes(preset as never)) throw new Error(`bench: unknown preset '${preset}'; available: ${presetNames().join(', ')}`);
  const depths = options.decoderDepths ?? [8, 1];
  checkDepths(depths);
  const steps = options.steps ?? (kind === 'cuda' ? 20 : 5);
  const warmup = options.warmup ?? (kind === 'cuda' ? 3 : 1);
  // safe integers: 1e300 is an integer to Number.isInteger (a batch of 1e300 was halved a thousand times, a note each)
  if (!(Number.isSafeInteger(steps) && steps >= 1)) throw new Error(`bench: steps must be a positive integer, got ${steps}`);
  if (!(Number.isSafeInteger(warmup) && warmup >= 0)) throw new Error(`bench: warmup must be a non-negative integer, got ${warmup}`);
  if (options.batchSize !== undefined && !(Number.isSafeInteger(options.batchSize) && options.batchSize >= 1))
    throw new Error(`bench: batchSize must be a positive integer, got ${options.batchSize}`);
  checkThreads('bench', options.threads);
  if (options.threads !== undefined) native.setNumThreads(options.threads);
  const limit = options.maxMemoryBytes ?? Infinity;
  if (!(limit > 0)) throw new Error(`bench: maxMemoryBytes must be positive, got ${limit}`);
  const available = () => availableBytes(device, limit);
  const emit = options.onEvent ?? (() => {});
  const progress = (message: string) => emit({ type: 'progress', message });
  const note = (message: string) => emit({ type: 'note', message });
  const load0 = loadavg();

  if (kind === 'cpu' && load0 > cpus().length)
    note(`the load average (${load0.toFixed(1)}) is above the ${cpus().length} cores: other processes compete for them, so step times are noisy (the configurations alternate, which keeps their ratios comparable) and --threads 1 may be faster`);

  const base = getPreset(preset);
  const deepest = Math.max(...depths);
  const configs = depths.flatMap((d) => (['mask-tokens', 'visible'] as const).map((encoder) => ({ encoder, decoderDepth: d })));
  const baselineIndex = configs.findIndex((c) => c.encoder === 'mask-tokens' && c.decoderDepth === deepest);
  const images = new ImageCache(base, device);
  const arms: (Arm | null)[] = configs.map(() => null);
  const build = (i: number): Arm => {
    const c = configs[i]!;
    const config: MaeConfig = { ...base, decoderDepth: c.decoderDepth, maskTokenEncoder: c.encoder === 'mask-tokens' };
    const model = new MaskedAutoencoder(config, { seed: 0 }).to(device);
    const opt = new AdamW(model.parameterGroups(0.05), { lr: 1.5e-4, betas: [0.9, 0.95] });
    return (arms[i] = { ...c, config, model, opt, forwardBytesPerImage: 0 });
  };
  let peakMeter: MatmulRate | null = null;
  try {
    progress('measuring the matrix-product peak');
    const meter = (peakMeter = new MatmulRate(device, precision));
    const peakStart = meter.measure();
    const peakSamples: number[] = [];
    progress(`building ${preset} (mask-token encoder, ${deepest}-block decoder)`);
    const baseline = build(baselineIndex);
    let batch = chooseBatch(baseline, options.batchSize, kind, images, precision, device, available, progress, note);

    // all models at once when their state (weights, gradients, two AdamW moments: 16 bytes per parameter; in bf16
    // also the weights' bf16 copies, 2 bytes, and on the CPU their two blocked copies for the products, 4 more) and
    // the baseline's activations fit; else one configuration at a time
    const stateBytes = (precision === 'bf16' ? (kind === 'cpu' ? 22 : 18) : 16) * baseline.model.numParameters();
    const together = (configs.length - 1) * stateBytes + stepBytes(baseline, batch) < 0.8 * available();
    if (!together) note(`the ${configs.length} models do not fit in memory together (${gib(stateBytes)} GiB of weights and optimizer state each): timing them one after another`);
    const groups = together ? [configs.map((_, i) => i)] : configs.map((_, i) => [i]);
    let times: number[][];
    for (;;) {
      times = configs.map(() => []);
      try {
        for (const group of groups) {
          const members = group.map((i) => arms[i] ?? build(i));
          const t = await timeGroup(members, batch, warmup, steps, images, precision, device, progress, () => peakSamples.push(meter.sample()));
          group.forEach((i, k) => (times[i] = t[k]!));
          if (!together) for (const i of group) release(arms, i);
        }
        break;
      } catch (e) {
        if (!isOutOfMemory(e) || batch === 1) throw e;
        if (!together) for (let i = 0; i < arms.length; i++) release(arms, i);
        recover(arms, device);
        const next = Math.floor(batch / 2);
        note(`batch ${batch} does not fit in memory while timing (${(e as Error).message}): trying ${next}`);
        batch = next;
      }
    }

    progress('measuring the matrix-product peak again');
    const peakEnd = meter.measure();
    const peak = Math.max(peakStart, peakEnd, ...peakSamples);
    const flops = configs.map((c) => maeFlops({ ...base, decoderDepth: c.decoderDepth, maskTokenEncoder: c.encoder === 'mask-tokens' }, MASK_RATIO).training);
    const medians = times.map(median);
    // alternating, the speed-up is the median over rounds of the baseline's step / the row's step in that round:
    // the load of a shared machine drifts between rounds, and a round's steps share it
    const speedups = times.map((t, i) => (together ? median(t.map((ms, r) => times[baselineIndex]![r]! / ms)) : medians[baselineIndex]! / medians[i]!));
    const rows: BenchRow[] = configs.map((c, i) => {
      const stepMs = medians[i]!;
      const imgPerSec = (1000 * batch) / stepMs;
      return {
        model: preset,
        decoderDepth: c.decoderDepth,
        encoder: c.encoder,
        batch,
        stepMs,
        imgPerSec,
        speedup: speedups[i]!,
        flopRatio: flops[baselineIndex]! / flops[i]!,
        mfu: (flops[i]! * imgPerSec) / (peak * 1e9),
        paper: paperSpeedup(preset, deepest, c.encoder, c.decoderDepth),
      };
    });
    return {
      machine: machineOf(device, precision, load0),
      device,
      precision,
      rows,
      peakGflops: { start: peakStart, end: peakEnd, best: peak },
      baseline: { encoder: 'mask-tokens', decoderDepth: deepest },
      steps,
      warmup,
      timing: together ? 'alternating' : 'one after another',
      stepTimesMs: times,
    };
  } finally {
    for (let i = 0; i < arms.length; i++) release(arms, i);
    images.dispose();
    peakMeter?.dispose();
  }
}

const ENCODER_LABEL: Record<BenchEncoder, string> = { 'mask-tokens': 'w/ [M]', visible: 'MAE' };

/** The result as a text table, with the baseline, the peak and the speed-up / FLOP-ratio check below it. */
export function formatBench(r: BenchResult): string {
  expectObject('formatBench', 'result', r, false, 'what bench() resolved to');
  const header = ['model', 'decoder depth', 'encoder', 'batch', 'step ms', 'img/s', 'speed-up', 'FLOP ratio', 'MFU', 'paper'];
  const cells = r.rows.map((x) => [
    x.model, String(x.decoderDepth), `${x.encoder} (${ENCODER_LABEL[x.encoder]})`, String(x.batch), x.stepMs.toFixed(1), x.imgPerSec.toFixed(2),
    `${x.speedup.toFixed(2)}x`, `${x.flopRatio.toFixed(2)}x`, `${(100 * x.mfu).toFixed(1)}%`, x.paper === null ? '-' : `${x.paper.toFixed(1)}x`,
  ]);
  const width = header.map((h, j) => Math.max(h.length, ...cells.map((c) => c[j]!.length)));
  const line = (c: string[]) => c.map((v, j) => (j < 3 ? v.padEnd(width[j]!) : v.padStart(width[j]!))).join('  ').trimEnd();
  const peak = r.peakGflops.best;
  const m = r.machine;
  return [
    line(header),
    width.map((w) => '-'.repeat(w)).join('  '),
    ...cells.map(line),
    '',
    `speed-up and FLOP ratio: against the mask-token encoder with the ${r.baseline.decoderDepth}-block decoder (the paper's Table 2 baseline when 8); ` +
      `paper: Table 2 (ViT-L / ViT-H, 128 TPU-v3 cores)`,
    `speed-up / FLOP ratio: ${r.rows.filter((x) => x.flopRatio !== 1).map((x) => `${ENCODER_LABEL[x.encoder]} d${x.decoderDepth} ${(x.speedup / x.flopRatio).toFixed(2)}`).join(', ') || '-'}`,
    `MFU: training FLOPs (maeFlops) x img/s over the matrix-product peak of this run, ${peak.toFixed(1)} GFLOP/s ${r.precision}, the best rate seen (start ${r.peakGflops.start.toFixed(1)}, end ${r.peakGflops.end.toFixed(1)}, and one product after each round)`,
    `${r.device}${m.gpu ? ` ${m.gpu}` : ''}, ${m.cpu}, ${m.cores} cores, ${m.threads} threads, ${m.blas}${m.onednn ? `, oneDNN ${m.onednn}` : ''}; ` +
      `step ms: median of ${r.steps} steps after ${r.warmup} warm-up; ${r.timing === 'alternating' ? `configurations alternating, speed-up: median over the ${r.steps} rounds of the ratio within a round` : 'configurations one after another'}; load ${m.loadavg[0]} -> ${m.loadavg[1]}`,
  ].join('\n');
}

const WHOLE = new Intl.NumberFormat('en-US', { useGrouping: false, maximumFractionDigits: 0 });
const SIGNIFICANT3 = new Intl.NumberFormat('en-US', { useGrouping: false, minimumSignificantDigits: 3, maximumSignificantDigits: 3 });

/**
 * An img/s value as the chart writes it: a plain number, never in exponent form ('1.46e+3'), so only digits and '.':
 * whole from 100 (347, 1462, 12346), 3 significant digits below (12.3, 0.500).
 */
export function imgPerSecLabel(v: number): string {
  return v >= 100 ? WHOLE.format(v) : SIGNIFICANT3.format(v);
}

/** The result as a bar chart: img/s per configuration, and the speed-up beside the paper's. */
export function benchChart(r: BenchResult): Image8 {
  expectObject('benchChart', 'result', r, false, 'what bench() resolved to');
  const groups = r.rows.map((x) => `${ENCODER_LABEL[x.encoder]} d${x.decoderDepth}`);
  const threads = r.device === 'cpu' ? `, ${r.machine.threads} thread${r.machine.threads === 1 ? '' : 's'}` : '';
  return barChart(`${r.rows[0]!.model}, ${r.device}${threads}, ${r.precision}, batch ${r.rows[0]!.batch}`, [
    { title: 'img/s', series: [{ name: 'ours', color: OURS }], groups: r.rows.map((x, i) => ({ label: groups[i]!, values: [x.imgPerSec] })), format: imgPerSecLabel },
    {
      title: `speed-up over w/ [M] d${r.baseline.decoderDepth}`,
      series: [{ name: 'ours', color: OURS }, { name: 'paper (Table 2)', color: PAPER_COLOR }],
      groups: r.rows.map((x, i) => ({ label: groups[i]!, values: [x.speedup, x.paper] })),
      format: (v) => `${v.toFixed(1)}x`,
    },
  ]);
}
const OURS = [31, 119, 180] as const;
const PAPER_COLOR = [255, 127, 14] as const;

function checkDepths(depths: readonly number[]): void {
  expectArrayOf('bench', 'decoderDepths', depths, (d) => Number.isSafeInteger(d) && (d as number) >= 1, 'a positive integer (a decoder depth, in blocks)');
  if (depths.length === 0) throw new Error('bench: decoderDepths must hold at least one decoder depth');
  const dup = depths.find((d, i) => depths.indexOf(d) !== i);
  if (dup !== undefined) throw new Error(`bench: decoderDepths gives decoder depth ${dup} twice`);
}

/** The paper's Table 2 speed-up for a row, when the run has Table 2's baseline (mask-token encoder, 8 blocks). */
export function paperSpeedup(preset: string, baselineDepth: number, encoder: BenchEncoder, depth: number): number | null {
  expectString('paperSpeedup', 'preset', preset, 'a preset name');
  expectInteger('paperSpeedup', 'baselineDepth', baselineDepth, 1);
  if (encoder !== 'visible' && encoder !== 'mask-tokens') throw new Error(`paperSpeedup: encoder must be 'visible' or 'mask-tokens', got ${describeValue(encoder)}`);
  expectInteger('paperSpeedup', 'depth', depth, 1);
  const t = PAPER[preset];
  if (!t || baselineDepth !== 8) return null;
  if (encoder === 'mask-tokens') return depth === 8 ? 1 : null;
  return t[depth] ?? null;
}

/** One training step of `arm` on `imgs`; milliseconds, with the device's queue drained. */
function step(arm: Arm, imgs: Tensor, precision: Precision, device: string): number {
  const before = native.memoryStats(device).allocatedBytes;
  const t0 = performance.now();
  tidy(() => {
    const out = arm.model.forward(imgs, { maskRatio: MASK_RATIO, precision });
    out.loss.item();
    arm.forwardBytesPerImage = (native.memoryStats(device).allocatedBytes - before) / imgs.shape[0]!;
    out.loss.backward();
  });
  arm.opt.step();
  arm.opt.zeroGrad();
  native.synchronize(device);
  return performance.now() - t0;
}

/**
 * `warmup` untimed, then `steps` timed steps of every arm, one step of each in turn (`afterRound` after each timed
 * round): each arm's step times (ms).
 */
async function timeGroup(
  group: Arm[], batch: number, warmup: number, steps: number, images: ImageCache, precision: Precision, device: string,
  progress: (m: string) => void, afterRound: () => void,
): Promise<number[][]> {
  const imgs = images.get(batch);
  const times = group.map((): number[] => []);
  const what = group.length > 1 ? `all ${group.length} configurations in turn` : `${group[0]!.encoder} encoder, ${group[0]!.decoderDepth}-block decoder`;
  for (let r = 0; r < warmup + steps; r++) {
    progress(r < warmup ? `warm-up step ${r + 1}/${warmup}, ${what}, batch ${batch}` : `timed step ${r - warmup + 1}/${steps}, ${what}, batch ${batch}`);
    group.forEach((arm, k) => {
      const ms = step(arm, imgs, precision, device);
      if (r >= warmup) times[k]!.push(ms);
    });
    if (r >= warmup) afterRound();
    await yieldNow();
  }
  return times;
}

/**
 * The batch for every configuration, found with the baseline: the given one or, by default, the largest of
 * BATCHES whose step fits in memory and takes at most STEP_BUDGET_S, trying them upwards from the smallest. A batch
 * whose estimated memory exceeds what is free, or whose step runs out of memory, is reported and a smaller one used.
 */
function chooseBatch(
  baseline: Arm, requested: number | undefined, kind: 'cpu' | 'cuda', images: ImageCache, precision: Precision, device: string,
  available: () => number, progress: (m: string) => void, note: (m: string) => void,
): number {
  const candidates = BATCHES[kind];
  const budget = STEP_BUDGET_S[kind];
  const first = requested === undefined ? candidates[0]! : Math.min(requested, candidates[0]!);
  // a first step at a small batch: warm-up, and the memory estimate for larger ones
  progress(`a first step at batch ${first} (memory estimate)`);
  const tryStep = (b: number): number | null => {
    try {
      return step(baseline, images.get(b), precision, device) / 1000;
    } catch (e) {
      if (!isOutOfMemory(e)) throw e;
      recover([baseline], device);
      images.drop(b);
      note(`batch ${b} does not fit in memory (${(e as Error).message})`);
      return null;
    }
  };
  if (tryStep(first) === null) throw new Error(`bench: ${baseline.config.maskTokenEncoder ? 'the mask-token encoder' : 'the model'} does not fit in memory even at batch ${first}`);
  const fits = (b: number): boolean => {
    const need = stepBytes(baseline, b);
    const free = available();
    if (need < 0.8 * free) return true;
    note(`batch ${b} would need about ${gib(need)} GiB for activations and gradients, ${gib(free)} GiB are free`);
    return false;
  };

  if (requested !== undefined) {
    let b = requested;
    for (;;) {
      if (b === first) return b;
      if (fits(b)) {
        progress(`a step at batch ${b}`);
        if (tryStep(b) !== null) return b;
      }
      const next = Math.max(first, Math.floor(b / 2));
      note(`trying batch ${next}`);
      images.drop(b);
      b = next;
    }
  }

  let chosen = first;
  let seconds = tryStep(first);
  if (seconds === null) return first;
  let why = `the largest of ${candidates.join(', ')}`;
  for (const b of candidates) {
    if (b <= chosen) continue;
    if ((seconds * b) / chosen > budget) {
      why = `batch ${b} would take about ${((seconds * b) / chosen).toFixed(1)} s`;
      break;
    }
    if (!fits(b)) {
      why = `batch ${b} would not fit in memory`;
      break;
    }
    progress(`choosing the batch: batch ${chosen} took ${(seconds * 1000).toFixed(0)} ms; trying ${b}`);
    const s = tryStep(b);
    images.drop(chosen);
    if (s === null || s > budget) {
      why = s === null ? `batch ${b} did not fit in memory` : `batch ${b} took ${s.toFixed(1)} s`;
      break;
    }
    chosen = b;
    seconds = s;
  }
  note(`batch ${chosen}: the baseline's step took ${seconds.toFixed(1)} s there; ${why} (a step may take ${budget} s; --batch-size sets the batch)`);
  return chosen;
}

/**
 * Estimated memory of one step of `arm` at batch b beyond what it holds already: its activations (measured on its
 * last step: the bytes allocated during the forward pass, per image), a quarter more for the backward's
 * temporaries, and its gradients (4 bytes per parameter).
 */
function stepBytes(arm: Arm, b: number): number {
  return 1.25 * arm.forwardBytesPerImage * b + 4 * arm.model.numParameters();
}

/**
 * Memory this process may still take on `device`: the system's available memory (CPU) or the GPU's not allocated
 * by us, plus our allocator's cache; at most `limit` minus what we hold.
 */
function availableBytes(device: string, limit: number): number {
  const s = native.memoryStats(device);
  let free: number;
  if (device === 'cpu') free = freemem() + s.cachedBytes;
  else {
    const index = device === 'cuda' ? 0 : Number(device.slice(5));
    free = (native.info().cuda.devices?.[index]?.totalMemory ?? 0) - s.allocatedBytes;
  }
  return Math.min(free, limit - s.allocatedBytes);
}

function isOutOfMemory(e: unknown): boolean {
  return e instanceof Error && /out of memory/i.test(e.message);
}

/** After an out-of-memory error: drops the gradients and gives the allocator's cache back. */
function recover(arms: (Arm | null)[], device: string): void {
  for (const a of arms) a?.model.zeroGrad();
  native.emptyCache(device);
}

/** Frees arms[i] (its model and optimizer), if built. */
function release(arms: (Arm | null)[], i: number): void {
  const a = arms[i];
  if (!a) return;
  a.opt.dispose();
  a.model.dispose();
  arms[i] = null;
}

/** Seeded synthetic images per batch size, on the device, made once. */
class ImageCache {
  private readonly byBatch = new Map<number, Tensor>();
  constructor(
    private readonly c: MaeConfig,
    private readonly device: string,
  ) {}
  get(b: number): Tensor {
    let t = this.byBatch.get(b);
    if (!t) {
      const c = this.c;
      const data = new Generator(b).normalArray(b * c.inChans * c.imgSize * c.imgSize);
      t = Tensor.fromArray(data, [b, c.inChans, c.imgSize, c.imgSize], { device: this.device }).keep();
      this.byBatch.set(b, t);
    }
    return t;
  }
  drop(b: number): void {
    this.byBatch.get(b)?.dispose();
    this.byBatch.delete(b);
  }
  dispose(): void {
    for (const b of [...this.byBatch.keys()]) this.drop(b);
  }
}

/**
 * The matrix-product rate of `device` in GFLOP/s: x w^T on square matrices (2048 on the CPU, 8192 on CUDA) in the
 * run's precision. `measure()`: the median over 5 repetitions of at least 0.2 s each, after a warm-up; `sample()`:
 * one product, for taking the rate again between the rounds of a benchmark.
 */
export class MatmulRate {
  private readonly size: number;
  private readonly a: NativeTensor;
  /** bf16 on the CPU: the weight stays fp32 and the product reads its bfloat16 copy, as the model's layers do. */
  private readonly w: NativeTensor;
  private readonly wBf16: NativeTensor | null;
  constructor(
    private readonly device: string,
    precision: Precision,
  ) {
    expectString('MatmulRate', 'device', device, "'cpu', 'cuda' or 'cuda:N'");
    checkPrecision(precision, 'MatmulRate');
    this.size = device === 'cpu' ? 2048 : 8192;
    const host = native.fromArray(new Generator(1).uniformArray(this.size ** 2, -1, 1), [this.size, this.size]);
    if (device === 'cpu') {
      this.w = host;
      this.wBf16 = precision === 'bf16' ? native.to(host, 'cpu', 'bfloat16') : null;
      this.a = this.wBf16 ?? host;
    } else {
      this.a = this.w = native.to(host, device, precision === 'bf16' ? 'bfloat16' : 'float32');
      this.wBf16 = null;
      host.dispose();
    }
  }

  /** GFLOP/s of `calls` products in a row. */
  private rate(calls: number): number {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) native.linear(this.a, this.w, null, this.wBf16).dispose();
    native.synchronize(this.device);
    return (2 * this.size ** 3 * calls) / ((performance.now() - t0) / 1000) / 1e9;
  }

  measure(): number {
    this.rate(2);
    const calls = Math.max(1, Math.ceil((0.2 * this.rate(1) * 1e9) / (2 * this.size ** 3)));
    return median(Array.from({ length: 5 }, () => this.rate(calls)));
  }

  sample(): number {
    return this.rate(1);
  }

  dispose(): void {
    this.w.dispose();
    this.wBf16?.dispose();
  }
}

/** The matrix-product peak of `device` in GFLOP/s (MatmulRate.measure). */
export function matmulPeak(device: string, precision: Precision): number {
  expectString('matmulPeak', 'device', device, "'cpu', 'cuda' or 'cuda:N'");
  checkPrecision(precision, 'matmulPeak');
  const m = new MatmulRate(device, precision);
  try {
    return m.measure();
  } finally {
    m.dispose();
  }
}

function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2]! : 0.5 * (s[n / 2 - 1]! + s[n / 2]!);
}

function gib(bytes: number): string {
  return (bytes / 2 ** 30).toFixed(1);
}

function loadavg(): number {
  try {
    return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  } catch {
    return NaN;
  }
}

function machineOf(device: string, precision: Precision, load0: number): BenchMachine {
  const n = native.info();
  const machine: BenchMachine = {
    cpu: cpuModel(), cores: cpus().length, threads: n.threads, blas: n.blas, node: process.version, date: new Date().toISOString(), loadavg: [load0, loadavg()],
  };
  if (device === 'cpu' && precision === 'bf16') {
    const d = n.dnnl;
    const note = cpuBf16Note(d)?.note;
    machine.onednn = d.available ? `${d.version} isa ${d.isa}${note ? ` (${note})` : ''}` : `unavailable (${note})`;
  }
  if (device !== 'cpu') {
    const index = device === 'cuda' ? 0 : Number(device.slice(5));
    const d = n.cuda.devices?.[index];
    if (d) machine.gpu = `${d.name} (sm ${d.computeCapability}, ${gib(d.totalMemory)} GiB)`;
  }
  return machine;
}
