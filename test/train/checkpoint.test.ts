// Checkpoints (lib/train/checkpoint.ts): the optimizer's per-parameter step counts round-trip (and older checkpoints
// without them resume as before), and saveCheckpoint refuses metadata that loading would refuse, writing nothing.
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MaskedAutoencoder } from '../../lib/mae/index.js';
import { AdamW } from '../../lib/optim/adamw.js';
import { Generator } from '../../lib/random.js';
import { cutLog, loadCheckpoint, loadModel, saveCheckpoint } from '../../lib/train/checkpoint.js';
import { Tensor } from '../../lib/tensor.js';
import { saveClassifier } from '../../lib/classify/checkpoint.js';
import { VisionTransformerClassifier, classifierConfigFrom } from '../../lib/classify/model.js';
import { readSafetensors } from '../../lib/io/safetensors.js';

const config = { imgSize: 8, patchSize: 4, inChans: 1, embedDim: 8, depth: 1, numHeads: 2, decoderEmbedDim: 8, decoderDepth: 1, decoderNumHeads: 2, mlpRatio: 2 };
const position = { epoch: 1, iter: 0, step: 3 };
const tmp = () => mkdtempSync(join(tmpdir(), 'mae-checkpoint-'));
afterEach(() => {
  vi.restoreAllMocks();
});

/** Random gradients for the parameters that `take` picks (the others get none). */
function grads(model: MaskedAutoencoder, g: Generator, take: (i: number) => boolean = () => true): void {
  model.parameters().forEach((p, i) => {
    p.grad?.dispose();
    p.grad = take(i) ? Tensor.fromArray(g.normalArray(p.size), p.shape).keep() : null;
  });
}

/** Steps `model` and a model restored from its checkpoint with the same gradients: both must stay bit-identical. */
async function expectSameContinuation(model: MaskedAutoencoder, opt: AdamW, path: string): Promise<void> {
  const ck = await loadCheckpoint(path);
  const { model: restored } = await loadModel(path);
  const opt2 = new AdamW(restored.parameterGroups(0.05), { lr: 1, betas: [0.9, 0.95] });
  opt2.loadStateDict({ ...ck.meta.optimizer!, tensors: ck.optimizer });
  expect(opt2.stateDict().steps).toEqual(opt.stateDict().steps);
  for (let t = 0; t < 2; t++)
    for (const [m, o] of [[model, opt], [restored, opt2]] as const) {
      grads(m, new Generator(100 + t));
      o.step();
      o.zeroGrad();
    }
  const after = restored.stateDict();
  for (const [name, p] of model.stateDict()) expect(Array.from(after.get(name)!.dataSync()), name).toEqual(Array.from(p.dataSync()));
  opt2.dispose();
  restored.dispose();
}

describe('checkpoint', () => {
  it("keeps each parameter's AdamW step count: a resumed optimizer continues bit for bit", async () => {
    const g = new Generator(1);
    const model = new MaskedAutoencoder(config, { seed: 1 });
    const opt = new AdamW(model.parameterGroups(0.05), { lr: 0.01, betas: [0.9, 0.95] });
    // the first step updates every other parameter only: two step counts
    grads(model, g, (i) => i % 2 === 0);
    opt.step();
    for (let t = 0; t < 2; t++) {
      grads(model, g);
      opt.step();
    }
    opt.zeroGrad();
    const counts = new Set(Object.values(opt.stateDict().steps));
    expect(counts).toEqual(new Set([3, 2]));
    const path = join(tmp(), 'checkpoint.safetensors');
    await saveCheckpoint(path, model, opt, { position, options: {} });
    const ck = await loadCheckpoint(path);
    expect(ck.meta.optimizer).toEqual({ step: 3, lr: 0.01, steps: opt.stateDict().steps });
    await expectSameContinuation(model, opt, path);
    opt.dispose();
    model.dispose();
  });

  it('resumes a checkpoint written without per-parameter step counts (older ones) as before: every parameter at the optimizer step', async () => {
    const g = new Generator(2);
    const model = new MaskedAutoencoder(config, { seed: 2 });
    const opt = new AdamW(model.parameterGroups(0.05), { lr: 0.01, betas: [0.9, 0.95] });
    for (let t = 0; t < 3; t++) {
      grads(model, g);
      opt.step();
    }
    opt.zeroGrad();
    // the stateDict of before: no steps (JSON drops undefined)
    const older = { stateDict: () => ({ ...opt.stateDict(), steps: undefined }) } as unknown as AdamW;
    const path = join(tmp(), 'checkpoint.safetensors');
    await saveCheckpoint(path, model, older, { position, options: {} });
    const ck = await loadCheckpoint(path);
    expect(ck.meta.optimizer).toEqual({ step: 3, lr: 0.01 });
    await expectSameContinuation(model, opt, path);
    opt.dispose();
    model.dispose();
  });

  it('saveCheckpoint fails, leaving the old file, when the weights change before it is awaited (it read them one by one)', async () => {
    const model = new MaskedAutoencoder(config, { seed: 3 });
    const dir = tmp();
    const path = join(dir, 'ck.safetensors');
    await saveCheckpoint(path, model, null, { position, options: {} });
    const before = (await loadCheckpoint(path)).weights;
    const [name, w] = model.namedParameters().at(-1)!;
    const saving = saveCheckpoint(path, model, null, { position: { ...position, step: 4 }, options: {} });
    w.write(w.dataSync().map((v) => v + 1)); // as an optimizer step would, before the save resolves
    await expect(saving).rejects.toThrow(/the weights changed while the checkpoint was written \(.+: an optimizer step or a load before the save was awaited\)/);
    const after = await loadCheckpoint(path);
    expect(after.meta.position.step).toBe(3);
    expect(Array.from(after.weights.get(name)!.data)).toEqual(Array.from(before.get(name)!.data));
    expect(readdirSync(dir)).toEqual(['ck.safetensors']);
    model.dispose();
  });

  it('loadCheckpoint and loadModel open the file once and read all of it there: a file put in its place meanwhile is not read', async () => {
    const model = new MaskedAutoencoder(config, { seed: 4 });
    const dir = tmp();
    const path = join(dir, 'checkpoint.safetensors');
    const next = join(dir, 'next.safetensors');
    const opened: string[] = [];
    const realOpen = fsp.open.bind(fsp);
    vi.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
      const handle = await realOpen(...args);
      if (args[0] === path) {
        opened.push(path);
        if (existsSync(next)) renameSync(next, path); // a newer checkpoint put in place just after the open
      }
      return handle;
    });
    const loads = {
      loadCheckpoint: async (p: string) => (await loadCheckpoint(p)).meta,
      loadModel: async (p: string) => {
        const loaded = await loadModel(p);
        loaded.model.dispose();
        return loaded.meta;
      },
    };
    for (const [name, load] of Object.entries(loads))
      for (const p of [path, dir]) {
        await saveCheckpoint(path, model, null, { position, options: {} });
        await saveCheckpoint(next, model, null, { position: { ...position, step: 4 }, options: {} });
        opened.length = 0;
        expect((await load(p)).position.step, `${name}(${p})`).toBe(3);
        expect(opened, `${name}(${p})`).toEqual([path]);
      }
    model.dispose();
  });

  it('a classifier, a folder, a .pth or an oversized header get errors that say what the file is', async () => {
    const dir = tmp();
    const vit = new VisionTransformerClassifier(classifierConfigFrom({ ...config, eps: 1e-6 }, { numClasses: 3, globalPool: false }), { seed: 1 });
    const run = join(dir, 'finetune-run');
    await saveClassifier(join(run, 'classifier.safetensors'), vit);
    vit.dispose();
    // a fine-tuned classifier (global pooling) has no encoder norm: loadModel says what the file is
    const ft = new VisionTransformerClassifier(classifierConfigFrom({ ...config, eps: 1e-6 }, { numClasses: 3, globalPool: true }), { seed: 1 });
    const ftRun = join(dir, 'ft');
    await saveClassifier(join(ftRun, 'classifier.safetensors'), ft);
    ft.dispose();
    for (const p of [ftRun, join(ftRun, 'classifier.safetensors')])
      await expect(loadModel(p)).rejects.toThrow(`(${join(ftRun, 'classifier.safetensors')} is a classifier of mae finetune or linprobe, not a pre-training checkpoint: loadClassifier reads it)`);
    // a linear probe's classifier keeps the encoder whole: its encoder loads (mae eval --knn scores it)
    const { model: encoder } = await loadModel(run);
    expect(encoder.loadReport!.decoderLoaded).toBe(false);
    encoder.dispose();
    await expect(readSafetensors(run)).rejects.toThrow(`${run}: is a folder, not a safetensors file`);
    const pth = new URL('../fixtures/pth/checkpoint-3.pth', import.meta.url).pathname;
    await expect(readSafetensors(pth)).rejects.toThrow(`${pth}: a PyTorch file (.pth), not safetensors: loadWeights / MaskedAutoencoder.fromPretrained read those`);
    const model = new MaskedAutoencoder(config, { seed: 3 });
    await expect(saveCheckpoint(join(dir, 'big.safetensors'), model, null, { position, options: { note: 'x'.repeat(101 * 1024 * 1024) } })).rejects.toThrow(/the header \(tensor names and shapes, metadata\) is \d+ bytes, more than the 104857600 a reader takes/);
    expect(existsSync(join(dir, 'big.safetensors'))).toBe(false);
    model.dispose();
  });

  it('saveCheckpoint refuses metadata that loading would refuse or JSON cannot store, and writes nothing', async () => {
    const model = new MaskedAutoencoder(config, { seed: 3 });
    const dir = tmp();
    const logWindowProblem = 'logWindow must hold a finite loss, integer counts of steps and images and finite seconds >= 0';
    const fakeOptimizer = (state: Record<string, unknown>) => ({ stateDict: () => ({ step: 1, lr: 0.1, steps: {}, tensors: new Map(), ...state }) }) as unknown as AdamW;
    const cases: [string, Parameters<typeof saveCheckpoint>[2], Record<string, unknown>, string][] = [
      ['no-options', null, { position }, 'options is not an object'],
      ['epoch-nan', null, { position: { ...position, epoch: NaN }, options: {} }, 'position must hold integer epoch, iter and step'],
      ['step-fraction', null, { position: { ...position, step: 2.5 }, options: {} }, 'position must hold integer epoch, iter and step'],
      ['iter-negative', null, { position: { ...position, iter: -1 }, options: {} }, 'position must hold integer epoch, iter and step'],
      ['lr-infinite', fakeOptimizer({ lr: Infinity }), { position, options: {} }, 'optimizer must be null or hold an integer step and a finite lr >= 0'],
      ['lr-negative', fakeOptimizer({ lr: -1 }), { position, options: {} }, 'optimizer must be null or hold an integer step and a finite lr >= 0'],
      ['steps-fraction', fakeOptimizer({ steps: { '0.0': 1.5 } }), { position, options: {} }, "optimizer.steps must be an object of integer step counts by parameter ('<group>.<index>')"],
      ['epoch-loss-string', null, { position, options: {}, epochLoss: { sum: '1', steps: 2 } }, 'epochLoss must hold a finite sum and an integer count of steps'],
      ['epoch-loss-steps', null, { position, options: {}, epochLoss: { sum: 1, steps: -2 } }, 'epochLoss must hold a finite sum and an integer count of steps'],
      ['data-images-fraction', null, { position, options: {}, data: { images: 1.5, fingerprint: 'ab' } }, 'data must hold an integer count of images and a fingerprint string'],
      ['data-no-fingerprint', null, { position, options: {}, data: { images: 16 } }, 'data must hold an integer count of images and a fingerprint string'],
      ['threads-zero', null, { position, options: { threads: 0 } }, 'options.threads must be an integer >= 1'],
      ['log-every-fraction', null, { position, options: { logEvery: 1.5 } }, 'options.logEvery must be an integer >= 1'],
      ['workers-negative', null, { position, options: { workers: -1 } }, 'options.workers must be an integer >= 0'],
      ['checkpoint-every-string', null, { position, options: { checkpointEvery: '2' } }, 'options.checkpointEvery must be an integer >= 0'],
      ['visualize-every-negative', null, { position, options: { visualizeEvery: -1 } }, 'options.visualizeEvery must be an integer >= 0'],
      ['log-window-nan', null, { position, options: {}, logWindow: { loss: NaN, steps: 1, images: 8, seconds: 1 } }, logWindowProblem],
      ['log-window-steps', null, { position, options: {}, logWindow: { loss: 1, steps: 0.5, images: 8, seconds: 1 } }, logWindowProblem],
      ['log-window-images', null, { position, options: {}, logWindow: { loss: 1, steps: 1, images: -8, seconds: 1 } }, logWindowProblem],
      ['log-window-seconds', null, { position, options: {}, logWindow: { loss: 1, steps: 1, images: 8, seconds: -1 } }, logWindowProblem],
      ['log-window-missing', null, { position, options: {}, logWindow: { loss: 1, steps: 1, images: 8 } }, logWindowProblem],
    ];
    for (const [name, opt, meta, problem] of cases) {
      const path = join(dir, `${name}.safetensors`);
      await expect(saveCheckpoint(path, model, opt, meta as Parameters<typeof saveCheckpoint>[3]), name).rejects.toThrow(
        new Error(`saveCheckpoint: ${path} not written, loading would refuse its metadata: ${problem}`),
      );
      expect(existsSync(path), name).toBe(false);
    }
    // metadata JSON cannot store: the key path is named
    const self: Record<string, unknown> = {};
    self.self = self;
    for (const [name, options, problem] of [
      ['bigint', { seed: 1n }, 'meta.options.seed is a BigInt'],
      ['circular', { data: self }, 'meta.options.data.self refers back to meta.options.data (a circular reference)'],
    ] as const) {
      const path = join(dir, `${name}.safetensors`);
      await expect(saveCheckpoint(path, model, null, { position, options }), name).rejects.toThrow(
        new Error(`saveCheckpoint: ${path} not written, JSON cannot store its metadata: ${problem}`),
      );
      expect(existsSync(path), name).toBe(false);
    }
    // the same metadata, right, is written and loads
    const path = join(dir, 'good.safetensors');
    await saveCheckpoint(path, model, null, { position, options: {} });
    const { model: loaded, meta } = await loadModel(path);
    expect(meta.position).toEqual(position);
    loaded.dispose();
    // the run's settings and the log line under way round-trip
    const options = { threads: 1, workers: 0, checkpointEvery: 0, logEvery: 1, visualizeEvery: 0 };
    const logWindow = { loss: 1.25, steps: 2, images: 16, seconds: 0.5 };
    await saveCheckpoint(path, model, null, { position, options, epochLoss: { sum: 2.5, steps: 2 }, logWindow });
    expect((await loadCheckpoint(path)).meta).toMatchObject({ options, logWindow });
    model.dispose();
  });

  it("cutLog keeps a fine-tuning run's epoch-end lines of the epochs finished at the checkpoint, and drops the others", async () => {
    const path = join(tmp(), 'log.jsonl');
    const line = (o: object) => JSON.stringify(o) + '\n';
    const kept = line({ step: 3, loss: 1 }) + line({ epochEnd: 1, loss: 1 }) + line({ step: 6, loss: 0.9 });
    writeFileSync(path, kept + line({ step: 8, loss: 0.8 }) + line({ epochEnd: 2, loss: 0.8 }) + line({ step: 9, loss: 0.7 }));
    await cutLog(path, { epoch: 1, iter: 2, step: 6 });
    expect(readFileSync(path, 'utf8')).toBe(kept);
    // at an epoch end: that epoch's line stays
    writeFileSync(path, kept + line({ step: 8, loss: 0.8 }) + line({ epochEnd: 2, loss: 0.8 }) + line({ step: 9, loss: 0.7 }));
    await cutLog(path, { epoch: 2, iter: 0, step: 8 });
    expect(readFileSync(path, 'utf8')).toBe(kept + line({ step: 8, loss: 0.8 }) + line({ epochEnd: 2, loss: 0.8 }));
  });
});
