import { beforeAll, describe, expect, it } from 'vitest';
import { setNumThreads } from '../../lib/info.js';
import { VisionTransformerClassifier, classifierConfigFrom, dropPath } from '../../lib/classify/model.js';
import { MaskedAutoencoder } from '../../lib/mae/model.js';
import { encoderSizes } from '../../lib/mae/presets.js';
import * as ops from '../../lib/ops/index.js';
import { Generator } from '../../lib/random.js';
import { Tensor, liveTensors, tidy } from '../../lib/tensor.js';

// one kernel thread: tiny tensors, and no OpenMP oversubscription on a busy machine
beforeAll(() => setNumThreads(1));

const small = { imgSize: 8, patchSize: 4, inChans: 1, embedDim: 16, depth: 2, numHeads: 2, decoderEmbedDim: 8, decoderDepth: 1, decoderNumHeads: 2, mlpRatio: 2, normPixLoss: false, eps: 1e-6 };

function images(B: number, seed = 0): Tensor {
  return Tensor.fromArray(new Generator(seed).normalArray(B * 64), [B, 1, 8, 8]);
}

describe('drop path', () => {
  it('is the identity at evaluation or rate 0', () => {
    const x = Tensor.fromArray(Float32Array.from([1, 2, 3, 4]), [2, 2]);
    expect(dropPath(x, 0.5, false, new Generator(0))).toBe(x);
    expect(dropPath(x, 0, true, new Generator(0))).toBe(x);
    x.dispose();
  });

  it('in training zeroes whole samples with probability p and scales the rest by 1 / (1 - p), gradient likewise', () => {
    const B = 2000;
    const x = Tensor.fromArray(new Float32Array(B * 3).fill(2), [B, 3], { requiresGrad: true });
    const y = dropPath(x, 0.25, true, new Generator(1));
    const v = y.dataSync();
    let kept = 0;
    for (let b = 0; b < B; b++) {
      const row = Array.from(v.subarray(b * 3, b * 3 + 3));
      expect(row[0] === 0 || Math.abs(row[0]! - 2 / 0.75) < 1e-5).toBe(true);
      expect(row[1]).toBe(row[0]);
      expect(row[2]).toBe(row[0]);
      if (row[0] !== 0) kept++;
    }
    expect(kept / B).toBeGreaterThan(0.72);
    expect(kept / B).toBeLessThan(0.78);
    ops.sum(y).backward();
    const g = x.grad!.dataSync();
    for (let i = 0; i < g.length; i++) expect(g[i]).toBeCloseTo(v[i]! / 2, 5);
    // the mean is preserved in expectation
    const mean = v.reduce((s, a) => s + a, 0) / v.length;
    expect(mean).toBeGreaterThan(1.9);
    expect(mean).toBeLessThan(2.1);
    x.dispose();
    y.dispose();
  });

  it('refuses a rate outside [0, 1), NaN included (it dropped every branch)', () => {
    const x = Tensor.fromArray(Float32Array.from([1, 2, 3, 4]), [2, 2]);
    for (const p of [NaN, 1, -0.1]) expect(() => dropPath(x, p, true, new Generator(0))).toThrow(`dropPath: p must be a rate in [0, 1), got the number ${p}`);
    x.dispose();
  });

  it("keeps its config frozen: the structure (and forwardAsync's worker copy) was built from it", () => {
    const vit = new VisionTransformerClassifier(classifierConfigFrom({ imgSize: 16, patchSize: 8, inChans: 3, embedDim: 32, depth: 1, numHeads: 2, mlpRatio: 4, eps: 1e-6 }, { numClasses: 3 }), { seed: 1 });
    expect(() => {
      (vit.config as { numClasses: number }).numClasses = 10;
    }).toThrow(TypeError);
    expect(vit.config.numClasses).toBe(3);
    vit.dispose();
  });

  it('refuses a config it cannot build or train right, and keeps the defaults of options left undefined', () => {
    const where = 'VisionTransformerClassifier: config.';
    const build = (o: object) => () => new VisionTransformerClassifier({ ...classifierConfigFrom(small), ...o } as never);
    expect(build({ dropPathRate: NaN })).toThrow(`${where}dropPathRate must be a number in [0, 1), got the number NaN`);
    expect(build({ dropPathRate: 1 })).toThrow(`${where}dropPathRate must be a number in [0, 1), got the number 1`);
    expect(build({ headInitStd: NaN })).toThrow(`${where}headInitStd must be a positive finite number, got the number NaN`);
    expect(build({ headInitStd: undefined })).toThrow(`${where}headInitStd must be a positive finite number, got undefined`);
    expect(build({ globalPool: 'yes' })).toThrow(`${where}globalPool must be true or false, got yes`);
    expect(build({ drop_path_rate: 0.1 })).toThrow("VisionTransformerClassifier: config has no option 'drop_path_rate' (did you mean dropPathRate?)");
    // sizes whose weights cannot be allocated, refused from the config before anything is allocated
    const before = liveTensors();
    expect(build({ numClasses: 3e8 })).toThrow('VisionTransformerClassifier: one of the model\'s weights would hold 4800000000 values, more than 2147483647 (2^31 - 1)');
    expect(build({ embedDim: 768, numHeads: 12, depth: 100000 })).toThrow(/^VisionTransformerClassifier: the model's \d+ parameters would take \d+\.\d GiB in float32, more than this machine's memory/);
    expect(liveTensors()).toBe(before);
    // the sizes the check counts are those of the model built
    for (const [globalPool, headBatchNorm] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const vit = new VisionTransformerClassifier({ ...classifierConfigFrom(small, { numClasses: 5 }), globalPool, headBatchNorm });
      const head = 16 * 5 + 5 + (headBatchNorm ? 2 * 16 : 0);
      expect(encoderSizes(8, 4, 1, 16, 2, 2).count + head).toBe(vit.numParameters(false));
      vit.dispose();
    }
    const c = classifierConfigFrom(small, { dropPathRate: undefined, headInitStd: undefined, numClasses: 4 });
    expect([c.dropPathRate, c.headInitStd, c.numClasses]).toEqual([0, 2e-5, 4]);
    const vit = new VisionTransformerClassifier(c);
    expect(() => vit.forward(null as unknown as Tensor)).toThrow(/^classifier: images must be a Tensor \[B, C, H, W\], got null/);
    vit.dispose();
  });

  it('sets the block rates linearly from 0 to dropPathRate', () => {
    const m = new VisionTransformerClassifier(classifierConfigFrom({ ...small, depth: 5 }, { dropPathRate: 0.2 }));
    expect(m.dpr.map((r) => Math.round(r * 1000) / 1000)).toEqual([0, 0.05, 0.1, 0.15, 0.2]);
    m.dispose();
  });
});

describe('ViT classifier on the MAE encoder', () => {
  it('loads the encoder by official names, ignores the decoder, and its cls features equal MAE embed (linear-probe path)', () => {
    const mae = new MaskedAutoencoder(small, { seed: 3 });
    const clf = new VisionTransformerClassifier(classifierConfigFrom(small, { globalPool: false, headBatchNorm: true, headInitStd: 0.01 }), { seed: 9 });
    const r = clf.loadEncoder(mae.stateDict());
    expect(r.ignored).toContain('decoder_embed.weight');
    expect(r.ignored).toContain('mask_token');
    expect(r.loaded).toContain('norm.weight');
    expect(r.loaded).toContain('blocks.1.mlp.fc2.weight');
    expect(r.missing.sort()).toEqual(['head.0.running_mean', 'head.0.running_var', 'head.1.bias', 'head.1.weight']);
    // weights of a shallower encoder: an error naming what is missing, not blocks left random
    const deeper = new VisionTransformerClassifier(classifierConfigFrom({ ...small, depth: small.depth + 1 }));
    expect(() => deeper.loadEncoder(mae.stateDict())).toThrow(`loadEncoder: the state dict lacks 12 encoder tensor(s) of this model (depth ${small.depth + 1}, width ${small.embedDim}): blocks.${small.depth}.norm1.weight`);
    deeper.dispose();
    clf.eval();
    const x = images(3);
    const a = tidy(() => ops.sliceTokens(mae.embed(x), 0, 1).dataSync());
    const b = tidy(() => clf.forwardFeatures(x).dataSync());
    expect(b.length).toBe(a.length);
    for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i]!, 5);
    const logits = tidy(() => clf.forward(x).shape);
    expect(logits).toEqual([3, 10]);
    x.dispose();
    mae.dispose();
    clf.dispose();
  });

  it('with global pooling uses fc_norm on the mean patch token (no final norm) and a tiny-std head', () => {
    const mae = new MaskedAutoencoder(small, { seed: 4 });
    const clf = new VisionTransformerClassifier(classifierConfigFrom(small, { globalPool: true }), { seed: 1 });
    const r = clf.loadEncoder(mae.stateDict());
    expect(r.ignored).toContain('norm.weight');
    expect(r.missing.sort()).toEqual(['fc_norm.bias', 'fc_norm.weight', 'head.bias', 'head.weight']);
    expect(clf.stateDict().has('norm.weight')).toBe(false);
    const w = (clf.head as { weight: Tensor }).weight.dataSync();
    // trunc_normal_ std 2e-5 (bounds +-2, absolute: nothing cut off): all within 10 std of 0, not all within 2 std
    const largest = Math.max(...Array.from(w, Math.abs));
    expect(largest).toBeLessThan(2e-4);
    expect(largest).toBeGreaterThan(4e-5);
    clf.eval();
    const x = images(2, 1);
    // reference: blocks without the final norm, mean over the patch tokens, then fc_norm (weight 1, bias 0)
    const ref = tidy(() => {
      let h = ops.add(mae.patch_embed.forward(x), ops.sliceTokens(mae.pos_embed, 1, 4));
      h = ops.catTokens(ops.add(mae.cls_token, ops.sliceTokens(mae.pos_embed, 0, 1)), h);
      for (const blk of mae.blocks.items) h = blk.forward(h);
      const m = ops.meanTokens(ops.sliceTokens(h, 1, 4));
      return ops.layerNorm(m, Tensor.ones([16]), Tensor.zeros([16])).dataSync();
    });
    const got = tidy(() => clf.forwardFeatures(x).dataSync());
    for (let i = 0; i < ref.length; i++) expect(got[i]).toBeCloseTo(ref[i]!, 5);
    x.dispose();
    mae.dispose();
    clf.dispose();
  });

  it('trains end to end without leaking tensors', () => {
    const clf = new VisionTransformerClassifier(classifierConfigFrom(small, { dropPathRate: 0.1 }));
    const before = liveTensors();
    const x = images(4);
    const y = Tensor.fromArray(Int32Array.from([0, 1, 2, 3]), [4]);
    tidy(() => ops.crossEntropy(clf.forward(x), y, 0.1).backward());
    for (const p of clf.parameters()) expect(p.grad).not.toBeNull();
    clf.zeroGrad();
    x.dispose();
    y.dispose();
    expect(liveTensors()).toBe(before);
    clf.dispose();
  });
});
