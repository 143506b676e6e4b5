// Tests for lib/ops/patch.ts: patchify / unpatchify in both patch orders ('hwc', the official patchify and the loss
// target; 'chw', the conv weight's order) against the double reference, the round trip, the two orders differing,
// pixels landing where the layout says, and the gradients (each op's backward is the other op).
import { describe, expect, it } from 'vitest';
import { patchify, unpatchify, type PatchOrder } from '../../lib/ops/index.js';
import { tidy } from '../../lib/tensor.js';
import { expectClose, expectGradClose, numericGradOp } from '../helpers/gradcheck.js';
import { randn, rng } from '../helpers/random.js';
import * as ref from '../helpers/reference.js';
import { gradOf, project, tensor } from '../helpers/tensors.js';

// [B, C, H, W, p]
const cases: [number, number, number, number, number][] = [
  [1, 1, 1, 1, 1],
  [3, 3, 4, 4, 2],
  [2, 5, 6, 10, 2], // non-square, odd channel count
  [1, 3, 14, 21, 7],
  [2, 3, 32, 32, 16],
  [1, 2, 9, 3, 3],
];
const orders: PatchOrder[] = ['hwc', 'chw'];

describe('patchify / unpatchify', () => {
  for (const [B, C, H, W, p] of cases)
    for (const order of orders)
      it(`imgs [${B}, ${C}, ${H}, ${W}] p ${p} ${order}: forward, round trip, gradients`, () =>
        tidy(() => {
          const g = rng(B * 1000 + C * 100 + H + W + p + order.length);
          const L = (H / p) * (W / p);
          const P = p * p * C;
          const imgs = randn(g, B * C * H * W);
          const it = tensor(imgs, [B, C, H, W], true);
          const x = patchify(it, p, order);
          expect(x.shape).toEqual([B, L, P]);
          expect(Array.from(x.dataSync())).toEqual(Array.from(ref.patchify(imgs, B, C, H, W, p, order)));
          const back = unpatchify(x, p, [C, H, W], order);
          expect(back.shape).toEqual([B, C, H, W]);
          expect(Array.from(back.dataSync())).toEqual(Array.from(imgs));
          // gradient of patchify alone: unpatchify of the projection
          const r = randn(g, B * L * P);
          const it2 = tensor(imgs, [B, C, H, W], true);
          project(patchify(it2, p, order), r).backward();
          expectClose(gradOf(it2), ref.unpatchify(r, B, C, H, W, p, order), { rtol: 0 });
          // gradient of unpatchify alone: patchify of the projection
          const r2 = randn(g, B * C * H * W);
          const xt = tensor(randn(g, B * L * P), [B, L, P], true);
          project(unpatchify(xt, p, [C, H, W], order), r2).backward();
          expectClose(gradOf(xt), ref.patchify(r2, B, C, H, W, p, order), { rtol: 0 });
        }));

  it('places pixel (c, row, col) of patch (gi, gj) at (i*p + j)*C + c for hwc and (c*p + i)*p + j for chw', () =>
    tidy(() => {
      const [B, C, H, W, p] = [2, 3, 6, 9, 3];
      const code = (b: number, c: number, h: number, w: number): number => b * 1e6 + c * 1e4 + h * 100 + w;
      const imgs = new Float32Array(B * C * H * W);
      for (let b = 0; b < B; b++)
        for (let c = 0; c < C; c++)
          for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) imgs[((b * C + c) * H + h) * W + w] = code(b, c, h, w);
      const gw = W / p;
      const L = (H / p) * gw;
      const P = p * p * C;
      for (const order of orders) {
        const x = patchify(tensor(imgs, [B, C, H, W]), p, order).dataSync();
        for (let b = 0; b < B; b++)
          for (let l = 0; l < L; l++)
            for (let c = 0; c < C; c++)
              for (let i = 0; i < p; i++)
                for (let j = 0; j < p; j++) {
                  const k = order === 'hwc' ? (i * p + j) * C + c : (c * p + i) * p + j;
                  const want = code(b, c, Math.floor(l / gw) * p + i, (l % gw) * p + j);
                  expect(x[(b * L + l) * P + k], `${order} b ${b} l ${l} c ${c} i ${i} j ${j}`).toBe(want);
                }
      }
    }));

  it('refuses an order other than hwc and chw', () =>
    tidy(() => {
      const imgs = tensor(new Float32Array(3 * 4 * 4), [1, 3, 4, 4]);
      expect(() => patchify(imgs, 2, 'HWC' as PatchOrder)).toThrow(/^patchify: order must be 'hwc' or 'chw', got the string 'HWC'/);
      expect(() => unpatchify(tensor(new Float32Array(48), [1, 4, 12]), 2, [3, 4, 4], 'junk' as PatchOrder)).toThrow(
        /^unpatchify: order must be 'hwc' or 'chw', got the string 'junk'/,
      );
    }));

  it('the two orders differ when C > 1 and agree when C = 1', () =>
    tidy(() => {
      const g = rng(3);
      const a = randn(g, 2 * 3 * 4 * 4);
      const hwc = patchify(tensor(a, [2, 3, 4, 4]), 2, 'hwc').dataSync();
      const chw = patchify(tensor(a, [2, 3, 4, 4]), 2, 'chw').dataSync();
      expect(Array.from(hwc)).not.toEqual(Array.from(chw));
      const b = randn(g, 2 * 1 * 4 * 4);
      expect(Array.from(patchify(tensor(b, [2, 1, 4, 4]), 2, 'hwc').dataSync())).toEqual(
        Array.from(patchify(tensor(b, [2, 1, 4, 4]), 2, 'chw').dataSync()),
      );
    }));

  it('central differences through patchify', () =>
    tidy(() => {
      const g = rng(4);
      const [B, C, H, W, p] = [1, 2, 4, 2, 2];
      const imgs = randn(g, B * C * H * W);
      const r = randn(g, B * C * H * W);
      const it = tensor(imgs, [B, C, H, W], true);
      project(patchify(it, p, 'hwc'), r).backward();
      const op = ([x]: Float32Array[]): Float32Array => tidy(() => patchify(tensor(x!, [B, C, H, W]), p, 'hwc').dataSync());
      expectGradClose(gradOf(it), numericGradOp(op, [imgs], 0, r));
    }));
});
