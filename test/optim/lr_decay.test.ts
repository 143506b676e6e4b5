import { describe, expect, it } from 'vitest';
import { VisionTransformerClassifier, classifierConfigFrom } from '../../lib/classify/model.js';
import { getPreset } from '../../lib/mae/presets.js';
import { layerIdForVit, paramGroupsLrd } from '../../lib/optim/lr_decay.js';

describe('layer-wise lr decay (official util/lr_decay.py)', () => {
  it('assigns layer ids as get_layer_id_for_vit', () => {
    expect(layerIdForVit('cls_token', 5)).toBe(0);
    expect(layerIdForVit('pos_embed', 5)).toBe(0);
    expect(layerIdForVit('patch_embed.proj.weight', 5)).toBe(0);
    expect(layerIdForVit('blocks.0.attn.qkv.weight', 5)).toBe(1);
    expect(layerIdForVit('blocks.3.mlp.fc2.bias', 5)).toBe(4);
    expect(layerIdForVit('fc_norm.weight', 5)).toBe(5);
    expect(layerIdForVit('head.weight', 5)).toBe(5);
  });

  it('gives block i decay^(depth + 1 - (i + 1)), the embeddings decay^(depth + 1), the head 1, and no decay to 1-D, pos_embed, cls_token', () => {
    const cfg = classifierConfigFrom({ ...getPreset('mae_vit_tiny_patch4_28'), embedDim: 16, depth: 2, numHeads: 2 }, { globalPool: true });
    const model = new VisionTransformerClassifier(cfg);
    const groups = paramGroupsLrd(model, 2, { weightDecay: 0.05, layerDecay: 0.5 });
    const scale = new Map<string, number>();
    const wd = new Map<string, number>();
    for (const g of groups) for (const n of g.names!) {
      scale.set(n, g.lrScale!);
      wd.set(n, g.weightDecay);
    }
    // numLayers = 3: embeddings 0.5^3, block 0 0.5^2, block 1 0.5^1, head and fc_norm 1
    expect(scale.get('cls_token')).toBe(0.125);
    expect(scale.get('pos_embed')).toBe(0.125);
    expect(scale.get('patch_embed.proj.weight')).toBe(0.125);
    expect(scale.get('blocks.0.attn.qkv.weight')).toBe(0.25);
    expect(scale.get('blocks.1.mlp.fc1.bias')).toBe(0.5);
    expect(scale.get('fc_norm.weight')).toBe(1);
    expect(scale.get('head.weight')).toBe(1);
    expect(wd.get('cls_token')).toBe(0);
    expect(wd.get('pos_embed')).toBe(0);
    expect(wd.get('patch_embed.proj.weight')).toBe(0.05);
    expect(wd.get('patch_embed.proj.bias')).toBe(0);
    expect(wd.get('blocks.0.norm1.weight')).toBe(0);
    expect(wd.get('blocks.0.attn.qkv.weight')).toBe(0.05);
    expect(wd.get('head.weight')).toBe(0.05);
    expect(wd.get('head.bias')).toBe(0);
    // every trainable parameter is in exactly one group
    const n = groups.reduce((s, g) => s + g.params.length, 0);
    expect(n).toBe(model.parameters().length);
    model.dispose();
  });

  it("refuses a depth other than the model's number of blocks, and a layerDecay outside (0, 1]", () => {
    const cfg = classifierConfigFrom({ ...getPreset('mae_vit_tiny_patch4_28'), embedDim: 16, depth: 4, numHeads: 2 }, { globalPool: true });
    const model = new VisionTransformerClassifier(cfg);
    const cases: [() => unknown, string][] = [
      [() => paramGroupsLrd(model, 1), "paramGroupsLrd: depth must be the model's number of blocks, 4 (blocks.0 to blocks.3), got 1"],
      [() => paramGroupsLrd(model, 5), "paramGroupsLrd: depth must be the model's number of blocks, 4 (blocks.0 to blocks.3), got 5"],
      [() => paramGroupsLrd(model, NaN), 'paramGroupsLrd: depth must be an integer >= 0, got the number NaN'],
      [() => paramGroupsLrd(model, 3.5), 'paramGroupsLrd: depth must be an integer >= 0, got the number 3.5'],
      [() => paramGroupsLrd(model, 4, { layerDecay: -2 }), 'paramGroupsLrd: layerDecay must be in (0, 1], got the number -2'],
      [() => paramGroupsLrd(model, 4, { layerDecay: 0 }), 'paramGroupsLrd: layerDecay must be in (0, 1], got the number 0'],
      [() => paramGroupsLrd(model, 4, { layerDecay: 1.5 }), 'paramGroupsLrd: layerDecay must be in (0, 1], got the number 1.5'],
      [() => paramGroupsLrd(model, 4, { layerDecay: NaN }), 'paramGroupsLrd: layerDecay must be in (0, 1], got the number NaN'],
      [() => paramGroupsLrd(model, 4, { weightDecay: -0.05 }), 'paramGroupsLrd: weightDecay must be a finite number >= 0, got the number -0.05'],
    ];
    for (const [call, message] of cases) expect(call).toThrow(new Error(message));
    // layerDecay 1: every scale 1
    expect(new Set(paramGroupsLrd(model, 4, { layerDecay: 1 }).map((g) => g.lrScale))).toEqual(new Set([1]));
    // a model without blocks has depth 0: the embeddings decay^1
    const head = { namedParameters: () => model.namedParameters().filter(([n]) => !n.startsWith('blocks.')) };
    expect(paramGroupsLrd(head, 0, { layerDecay: 0.5 }).find((g) => g.names!.includes('cls_token'))!.lrScale).toBe(0.5);
    model.dispose();
  });
});
