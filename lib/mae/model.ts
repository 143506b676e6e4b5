/**
 * The Masked Autoencoder with a ViT backbone, as the official models_mae.py MaskedAutoencoderViT:
 *
 *   imgs [B, C, H, W] -> patch_embed + pos_embed[1:] -> random masking (keep L * (1 - ratio) patches)
 *   -> prepend cls_token + pos_embed[0] -> blocks -> norm                                  (forwardEncoder)
 *   -> decoder_embed -> append mask tokens -> unshuffle with ids_restore -> + decoder_pos_embed
 *   -> decoder_blocks -> decoder_norm -> decoder_pred -> drop cls -> pred [B, L, p*p*C]     (forwardDecoder)
 *   loss: MSE on the removed patches against patchify(imgs), optionally normalised per patch (forwardLoss)
 *
 * With `maskTokenEncoder` (the paper's "encoder w/ [M]" baseline, Tables 1c and 2) the encoder sees all L patches:
 * the removed ones are replaced by the learned `encoder_mask_token` (plus their pos_embed row), and the decoder
 * takes the encoder's 1 + L outputs in patch order as they are (no decoder mask_token, no unshuffle). The masking
 * and the loss (removed patches only) are the same.
 *
 * Parameter names are the official state_dict names. Tensors made during a forward pass belong to the caller's
 * tidy scope.
 */
import { noGrad } from '../autograd.js';
import { closeAsync, runAsync } from '../infer/async.js';
import { init } from '../nn/index.js';
import { Block, LayerNorm, Linear, PatchEmbed, forwardBlocks } from '../nn/layers.js';
import { Module, ModuleList, expectStateMap } from '../nn/module.js';
import * as ops from '../ops/index.js';
import { Generator } from '../random.js';
import { Tensor, expectTensors, shapeStr, tidy } from '../tensor.js';
import { get2dSincosPosEmbed, posEmbedFor } from './pos_embed.js';
import { randomMasking, type Masking } from './masking.js';
import { checkConfig, checkWeightsFit, expectPresetName, getPreset, maeParameterSizes, type MaeConfig, type PresetName } from './presets.js';
import { describeValue, expectFinite, expectInstance, expectKnownKeys, expectNonNegative, expectObject, expectString } from '../check.js';
import { checkPrecision, toBf16, toFloat32, type Precision } from './precision.js';

export { checkPrecision, toBf16, toFloat32, type Precision };
import { buildFromWeights, maeConfigFromWeights, readWeights, type PretrainedReport, type WeightsOptions } from './pretrained.js';


export interface ForwardOptions {
  /** activation precision (default 'fp32'); 'bf16' on the CPU needs oneDNN (see `mae info`) */
  precision?: Precision;
  /** fraction of patches removed, in [0, 1); default 0.75. 0 runs the encoder on every patch. */
  maskRatio?: number;
  /** uniform noise [B, L] that decides the masking (explicit masking); drawn from `generator` otherwise */
  noise?: Tensor | Float32Array;
  /** where noise comes from when not given; default the model's own generator */
  generator?: Generator;
}

const FORWARD_OPTIONS: readonly (keyof ForwardOptions)[] = ['precision', 'maskRatio', 'noise', 'generator'];

/** The maskRatio of forward options (default 0.75), checked in the name of `where` (forward, reconstruct). */
function maskRatioOf(where: string, opts: ForwardOptions): number {
  const maskRatio = opts.maskRatio === undefined ? 0.75 : opts.maskRatio;
  expectFinite(where, 'maskRatio', maskRatio, (x) => x >= 0 && x < 1, 'in [0, 1)');
  return maskRatio;
}

/** The seed option of a model (default 0), checked in the name of `where`: a safe integer, as Generator takes. */
export function seedOf(where: string, opts: { seed?: number }): number {
  const seed = opts.seed === undefined ? 0 : opts.seed;
  expectFinite(where, 'seed', seed, (x) => Number.isSafeInteger(x), 'a safe integer');
  return seed;
}

export interface ForwardResult {
  /** [1] mean loss over removed patches */
  loss: Tensor;
  /** [B, L, p*p*C] predicted patches (normalised per patch when normPixLoss) */
  pred: Tensor;
  /** [B, L] 1 = removed, 0 = kept */
  mask: Tensor;
}

export interface Reconstruction {
  /** [B, C, H, W] the predicted image (every patch predicted), in the input's value space */
  reconstruction: Tensor;
  /** [B, C, H, W] the prediction with the visible patches replaced by the input's */
  pasted: Tensor;
  /** [B, L] 1 = removed */
  mask: Tensor;
}

const official: MaeConfig = {
  imgSize: 224,
  patchSize: 16,
  inChans: 3,
  embedDim: 1024,
  depth: 24,
  numHeads: 16,
  decoderEmbedDim: 512,
  decoderDepth: 8,
  decoderNumHeads: 16,
  mlpRatio: 4,
  normPixLoss: false,
  eps: 1e-6,
  maskTokenEncoder: false,
};

/** MaskedAutoencoder or a subclass of it, as the constructor its static factories are called on. */
export type MaeClass<M extends MaskedAutoencoder> = new (config: Partial<MaeConfig>, opts?: { seed?: number }) => M;

export class MaskedAutoencoder extends Module {
  /** frozen: the model's structure was built from it (and embedAsync's worker builds its copy from it) */
  readonly config: Readonly<MaeConfig>;
  readonly generator: Generator;
  readonly numPatches: number;
  readonly cls_token: Tensor;
  readonly pos_embed: Tensor;
  /** the decoder's mask token (null with maskTokenEncoder, whose decoder takes every token from the encoder) */
  readonly mask_token: Tensor | null;
  /** the encoder's mask token with maskTokenEncoder (null otherwise); not in official checkpoints */
  readonly encoder_mask_token: Tensor | null;
  readonly decoder_pos_embed: Tensor;
  readonly patch_embed: PatchEmbed;
  readonly blocks: ModuleList<Block>;
  readonly norm: LayerNorm;
  readonly decoder_embed: Linear;
  readonly decoder_blocks: ModuleList<Block>;
  readonly decoder_norm: LayerNorm;
  readonly decoder_pred: Linear;

  /** Missing fields take the official class defaults (ViT-L/16 widths, eps 1e-6). `seed` fixes the initialisation. */
  constructor(config: Partial<MaeConfig> = {}, opts: { seed?: number } = {}) {
    super();
    expectObject('MaskedAutoencoder', 'config', config, false, 'e.g. { imgSize: 224, patchSize: 16, ... } or MaskedAutoencoder.fromPreset(name)');
    expectObject('MaskedAutoencoder', 'opts', opts, false, 'e.g. { seed: 0 }');
    expectKnownKeys('MaskedAutoencoder', 'opts', opts, ['seed']);
    expectKnownKeys('MaskedAutoencoder', 'config', config, Object.keys(official));
    const c: MaeConfig = { ...official, ...config };
    checkConfig(c, 'MaskedAutoencoder');
    checkWeightsFit(maeParameterSizes(c), 'MaskedAutoencoder', 'depth, embedDim, decoderDepth, decoderEmbedDim, mlpRatio and imgSize / patchSize');
    this.config = Object.freeze(c);
    const gen = new Generator(seedOf('MaskedAutoencoder', opts));
    this.generator = gen;
    const L = (c.imgSize / c.patchSize) ** 2;
    this.numPatches = L;
    const grid = c.imgSize / c.patchSize;

    // encoder
    this.patch_embed = this.module('patch_embed', new PatchEmbed(c.imgSize, c.patchSize, c.inChans, c.embedDim, gen));
    this.cls_token = this.param('cls_token', init.normal([1, 1, c.embedDim], 0.02, gen));
    this.pos_embed = this.param('pos_embed', Tensor.fromArray(get2dSincosPosEmbed(c.embedDim, grid), [1, L + 1, c.embedDim]), false);
    this.blocks = this.module('blocks', new ModuleList(range(c.depth).map(() => new Block(c.embedDim, c.numHeads, c.mlpRatio, gen, c.eps))));
    this.norm = this.module('norm', new LayerNorm(c.embedDim, c.eps));

    // decoder
    this.decoder_embed = this.module('decoder_embed', new Linear(c.embedDim, c.decoderEmbedDim, gen));
    // with maskTokenEncoder the decoder has no mask token, but its values are still drawn so that every other
    // parameter starts as in the MAE model of the same seed (the two arms of the ablation start alike)
    if (c.maskTokenEncoder) gen.normalArray(c.decoderEmbedDim, 0, 0.02);
    this.mask_token = c.maskTokenEncoder ? null : this.param('mask_token', init.normal([1, 1, c.decoderEmbedDim], 0.02, gen));
    this.decoder_pos_embed = this.param(
      'decoder_pos_embed',
      Tensor.fromArray(get2dSincosPosEmbed(c.decoderEmbedDim, grid), [1, L + 1, c.decoderEmbedDim]),
      false,
    );
    this.decoder_blocks = this.module(
      'decoder_blocks',
      new ModuleList(range(c.decoderDepth).map(() => new Block(c.decoderEmbedDim, c.decoderNumHeads, c.mlpRatio, gen, c.eps))),
    );
    this.decoder_norm = this.module('decoder_norm', new LayerNorm(c.decoderEmbedDim, c.eps));
    this.decoder_pred = this.module('decoder_pred', new Linear(c.decoderEmbedDim, c.patchSize ** 2 * c.inChans, gen));
    this.encoder_mask_token = c.maskTokenEncoder ? this.param('encoder_mask_token', init.normal([1, 1, c.embedDim], 0.02, gen)) : null;
  }

  /** A model of a preset's config (with `overrides`), of the class it is called on (a subclass gives its own). */
  static fromPreset<M extends MaskedAutoencoder>(this: MaeClass<M>, name: PresetName, overrides: Partial<MaeConfig> = {}, opts: { seed?: number } = {}): M {
    expectPresetName('MaskedAutoencoder.fromPreset', 'name', name);
    expectObject('MaskedAutoencoder.fromPreset', 'overrides', overrides);
    expectObject('MaskedAutoencoder.fromPreset', 'opts', opts);
    expectKnownKeys('MaskedAutoencoder.fromPreset', 'opts', opts, ['seed']);
    // checked here, so that a bad override or seed is named as fromPreset's
    expectKnownKeys('MaskedAutoencoder.fromPreset', 'overrides', overrides, Object.keys(official));
    checkConfig({ ...official, ...getPreset(name), ...overrides }, 'MaskedAutoencoder.fromPreset');
    seedOf('MaskedAutoencoder.fromPreset', opts);
    return new this({ ...getPreset(name), ...overrides }, opts);
  }

  /** What fromPretrained loaded; null for a model made otherwise. */
  loadReport: PretrainedReport | null = null;

  /**
   * A model built from pre-trained weights, in any format readWeights reads (official .pth, Hugging Face folders,
   * safetensors), its architecture read off the weights and their config (lib/mae/pretrained.ts); `overrides` set
   * what they cannot say (head counts of unofficial widths) or change the rest (normPixLoss). An encoder-only
   * checkpoint (the released mae_pretrain_vit_*.pth) gives a model that embeds and fine-tunes, with its decoder
   * initialised, not loaded: loadReport.decoderLoaded is false. Called on a subclass, it makes one of that class.
   */
  static async fromPretrained<M extends MaskedAutoencoder>(this: MaeClass<M>, path: string, overrides: Partial<MaeConfig> = {}, opts: WeightsOptions & { seed?: number } = {}): Promise<M> {
    expectString('MaskedAutoencoder.fromPretrained', 'path', path, 'a path');
    expectObject('MaskedAutoencoder.fromPretrained', 'overrides', overrides);
    expectObject('MaskedAutoencoder.fromPretrained', 'opts', opts);
    expectKnownKeys('MaskedAutoencoder.fromPretrained', 'opts', opts, ['key', 'seed']);
    expectKnownKeys('MaskedAutoencoder.fromPretrained', 'overrides', overrides, Object.keys(official));
    // (the weights' reading takes a null override for none given; checkConfig below checks the rest)
    for (const [k, v] of Object.entries(overrides))
      if (v === null) throw new Error(`MaskedAutoencoder.fromPretrained: overrides.${k} must be a value of the config, got null; leave it out (or undefined) for what the weights say`);
    seedOf('MaskedAutoencoder.fromPretrained', opts);
    if (opts.key !== undefined) expectString('MaskedAutoencoder.fromPretrained', 'key', opts.key, 'a string (the checkpoint entry that holds the weights)');
    const file = await readWeights(path, { key: opts.key });
    const { config, hasDecoder } = maeConfigFromWeights(file, overrides);
    checkConfig(config, 'MaskedAutoencoder.fromPretrained');
    const decoder = (k: string) => k.startsWith('decoder_') || k === 'mask_token';
    // the fixed sin-cos tables need not be in the file; everything else of the encoder (and of the decoder if any) must
    const { model, report } = buildFromWeights(
      () => new this(config, { seed: opts.seed }),
      file,
      (k) => k !== 'pos_embed' && k !== 'decoder_pos_embed' && (hasDecoder || !decoder(k)),
    );
    model.loadReport = { path: file.path, format: file.format, naming: file.naming, ...report, decoderLoaded: hasDecoder, args: file.args };
    return model;
  }

  /** imgs [B, C, H, W] -> [B, L, p*p*C] (official patch layout). */
  patchify(imgs: Tensor): Tensor {
    return ops.patchify(imgs, this.config.patchSize, 'hwc');
  }

  /** [B, L, p*p*C] -> [B, C, H, W]. */
  unpatchify(x: Tensor): Tensor {
    const c = this.config;
    return ops.unpatchify(x, c.patchSize, [c.inChans, c.imgSize, c.imgSize], 'hwc');
  }

  /** Draws (or takes) the masking for a batch of B. */
  randomMasking(B: number, maskRatio: number, noise?: Tensor | Float32Array, generator?: Generator): Masking {
    this.checkMaskingInputs('randomMasking', B, noise, generator);
    return this.drawMasking(B, maskRatio, noise, generator);
  }

  /** randomMasking once its noise and generator are checked. */
  private drawMasking(B: number, maskRatio: number, noise: Tensor | Float32Array | undefined, generator: Generator | undefined): Masking {
    const n = noise instanceof Tensor ? noise.dataSync() : noise;
    return randomMasking(B, this.numPatches, maskRatio, n, generator ?? this.generator);
  }

  /** The noise and generator of randomMasking, checked in the name of `where` (randomMasking, forward). */
  private checkMaskingInputs(where: string, B: number, noise: unknown, generator: unknown): void {
    const L = this.numPatches;
    if (noise !== undefined && !(noise instanceof Tensor || noise instanceof Float32Array))
      throw new Error(`${where}: noise must be a Tensor or a Float32Array [B, L] = [${B}, ${L}], got ${describeValue(noise)}`);
    if (generator !== undefined && !(generator instanceof Generator)) throw new Error(`${where}: generator must be a Generator, got ${describeValue(generator)}`);
    if (noise instanceof Tensor && (noise.shape.length !== 2 || noise.shape[0] !== B || noise.shape[1] !== L))
      throw new Error(`${where}: noise ${shapeStr(noise.shape)} must be [B, L] = [${B}, ${L}]`);
  }

  /**
   * The encoder: [B, 1 + K, D] on the K kept patches (idsKeep, in shuffled order); with maskTokenEncoder and
   * idsRestore given, [B, 1 + L, D] on every patch in patch order, the removed ones replaced by encoder_mask_token;
   * [B, 1 + L, D] on every patch when idsKeep is null (no masking). Images of another size than imgSize (sides
   * multiples of patchSize) use the position table interpolated to their grid.
   */
  forwardEncoder(imgs: Tensor, idsKeep: Tensor | null, precision: Precision = 'fp32', idsRestore: Tensor | null = null): Tensor {
    expectTensors('forwardEncoder', { images: imgs }, { idsKeep, idsRestore });
    checkPrecision(precision, 'forwardEncoder');
    const c = this.config;
    const posAll = posEmbedFor(this.pos_embed, c.imgSize / c.patchSize, c.patchSize, imgs.shape[2]!, imgs.shape[3]!);
    const L = posAll.shape[1]! - 1;
    let x = this.patch_embed.forward(precision === 'bf16' ? toBf16(imgs) : imgs);
    const pos = ops.sliceTokens(posAll, 1, L);
    if (idsKeep && this.encoder_mask_token) {
      if (!idsRestore) throw new Error('forwardEncoder: the mask-token encoder needs idsRestore to put the patches back in place');
      x = ops.add(this.withMaskTokens(ops.gatherRows(x, idsKeep), this.encoder_mask_token, idsRestore), pos);
    } else {
      x = ops.add(x, pos);
      if (idsKeep) x = ops.gatherRows(x, idsKeep);
    }
    const cls = ops.add(this.cls_token, ops.sliceTokens(posAll, 0, 1));
    x = ops.catTokens(cls, x);
    return forwardBlocks(this.blocks.items, x, this.norm);
  }

  /**
   * latent [B, 1 + K, D] (cls, then the kept patches in shuffled order) and idsRestore int32 [B, L] -> pred
   * [B, L, p*p*C]; with maskTokenEncoder, latent [B, 1 + L, D] in patch order and idsRestore null.
   */
  forwardDecoder(latent: Tensor, idsRestore: Tensor | null): Tensor {
    expectTensors('forwardDecoder', { latent }, { idsRestore });
    const L = this.numPatches;
    let x = this.decoder_embed.forward(latent);
    if (idsRestore) {
      if (!this.mask_token) throw new Error('forwardDecoder: the mask-token encoder\'s decoder takes every token from the encoder; pass idsRestore null');
      x = ops.catTokens(ops.sliceTokens(x, 0, 1), this.withMaskTokens(ops.sliceTokens(x, 1, x.shape[1]! - 1), this.mask_token, idsRestore));
    } else if (x.shape[1] !== L + 1) throw new Error(`forwardDecoder: without idsRestore the latent must hold 1 + L = ${L + 1} tokens, got ${shapeStr(latent.shape)}`);
    x = ops.add(x, this.decoder_pos_embed);
    x = this.decoder_pred.forward(forwardBlocks(this.decoder_blocks.items, x, this.decoder_norm));
    return ops.sliceTokens(x, 1, L);
  }

  /**
   * tokens [B, K, W] of the kept patches in shuffled order -> [B, L, W] in patch order: L - K copies of `token`
   * [1, 1, W] appended, then unshuffled with idsRestore (the official forward_decoder's mask tokens).
   */
  private withMaskTokens(tokens: Tensor, token: Tensor, idsRestore: Tensor): Tensor {
    const L = this.numPatches;
    const K = tokens.shape[1]!;
    if (K < L) {
      const zeros = Tensor.fromArray(new Int32Array(L - K), [1, L - K], { device: tokens.device });
      tokens = ops.catTokens(tokens, ops.gatherRows(token, zeros));
    }
    return ops.gatherRows(tokens, idsRestore);
  }

  /** The loss of pred against imgs on the removed patches (mask [B, L], 1 = removed). */
  forwardLoss(imgs: Tensor, pred: Tensor, mask: Tensor): Tensor {
    expectTensors('forwardLoss', { images: imgs, pred, mask });
    return ops.maskedMse(pred, this.patchify(imgs), mask, this.config.normPixLoss);
  }

  forward(imgs: Tensor, opts: ForwardOptions = {}): ForwardResult {
    this.checkImages(imgs, 'forward');
    expectObject('forward', 'opts', opts, false, 'e.g. { maskRatio: 0.75 }');
    expectKnownKeys('forward', 'opts', opts, FORWARD_OPTIONS);
    const precision = checkPrecision(opts.precision, 'forward');
    const B = imgs.shape[0]!;
    const L = this.numPatches;
    const device = imgs.device;
    this.checkMaskingInputs('forward', B, opts.noise, opts.generator);
    const m = this.drawMasking(B, maskRatioOf('forward', opts), opts.noise, opts.generator);
    const idsKeep = Tensor.fromArray(m.idsKeep, [B, m.lenKeep], { device });
    const idsRestore = Tensor.fromArray(m.idsRestore, [B, L], { device });
    const pred = this.config.maskTokenEncoder
      ? this.forwardDecoder(this.forwardEncoder(imgs, idsKeep, precision, idsRestore), null)
      : this.forwardDecoder(this.forwardEncoder(imgs, idsKeep, precision), idsRestore);
    const mask = Tensor.fromArray(m.mask, [B, L], { device });
    const loss = this.forwardLoss(imgs, pred, mask);
    return { loss, pred, mask };
  }

  /**
   * Encoder features of whole images, no masking and no gradient: [B, 1 + L, D] (cls first). Images may have
   * another size than imgSize, any H x W with sides multiples of patchSize (L = (H/p)(W/p)): the position table is
   * interpolated bicubically to their grid, as the official interpolate_pos_embed. precision 'bf16' computes in bfloat16
   * activations (the result is float32 all the same).
   */
  embed(imgs: Tensor, opts: { precision?: Precision } = {}): Tensor {
    this.checkImages(imgs, 'embed', true);
    expectObject('embed', 'opts', opts, false, "e.g. { precision: 'bf16' }");
    expectKnownKeys('embed', 'opts', opts, ['precision']);
    const precision = checkPrecision(opts.precision, 'embed');
    return noGrad(() => tidy(() => toFloat32(this.forwardEncoder(imgs, null, precision))));
  }

  /**
   * embed() off the JavaScript thread, for services: resolves to exactly what embed(imgs) returns, computed in a
   * worker thread over this model's own parameter memory (no copy of the weights; lib/infer/async.ts), so the
   * event loop keeps running meanwhile. Calls are queued; errors reject. The images are copied when called. A call
   * in flight when the weights change (an optimizer step, loadStateDict, write) rejects: await it first. The worker
   * builds MaskedAutoencoder itself: a subclass's model runs its own embed on the calling thread (with a warning).
   */
  async embedAsync(imgs: Tensor, opts: { precision?: Precision } = {}): Promise<Tensor> {
    expectObject('embedAsync', 'opts', opts, false, "e.g. { precision: 'bf16' }");
    expectKnownKeys('embedAsync', 'opts', opts, ['precision']);
    return runAsync(this, 'mae', 'embed', imgs, opts.precision ?? 'fp32', MaskedAutoencoder);
  }

  /** Frees the parameters and ends the worker thread of embedAsync, if one was started. */
  override dispose(): void {
    closeAsync(this);
    super.dispose();
  }

  /**
   * Reconstructions for viewing: predicted patches mapped back to the input's value space (with normPixLoss each
   * patch is un-normalised with the input patch's own mean and variance), and the same with visible patches pasted.
   */
  reconstruct(imgs: Tensor, opts: ForwardOptions = {}): Reconstruction {
    this.checkImages(imgs, 'reconstruct');
    expectObject('reconstruct', 'opts', opts, false, 'e.g. { maskRatio: 0.75 }');
    // forward's checks, in reconstruct's name
    expectKnownKeys('reconstruct', 'opts', opts, FORWARD_OPTIONS);
    checkPrecision(opts.precision, 'reconstruct');
    maskRatioOf('reconstruct', opts);
    this.checkMaskingInputs('reconstruct', imgs.shape[0]!, opts.noise, opts.generator);
    return noGrad(() =>
      tidy(() => {
        const { pred, mask } = this.forward(imgs, opts);
        const target = this.patchify(imgs);
        const p = pred.dataSync();
        const t = target.dataSync();
        const m = mask.dataSync();
        const P = pred.shape[2]!;
        const pasted = new Float32Array(p.length);
        for (let i = 0; i < m.length; i++) {
          const tp = t.subarray(i * P, (i + 1) * P);
          if (this.config.normPixLoss) {
            let mean = 0;
            for (let k = 0; k < P; k++) mean += tp[k]!;
            mean /= P;
            let v = 0;
            for (let k = 0; k < P; k++) v += (tp[k]! - mean) ** 2;
            const std = Math.sqrt(v / (P - 1) + 1e-6);
            for (let k = 0; k < P; k++) p[i * P + k] = p[i * P + k]! * std + mean;
          }
          for (let k = 0; k < P; k++) pasted[i * P + k] = m[i] ? p[i * P + k]! : tp[k]!;
        }
        const shape = pred.shape;
        const device = imgs.device;
        return {
          reconstruction: this.unpatchify(Tensor.fromArray(p, shape, { device })),
          pasted: this.unpatchify(Tensor.fromArray(pasted, shape, { device })),
          mask,
        };
      }),
    );
  }

  /**
   * AdamW parameter groups as the official recipe: weight decay on tensors of 2 or more dimensions (cls_token and
   * mask_token, or encoder_mask_token, included), none on biases and LayerNorm parameters; the fixed position tables
   * are left out.
   */
  parameterGroups(weightDecay = 0.05): ParamGroup[] {
    expectNonNegative('parameterGroups', 'weightDecay', weightDecay);
    const decay: [string, Tensor][] = [];
    const noDecay: [string, Tensor][] = [];
    for (const [name, p] of this.namedParameters()) {
      if (!p.requiresGrad) continue;
      (p.shape.length === 1 || name.endsWith('.bias') ? noDecay : decay).push([name, p]);
    }
    return [
      { names: noDecay.map(([n]) => n), params: noDecay.map(([, p]) => p), weightDecay: 0 },
      { names: decay.map(([n]) => n), params: decay.map(([, p]) => p), weightDecay },
    ];
  }

  /**
   * As Module.loadStateDict. With maskTokenEncoder, a state dict without encoder_mask_token (an official checkpoint,
   * or one of an MAE-encoder model) loads with that token left at its initial value, and a decoder mask_token in it
   * (which this mode does not have) is skipped; both are listed in the result (`initialised`, `skipped`) and said in
   * a process warning.
   */
  override loadStateDict(
    state: Map<string, Tensor | { shape: readonly number[]; data: Float32Array }>,
    opts: { strict?: boolean } = {},
  ): { missing: string[]; unexpected: string[]; initialised: string[]; skipped: string[] } {
    const token = this.encoder_mask_token;
    if (!token) return { ...super.loadStateDict(state, opts), initialised: [], skipped: [] };
    expectStateMap('loadStateDict', state);
    const rest = new Map(state);
    const skipped = rest.delete('mask_token') ? ['mask_token'] : [];
    const initialised = rest.has('encoder_mask_token') ? [] : ['encoder_mask_token'];
    // the token itself stands in for the missing entry, so that strict loading checks only the other names
    if (initialised.length) rest.set('encoder_mask_token', token);
    const r = super.loadStateDict(rest, opts);
    const notes = [
      ...(initialised.length ? ['it has no encoder_mask_token (official checkpoints have none), which keeps its initial value'] : []),
      ...(skipped.length ? ['its decoder mask_token was skipped (the mask-token encoder\'s decoder has none)'] : []),
    ];
    if (notes.length) process.emitWarning(`loadStateDict into a maskTokenEncoder model: ${notes.join('; ')}`, 'MaskTokenEncoderWarning');
    return { missing: r.missing.filter((k) => !initialised.includes(k)), unexpected: r.unexpected, initialised, skipped };
  }

  private checkImages(imgs: Tensor, where: string, anySize = false): void {
    expectInstance(where, 'images', imgs, Tensor, 'a Tensor [B, C, H, W]', 'Tensor.fromArray(data, shape) makes one');
    const c = this.config;
    const s = imgs.shape;
    if (anySize) {
      if (s.length !== 4 || s[1] !== c.inChans || !(s[2]! > 0 && s[2]! % c.patchSize === 0) || !(s[3]! > 0 && s[3]! % c.patchSize === 0))
        throw new Error(`${where}: expected images [B, ${c.inChans}, H, W] with H and W multiples of the patch size ${c.patchSize}, got ${shapeStr(s)}`);
    } else if (s.length !== 4 || s[1] !== c.inChans || s[2] !== c.imgSize || s[3] !== c.imgSize)
      throw new Error(`${where}: expected images [B, ${c.inChans}, ${c.imgSize}, ${c.imgSize}], got ${shapeStr(s)}`);
  }
}

export interface ParamGroup {
  params: Tensor[];
  names?: string[];
  weightDecay: number;
  /** multiplies the optimizer's lr for this group (layer-wise decay); default 1 */
  lrScale?: number;
}


function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
