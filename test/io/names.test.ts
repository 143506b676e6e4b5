// Tests for lib/io/names.ts on the real parity fixture (official names): official -> Hugging Face -> official round
// trip, the q/k/v split and fuse, naming detection, the `model.` prefix, and reporting of unexpected names.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  detectNaming,
  fromHuggingFace,
  stripModelPrefix,
  toHuggingFace,
  toOfficialNames,
  type TensorMap,
} from '../../lib/io/names.js';
import { readSafetensors, requireFloat32 } from '../../lib/io/safetensors.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/mae-parity/parity.safetensors', import.meta.url));

let official: TensorMap;
beforeAll(async () => {
  official = requireFloat32((await readSafetensors(FIXTURE)).tensors, FIXTURE);
});

function expectSameTensors(actual: TensorMap, expected: TensorMap): void {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [name, t] of expected) {
    const a = actual.get(name)!;
    expect(a.shape, name).toEqual(t.shape);
    expect(a.data, name).toEqual(t.data);
  }
}

describe('toHuggingFace / fromHuggingFace', () => {
  it('maps every official name and splits qkv into query, key, value', () => {
    const { tensors: hf, unexpected } = toHuggingFace(official);
    expect(unexpected).toEqual([]);
    // 62 official tensors; each of the 4 blocks turns qkv.weight and qkv.bias into 3 tensors each.
    expect(hf.size).toBe(62 + 4 * 4);
    expect(hf.get('vit.embeddings.cls_token')).toBe(official.get('cls_token'));
    expect(hf.get('vit.embeddings.position_embeddings')!.shape).toEqual([1, 17, 48]);
    expect(hf.get('vit.embeddings.patch_embeddings.projection.weight')!.shape).toEqual([48, 3, 6, 6]);
    expect(hf.get('vit.encoder.layer.1.layernorm_before.bias')).toBe(official.get('blocks.1.norm1.bias'));
    expect(hf.get('vit.encoder.layer.0.layernorm_after.weight')).toBe(official.get('blocks.0.norm2.weight'));
    expect(hf.get('vit.encoder.layer.0.attention.output.dense.weight')).toBe(official.get('blocks.0.attn.proj.weight'));
    expect(hf.get('vit.encoder.layer.0.intermediate.dense.weight')!.shape).toEqual([192, 48]);
    expect(hf.get('vit.encoder.layer.0.output.dense.weight')!.shape).toEqual([48, 192]);
    expect(hf.get('vit.layernorm.weight')).toBe(official.get('norm.weight'));
    expect(hf.get('decoder.decoder_embed.weight')!.shape).toEqual([24, 48]);
    expect(hf.get('decoder.mask_token')!.shape).toEqual([1, 1, 24]);
    expect(hf.get('decoder.decoder_pos_embed')!.shape).toEqual([1, 17, 24]);
    const fc1 = official.get('decoder_blocks.1.mlp.fc1.bias');
    expect(hf.get('decoder.decoder_layers.1.intermediate.dense.bias')).toBe(fc1);
    expect(hf.get('decoder.decoder_norm.bias')).toBe(official.get('decoder_norm.bias'));
    expect(hf.get('decoder.decoder_pred.weight')!.shape).toEqual([108, 24]);

    const qkv = official.get('blocks.0.attn.qkv.weight')!;
    const q = hf.get('vit.encoder.layer.0.attention.attention.query.weight')!;
    const k = hf.get('vit.encoder.layer.0.attention.attention.key.weight')!;
    const v = hf.get('vit.encoder.layer.0.attention.attention.value.weight')!;
    for (const t of [q, k, v]) expect(t.shape).toEqual([48, 48]);
    // Row r of k is row 48 + r of qkv; element (r, c) sits at r * 48 + c.
    expect(q.data[5 * 48 + 7]).toBe(qkv.data[5 * 48 + 7]);
    expect(k.data[5 * 48 + 7]).toBe(qkv.data[(48 + 5) * 48 + 7]);
    expect(v.data[47 * 48 + 47]).toBe(qkv.data[144 * 48 - 1]);
    const bias = official.get('decoder_blocks.1.attn.qkv.bias')!;
    const vb = hf.get('decoder.decoder_layers.1.attention.attention.value.bias')!;
    expect(vb.shape).toEqual([24]);
    expect(Array.from(vb.data)).toEqual(Array.from(bias.data.subarray(48, 72)));
  });

  it('round trips official -> Hugging Face -> official exactly', () => {
    const hf = toHuggingFace(official).tensors;
    const back = fromHuggingFace(hf);
    expect(back.unexpected).toEqual([]);
    expectSameTensors(back.tensors, official);
  });

  it('fuses q, k, v in that order', () => {
    const part = (x: number) => ({ shape: [2, 1], data: new Float32Array([x, x + 1]) });
    const hf: TensorMap = new Map([
      ['decoder.decoder_layers.3.attention.attention.value.weight', part(30)],
      ['decoder.decoder_layers.3.attention.attention.query.weight', part(10)],
      ['decoder.decoder_layers.3.attention.attention.key.weight', part(20)],
    ]);
    const fused = fromHuggingFace(hf).tensors.get('decoder_blocks.3.attn.qkv.weight')!;
    expect(fused.shape).toEqual([6, 1]);
    expect(Array.from(fused.data)).toEqual([10, 11, 20, 21, 30, 31]);
  });

  it('reports names it does not know instead of dropping them silently', () => {
    const t = { shape: [1], data: new Float32Array(1) };
    const hf: TensorMap = new Map([
      ['vit.embeddings.cls_token', t],
      ['vit.pooler.dense.weight', t],
      ['vit.encoder.layer.0.attention.attention.rotary.weight', t],
      ['decoder.something', t],
    ]);
    const out = fromHuggingFace(hf);
    expect([...out.tensors.keys()]).toEqual(['cls_token']);
    expect(out.unexpected).toEqual([
      'vit.pooler.dense.weight',
      'vit.encoder.layer.0.attention.attention.rotary.weight',
      'decoder.something',
    ]);
    const off = toHuggingFace(new Map([['head.weight', t], ['blocks.0.ls1.gamma', t], ['norm.bias', t]]));
    expect(off.unexpected).toEqual(['head.weight', 'blocks.0.ls1.gamma']);
    expect([...off.tensors.keys()]).toEqual(['vit.layernorm.bias']);
  });

  it('rejects incomplete or mismatched q/k/v and qkv not divisible by 3', () => {
    const t = (shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    const pre = 'vit.encoder.layer.0.attention.attention';
    expect(() => fromHuggingFace(new Map([[`${pre}.query.bias`, t([4])], [`${pre}.key.bias`, t([4])]]))).toThrow(
      `"${pre}.query.bias" has no matching "${pre}.value.bias"`,
    );
    expect(() => fromHuggingFace(new Map([[`${pre}.value.weight`, t([4, 4])]]))).toThrow(
      `"${pre}.value.weight" has no matching "${pre}.query.weight"`,
    );
    const mismatched = new Map([
      [`${pre}.query.weight`, t([4, 4])],
      [`${pre}.key.weight`, t([4, 3])],
      [`${pre}.value.weight`, t([4, 4])],
    ]);
    expect(() => fromHuggingFace(mismatched)).toThrow(`"${pre}.key.weight" has shape [4, 3]`);
    expect(() => toHuggingFace(new Map([['blocks.0.attn.qkv.bias', t([7])]]))).toThrow(
      /"blocks\.0\.attn\.qkv\.bias" has shape \[7\]; dim 0 must be a multiple of 3/,
    );
  });
});

describe('naming detection and the model. prefix', () => {
  it('detects official, Hugging Face, prefixed and unknown key sets', () => {
    const hfKeys = [...toHuggingFace(official).tensors.keys()];
    expect(detectNaming(official.keys())).toBe('official');
    expect(detectNaming(hfKeys)).toBe('huggingface');
    expect(detectNaming([...official.keys()].map((k) => `model.${k}`))).toBe('official');
    expect(detectNaming(['conv1.weight', 'fc.bias'])).toBe('unknown');
    expect(detectNaming([])).toBe('unknown');
  });

  it('strips model. only when every key carries it', () => {
    const t = { shape: [1], data: new Float32Array(1) };
    expect([...stripModelPrefix(new Map([['model.a', t], ['model.b.c', t]])).keys()]).toEqual(['a', 'b.c']);
    expect([...stripModelPrefix(new Map([['model.a', t], ['b', t]])).keys()]).toEqual(['model.a', 'b']);
  });

  it('toOfficialNames accepts prefixed official and Hugging Face state dicts', () => {
    const prefixed = new Map([...official].map(([k, v]) => [`model.${k}`, v]));
    const a = toOfficialNames(prefixed);
    expect(a.naming).toBe('official');
    expect(a.unexpected).toEqual([]);
    expectSameTensors(a.tensors, official);

    const b = toOfficialNames(toHuggingFace(official).tensors);
    expect(b.naming).toBe('huggingface');
    expectSameTensors(b.tensors, official);

    const withExtra = new Map(official);
    withExtra.set('head.weight', { shape: [1], data: new Float32Array(1) });
    expect(toOfficialNames(withExtra).unexpected).toEqual(['head.weight']);

    const t = { shape: [1], data: new Float32Array(1) };
    expect(() => toOfficialNames(new Map([['fc.weight', t]]), 'resnet.safetensors')).toThrow(
      'resnet.safetensors: parameter names follow neither the official MAE nor the Hugging Face ViTMAE naming',
    );
  });
});
