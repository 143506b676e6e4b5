/**
 * batchNorm without affine over the batch axis: x [B, F] -> [B, F]. In training it normalises with the batch
 * statistics and updates runningMean / runningVar [F] in place (momentum, unbiased variance, as PyTorch); in
 * evaluation it uses the running statistics.
 */
import { record } from '../autograd.js';
import { native } from '../native.js';
import { expectTensors, Tensor } from '../tensor.js';

export function batchNorm(
  x: Tensor,
  runningMean: Tensor,
  runningVar: Tensor,
  training: boolean,
  momentum = 0.1,
  eps = 1e-6,
): Tensor {
  expectTensors('batchNorm', { x, runningMean, runningVar });
  const [yh, rstdh] = native.batchNorm(x.handle, runningMean.handle, runningVar.handle, training, momentum, eps);
  const y = new Tensor(yh);
  const rstd = new Tensor(rstdh);
  return record(
    'batchNorm',
    [x],
    y,
    (dy) => [new Tensor(native.batchNormBackward(dy.handle, y.handle, rstd.handle, training))],
    [rstd],
    [y],
  );
}
