// No host synchronisation inside a training step. Three checks:
//  * a scan of native/cuda: the host waits for the device only inside the counted helpers of runtime.cu
//    (wait_stream, wait_event; release_cache counts its cudaFree), and copies to the host only where they wait;
//  * pretrain on the CPU: from the start of a step's forward pass to the end of its optimizer step, no tensor is read
//    to the host (hostReadCount), and between steps exactly one value is, the loss (read after the optimizer step;
//    on a GPU every read is a wait, so this is the same code path's promise there);
//  * where CUDA is available, the same run on the GPU in bf16: no wait of the host inside a step and exactly one per
//    step (native.syncCount), uploads of images and masking indices included.
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MaskedAutoencoder } from '../../lib/mae/model.js';
import { native, packageRoot } from '../../lib/native.js';
import { AdamW } from '../../lib/optim/adamw.js';
import { hostReadCount } from '../../lib/tensor.js';
import { pretrain, type PretrainOptions } from '../../lib/train/pretrain.js';

const cudaDir = join(packageRoot(), 'native', 'cuda');

/** The top-level function (or method) each line of a source file belongs to, by its definition line. */
function enclosingFunctions(src: string): string[] {
  const lines = src.split('\n');
  const owner: string[] = [];
  let current = '';
  for (const line of lines) {
    // a definition starts at column 0 (or inside a namespace, 0 indentation is our style) and ends with '{'
    const m = /^(?:[\w:<>,*&\s]+?\s)?[*&]?(\w+)\([^;]*\)\s*(?:const\s*)?\{\s*$/.exec(line);
    if (m && !/^\s/.test(line)) current = m[1]!;
    owner.push(current);
  }
  return owner;
}

describe('host waits in native/cuda', () => {
  const files = readdirSync(cudaDir).filter((f) => /\.(cu|cpp|cuh|h)$/.test(f));
  const sources = new Map(files.map((f) => [f, readFileSync(join(cudaDir, f), 'utf8')]));

  it('happen only in the counted helpers of runtime.cu', () => {
    const waits = /\b(cudaStreamSynchronize|cudaEventSynchronize|cudaDeviceSynchronize|cudaStreamQuery|cudaMemcpy\s*\(|cudaMemcpy2D\s*\(|cudaFree\s*\(|cudaFreeHost\s*\()/;
    const allowed: Record<string, string[]> = {
      cudaStreamSynchronize: ['wait_stream_of'],
      cudaEventSynchronize: ['wait_event'],
      'cudaFree(': ['release_cache'],
    };
    const found: string[] = [];
    for (const [f, src] of sources) {
      const owner = enclosingFunctions(src);
      src.split('\n').forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, '');
        const m = waits.exec(code);
        if (!m) return;
        const call = m[1]!.replace(/\s+/g, '');
        const ok = f === 'runtime.cu' && (allowed[call] ?? []).includes(owner[i]!);
        if (!ok) found.push(`${f}:${i + 1} (${owner[i] || 'top level'}): ${line.trim()}`);
      });
    }
    expect(found).toEqual([]);
    const runtime = sources.get('runtime.cu')!;
    // the helpers count what they do
    for (const fn of ['wait_stream_of', 'wait_event', 'release_cache']) {
      const body = runtime.slice(runtime.search(new RegExp(`^\\w[^\\n]*\\b${fn}\\(`, 'm')));
      expect(body.slice(0, body.indexOf('\n}')), fn).toMatch(/g_syncs\[[^\]]+\]\+\+/);
    }
  });

  it('copy to the host only where the copy is waited for, or into pinned memory for read_end', () => {
    const found: string[] = [];
    for (const [f, src] of sources) {
      const owner = enclosingFunctions(src);
      src.split('\n').forEach((line, i) => {
        if (!/cudaMemcpyDeviceToHost/.test(line.replace(/\/\/.*$/, ''))) return;
        const fn = owner[i]!;
        const ok = f === 'runtime.cu' && ['download', 'check_fault_now', 'read_begin'].includes(fn);
        if (!ok) found.push(`${f}:${i + 1} (${fn || 'top level'}): ${line.trim()}`);
      });
    }
    expect(found).toEqual([]);
    const runtime = sources.get('runtime.cu')!;
    for (const fn of ['download', 'check_fault_now']) {
      const at = runtime.search(new RegExp(`^void ${fn}\\(`, 'm'));
      expect(at, fn).toBeGreaterThan(0);
      const body = runtime.slice(at, runtime.indexOf('\n}', at));
      expect(body, fn).toMatch(/wait_stream\(/);
    }
  });

  it('no op reads a device fault back by itself unless MAE_CUDA_CHECK_INDICES=1 asks for it', () => {
    const runtime = sources.get('runtime.cu')!;
    const at = runtime.search(/^void check_fault_now\(/m);
    const body = runtime.slice(at, runtime.indexOf('\n}', at));
    expect(body.indexOf('if (!check_indices_now()) return;')).toBeGreaterThan(0);
    expect(body.indexOf('if (!check_indices_now()) return;')).toBeLessThan(body.indexOf('wait_stream('));
    expect(sources.get('common.cuh')!).toMatch(/check_indices_now\(\) \{ return env_on\("MAE_CUDA_CHECK_INDICES"\); \}/);
  });
});

const small: PretrainOptions = {
  preset: 'mae_vit_tiny_patch4_28',
  config: { embedDim: 32, depth: 2, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 },
  data: { kind: 'synthetic', count: 96 },
  batchSize: 16,
  epochs: 1,
  blr: 1e-3,
  warmupEpochs: 0,
  workers: 0,
  visualizeEvery: 0,
};

interface Windows {
  /** per optimizer step: what the counter rose by from its first forward's start to the end of its optimizer step */
  inside: number[];
  /** from the end of one optimizer step to the start of the next step's first forward */
  between: number[];
}

/** Runs pretrain with probes on MaskedAutoencoder.forward and AdamW.step that read `counter` at their edges. */
async function countWindows(opts: PretrainOptions, counter: () => number): Promise<Windows> {
  const forward = MaskedAutoencoder.prototype.forward;
  const step = AdamW.prototype.step;
  const marks: { at: 'forward' | 'stepEnd'; n: number }[] = [];
  MaskedAutoencoder.prototype.forward = function (this: MaskedAutoencoder, ...a: Parameters<typeof forward>) {
    marks.push({ at: 'forward', n: counter() });
    return forward.apply(this, a);
  };
  AdamW.prototype.step = function (this: AdamW) {
    step.apply(this);
    marks.push({ at: 'stepEnd', n: counter() });
  };
  try {
    await pretrain({ ...opts, outDir: mkdtempSync(join(tmpdir(), 'mae-syncs-')) });
  } finally {
    MaskedAutoencoder.prototype.forward = forward;
    AdamW.prototype.step = step;
  }
  // steps as [first forward, end of optimizer step]; a forward after the last step (the final reconstruction
  // images) belongs to no step
  const steps: [number, number][] = [];
  let start: number | null = null;
  for (const m of marks) {
    if (m.at === 'forward') start ??= m.n;
    else {
      steps.push([start!, m.n]);
      start = null;
    }
  }
  const w: Windows = { inside: steps.map(([a, b]) => b - a), between: [] };
  for (let i = 1; i < steps.length; i++) w.between.push(steps[i]![0] - steps[i - 1]![1]);
  return w;
}

describe('a training step reads nothing from the device before its optimizer step', () => {
  for (const accumIter of [1, 2])
    it(`pretrain on the CPU, accumIter ${accumIter}: no read inside a step, one read (the loss) after it`, async () => {
      const w = await countWindows({ ...small, accumIter }, hostReadCount);
      expect(w.inside.length).toBe(6 / accumIter);
      expect(w.inside).toEqual(w.inside.map(() => 0));
      expect(w.between).toEqual(w.between.map(() => 1));
    });
});

const cuda = native.info().cuda.available;

describe.skipIf(!cuda)('a training step on the GPU never waits for it', () => {
  for (const precision of ['fp32', 'bf16'] as const)
    it(`pretrain on cuda, ${precision}: no host wait inside a step, exactly one per step`, async () => {
      const w = await countWindows({ ...small, device: 'cuda', precision }, () => native.syncCount('cuda'));
      expect(w.inside.length).toBe(6);
      expect(w.inside).toEqual(w.inside.map(() => 0));
      expect(w.between).toEqual(w.between.map(() => 1));
    });
});
