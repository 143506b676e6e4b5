// The MAE model beyond parity: masking, position tables, presets, parameter groups, state dicts, embed and
// reconstruct, and the encoder on all patches.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toHuggingFace } from '../../lib/io/names.js';
import { readSafetensors, writeSafetensors } from '../../lib/io/safetensors.js';
import { loadSafetensors, saveSafetensors } from '../../lib/io/state.js';
import { MaskedAutoencoder, get2dSincosPosEmbed, interpolatePosEmbed, presets, randomMasking } from '../../lib/mae/index.js';
import { maeParameterSizes, type PresetName } from '../../lib/mae/presets.js';
import { Generator } from '../../lib/random.js';
import { Tensor, liveTensors, tidy } from '../../lib/tensor.js';

const tiny = { imgSize: 8, patchSize: 2, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, decoderEmbedDim: 8, decoderDepth: 1, decoderNumHeads: 2 };

function images(B: number, c = tiny, seed = 3): Tensor {
  const g = new Generator(seed);
  return Tensor.fromArray(g.normalArray(B * c.inChans * c.imgSize * c.imgSize), [B, c.inChans, c.imgSize, c.imgSize]);
}

describe('randomMasking', () => {
  it('keeps the patches with the smallest noise, in noise order, and inverts the shuffle', () => {
    const noise = Float32Array.from([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.05]);
    const m = randomMasking(2, 4, 0.5, noise);
    expect(m.lenKeep).toBe(2);
    expect(Array.from(m.idsKeep)).toEqual([1, 3, 3, 1]);
    expect(Array.from(m.mask)).toEqual([1, 0, 1, 0, 1, 0, 1, 0]);
    // ids_restore[l] = position of patch l in the ascending noise order
    expect(Array.from(m.idsRestore)).toEqual([3, 0, 2, 1, 2, 1, 3, 0]);
  });
  it('keeps int(L * (1 - ratio)) patches and rejects bad ratios', () => {
    expect(randomMasking(1, 196, 0.75, undefined, new Generator(1)).lenKeep).toBe(49);
    expect(randomMasking(1, 49, 0.75, undefined, new Generator(1)).lenKeep).toBe(12);
    expect(() => randomMasking(1, 4, 1)).toThrow(/maskRatio must be in \[0, 1\)/);
    expect(() => randomMasking(1, 4, '0.5' as unknown as number, undefined, new Generator(1))).toThrow(/maskRatio must be in \[0, 1\), got the string '0\.5'/);
    expect(() => randomMasking(1, 4, 0.5, new Float32Array(3))).toThrow(/noise has 3 values/);
  });
});

describe('2-D sin-cos position table', () => {
  it('has a zero cls row, the column in the first half and the row in the second', () => {
    const D = 8;
    const g = 3;
    const t = get2dSincosPosEmbed(D, g);
    expect(Array.from(t.subarray(0, D))).toEqual(new Array(D).fill(0));
    const i = 2;
    const j = 1;
    const row = t.subarray((1 + i * g + j) * D, (2 + i * g + j) * D);
    const omega = [1, 1 / 100]; // 1 / 10000^(k / 2), k = 0, 1
    const expected = [Math.sin(j * omega[0]!), Math.sin(j * omega[1]!), Math.cos(j * omega[0]!), Math.cos(j * omega[1]!), Math.sin(i * omega[0]!), Math.sin(i * omega[1]!), Math.cos(i * omega[0]!), Math.cos(i * omega[1]!)];
    row.forEach((v, k) => expect(v).toBeCloseTo(expected[k]!, 6));
  });

  it('refuses a width or grid that is not a positive integer (a multiple of 4 for the width)', () => {
    for (const g of [0, -3, 1.5, NaN]) expect(() => get2dSincosPosEmbed(8, g)).toThrow(`get2dSincosPosEmbed: gridSize must be an integer >= 1, got the number ${g}`);
    for (const d of [0, 6, -8, 8.5]) expect(() => get2dSincosPosEmbed(d, 2)).toThrow(`get2dSincosPosEmbed: embedDim must be a positive multiple of 4, got the number ${d}`);
    expect(() => interpolatePosEmbed(new Float32Array(8), 8, 0, 0, 2, 2)).toThrow('interpolatePosEmbed: gridH must be an integer >= 1, got 0');
    expect(() => interpolatePosEmbed(new Float32Array(8), 8, 1, 1, 2, 2, -1)).toThrow('interpolatePosEmbed: numExtra must be an integer >= 0, got -1');
  });
});

describe('MaskedAutoencoder', () => {
  it("keeps its config frozen: the structure (and embedAsync's worker copy) was built from it", () => {
    const given = { ...tiny };
    const mae = new MaskedAutoencoder(given, { seed: 1 });
    expect(() => {
      (mae.config as { depth: number }).depth = 3;
    }).toThrow(TypeError);
    expect(mae.config.depth).toBe(2);
    given.depth = 5; // the caller's object stays its own
    expect(mae.config.depth).toBe(2);
    mae.dispose();
  });

  it('uses the official names, shapes and initialisation', () => {
    const mae = new MaskedAutoencoder(tiny, { seed: 1 });
    const sd = mae.stateDict();
    expect(sd.get('cls_token')!.shape).toEqual([1, 1, 16]);
    expect(sd.get('pos_embed')!.shape).toEqual([1, 17, 16]);
    expect(sd.get('patch_embed.proj.weight')!.shape).toEqual([16, 3, 2, 2]);
    expect(sd.get('blocks.1.attn.qkv.weight')!.shape).toEqual([48, 16]);
    expect(sd.get('blocks.0.mlp.fc1.weight')!.shape).toEqual([64, 16]);
    expect(sd.get('decoder_blocks.0.norm2.bias')!.shape).toEqual([8]);
    expect(sd.get('decoder_pred.weight')!.shape).toEqual([12, 8]);
    expect(sd.get('mask_token')!.shape).toEqual([1, 1, 8]);
    expect(sd.get('pos_embed')!.requiresGrad).toBe(false);
    expect(sd.get('decoder_pos_embed')!.requiresGrad).toBe(false);
    // xavier_uniform bound for qkv [48, 16]: sqrt(6 / 64); biases zero; LayerNorm ones
    const w = sd.get('blocks.0.attn.qkv.weight')!.dataSync();
    const bound = Math.sqrt(6 / 64);
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(bound * 0.9);
    expect(sd.get('blocks.0.attn.qkv.bias')!.dataSync().every((v) => v === 0)).toBe(true);
    expect(sd.get('norm.weight')!.dataSync().every((v) => v === 1)).toBe(true);
    // same seed, same model; another seed, another
    const again = new MaskedAutoencoder(tiny, { seed: 1 }).stateDict().get('blocks.0.attn.qkv.weight')!.dataSync();
    expect(Array.from(again)).toEqual(Array.from(w));
    const other = new MaskedAutoencoder(tiny, { seed: 2 }).stateDict().get('blocks.0.attn.qkv.weight')!.dataSync();
    expect(Array.from(other)).not.toEqual(Array.from(w));
  });

  it('puts tensors of 2+ dims (cls and mask tokens too) in the decay group, biases and norms not, pos tables nowhere', () => {
    const mae = new MaskedAutoencoder(tiny);
    const [noDecay, decay] = mae.parameterGroups(0.05);
    expect(decay!.weightDecay).toBe(0.05);
    expect(noDecay!.weightDecay).toBe(0);
    expect(decay!.names).toContain('cls_token');
    expect(decay!.names).toContain('mask_token');
    expect(decay!.names).toContain('patch_embed.proj.weight');
    expect(noDecay!.names).toContain('patch_embed.proj.bias');
    expect(noDecay!.names).toContain('blocks.0.norm1.weight');
    expect([...decay!.names!, ...noDecay!.names!]).not.toContain('pos_embed');
    expect(decay!.names!.length + noDecay!.names!.length).toBe(mae.namedParameters().length - 2);
  });

  it('has the ViT-B/16 encoder size of the paper presets', () => {
    const c = presets.mae_vit_base_patch16;
    // encoder parameters of ViT-B/16 without a head: 85,798,656 (pos_embed included)
    const D = c.embedDim;
    const L = (c.imgSize / c.patchSize) ** 2;
    const block = 2 * 2 * D + (3 * D * D + 3 * D) + (D * D + D) + (4 * D * D + 4 * D) + (4 * D * D + D);
    const encoder = (D * 3 * 16 * 16 + D) + D + (L + 1) * D + c.depth * block + 2 * D;
    expect(encoder).toBe(85_798_656);
    expect(presets.mae_vit_large_patch16.embedDim).toBe(1024);
    expect(presets.mae_vit_huge_patch14.patchSize).toBe(14);
  });

  it('runs the encoder on all patches at maskRatio 0 and on the kept ones otherwise', () => {
    const mae = new MaskedAutoencoder(tiny);
    tidy(() => {
      const x = images(2);
      const full = mae.forward(x, { maskRatio: 0, generator: new Generator(1) });
      expect(full.mask.dataSync().every((v) => v === 0)).toBe(true);
      expect(Number.isFinite(full.loss.item())).toBe(true);
      const m = mae.forward(x, { maskRatio: 0.75, generator: new Generator(1) });
      expect(m.mask.dataSync().reduce((a, b) => a + b, 0)).toBe(2 * 12);
      expect(m.pred.shape).toEqual([2, 16, 12]);
    });
  });

  it('takes explicit noise, as a Tensor or Float32Array, and checks its shape', () => {
    const mae = new MaskedAutoencoder(tiny);
    const noise = new Generator(5).uniformArray(2 * 16);
    tidy(() => {
      const x = images(2);
      const a = mae.forward(x, { noise }).loss.item();
      const b = mae.forward(x, { noise: Tensor.fromArray(noise, [2, 16]) }).loss.item();
      expect(a).toBe(b);
      expect(() => mae.forward(x, { noise: Tensor.fromArray(noise, [1, 32]) })).toThrow(/noise \[1, 32\] must be \[B, L\] = \[2, 16\]/);
      expect(() => mae.forward(Tensor.zeros([2, 1, 8, 8]))).toThrow(/expected images \[B, 3, 8, 8\], got \[2, 1, 8, 8\]/);
      expect(() => mae.forward(x, { noise: Array.from(noise) as unknown as Float32Array })).toThrow('forward: noise must be a Tensor or a Float32Array [B, L] = [2, 16], got an array of 32');
      expect(() => mae.forward(x, { generator: {} as Generator })).toThrow('forward: generator must be a Generator, got an object');
      expect(() => mae.forward(x, { maskRatio: '0.5' as unknown as number })).toThrow(/maskRatio must be in \[0, 1\), got the string '0\.5'/);
      // images that are not a Tensor (JavaScript callers): named, not a TypeError from inside
      for (const [call, where] of [[() => mae.forward(null as unknown as Tensor), 'forward'], [() => mae.embed(new Float32Array(192) as unknown as Tensor), 'embed'], [() => mae.reconstruct(undefined as unknown as Tensor), 'reconstruct']] as const)
        expect(call).toThrow(new RegExp(`^${where}: images must be a Tensor \\[B, C, H, W\\], got (null|a Float32Array|undefined)`));
    });
  });

  it('refuses a config whose weights cannot be allocated, from its sizes, before allocating anything', () => {
    // the sizes alone give the parameter count the built model has
    const small = [presets.mae_vit_tiny_patch4_28, presets.mae_vit_tiny_patch4_32, { ...presets.mae_vit_tiny_patch4_28, maskTokenEncoder: true }, { ...tiny, mlpRatio: 2.7, decoderEmbedDim: 32 }];
    for (const c of small) {
      const mae = new MaskedAutoencoder(c);
      expect(maeParameterSizes(mae.config).count).toBe(mae.numParameters(false));
      mae.dispose();
    }
    const before = liveTensors();
    // a RangeError from a typed array (Invalid typed array length: 40000001024) before
    expect(() => new MaskedAutoencoder({ imgSize: 100000, patchSize: 16 })).toThrow(
      'MaskedAutoencoder: one of the model\'s weights would hold 40000001024 values, more than 2147483647 (2^31 - 1)',
    );
    // more than any machine this runs on: an allocation failing part way through the model before
    expect(() => new MaskedAutoencoder({ ...presets.mae_vit_base_patch16, depth: 100000 })).toThrow(
      /^MaskedAutoencoder: the model's 7088\d+ parameters would take 26\d\d\.\d GiB in float32, more than this machine's memory \(\d+\.\d GiB\)/,
    );
    expect(liveTensors()).toBe(before);
  });

  it('refuses config and forward options it does not take, instead of ignoring them', () => {
    expect(() => new MaskedAutoencoder({ ...tiny, decoder_depth: 4 } as never)).toThrow(
      "MaskedAutoencoder: config has no option 'decoder_depth' (did you mean decoderDepth?); it takes imgSize, patchSize",
    );
    expect(() => new MaskedAutoencoder({ ...tiny, dropout: 0.1 } as never)).toThrow("MaskedAutoencoder: config has no option 'dropout'; it takes");
    expect(() => new MaskedAutoencoder({ ...tiny, normPixLoss: 'true' } as never)).toThrow('MaskedAutoencoder: normPixLoss must be true or false, got true');
    expect(() => new MaskedAutoencoder({ ...tiny, mlpRatio: Infinity })).toThrow('MaskedAutoencoder: mlpRatio must be a positive finite number, got Infinity');
    for (const name of ['toString', 'constructor', '__proto__', 'hasOwnProperty'])
      expect(() => MaskedAutoencoder.fromPreset(name as PresetName)).toThrow(`MaskedAutoencoder.fromPreset: name must be one of mae_vit_base_patch16, mae_vit_large_patch16`);
    const mae = new MaskedAutoencoder(tiny);
    tidy(() => {
      const x = images(1);
      expect(() => mae.forward(x, { mask_ratio: 0.25 } as never)).toThrow("forward: opts has no option 'mask_ratio' (did you mean maskRatio?); it takes precision, maskRatio, noise, generator");
      expect(() => mae.reconstruct(x, { ratio: 0.25 } as never)).toThrow("reconstruct: opts has no option 'ratio'");
      // the options it takes still work, and the masking follows maskRatio
      expect(mae.forward(x, { maskRatio: 0.25 }).mask.dataSync().reduce((a, b) => a + b, 0)).toBe(4);
    });
  });

  it('embeds whole images without recording gradients', () => {
    const mae = new MaskedAutoencoder(tiny);
    const before = liveTensors();
    const f = tidy(() => mae.embed(images(3)));
    expect(f.shape).toEqual([3, 17, 16]);
    expect(f.requiresGrad).toBe(false);
    f.dispose();
    expect(liveTensors()).toBe(before);
  });

  it('reconstructs in the input space, un-normalising norm-pix predictions with each patch\'s own statistics', () => {
    const mae = new MaskedAutoencoder({ ...tiny, normPixLoss: true });
    tidy(() => {
      const x = images(2);
      const noise = new Generator(9).uniformArray(32);
      const r = mae.reconstruct(x, { noise });
      const { pred, mask } = mae.forward(x, { noise });
      const target = mae.patchify(x).dataSync();
      const p = pred.dataSync();
      const rec = mae.patchify(r.reconstruction).dataSync();
      const pasted = mae.patchify(r.pasted).dataSync();
      const m = mask.dataSync();
      const P = 12;
      for (let i = 0; i < 32; i++) {
        const t = target.subarray(i * P, (i + 1) * P);
        const mean = t.reduce((a, b) => a + b, 0) / P;
        const std = Math.sqrt(t.reduce((a, b) => a + (b - mean) ** 2, 0) / (P - 1) + 1e-6);
        for (let k = 0; k < P; k++) {
          expect(rec[i * P + k]!).toBeCloseTo(p[i * P + k]! * std + mean, 4);
          expect(pasted[i * P + k]!).toBeCloseTo(m[i] ? rec[i * P + k]! : t[k]!, 5);
        }
      }
    });
  });

  it('loadStateDict lists missing, unexpected and mis-shaped keys', () => {
    const mae = new MaskedAutoencoder(tiny);
    const sd = new Map(mae.stateDict());
    sd.delete('norm.bias');
    sd.set('head.weight', Tensor.zeros([2, 2]));
    sd.set('cls_token', Tensor.zeros([1, 1, 5]));
    expect(() => mae.loadStateDict(sd)).toThrow(/mis-shaped keys:\n  cls_token: expected \[1, 1, 16\], got \[1, 1, 5\][\s\S]*missing keys:\n  norm\.bias[\s\S]*unexpected keys:\n  head\.weight/);
  });

  it('loadStateDict checks every value before the first write: a short, non-Float32Array or disposed one leaves the model as it was', () => {
    const mae = new MaskedAutoencoder(tiny, { seed: 1 });
    const before = new Map([...mae.stateDict()].map(([k, t]) => [k, Array.from(t.dataSync())]));
    const gone = Tensor.zeros([16]);
    gone.dispose();
    const cases: [string, Tensor | { shape: number[]; data: Float32Array }, RegExp][] = [
      ['norm.weight', { shape: [16], data: new Float32Array(3) }, /unreadable values:\n  norm\.weight: shape \[16\] holds 16 values, its data has 3/],
      ['norm.weight', { shape: [16], data: Array(16).fill(0) as unknown as Float32Array }, /norm\.weight: data must be a Float32Array, got an array/],
      ['norm.bias', gone, /unreadable values:\n  norm\.bias: the tensor has been disposed/],
    ];
    for (const [key, value, error] of cases) {
      const sd = new Map<string, Tensor | { shape: number[]; data: Float32Array }>([...mae.stateDict()].map(([k, t]) => [k, { shape: [...t.shape], data: t.dataSync().map((v) => v + 1) }]));
      sd.set(key, value);
      expect(() => mae.loadStateDict(sd)).toThrow(error);
      for (const [k, t] of mae.stateDict()) expect(Array.from(t.dataSync()), k).toEqual(before.get(k));
    }
    mae.dispose();
  });

  it('saves and loads safetensors under official names and reads Hugging Face names', async () => {
    const a = new MaskedAutoencoder(tiny, { seed: 1 });
    const b = new MaskedAutoencoder(tiny, { seed: 2 });
    const dir = mkdtempSync(join(tmpdir(), 'mae-sd-'));
    await saveSafetensors(join(dir, 'a.safetensors'), a.stateDict());
    b.loadStateDict(await loadSafetensors(join(dir, 'a.safetensors')));
    const noise = new Generator(4).uniformArray(2 * 16);
    const loss = (m: MaskedAutoencoder) => tidy(() => m.forward(images(2), { noise }).loss.item());
    expect(loss(b)).toBe(loss(a));
    // the same weights under Hugging Face ViTMAE names
    const raw = (await readSafetensors(join(dir, 'a.safetensors'))).tensors as Map<string, { shape: number[]; data: Float32Array }>;
    const hf = toHuggingFace(raw).tensors;
    expect(hf.has('vit.encoder.layer.0.attention.attention.query.weight')).toBe(true);
    await writeSafetensors(join(dir, 'hf.safetensors'), hf);
    const c = new MaskedAutoencoder(tiny, { seed: 3 });
    c.loadStateDict(await loadSafetensors(join(dir, 'hf.safetensors')));
    expect(loss(c)).toBe(loss(a));
  });
});
