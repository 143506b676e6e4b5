/**
 * Losses.
 * maskedMse: the MAE loss. pred, target [B, L, P], mask [B, L] (1 = removed) -> [1]: the mean over masked
 *   patches of the per-patch mean squared error; normPix normalises each target patch by its mean and unbiased
 *   variance (eps 1e-6). With no masked patch the mean is over all patches.
 * crossEntropy: logits [B, C], target int32 labels [B] or float32 soft targets [B, C], label smoothing -> [1].
 */
import { record } from '../autograd.js';
import { native } from '../native.js';
import { expectTensors, Tensor } from '../tensor.js';

export function maskedMse(pred: Tensor, target: Tensor, mask: Tensor, normPix: boolean): Tensor {
  expectTensors('maskedMse', { pred, target, mask });
  const loss = new Tensor(native.maskedMse(pred.handle, target.handle, mask.handle, normPix));
  return record('maskedMse', [pred, null, null], loss, (dl) => [
    new Tensor(native.maskedMseBackward(pred.handle, target.handle, mask.handle, normPix, dl.handle)),
    null,
    null,
  ], [], [pred, target, mask]);
}

export function crossEntropy(logits: Tensor, target: Tensor, smoothing = 0): Tensor {
  expectTensors('crossEntropy', { logits, target });
  const loss = new Tensor(native.crossEntropy(logits.handle, target.handle, smoothing));
  return record('crossEntropy', [logits, null], loss, (dl) => [
    new Tensor(native.crossEntropyBackward(logits.handle, target.handle, smoothing, dl.handle)),
    null,
  ], [], [logits, target]);
}
