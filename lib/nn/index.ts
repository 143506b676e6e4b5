export { Module, ModuleList } from './module.js';
export { Linear, LayerNorm, Attention, Mlp, Block, PatchEmbed, ConvProj, forwardBlocks } from './layers.js';
export * as init from './init.js';
