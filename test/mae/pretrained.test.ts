// Models built from PyTorch and Hugging Face checkpoints reproduce the official code's outputs (test/fixtures/pth,
// computed in float64 with facebookresearch/mae models_mae.py and models_vit.py): loss, pred, the encoder's latent,
// whole-image embeddings, fine-tuned logits at the training size and at another one (interpolate_pos_embed), and
// the bicubic position-table interpolation itself, square and not.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VisionTransformerClassifier } from '../../lib/classify/model.js';
import { readSafetensors, serializeSafetensors } from '../../lib/io/safetensors.js';
import { MaskedAutoencoder } from '../../lib/mae/model.js';
import { interpolatePosEmbed } from '../../lib/mae/pos_embed.js';
import { Tensor, liveTensors, tidy } from '../../lib/tensor.js';

const dir = new URL('../fixtures/pth/', import.meta.url).pathname;
const fx = JSON.parse(readFileSync(join(dir, 'fixtures.json'), 'utf8'));
const c = fx.config;
const heads = { numHeads: c.num_heads, decoderNumHeads: c.decoder_num_heads };
const ref = (await readSafetensors(join(dir, 'reference.safetensors'))).tensors;
const get = (k: string) => {
  const t = ref.get(k);
  if (!t) throw new Error(`fixture lacks ${k}`);
  return t as { shape: number[]; data: Float32Array };
};

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const tensor = (k: string) => Tensor.fromArray(get(k).data, get(k).shape);

/** loss, pred and the latent of the official forward for the fixture's images and noise. */
function officialOutputs(mae: MaskedAutoencoder) {
  return tidy(() => {
    const images = tensor('images');
    const noise = tensor('noise');
    const { loss, pred, mask } = mae.forward(images, { maskRatio: fx.mask_ratio, noise });
    const m = mae.randomMasking(fx.batch, fx.mask_ratio, noise);
    const latent = mae.forwardEncoder(images, Tensor.fromArray(m.idsKeep, [fx.batch, m.lenKeep]));
    return { loss: loss.dataSync(), pred: pred.dataSync(), mask: mask.dataSync(), latent: latent.dataSync(), embed: mae.embed(images).dataSync() };
  });
}

describe('MaskedAutoencoder.fromPretrained', () => {
  for (const file of ['checkpoint-3.pth', 'checkpoint-legacy.pth']) {
    it(`${file} (official training checkpoint): loss, pred, latent and embeddings of the official code within 1e-5`, async () => {
      const before = liveTensors();
      const mae = await MaskedAutoencoder.fromPretrained(join(dir, file), heads);
      expect(mae.config).toMatchObject({ imgSize: c.img_size, patchSize: c.patch_size, embedDim: c.embed_dim, depth: c.depth, decoderEmbedDim: c.decoder_embed_dim, decoderDepth: c.decoder_depth, mlpRatio: 4, eps: 1e-6, normPixLoss: false });
      expect(mae.loadReport).toMatchObject({ decoderLoaded: true, missing: [], ignored: [], naming: 'official' });
      const out = officialOutputs(mae);
      expect(maxAbsDiff(out.loss, get('loss').data)).toBeLessThan(1e-5);
      expect(maxAbsDiff(out.pred, get('pred').data)).toBeLessThan(1e-5);
      expect(Array.from(out.mask)).toEqual(Array.from(get('mask').data));
      expect(maxAbsDiff(out.latent, get('latent').data)).toBeLessThan(1e-5);
      expect(maxAbsDiff(out.embed, get('embed').data)).toBeLessThan(1e-5);
      mae.dispose();
      expect(liveTensors()).toBe(before);
    });
  }

  it('called on a subclass, the factories make that class (fromPreset, fromPretrained, the classifier too)', async () => {
    class Tagged extends MaskedAutoencoder {
      readonly tag = 'mine';
    }
    class TaggedVit extends VisionTransformerClassifier {
      readonly tag = 'mine';
    }
    const a = Tagged.fromPreset('mae_vit_tiny_patch4_28', { depth: 1, decoderDepth: 1 });
    const b = await Tagged.fromPretrained(join(dir, 'checkpoint-3.pth'), heads);
    const v = await TaggedVit.fromPretrained(join(dir, 'mae-finetuned.pth'), { numHeads: c.num_heads });
    expect([a, b, v].map((m) => [m.constructor.name, m.tag])).toEqual([['Tagged', 'mine'], ['Tagged', 'mine'], ['TaggedVit', 'mine']]);
    expect(b.loadReport?.decoderLoaded).toBe(true);
    for (const m of [a, b, v]) m.dispose();
  });

  it('the training run args travel in the report', async () => {
    const mae = await MaskedAutoencoder.fromPretrained(join(dir, 'checkpoint-3.pth'), heads);
    expect(mae.loadReport!.args).toMatchObject({ model: 'mae_vit_fixture', input_size: c.img_size });
    mae.dispose();
  });

  it('head counts that the weights cannot tell are asked for', async () => {
    await expect(MaskedAutoencoder.fromPretrained(join(dir, 'checkpoint-3.pth'))).rejects.toThrow(/number of encoder heads cannot be read from the weights \(width 32 .*numHeads/);
  });

  it('the released encoder-only form: embeds as the official encoder; the decoder is reported as not loaded', async () => {
    const mae = await MaskedAutoencoder.fromPretrained(join(dir, 'mae-encoder.pth'), { numHeads: c.num_heads });
    expect(mae.loadReport!.decoderLoaded).toBe(false);
    expect(mae.loadReport!.missing).toContain('decoder_embed.weight');
    expect(mae.loadReport!.missing).toContain('mask_token');
    expect(mae.loadReport!.missing.every((k) => k.startsWith('decoder') || k === 'mask_token')).toBe(true);
    // the official decoder, initialised
    expect(mae.config).toMatchObject({ decoderEmbedDim: 512, decoderDepth: 8, decoderNumHeads: 16 });
    const out = officialOutputs(mae);
    expect(maxAbsDiff(out.embed, get('embed').data)).toBeLessThan(1e-5);
    expect(maxAbsDiff(out.latent, get('latent').data)).toBeLessThan(1e-5);
    mae.dispose();
  });

  for (const folder of ['hf-safetensors', 'hf-bin']) {
    it(`a Hugging Face folder (${folder}): config.json read, eps 1e-12 kept, the official outputs with that eps`, async () => {
      const mae = await MaskedAutoencoder.fromPretrained(join(dir, folder));
      expect(mae.config).toMatchObject({ eps: 1e-12, numHeads: c.num_heads, decoderNumHeads: c.decoder_num_heads, imgSize: c.img_size });
      expect(mae.loadReport).toMatchObject({ naming: 'huggingface', decoderLoaded: true, missing: [] });
      const out = officialOutputs(mae);
      expect(maxAbsDiff(out.loss, get('hf.loss').data)).toBeLessThan(1e-5);
      expect(maxAbsDiff(out.pred, get('hf.pred').data)).toBeLessThan(1e-5);
      mae.dispose();
    });
  }

  it('head counts the checkpoint declares cannot be overridden with others; the same values are fine', async () => {
    const folder = join(dir, 'hf-safetensors');
    const file = join(folder, 'model.safetensors');
    await expect(MaskedAutoencoder.fromPretrained(folder, { numHeads: 2 })).rejects.toThrow(`${file}: the checkpoint declares numHeads ${c.num_heads}, but 2 was given`);
    await expect(MaskedAutoencoder.fromPretrained(folder, { decoderNumHeads: 4 })).rejects.toThrow(`${file}: the checkpoint declares decoderNumHeads ${c.decoder_num_heads}, but 4 was given`);
    // the classifier built from the same weights (mae classify --num-heads) is held to the same rule
    await expect(VisionTransformerClassifier.fromPretrained(folder, { numHeads: 2, numClasses: 7 })).rejects.toThrow(`${file}: the checkpoint declares numHeads ${c.num_heads}, but 2 was given`);
    const mae = await MaskedAutoencoder.fromPretrained(folder, heads);
    expect(mae.config).toMatchObject(heads);
    mae.dispose();
  });

  /** A copy of the Hugging Face fixture folder, its config.json changed by `edit`, its weights by `keep`. */
  async function hfCopy(edit: Record<string, unknown>, keep: (name: string) => string | null = (n) => n): Promise<string> {
    const to = mkdtempSync(join(tmpdir(), 'mae-hf-'));
    const config = JSON.parse(readFileSync(join(dir, 'hf-safetensors', 'config.json'), 'utf8'));
    writeFileSync(join(to, 'config.json'), JSON.stringify({ ...config, ...edit }));
    const { tensors } = await readSafetensors(join(dir, 'hf-safetensors', 'model.safetensors'));
    const kept = new Map([...tensors].flatMap(([k, t]) => (keep(k) === null ? [] : [[keep(k)!, t] as const])));
    writeFileSync(join(to, 'model.safetensors'), serializeSafetensors(kept));
    return to;
  }

  it('a config.json that disagrees with the weights is an error naming both (the config of another model)', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ hidden_size: 64 }, 'hidden_size 64, but the weights have 32 (patch_embed.proj.weight [32, 3, 8, 8])'],
      [{ num_channels: 1 }, 'num_channels 1, but the weights have 3'],
      [{ patch_size: 16 }, 'patch_size 16, but the weights have 8'],
      [{ image_size: 64 }, 'image_size 64, but the weights have 32 (pos_embed [1, 17, 32]'],
      [{ num_hidden_layers: 3 }, 'num_hidden_layers 3, but the weights have 2 (blocks.0 to blocks.1)'],
      [{ intermediate_size: 64 }, 'intermediate_size 64, but the weights have 128'],
      [{ decoder_hidden_size: 8 }, 'decoder_hidden_size 8, but the weights have 16'],
      [{ decoder_num_hidden_layers: 8 }, 'decoder_num_hidden_layers 8, but the weights have 1'],
      [{ decoder_intermediate_size: 32 }, 'decoder_intermediate_size 32, but the weights have 64'],
    ];
    for (const [edit, message] of cases) {
      const folder = await hfCopy(edit);
      await expect(MaskedAutoencoder.fromPretrained(folder), JSON.stringify(edit)).rejects.toThrow(`${join(folder, 'config.json')}: says ${message}`);
      rmSync(folder, { recursive: true });
    }
    const folder = await hfCopy({ hidden_size: 64 });
    await expect(VisionTransformerClassifier.fromPretrained(folder, { numClasses: 3 })).rejects.toThrow(`${join(folder, 'config.json')}: says hidden_size 64`);
    rmSync(folder, { recursive: true });
  });

  it('an encoder-only Hugging Face folder (ViTMAEModel names): the decoder config.json declares, not the official one', async () => {
    const folder = await hfCopy({ architectures: ['ViTMAEModel'] }, (n) => (n.startsWith('vit.') ? n.slice(4) : null));
    const mae = await MaskedAutoencoder.fromPretrained(folder);
    expect(mae.config).toMatchObject({ embedDim: 32, depth: 2, numHeads: 4, decoderEmbedDim: 16, decoderDepth: 1, decoderNumHeads: 2, eps: 1e-12 });
    expect(mae.loadReport).toMatchObject({ naming: 'huggingface', decoderLoaded: false });
    mae.dispose();
    rmSync(folder, { recursive: true });
  });

  it('a Hugging Face ViTForImageClassification folder: its classifier is the head, on the cls token after the final norm', async () => {
    const folder = await hfCopy({ architectures: ['ViTForImageClassification'], num_labels: 5 }, (n) => (n.startsWith('vit.') ? n : null));
    const { tensors } = await readSafetensors(join(folder, 'model.safetensors'));
    const w = Float32Array.from({ length: 5 * 32 }, (_, i) => Math.sin(i));
    const b = Float32Array.from({ length: 5 }, (_, i) => i / 10);
    tensors.set('classifier.weight', { dtype: 'F32', shape: [5, 32], data: w });
    tensors.set('classifier.bias', { dtype: 'F32', shape: [5], data: b });
    writeFileSync(join(folder, 'model.safetensors'), serializeSafetensors(tensors));
    const clf = await VisionTransformerClassifier.fromPretrained(folder);
    expect(clf.config).toMatchObject({ numClasses: 5, globalPool: false, headBatchNorm: false, numHeads: 4, eps: 1e-12 });
    expect(clf.loadReport).toMatchObject({ naming: 'huggingface', headLoaded: true, missing: [], ignored: [] });
    const state = clf.stateDict();
    expect(state.get('head.weight')!.dataSync()).toEqual(w);
    expect(state.get('head.bias')!.dataSync()).toEqual(b);
    clf.dispose();
    rmSync(folder, { recursive: true });
  });

  it('a checkpoint that lacks encoder weights is an error listing them', async () => {
    await expect(MaskedAutoencoder.fromPretrained(join(dir, 'dtypes.pth'))).rejects.toThrow(/dtypes\.pth: no "patch_embed\.proj\.weight" among the weights \(f32, f16/);
  });
});

describe('VisionTransformerClassifier.fromPretrained and other image sizes', () => {
  it('the official fine-tuned form: logits of models_vit within 1e-5, at 32 px and at 48 px (interpolate_pos_embed)', async () => {
    const vit = await VisionTransformerClassifier.fromPretrained(join(dir, 'mae-finetuned.pth'), { numHeads: c.num_heads });
    expect(vit.config).toMatchObject({ globalPool: true, numClasses: fx.num_classes, headBatchNorm: false, imgSize: c.img_size });
    expect(vit.loadReport).toMatchObject({ headLoaded: true, missing: [], ignored: [] });
    expect(vit.training).toBe(false);
    const logits = tidy(() => vit.forward(tensor('images')).dataSync());
    expect(maxAbsDiff(logits, get('finetuned.logits').data)).toBeLessThan(1e-5);
    const logits48 = tidy(() => vit.forward(tensor('images48')).dataSync());
    expect(maxAbsDiff(logits48, get('finetuned.logits48').data)).toBeLessThan(1e-5);
    // training at another size has no gradient for the interpolated table: refused
    vit.train();
    expect(() => tidy(() => vit.forward(tensor('images48')))).toThrow(/in eval mode any \[B, 3, H, W\].*in training mode/);
    vit.dispose();
  });

  it('a pre-training checkpoint gives a classifier with a new head, reported as not loaded', async () => {
    const vit = await VisionTransformerClassifier.fromPretrained(join(dir, 'checkpoint-3.pth'), { numHeads: c.num_heads, numClasses: 7 });
    expect(vit.loadReport!.headLoaded).toBe(false);
    expect(vit.loadReport!.missing.sort()).toEqual(['fc_norm.bias', 'fc_norm.weight', 'head.bias', 'head.weight']);
    expect(vit.loadReport!.ignored).toContain('decoder_embed.weight');
    vit.dispose();
    await expect(VisionTransformerClassifier.fromPretrained(join(dir, 'checkpoint-3.pth'), { numHeads: c.num_heads })).rejects.toThrow(/no classifier head.*numClasses/);
  });

  it('embed accepts other and non-square sizes, and refuses sides that are not multiples of the patch', async () => {
    const mae = await MaskedAutoencoder.fromPretrained(join(dir, 'mae-encoder.pth'), { numHeads: c.num_heads });
    const D = c.embed_dim;
    const shape = tidy(() => mae.embed(Tensor.zeros([1, 3, 24, 48])).shape);
    expect(shape).toEqual([1, 1 + 3 * 6, D]);
    expect(() => tidy(() => mae.embed(Tensor.zeros([1, 3, 20, 32])))).toThrow(/H and W multiples of the patch size 8, got \[1, 3, 20, 32\]/);
    expect(() => tidy(() => mae.forward(Tensor.zeros([1, 3, 48, 48])))).toThrow(/forward: expected images \[B, 3, 32, 32\]/);
    mae.dispose();
  });
});

describe('interpolatePosEmbed', () => {
  it('matches the official interpolate_pos_embed (4x4 -> 6x6) and F.interpolate bicubic (3x6, 2x3) within 1e-6', async () => {
    const vit = await VisionTransformerClassifier.fromPretrained(join(dir, 'mae-finetuned.pth'), { numHeads: c.num_heads });
    const table = vit.pos_embed.dataSync();
    const D = c.embed_dim;
    const g = c.img_size / c.patch_size;
    for (const [name, h, w] of [['finetuned.pos_embed48', 6, 6], ['pos_embed.3x6', 3, 6], ['pos_embed.2x3', 2, 3]] as const) {
      const got = interpolatePosEmbed(table, D, g, g, h, w);
      expect(maxAbsDiff(got, get(name).data), name).toBeLessThan(1e-6);
    }
    // the same grid is the identity
    expect(maxAbsDiff(interpolatePosEmbed(table, D, g, g, g, g), table)).toBeLessThan(1e-6);
    vit.dispose();
  });
});
