// Pre-training in bf16 on the CPU against fp32 from the same seed: the 28-px preset (mae_vit_tiny_patch4_28, the
// full model) for 300 steps on Fashion-MNIST with a reduced batch of 8 and one thread (test files run side by side)
// so that the test stays short: about 20 s on a 2-core AMD EPYC. The two runs see
// the same images, masks and initial weights; bf16 rounding makes their trajectories drift apart step by step, so the
// loss is compared as a user reads it, averaged over windows of 20 steps: after step 100 every window of the bf16
// run is within 2% of the fp32 run's. Both must have learned (the loss falls by more than 30%).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MaskedAutoencoder } from '../../lib/mae/model.js';
import { native } from '../../lib/native.js';
import { shadowToUpdate } from '../../lib/nn/shadow.js';
import { AdamW } from '../../lib/optim/adamw.js';
import { Tensor, liveTensors, tidy } from '../../lib/tensor.js';
import { openDataset } from '../../lib/train/data.js';
import { finetune } from '../../lib/train/finetune.js';
import { extractFeatures } from '../../lib/train/knn.js';
import { pretrain } from '../../lib/train/pretrain.js';
import { roundBf16 } from '../../tools/cuda-cases.js';

describe('pretrain in bf16 on the CPU', () => {
  it('follows the fp32 run of the same seed within 2% after step 100 (300 steps, 28-px model, batch 8)', async () => {
    const losses: Record<string, number[]> = {};
    for (const precision of ['fp32', 'bf16'] as const) {
      const l: number[] = [];
      await pretrain({
        preset: 'mae_vit_tiny_patch4_28',
        data: { kind: 'fashion-mnist', limit: 2400 },
        batchSize: 8,
        epochs: 1,
        lr: 5e-4,
        warmupEpochs: 0.1,
        workers: 0,
        threads: 1,
        visualizeEvery: 0,
        outDir: mkdtempSync(join(tmpdir(), 'mae-bf16-')),
        precision,
        seed: 0,
        onEvent: (e) => {
          if (e.type === 'step') l.push(e.loss);
        },
      });
      losses[precision] = l;
    }
    const [a, b] = [losses.fp32!, losses.bf16!];
    expect(a.length).toBe(300);
    expect(b.length).toBe(300);
    const mean = (x: number[], i: number) => x.slice(i, i + 20).reduce((s, v) => s + v, 0) / 20;
    let worst = 0;
    for (let i = 100; i + 20 <= 300; i += 20) {
      const rel = Math.abs(mean(b, i) - mean(a, i)) / mean(a, i);
      worst = Math.max(worst, rel);
      expect(rel, `steps ${i + 1}-${i + 20}: bf16 ${mean(b, i)} vs fp32 ${mean(a, i)}`).toBeLessThan(0.02);
    }
    for (const x of [a, b]) expect(mean(x, 280)).toBeLessThan(0.7 * mean(x, 0));
    console.log(`bf16 vs fp32 pre-training: worst 20-step window after step 100 ${(100 * worst).toFixed(2)}%; last window fp32 ${mean(a, 280).toFixed(4)}, bf16 ${mean(b, 280).toFixed(4)}`);
  });
});

describe('bf16 weight copies on the CPU', () => {
  it('are made once, then rewritten by AdamW: no product converts a weight after the first step', () => {
    const model = new MaskedAutoencoder({ imgSize: 16, patchSize: 4, inChans: 1, embedDim: 32, depth: 2, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 }, { seed: 1 });
    const opt = new AdamW(model.parameterGroups(0.05), { lr: 1e-2, betas: [0.9, 0.95] });
    const imgs = Tensor.fromArray(Float32Array.from({ length: 4 * 256 }, (_, i) => Math.sin(i * 0.1)), [4, 1, 16, 16]);
    const to = native.to;
    let toBf16 = 0;
    native.to = (x, device, dtype) => {
      if (dtype === 'bfloat16') toBf16++;
      return to(x, device, dtype);
    };
    const weights = model.namedParameters().filter(([n]) => n.endsWith('.weight') && !n.includes('norm'));
    try {
      const counts: number[] = [];
      const live: number[] = [];
      for (let step = 0; step < 3; step++) {
        toBf16 = 0;
        tidy(() => model.forward(imgs, { precision: 'bf16' }).loss.backward());
        opt.step();
        opt.zeroGrad();
        counts.push(toBf16);
        live.push(liveTensors());
        // every weight's copy holds the weight rounded to bf16 after the step
        for (const [name, w] of weights) {
          const s = shadowToUpdate(w);
          expect(s, name).not.toBeNull();
          expect(Array.from(s!.dataSync()), name).toEqual(Array.from(roundBf16(w.dataSync())));
        }
      }
      // the first step makes one copy per weight (and converts the images); later steps convert the images only
      expect(counts[0]).toBe(weights.length + 1);
      expect(counts.slice(1)).toEqual([1, 1]);
      expect(live[2]).toBe(live[1]);
    } finally {
      native.to = to;
      imgs.dispose();
      opt.dispose();
      model.dispose();
    }
  });
});

describe('finetune, linprobe features and embed in bf16 on the CPU', () => {
  it('fine-tunes in bf16 as well above chance as in fp32 (synthetic data)', async () => {
    const r = await finetune({
      fromScratch: true, config: { patchSize: 7, embedDim: 32, depth: 2, numHeads: 2 }, threads: 1, data: { kind: 'synthetic', count: 512 },
      outDir: mkdtempSync(join(tmpdir(), 'mae-bf16-ft-')), epochs: 6, batchSize: 32, blr: 2e-2, warmupEpochs: 0.5, dropPath: 0.05,
      mixup: 0, cutmix: 0, reprob: 0, cropScale: [1, 1], flipProb: 0, precision: 'bf16',
    });
    expect(r.top1).toBeGreaterThan(0.4);
    await expect(finetune({ fromScratch: true, precision: 'fp16' as 'bf16' })).rejects.toThrow(/finetune: precision must be 'fp32' or 'bf16', got 'fp16'/);
  });

  it('embeds (the linear-probe features) in bf16 within bf16 error of fp32, as float32', async () => {
    const model = new MaskedAutoencoder({ imgSize: 16, patchSize: 4, inChans: 1, embedDim: 32, depth: 2, numHeads: 2, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2 }, { seed: 2 });
    const ds = await openDataset({ kind: 'synthetic', count: 24, imageSize: 16 }, 'train');
    const [a, b] = [await extractFeatures(model, ds, { batchSize: 8 }), await extractFeatures(model, ds, { batchSize: 8, precision: 'bf16' })];
    expect(b.features.length).toBe(a.features.length);
    for (let r = 0; r < a.n; r++) {
      const fa = a.features.subarray(r * a.dim, (r + 1) * a.dim), fb = b.features.subarray(r * a.dim, (r + 1) * a.dim);
      let err = 0;
      let scale = 0;
      fa.forEach((v, j) => {
        err = Math.max(err, Math.abs(v - fb[j]!));
        scale = Math.max(scale, Math.abs(v));
      });
      // two blocks and the final norm of bf16 activations: a few bf16 roundings (2^-8 each) in sequence
      expect(err / scale, `row ${r}`).toBeLessThan(2 ** -5);
    }
    const imgs = Tensor.fromArray(new Float32Array(2 * 256).fill(0.5), [2, 1, 16, 16]);
    expect(model.embed(imgs, { precision: 'bf16' }).dtype).toBe('float32');
    imgs.dispose();
    model.dispose();
  });
});
