/**
 * patchify(imgs [B, C, H, W], p, order) -> [B, L, p*p*C], L = (H/p)(W/p), patches row-major over the grid.
 * order 'hwc' is the official patchify (row, col, channel; channel fastest), the layout of the loss target and of
 * pred; 'chw' is (channel, row, col), the layout of the patch-embedding conv weight [D, C, p, p] viewed [D, C*p*p].
 * unpatchify is the inverse, given the image shape [C, H, W].
 */
import { record } from '../autograd.js';
import { describeValue } from '../check.js';
import { native } from '../native.js';
import { expectTensors, Tensor } from '../tensor.js';

export type PatchOrder = 'hwc' | 'chw';

function isHwc(order: PatchOrder, op: string): boolean {
  if (order !== 'hwc' && order !== 'chw') throw new Error(`${op}: order must be 'hwc' or 'chw', got ${describeValue(order)}`);
  return order === 'hwc';
}

export function patchify(imgs: Tensor, p: number, order: PatchOrder = 'hwc'): Tensor {
  expectTensors('patchify', { imgs });
  const hwc = isHwc(order, 'patchify');
  const [, C, H, W] = imgs.shape as [number, number, number, number];
  return record('patchify', [imgs], new Tensor(native.patchify(imgs.handle, p, hwc)), (dy) => [
    new Tensor(native.unpatchify(dy.handle, p, hwc, [C, H, W])),
  ]);
}

export function unpatchify(x: Tensor, p: number, imageShape: readonly [number, number, number], order: PatchOrder = 'hwc'): Tensor {
  expectTensors('unpatchify', { x });
  if (!Array.isArray(imageShape)) throw new Error(`unpatchify: imageShape must be an array [C, H, W], got ${describeValue(imageShape)}`);
  const hwc = isHwc(order, 'unpatchify');
  return record('unpatchify', [x], new Tensor(native.unpatchify(x.handle, p, hwc, imageShape.slice())), (dy) => [
    new Tensor(native.patchify(dy.handle, p, hwc)),
  ]);
}
