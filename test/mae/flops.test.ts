// maeFlops, the FLOP count of `mae bench`, the training log and benchmarks/: a hand count for a small config, and
// the per-image figures of MAE-SPEC for the paper presets.
import { describe, expect, it } from 'vitest';
import { getPreset, maeFlops } from '../../lib/mae/index.js';

const tiny = {
  imgSize: 8, patchSize: 2, inChans: 3, embedDim: 16, depth: 2, numHeads: 2, decoderEmbedDim: 8, decoderDepth: 1, decoderNumHeads: 2,
  mlpRatio: 4, normPixLoss: false, eps: 1e-6, maskTokenEncoder: false,
};

describe('maeFlops', () => {
  it('matches a hand count for a small config (MAE at 0.75 and the mask-token encoder)', () => {
    // L = 16 patches of P = 12 values, D = 16, Dd = 8, mlp hidden 64 / 32; 4 kept: encoder on 5 tokens, decoder on 17
    //   patch_embed 16*12*16 = 3072; encoder 2 blocks x (5*(3*256 + 256 + 2*16*64) = 15360 linear, 2*5*5*16 = 800 attention)
    //   decoder_embed 5*16*8 = 640; decoder 1 block x (17*(3*64 + 64 + 2*8*32) = 13056, 2*17*17*8 = 4624); pred 17*8*12 = 1632
    const f = maeFlops(tiny, 0.75);
    expect(f.parts).toEqual({
      patch_embed: 2 * 3072, encoder_linear: 2 * 30720, encoder_attention: 2 * 1600, decoder_embed: 2 * 640,
      decoder_linear: 2 * 13056, decoder_attention: 2 * 4624, decoder_pred: 2 * 1632,
    });
    expect(f.forward).toBe(2 * 55344);
    expect(f.training).toBe(6 * 55344);
    // the mask-token encoder: 17 tokens in the encoder and decoder_embed, whatever the ratio
    //   encoder 2 x (17*3072 = 52224, 2*17*17*16 = 9248); decoder_embed 17*16*8 = 2176
    const m = maeFlops({ ...tiny, maskTokenEncoder: true }, 0.75);
    expect(m.forward).toBe(2 * (3072 + 104448 + 18496 + 2176 + 13056 + 4624 + 1632));
    expect(maeFlops({ ...tiny, maskTokenEncoder: true }, 0.5).forward).toBe(m.forward);
    expect(maeFlops(tiny, 0).forward).toBe(m.forward);
    expect(() => maeFlops(tiny, 1)).toThrow(/maskRatio must be in \[0, 1\)/);
    // a ratio that keeps no patch, as forward refuses it; configs the model refuses
    expect(() => maeFlops(tiny, 0.97)).toThrow('maeFlops: maskRatio 0.97 keeps no patch of 16');
    expect(() => maeFlops({ ...tiny, patchSize: 3 })).toThrow('maeFlops: imgSize 8 is not divisible by patchSize 3');
    expect(() => maeFlops({ imgSize: 28 } as never)).toThrow('maeFlops: patchSize must be a positive integer, got undefined');
    // counting needs no weights: a model larger than this machine's memory, which MaskedAutoencoder refuses, is counted
    const base = maeFlops(getPreset('mae_vit_base_patch16'), 0.75).training;
    expect(maeFlops({ ...getPreset('mae_vit_base_patch16'), depth: 100000 }, 0.75).training).toBeGreaterThan(1000 * base);
  });

  it('gives MAE-SPEC\'s training GFLOP per image, which counts the MAE\'s patch embedding on the kept patches only', () => {
    const spec = { mae_vit_base_patch16: [58.2, 138.0], mae_vit_large_patch16: [123.8, 402.1], mae_vit_huge_patch14: [290.5, 1047.3] };
    for (const [name, [mae, full]] of Object.entries(spec)) {
      const c = getPreset(name);
      const L = (c.imgSize / c.patchSize) ** 2;
      const kept = L / 4;
      const m = maeFlops(c, 0.75);
      const mt = maeFlops({ ...c, maskTokenEncoder: true });
      // the full-token encoder: the same convention, to rounding
      expect(Math.abs(mt.training / 1e9 - full!), name).toBeLessThan(0.05);
      // MAE: ours embeds all L patches (as the code does), MAE-SPEC only the kept ones
      const keptOnly = m.training - 3 * m.parts.patch_embed! * (1 - kept / L);
      expect(Math.abs(keptOnly / 1e9 - mae!), name).toBeLessThan(0.05);
      expect(m.training / 1e9 - mae!, name).toBeGreaterThan(0.3);
    }
    // the paper's "3.3x fewer training FLOPs" for ViT-L (8-block decoder): 3.23 counted like this, 3.25 from MAE-SPEC
    const l = getPreset('mae_vit_large_patch16');
    expect(maeFlops({ ...l, maskTokenEncoder: true }).training / maeFlops(l).training).toBeCloseTo(3.23, 2);
  });
});
