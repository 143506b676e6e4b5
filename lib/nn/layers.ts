/**
 * The ViT layers, with the official timm/MAE names: Linear (weight [out, in], bias), LayerNorm (eps 1e-6 in MAE),
 * Attention (qkv, proj), Mlp (fc1, GELU, fc2), Block (pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x))),
 * PatchEmbed (a conv with kernel = stride = p, computed as a Linear on each patch; proj.weight [D, C, p, p]).
 * Linear layers start as the MAE initialisation: xavier_uniform weight, zero bias.
 * With fused ops (lib/ops/fused.ts) the same values come from fewer passes: Mlp uses biasGelu, forwardBlocks fuses
 * every residual add into the LayerNorm after it, and bf16 products read bf16 weight shadows (shadow.ts).
 */
import * as ops from '../ops/index.js';
import { describeValue, expectArrayOf, expectInstance, expectInteger, expectKnownKeys, expectNumber, expectObject } from '../check.js';
import { Generator } from '../random.js';
import { expectTensors, Tensor } from '../tensor.js';
import { uniform, xavierUniform } from './init.js';
import { Module } from './module.js';
import { shadowFor } from './shadow.js';

export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    gen: Generator,
    opts: { bias?: boolean } = {},
  ) {
    super();
    expectInteger('Linear', 'inFeatures', inFeatures, 1);
    expectInteger('Linear', 'outFeatures', outFeatures, 1);
    expectGenerator('Linear', gen);
    expectObject('Linear', 'opts', opts);
    expectKnownKeys('Linear', 'opts', opts, ['bias']);
    if (opts.bias !== undefined && typeof opts.bias !== 'boolean') throw new Error(`Linear: bias must be true or false, got ${describeValue(opts.bias)}`);
    this.weight = this.param('weight', xavierUniform([outFeatures, inFeatures], inFeatures, outFeatures, gen));
    this.bias = opts.bias === false ? null : this.param('bias', Tensor.zeros([outFeatures]));
  }
  forward(x: Tensor): Tensor {
    expectTensors('Linear.forward', { x });
    return ops.linear(x, this.weight, this.bias, shadowFor(this.weight, x));
  }
  /** x W^T without the bias (for an op that adds the bias itself, as biasGelu). */
  product(x: Tensor): Tensor {
    expectTensors('Linear.product', { x });
    return ops.linear(x, this.weight, null, shadowFor(this.weight, x));
  }
}

export class LayerNorm extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(
    readonly dim: number,
    readonly eps = 1e-6,
  ) {
    super();
    expectInteger('LayerNorm', 'dim', dim, 1);
    expectNumber('LayerNorm', 'eps', eps, true);
    this.weight = this.param('weight', Tensor.ones([dim]));
    this.bias = this.param('bias', Tensor.zeros([dim]));
  }
  forward(x: Tensor): Tensor {
    expectTensors('LayerNorm.forward', { x });
    return ops.layerNorm(x, this.weight, this.bias, this.eps);
  }
}

export class Attention extends Module {
  readonly qkv: Linear;
  readonly proj: Linear;
  constructor(
    readonly dim: number,
    readonly numHeads: number,
    gen: Generator,
  ) {
    super();
    expectInteger('Attention', 'dim', dim, 1);
    expectInteger('Attention', 'numHeads', numHeads, 1);
    expectGenerator('Attention', gen);
    if (dim % numHeads !== 0) throw new Error(`Attention: dim ${dim} is not divisible by numHeads ${numHeads}`);
    this.qkv = this.module('qkv', new Linear(dim, 3 * dim, gen));
    this.proj = this.module('proj', new Linear(dim, dim, gen));
  }
  forward(x: Tensor): Tensor {
    expectTensors('Attention.forward', { x });
    return this.proj.forward(ops.attention(this.qkv.forward(x), this.numHeads));
  }
}

export class Mlp extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(dim: number, hidden: number, gen: Generator) {
    super();
    expectInteger('Mlp', 'dim', dim, 1);
    expectInteger('Mlp', 'hidden', hidden, 1);
    expectGenerator('Mlp', gen);
    this.fc1 = this.module('fc1', new Linear(dim, hidden, gen));
    this.fc2 = this.module('fc2', new Linear(hidden, dim, gen));
  }
  forward(x: Tensor): Tensor {
    expectTensors('Mlp.forward', { x });
    if (ops.fusedOps() && this.fc1.bias) return this.fc2.forward(ops.biasGelu(this.fc1.product(x), this.fc1.bias));
    return this.fc2.forward(ops.gelu(this.fc1.forward(x)));
  }
}

export class Block extends Module {
  readonly norm1: LayerNorm;
  readonly attn: Attention;
  readonly norm2: LayerNorm;
  readonly mlp: Mlp;
  constructor(dim: number, numHeads: number, mlpRatio: number, gen: Generator, eps = 1e-6) {
    super();
    for (const [name, v] of [['dim', dim], ['numHeads', numHeads]] as const) expectInteger('Block', name, v, 1);
    expectNumber('Block', 'mlpRatio', mlpRatio, true);
    expectGenerator('Block', gen);
    expectNumber('Block', 'eps', eps, true);
    this.norm1 = this.module('norm1', new LayerNorm(dim, eps));
    this.attn = this.module('attn', new Attention(dim, numHeads, gen));
    this.norm2 = this.module('norm2', new LayerNorm(dim, eps));
    this.mlp = this.module('mlp', new Mlp(dim, Math.floor(dim * mlpRatio), gen));
  }
  forward(x: Tensor): Tensor {
    expectTensors('Block.forward', { x });
    const h = ops.add(x, this.attn.forward(this.norm1.forward(x)));
    return ops.add(h, this.mlp.forward(this.norm2.forward(h)));
  }
}

/**
 * norm(blocks(x)): the blocks in order, then the final LayerNorm. With fused ops every residual add goes into the
 * LayerNorm that follows it (the block's norm2, the next block's norm1, or `norm`) as one addLayerNorm pass; the
 * values are those of the plain loop.
 */
export function forwardBlocks(blocks: readonly Block[], x: Tensor, norm: LayerNorm): Tensor {
  expectArrayOf('forwardBlocks', 'blocks', blocks, (b) => b instanceof Block, 'a Block');
  expectTensors('forwardBlocks', { x });
  expectInstance('forwardBlocks', 'norm', norm, LayerNorm, 'a LayerNorm');
  if (!ops.fusedOps() || blocks.length === 0) {
    for (const blk of blocks) x = blk.forward(x);
    return norm.forward(x);
  }
  // the residual stream is h + r, with r (the last MLP output) not yet added
  let h = x;
  let r: Tensor | null = null;
  const addNorm = (a: Tensor, b: Tensor, ln: LayerNorm) => ops.addLayerNorm(a, b, ln.weight, ln.bias, ln.eps);
  for (const blk of blocks) {
    let y: Tensor;
    if (r) ({ s: h, y } = addNorm(h, r, blk.norm1));
    else y = blk.norm1.forward(h);
    ({ s: h, y } = addNorm(h, blk.attn.forward(y), blk.norm2));
    r = blk.mlp.forward(y);
  }
  return addNorm(h, r!, norm).y;
}

/** Conv2d(C, D, kernel p, stride p) as patchify (channel, row, col order) followed by a Linear. */
export class PatchEmbed extends Module {
  readonly proj: ConvProj;
  readonly numPatches: number;
  constructor(
    readonly imgSize: number,
    readonly patchSize: number,
    readonly inChans: number,
    readonly embedDim: number,
    gen: Generator,
  ) {
    super();
    for (const [name, v] of [['imgSize', imgSize], ['patchSize', patchSize], ['inChans', inChans], ['embedDim', embedDim]] as const)
      expectInteger('PatchEmbed', name, v, 1);
    expectGenerator('PatchEmbed', gen);
    if (imgSize % patchSize !== 0) throw new Error(`PatchEmbed: image size ${imgSize} is not divisible by patch size ${patchSize}`);
    this.numPatches = (imgSize / patchSize) ** 2;
    this.proj = this.module('proj', new ConvProj(inChans, embedDim, patchSize, gen));
  }
  /** imgs [B, C, H, W] -> [B, L, D], L = (H/p)(W/p): any H and W that are multiples of the patch size */
  forward(imgs: Tensor): Tensor {
    expectTensors('PatchEmbed.forward', { images: imgs });
    const [, C, H, W] = imgs.shape as [number, number, number, number];
    if (imgs.shape.length !== 4 || C !== this.inChans || H % this.patchSize !== 0 || W % this.patchSize !== 0)
      throw new Error(
        `PatchEmbed: expected images [B, ${this.inChans}, H, W] with H and W multiples of ${this.patchSize}, got [${imgs.shape.join(', ')}]`,
      );
    const patches = ops.patchify(imgs, this.patchSize, 'chw');
    const shape = [this.embedDim, this.inChans * this.patchSize ** 2];
    const w = ops.reshape(this.proj.weight, shape);
    const shadow = shadowFor(this.proj.weight, patches);
    return ops.linear(patches, w, this.proj.bias, shadow && new Tensor(shadow.handle.reshape(shape)));
  }
}

/** The patch-embedding conv's parameters: weight [D, C, p, p] (xavier_uniform on its [D, C*p*p] view, as the
 * official code), bias [D] (PyTorch's default conv bias init, U(+-1/sqrt(C*p*p))). */
export class ConvProj extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor;
  constructor(inChans: number, outChans: number, p: number, gen: Generator) {
    super();
    for (const [name, v] of [['inChans', inChans], ['outChans', outChans], ['p', p]] as const) expectInteger('ConvProj', name, v, 1);
    expectGenerator('ConvProj', gen);
    const fanIn = inChans * p * p;
    this.weight = this.param('weight', xavierUniform([outChans, inChans, p, p], fanIn, outChans, gen));
    this.bias = this.param('bias', uniform([outChans], 1 / Math.sqrt(fanIn), gen));
  }
}

function expectGenerator(where: string, gen: unknown): void {
  expectInstance(where, 'gen', gen, Generator, 'a Generator', 'e.g. new Generator(seed)');
}
