// Memory over long runs: tensors made and disposed by the hundred thousand, and hundreds of training steps, in
// loops that never return to the event loop (as a synchronous user loop does), must not grow the process. What is
// measured, after a warm-up, is the resident set less the JavaScript heap's committed size (V8 grows its heap by
// several MiB at times of its own choosing; that is not native memory). The bound (8 MiB) is generous against
// malloc's noise and far below what a leak of 100 bytes per tensor adds in either test (over 25 MiB).
import { describe, expect, it } from 'vitest';
import { MaskedAutoencoder } from '../lib/mae/index.js';
import { AdamW } from '../lib/optim/index.js';
import * as ops from '../lib/ops/index.js';
import { liveTensors, Tensor, tidy } from '../lib/tensor.js';

const MiB = 2 ** 20;
/** resident bytes outside the JavaScript heap */
const nativeResident = () => {
  const m = process.memoryUsage();
  return m.rss - m.heapTotal;
};

describe('soak', () => {
  it('300,000 tensors made and disposed leave native resident memory and the live count where they were', () => {
    const data = new Float32Array(256).fill(0.5);
    const x = Tensor.fromArray(data, [16, 16]);
    const round = (n: number) => {
      for (let i = 0; i < n; i++) {
        Tensor.fromArray(data, [256]).dispose();
        ops.add(x, x).dispose();
        const v = x.handle.reshape([256]);  // a view sharing x's storage
        v.dispose();
      }
    };
    round(20_000);
    const live = liveTensors();
    const before = nativeResident();
    round(100_000);
    const grown = (nativeResident() - before) / MiB;
    expect(liveTensors()).toBe(live);
    expect(grown, `native resident memory grew by ${grown.toFixed(1)} MiB over 300,000 tensors`).toBeLessThan(8);
    x.dispose();
  });

  it('400 training steps keep the live count and native resident memory flat after warm-up', () => {
    const mae = new MaskedAutoencoder(
      { imgSize: 16, patchSize: 4, inChans: 3, embedDim: 32, depth: 2, numHeads: 2, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2, mlpRatio: 4, normPixLoss: true },
      { seed: 0 },
    );
    const opt = new AdamW(mae.parameterGroups(0.05), { lr: 1e-3, betas: [0.9, 0.95] });
    const images = Tensor.fromArray(Float32Array.from({ length: 8 * 3 * 16 * 16 }, (_, i) => Math.sin(i)), [8, 3, 16, 16]);
    const step = () => {
      const loss = tidy(() => {
        const { loss } = mae.forward(images, { maskRatio: 0.75 });
        loss.backward();
        return loss.item();
      });
      opt.step();
      opt.zeroGrad();
      return loss;
    };
    for (let i = 0; i < 50; i++) step();
    const live = liveTensors();
    const before = nativeResident();
    let last = NaN;
    for (let i = 0; i < 400; i++) last = step();
    const grown = (nativeResident() - before) / MiB;
    expect(Number.isFinite(last)).toBe(true);
    expect(liveTensors()).toBe(live);
    expect(grown, `native resident memory grew by ${grown.toFixed(1)} MiB over 400 steps`).toBeLessThan(8);
    images.dispose();
    opt.dispose();
    mae.dispose();
  });
});
